"""wmfast.TabularModel against numpy references: counting, estimates, planning, sampling."""

import _thread
import threading

import numpy as np
import pytest
import torch
import wmfast as wm
from conftest import dense_true_model, reference_value_iteration
from hypothesis import given, settings
from hypothesis import strategies as st


def reference_counts(S, A, s, a, r, s2, d):
    """Dense N(s,a,s'), terminal counts and reward sums per pair, by np.add.at."""
    counts = np.zeros((S, A, S), dtype=np.int64)
    terminal = np.zeros((S, A, S), dtype=np.int64)
    reward_sums = np.zeros((S, A))
    np.add.at(counts, (s, a, s2), 1)
    np.add.at(terminal, (s, a, s2), d.astype(np.int64))
    np.add.at(reward_sums, (s, a), r)
    return counts, terminal, reward_sums


def random_batch(rng, S, A, n):
    return (rng.integers(0, S, n), rng.integers(0, A, n), rng.normal(size=n),
            rng.integers(0, S, n), rng.random(n) < 0.2)


def feed_true_model(P, S, A):
    """A TabularModel fed each listed outcome of gymnasium's P once (p = 1/3 each)."""
    model = wm.TabularModel(S, A)
    rows = [(s, a, r, s2, d) for s in range(S) for a in range(A) for _, s2, r, d in P[s][a]]
    s, a, r, s2, d = map(np.array, zip(*rows))
    model.update(s, a, r, s2, d)
    return model


@settings(max_examples=40, deadline=None)
@given(S=st.integers(1, 12), A=st.integers(1, 4), n=st.integers(0, 400),
       pieces=st.integers(1, 5), threads=st.sampled_from([1, 2, 4]), seed=st.integers(0, 2**16))
def test_counting_equals_numpy_reference_in_any_chunking(S, A, n, pieces, threads, seed):
    rng = np.random.default_rng(seed)
    s, a, r, s2, d = random_batch(rng, S, A, n)
    model = wm.TabularModel(S, A, num_threads=threads)
    for chunk in np.array_split(np.arange(n), pieces):
        model.update(s[chunk], a[chunk], r[chunk], s2[chunk], d[chunk])
    counts, terminal, reward_sums = reference_counts(S, A, s, a, r, s2, d)
    np.testing.assert_array_equal(model.transition_counts(dense=True), counts)
    np.testing.assert_array_equal(model.visit_counts(), counts.sum(axis=2))
    assert model.num_transitions == n
    visits = counts.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(model.mean_rewards(), reward_sums / visits, atol=1e-12)
        np.testing.assert_allclose(model.terminal_probs(), terminal.sum(axis=2) / visits)
        np.testing.assert_allclose(model.transition_probs(dense=True),
                                   counts / visits[:, :, None])


def test_large_update_takes_the_partitioned_path_and_still_counts_exactly():
    rng = np.random.default_rng(0)
    S, A, n = 3000, 4, 1_500_000
    s, a, r, s2, d = random_batch(rng, S, A, n)
    s2 = (s * 7 + a + rng.integers(0, 4, n)) % S  # a few successors per pair
    for threads in (1, 2):
        model = wm.TabularModel(S, A, num_threads=threads)
        model.update(s.astype(np.int32), a.astype(np.int32), r.astype(np.float32),
                     s2.astype(np.int32), d)
        keys, counts = np.unique((s * A + a) * S + s2, return_counts=True)
        matrix = model.transition_counts()
        rows = np.repeat(np.arange(S * A), np.diff(matrix.indptr.numpy()))
        np.testing.assert_array_equal(rows * S + matrix.indices.numpy(), keys)
        np.testing.assert_array_equal(matrix.data, counts)


def test_accepts_torch_tensors_and_lists():
    model = wm.TabularModel(3, 2)
    model.update(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([0.5, 1.0]),
                 torch.tensor([2, 2]), torch.tensor([False, True]))
    model.update([0], [1], [1.5], [2], [False])
    model.update(0, 1, 0.0, 1, False)
    np.testing.assert_array_equal(model.visit_counts(), [[0, 3], [1, 0], [0, 0]])
    assert model.mean_rewards()[0, 1] == pytest.approx(2.0 / 3)


