"""The benches' drivers of LightZero's compiled Stochastic and Sampled MuZero trees
(benches/mcts_baselines.py) drive them right: root visit counts sum to N, and on small games
with an obvious answer the trees choose it, as wmfast does. LightZero is not installed in CI:
the tests skip unless its ``stochastic_mz_tree`` / ``smz_tree`` modules are found (an installed
``lzero``, or the .so files in $WMFAST_LIGHTZERO_DIR). LightZero's trees sample chance outcomes
and actions from clock-seeded generators, so only seed-free properties are asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import wmfast as wm

BENCHES = Path(__file__).resolve().parent.parent / "benches"
pytestmark = pytest.mark.skipif(not BENCHES.is_dir(), reason="no benches/ folder")


@pytest.fixture(scope="module")
def baselines():
    sys.path.insert(0, str(BENCHES))
    import mcts_baselines

    return mcts_baselines


@pytest.fixture(scope="module")
def stochastic_tree(baselines):
    tree = baselines.load_lightzero_stochastic_tree()
    if tree is None:
        pytest.skip("LightZero's stochastic_mz_tree is not installed (see WMFAST_LIGHTZERO_DIR)")
    return tree


@pytest.fixture(scope="module")
def sampled_tree(baselines):
    tree = baselines.load_lightzero_sampled_tree()
    if tree is None:
        pytest.skip("LightZero's smz_tree is not installed (see WMFAST_LIGHTZERO_DIR)")
    return tree


class BestActionGame:
    """A = 3 actions, C = 2 equally likely outcomes: action 2 pays 1 whatever the outcome, the
    others 0; values 0. The afterstate remembers the action (one-hot), the state is constant."""

    A, C = 3, 2

    def decision(self, latent, action):
        n = latent.shape[0]
        afterstate = torch.nn.functional.one_hot(action, self.A).float()
        return wm.Afterstate(afterstate, torch.zeros(n, self.C), torch.zeros(n))

    def chance(self, afterstate, outcome):
        n = afterstate.shape[0]
        return wm.Step(torch.zeros(n, self.A), afterstate[:, 2].clone(), torch.zeros(n, self.A),
                       torch.zeros(n))


def test_stochastic_visits_sum_to_n_on_the_bench_model(baselines, stochastic_tree):
    sys.path.insert(0, str(BENCHES))
    from bench_mcts_variants import MLPStochasticModel, _root

    B, A, C, N = 16, 4, 32, 30
    model = MLPStochasticModel(A, C)
    root = _root(B, A)
    lz = baselines.LightZeroStochasticModel(model.decision, model.chance)
    timed = baselines.TimedTree(stochastic_tree)  # the benches' breakdown wrapper passes through
    visits, values = baselines.lightzero_stochastic_search(
        timed, lz, root.latent, root.logits, N, A
    )
    assert all(seconds > 0 for seconds in timed.seconds.values())
    assert visits.shape == (B, A) and values.shape == (B,)
    assert (visits >= 0).all() and (visits.sum(axis=1) == N).all()
    assert torch.isfinite(torch.as_tensor(values)).all()


def test_stochastic_trees_pick_the_paying_action_as_wmfast_does(baselines, stochastic_tree):
    game = BestActionGame()
    B, N = 8, 40
    root = wm.Root(torch.zeros(B, game.A), torch.zeros(B, game.A), torch.zeros(B))
    visits, values = baselines.lightzero_stochastic_search(
        stochastic_tree, baselines.LightZeroStochasticModel(game.decision, game.chance),
        root.latent, root.logits, N, game.A, discount=1.0,
    )
    ours = wm.StochasticMCTS(game.A, game.C, N, dirichlet_fraction=0.0).search(game, root)
    assert (visits.sum(axis=1) == N).all()
    assert (visits.argmax(axis=1) == 2).all(), visits
    assert (ours.visit_counts.argmax(dim=1) == 2).all()
    # Every simulation after the first few collects 1 per decision on its path: the root
    # value is positive in both searches.
    assert (values > 0).all() and (ours.root_value > 0).all()


def test_stochastic_legal_actions_are_respected(baselines, stochastic_tree):
    game = BestActionGame()
    B, N = 4, 20
    root = wm.Root(torch.zeros(B, game.A), torch.zeros(B, game.A), torch.zeros(B))
    # Root without the paying action: LightZero lists visits over the legal actions only.
    visits, _ = baselines.lightzero_stochastic_search(
        stochastic_tree, baselines.LightZeroStochasticModel(game.decision, game.chance),
        root.latent, root.logits[:, :2], N, game.A, legal_actions=[[0, 1]] * B,
    )
    assert visits.shape == (B, 2) and (visits.sum(axis=1) == N).all()


def _target_reward_model(target):
    """Continuous actions (D = 2), state-free: reward -|a - target|^2, value 0, the latent kept,
    policy mean 0, log std 0."""

    def recurrent_inference(latent, action):
        n = latent.shape[0]
        reward = -((action - target) ** 2).sum(dim=1)
        return wm.Step(latent, reward, torch.zeros(n, 4), torch.zeros(n))

    return recurrent_inference


def test_sampled_visits_sum_to_n_and_samples_are_squashed(baselines, sampled_tree):
    sys.path.insert(0, str(BENCHES))
    import bench_sampled

    B, K, N = 16, 8, 30
    model = bench_sampled.MLPModel()
    root = bench_sampled._root(B)
    samples, visits, values = baselines.lightzero_sampled_search(
        sampled_tree, baselines.LightZeroSampledModel(model.recurrent_inference, 2), root.latent,
        baselines.lightzero_sampled_policy(root.logits, 2), N, K, 2,
    )
    assert samples.shape == (B, K, 2) and visits.shape == (B, K) and values.shape == (B,)
    assert (visits.sum(axis=1) == N).all()
    # tanh(clamp(x, -4, 4)): strictly inside (-1, 1).
    assert (abs(samples) < 1).all()


def test_sampled_trees_pick_their_best_sample_as_wmfast_does(baselines, sampled_tree):
    # Discount 0 and a reward of the action alone: a root child's Q is its reward, exactly.
    # LightZero scores an unvisited child at its parent's mean Q, so it tries every sample and
    # then settles on the best (98-100% of 256 trees in three runs at N=100, K=8);
    # wm.SampledMCTS does the same with unvisited_q="parent_value" (99-100%). With mctx's "min"
    # (wmfast's default) the first good sample keeps the visits (52-59%): not compared here.
    target = torch.tensor([0.3, -0.2])
    fn = _target_reward_model(target)
    B, K, N = 64, 8, 100
    root = wm.Root(torch.zeros(B, 3), torch.zeros(B, 4), torch.zeros(B))
    samples, visits, _ = baselines.lightzero_sampled_search(
        sampled_tree, baselines.LightZeroSampledModel(fn, 2), root.latent,
        baselines.lightzero_sampled_policy(root.logits, 2), N, K, 2, discount=0.0,
    )
    assert (visits.sum(axis=1) == N).all()
    visits = torch.from_numpy(visits).float()
    rewards = -((torch.from_numpy(samples) - target) ** 2).sum(dim=2)
    ours = wm.SampledMCTS(K, N, action_dim=2, discount=0.0, dirichlet_fraction=0.0,
                          unvisited_q="parent_value").search(fn, root)
    our_rewards = -((ours.actions - target) ** 2).sum(dim=2)
    for v, r in ((visits, rewards), (ours.visit_counts.float(), our_rewards)):
        assert (v.argmax(dim=1) == r.argmax(dim=1)).float().mean() >= 0.9
        # The search moves the visits to better samples than the K drawn on average.
        assert ((v * r).sum(dim=1) / N > r.mean(dim=1)).float().mean() >= 0.95
