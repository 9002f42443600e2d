"""wmfast.MCTS / GumbelMCTS: agreement with the pure-Python reference, search behaviour on small
problems with known answers, reproducibility, tree reuse and input validation."""

from __future__ import annotations

import _thread
import threading

import numpy as np
import pytest
import torch
import wmfast as wm
from mcts_reference import search_one

D = 6  # latent width of the random model


class RandomModel:
    """A deterministic random model, evaluated row by row in float64 (so a batched call and the
    reference's one-row calls give identical float32 outputs)."""

    def __init__(self, num_actions, seed=0, discounts=(1.0,), reward_scale=1.0):
        rng = np.random.default_rng(seed)
        self.A = num_actions
        self.w = rng.normal(size=(num_actions, D, D)) / np.sqrt(D)
        self.b = rng.normal(size=(num_actions, D))
        self.u_reward = rng.normal(size=D) * reward_scale
        self.u_value = rng.normal(size=D)
        self.v_logits = rng.normal(size=(num_actions, D))
        self.discounts = discounts
        self.calls = 0

    def step_row(self, latent, action):
        x = np.tanh(self.w[action] @ latent.astype(np.float64) + self.b[action])
        nxt = x.astype(np.float32)
        reward = np.float32(np.tanh(self.u_reward @ x))
        logits = (self.v_logits @ x).astype(np.float32)
        value = np.float32(np.tanh(self.u_value @ x))
        k = int(abs(x[0]) * 1000) % len(self.discounts)
        return nxt, reward, logits, value, np.float32(self.discounts[k])

    def recurrent_inference(self, latent, action):
        self.calls += 1
        rows = [self.step_row(latent[i].numpy(), int(action[i])) for i in range(latent.shape[0])]
        return wm.Step(
            latent=torch.from_numpy(np.stack([r[0] for r in rows])),
            reward=torch.tensor([r[1] for r in rows]),
            logits=torch.from_numpy(np.stack([r[2] for r in rows])),
            value=torch.tensor([r[3] for r in rows]),
            discount=torch.tensor([r[4] for r in rows]),
        )

    def root(self, batch_size, seed=1):
        rng = np.random.default_rng(seed)
        latent = rng.normal(size=(batch_size, D)).astype(np.float32)
        logits = rng.normal(size=(batch_size, self.A)).astype(np.float32)
        value = rng.uniform(-1, 1, size=batch_size).astype(np.float32)
        return wm.Root(torch.from_numpy(latent), torch.from_numpy(logits), torch.from_numpy(value))


