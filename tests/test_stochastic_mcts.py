"""wmfast.StochasticMCTS: agreement with a small pure-Python Stochastic MuZero search, model-call
counts, reproducibility, threads, inspection and input validation (the node-for-node match with
mctx is tests/test_stochastic_mctx.py)."""

from __future__ import annotations

import _thread
import math
import threading

import numpy as np
import pytest
import torch
import wmfast as wm
from hypothesis import given, settings
from hypothesis import strategies as st

D = 5  # latent width


class RandomStochasticModel:
    """A deterministic random model evaluated row by row in float64 (a batched call and the
    reference's one-row calls give identical float32 outputs). Counts calls and rows."""

    def __init__(self, A, C, seed=0, discount=1.0):
        rng = np.random.default_rng(seed)
        self.A, self.C = A, C
        self.wd = rng.normal(size=(A, D, D)) / np.sqrt(D)
        self.bd = rng.normal(size=(A, D))
        self.wc = rng.normal(size=(C, D)) * 1.5
        self.vd = rng.normal(size=D)
        self.ws = rng.normal(size=(C, D, D)) / np.sqrt(D)
        self.bs = rng.normal(size=(C, D))
        self.wa = rng.normal(size=(A, D)) * 1.5
        self.vs = rng.normal(size=D)
        self.wr = rng.normal(size=D)
        self.discount = discount
        self.decision_calls = self.chance_calls = 0
        self.decision_rows = self.chance_rows = 0

    def decision_row(self, latent, action):
        x = np.tanh(self.wd[action] @ latent.astype(np.float64) + self.bd[action])
        return (
            x.astype(np.float32),
            (self.wc @ x).astype(np.float32),
            np.float32(np.tanh(self.vd @ x)),
        )

    def chance_row(self, afterstate, outcome):
        x = np.tanh(self.ws[outcome] @ afterstate.astype(np.float64) + self.bs[outcome])
        return (
            x.astype(np.float32),
            np.float32(np.tanh(self.wr @ x)),
            (self.wa @ x).astype(np.float32),
            np.float32(np.tanh(self.vs @ x)),
            np.float32(self.discount),
        )

    def decision(self, latent, action):
        self.decision_calls += 1
        self.decision_rows += latent.shape[0]
        rows = [self.decision_row(x, int(a)) for x, a in zip(latent.numpy(), action.numpy())]
        return wm.Afterstate(*(torch.from_numpy(np.stack(col)) for col in zip(*rows)))

    def chance(self, afterstate, outcome):
        self.chance_calls += 1
        self.chance_rows += afterstate.shape[0]
        rows = [self.chance_row(x, int(c)) for x, c in zip(afterstate.numpy(), outcome.numpy())]
        latent, reward, logits, value, discount = (np.stack(col) for col in zip(*rows))
        return wm.Step(
            *(torch.from_numpy(v) for v in (latent, reward, logits, value)),
            discount=torch.from_numpy(discount),
        )

    def root(self, B, seed=1):
        rng = np.random.default_rng(seed)
        return wm.Root(
            torch.from_numpy(rng.normal(size=(B, D)).astype(np.float32)),
            rng.normal(size=(B, self.A)).astype(np.float32),
            np.tanh(rng.normal(size=B)).astype(np.float32),
        )


def softmax(x):
    m = max(x)
    e = [math.exp(v - m) for v in x]
    return [v / sum(e) for v in e]


