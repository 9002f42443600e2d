"""Sampled MuZero training (Config(search="sampled")): the sampled policy loss against
hand-written known answers and torch.distributions, the reference network's Gaussian head, the
replay round trip of the sampled actions, save/load, bad configs, and learning a 1-D continuous
bandit's optimum."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from muzero_chain import OPTIMUM, Bandit, Chain, bandit_config, small_config
from wmfast.agents import MuZeroAgent
from wmfast.muzero import (
    Config,
    Game,
    SampledMLPNetwork,
    SampledReplay,
    sampled_policy_loss,
    unrolled_loss,
)
from wmfast.muzero.sampled import categorical_log_prob, gaussian_log_prob

# -- the policy loss ----------------------------------------------------------------------------


def test_sampled_policy_loss_known_answers():
    # Gaussian mean 0.5, std 2; samples at the mean and one std above; visits 3:1.
    policy = torch.tensor([[0.5, math.log(2.0)]])
    samples = torch.tensor([[[0.5], [2.5]]])
    target = torch.tensor([[0.75, 0.25]])
    log_norm = math.log(2.0) + 0.5 * math.log(2 * math.pi)
    expected = 0.75 * log_norm + 0.25 * (log_norm + 0.5)
    torch.testing.assert_close(sampled_policy_loss(policy, samples, target),
                               torch.tensor([expected]))
    # Discrete: probabilities (1/4, 3/4); samples [1, -1 (missing)], all visits on action 1.
    logits = torch.tensor([[0.0, math.log(3.0)]])
    loss = sampled_policy_loss(logits, torch.tensor([[1, -1]]), torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(loss, torch.tensor([-math.log(0.75)]))


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 4), S=st.integers(1, 6), D=st.integers(1, 3), seed=st.integers(0, 999))
def test_gaussian_log_prob_matches_torch_distributions(B, S, D, seed):
    g = torch.Generator().manual_seed(seed)
    policy = torch.cat([torch.randn(B, D, generator=g), torch.randn(B, D, generator=g) - 0.5], 1)
    actions = torch.randn(B, S, D, generator=g)
    normal = torch.distributions.Normal(policy[:, None, :D], policy[:, None, D:].exp())
    torch.testing.assert_close(gaussian_log_prob(policy, actions),
                               normal.log_prob(actions).sum(-1))
    target = torch.softmax(torch.randn(B, S, generator=g), -1)
    torch.testing.assert_close(sampled_policy_loss(policy, actions, target),
                               -(target * normal.log_prob(actions).sum(-1)).sum(-1))
    logits = torch.randn(B, 7, generator=g)
    idx = torch.randint(0, 7, (B, S), generator=g)
    torch.testing.assert_close(categorical_log_prob(logits, idx),
                               torch.log_softmax(logits, -1).gather(1, idx))


def test_unrolled_loss_uses_the_sampled_policy_loss():
    torch.manual_seed(0)
    net = SampledMLPNetwork(3, 2, action_low=-2.0, action_high=[1.0, 3.0], latent_dim=8,
                            hidden=16, support_size=0)
    for p in net.policy_head.parameters():   # a non-trivial policy
        torch.nn.init.normal_(p, std=0.5)
    B, K, S = 5, 2, 4
    obs = torch.randn(B, 3)
    actions = torch.rand(B, K, 2)
    samples = torch.rand(B, K + 1, S, 2)
    target = torch.softmax(torch.randn(B, K + 1, S), -1)
    ones = torch.ones(B, K + 1)
    mask = ones.clone()
    mask[0, 2] = 0.0
    losses = unrolled_loss(net, obs, actions, torch.zeros(B, K + 1), torch.zeros(B, K + 1),
                           target, ones, ones, mask, torch.ones(B), 0, sampled_actions=samples)
    # Written out: root term + unrolled terms (each counted fully in the loss's value).
    root = net.initial_inference(obs)
    expected = sampled_policy_loss(root.logits, samples[:, 0], target[:, 0]) * mask[:, 0]
    latent = root.latent
    for k in range(1, K + 1):
        step = net.recurrent_inference(latent, actions[:, k - 1])
        expected = expected + sampled_policy_loss(step.logits, samples[:, k], target[:, k]) * mask[:, k]
        latent = step.latent
    torch.testing.assert_close(losses.policy, expected.detach().mean())


def test_network_policy_stays_in_the_bounds():
    net = SampledMLPNetwork(3, 2, action_low=[-2.0, 0.0], action_high=[2.0, 1.0],
                            support_size=0)
    root = net.initial_inference(torch.zeros(4, 3))
    # Zero-initialised head: the mean at the centre, std half the half-range.
    torch.testing.assert_close(root.logits[0], torch.tensor(
        [0.0, 0.5, math.log(1.0), math.log(0.25)]))
    for p in net.policy_head.parameters():
        torch.nn.init.normal_(p, std=10.0)
    policy = net.initial_inference(torch.randn(64, 3) * 10).logits
    assert torch.all(policy[:, 0].abs() <= 2.0) and torch.all((policy[:, 1] >= 0) & (policy[:, 1] <= 1))
    assert torch.all(policy[:, 2:] <= torch.log(torch.tensor([4.0, 1.0])) + 1e-6)
    with pytest.raises(ValueError, match="action_low < action_high"):
        SampledMLPNetwork(3, 1, action_low=1.0, action_high=1.0)


# -- replay -------------------------------------------------------------------------------------


def _game(T, S, D, rng, terminated=True):
    return Game(
        observations=rng.standard_normal((T, 3)).astype(np.float32),
        actions=rng.uniform(-1, 1, (T, D)).astype(np.float32),
        rewards=rng.standard_normal(T).astype(np.float32),
        root_values=rng.standard_normal(T).astype(np.float32),
        policies=rng.dirichlet(np.ones(S), T).astype(np.float32),
        terminated=terminated,
        sampled_actions=rng.uniform(-1, 1, (T, S, D)).astype(np.float32),
    )


def test_replay_round_trip_of_the_sampled_actions():
    rng = np.random.default_rng(0)
    S, D, K = 4, 2, 3
    replay = SampledReplay(100, (3,), np.float32, S, 0.9, 2, K, action_dim=D,
                           action_low=[-1.0, 0.0], action_high=[1.0, 0.5], seed=0)
    games = [_game(6, S, D, rng), _game(5, S, D, rng, terminated=False)]
    for game in games:
        replay.add(game)
    batch = replay.targets(np.array([0, 4, 7]))
    assert batch.sampled_actions.shape == (3, K + 1, S, D)
    assert batch.target_policies.shape == (3, K + 1, S)
    assert batch.actions.shape == (3, K, D) and batch.actions.dtype == np.float32
    g0, g1 = games
    np.testing.assert_array_equal(batch.sampled_actions[0], g0.sampled_actions[0:4])
    np.testing.assert_array_equal(batch.target_policies[0], g0.policies[0:4])
    np.testing.assert_array_equal(batch.actions[0], g0.actions[0:3])
    # Position 4 of game 0: steps 4, 5 inside, then past the end (policy 0, unroll actions
    # drawn in the bounds).
    np.testing.assert_array_equal(batch.sampled_actions[1, :2], g0.sampled_actions[4:6])
    np.testing.assert_array_equal(batch.target_policies[1, 2:], 0.0)
    assert batch.policy_mask[1].tolist() == [1, 1, 0, 0]
    np.testing.assert_array_equal(batch.actions[1, :2], g0.actions[4:6])
    past = batch.actions[1, 2]
    assert -1.0 <= past[0] <= 1.0 and 0.0 <= past[1] <= 0.5
    np.testing.assert_array_equal(batch.sampled_actions[2], g1.sampled_actions[1:5])
    # state_dict round trip.
    copy = SampledReplay(100, (3,), np.float32, S, 0.9, 2, K, action_dim=D,
                         action_low=[-1.0, 0.0], action_high=[1.0, 0.5])
    copy.load_state_dict(replay.state_dict())
    np.testing.assert_array_equal(copy.samples, replay.samples)
    np.testing.assert_array_equal(copy.actions, replay.actions)
    again = copy.targets(np.array([0, 4, 7]))
    np.testing.assert_array_equal(again.sampled_actions, batch.sampled_actions)


def test_replay_rejects_bad_sampled_games_unchanged():
    rng = np.random.default_rng(1)
    S, D = 4, 1
    replay = SampledReplay(50, (3,), np.float32, S, 0.9, 2, 2, action_dim=D)
    replay.add(_game(5, S, D, rng))
    before = replay.state_dict()
    bad = _game(5, S, D, rng)
    bad.sampled_actions = bad.sampled_actions[:, :3]
    with pytest.raises(ValueError, match=r"game.sampled_actions must be \[5, 4, 1\]"):
        replay.add(bad)
    bad = _game(5, S, D, rng)
    bad.actions = np.zeros(5, np.int64)
    with pytest.raises(ValueError, match=r"game.actions must be \[5, 1\]"):
        replay.add(bad)
    bad = _game(5, S, D, rng)
    bad.policies = bad.policies[:, :2]
    with pytest.raises(ValueError, match="game.policies"):
        replay.add(bad)
    for name, array in replay.state_dict().items():
        if isinstance(array, np.ndarray):
            np.testing.assert_array_equal(array, before[name])
    assert len(replay) == 5
    discrete = SampledReplay(50, (3,), np.float32, 2, 0.9, 2, 2, num_actions=3)
    game = Game(np.zeros((2, 3), np.float32), np.array([0, 2]), np.zeros(2, np.float32),
                np.zeros(2, np.float32), np.full((2, 2), 0.5, np.float32), True,
                sampled_actions=np.array([[0, 3], [1, 2]]))
    with pytest.raises(ValueError, match="game.sampled_actions"):
        discrete.add(game)
    with pytest.raises(ValueError, match="action_dim .* or num_actions"):
        SampledReplay(50, (3,), np.float32, 2, 0.9, 2, 2)


# -- the agent ----------------------------------------------------------------------------------


def test_agent_learns_the_bandit_optimum():
    torch.set_num_threads(1)
    agent = MuZeroAgent(Bandit, config=bandit_config())
    untrained = agent.evaluate(20)["mean_return"]
    agent.train(3000, progress=False)
    with torch.no_grad():
        mean = float(agent.network.initial_inference(torch.zeros(1, 2)).logits[0, 0])
    trained = agent.evaluate(20)["mean_return"]
    # Untrained: actions around 0 (reward 1 - 4 * 0.16 at best, about -0.6 on average).
    assert abs(mean - OPTIMUM) < 0.2, mean
    assert trained > 0.75 and trained > untrained + 0.5, (untrained, trained)
    action = agent.act(np.zeros(2, np.float32))
    assert action.shape == (1,) and action.dtype == torch.float32
    assert agent.act(np.zeros((3, 2), np.float32)).shape == (3, 1)


def test_sampled_agent_replay_holds_the_searches_samples_and_save_load(tmp_path):
    config = bandit_config(num_envs=4, min_replay=16, batch_size=16, reanalyse_fraction=0.25)
    agent = MuZeroAgent(Bandit, config=config)
    agent.train(200, progress=False)
    replay = agent.replay
    assert isinstance(replay, SampledReplay) and len(replay) == 200
    valid = replay.valid
    samples, actions = replay.samples[valid], replay.actions[valid]
    assert samples.shape == (200, 8, 1) and np.all(np.abs(samples) <= 1.0)
    # The action played is one of its position's samples; the policy target sums to 1.
    assert np.all(np.abs(samples - actions[:, None]).min(1) == 0.0)
    np.testing.assert_allclose(replay.policies[valid].sum(1), 1.0, rtol=1e-5)
    path = str(tmp_path / "sampled.pt")
    agent.save(path)
    loaded = MuZeroAgent.load(path, Bandit)
    assert loaded.config.search == "sampled" and loaded.config.num_samples == 8
    np.testing.assert_array_equal(loaded.replay.samples, replay.samples)
    obs = np.zeros((2, 2), np.float32)
    torch.testing.assert_close(loaded.act(obs), agent.act(obs))
    a, b = agent._learn(), loaded._learn()
    assert a == b
    loaded.train(16, progress=False)
    assert loaded.env_steps == agent.env_steps + 16


def test_sampled_search_on_a_discrete_action_space():
    # Chain's 2 actions, K = 2: every search samples both; the policy target is over them.
    config = small_config(search="sampled", num_samples=2, reuse_tree=True)
    agent = MuZeroAgent(lambda: Chain(5), config=config)
    agent.train(120, progress=False)
    replay = agent.replay
    valid = replay.valid
    assert replay.samples.dtype == np.int64
    assert np.all(np.sort(replay.samples[valid], 1) == [0, 1])
    assert agent.updates > 0 and math.isfinite(agent._learn()["loss"])
    assert agent.act(np.eye(5, dtype=np.float32)[0]) in (0, 1)


@pytest.mark.parametrize("space", ["box", "discrete"])
def test_agent_self_play_through_the_native_model(tmp_path, monkeypatch, space):
    # native_selfplay exports recurrent_inference with the actions the search hands it: float
    # [B, action_dim] over a Box, int64 [B] over a Discrete space.
    import warnings

    monkeypatch.setenv("WMFAST_CACHE", str(tmp_path))
    if space == "box":
        agent = MuZeroAgent(Bandit, config=bandit_config(
            num_envs=4, min_replay=16, batch_size=16, native_selfplay=True,
            native_refresh_every=2))
        latent = agent.model.initial_inference(torch.zeros(4, 2)).latent
        action = torch.tensor([[-0.5], [0.0], [0.25], [1.0]])
    else:
        agent = MuZeroAgent(lambda: Chain(5), config=small_config(
            search="sampled", num_samples=2, native_selfplay=True, native_refresh_every=2))
        latent = agent.model.initial_inference(torch.eye(5)[:4]).latent
        action = torch.tensor([0, 1, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the eager model
        agent.train(120, progress=False)
    native = agent._native_model
    assert agent._selfplay.search_model is native.native and agent.updates > 2
    assert native.native.weights_version == 1 + agent.updates // 2
    native.refresh()
    got, want = native.native(latent, action), agent.model.recurrent_inference(latent, action)
    for field in ("latent", "reward", "logits", "value"):
        torch.testing.assert_close(getattr(got, field), getattr(want, field), rtol=1e-4,
                                   atol=1e-3, msg=field)


def test_sampled_configs_are_checked():
    with pytest.raises(ValueError, match="Config.num_samples"):
        Config(search="sampled", num_samples=0)
    with pytest.raises(TypeError, match="search='sampled'"):
        MuZeroAgent(Bandit)
    with pytest.raises(ValueError, match="num_samples must be <= the number of actions"):
        MuZeroAgent(lambda: Chain(5), config=small_config(search="sampled", num_samples=3))
    with pytest.raises(ValueError, match="reanalyse"):
        MuZeroAgent(lambda: Chain(5), config=small_config(search="sampled", num_samples=2,
                                                          reanalyse_fraction=0.5))
    agent = MuZeroAgent(Bandit, config=bandit_config(reanalyse_fraction=0.1))
    with pytest.raises(ValueError, match="legal_actions"):
        agent.act(np.zeros(2, np.float32), legal_actions=[True])
    assert agent.env_steps == 0


def test_demo_smoke(tmp_path, capsys):
    import json

    from wmfast.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "sampled-muzero-pendulum", "--smoke", "--json", "--out", str(out)]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["demo"] == "sampled-muzero-pendulum" and figures["smoke"]
    assert figures["env_steps"] > 0 and math.isfinite(figures["final_eval_return"])
    for name in ("agent.pt", "log.csv", "sampled_muzero_pendulum.png"):
        assert (out / name).exists(), name
    loaded = MuZeroAgent.load(str(out / "agent.pt"), lambda: gym.make("Pendulum-v1"))
    assert loaded.act(np.zeros(3, np.float32)).shape == (1,)