def _check_against_reference(result, reference, b):
    tree = result.tree
    for name in (
        "node_visits",
        "parents",
        "action_from_parent",
        "children_index",
        "children_visits",
    ):
        np.testing.assert_array_equal(getattr(tree, name)[b], reference[name], err_msg=name)
    for name in (
        "raw_values",
        "node_values",
        "children_priors",
        "children_values",
        "children_rewards",
        "children_discounts",
    ):
        np.testing.assert_allclose(
            getattr(tree, name)[b], reference[name], rtol=1e-4, atol=1e-5, err_msg=name
        )
    np.testing.assert_array_equal(result.visit_counts[b], reference["visit_counts"])
    assert result.action[b] == reference["action"]
    np.testing.assert_allclose(result.root_value[b], reference["root_value"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.q_values[b], reference["q_values"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.policy[b], reference["policy"], rtol=1e-4, atol=1e-6)


def _run_reference(model, root, b, num_simulations, **kwargs):
    return search_one(
        model.step_row,
        root.latent[b].numpy(),
        root.logits[b].numpy(),
        float(root.value[b]),
        model.A,
        num_simulations,
        **kwargs,
    )


@pytest.mark.parametrize(
    "qtransform, ref_kwargs",
    [
        ("parent_and_siblings", {"qtransform": "parent_and_siblings"}),
        (
            wm.qtransform_by_min_max(-2.0, 2.0),
            {"qtransform": "min_max", "min_value": -2.0, "max_value": 2.0},
        ),
        ("running_min_max", {"qtransform": "running_min_max"}),
    ],
)
@pytest.mark.parametrize("discounts", [(1.0,), (1.0, 1.0, 0.0), (-1.0,)])
@pytest.mark.parametrize("num_threads", [1, 2])
def test_mcts_matches_reference(qtransform, ref_kwargs, discounts, num_threads):
    A, N = 5, 40
    B = 4 if num_threads == 1 else 70  # threads get at least 32 trees each
    model = RandomModel(A, seed=3, discounts=discounts)
    root = model.root(B)
    legal = np.ones((B, A), bool)
    legal[1, [0, 2]] = False
    legal[3, 1:] = False
    mcts = wm.MCTS(
        A,
        N,
        discount=0.95,
        dirichlet_fraction=0.0,
        temperature=0.0,
        qtransform=qtransform,
        num_threads=num_threads,
    )
    result = mcts.search(model, root, legal_actions=legal)
    assert model.calls == N
    for b in range(B):
        reference = _run_reference(
            model, root, b, N, discount=0.95, invalid=~legal[b], **ref_kwargs
        )
        _check_against_reference(result, reference, b)


@pytest.mark.parametrize("max_depth", [1, 2, 3])
def test_mcts_max_depth_matches_reference(max_depth):
    A, B, N = 3, 3, 25
    model = RandomModel(A, seed=5)
    root = model.root(B, seed=2)
    mcts = wm.MCTS(A, N, dirichlet_fraction=0.0, temperature=0.0, max_depth=max_depth)
    result = mcts.search(model, root)
    for b in range(B):
        _check_against_reference(result, _run_reference(model, root, b, N, max_depth=max_depth), b)
    parents = result.tree.parents.numpy()
    depth = np.zeros(parents.shape, int)
    for n in range(1, depth.shape[1]):
        parent = parents[:, n]
        depth[:, n] = np.where(parent >= 0, depth[np.arange(B), np.maximum(parent, 0)] + 1, 0)
    assert depth.max() == min(max_depth, N)


@pytest.mark.parametrize(
    "settings",
    [
        {
            "value_scale": 0.1,
            "maxvisit_init": 50.0,
            "rescale_values": True,
            "use_mixed_value": True,
        },
        {
            "value_scale": 0.5,
            "maxvisit_init": 20.0,
            "rescale_values": False,
            "use_mixed_value": True,
        },
        {
            "value_scale": 0.1,
            "maxvisit_init": 50.0,
            "rescale_values": True,
            "use_mixed_value": False,
        },
    ],
)
@pytest.mark.parametrize("max_considered", [2, 4, 16])
def test_gumbel_matches_reference(settings, max_considered):
    A, B, N = 6, 3, 30
    model = RandomModel(A, seed=7, discounts=(1.0, -1.0))
    root = model.root(B, seed=4)
    gumbel = np.random.default_rng(0).gumbel(size=(B, A)).astype(np.float32)
    legal = np.ones((B, A), bool)
    legal[2, :3] = False
    planner = wm.GumbelMCTS(
        A,
        N,
        max_num_considered_actions=max_considered,
        qtransform=wm.qtransform_completed_by_mix_value(**settings),
    )
    result = planner.search(model, root, legal_actions=legal, gumbel=gumbel)
    np.testing.assert_array_equal(result.gumbel, gumbel)
    for b in range(B):
        reference = _run_reference(
            model,
            root,
            b,
            N,
            invalid=~legal[b],
            gumbel=gumbel[b],
            max_num_considered_actions=max_considered,
            **settings,
        )
        _check_against_reference(result, reference, b)


def _bandit(rewards):
    rewards = torch.as_tensor(rewards, dtype=torch.float32)

    def model(latent, action):
        B = latent.shape[0]
        return wm.Step(
            latent,
            rewards[action],
            torch.zeros(B, rewards.shape[0]),
            torch.zeros(B),
            torch.zeros(B),
        )

    return model


def test_bandit_best_arm_most_visited_and_value_converges():
    rewards = [0.1, 0.5, 0.9, 0.3]
    B, A = 2, 4
    root = wm.Root(torch.zeros(B, 1), torch.zeros(B, A), torch.zeros(B))
    result = wm.MCTS(
        A,
        400,
        dirichlet_fraction=0.0,
        temperature=0.0,
        qtransform=wm.qtransform_by_min_max(0.0, 1.0),
    ).search(_bandit(rewards), root)
    assert (result.action == 2).all()
    assert (result.visit_counts.argmax(dim=1) == 2).all()
    np.testing.assert_allclose(result.q_values[0], rewards, atol=1e-6)
    assert result.root_value[0] > 0.8  # the mean of the returns tends to the best arm's 0.9


def _nim(num_take=2):
    """Two players alternately take 1..num_take stones; whoever takes the last one wins."""

    def model(latent, action):
        pile = latent[:, 0]
        take = (action + 1).to(pile.dtype)
        over = pile <= 0  # the game already ended: absorbing state
        illegal = (take > pile) & ~over
        nxt = torch.where(over | illegal, torch.zeros_like(pile), pile - take)
        reward = torch.where(over, 0.0, torch.where(illegal, -1.0, (nxt == 0).float()))
        discount = torch.where(over | illegal | (nxt == 0), 0.0, -1.0)
        B = latent.shape[0]
        return wm.Step(nxt[:, None], reward, torch.zeros(B, num_take), torch.zeros(B), discount)

    return model


@pytest.mark.parametrize("pile, winning", [(4, 0), (5, 1), (7, 0), (8, 1)])
def test_two_player_search_finds_winning_move(pile, winning):
    root = wm.Root(torch.tensor([[float(pile)]]), torch.zeros(1, 2), torch.zeros(1))
    result = wm.MCTS(2, 300, dirichlet_fraction=0.0, temperature=0.0).search(_nim(), root)
    assert result.action[0] == winning
    assert result.q_values[0, winning] > 0.5
    gumbel = wm.GumbelMCTS(2, 64, gumbel_scale=0.0).search(_nim(), root)
    assert gumbel.action[0] == winning


def test_terminal_step_cuts_off_the_future():
    # Action 0 pays 1 and ends the episode; afterwards the model reports a huge value and reward
    # that must never be backed up through the terminal edge.
    def model(latent, action):
        done = latent[:, 0] > 0
        ended = (action == 0) | done
        reward = torch.where(done, 100.0, torch.where(action == 0, 1.0, 0.0))
        value = torch.where(ended, 100.0, 0.5)
        discount = torch.where(ended, 0.0, 1.0)
        B = latent.shape[0]
        return wm.Step(ended.float()[:, None], reward, torch.zeros(B, 2), value, discount)

    root = wm.Root(torch.zeros(1, 1), torch.zeros(1, 2), torch.zeros(1))
    result = wm.MCTS(2, 50, dirichlet_fraction=0.0, temperature=0.0).search(model, root)
    assert result.q_values[0, 0] == pytest.approx(1.0)
    # Inside the terminal subtree the absorbing rewards exist, but discount 0 hides them.
    assert result.tree.children_discounts[0, 0, 0] == 0.0
    assert result.action[0] == 0


def test_illegal_actions_never_chosen_or_visited():
    A, B = 6, 16
    model = RandomModel(A, seed=11, discounts=(1.0, -1.0))
    rng = np.random.default_rng(0)
    legal = rng.random((B, A)) < 0.4
    legal[np.arange(B), rng.integers(0, A, B)] = True
    legal_t = torch.from_numpy(legal)
    rows = torch.arange(B)
    for seed in range(5):
        mcts = wm.MCTS(
            A, 30, dirichlet_fraction=0.5, dirichlet_alpha=0.3, seed=seed, temperature=1.0
        )
        result = mcts.search(model, model.root(B, seed=seed), legal_actions=legal)
        assert legal_t[rows, result.action].all()
        assert (result.visit_counts[~legal_t] == 0).all()
        assert (result.policy[~legal_t] == 0).all()
        gumbel = wm.GumbelMCTS(A, 30, max_num_considered_actions=4, seed=seed)
        result = gumbel.search(model, model.root(B, seed=seed), legal_actions=legal_t)
        assert legal_t[rows, result.action].all()
        assert (result.visit_counts[~legal_t] == 0).all()
        assert (result.policy[~legal_t] == 0).all()
        torch.testing.assert_close(result.policy.sum(dim=1), torch.ones(B), rtol=1e-5, atol=0)


def test_seeds_reproducible_and_threads_do_not_change_results():
    A, B = 5, 100  # 3 threads get 33 trees each
    model = RandomModel(A, seed=2)

    def run(seed, num_threads=1, cls=wm.MCTS, **kwargs):
        planner = cls(A, 25, seed=seed, num_threads=num_threads, **kwargs)
        return [planner.search(model, model.root(B)) for _ in range(2)]

    def noise(result):
        # What the seed drives: Dirichlet-noised root logits, or the root Gumbel noise.
        return (
            result.gumbel if result.gumbel is not None else result.tree.children_prior_logits[:, 0]
        )

    for cls, kwargs in ((wm.MCTS, {"dirichlet_fraction": 0.25}), (wm.GumbelMCTS, {})):
        a1, a2 = run(0, cls=cls, **kwargs)
        b1, b2 = run(0, num_threads=3, cls=cls, **kwargs)
        c1, _ = run(1, cls=cls, **kwargs)
        for x, y in ((a1, b1), (a2, b2)):
            dx, dy = x.to_dict(), y.to_dict()
            assert dx.keys() == dy.keys()
            for name in dx:
                assert torch.equal(dx[name], dy[name]), name
        # A fresh stream for each search of one planner, and for another seed.
        assert not torch.equal(noise(a1), noise(a2))
        assert not torch.equal(noise(a1), noise(c1))


def test_temperature_sampling_follows_visits():
    A, B = 4, 2000
    model = _bandit([0.0, 0.0, 0.0, 0.0])
    root = wm.Root(
        torch.zeros(B, 1), torch.tensor([[3.0, 2.0, 1.0, 0.0]]).repeat(B, 1), torch.zeros(B)
    )
    result = wm.MCTS(A, 20, dirichlet_fraction=0.0, temperature=1.0, seed=3).search(model, root)
    counts = torch.bincount(result.action, minlength=A) / B
    torch.testing.assert_close(counts, result.policy.mean(dim=0), atol=0.05, rtol=0)
    greedy = wm.MCTS(A, 20, dirichlet_fraction=0.0, temperature=0.0).search(model, root)
    assert (greedy.action == greedy.visit_counts.argmax(dim=1)).all()


def test_tree_reuse_continues_from_the_child_subtree():
    A, B, N = 4, 3, 30
    model = RandomModel(A, seed=4)
    root = model.root(B)
    mcts = wm.MCTS(A, N, dirichlet_fraction=0.0, temperature=0.0)
    first = mcts.search(model, root)
    taken = first.action.clone()
    child = first.tree.children_index[torch.arange(B), 0, taken]
    assert (child > 0).all()
    second = mcts.search(model, None, reuse=first, action_taken=taken)
    for b in range(B):
        old = first.tree
        new = second.tree
        # The root's children statistics carry over, then N more simulations are added.
        kept = old.children_visits[b, child[b]]
        assert new.children_visits[b, 0].sum() == kept.sum() + N
        assert new.node_visits[b, 0] == old.node_visits[b, child[b]] + N
        assert torch.equal(new.children_prior_logits[b, 0], old.children_prior_logits[b, child[b]])
        # Latents follow their nodes: the new root holds the old child's latent.
        torch.testing.assert_close(new.latents[b, 0], old.latents[b, child[b]])
        for a in range(A):
            old_grandchild = old.children_index[b, child[b], a]
            if old_grandchild >= 0:
                new_child = new.children_index[b, 0, a]
                assert new_child > 0
                torch.testing.assert_close(
                    new.latents[b, new_child], old.latents[b, old_grandchild]
                )
                assert new.children_visits[b, 0, a] >= old.children_visits[b, child[b], a]
    # Reused subtrees are consistent trees: each node's visits = 1 + its children's visits.
    t = second.tree
    for b in range(B):
        for n in range(t.node_visits.shape[1]):
            if t.node_visits[b, n] > 0:
                assert t.node_visits[b, n] == 1 + t.children_visits[b, n].sum()
    # A new root replaces the subtree root's prior and value but keeps its statistics.
    third = mcts.search(model, model.root(B, seed=9), reuse=second, action_taken=second.action)
    assert (third.tree.node_visits[:, 0] > N).all()
    torch.testing.assert_close(third.tree.raw_values[:, 0], model.root(B, seed=9).value)


def test_tree_reuse_starts_trees_marked_minus_one_afresh():
    # Self-play resets an environment whose episode ended: that tree keeps nothing, the others
    # continue their subtrees, all in one search.
    A, B, N = 4, 3, 20
    model = RandomModel(A, seed=4)
    mcts = wm.MCTS(A, N, dirichlet_fraction=0.0, temperature=0.0)
    first = mcts.search(model, model.root(B))
    new_roots = model.root(B, seed=9)
    taken = first.action.clone()
    continued = mcts.search(model, new_roots, reuse=first, action_taken=taken)
    taken[1] = -1
    mixed = mcts.search(model, new_roots, reuse=first, action_taken=taken)
    fresh = mcts.search(model, new_roots)
    # Tree 1 is exactly a fresh search from its new root (no noise: the search is deterministic).
    assert torch.equal(mixed.visit_counts[1], fresh.visit_counts[1])
    assert torch.equal(mixed.q_values[1], fresh.q_values[1])
    assert mixed.tree.node_visits[1, 0] == N + 1
    torch.testing.assert_close(mixed.tree.latents[1, 0], new_roots.latent[1])
    # Trees 0 and 2 continue their subtrees as if no tree had restarted.
    for b in (0, 2):
        assert torch.equal(mixed.visit_counts[b], continued.visit_counts[b])
        assert mixed.tree.node_visits[b, 0] > N + 1
    # Every tree marked -1: the same as a fresh search.
    all_fresh = mcts.search(model, new_roots, reuse=first, action_taken=[-1] * B)
    assert torch.equal(all_fresh.visit_counts, fresh.visit_counts)
    torch.testing.assert_close(all_fresh.root_value, fresh.root_value)


def test_tree_reuse_without_a_root_applies_legal_actions():
    A, B = 4, 2
    model = RandomModel(A, seed=4)
    mcts = wm.MCTS(A, 40, dirichlet_fraction=0.0)
    first = mcts.search(model, model.root(B))
    legal = np.ones((B, A), bool)
    legal[:, 1] = False
    second = mcts.search(model, None, reuse=first, action_taken=first.action, legal_actions=legal)
    assert second.tree.root_invalid_actions[:, 1].all()
    assert (second.visit_counts[:, 1] == 0).all()  # the kept subtree under action 1 is dropped
    assert (second.tree.children_index[:, 0, 1] == -1).all()
    none_legal = np.ones((B, A), bool)
    none_legal[1] = False
    with pytest.raises(ValueError, match="every action is illegal at the root of tree 1"):
        mcts.search(model, None, reuse=first, action_taken=first.action, legal_actions=none_legal)


def test_tree_reuse_errors():
    A, B = 4, 2
    model = RandomModel(A, seed=4)
    mcts = wm.MCTS(A, 3, dirichlet_fraction=0.0, temperature=0.0)
    first = mcts.search(model, model.root(B))
    unexpanded = first.visit_counts.argmin(dim=1)
    with pytest.raises(ValueError, match="never expanded"):
        mcts.search(model, None, reuse=first, action_taken=unexpanded)
    restarted = mcts.search(model, model.root(B), reuse=first, action_taken=unexpanded)
    assert (restarted.tree.node_visits[:, 0] == 4).all()
    with pytest.raises(ValueError, match="action_taken is required"):
        mcts.search(model, None, reuse=first)
    with pytest.raises(ValueError, match=r"action_taken must be in \[0, 4\) \(or -1: start that "
                       r"tree afresh\), got 7"):
        mcts.search(model, None, reuse=first, action_taken=[7, 0])
    with pytest.raises(ValueError, match=r"got -2"):
        mcts.search(model, model.root(B), reuse=first, action_taken=[-2, 0])
    with pytest.raises(ValueError, match=r"action_taken\[1\] is -1 \(start afresh\), which needs a "
                       "root"):
        mcts.search(model, None, reuse=first, action_taken=[0, -1])
    gumbel_result = wm.GumbelMCTS(A, 3).search(model, model.root(B))
    with pytest.raises(
        ValueError, match="reuse must come from a MCTS search, got a result of GumbelMCTS"
    ):
        mcts.search(model, None, reuse=gumbel_result, action_taken=[0, 0])
    with pytest.raises(ValueError, match="previous search had 4 actions"):
        wm.MCTS(5, 3).search(model, None, reuse=first, action_taken=[0, 0])


def test_gumbel_sequential_halving_budget_and_improved_policy():
    # A bandit (discount 0): with 4 considered actions and 16 simulations, sequential halving
    # visits 4 actions 2x, then the best 2 of them 4x more each.
    rewards = [0.0, 0.2, 0.9, 0.5, 0.1, 0.3]
    A = len(rewards)
    root = wm.Root(torch.zeros(1, 1), torch.zeros(1, A), torch.zeros(1))
    planner = wm.GumbelMCTS(A, 16, max_num_considered_actions=4, gumbel_scale=0.0)
    result = planner.search(_bandit(rewards), root)
    visits = result.visit_counts[0]
    assert visits.sum() == 16
    assert sorted(visits[visits > 0].tolist()) == [2, 2, 6, 6]
    # With uniform priors and no noise, the first four actions are considered; the best two
    # (2 and 3) get the extra visits and the best one is played.
    assert set(torch.nonzero(visits == 6).flatten().tolist()) == {2, 3}
    assert result.action[0] == 2
    # The improved policy is softmax(logits + sigma(completed Q)): monotone in Q.
    assert torch.argsort(result.policy[0, :4]).tolist() == [0, 1, 3, 2]
    assert result.policy.sum().item() == pytest.approx(1.0, rel=1e-6)


def test_to_dict_and_to_dot():
    A, B = 3, 2
    model = RandomModel(A)
    result = wm.MCTS(A, 8).search(model, model.root(B))
    d = result.to_dict()
    assert d["children_index"].shape == (B, 9, A)
    assert d["node_visits"][:, 0].tolist() == [9, 9]
    assert all(isinstance(v, torch.Tensor) for v in d.values())
    dot = result.to_dot(1)
    assert dot.startswith("digraph") and dot.count("->") == 8
    with pytest.raises(IndexError, match="batch_index"):
        result.to_dot(5)


def test_keyboard_interrupt_stops_a_long_search(ctrl_c):
    calls = []

    def model(latent, action):
        calls.append(1)
        if len(calls) == 50:
            threading.Timer(0.05, _thread.interrupt_main).start()
        B = latent.shape[0]
        return wm.Step(latent, torch.zeros(B), torch.zeros(B, 2), torch.zeros(B))

    root = wm.Root(torch.zeros(1, 1), torch.zeros(1, 2), torch.zeros(1))
    with pytest.raises(KeyboardInterrupt):
        wm.MCTS(2, 10_000_000).search(model, root)
    assert len(calls) < 10_000_000


def test_model_exception_propagates():
    def model(latent, action):
        raise RuntimeError("model exploded")

    root = wm.Root(torch.zeros(2, 1), torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(RuntimeError, match="model exploded"):
        wm.MCTS(2, 5).search(model, root)


@pytest.mark.parametrize("habit", ["keeps", "keeps a view", "modifies", "keeps some"])
def test_model_may_keep_or_modify_its_inputs(habit):
    # The search hands the model the same input tensors again when the model kept neither them
    # nor a view of them: what a model keeps must stay as it was given, and a model that writes
    # into its inputs must not change the search.
    inner = RandomModel(3, seed=4)
    kept = []

    def model(latent, action):
        given = (latent.clone(), action.clone())
        step = inner.recurrent_inference(latent, action)
        if habit == "keeps" or (habit == "keeps some" and inner.calls % 3 == 0):
            kept.append(((latent, action), given))
        elif habit == "keeps a view":
            kept.append(((latent[1:, :2], action[1:]), (given[0][1:, :2], given[1][1:])))
        elif habit == "modifies":
            latent.fill_(float("nan"))
            action.fill_(-1)
        return step

    root = inner.root(5)
    result = wm.MCTS(3, 30, dirichlet_fraction=0.0).search(model, root)
    expected = wm.MCTS(3, 30, dirichlet_fraction=0.0).search(RandomModel(3, seed=4), root)
    assert torch.equal(result.visit_counts, expected.visit_counts)
    assert torch.equal(result.tree.node_values, expected.tree.node_values)
    for (latent, action), (latent_given, action_given) in kept:
        assert torch.equal(latent, latent_given) and torch.equal(action, action_given)
    assert len(kept) >= (0 if habit == "modifies" else 9)


# ---------------------------------------------------------------------------------------------
# Bad input: each raises a clear error naming the argument, the expected and the received.

B_, A_ = 3, 4


def _ok_root():
    return wm.Root(torch.zeros(B_, 2), torch.zeros(B_, A_), torch.zeros(B_))


def _model_returning(**overrides):
    def model(latent, action):
        fields = {
            "latent": latent.clone(),
            "reward": torch.zeros(B_),
            "logits": torch.zeros(B_, A_),
            "value": torch.zeros(B_),
            "discount": None,
        }
        fields.update({k: (v(latent) if callable(v) else v) for k, v in overrides.items()})
        return wm.Step(**fields)

    return model


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (
            {"reward": torch.zeros(B_, 1)},
            ValueError,
            r"Step.reward must have shape \[3\] \(one per tree\), got \[3, 1\]",
        ),
        (
            {"logits": torch.zeros(B_, A_ + 1)},
            ValueError,
            r"Step.logits must have shape \[3, 4\] \(batch, num_actions\), got \[3, 5\]",
        ),
        (
            {"value": torch.zeros(B_, dtype=torch.int64)},
            TypeError,
            "Step.value must be a floating-point tensor, got dtype Long",
        ),
        (
            {"value": torch.tensor([0.0, float("nan"), 0.0])},
            ValueError,
            r"Step.value holds a non-finite value \(nan\) at batch index 1",
        ),
        (
            {"reward": torch.tensor([0.0, 0.0, float("inf")])},
            ValueError,
            r"Step.reward holds a non-finite value \(inf\) at batch index 2",
        ),
        (
            {"logits": torch.full((B_, A_), float("-inf"))},
            ValueError,
            "Step.logits is -inf for every action at batch index 0",
        ),
        ({"discount": torch.zeros(2)}, ValueError, r"Step.discount must have shape \[3\]"),
        ({"reward": 0.0}, TypeError, "Step.reward must be a torch.Tensor, got float"),
        (
            {"latent": lambda x: x[:, :1].clone()},
            ValueError,
            r"Step.latent must have shape \[3, 2\], got \[3, 1\]",
        ),
        (
            {"latent": lambda x: x.double()},
            TypeError,
            "Step.latent must have dtype Double|Step.latent must have dtype Float",
        ),
        (
            {"latent": lambda x: x.to("meta")},
            ValueError,
            "Step.latent must be on device cpu .*got meta",
        ),
        ({"latent": None}, ValueError, "Step.latent is missing"),
    ],
)
def test_bad_model_outputs(overrides, error, message):
    with pytest.raises(error, match=message):
        wm.MCTS(A_, 4).search(_model_returning(**overrides), _ok_root())


def test_model_logits_may_mask_with_minus_inf():
    logits = torch.zeros(B_, A_)
    logits[:, 0] = float("-inf")
    result = wm.MCTS(A_, 10).search(_model_returning(logits=logits), _ok_root())
    assert result.tree.children_priors[:, 1:, 0].max() == 0.0


def test_model_not_returning_a_step():
    def model(latent, action):
        return (latent, torch.zeros(B_), torch.zeros(B_, A_), torch.zeros(B_))

    with pytest.raises(ValueError, match="must return a wmfast.Step"):
        wm.MCTS(A_, 2).search(model, _ok_root())


@pytest.mark.parametrize(
    "root, error, message",
    [
        (
            wm.Root(torch.zeros(B_, 2), torch.zeros(B_, A_ + 1), torch.zeros(B_)),
            ValueError,
            r"root.logits has 5 actions \(shape \[3, 5\]\) but num_actions=4",
        ),
        (
            wm.Root(torch.zeros(B_, 2), torch.zeros(B_ + 1, A_), torch.zeros(B_)),
            ValueError,
            r"root.logits must have shape \[3, 4\], got \[4, 4\]",
        ),
        (
            wm.Root(torch.zeros(B_, 2), torch.zeros(B_, A_, dtype=torch.int32), torch.zeros(B_)),
            TypeError,
            "root.logits must hold floating-point numbers, got dtype torch.int32",
        ),
        (
            wm.Root(torch.zeros(B_, 2), torch.zeros(B_, A_), torch.zeros(B_, 1)),
            ValueError,
            r"root.value must have shape \[3\], got \[3, 1\]",
        ),
        (
            wm.Root(torch.zeros(B_, 2), torch.zeros(B_, A_), torch.tensor([0.0, float("nan"), 0])),
            ValueError,
            r"root.value holds a non-finite value \(nan\) at index \[1\]",
        ),
        (
            wm.Root(torch.zeros(B_, 2), torch.full((B_, A_), float("nan")), torch.zeros(B_)),
            ValueError,
            r"root.logits holds a non-finite value \(nan\) at index \[0, 0\]",
        ),
        (
            wm.Root(
                torch.zeros(B_, 2),
                np.array([[0, 0, 0, 0], [0, 0, np.inf, 0], [0] * 4]),
                torch.zeros(B_),
            ),
            ValueError,
            r"root.logits holds a non-finite value \(inf\) at index \[1, 2\]",
        ),
        (
            wm.Root(
                torch.zeros(B_, 2),
                torch.tensor([[0.0] * A_, [0.0] * A_, [-float("inf")] * A_]),
                torch.zeros(B_),
            ),
            ValueError,
            "root.logits is -inf for every action at batch index 2",
        ),
        (
            wm.Root({"not": "a tensor"}, torch.zeros(B_, A_), torch.zeros(B_)),
            TypeError,
            "root.latent must hold numbers or booleans, got dict",
        ),
        ((torch.zeros(B_, 2), torch.zeros(B_, A_)), TypeError, "root must be a wmfast.Root"),
        (
            wm.Root(torch.zeros(0, 2), torch.zeros(0, A_), torch.zeros(0)),
            ValueError,
            "batch size 0",
        ),
    ],
)
def test_bad_roots(root, error, message):
    with pytest.raises(error, match=message):
        wm.MCTS(A_, 2).search(_model_returning(), root)


def test_non_finite_root_inputs_of_reuse_and_gumbel():
    # Minus infinity masks a root action; NaN anywhere is an error, on every path into a search.
    logits = torch.zeros(B_, A_)
    logits[0, 1] = -float("inf")
    first = wm.MCTS(A_, 3).search(
        _model_returning(), wm.Root(torch.zeros(B_, 2), logits, torch.zeros(B_))
    )
    assert first.visit_counts[0, 1] == 0
    bad = wm.Root(torch.zeros(B_, 2), torch.zeros(B_, A_), torch.tensor([0.0, 0.0, np.nan]))
    with pytest.raises(
        ValueError, match=r"root.value holds a non-finite value \(nan\) at index \[2\]"
    ):
        wm.MCTS(A_, 3).search(_model_returning(), bad, reuse=first, action_taken=first.action)
    noise = np.zeros((B_, A_), np.float32)
    noise[1, 3] = np.nan
    with pytest.raises(
        ValueError, match=r"gumbel holds a non-finite value \(nan\) at index \[1, 3\]"
    ):
        wm.GumbelMCTS(A_, 3).search(_model_returning(), _ok_root(), gumbel=noise)


def test_all_actions_illegal_at_a_root():
    legal = np.ones((B_, A_), bool)
    legal[1] = False
    with pytest.raises(
        ValueError,
        match=r"legal_actions: every action is illegal at the root "
        r"of tree 1",
    ):
        wm.MCTS(A_, 2).search(_model_returning(), _ok_root(), legal_actions=legal)
    # With threads setting up the roots, the error still names the first such tree.
    B = 3000
    legal = np.ones((B, A_), bool)
    # The last tree of the second thread's shard and the first of the third's (1000 trees each):
    # the third thread reaches its bad tree first.
    legal[[1999, 2000]] = False
    model = wm.MCTS(A_, 2, num_threads=3, dirichlet_fraction=0.25)
    root = wm.Root(torch.zeros(B, 2), torch.zeros(B, A_), torch.zeros(B))
    for _ in range(5):
        with pytest.raises(ValueError, match=r"illegal at the root of tree 1999 "):
            model.search(lambda latent, action: None, root, legal_actions=legal)
    with pytest.raises(ValueError, match=r"legal_actions must have shape \[3, 4\]"):
        wm.MCTS(A_, 2).search(_model_returning(), _ok_root(), legal_actions=legal[:, :2])
    with pytest.raises(TypeError, match="legal_actions must hold booleans"):
        wm.MCTS(A_, 2).search(_model_returning(), _ok_root(), legal_actions=legal * 0.5)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"num_simulations": 0}, ValueError, "num_simulations must be >= 1, got 0"),
        ({"num_simulations": 2.5}, TypeError, "num_simulations must be an int, got float"),
        ({"num_actions": 0}, ValueError, "num_actions must be >= 1, got 0"),
        ({"dirichlet_fraction": 1.5}, ValueError, r"dirichlet_fraction must be in \[0, 1\]"),
        ({"temperature": -1.0}, ValueError, "temperature must be a finite number >= 0"),
        ({"num_threads": 0}, ValueError, "num_threads must be >= 1, got 0"),
        ({"max_depth": 0}, ValueError, "max_depth must be >= 1, got 0"),
        ({"qtransform": "bogus"}, ValueError, "qtransform must be one of"),
        ({"discount": float("nan")}, ValueError, "discount must be a finite number"),
        ({"qtransform": wm.qtransform_completed_by_mix_value()}, ValueError, "use GumbelMCTS"),
    ],
)
def test_bad_settings(kwargs, error, message):
    args = {"num_actions": A_, "num_simulations": 2}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        wm.MCTS(**args)