def reference_search(model, latent, logits, value, num_simulations, *, discount=1.0,
                     pb_c_init=1.25, pb_c_base=19652.0, max_depth=None):
    """One tree of Stochastic MuZero, written from the paper and mctx's semantics (pUCT with
    mctx's parent-and-siblings normalisation at decision nodes, argmax p/(N+1) at chance nodes;
    lowest index wins ties). Returns (node_visits, node_values, children, is_chance, visits at
    the root)."""
    N = num_simulations + 1
    visits, values, parents, via = [0] * N, [0.0] * N, [-1] * N, [-1] * N
    rewards, discounts = [0.0] * N, [0.0] * N  # of the edge into the node
    chance = [False] * N
    priors, children, latents = [None] * N, [None] * N, [None] * N
    A, C = model.A, model.C
    priors[0], children[0], latents[0] = softmax(list(logits)), [-1] * A, latent
    visits[0], values[0] = 1, float(value)

    def q(node, a):
        child = children[node][a]
        return rewards[child] + discounts[child] * values[child]

    def select(node, depth):
        kids = children[node]
        child_visits = [visits[k] if k >= 0 else 0 for k in kids]
        if chance[node]:
            scores = [p / (n + 1) for p, n in zip(priors[node], child_visits)]
            return int(np.argmax(np.asarray(scores, np.float32)))
        lo = hi = values[node]
        for a, n in enumerate(child_visits):
            if n > 0:
                lo, hi = min(lo, q(node, a)), max(hi, q(node, a))
        nv = visits[node]
        pb_c = pb_c_init + math.log((nv + pb_c_base + 1) / pb_c_base)
        scores = []
        for a, n in enumerate(child_visits):
            v = (q(node, a) - lo) / max(hi - lo, 1e-8) if n > 0 else 0.0
            scores.append(v + math.sqrt(nv) * pb_c * priors[node][a] / (n + 1))
        return int(np.argmax(scores))

    for sim in range(num_simulations):
        node, depth = 0, 0
        while True:
            a = select(node, depth)
            depth += 1
            child = children[node][a]
            if child >= 0 and (max_depth is None or depth < max_depth):
                node = child
                continue
            break
        leaf = child if child >= 0 else sim + 1
        if chance[node]:
            nxt, r, lg, v, d = model.chance_row(latents[node], a)
            rewards[leaf], discounts[leaf] = float(r), float(d) * discount
            chance[leaf], kids = False, [-1] * A
        else:
            nxt, lg, v = model.decision_row(latents[node], a)
            rewards[leaf], discounts[leaf] = 0.0, 1.0
            chance[leaf], kids = True, [-1] * C
        if children[leaf] is None:
            children[leaf] = kids
        latents[leaf], priors[leaf] = nxt, softmax([float(x) for x in lg])
        values[leaf] = float(v)
        visits[leaf] += 1
        parents[leaf], via[leaf] = node, a
        children[node][a] = leaf
        g, n = values[leaf], leaf
        while parents[n] >= 0:
            g = rewards[n] + discounts[n] * g
            p = parents[n]
            values[p] = (values[p] * visits[p] + g) / (visits[p] + 1)
            visits[p] += 1
            n = p
    root_visits = [visits[k] if k >= 0 else 0 for k in children[0]]
    return visits, values, children, chance, root_visits


@pytest.mark.parametrize("discount, step_discount, max_depth, num_threads", [
    (1.0, 1.0, None, 1), (0.9, -1.0, None, 1), (1.0, 1.0, 3, 1), (0.95, 1.0, None, 2),
])
def test_matches_pure_python_reference(discount, step_discount, max_depth, num_threads):
    A, C, N = 3, 4, 30
    B = 4 if num_threads == 1 else 70  # threads get at least 32 trees each
    model = RandomStochasticModel(A, C, seed=3, discount=step_discount)
    root = model.root(B)
    result = wm.StochasticMCTS(
        A, C, N, discount=discount, dirichlet_fraction=0.0, temperature=0.0,
        max_depth=max_depth, num_threads=num_threads,
    ).search(model, root)
    tree = result.tree
    for b in range(B):
        visits, values, children, chance, root_visits = reference_search(
            model, root.latent[b].numpy(), root.logits[b], root.value[b], N, discount=discount,
            max_depth=max_depth,
        )
        assert tree.node_visits[b].tolist() == visits
        np.testing.assert_allclose(tree.node_values[b], values, atol=1e-5)
        assert tree.is_chance[b].tolist() == chance
        assert result.visit_counts[b].tolist() == root_visits
        for n, kids in enumerate(children):
            if kids is None:
                continue
            own = tree.chance_children_index if chance[n] else tree.children_index
            assert own[b, n].tolist() == kids
        assert result.action[b] == int(np.argmax(root_visits))


