"""MuZero toolkit: the loss against a hand-written reference, learning a chain MDP's values,
self-play and reanalyse, save/load/resume, and errors."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
import wmfast as wm
from muzero_chain import Chain, small_config
from torch.nn import functional as F
from wmfast.agents import MuZeroAgent
from wmfast.agents.muzero import TrainingError
from wmfast.muzero import (
    Config,
    MLPNetwork,
    ResNetwork,
    SearchModel,
    SelfPlay,
    choose_actions,
    reanalyse,
    unrolled_loss,
)

# -- the loss ---------------------------------------------------------------------------------


def _support_reference(x: float, size: int) -> list[float]:
    """MuZero's two-hot support target of one scalar, written out."""
    y = math.copysign(math.sqrt(abs(x) + 1) - 1, x) + 1e-3 * x
    y = min(max(y, -size), size)
    out = [0.0] * (2 * size + 1)
    low = math.floor(y)
    out[low + size] += 1 - (y - low)
    if low + size + 1 <= 2 * size:
        out[low + size + 1] += y - low
    return out


def _reference_loss(net, obs, actions, tv, tr, tp, vm, rm, pm, w, size, vw):
    """(loss value, loss whose gradient MuZero follows): every step's loss counts fully in the
    value; in the gradient, unrolled steps count 1/K and the gradient a latent receives from the
    next dynamics step is halved (MuZero's pseudocode)."""
    K = actions.shape[1]

    def ce(logits, probs):
        return -(probs * F.log_softmax(logits, -1)).sum(-1)

    def support(values):
        return torch.tensor([_support_reference(float(v), size) for v in values])

    root = net.initial_inference(obs)
    first = vw * ce(root.value, support(tv[:, 0])) * vm[:, 0] + ce(root.logits, tp[:, 0]) * pm[:, 0]
    value, grad = first * w, first * w
    latent = root.latent
    for k in range(1, K + 1):
        step = net.recurrent_inference(latent, actions[:, k - 1])
        term = (vw * ce(step.value, support(tv[:, k])) * vm[:, k]
                + ce(step.reward, support(tr[:, k])) * rm[:, k]
                + ce(step.logits, tp[:, k]) * pm[:, k]) * w
        value = value + term
        grad = grad + term / K
        latent = step.latent.clone()   # only the next dynamics step sees the halved gradient
        latent.register_hook(lambda g: g * 0.5)
    return value.mean(), grad.mean()


def test_unrolled_loss_matches_the_written_out_loss_and_its_gradient():
    torch.manual_seed(0)
    B, K, A, size = 6, 3, 3, 4
    net = MLPNetwork(5, A, latent_dim=8, hidden=16, support_size=size)
    for head in (net.value_head, net.reward_head, net.policy_head):
        torch.nn.init.normal_(head[-1].weight)     # non-trivial heads
    obs = torch.randn(B, 5)
    actions = torch.randint(0, A, (B, K))
    tv, tr = torch.randn(B, K + 1) * 5, torch.randn(B, K + 1)
    tp = torch.softmax(torch.randn(B, K + 1, A), -1)
    masks = [(torch.rand(B, K + 1) > 0.3).float() for _ in range(3)]
    w = torch.rand(B) + 0.5
    losses = unrolled_loss(net, obs, actions, tv, tr, tp, *masks, w, size, 0.25)
    net.zero_grad()
    losses.total.backward()
    ours = [p.grad.clone() for p in net.parameters() if p.grad is not None]
    value, grad_loss = _reference_loss(net, obs, actions, tv, tr, tp, *masks, w, size, 0.25)
    net.zero_grad()
    grad_loss.backward()
    torch.testing.assert_close(losses.total, value)
    theirs = [p.grad for p in net.parameters() if p.grad is not None]
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_consistency_term_is_the_written_out_negative_cosine():
    torch.manual_seed(1)
    B, K, A = 5, 2, 2
    net = MLPNetwork(3, A, latent_dim=8, hidden=16, support_size=2)
    obs, next_obs = torch.randn(B, 3), torch.randn(B, K, 3)
    actions = torch.randint(0, A, (B, K))
    zeros, ones = torch.zeros(B, K + 1), torch.ones(B, K + 1)
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1]])
    args = (net, obs, actions, zeros, zeros, torch.full((B, K + 1, A), 0.5), ones, ones, mask,
            torch.ones(B), 2)
    plain = unrolled_loss(*args)
    with_term = unrolled_loss(*args, next_observations=next_obs, consistency_weight=2.0)
    latent, expected = net.initial_inference(obs).latent, torch.zeros(B)
    for k in range(1, K + 1):
        latent = net.recurrent_inference(latent, actions[:, k - 1]).latent
        online = net.project(latent, with_predictor=True)
        target = net.project(net.initial_inference(next_obs[:, k - 1]).latent, with_predictor=False)
        expected -= F.cosine_similarity(online, target, dim=-1) * mask[:, k]
    torch.testing.assert_close(with_term.consistency, expected.mean())
    torch.testing.assert_close(with_term.total, plain.total + 2.0 * expected.mean())
    with pytest.raises(ValueError, match="next_observations"):
        unrolled_loss(*args, consistency_weight=1.0)


