"""wm.SampledMCTS: against the pure-Python reference (tests/sampled_reference.py) with the
samples fixed, against wm.MCTS at K = A, on a continuous bandit with a known optimum, its
samplers' distributions, determinism, threads, and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import wmfast as wm
from hypothesis import given, settings
from hypothesis import strategies as st
from sampled_reference import search_one

LATENT = 5


class RandomModel:
    """A fixed random torch model: tanh dynamics, linear heads, discounts from {1, 0.9, 0, -1}
    (a terminal step and a two-player sign flip included) picked by the latent."""

    def __init__(self, seed, policy_width, action_width, continuous, discounts=True):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(LATENT, LATENT, generator=g) * 0.8
        self.U = torch.randn(action_width, LATENT, generator=g)
        self.heads = torch.randn(LATENT, policy_width + 2, generator=g) * 0.7
        self.continuous = continuous
        self.action_width = action_width
        self.policy_width = policy_width
        self.discounts = discounts

    def __call__(self, latent, action):
        if self.continuous:
            a = action.to(torch.float32)
        else:
            a = torch.nn.functional.one_hot(action, self.action_width).to(torch.float32)
        nxt = torch.tanh(latent @ self.W + a @ self.U)
        out = nxt @ self.heads
        logits = out[:, : self.policy_width]
        if self.continuous:
            # mean in [-1.5, 1.5], log_std in [-1.5, 0.5]
            D = self.policy_width // 2
            logits = torch.cat([1.5 * torch.tanh(logits[:, :D]), torch.tanh(logits[:, D:]) - 0.5], 1)
        reward = out[:, -2]
        value = out[:, -1]
        discount = None
        if self.discounts:
            table = torch.tensor([1.0, 0.9, 0.0, -1.0])
            discount = table[(nxt[:, 0] * 7).floor().long().remainder(4)]
        return wm.Step(nxt, reward, logits, value, discount)


def _root(B, width, seed, continuous):
    g = torch.Generator().manual_seed(1000 + seed)
    latent = torch.randn(B, LATENT, generator=g)
    logits = torch.randn(B, width, generator=g)
    if continuous:
        D = width // 2
        logits[:, D:] = logits[:, D:].clamp(-1.5, 0.5)
    return wm.Root(latent, logits, torch.randn(B, generator=g))


def _check_against_reference(out, model, root, K, N, continuous, discount, max_depth,
                             unvisited_parent_value=False):
    tree = out.tree
    B = out.visit_counts.shape[0]
    for b in range(B):
        def samples_of(node, policy, b=b):
            n = int(tree.num_children[b, node])
            assert n > 0, f"tree {b}: node {node} was descended from by the reference only"
            acts = tree.children_actions[b, node, :n]
            return acts.tolist()

        ref = search_one(
            model, root.latent[b : b + 1], [float(x) for x in root.logits[b]],
            float(root.value[b]), samples_of, N, continuous, discount=discount,
            max_depth=max_depth, unvisited_parent_value=unvisited_parent_value,
        )
        assert tree.node_visits[b].tolist() == ref["node_visits"]
        assert tree.parents[b].tolist() == ref["parents"]
        assert tree.action_from_parent[b].tolist() == ref["action_from_parent"]
        np.testing.assert_allclose(tree.node_values[b].numpy(), ref["node_values"], rtol=1e-4,
                                   atol=1e-4)
        np.testing.assert_allclose(tree.raw_values[b].numpy(), ref["raw_values"], rtol=1e-5,
                                   atol=1e-5)
        for n in range(N + 1):
            if ref["actions"][n] is None:
                assert int(tree.num_children[b, n]) == 0
                continue
            k = len(ref["actions"][n])
            assert int(tree.num_children[b, n]) == k
            assert tree.children_index[b, n, :k].tolist() == ref["children"][n]
            assert tree.children_visits[b, n, :k].tolist() == ref["visits"][n]
            np.testing.assert_allclose(tree.children_priors[b, n, :k].numpy(), ref["priors"][n],
                                       rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(tree.q_values[b, n, :k].numpy(), ref["q"][n], rtol=1e-4,
                                       atol=1e-4)
        root_visits = ref["visits"][0]
        k = len(root_visits)
        assert out.visit_counts[b, :k].tolist() == root_visits
        best = max(range(k), key=lambda i: (root_visits[i], -i))
        assert int(out.index[b]) == best
        np.testing.assert_allclose(float(out.root_value[b]), ref["node_values"][0], rtol=1e-4,
                                   atol=1e-4)
        total = sum(root_visits)
        np.testing.assert_allclose(out.policy[b, :k].numpy(), [v / total for v in root_visits],
                                   rtol=1e-6)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    K=st.integers(1, 6),
    N=st.integers(1, 40),
    D=st.integers(1, 3),
    max_depth=st.sampled_from([None, 1, 2, 4]),
    discount=st.sampled_from([1.0, 0.95]),
    unvisited_q=st.sampled_from(["min", "parent_value"]),
)
def test_continuous_matches_reference(seed, K, N, D, max_depth, discount, unvisited_q):
    model = RandomModel(seed, 2 * D, D, continuous=True)
    root = _root(3, 2 * D, seed, continuous=True)
    planner = wm.SampledMCTS(num_samples=K, num_simulations=N, action_dim=D, action_low=-1.0,
                             action_high=1.2, dirichlet_fraction=0.0, temperature=0.0, seed=seed,
                             max_depth=max_depth, discount=discount, unvisited_q=unvisited_q)
    out = planner.search(model, root)
    assert out.actions.shape == (3, K, D) and out.action.shape == (3, D)
    assert torch.all(out.actions >= -1.0) and torch.all(out.actions <= 1.2)
    torch.testing.assert_close(out.action, out.actions[torch.arange(3), out.index])
    _check_against_reference(out, model, root, K, N, True, discount, max_depth,
                             unvisited_q == "parent_value")


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    A=st.integers(2, 8),
    N=st.integers(1, 40),
    max_depth=st.sampled_from([None, 1, 3]),
    data=st.data(),
)
def test_discrete_matches_reference(seed, A, N, max_depth, data):
    K = data.draw(st.integers(1, A))
    model = RandomModel(seed, A, A, continuous=False)
    root = _root(3, A, seed, continuous=False)
    planner = wm.SampledMCTS(num_samples=K, num_simulations=N, num_actions=A,
                             dirichlet_fraction=0.0, temperature=0.0, seed=seed,
                             max_depth=max_depth)
    out = planner.search(model, root)
    assert out.actions.shape == (3, K) and out.action.shape == (3,)
    for row in out.actions.tolist():
        assert len(set(row)) == K and all(0 <= a < A for a in row) and row == sorted(row)
    torch.testing.assert_close(out.action, out.actions[torch.arange(3), out.index])
    _check_against_reference(out, model, root, K, N, False, 1.0, max_depth)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_discrete_with_all_actions_is_mcts(seed):
    # K = A: every node samples all actions, priors = softmax(logits): wm.MCTS's search.
    A, N, B = 5, 60, 8
    model = RandomModel(seed, A, A, continuous=False)
    root = _root(B, A, seed, continuous=False)
    samp = wm.SampledMCTS(num_samples=A, num_simulations=N, num_actions=A,
                          dirichlet_fraction=0.0, temperature=0.0)
    mcts = wm.MCTS(num_actions=A, num_simulations=N, dirichlet_fraction=0.0, temperature=0.0)
    s, m = samp.search(model, root), mcts.search(model, root)
    assert torch.equal(s.actions, torch.arange(A).expand(B, A))
    assert torch.equal(s.visit_counts, m.visit_counts)
    assert torch.equal(s.action, m.action)
    torch.testing.assert_close(s.q_values, m.q_values)
    torch.testing.assert_close(s.root_value, m.root_value)
    torch.testing.assert_close(s.policy, m.policy)
    for name in ("node_visits", "parents", "action_from_parent", "children_index",
                 "children_visits"):
        assert torch.equal(getattr(s.tree, name), getattr(m.tree, name)), name
    for name in ("node_values", "children_values", "children_rewards", "children_discounts"):
        torch.testing.assert_close(getattr(s.tree, name), getattr(m.tree, name))
    # Priors exist where the search descended (wm.MCTS also fills them at leaves for inspection).
    sampled = s.tree.num_children > 0
    torch.testing.assert_close(s.tree.children_priors[sampled], m.tree.children_priors[sampled])


def _bandit(optimum, D=1):
    """One-step bandit: reward -(a[0] - optimum)^2, then terminal."""

    def model(latent, action):
        n = latent.shape[0]
        reward = -((action[:, 0] - optimum) ** 2)
        return wm.Step(latent, reward, torch.zeros(n, 2 * D), torch.zeros(n), torch.zeros(n))

    return model


def test_bandit_converges_to_the_optimum():
    optimum, B = 0.37, 64
    root = wm.Root(torch.zeros(B, 1), torch.tensor([[0.0, 0.0]]).expand(B, 2), torch.zeros(B))
    errors = []
    for N in (8, 32, 128, 512):
        # K grows with N (2 sqrt(N)): the chosen sample can only be as good as the best of K.
        planner = wm.SampledMCTS(num_samples=int(2 * N**0.5), num_simulations=N, action_dim=1,
                                 action_low=-2.0, action_high=2.0, dirichlet_fraction=0.0,
                                 temperature=0.0, seed=3, unvisited_q="parent_value")
        out = planner.search(_bandit(optimum), root)
        errors.append(float((out.action[:, 0] - optimum).abs().mean()))
    # measured: 0.29, 0.14, 0.065, 0.028 (with unvisited_q="min": 0.45, 0.48, 0.53, 0.42)
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 0.05, errors


def test_bandit_finds_the_best_sample():
    # With K fixed, enough simulations single out the best of the K samples.
    optimum, B, K = -0.6, 64, 8
    root = wm.Root(torch.zeros(B, 1), torch.tensor([[0.0, 0.0]]).expand(B, 2), torch.zeros(B))
    planner = wm.SampledMCTS(num_samples=K, num_simulations=400, action_dim=1, action_low=-2.0,
                             action_high=2.0, dirichlet_fraction=0.0, temperature=0.0,
                             unvisited_q="parent_value")
    out = planner.search(_bandit(optimum), root)
    best = (out.actions[:, :, 0] - optimum).abs().argmin(1)
    assert (out.index == best).float().mean() >= 0.95


def test_continuous_samples_follow_the_gaussian():
    K, B = 4000, 2
    mean, log_std = torch.tensor([0.3, -0.2]), torch.tensor([-1.0, -0.5])
    root = wm.Root(torch.zeros(B, 1), torch.cat([mean, log_std]).expand(B, 4), torch.zeros(B))
    planner = wm.SampledMCTS(num_samples=K, num_simulations=1, action_dim=2, action_low=-5.0,
                             action_high=5.0, dirichlet_fraction=0.0)
    out = planner.search(_bandit(0.0, D=2), root)
    x = out.actions.double()
    torch.testing.assert_close(x.mean(1), mean.double().expand(B, 2), atol=0.02, rtol=0)
    torch.testing.assert_close(x.std(1), log_std.exp().double().expand(B, 2), atol=0.02, rtol=0)
    # beta-hat: 1/K per sample
    torch.testing.assert_close(out.priors, torch.full((B, K), 1.0 / K))
    assert not torch.equal(out.actions[0], out.actions[1])  # each tree its own stream


def test_continuous_samples_are_clipped_to_the_bounds():
    B, K = 3, 200
    root = wm.Root(torch.zeros(B, 1), torch.tensor([[2.0, 1.0]]).expand(B, 2), torch.zeros(B))
    planner = wm.SampledMCTS(num_samples=K, num_simulations=5, action_dim=1, action_low=-0.5,
                             action_high=1.5, dirichlet_fraction=0.0)
    out = planner.search(_bandit(0.0), root)
    assert out.actions.min() >= -0.5 and out.actions.max() <= 1.5
    assert (out.actions == 1.5).float().mean() > 0.5  # mean 2 is above the bound


def _inclusion_probabilities(logits, K):
    """P(a in the sample) of K draws without replacement from softmax(logits), by enumeration."""
    p = softmax = np.exp(logits - logits.max())
    p = softmax / softmax.sum()
    A = len(p)
    incl = np.zeros(A)
    for order in itertools.permutations(range(A), K):
        prob, left = 1.0, 1.0
        for a in order:
            prob *= p[a] / left
            left -= p[a]
        incl[list(order)] += prob
    return incl


def test_discrete_samples_are_gumbel_top_k():
    A, K, B = 5, 2, 4000
    logits = np.array([1.0, 0.0, -1.0, 0.5, -np.inf], dtype=np.float32)
    root = wm.Root(torch.zeros(B, 1), torch.tensor(logits).expand(B, A), torch.zeros(B))
    planner = wm.SampledMCTS(num_samples=K, num_simulations=1, num_actions=A,
                             dirichlet_fraction=0.0)

    def model(latent, action):
        n = latent.shape[0]
        return wm.Step(latent, torch.zeros(n), torch.zeros(n, A), torch.zeros(n))

    out = planner.search(model, root)
    counts = np.bincount(out.actions.reshape(-1).numpy(), minlength=A) / B
    expected = _inclusion_probabilities(logits[:4].astype(np.float64), K)
    np.testing.assert_allclose(counts[:4], expected, atol=0.03)
    assert counts[4] == 0  # -inf is never drawn
    # prior: the policy restricted to the sample, renormalised
    chosen = out.actions.numpy()
    prior = np.exp(logits[chosen]) / np.exp(logits[chosen]).sum(1, keepdims=True)
    np.testing.assert_allclose(out.priors.numpy(), prior, rtol=1e-5)


def test_fewer_candidates_than_samples_and_legal_actions():
    A, K, B = 6, 4, 5
    legal = torch.zeros(B, A, dtype=torch.bool)
    legal[:, [1, 4]] = True
    root = _root(B, A, 0, continuous=False)
    planner = wm.SampledMCTS(num_samples=K, num_simulations=20, num_actions=A,
                             dirichlet_fraction=0.0)
    out = planner.search(RandomModel(0, A, A, False), root, legal_actions=legal)
    assert torch.equal(out.actions, torch.tensor([[1, 4, -1, -1]]).expand(B, K))
    assert torch.all(out.visit_counts[:, 2:] == 0) and torch.all(out.priors[:, 2:] == 0)
    assert torch.all((out.action == 1) | (out.action == 4))
    assert torch.all(out.tree.num_children[:, 0] == 2)


def test_root_actions_are_used_as_given():
    B, K, D = 2, 3, 2
    fixed = torch.tensor([[[0.1, 0.2], [0.3, -0.4], [-1.0, 1.0]]]).expand(B, K, D)
    planner = wm.SampledMCTS(num_samples=K, num_simulations=10, action_dim=D,
                             dirichlet_fraction=0.0, temperature=0.0)
    model = RandomModel(0, 2 * D, D, True)
    out = planner.search(model, _root(B, 2 * D, 0, True), root_actions=fixed)
    assert torch.equal(out.actions, fixed)
    torch.testing.assert_close(out.priors, torch.full((B, K), 1.0 / K))
    A = 6
    dplanner = wm.SampledMCTS(num_samples=2, num_simulations=10, num_actions=A,
                              dirichlet_fraction=0.0)
    root = _root(B, A, 0, False)
    out = dplanner.search(RandomModel(0, A, A, False), root, root_actions=[[5, 2], [0, 1]])
    assert out.actions.tolist() == [[5, 2], [0, 1]]
    logits = root.logits
    expected = torch.softmax(torch.stack([logits[0, [5, 2]], logits[1, [0, 1]]]), 1)
    torch.testing.assert_close(out.priors, expected)


def _all_outputs(out):
    d = out.to_dict()
    d["latents"] = out.tree.latents
    return d


def _assert_identical(x, y):
    dx, dy = _all_outputs(x), _all_outputs(y)
    assert dx.keys() == dy.keys()
    for name in dx:
        assert torch.equal(dx[name].nan_to_num(7.0), dy[name].nan_to_num(7.0)), name


@pytest.mark.parametrize("continuous", [True, False])
def test_seeds_are_bit_identical_and_threads_change_nothing(continuous):
    B, K, N = 96, 5, 30
    width = 4 if continuous else 7
    kwargs = {"action_dim": 2} if continuous else {"num_actions": 7}
    model = RandomModel(5, width, 2 if continuous else 7, continuous)
    root = _root(B, width, 5, continuous)

    def run(seed, threads):
        planner = wm.SampledMCTS(num_samples=K, num_simulations=N, seed=seed,
                                 num_threads=threads, **kwargs)
        return planner.search(model, root), planner.search(model, root)

    a1, a2 = run(11, 1)
    b1, b2 = run(11, 1)
    c1, c2 = run(11, 3)
    _assert_identical(a1, b1)
    _assert_identical(a2, b2)
    _assert_identical(a1, c1)
    _assert_identical(a2, c2)
    d1, _ = run(12, 1)
    assert not torch.equal(a1.actions, d1.actions)
    assert not torch.equal(a1.actions, a2.actions)  # each search a fresh stream


def test_dirichlet_noise_and_temperature():
    B, K = 4, 6
    root = _root(B, 2, 0, True)
    planner = wm.SampledMCTS(num_samples=K, num_simulations=20, action_dim=1,
                             dirichlet_fraction=0.5)
    out = planner.search(RandomModel(0, 2, 1, True), root)
    torch.testing.assert_close(out.priors.sum(1), torch.ones(B))
    assert not torch.allclose(out.priors, torch.full((B, K), 1.0 / K))
    assert torch.all(out.tree.children_priors[:, 0] == out.priors)


def test_tree_inspection_and_dot():
    root = _root(2, 2, 0, True)
    planner = wm.SampledMCTS(num_samples=3, num_simulations=12, action_dim=1)
    out = planner.search(RandomModel(0, 2, 1, True), root)
    tree = out.tree
    assert tree.children_actions.shape == (2, 13, 3, 1)
    torch.testing.assert_close(tree.children_actions[:, 0], out.actions)
    dot = out.to_dot(1)
    visited = int(out.visit_counts[1].argmax())  # only expanded edges are drawn
    assert dot.startswith("digraph") and f"a=[{float(out.actions[1, visited, 0]):.3f}]" in dot
    expanded = tree.node_visits > 0
    assert torch.all(tree.latents[~expanded] == 0)
    assert set(tree.to_dict()) >= {"children_actions", "num_children", "children_visits"}


def test_model_sees_float_actions():
    seen = []

    def model(latent, action):
        seen.append((action.dtype, tuple(action.shape)))
        n = latent.shape[0]
        return wm.Step(latent, torch.zeros(n), torch.zeros(n, 6), torch.zeros(n))

    planner = wm.SampledMCTS(num_samples=2, num_simulations=3, action_dim=3)
    planner.search(model, wm.Root(torch.zeros(4, 2), torch.zeros(4, 6), torch.zeros(4)))
    assert seen == [(torch.float32, (4, 3))] * 3


# --------------------------------------------------------------------------- bad input


def _free(width):
    def model(latent, action):
        n = latent.shape[0]
        return wm.Step(latent, torch.zeros(n), torch.zeros(n, width), torch.zeros(n))

    return model


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_samples": 0, "num_simulations": 5}, ValueError, "num_samples must be >= 1, got 0"),
        ({"num_samples": 5, "num_simulations": 5, "num_actions": 4}, ValueError,
         "num_samples must be <= num_actions=4.*got 5"),
        ({"num_samples": 2, "num_simulations": 0}, ValueError, "num_simulations must be >= 1"),
        ({"num_samples": 2, "num_simulations": 5, "num_actions": 4, "action_dim": 1}, ValueError,
         "not both"),
        ({"num_samples": 2, "num_simulations": 5, "action_dim": 2, "action_low": [-1, -1, -1]},
         ValueError, r"action_low must be a number or have shape \[2\].*got \[3\]"),
        ({"num_samples": 2, "num_simulations": 5, "action_dim": 1, "action_low": 1.0, "action_high": 1.0},
         ValueError, "action_low must be below action_high"),
        ({"num_samples": 2, "num_simulations": 5, "action_dim": 1, "action_high": float("inf")},
         ValueError, "action_high must hold finite"),
        ({"num_samples": 2.0, "num_simulations": 5}, TypeError, "num_samples must be an int"),
        ({"num_samples": 2, "num_simulations": 5, "qtransform": "completed_by_mix_value"},
         ValueError, "qtransform"),
        ({"num_samples": 2, "num_simulations": 5, "temperature": -1.0}, ValueError, "temperature"),
    ],
)
def test_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        wm.SampledMCTS(**kwargs)


def test_bad_model_outputs_name_the_field():
    B = 3
    root = wm.Root(torch.zeros(B, 2), torch.zeros(B, 2), torch.zeros(B))
    planner = wm.SampledMCTS(num_samples=2, num_simulations=4, action_dim=1)

    def nan_mean(latent, action):
        n = latent.shape[0]
        logits = torch.zeros(n, 2)
        logits[1, 0] = float("nan")
        return wm.Step(latent, torch.zeros(n), logits, torch.zeros(n))

    def inf_log_std(latent, action):
        n = latent.shape[0]
        logits = torch.zeros(n, 2)
        logits[2, 1] = -float("inf")
        return wm.Step(latent, torch.zeros(n), logits, torch.zeros(n))

    def wide(latent, action):
        n = latent.shape[0]
        return wm.Step(latent, torch.zeros(n), torch.zeros(n, 3), torch.zeros(n))

    def nan_value(latent, action):
        n = latent.shape[0]
        return wm.Step(latent, torch.zeros(n), torch.zeros(n, 2), torch.full((n,), float("nan")))

    with pytest.raises(ValueError, match="Step.logits.*batch index 1"):
        planner.search(nan_mean, root)
    with pytest.raises(ValueError, match="Step.logits.*finite.*batch index 2, column 1"):
        planner.search(inf_log_std, root)
    with pytest.raises(ValueError, match=r"Step.logits must have shape \[3, 2\].*mean, then "
                       r"log_std.*got \[3, 3\]"):
        planner.search(wide, root)
    with pytest.raises(ValueError, match="Step.value"):
        planner.search(nan_value, root)
    # rejected searches change nothing: the next search is a fresh planner's first
    fresh = wm.SampledMCTS(num_samples=2, num_simulations=4, action_dim=1)
    _assert_identical(planner.search(_free(2), root), fresh.search(_free(2), root))


def test_bad_search_inputs_name_the_argument():
    B, K, D = 2, 3, 2
    planner = wm.SampledMCTS(num_samples=K, num_simulations=4, action_dim=D)
    good = wm.Root(torch.zeros(B, 1), torch.zeros(B, 2 * D), torch.zeros(B))
    with pytest.raises(ValueError, match=r"root.logits must have shape \[2, 4\].*got \[2, 3\]"):
        planner.search(_free(4), wm.Root(torch.zeros(B, 1), torch.zeros(B, 3), torch.zeros(B)))
    bad = torch.zeros(B, 2 * D)
    bad[1, 3] = float("inf")
    with pytest.raises(ValueError, match="root.logits"):
        planner.search(_free(4), wm.Root(torch.zeros(B, 1), bad, torch.zeros(B)))
    with pytest.raises(ValueError, match="root.value"):
        planner.search(_free(4), wm.Root(torch.zeros(B, 1), torch.zeros(B, 4),
                                         torch.tensor([0.0, float("nan")])))
    with pytest.raises(ValueError, match="legal_actions: continuous"):
        planner.search(_free(4), good, legal_actions=torch.ones(B, 4, dtype=torch.bool))
    outside = torch.zeros(B, K, D)
    outside[1, 2, 0] = 1.5
    with pytest.raises(ValueError, match=r"root_actions\[1, 2, 0\] = 1.5 is outside"):
        planner.search(_free(4), good, root_actions=outside)
    with pytest.raises(ValueError, match=r"root_actions must have shape \[2, 3, 2\]"):
        planner.search(_free(4), good, root_actions=torch.zeros(B, K))
    with pytest.raises(TypeError, match="model must have a recurrent_inference"):
        planner.search(42, good)
    A = 5
    dplanner = wm.SampledMCTS(num_samples=2, num_simulations=4, num_actions=A)
    droot = wm.Root(torch.zeros(B, 1), torch.zeros(B, A), torch.zeros(B))
    with pytest.raises(ValueError, match=r"root_actions\[0\] holds action 3 twice"):
        dplanner.search(_free(A), droot, root_actions=[[3, 3], [0, 1]])
    with pytest.raises(ValueError, match=r"root_actions\[1, 1\] must be in \[0, 5\), got 5"):
        dplanner.search(_free(A), droot, root_actions=[[3, 2], [0, 5]])
    legal = torch.ones(B, A, dtype=torch.bool)
    legal[1] = False
    with pytest.raises(ValueError, match="every action is illegal at the root of tree 1"):
        dplanner.search(_free(A), droot, legal_actions=legal)
    with pytest.raises(ValueError, match=r"Step.logits must have shape \[2, 5\].*got \[2, 4\]"):
        dplanner.search(_free(4), droot)
    # the rejected calls changed nothing
    fresh = wm.SampledMCTS(num_samples=K, num_simulations=4, action_dim=D)
    _assert_identical(planner.search(_free(4), good), fresh.search(_free(4), good))


def test_action_dim_from_the_first_root():
    planner = wm.SampledMCTS(num_samples=4, num_simulations=8)
    assert planner.action_dim is None
    with pytest.raises(ValueError, match=r"2 \* action_dim"):
        planner.search(_free(3), wm.Root(torch.zeros(2, 1), torch.zeros(2, 3), torch.zeros(2)))
    assert planner.action_dim is None  # the rejected call changed nothing
    out = planner.search(_free(6), wm.Root(torch.zeros(2, 1), torch.zeros(2, 6), torch.zeros(2)))
    assert planner.action_dim == 3 and out.actions.shape == (2, 4, 3)
    assert out.actions.abs().max() <= 1.0  # the default bounds


def test_interrupt_is_a_keyboard_interrupt(ctrl_c):
    import _thread

    calls = []

    def model(latent, action):
        calls.append(1)
        if len(calls) == 3:
            _thread.interrupt_main()
        n = latent.shape[0]
        return wm.Step(latent, torch.zeros(n), torch.zeros(n, 2), torch.zeros(n))

    planner = wm.SampledMCTS(num_samples=2, num_simulations=100, action_dim=1)
    with pytest.raises(KeyboardInterrupt):
        planner.search(model, wm.Root(torch.zeros(2, 1), torch.zeros(2, 2), torch.zeros(2)))
    assert len(calls) < 10


def test_softmax_helper_sanity():
    # the enumeration helper above is itself right on a case computed by hand
    incl = _inclusion_probabilities(np.log(np.array([0.5, 0.25, 0.25])), 2)
    # P(0 in) = 1 - P(order 1,2 or 2,1) = 1 - 2 * 0.25 * (0.25 / 0.75)
    assert math.isclose(incl[0], 1 - 2 * 0.25 * 0.25 / 0.75)
    assert math.isclose(incl.sum(), 2.0)