def test_unseen_pairs_are_reported_as_unseen():
    model = wm.TabularModel(3, 2)
    model.update([0], [0], [1.0], [1], [False])
    probs = model.transition_probs()
    assert probs.visited.tolist() == [True, False, False, False, False, False]
    assert probs.successors(0, 1)[0].numel() == 0
    dense = model.transition_probs(dense=True)
    assert torch.isnan(dense[0, 1]).all() and torch.isnan(dense[2]).all()
    assert dense[0, 0].tolist() == [0.0, 1.0, 0.0]
    assert torch.isnan(model.mean_rewards()[1, 0])


def test_prior_spreads_pseudo_counts_uniformly():
    model = wm.TabularModel(4, 1, prior=0.5)
    model.update([0, 0], [0, 0], [1.0, 1.0], [1, 1], [False, False])
    dense = model.transition_probs(dense=True)
    np.testing.assert_allclose(dense[0, 0], np.array([0.5, 2.5, 0.5, 0.5]) / 4)
    np.testing.assert_allclose(dense.sum(dim=2), 1.0)
    np.testing.assert_allclose(dense[3, 0], 0.25)  # unvisited: the prior alone


def test_value_iteration_on_true_frozenlake_equals_numpy_reference(frozenlake):
    P, S, A = frozenlake
    model = feed_true_model(P, S, A)
    transitions, rewards = dense_true_model(P, S, A)
    for gamma in (0.9, 0.99, 1.0):
        ref_values, ref_q = reference_value_iteration(transitions, rewards, gamma)
        for sweep in ("gauss_seidel", "jacobi"):
            sol = model.value_iteration(gamma=gamma, tol=1e-13, sweep=sweep, min_visits=0)
            assert sol.converged
            np.testing.assert_allclose(sol.values, ref_values, atol=1e-8)
            np.testing.assert_allclose(sol.q_values, ref_q, atol=1e-8)
            assert (ref_q[np.arange(S), sol.policy.numpy()] >= ref_values - 1e-8).all()
    sol = model.value_iteration(gamma=0.99, tol=1e-13, sweep="jacobi", num_threads=2,
                                min_visits=0)
    np.testing.assert_allclose(sol.values, reference_value_iteration(
        transitions, rewards, 0.99)[0], atol=1e-8)


def test_policy_iteration_agrees_with_value_iteration(frozenlake):
    P, S, A = frozenlake
    model = feed_true_model(P, S, A)
    vi = model.value_iteration(gamma=0.99, tol=1e-12)
    pi = model.policy_iteration(gamma=0.99, tol=1e-12)
    assert pi.converged and pi.evaluation_sweeps > 0
    np.testing.assert_allclose(pi.values, vi.values, atol=1e-8)
    np.testing.assert_allclose(vi.q_values[torch.arange(S), pi.policy], vi.values, atol=1e-8)


def test_warm_start_converges_to_the_same_values(frozenlake):
    P, S, A = frozenlake
    model = feed_true_model(P, S, A)
    cold = model.value_iteration(gamma=0.99, tol=1e-12)
    warm = model.value_iteration(gamma=0.99, tol=1e-12, initial_values=cold.values)
    assert warm.iterations < 5
    np.testing.assert_allclose(warm.values, cold.values, atol=1e-10)


def test_learned_model_converges_to_the_true_model(frozenlake):
    P, S, A = frozenlake
    # Outcome tables: slippery moves have three equally likely outcomes (or one, when done).
    outcomes = np.array([[[P[s][a][k % len(P[s][a])][1:] for k in range(3)] for a in range(A)]
                         for s in range(S)])  # [S, A, 3, (next, reward, done)]
    true = np.zeros((S, A, S))
    for s_ in range(S):
        for a_ in range(A):
            for p, nxt, _, _ in P[s_][a_]:
                true[s_, a_, nxt] += p
    rng = np.random.default_rng(0)
    model = wm.TabularModel(S, A)
    errors = []
    for n in (20_000, 80_000, 320_000, 1_280_000):
        s, a, k = rng.integers(0, S, n), rng.integers(0, A, n), rng.integers(0, 3, n)
        nxt, r, d = outcomes[s, a, k].T
        model.update(s, a, r, nxt.astype(np.int64), d.astype(bool))
        error = np.abs(model.transition_probs(dense=True).numpy() - true).max()
        # Each estimate has standard deviation <= sqrt(1/4 / N(s,a)); allow 5 of them.
        assert error < 5 * np.sqrt(0.25 / model.visit_counts().min().item())
        errors.append(error)
    assert errors[-1] < errors[0] / 3  # four times the data each step: the error shrinks