def test_bad_gumbel_settings_and_model():
    with pytest.raises(ValueError, match="max_num_considered_actions must be >= 1"):
        wm.GumbelMCTS(A_, 4, max_num_considered_actions=0)
    with pytest.raises(ValueError, match="gumbel_scale must be >= 0"):
        wm.GumbelMCTS(A_, 4, gumbel_scale=-1.0)
    with pytest.raises(ValueError, match="GumbelMCTS uses qtransform_completed_by_mix_value"):
        wm.GumbelMCTS(A_, 4, qtransform="parent_and_siblings")
    with pytest.raises(ValueError, match=r"gumbel must have shape \[3, 4\]"):
        wm.GumbelMCTS(A_, 4).search(_model_returning(), _ok_root(), gumbel=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="max_value - min_value must be in"):
        wm.qtransform_by_min_max(1.0, 1.0)
    with pytest.raises(TypeError, match="model must have a recurrent_inference"):
        wm.MCTS(A_, 2).search(object(), _ok_root())


def test_numpy_root_and_plain_function_model():
    root = wm.Root(np.zeros((B_, 2), np.float32), np.zeros((B_, A_)), np.zeros(B_))
    result = wm.MCTS(A_, 6).search(_model_returning(), root)
    assert result.visit_counts.sum() == B_ * 6