def test_each_expansion_calls_exactly_one_function():
    A, C, N = 4, 6, 25
    model = RandomStochasticModel(A, C, seed=1)
    result = wm.StochasticMCTS(A, C, N).search(model, model.root(1))
    # One tree: one call, of one function, per simulation.
    assert model.decision_calls + model.chance_calls == N
    assert result.model_calls == (model.decision_calls, model.chance_calls)
    # The tree holds one afterstate per decision call and one state per chance call.
    assert int(result.tree.is_chance[0].sum()) == model.decision_calls
    assert int((~result.tree.is_chance[0]).sum()) == model.chance_calls + 1  # + the root
    model = RandomStochasticModel(A, C, seed=1)
    B = 9
    result = wm.StochasticMCTS(A, C, N).search(model, model.root(B))
    assert model.decision_rows + model.chance_rows == B * N
    assert model.decision_calls <= N and model.chance_calls <= N
    assert result.model_calls == (model.decision_calls, model.chance_calls)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 1000),
    A=st.integers(1, 4),
    C=st.integers(1, 6),
    N=st.integers(1, 40),
)
def test_tree_invariants(seed, A, C, N):
    model = RandomStochasticModel(A, C, seed=seed)
    result = wm.StochasticMCTS(A, C, N, seed=seed).search(model, model.root(2, seed))
    t = result.tree
    assert model.decision_rows + model.chance_rows == 2 * N
    for b in range(2):
        used = t.node_visits[b] > 0
        assert int(used.sum()) == N + 1
        assert not t.is_chance[b, 0]
        parents = t.parents[b]
        for n in range(1, N + 1):
            # Kinds alternate: a chance node's parent is a decision node and vice versa.
            assert t.is_chance[b, n] != t.is_chance[b, int(parents[n])]
        for n in range(N + 1):
            kids = t.chance_children_visits[b, n] if t.is_chance[b, n] else t.children_visits[b, n]
            assert int(kids.sum()) == int(t.node_visits[b, n]) - 1
            if t.is_chance[b, n]:
                # argmax p / (N + 1) (D'Hondt) never falls below a lower quota.
                total = int(kids.sum())
                probs = t.chance_children_probs[b, n]
                assert (kids >= torch.floor(probs * total - 1e-3)).all()
                assert t.chance_children_index[b, n][kids == 0].eq(-1).all()
            else:
                # Action edges carry reward 0 and discount 1; Q is the afterstate's value.
                expanded = t.children_index[b, n] >= 0
                assert (t.children_rewards[b, n][expanded] == 0).all()
                assert (t.children_discounts[b, n][expanded] == 1).all()
    torch.testing.assert_close(result.q_values, t.q_values[:, 0])
    torch.testing.assert_close(result.policy.sum(1), torch.ones(2))


def test_chance_visits_follow_the_chance_distribution():
    # One action, whose afterstate has known outcome probabilities: the outcome visits are the
    # D'Hondt apportionment of the chance node's visits, close to p * visits.
    probs = torch.tensor([0.5, 0.25, 0.125, 0.125])

    class Model:
        def decision(self, latent, action):
            B = latent.shape[0]
            return wm.Afterstate(latent, probs.log().expand(B, 4), torch.zeros(B))

        def chance(self, afterstate, outcome):
            B = afterstate.shape[0]
            return wm.Step(afterstate, outcome.float(), torch.zeros(B, 1), torch.zeros(B),
                           torch.zeros(B))

    result = wm.StochasticMCTS(1, 4, 81, max_depth=2).search(
        Model(), wm.Root(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1))
    )
    t = result.tree
    assert t.chance_children_visits[0, 1].tolist() == [40, 20, 10, 10]
    # Q(root, 0) = E[reward] over the visits, the afterstate's value 0 counted once.
    expected = (40 * 0 + 20 * 1 + 10 * 2 + 10 * 3) / 81
    assert result.q_values[0, 0].item() == pytest.approx(expected, abs=1e-5)