def test_loss_names_a_head_of_the_wrong_shape():
    net = MLPNetwork(4, 2, latent_dim=8, hidden=8, support_size=3)
    B, K = 4, 2
    args = (torch.zeros(B, 4), torch.zeros(B, K, dtype=torch.long), torch.zeros(B, K + 1),
            torch.zeros(B, K + 1), torch.full((B, K + 1, 2), 0.5), torch.ones(B, K + 1),
            torch.ones(B, K + 1), torch.ones(B, K + 1), torch.ones(B))
    with pytest.raises(ValueError, match=r"initial_inference value must have shape \[4, 11\]"):
        unrolled_loss(net, *args, support_size=5)


# -- search model and action choice -----------------------------------------------------------


def test_search_model_decodes_supports_and_flips_for_two_players():
    net = MLPNetwork(3, 2, latent_dim=4, hidden=8, support_size=5)
    torch.nn.init.normal_(net.value_head[-1].weight)
    obs = torch.randn(7, 3)
    model = SearchModel(net, 5, two_player=True)
    root = model.initial_inference(obs)
    raw = net.initial_inference(obs)
    torch.testing.assert_close(root.value, wm.transforms.support_to_scalar(raw.value, 5))
    assert not root.value.requires_grad
    step = model.recurrent_inference(root.latent, torch.zeros(7, dtype=torch.long))
    assert step.reward.shape == (7,) and step.value.shape == (7,)
    assert (step.discount == -1).all()
    assert SearchModel(net, 5).recurrent_inference(root.latent, torch.zeros(7, dtype=torch.long)).discount is None


def test_temperature_follows_the_larger_budget_fraction():
    from wmfast.muzero.config import training_progress

    assert training_progress(50, 100, 10.0, 40.0) == 0.5
    assert training_progress(10, 100, 30.0, 40.0) == 0.75
    assert training_progress(10, 100, 99.0, None) == 0.1
    assert training_progress(10, 100, 99.0, 40.0) == 1.0
    config = Config(temperatures=((0.5, 1.0), (0.75, 0.5), (1.0, 0.25)))
    assert [config.temperature(p) for p in (0.0, 0.5, 0.8, 1.0)] == [1.0, 0.5, 0.25, 0.25]


def test_search_model_names_a_head_of_the_wrong_shape():
    class Wide(MLPNetwork):
        def recurrent_inference(self, latent, action):
            step = super().recurrent_inference(latent, action)
            return wm.Step(step.latent, step.reward[:, :-1], step.logits, step.value)

    net = Wide(3, 2, latent_dim=4, hidden=8, support_size=5)
    model = SearchModel(net, 5)
    root = model.initial_inference(torch.zeros(6, 3))
    with pytest.raises(ValueError, match=r"recurrent_inference reward must have shape \[6, 11\]"):
        model.recurrent_inference(root.latent, torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"initial_inference value must have shape \[6, 9\]"):
        SearchModel(net, 4).initial_inference(torch.zeros(6, 3))


