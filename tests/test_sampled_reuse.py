"""wm.SampledMCTS tree reuse (search(..., reuse=previous, action_taken=...)): a reused search
matches the pure-Python reference (tests/sampled_reference.py) continuing the same subtree, with
the samples of each node read from the C++ trees; visits carried over; dropped illegal samples;
determinism; bad reuse arguments rejected without changing anything."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import wmfast as wm
from hypothesis import given, settings
from hypothesis import strategies as st
from sampled_reference import reuse_subtree, search_one
from test_sampled_mcts import RandomModel, _assert_identical, _root


def _samples_from(tree, b):
    def samples_of(node, policy):
        n = int(tree.num_children[b, node])
        assert n > 0, f"tree {b}: node {node} was descended from by the reference only"
        return tree.children_actions[b, node, :n].tolist()
    return samples_of


def _compare(tree, b, ref):
    # The arena holds the largest kept subtree + N nodes: a tree with a smaller one leaves the
    # rest unused.
    L = len(ref["node_visits"])
    assert torch.all(tree.node_visits[b, L:] == 0)
    assert tree.node_visits[b, :L].tolist() == ref["node_visits"]
    assert tree.parents[b, :L].tolist() == ref["parents"]
    assert tree.action_from_parent[b, :L].tolist() == ref["action_from_parent"]
    np.testing.assert_allclose(tree.node_values[b, :L].numpy(), ref["node_values"], rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(tree.raw_values[b, :L].numpy(), ref["raw_values"], rtol=1e-5,
                               atol=1e-5)
    for n in range(len(ref["node_visits"])):
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


def _reference_first(out, model, root, b, N, continuous, max_depth):
    return search_one(model, root.latent[b : b + 1], [float(x) for x in root.logits[b]],
                      float(root.value[b]), _samples_from(out.tree, b), N, continuous,
                      max_depth=max_depth)


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    continuous=st.booleans(),
    K=st.integers(1, 5),
    N1=st.integers(1, 30),
    N2=st.integers(1, 30),
    max_depth=st.sampled_from([None, 2]),
    new_root=st.booleans(),
    data=st.data(),
)
def test_reused_search_matches_the_reference(seed, continuous, K, N1, N2, max_depth, new_root,
                                             data):
    B = 3
    if continuous:
        D = 2
        width, kwargs = 2 * D, {"action_dim": D}
        model = RandomModel(seed, width, D, continuous=True)
    else:
        A = max(K, 5)
        width, kwargs = A, {"num_actions": A}
        model = RandomModel(seed, A, A, continuous=False)
    planner = wm.SampledMCTS(num_samples=K, num_simulations=N1, dirichlet_fraction=0.0,
                             temperature=0.0, seed=seed, max_depth=max_depth, **kwargs)
    root = _root(B, width, seed, continuous)
    first = planner.search(model, root)
    refs = [_reference_first(first, model, root, b, N1, continuous, max_depth) for b in range(B)]
    # Per tree: a root sample (expanded or not) or -1, each with the new root when given.
    taken = []
    for b in range(B):
        n = int(first.tree.num_children[b, 0])
        choices = list(range(n)) + ([-1] if new_root else [])
        k = data.draw(st.sampled_from(choices))
        if not new_root and int(first.tree.children_index[b, 0, k]) < 0:
            k = int(first.index[b])  # without a root only an expanded sample can continue
        taken.append(k)
    root2 = _root(B, width, seed + 1, continuous) if new_root else None
    planner2 = wm.SampledMCTS(num_samples=K, num_simulations=N2, dirichlet_fraction=0.0,
                              temperature=0.0, seed=seed + 7, max_depth=max_depth, **kwargs)
    second = planner2.search(model, root2, reuse=first, action_taken=taken)
    tree = second.tree
    for b in range(B):
        k = taken[b]
        child = -1 if k < 0 else refs[b]["children"][0][k]
        if child < 0:  # afresh from root2
            ref = search_one(model, root2.latent[b : b + 1], [float(x) for x in root2.logits[b]],
                             float(root2.value[b]), _samples_from(tree, b), N2, continuous,
                             max_depth=max_depth)
        else:
            initial = reuse_subtree(
                refs[b], child, model, continuous,
                policy=None if root2 is None else [float(x) for x in root2.logits[b]],
                value=None if root2 is None else float(root2.value[b]),
            )
            if root2 is not None:
                initial["latent"][0] = root2.latent[b : b + 1]
            ref = search_one(model, None, None, None, _samples_from(tree, b), N2, continuous,
                             max_depth=max_depth, initial=initial)
        _compare(tree, b, ref)
        total = sum(ref["visits"][0])
        assert int(second.visit_counts[b].sum()) == total
        np.testing.assert_allclose(float(second.root_value[b]), ref["node_values"][0],
                                   rtol=1e-4, atol=1e-4)


def test_visits_are_carried_over_and_the_latents_follow():
    K, N, B, D = 4, 40, 5, 1
    model = RandomModel(3, 2 * D, D, continuous=True)
    root = _root(B, 2 * D, 3, True)
    planner = wm.SampledMCTS(num_samples=K, num_simulations=N, action_dim=D,
                             dirichlet_fraction=0.0, temperature=0.0)
    first = planner.search(model, root)
    child = first.tree.children_index[torch.arange(B), 0, first.index]
    kept_visits = first.tree.node_visits[torch.arange(B), child.long()]
    second = planner.search(model, None, reuse=first, action_taken=first.index)
    # The kept subtree's visits (its root's own one included) plus N new ones.
    assert torch.equal(second.tree.node_visits[:, 0], kept_visits + N)
    assert torch.equal(second.visit_counts.sum(1), kept_visits - 1 + N)
    torch.testing.assert_close(second.tree.latents[:, 0],
                               first.tree.latents[torch.arange(B), child.long()])
    # The kept root samples are the child's samples in the previous tree.
    torch.testing.assert_close(second.actions,
                               first.tree.children_actions[torch.arange(B), child.long()])
    assert second.tree.node_visits.shape[1] > N + 1  # capacity for the kept nodes


def test_illegal_kept_samples_are_dropped():
    A, K, B, N = 6, 6, 2, 60
    model = RandomModel(1, A, A, continuous=False)
    planner = wm.SampledMCTS(num_samples=K, num_simulations=N, num_actions=A,
                             dirichlet_fraction=0.0, temperature=0.0)
    root = _root(B, A, 1, False)
    first = planner.search(model, root)
    child = first.tree.children_index[torch.arange(B), 0, first.index].long()
    assert torch.all(first.tree.num_children[torch.arange(B), child] == A)
    legal = torch.ones(B, A, dtype=torch.bool)
    legal[:, 2] = False
    old_visits = first.tree.children_visits[torch.arange(B), child]
    second = planner.search(model, root, legal_actions=legal, reuse=first,
                            action_taken=first.index)
    assert torch.all(second.tree.num_children[:, 0] >= A - 1)
    assert not torch.any(second.actions == 2)
    # Before the new simulations, the kept samples held the old visits of those actions.
    second0 = wm.SampledMCTS(num_samples=K, num_simulations=1, num_actions=A,
                             dirichlet_fraction=0.0, temperature=0.0).search(
        model, root, legal_actions=legal, reuse=first, action_taken=first.index)
    for b in range(B):
        kept = [a for a in range(A) if a != 2]
        assert second0.actions[b, : A - 1].tolist() == kept
        expected = old_visits[b, kept]
        got = second0.visit_counts[b, : A - 1]
        assert int((got - expected).sum()) == 1 and torch.all(got >= expected)


@pytest.mark.parametrize("continuous", [True, False])
def test_reuse_is_deterministic_per_seed(continuous):
    B, K, N = 40, 4, 20
    width = 2 if continuous else 6
    kwargs = {"action_dim": 1} if continuous else {"num_actions": 6}
    model = RandomModel(2, width, 1 if continuous else 6, continuous)
    root = _root(B, width, 2, continuous)

    def run(seed, threads):
        p = wm.SampledMCTS(num_samples=K, num_simulations=N, seed=seed, num_threads=threads,
                           **kwargs)
        first = p.search(model, root)
        taken = first.index.clone()
        taken[::5] = -1
        return p.search(model, root, reuse=first, action_taken=taken)

    _assert_identical(run(4, 1), run(4, 1))
    _assert_identical(run(4, 1), run(4, 2))
    assert not torch.equal(run(4, 1).actions, run(5, 1).actions)


def test_bad_reuse_arguments_change_nothing():
    B, K, D = 3, 4, 1
    model = RandomModel(0, 2 * D, D, continuous=True)
    root = _root(B, 2 * D, 0, True)
    planner = wm.SampledMCTS(num_samples=K, num_simulations=10, action_dim=D,
                             dirichlet_fraction=0.0, temperature=0.0)
    first = planner.search(model, root)
    before = {name: t.clone() for name, t in first.tree.to_dict().items()}
    searches = planner._searches
    cases = [
        ({"reuse": first}, ValueError, "action_taken is required"),
        ({"reuse": first, "action_taken": [0, 1]}, ValueError, r"shape \[3\]"),
        ({"reuse": first, "action_taken": [0.5, 1, 1]}, TypeError, "integers"),
        ({"reuse": first, "action_taken": [0, K, 0]}, ValueError, r"action_taken\[1\]"),
        ({"reuse": first, "action_taken": [0, -2, 0]}, ValueError, r"action_taken\[1\]"),
        ({"reuse": "x", "action_taken": [0, 0, 0]}, TypeError, "reuse must be"),
        ({"action_taken": [0, 0, 0]}, ValueError, "only meaningful with reuse"),
        ({"reuse": first, "action_taken": [0, 0, 0], "root_actions": torch.zeros(B, K, D)},
         ValueError, "root_actions"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            planner.search(model, root, **kwargs)
    with pytest.raises(ValueError, match="needs a root"):
        planner.search(model, None, reuse=first, action_taken=[-1, 0, 0])
    unexpanded = [int((first.tree.children_index[b, 0] < 0).nonzero()[0])
                  if bool((first.tree.children_index[b, 0] < 0).any()) else -1 for b in range(B)]
    if unexpanded[0] >= 0:
        with pytest.raises(ValueError, match="never expanded"):
            planner.search(model, None, reuse=first, action_taken=[unexpanded[0], 0, 0])
    other = wm.SampledMCTS(num_samples=K + 1, num_simulations=10, action_dim=D)
    with pytest.raises(ValueError, match="num_samples"):
        other.search(model, root, reuse=first, action_taken=[0, 0, 0])
    with pytest.raises(ValueError, match="trees"):
        planner.search(model, _root(B + 1, 2 * D, 0, True), reuse=first,
                       action_taken=[0, 0, 0, 0])
    bad_root = wm.Root(root.latent, root.logits.clone(), root.value)
    bad_root.logits[1, 0] = float("nan")
    with pytest.raises(ValueError, match="root.logits"):
        planner.search(model, bad_root, reuse=first, action_taken=[0, 0, 0])
    assert planner._searches == searches
    for name, t in first.tree.to_dict().items():
        assert torch.equal(t.nan_to_num(7.0), before[name].nan_to_num(7.0)), name
    # The previous result still reuses fine after all that.
    again = planner.search(model, None, reuse=first, action_taken=first.index)
    assert int(again.visit_counts.sum()) > 0