def test_seeds_reproducible_and_threads_do_not_change_results():
    A, C, B = 4, 5, 100  # 3 threads get 33 trees each
    model = RandomStochasticModel(A, C, seed=2)

    def run(seed, num_threads=1):
        planner = wm.StochasticMCTS(A, C, 20, seed=seed, num_threads=num_threads,
                                    dirichlet_fraction=0.25)
        return [planner.search(model, model.root(B)) for _ in range(2)]

    a1, a2 = run(0)
    b1, b2 = run(0, num_threads=3)
    c1, _ = run(1)
    for x, y in ((a1, b1), (a2, b2)):
        dx, dy = x.to_dict(), y.to_dict()
        assert dx.keys() == dy.keys()
        for name in dx:
            assert torch.equal(dx[name], dy[name]), name
    noise = lambda r: r.tree.children_prior_logits[:, 0]
    assert not torch.equal(noise(a1), noise(a2))
    assert not torch.equal(noise(a1), noise(c1))


def test_illegal_root_actions_never_visited():
    A, C, B = 4, 3, 6
    model = RandomStochasticModel(A, C, seed=5)
    legal = np.ones((B, A), bool)
    legal[:, 0] = False
    legal[2, 1:3] = False
    result = wm.StochasticMCTS(A, C, 30).search(model, model.root(B), legal_actions=legal)
    legal_t = torch.from_numpy(legal)
    assert (result.visit_counts[~legal_t] == 0).all()
    assert legal_t[torch.arange(B), result.action].all()


def test_inspection_to_dict_and_to_dot():
    A, C = 2, 3
    model = RandomStochasticModel(A, C, seed=0)
    result = wm.StochasticMCTS(A, C, 8).search(model, model.root(2))
    d = result.to_dict()
    assert d["children_index"].shape == (2, 9, A)
    assert d["chance_children_index"].shape == (2, 9, C)
    assert d["is_chance"].dtype == torch.bool
    assert result.tree.latents.shape == (2, 9, D)
    dot = result.to_dot(1)
    assert dot.startswith("digraph") and dot.count("->") == 8
    assert "shape=box" in dot and "shape=ellipse" in dot and "c=" in dot and "a=" in dot
    with pytest.raises(IndexError, match="batch_index"):
        result.to_dot(2)


def test_keyboard_interrupt_stops_a_long_search(ctrl_c):
    calls = []

    class Model:
        def decision(self, latent, action):
            calls.append(1)
            if len(calls) == 50:
                threading.Timer(0.05, _thread.interrupt_main).start()
            B = latent.shape[0]
            return wm.Afterstate(latent, torch.zeros(B, 2), torch.zeros(B))

        def chance(self, afterstate, outcome):
            B = afterstate.shape[0]
            return wm.Step(afterstate, torch.zeros(B), torch.zeros(B, 2), torch.zeros(B))

    root = wm.Root(torch.zeros(1, 1), torch.zeros(1, 2), torch.zeros(1))
    with pytest.raises(KeyboardInterrupt):
        wm.StochasticMCTS(2, 2, 10_000_000).search(Model(), root)
    assert len(calls) < 10_000_000


def _model(**overrides):
    """A model whose outputs can be replaced by bad ones (a function of the batch size)."""

    class Model:
        def decision(self, latent, action):
            B = latent.shape[0]
            out = {"latent": latent + 1, "chance_logits": torch.zeros(B, 3),
                   "value": torch.zeros(B)}
            out.update({k[2:]: f(B) for k, f in overrides.items() if k.startswith("d_")})
            return wm.Afterstate(**out)

        def chance(self, afterstate, outcome):
            B = afterstate.shape[0]
            out = {"latent": afterstate, "reward": torch.zeros(B), "logits": torch.zeros(B, 2),
                   "value": torch.zeros(B), "discount": None}
            out.update({k[2:]: f(B) for k, f in overrides.items() if k.startswith("c_")})
            return wm.Step(**out)

    return Model()