def test_choose_actions():
    visits = np.array([[1, 5, 5, 0], [0, 0, 0, 9]])
    np.testing.assert_array_equal(choose_actions(visits, 0.0, np.random.default_rng(0)), [1, 3])
    rng = np.random.default_rng(0)
    draws = np.array([choose_actions(visits[:1], 1.0, rng)[0] for _ in range(4000)])
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / 4000, [1 / 11, 5 / 11, 5 / 11, 0], atol=0.025)


# -- a chain MDP whose values are known -------------------------------------------------------


def test_training_drives_the_value_prediction_to_the_true_values():
    torch.manual_seed(0)
    agent = MuZeroAgent(lambda: Chain(5), config=small_config())
    agent.train(1600, progress=False)
    obs = torch.eye(5)
    values = SearchModel(agent.network, 5).initial_inference(obs).value
    true = torch.tensor([0.9 ** (4 - s) for s in range(5)])
    torch.testing.assert_close(values, true, atol=0.06, rtol=0)
    # The learned model's reward: 1 only for the step out of the last state.
    latent = SearchModel(agent.network, 5).initial_inference(obs).latent
    reward = SearchModel(agent.network, 5).recurrent_inference(latent, torch.zeros(5, dtype=torch.long)).reward
    torch.testing.assert_close(reward, torch.tensor([0.0, 0, 0, 0, 1]), atol=0.1, rtol=0)


def test_agent_trains_with_the_consistency_loss():
    agent = MuZeroAgent(lambda: Chain(5), config=small_config(consistency_weight=1.0))
    agent.train(200, progress=False)
    assert agent.updates > 0 and "consistency_loss" in agent._learn()
    batch = agent.replay.sample(8, next_observations=True)
    assert batch.next_observations.shape == (8, 3, 5)


def test_gumbel_agent_learns_the_chain_policy_targets():
    agent = MuZeroAgent(lambda: Chain(5), config=small_config(search="gumbel"))
    assert isinstance(agent.search, wm.GumbelMCTS)
    agent.train(200, progress=False)
    stored = np.flatnonzero(agent.replay.valid)
    np.testing.assert_allclose(agent.replay.policies[stored].sum(1), 1.0, atol=1e-5)
    assert agent.evaluate(2)["mean_return"] == 1.0


# -- self-play, reanalyse, checkpoints --------------------------------------------------------


def test_self_play_fills_the_replay_and_reanalyse_refreshes_it():
    agent = MuZeroAgent(lambda: gym.make("CartPole-v1"), config=small_config(min_replay=10**9))
    agent.train(400, progress=False)
    assert agent.env_steps == 400 and agent.updates == 0
    replay = agent.replay
    assert replay.positions_added == len(replay) > 0
    assert replay.games_added == agent.episodes
    stored = np.flatnonzero(replay.valid)
    np.testing.assert_allclose(replay.policies[stored].sum(1), 1.0, atol=1e-5)
    replay.policies[stored[:8]] = 0.0
    replay.root_values[stored[:8]] = 1e6
    search = wm.MCTS(2, 16, dirichlet_fraction=0.0, seed=3)
    reanalyse(replay, agent.model, search, stored[:8])
    obs = torch.as_tensor(replay.observations[stored[:8]])
    # A fresh planner with the same seed draws the same stream: the same search again.
    expected = wm.MCTS(2, 16, dirichlet_fraction=0.0, seed=3).search(
        agent.model, agent.model.initial_inference(obs))
    np.testing.assert_allclose(replay.policies[stored[:8]], np.asarray(expected.policy), atol=1e-6)
    np.testing.assert_allclose(replay.root_values[stored[:8]], np.asarray(expected.root_value), atol=1e-5)