def test_rmax_values_unknown_pairs_optimistically():
    model = wm.TabularModel(3, 2)
    model.update([0, 0], [0, 0], [0.0, 0.0], [1, 1], [False, False])
    sol = model.value_iteration(gamma=0.9, r_max=1.0)
    assert sol.q_values[0, 1] == pytest.approx(10.0)  # never tried: r_max / (1 - gamma)
    assert sol.policy[0] == 1
    strict = model.value_iteration(gamma=0.9, r_max=1.0, min_visits=3)
    assert strict.q_values[0, 0] == pytest.approx(10.0)  # 2 visits < 3: still unknown
    plain = model.value_iteration(gamma=0.9)
    assert plain.q_values[0, 1] == 0.0


def test_sampling_is_reproducible_and_follows_the_counts():
    model = wm.TabularModel(3, 1)
    model.update([0] * 4, [0] * 4, [1.0, 1.0, 1.0, 5.0], [1, 1, 1, 2], [False] * 3 + [True])
    states, actions = np.zeros(20_000, np.int64), np.zeros(20_000, np.int64)
    next_states, rewards, terminated = model.sample(states, actions, seed=7)
    again = model.sample(states, actions, seed=np.random.default_rng(7))
    assert torch.equal(next_states, again[0])
    assert abs((next_states == 2).double().mean().item() - 0.25) < 0.02
    assert ((next_states == 2) == terminated).all()
    assert torch.equal(rewards, torch.where(next_states == 2, 5.0, 1.0).double())


def test_state_dict_round_trip_and_merge():
    rng = np.random.default_rng(3)
    a_model, b_model = wm.TabularModel(6, 3), wm.TabularModel(6, 3)
    first, second = random_batch(rng, 6, 3, 500), random_batch(rng, 6, 3, 300)
    a_model.update(*first)
    b_model.update(*second)
    restored = wm.TabularModel(6, 3)
    restored.load_state_dict(a_model.state_dict())
    for key, value in a_model.state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[key], value)
    both = wm.TabularModel(6, 3)
    both.update(*[np.concatenate(pair) for pair in zip(first, second)])
    a_model.merge(b_model)
    np.testing.assert_array_equal(a_model.transition_counts(dense=True),
                                  both.transition_counts(dense=True))
    np.testing.assert_allclose(a_model.mean_rewards(), both.mean_rewards())


# -- bad input: a clear error naming the argument, and the model unchanged ---------------------

def _model_with_data():
    model = wm.TabularModel(5, 2)
    model.update([0, 1], [1, 0], [1.0, 2.0], [2, 3], [False, True])
    return model


@pytest.mark.parametrize("kwargs, error, message", [
    ({"states": [0, 5]}, ValueError, r"states\[1\] = 5 is out of range: expected 0 <= states < 5"),
    ({"states": [-1, 0]}, ValueError, r"states\[0\] = -1 is out of range"),
    ({"actions": [0, 2]}, ValueError, r"actions\[1\] = 2 is out of range: expected 0 <= actions < 2"),
    ({"next_states": [7, 0]}, ValueError, r"next_states\[0\] = 7 is out of range"),
    ({"rewards": [0.0, np.nan]}, ValueError, r"rewards\[1\] = nan is not finite"),
    ({"rewards": [np.inf, 0.0]}, ValueError, r"rewards\[0\] = inf is not finite"),
    ({"states": [0.0, 1.0]}, TypeError, r"states must hold integer indices, got dtype float64"),
    ({"actions": [True, False]}, TypeError, r"actions must hold integer indices, got dtype bool"),
    ({"terminated": [0.5, 0.0]}, TypeError, r"terminated must hold booleans"),
    ({"rewards": ["a", "b"]}, TypeError, r"rewards must hold real numbers"),
    ({"actions": [0]}, ValueError, r"actions has length 1: expected length 2"),
    ({"states": [[0, 1]]}, ValueError, r"states must be 1-D, got an array of 2 dimensions"),
])
def test_bad_update_raises_and_changes_nothing(kwargs, error, message):
    model = _model_with_data()
    before = model.state_dict()
    batch = {"states": [0, 1], "actions": [0, 1], "rewards": [0.0, 0.0], "next_states": [1, 1],
             "terminated": [False, False], **kwargs}
    with pytest.raises(error, match=message):
        model.update(**batch)
    after = model.state_dict()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    assert model.num_transitions == 2