@pytest.mark.parametrize("overrides, error, message", [
    ({"d_chance_logits": lambda B: torch.zeros(B, 4)}, ValueError,
     (r"Afterstate.chance_logits must have shape \[2, 3\] \(batch, num_chance_outcomes\), "
     r"got \[2, 4\]")),
    ({"d_latent": lambda B: torch.zeros(B, 2)}, ValueError,
     r"Afterstate.latent must have shape \[2, 3\], got \[2, 2\]"),
    ({"d_latent": lambda B: torch.zeros(B, 3, dtype=torch.float64)}, TypeError,
     "Afterstate.latent must have dtype"),
    ({"d_value": lambda B: torch.full((B,), float("nan"))}, ValueError, "Afterstate.value"),
    ({"d_chance_logits": lambda B: torch.full((B, 3), float("inf"))}, ValueError,
     "Afterstate.chance_logits"),
    ({"d_value": lambda B: None}, ValueError, "Afterstate.value is missing"),
    ({"d_value": lambda B: [0.0] * B}, TypeError, "Afterstate.value must be a torch.Tensor"),
    ({"c_latent": lambda B: torch.zeros(B, 4)}, ValueError,
     r"Step.latent must have shape \[2, 3\], got \[2, 4\]"),
    ({"c_logits": lambda B: torch.zeros(B, 3)}, ValueError,
     r"Step.logits must have shape \[2, 2\] \(batch, num_actions\)"),
    ({"c_reward": lambda B: torch.full((B,), float("inf"))}, ValueError, "Step.reward"),
    ({"c_discount": lambda B: torch.full((B,), float("nan"))}, ValueError, "Step.discount"),
])
def test_bad_model_outputs(overrides, error, message):
    root = wm.Root(torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(error, match=message):
        wm.StochasticMCTS(2, 3, 10).search(_model(**overrides), root)


def test_bad_models_roots_and_settings():
    root = wm.Root(torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(2))
    planner = wm.StochasticMCTS(2, 3, 4)
    with pytest.raises(TypeError, match="decision"):
        planner.search(lambda latent, action: None, root)
    with pytest.raises(TypeError, match="chance"):
        planner.search((lambda latent, action: None, None), root)

    class NotAnAfterstate:
        def decision(self, latent, action):
            return latent

        def chance(self, afterstate, outcome):
            raise AssertionError

    with pytest.raises(ValueError, match="Afterstate.latent is missing"):
        planner.search(NotAnAfterstate(), root)
    with pytest.raises(ValueError, match=r"root.logits has 3 actions"):
        planner.search(_model(), wm.Root(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2)))
    with pytest.raises(ValueError, match="root.value"):
        planner.search(_model(), wm.Root(torch.zeros(2, 3), torch.zeros(2, 2),
                                         torch.tensor([0.0, float("nan")])))
    with pytest.raises(ValueError, match="legal_actions"):
        planner.search(_model(), root, legal_actions=np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="num_chance_outcomes must be >= 1, got 0"):
        wm.StochasticMCTS(2, 0, 4)
    with pytest.raises(TypeError, match="num_chance_outcomes must be an int"):
        wm.StochasticMCTS(2, 2.5, 4)
    with pytest.raises(ValueError, match="num_simulations"):
        wm.StochasticMCTS(2, 2, 0)
    with pytest.raises(ValueError, match="completed_by_mix_value"):
        wm.StochasticMCTS(2, 2, 4, qtransform="completed_by_mix_value")


