"""TabularModel: counting and value iteration beside the best numpy/scipy ways.

pytest benches/bench_tabular.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import numpy as np
import pytest
import tabular_baselines as base
import wmfast as wm

NUM_ACTIONS, SUCCESSORS, TRANSITIONS = 8, 8, 10_000_000
_batches: dict[int, dict[str, np.ndarray]] = {}
_models: dict[int, wm.TabularModel] = {}


def batch(num_states: int) -> dict[str, np.ndarray]:
    if num_states not in _batches:
        _batches[num_states] = base.make_transitions(num_states, NUM_ACTIONS, SUCCESSORS,
                                                     TRANSITIONS)
    return _batches[num_states]


def learned_model(num_states: int) -> wm.TabularModel:
    if num_states not in _models:
        _models[num_states] = wm.TabularModel(num_states, NUM_ACTIONS, num_threads=2)
        _models[num_states].update(**batch(num_states))
    return _models[num_states]


# -- counting 10^7 transitions ----------------------------------------------------------------

@pytest.mark.parametrize("num_states", [1_000, 10_000, 100_000])
@pytest.mark.parametrize("threads", [1, 2])
def test_count_wmfast(benchmark, num_states, threads):
    data = batch(num_states)
    benchmark.group = f"count 1e7 transitions, S={num_states:.0e}"
    benchmark.name = f"wmfast update, {threads} thread{'s' * (threads > 1)}"

    def fresh():
        return (wm.TabularModel(num_states, NUM_ACTIONS, num_threads=threads),), {}

    model = benchmark.pedantic(lambda m: (m.update(**data), m)[1], setup=fresh, rounds=3)
    assert model.num_transitions == TRANSITIONS


@pytest.mark.parametrize("num_states", [1_000, 10_000, 100_000])
def test_count_scipy_coo_to_csr(benchmark, num_states):
    benchmark.group = f"count 1e7 transitions, S={num_states:.0e}"
    benchmark.name = "scipy COO -> CSR"
    benchmark.pedantic(base.count_scipy, args=(batch(num_states), num_states, NUM_ACTIONS),
                       rounds=3)


@pytest.mark.parametrize("num_states", [1_000, 10_000, 100_000])
def test_count_numpy_unique(benchmark, num_states):
    benchmark.group = f"count 1e7 transitions, S={num_states:.0e}"
    benchmark.name = "np.unique + bincount"
    benchmark.pedantic(base.count_unique, args=(batch(num_states), num_states, NUM_ACTIONS),
                       rounds=1)


def test_count_numpy_bincount_dense(benchmark):
    # Only where S*A*S*2 counters fit comfortably (1.6e7 at S=1e3; 1.6e9 at S=1e4 would not).
    benchmark.group = "count 1e7 transitions, S=1e+03"
    benchmark.name = "np.bincount, dense S*A*S*2"
    benchmark.pedantic(base.count_bincount, args=(batch(1_000), 1_000, NUM_ACTIONS), rounds=3)


# -- value iteration to 1e-8 at gamma 0.99 ------------------------------------------------------

@pytest.mark.parametrize("num_states", [10_000, 100_000])
@pytest.mark.parametrize("sweep, threads", [("gauss_seidel", 1), ("jacobi", 1), ("jacobi", 2)])
def test_value_iteration_wmfast(benchmark, num_states, sweep, threads):
    model = learned_model(num_states)
    model.value_iteration(0.99, 1e-8, max_iters=1)  # build the CSR view outside the timing
    benchmark.group = f"value iteration to 1e-8, S={num_states:.0e}, A=8, 8 successors"
    benchmark.name = f"wmfast {sweep}, {threads} thread{'s' * (threads > 1)}"
    solution = benchmark.pedantic(model.value_iteration, args=(0.99, 1e-8),
                                  kwargs={"sweep": sweep, "num_threads": threads}, rounds=1)
    benchmark.extra_info["sweeps"] = solution.iterations
    assert solution.converged


@pytest.mark.parametrize("num_states", [10_000, 100_000])
def test_value_iteration_scipy(benchmark, num_states):
    matrix, rewards = base.planning_matrices(learned_model(num_states))
    benchmark.group = f"value iteration to 1e-8, S={num_states:.0e}, A=8, 8 successors"
    benchmark.name = "scipy CSR matvec (Jacobi)"
    values, sweeps = benchmark.pedantic(base.value_iteration_scipy,
                                        args=(matrix, rewards, NUM_ACTIONS, 0.99, 1e-8), rounds=1)
    benchmark.extra_info["sweeps"] = sweeps
    reference = learned_model(num_states).value_iteration(0.99, 1e-10, sweep="jacobi")
    assert np.abs(values - reference.values.numpy()).max() < 1e-6


# -- FrozenLake 8x8 planning per call -------------------------------------------------------------

@pytest.fixture(scope="module")
def frozenlake():
    import gymnasium as gym

    P = gym.make("FrozenLake-v1", map_name="8x8", is_slippery=True).unwrapped.P
    rows = [(s, a, r, s2, d) for s in range(64) for a in range(4) for _, s2, r, d in P[s][a]]
    model = wm.TabularModel(64, 4)
    model.update(*map(np.array, zip(*rows)))
    matrix, rewards = base.planning_matrices(model)
    return model, matrix, rewards


def test_frozenlake_wmfast_cold(benchmark, frozenlake):
    model = frozenlake[0]
    benchmark.group = "FrozenLake 8x8 value iteration to 1e-8, gamma 0.99 (per call)"
    benchmark.name = "wmfast, cold start"
    assert benchmark(model.value_iteration, 0.99, 1e-8).converged


def test_frozenlake_wmfast_warm(benchmark, frozenlake):
    model = frozenlake[0]
    values = model.value_iteration(0.99, 1e-8).values
    # The agent's case: replanning after an episode's new counts, from the last values.
    benchmark.group = "FrozenLake 8x8 value iteration to 1e-8, gamma 0.99 (per call)"
    benchmark.name = "wmfast, warm start (replanning)"
    assert benchmark(model.value_iteration, 0.99, 1e-8, initial_values=values).converged


def test_frozenlake_scipy(benchmark, frozenlake):
    _, matrix, rewards = frozenlake
    benchmark.group = "FrozenLake 8x8 value iteration to 1e-8, gamma 0.99 (per call)"
    benchmark.name = "scipy CSR matvec (Jacobi)"
    benchmark(base.value_iteration_scipy, matrix, rewards, 4, 0.99, 1e-8)


def test_frozenlake_numpy_dense(benchmark, frozenlake):
    matrix, rewards = base.planning_matrices(frozenlake[0])
    dense = matrix.toarray().reshape(64, 4, 64)
    benchmark.group = "FrozenLake 8x8 value iteration to 1e-8, gamma 0.99 (per call)"
    benchmark.name = "numpy dense [S,A,S] (Jacobi)"
    benchmark(base.value_iteration_dense, dense, rewards.reshape(64, 4), 0.99, 1e-8)