def test_save_load_resume_gives_identical_next_updates(tmp_path):
    config = small_config(reanalyse_fraction=0.25)
    agent = MuZeroAgent(lambda: Chain(5), config=config)
    agent.train(200, progress=False)
    path = str(tmp_path / "agent.pt")
    agent.save(path)
    loaded = MuZeroAgent.load(path, lambda: Chain(5))
    assert (loaded.env_steps, loaded.updates, loaded.episodes) == (agent.env_steps, agent.updates, agent.episodes)
    for _ in range(3):
        a, b = agent._learn(), loaded._learn()
        assert a == b
    for p, q in zip(agent.network.parameters(), loaded.network.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    np.testing.assert_array_equal(agent.replay.priorities, loaded.replay.priorities)
    loaded.train(64, progress=False)   # resumes: counters continue
    assert loaded.env_steps == agent.env_steps + 64
    assert loaded.act(np.eye(5, dtype=np.float32)[0]) in (0, 1)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    agent = MuZeroAgent(lambda: Chain(5), config=small_config())
    path = str(tmp_path / "agent.pt")
    agent.save(path)
    with open(path, "rb") as handle:
        good = handle.read()

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        agent.save(path)
    monkeypatch.undo()
    with open(path, "rb") as handle:
        assert handle.read() == good
    assert [p.name for p in tmp_path.iterdir()] == ["agent.pt"]


# -- errors -----------------------------------------------------------------------------------


def test_self_play_reuses_each_tree_and_restarts_those_whose_episode_ended():
    torch.manual_seed(0)
    N = 8
    model = SearchModel(MLPNetwork(4, 2, latent_dim=8, hidden=16, support_size=5), 5)
    mcts = wm.MCTS(2, N, seed=1)
    calls = []

    class Recording:
        def search(self, model, root, **kwargs):
            out = mcts.search(model, root, **kwargs)
            calls.append((kwargs.get("action_taken"), out))
            return out

    envs = [gym.make("CartPole-v1") for _ in range(3)]
    selfplay = SelfPlay(envs, model, Recording(), 2, seed=0, reuse_tree=True)
    played, ended = [], []
    games = []
    for _ in range(40):
        finished = selfplay.step(temperature=1.0)
        games += finished
        previous = calls[-1][1]
        # The action each environment played is the one its tree was searched for.
        played.append(np.array([h["actions"][-1] if h["actions"] else -2
                                for h in selfplay._history]))
        ended.append(np.array([not h["actions"] for h in selfplay._history]))
        assert previous.visit_counts.sum(1).min() >= N
    assert games, "no episode ended: the test would not see a restart"
    assert calls[0][0] is None
    for move in range(1, 40):
        taken, out = calls[move]
        taken = np.asarray(taken)
        restarted = ended[move - 1]
        # -1 exactly for the environments reset after the previous move, else the action played.
        np.testing.assert_array_equal(taken == -1, restarted)
        np.testing.assert_array_equal(taken[~restarted], played[move - 1][~restarted])
        visits = out.visit_counts.sum(1).numpy()
        # A restarted tree has this search's N visits; a continued one adds N to its subtree's.
        assert (visits[restarted] == N).all()
        assert (visits[~restarted] > N).all()
    for game in games:
        np.testing.assert_allclose(game.policies.sum(1), 1.0, atol=1e-5)


def test_tree_reuse_is_refused_with_the_gumbel_search():
    model = SearchModel(MLPNetwork(4, 2, latent_dim=8, hidden=16, support_size=5), 5)
    with pytest.raises(ValueError, match="reuse_tree needs a wm.MCTS search"):
        SelfPlay([gym.make("CartPole-v1")], model, wm.GumbelMCTS(2, 4), 2, reuse_tree=True)
    with pytest.raises(ValueError, match="Config.reuse_tree needs search='muzero'"):
        Config(reuse_tree=True, search="gumbel")


def test_agent_trains_with_tree_reuse():
    agent = MuZeroAgent(lambda: Chain(5), config=small_config(reuse_tree=True))
    agent.train(200, progress=False)
    assert agent.updates > 0 and agent._selfplay.reuse_tree
    stored = np.flatnonzero(agent.replay.valid)
    np.testing.assert_allclose(agent.replay.policies[stored].sum(1), 1.0, atol=1e-5)


class SecondMoverWins(gym.Env):
    """Two moves, one per player; the second mover's move wins (reward +1 to the mover)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.eye(2, dtype=np.float32)[0], {}

    def step(self, action):
        self.t += 1
        done = self.t == 2
        return np.eye(2, dtype=np.float32)[self.t % 2], float(done), done, False, {}


def test_two_player_evaluation_reports_the_first_players_return():
    agent = MuZeroAgent(SecondMoverWins, config=small_config(two_player=True))
    result = agent.evaluate(3)
    assert result["returns"].tolist() == [-1.0, -1.0, -1.0]
    assert result["lengths"].tolist() == [2, 2, 2]


def test_unsupported_environments_are_refused():
    with pytest.raises(TypeError, match="Discrete action space"):
        MuZeroAgent(lambda: gym.make("Pendulum-v1"))
    with pytest.raises(TypeError, match="Box observation space"):
        MuZeroAgent(lambda: gym.make("FrozenLake-v1"))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="Config.num_simulations"):
        Config(num_simulations=0)
    with pytest.raises(ValueError, match="Config.discount"):
        Config(discount=1.5)
    with pytest.raises(ValueError, match="Config.search"):
        Config(search="alphazero")
    with pytest.raises(TypeError, match=r"Config.num_envs must be an int, got bool"):
        Config(num_envs=True)
    with pytest.raises(TypeError, match=r"Config.reuse_tree must be a bool, got int"):
        Config(reuse_tree=1)
    with pytest.raises(ValueError, match=r"Config.learning_rate must be a finite number, got nan"):
        Config(learning_rate=float("nan"))
    # numpy scalars (from a sweep's grid, say) are taken and stored as Python numbers
    config = Config(num_simulations=np.int64(8), discount=np.float64(0.9))
    assert type(config.num_simulations) is int and type(config.discount) is float


def test_nan_loss_stops_training_naming_the_update():
    class Poisoned(MLPNetwork):
        def initial_inference(self, obs):
            root = super().initial_inference(obs)
            if self.training:
                return wm.Root(root.latent, root.logits, root.value * math.nan)
            return root

    net = Poisoned(5, 2, latent_dim=8, hidden=16, support_size=5)
    agent = MuZeroAgent(lambda: Chain(5), network=net, config=small_config())
    with pytest.raises(TrainingError, match=r"update 1 \(env step \d+\)"):
        agent.train(400, progress=False)
    assert agent.updates == 0


def test_resnetwork_shapes():
    net = ResNetwork((3, 3, 3), 9, channels=8, blocks=1, support_size=4)
    root = net.initial_inference(torch.zeros(5, 3, 3, 3))
    assert root.latent.shape == (5, 8, 3, 3) and root.logits.shape == (5, 9) and root.value.shape == (5, 9)
    step = net.recurrent_inference(root.latent, torch.arange(5))
    assert step.latent.shape == (5, 8, 3, 3) and step.reward.shape == (5, 9)
    assert float(step.latent.detach().min()) >= 0 and float(step.latent.detach().max()) <= 1


def test_demo_smoke(tmp_path, capsys):
    from wmfast.demos.muzero_cartpole import main

    assert main(["--smoke", "--json", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["demo"] == "muzero-cartpole" and result["env_steps"] > 0
    assert {"muzero_cartpole.png", "log.csv", "agent.pt"} <= {p.name for p in tmp_path.iterdir()}
    agent = MuZeroAgent.load(str(tmp_path / "agent.pt"), lambda: gym.make("CartPole-v1"))
    assert agent.env_steps == result["env_steps"]