def test_model_exception_propagates_and_a_pair_of_functions_works():
    def boom(afterstate, outcome):
        raise RuntimeError("chance exploded")

    model = _model()
    root = wm.Root(torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(RuntimeError, match="chance exploded"):
        wm.StochasticMCTS(2, 3, 5).search((model.decision, boom), root)
    result = wm.StochasticMCTS(2, 3, 5).search((model.decision, model.chance), root)
    assert result.visit_counts.sum().item() == 2 * 5


def _reached(tree, b, action, outcome):
    afterstate = int(tree.children_index[b, 0, action])
    return -1 if afterstate < 0 else int(tree.chance_children_index[b, afterstate, outcome])


def test_tree_reuse_continues_from_the_reached_state():
    A, C, B, N = 3, 4, 5, 30
    model = RandomStochasticModel(A, C, seed=6)
    planner = wm.StochasticMCTS(A, C, N, dirichlet_fraction=0.0)
    first = planner.search(model, model.root(B))
    old = first.tree
    actions = first.visit_counts.argmax(1)
    outcomes = torch.tensor(
        [int(old.chance_children_visits[b, old.children_index[b, 0, actions[b]]].argmax())
         for b in range(B)]
    )
    reached = [_reached(old, b, int(actions[b]), int(outcomes[b])) for b in range(B)]
    assert all(n > 0 for n in reached)
    second = planner.search(model, None, reuse=first, action_taken=actions,
                            outcome_taken=outcomes)
    new = second.tree
    for b, n in enumerate(reached):
        # The reached state's statistics are kept, N simulations added.
        assert new.node_visits[b, 0] == old.node_visits[b, n] + N
        torch.testing.assert_close(new.latents[b, 0], old.latents[b, n])
        # Its children (afterstates) came along with their statistics and latents.
        for a in range(A):
            child = int(old.children_index[b, n, a])
            if child < 0:
                continue
            moved = int(new.children_index[b, 0, a])
            assert new.is_chance[b, moved]
            assert new.node_visits[b, moved] >= old.node_visits[b, child]
            torch.testing.assert_close(new.latents[b, moved], old.latents[b, child])
        used = new.node_visits[b] > 0
        parents = new.parents[b][used][1:]
        assert (new.is_chance[b][used][1:] != new.is_chance[b][parents.long()]).all()
    assert second.visit_counts.sum(1).tolist() == [
        int(old.node_visits[b, n]) - 1 + N for b, n in enumerate(reached)
    ]
    # The same reuse again gives the same trees (the planner's stream aside, no noise here).
    again = planner.search(model, None, reuse=first, action_taken=actions, outcome_taken=outcomes)
    assert torch.equal(again.tree.node_values, new.node_values)


def test_tree_reuse_with_a_root_and_unexpanded_states():
    A, C, B = 2, 6, 3
    model = RandomStochasticModel(A, C, seed=7)
    planner = wm.StochasticMCTS(A, C, 3, dirichlet_fraction=0.0)
    first = planner.search(model, model.root(B))
    # With 3 simulations, most (action, outcome) pairs were never expanded.
    pairs = [(a, c) for a in range(A) for c in range(C)]
    missing = next(p for p in pairs if _reached(first.tree, 0, *p) < 0)
    actions = torch.full((B,), missing[0])
    outcomes = torch.full((B,), missing[1])
    with pytest.raises(ValueError, match="never expanded in the previous search"):
        planner.search(model, None, reuse=first, action_taken=actions, outcome_taken=outcomes)
    root = model.root(B, seed=9)
    result = planner.search(model, root, reuse=first, action_taken=actions,
                            outcome_taken=outcomes)
    fresh = wm.StochasticMCTS(A, C, 3, dirichlet_fraction=0.0).search(model, root)
    assert torch.equal(result.visit_counts[0], fresh.visit_counts[0])


def test_tree_reuse_errors():
    A, C, B = 2, 3, 2
    model = RandomStochasticModel(A, C, seed=8)
    planner = wm.StochasticMCTS(A, C, 10)
    first = planner.search(model, model.root(B))
    zeros = torch.zeros(B, dtype=torch.long)
    with pytest.raises(ValueError, match="outcome_taken is required"):
        planner.search(model, None, reuse=first, action_taken=zeros)
    with pytest.raises(ValueError, match=r"outcome_taken must be in \[0, 3\), got 3"):
        planner.search(model, None, reuse=first, action_taken=zeros, outcome_taken=zeros + 3)
    with pytest.raises(ValueError, match=r"action_taken must have shape \[2\]"):
        planner.search(model, None, reuse=first, action_taken=[0], outcome_taken=zeros)
    with pytest.raises(ValueError, match="only meaningful with reuse"):
        planner.search(model, model.root(B), outcome_taken=zeros)
    with pytest.raises(ValueError, match="chance outcomes"):
        wm.StochasticMCTS(A, C + 1, 10).search(model, None, reuse=first, action_taken=zeros,
                                               outcome_taken=zeros)
    mcts_result = wm.MCTS(A, 2).search(
        lambda latent, action: wm.Step(latent, torch.zeros(B), torch.zeros(B, A), torch.zeros(B)),
        model.root(B),
    )
    with pytest.raises(TypeError, match="StochasticSearchResult"):
        planner.search(model, None, reuse=mcts_result, action_taken=zeros, outcome_taken=zeros)
    with pytest.raises(ValueError, match="root is required"):
        planner.search(model, None)


class _MLPStochastic(torch.nn.Module):
    """A small torch model whose two functions can be exported as wm.NativeModels."""

    def __init__(self, A=3, C=4, D_=6):
        super().__init__()
        torch.manual_seed(0)
        self.A, self.C = A, C
        self.afterstate = torch.nn.Linear(D_ + A, D_)
        self.afterstate_heads = torch.nn.Linear(D_, C + 1)
        self.state = torch.nn.Linear(D_ + C, D_)
        self.state_heads = torch.nn.Linear(D_, A + 2)

    def decision(self, latent, action):
        onehot = torch.nn.functional.one_hot(action, self.A).to(latent.dtype)
        afterstate = torch.tanh(self.afterstate(torch.cat([latent, onehot], 1)))
        out = self.afterstate_heads(afterstate)
        return wm.Afterstate(afterstate, out[:, : self.C], out[:, self.C])

    def chance(self, afterstate, outcome):
        onehot = torch.nn.functional.one_hot(outcome, self.C).to(afterstate.dtype)
        state = torch.tanh(self.state(torch.cat([afterstate, onehot], 1)))
        out = self.state_heads(state)
        return wm.Step(state, out[:, -1], out[:, : self.A], out[:, -2])


def test_native_model_functions_match_the_python_model(tmp_path):
    model = _MLPStochastic()
    B = 5
    latent = torch.randn(B, 6)
    decision = wm.NativeModel.export(
        model.decision, (latent, torch.zeros(B, dtype=torch.long)), cache_dir=tmp_path,
        num_threads=1,
    )
    chance = wm.NativeModel.export(
        model.chance, (latent, torch.zeros(B, dtype=torch.long)), cache_dir=tmp_path,
        num_threads=1,
    )
    root = wm.Root(latent, torch.zeros(B, 3), torch.zeros(B))
    planner = wm.StochasticMCTS(3, 4, 30, dirichlet_fraction=0.0)
    with torch.no_grad():
        expected = planner.search(model, root)
    result = planner.search((decision, chance), root)
    assert torch.equal(result.visit_counts, expected.visit_counts)
    torch.testing.assert_close(result.tree.node_values, expected.tree.node_values, atol=1e-5,
                               rtol=1e-5)
    assert torch.equal(result.tree.is_chance, expected.tree.is_chance)
    # The two kinds are not interchangeable.
    with pytest.raises(ValueError, match="must be exported from a function returning "
                                         "wmfast.Afterstate"):
        planner.search((chance, chance), root)
    with pytest.raises(ValueError, match="returning wmfast.Step"):
        planner.search((decision, decision), root)