@pytest.mark.parametrize("args, kwargs, error, message", [
    ((0, 2), {}, ValueError, "num_states must be >= 1, got 0"),
    ((4, -1), {}, ValueError, "num_actions must be >= 1, got -1"),
    ((4, 2), {"prior": -0.5}, ValueError, "prior must be >= 0, got -0.5"),
    ((4.0, 2), {}, TypeError, "num_states must be an int, got float"),
    ((2**20, 2**12), {}, ValueError, "num_states \\* num_actions must be below 2\\^31"),
    ((4, 2), {"num_threads": 3}, ValueError, "num_threads must be 1, 2 or 4"),
])
def test_bad_sizes(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        wm.TabularModel(*args, **kwargs)


def test_bad_planning_arguments():
    model = _model_with_data()
    with pytest.raises(ValueError, match="gamma must be in \\[0, 1\\], got 1.5"):
        model.value_iteration(gamma=1.5)
    with pytest.raises(ValueError, match="tol must be > 0"):
        model.value_iteration(tol=0)
    with pytest.raises(ValueError, match="r_max needs gamma < 1"):
        model.value_iteration(gamma=1.0, r_max=1.0)
    with pytest.raises(ValueError, match="sweep must be 'gauss_seidel' or 'jacobi', got 'x'"):
        model.value_iteration(sweep="x")
    with pytest.raises(ValueError, match="initial_values has length 2: expected num_states = 5"):
        model.value_iteration(initial_values=[0.0, 0.0])
    with pytest.warns(RuntimeWarning, match="stopped after max_iters=1"):
        model.value_iteration(gamma=0.99, max_iters=1)


def test_bad_sample_and_state_inputs():
    model = _model_with_data()
    with pytest.raises(ValueError, match=r"\(states\[0\], actions\[0\]\) = \(4, 0\) was never"):
        model.sample([4], [0], seed=0)
    with pytest.raises(ValueError, match=r"actions\[0\] = 9 is out of range"):
        model.sample([0], [9], seed=0)
    with pytest.raises(ValueError, match="expected num_states=5, num_actions=2"):
        model.load_state_dict(wm.TabularModel(4, 2).state_dict())
    bad = model.state_dict()
    bad["counts"] = bad["counts"] * 0
    with pytest.raises(ValueError, match=r"counts\[0\] = 0: expected a positive count"):
        model.load_state_dict(bad)
    assert model.num_transitions == 2
    with pytest.raises(TypeError, match="other must be a TabularModel"):
        model.merge("not a model")
    with pytest.raises(ValueError, match="dense read-out would hold"):
        wm.TabularModel(2000, 20).transition_probs(dense=True)


def test_ctrl_c_interrupts_a_long_value_iteration(ctrl_c):
    model = wm.TabularModel(1, 1)
    model.update([0], [0], [1.0], [0], [False])  # undiscounted reward loop: never converges
    timer = threading.Timer(0.2, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        model.value_iteration(gamma=1.0, tol=1e-12, max_iters=10**12)
    timer.join()


def test_update_releases_the_gil():
    rng = np.random.default_rng(0)
    batch = random_batch(rng, 1000, 4, 3_000_000)
    model = wm.TabularModel(1000, 4)
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(1)

    thread = threading.Thread(target=tick)
    thread.start()
    try:
        before = len(ticks)
        model.update(*batch)
        during = len(ticks) - before
    finally:
        stop.set()
        thread.join()
    assert during > 0  # the other thread ran while the update was counting
