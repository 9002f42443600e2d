"""TabularModel: counting and value iteration beside the best numpy/scipy ways.

pytest benches/bench_tabular.py --benchmark-only --benchmark-group-by=group
python benches/run_all.py --suites tabular --out DIR   # medians over interleaved rounds
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tabular_baselines as base
import wmfast as wm
from harness import Table, fmt_ratio_cell, fmt_time_cell, interleaved, ratios

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
def test_count_minimal(benchmark, num_states):
    benchmark.group = f"count 1e7 transitions, S={num_states:.0e}"
    benchmark.name = "counts-only COO -> CSR + bincount (fair)"
    benchmark.pedantic(base.count_minimal, args=(batch(num_states), num_states, NUM_ACTIONS),
                       rounds=3)


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


# -- run_all: medians over interleaved rounds --------------------------------------------------

def _counting_table(quick: bool) -> Table:
    transitions = 100_000 if quick else TRANSITIONS
    sizes = [1_000] if quick else [1_000, 10_000, 100_000]
    rounds = 2 if quick else 7
    table = Table(
        "tabular", f"Tabular counting: {transitions:.0e} transitions from a fresh model "
        f"(A={NUM_ACTIONS}, {SUCCESSORS} successors a pair, 1% terminal)",
        ["S", "wmfast, 1 thread", "wmfast, 2 threads", "counts-only COO->CSR + bincount (fair)",
         "fair / wmfast 1 thread", "fair / wmfast 2 threads",
         "scipy COO->CSR, rewards per successor / wmfast 1 thread",
         "dense np.bincount / wmfast 1 thread"])
    for num_states in sizes:
        data = base.make_transitions(num_states, NUM_ACTIONS, SUCCESSORS, transitions)

        def update(threads, data=data, num_states=num_states):
            wm.TabularModel(num_states, NUM_ACTIONS, num_threads=threads).update(**data)

        args = (data, num_states, NUM_ACTIONS)
        fns = {"wmfast x1": lambda: update(1), "wmfast x2": lambda: update(2),
               "fair": lambda args=args: base.count_minimal(*args),
               "scipy": lambda args=args: base.count_scipy(*args)}
        if num_states <= 1_000:  # S*A*S*2 counters fit only here
            fns["dense"] = lambda args=args: base.count_bincount(*args)
        times = interleaved(fns, rounds)
        table.samples[f"S={num_states}"] = times
        table.add_row([
            f"{num_states:.0e}", fmt_time_cell(times["wmfast x1"]),
            fmt_time_cell(times["wmfast x2"]), fmt_time_cell(times["fair"]),
            fmt_ratio_cell(ratios(times, "fair", "wmfast x1")),
            fmt_ratio_cell(ratios(times, "fair", "wmfast x2")),
            fmt_ratio_cell(ratios(times, "scipy", "wmfast x1")),
            fmt_ratio_cell(ratios(times, "dense", "wmfast x1")) if "dense" in times
            else "does not fit"])
    table.notes.append(
        f"Medians (min-max) over {rounds} interleaved rounds; a ratio above 1 means wmfast is "
        "faster, each ratio taken within one round. The fair baseline computes less than wmfast "
        "(see benches/tabular_baselines.py: count_minimal).")
    return table


def _value_iteration_table(quick: bool, large: bool) -> Table:
    sizes = [1_000] if quick else [10_000] + ([100_000] if large else [])
    rounds = 2 if quick else 5
    table = Table(
        "tabular", "Value iteration to a sup-norm change below 1e-8 at gamma 0.99 on the learned "
        "models (A=8, 8 successors)",
        ["S", "wmfast Gauss-Seidel", "wmfast Jacobi, 1 thread", "wmfast Jacobi, 2 threads",
         "scipy CSR matvec (Jacobi)", "scipy / wmfast Gauss-Seidel",
         "scipy / wmfast Jacobi 1 thread"])
    for num_states in sizes:
        model = wm.TabularModel(num_states, NUM_ACTIONS, num_threads=2)
        model.update(**base.make_transitions(num_states, NUM_ACTIONS, SUCCESSORS,
                                             100_000 if quick else TRANSITIONS))
        with warnings.catch_warnings():  # one sweep: it only builds the CSR view beforehand
            warnings.simplefilter("ignore", RuntimeWarning)
            model.value_iteration(0.99, 1e-8, max_iters=1)
        matrix, rewards = base.planning_matrices(model)
        fns = {
            "gauss_seidel": lambda m=model: m.value_iteration(0.99, 1e-8),
            "jacobi x1": lambda m=model: m.value_iteration(0.99, 1e-8, sweep="jacobi"),
            "jacobi x2": lambda m=model: m.value_iteration(0.99, 1e-8, sweep="jacobi",
                                                           num_threads=2),
            "scipy": lambda m=matrix, r=rewards: base.value_iteration_scipy(m, r, NUM_ACTIONS,
                                                                            0.99, 1e-8)}
        times = interleaved(fns, rounds)
        table.samples[f"S={num_states}"] = times
        sweeps = (model.value_iteration(0.99, 1e-8).iterations,
                  model.value_iteration(0.99, 1e-8, sweep="jacobi").iterations)
        table.add_row([f"{num_states:.0e} ({sweeps[0]} / {sweeps[1]} sweeps)",
                       fmt_time_cell(times["gauss_seidel"]), fmt_time_cell(times["jacobi x1"]),
                       fmt_time_cell(times["jacobi x2"]), fmt_time_cell(times["scipy"]),
                       fmt_ratio_cell(ratios(times, "scipy", "gauss_seidel")),
                       fmt_ratio_cell(ratios(times, "scipy", "jacobi x1"))])
    table.notes.append(f"Medians (min-max) over {rounds} interleaved rounds. "
                       + ("" if large or quick else "S=1e5 runs with --large (minutes a round)."))
    return table


def _frozenlake_table(quick: bool) -> Table:
    import gymnasium as gym

    P = gym.make("FrozenLake-v1", map_name="8x8", is_slippery=True).unwrapped.P
    rows = [(s, a, r, s2, d) for s in range(64) for a in range(4) for _, s2, r, d in P[s][a]]
    model = wm.TabularModel(64, 4)
    model.update(*map(np.array, zip(*rows, strict=True)))
    matrix, rewards = base.planning_matrices(model)
    dense = matrix.toarray().reshape(64, 4, 64)
    values = model.value_iteration(0.99, 1e-8).values
    fns = {"warm": lambda: model.value_iteration(0.99, 1e-8, initial_values=values),
           "cold": lambda: model.value_iteration(0.99, 1e-8),
           "scipy": lambda: base.value_iteration_scipy(matrix, rewards, 4, 0.99, 1e-8),
           "dense": lambda: base.value_iteration_dense(dense, rewards.reshape(64, 4), 0.99,
                                                       1e-8)}
    rounds = 3 if quick else 15
    times = interleaved(fns, rounds, min_seconds=0.02 if quick else 0.1)
    table = Table("tabular", "FrozenLake 8x8 (slippery, true model): value iteration to 1e-8 at "
                  "gamma 0.99, per call",
                  ["wmfast, warm start (replanning)", "wmfast, cold start", "scipy CSR (Jacobi)",
                   "numpy dense (Jacobi)", "scipy / wmfast cold", "numpy dense / wmfast cold"],
                  samples={"frozenlake": times})
    table.add_row([fmt_time_cell(times["warm"]), fmt_time_cell(times["cold"]),
                   fmt_time_cell(times["scipy"]), fmt_time_cell(times["dense"]),
                   fmt_ratio_cell(ratios(times, "scipy", "cold")),
                   fmt_ratio_cell(ratios(times, "dense", "cold"))])
    table.notes.append(f"Medians (min-max) of the mean time per call over {rounds} interleaved "
                       "rounds.")
    return table


def run(quick: bool = False, large: bool = False) -> list[Table]:
    """The suite's tables (run_all.py): counting, value iteration, FrozenLake."""
    return [_counting_table(quick), _value_iteration_table(quick, large), _frozenlake_table(quick)]
