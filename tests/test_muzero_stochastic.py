"""Stochastic MuZero in the MuZero toolkit (wmfast.muzero.stochastic): the loss against a
written-out reference, the encoder's straight-through gradient, the search adapter, the replay's
final observations, the agent's code paths (self-play, reanalyse, save/load) and a learning test
on a game whose best move depends on a coin flip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import wmfast as wm
from hypothesis import given, settings
from hypothesis import strategies as st
from muzero_chain import Chain, small_config
from stochastic_coin import OPTIMAL_RETURN, CoinGame, coin_config
from torch.nn import functional as F
from wmfast import transforms as T
from wmfast.agents import MuZeroAgent
from wmfast.muzero import Config, Game, MLPNetwork, Replay, SelfPlay
from wmfast.muzero.distributed import build_search, search_spec
from wmfast.muzero.stochastic import (
    StochasticMLPNetwork,
    StochasticSearchModel,
    chance_code,
    stochastic_unrolled_loss,
)

# -- the loss against a written-out reference -----------------------------------------------------


class _OneHotStraightThrough(torch.autograd.Function):
    """The reference's straight-through estimator, written as an autograd function: the one-hot
    of the argmax forward, the incoming gradient unchanged backward (to the softmax)."""

    @staticmethod
    def forward(ctx, probs):
        return F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


def _halve_gradient(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x.register_hook(lambda g: g * 0.5)
    return x


def _reference_loss(net, obs, next_obs, next_mask, actions, tv, tr, tp, vm, rm, pm, w, size,
                    vw, cw, mw):
    """(value, loss whose gradient is the algorithm's): the paper's loss term by term, one
    sample at a time, with the 1/K unroll scaling applied to a copy that carries the gradient."""
    B, K = actions.shape

    def scalar(head, target):
        if size == 0:
            return 0.5 * (head - target) ** 2
        probs = T.scalar_to_support(target.reshape(1), size)[0]
        return -(probs * torch.log_softmax(head, -1)).sum()

    def ce(logits, target):
        return -(target * torch.log_softmax(logits, -1)).sum()

    values, grads = [], []
    for b in range(B):
        root = net.initial_inference(obs[b:b + 1])
        first = (vw * scalar(root.value[0], tv[b, 0]) * vm[b, 0]
                 + ce(root.logits[0], tp[b, 0]) * pm[b, 0])
        value, grad = first, first
        latent, previous = root.latent, obs[b:b + 1]
        for k in range(1, K + 1):
            after = net.afterstate_inference(latent, actions[b, k - 1:k])
            probs = torch.softmax(net.encode(previous, next_obs[b, k - 1:k]), -1)
            code = _OneHotStraightThrough.apply(probs)
            if next_mask[b, k - 1] == 0:
                code = code.detach()   # no real transition: the encoder is not trained
            step = net.chance_inference(_halve_gradient(after.latent), code)
            term = (vw * scalar(after.value[0], tv[b, k - 1]) * vm[b, k - 1]
                    + cw * ce(after.chance_logits[0], code[0].detach()) * next_mask[b, k - 1]
                    + mw * ((code[0].detach() - probs[0]) ** 2).sum() * next_mask[b, k - 1]
                    + vw * scalar(step.value[0], tv[b, k]) * vm[b, k]
                    + scalar(step.reward[0], tr[b, k]) * rm[b, k]
                    + ce(step.logits[0], tp[b, k]) * pm[b, k])
            value, grad = value + term, grad + term / K
            latent, previous = _halve_gradient(step.latent), next_obs[b, k - 1:k]
        values.append(value * w[b])
        grads.append(grad * w[b])
    return torch.stack(values).mean(), torch.stack(grads).mean()


def _random_batch(B, K, A, obs_dim, seed):
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(B, obs_dim, generator=g),
        "next_obs": torch.randn(B, K, obs_dim, generator=g),
        "next_mask": (torch.rand(B, K, generator=g) > 0.3).float(),
        "actions": torch.randint(0, A, (B, K), generator=g),
        "tv": torch.randn(B, K + 1, generator=g) * 3,
        "tr": torch.randn(B, K + 1, generator=g),
        "tp": torch.softmax(torch.randn(B, K + 1, A, generator=g), -1),
        "vm": (torch.rand(B, K + 1, generator=g) > 0.3).float(),
        "rm": (torch.rand(B, K + 1, generator=g) > 0.3).float(),
        "pm": (torch.rand(B, K + 1, generator=g) > 0.3).float(),
        "w": torch.rand(B, generator=g) + 0.5,
    }


def _nontrivial_network(obs_dim, A, C, size, seed):
    torch.manual_seed(seed)
    net = StochasticMLPNetwork(obs_dim, A, C, latent_dim=8, hidden=16, support_size=size)
    for head in (net.value_head, net.reward_head, net.policy_head, net.q_head, net.chance_head):
        torch.nn.init.normal_(head[-1].weight)   # the zero-initialised heads made non-trivial
    return net


@pytest.mark.parametrize("size", [0, 3])
def test_loss_and_its_gradient_match_the_written_out_reference(size):
    B, K, A, C, obs_dim = 5, 3, 3, 4, 6
    net = _nontrivial_network(obs_dim, A, C, size, seed=size)
    d = _random_batch(B, K, A, obs_dim, seed=1)
    losses = stochastic_unrolled_loss(
        net, d["obs"], d["actions"], d["tv"], d["tr"], d["tp"], d["vm"], d["rm"], d["pm"],
        d["w"], size, 0.25, next_observations=d["next_obs"], next_mask=d["next_mask"],
        chance_loss_weight=0.7, commitment_weight=1.3)
    net.zero_grad()
    losses.total.backward()
    ours = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    value, grad_loss = _reference_loss(net, d["obs"], d["next_obs"], d["next_mask"], d["actions"],
                                       d["tv"], d["tr"], d["tp"], d["vm"], d["rm"], d["pm"],
                                       d["w"], size, 0.25, 0.7, 1.3)
    net.zero_grad()
    grad_loss.backward()
    torch.testing.assert_close(losses.total, value, rtol=1e-5, atol=1e-6)
    theirs = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    assert ours.keys() == theirs.keys()
    # Every function gets a gradient, the encoder through the straight-through code.
    assert any(n.startswith("encoder.") for n in ours)
    assert any(n.startswith("afterstate_dynamics.") for n in ours)
    for name, grad in ours.items():
        torch.testing.assert_close(grad, theirs[name], rtol=1e-4, atol=1e-6, msg=name)


def test_loss_terms_on_a_fixed_batch_are_the_known_values():
    # Zero-initialised heads: uniform policy (log A), uniform chance prior (log C), value, Q and
    # reward 0 (scalar heads: 0.5 * target^2); the commitment term is the encoder's
    # || one_hot - softmax ||^2, computed here from its logits.
    B, K, A, C = 2, 1, 2, 4
    torch.manual_seed(0)
    net = StochasticMLPNetwork(3, A, C, latent_dim=4, hidden=8, support_size=0)
    obs, next_obs = torch.eye(3)[:2], torch.eye(3)[1:3].view(B, K, 3)
    tv = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    tr = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    tp = torch.full((B, K + 1, A), 0.5)
    ones = torch.ones(B, K + 1)
    losses = stochastic_unrolled_loss(net, obs, torch.zeros(B, K, dtype=torch.long), tv, tr, tp,
                                      ones, ones, ones, torch.ones(B), 0, 0.25,
                                      next_observations=next_obs, next_mask=torch.ones(B, K))
    probs = torch.softmax(net.encode(obs, next_obs[:, 0]), -1)
    commitment = ((F.one_hot(probs.argmax(-1), C) - probs) ** 2).sum(-1).mean()
    torch.testing.assert_close(losses.value, torch.tensor((0.5 + 2 + 4.5 + 0) / 2))
    torch.testing.assert_close(losses.q_value, torch.tensor((0.5 + 4.5) / 2))
    torch.testing.assert_close(losses.reward, torch.tensor((0.5 + 0.5) / 2))
    torch.testing.assert_close(losses.policy, torch.tensor(2 * np.log(2), dtype=torch.float32))
    torch.testing.assert_close(losses.chance, torch.tensor(np.log(C), dtype=torch.float32))
    torch.testing.assert_close(losses.commitment, commitment.detach())
    expected = (0.25 * (losses.value + losses.q_value) + losses.reward + losses.policy
                + losses.chance + losses.commitment)
    torch.testing.assert_close(losses.total.detach(), expected)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 4), K=st.integers(1, 3), C=st.integers(1, 5), size=st.sampled_from([0, 2]),
       seed=st.integers(0, 10_000))
def test_masked_out_targets_contribute_nothing(B, K, C, size, seed):
    A, obs_dim = 2, 3
    net = _nontrivial_network(obs_dim, A, C, size, seed)
    d = _random_batch(B, K, A, obs_dim, seed)
    zeros = torch.zeros(B, K + 1)
    losses = stochastic_unrolled_loss(
        net, d["obs"], d["actions"], d["tv"], d["tr"], d["tp"], zeros, zeros, zeros, d["w"], size,
        next_observations=d["next_obs"], next_mask=torch.zeros(B, K))
    assert losses.total.item() == 0.0
    full = stochastic_unrolled_loss(
        net, d["obs"], d["actions"], d["tv"], d["tr"], d["tp"], d["vm"], d["rm"], d["pm"], d["w"],
        size, next_observations=d["next_obs"], next_mask=d["next_mask"])
    assert torch.isfinite(full.total) and full.total.item() >= 0.0
    for term in (full.value, full.reward, full.policy, full.q_value, full.chance, full.commitment):
        assert term.item() >= 0.0 and not term.requires_grad


def test_loss_names_inputs_of_the_wrong_shape():
    net = StochasticMLPNetwork(3, 2, 4, latent_dim=4, hidden=8, support_size=0)
    B, K = 2, 2
    args = (net, torch.zeros(B, 3), torch.zeros(B, K, dtype=torch.long), torch.zeros(B, K + 1),
            torch.zeros(B, K + 1), torch.full((B, K + 1, 2), 0.5), torch.ones(B, K + 1),
            torch.ones(B, K + 1), torch.ones(B, K + 1), torch.ones(B), 0)
    with pytest.raises(ValueError, match=r"next_observations must have shape \[2, 2, 3\]"):
        stochastic_unrolled_loss(*args, next_observations=torch.zeros(B, K + 1, 3),
                                 next_mask=torch.ones(B, K))
    with pytest.raises(ValueError, match=r"next_mask must have shape \[2, 2\]"):
        stochastic_unrolled_loss(*args, next_observations=torch.zeros(B, K, 3),
                                 next_mask=torch.ones(B))
    with pytest.raises(ValueError, match=r"initial_inference value must have shape \[2, 7\]"):
        stochastic_unrolled_loss(*args[:-1], 3, next_observations=torch.zeros(B, K, 3),
                                 next_mask=torch.ones(B, K))


# -- the encoder's straight-through code ------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 5), C=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_chance_code_is_the_one_hot_argmax_with_the_softmax_gradient(B, C, seed):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, C, generator=g) * 3).requires_grad_()
    weights = torch.randn(B, C, generator=g)
    code, probs = chance_code(logits)
    torch.testing.assert_close(code.detach(), F.one_hot(logits.argmax(-1), C).float())
    torch.testing.assert_close(probs.detach(), torch.softmax(logits, -1).detach())
    (grad,) = torch.autograd.grad((code * weights).sum(), logits)
    # Known answer: d/dlogits of sum(w * softmax(logits)) = p * (w - <w, p>).
    p = torch.softmax(logits, -1).detach()
    expected = p * (weights - (weights * p).sum(-1, keepdim=True))
    torch.testing.assert_close(grad, expected)


# -- network, search adapter ----------------------------------------------------------------------


def test_network_and_search_model_shapes_and_decoding():
    B, A, C, size = 3, 2, 5, 4
    net = _nontrivial_network(6, A, C, size, seed=3)
    obs = torch.randn(B, 6)
    root = net.initial_inference(obs)
    assert root.latent.shape == (B, 8) and root.logits.shape == (B, A)
    assert root.value.shape == (B, 2 * size + 1)
    after = net.afterstate_inference(root.latent, torch.tensor([0, 1, 1]))
    assert after.latent.shape == (B, 8) and after.chance_logits.shape == (B, C)
    assert after.value.shape == (B, 2 * size + 1)
    by_index = net.chance_inference(after.latent, torch.tensor([0, 4, 2]))
    by_one_hot = net.chance_inference(after.latent, F.one_hot(torch.tensor([0, 4, 2]), C).float())
    torch.testing.assert_close(by_index.latent, by_one_hot.latent)
    assert by_index.reward.shape == (B, 2 * size + 1) and by_index.logits.shape == (B, A)
    assert net.encode(obs, obs).shape == (B, C)
    model = StochasticSearchModel(net, size, two_player=True)
    decision = model.decision(root.latent, torch.tensor([0, 1, 1]))
    torch.testing.assert_close(decision.value, T.support_to_scalar(after.value, size).detach())
    assert not decision.latent.requires_grad
    step = model.chance(after.latent, torch.tensor([0, 4, 2]))
    torch.testing.assert_close(step.reward, T.support_to_scalar(by_index.reward, size).detach())
    torch.testing.assert_close(step.value, T.support_to_scalar(by_index.value, size).detach())
    torch.testing.assert_close(step.discount, torch.full((B,), -1.0))
    assert StochasticSearchModel(net, size).chance(after.latent, torch.tensor([0, 1, 2])).discount is None
    out = wm.StochasticMCTS(A, C, 8, seed=0).search(model, model.initial_inference(obs))
    assert out.visit_counts.shape == (B, A) and (out.visit_counts.sum(1) == 8).all()
    with pytest.raises(ValueError, match="num_chance_outcomes must be an int >= 1"):
        StochasticMLPNetwork(6, A, 0)


# -- replay: the final observation of each game ----------------------------------------------------


def _game(T, first, final=None, terminated=True):
    return Game(observations=np.arange(first, first + T, dtype=np.float32)[:, None],
                actions=np.zeros(T, np.int64), rewards=np.ones(T, np.float32),
                root_values=np.zeros(T, np.float32), policies=np.full((T, 2), 0.5, np.float32),
                terminated=terminated,
                final_observation=None if final is None else np.array([final], np.float32))


def test_replay_gives_the_final_observation_after_the_last_position():
    replay = Replay(20, (1,), np.float32, 2, 0.9, 2, unroll_steps=3)
    replay.add(_game(3, 10, final=99))     # positions 0..2, observations 10, 11, 12, then 99
    replay.add(_game(2, 20))               # no final observation kept
    batch = replay.targets(np.array([0, 1, 2, 3, 4]), next_observations=True)
    np.testing.assert_array_equal(batch.next_observations[..., 0], [
        [11, 12, 99], [12, 99, 11], [99, 12, 12], [21, 20, 20], [21, 21, 21]])
    np.testing.assert_array_equal(batch.next_mask, [
        [1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0]])
    state = replay.state_dict()
    copy = Replay(20, (1,), np.float32, 2, 0.9, 2, unroll_steps=3)
    copy.load_state_dict(state)
    again = copy.targets(np.array([0, 1, 2, 3, 4]), next_observations=True)
    np.testing.assert_array_equal(again.next_observations, batch.next_observations)
    # Overwriting a game drops its final observation with it.
    replay.add(_game(18, 30, final=7))
    assert list(replay.final_observations) == [0] and replay.final_observations[0][0] == 7
    with pytest.raises(ValueError, match=r"game.final_observation must have shape \[1\]"):
        replay.add(Game(**{**_game(1, 0).__dict__, "final_observation": np.zeros(2)}))


# -- the agent ---------------------------------------------------------------------------------


def test_config_and_agent_refuse_what_stochastic_muzero_does_not_offer():
    with pytest.raises(ValueError, match="Config.num_chance_outcomes must be >= 1"):
        Config(search="stochastic", num_chance_outcomes=0)
    with pytest.raises(TypeError, match="Config.num_chance_outcomes must be an int"):
        Config(num_chance_outcomes=2.0)
    with pytest.raises(ValueError, match="Config.reuse_tree needs search='muzero'"):
        Config(search="stochastic", reuse_tree=True)
    with pytest.raises(ValueError, match="Config.consistency_weight must be 0 with"):
        Config(search="stochastic", consistency_weight=1.0)
    with pytest.raises(TypeError, match="network must have a afterstate_inference method"):
        MuZeroAgent(CoinGame, network=MLPNetwork(4, 2), config=coin_config())
    net = StochasticMLPNetwork(4, 2, 4)
    search = wm.StochasticMCTS(2, 4, 4)
    with pytest.raises(ValueError, match="reuse_tree needs a wm.MCTS search"):
        SelfPlay([CoinGame()], StochasticSearchModel(net, 10), search, 2, reuse_tree=True)


def test_agent_trains_reanalyses_and_resumes_from_a_checkpoint(tmp_path):
    config = small_config(search="stochastic", num_chance_outcomes=3, reanalyse_fraction=0.25)
    agent = MuZeroAgent(lambda: Chain(5), config=config)
    assert isinstance(agent.search, wm.StochasticMCTS) and isinstance(agent.network,
                                                                      StochasticMLPNetwork)
    assert agent.eval_search.config.dirichlet_fraction == 0.0
    agent.train(200, progress=False, log_dir=str(tmp_path / "logs"), eval_every=0.2,
                eval_episodes=1)
    assert agent.updates > 0
    assert {"q_loss", "chance_loss", "commitment_loss"} <= set(agent.history[-1])
    header = (tmp_path / "logs" / "log.csv").read_text().splitlines()[0].split(",")
    assert {"q_loss", "chance_loss", "commitment_loss"} <= set(header)
    # Every finished game left its final observation for the encoder's last target.
    assert len(agent.replay.final_observations) == len(np.unique(
        agent.replay.game_start[agent.replay.valid]))
    stored = np.flatnonzero(agent.replay.valid)
    np.testing.assert_allclose(agent.replay.policies[stored].sum(1), 1.0, atol=1e-5)
    path = str(tmp_path / "agent.pt")
    agent.save(path)
    loaded = MuZeroAgent.load(path, lambda: Chain(5))
    assert loaded.config == agent.config and isinstance(loaded.search, wm.StochasticMCTS)
    assert loaded.replay.final_observations.keys() == agent.replay.final_observations.keys()
    for _ in range(3):
        assert agent._learn() == loaded._learn()
    for p, q in zip(agent.network.parameters(), loaded.network.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    obs = np.eye(5, dtype=np.float32)
    assert loaded.act(obs[0]) in (0, 1)
    assert loaded.act(obs).shape == (5,)
    loaded.train(64, progress=False)
    assert loaded.env_steps == agent.env_steps + 64


def test_a_stochastic_search_rebuilt_from_its_settings_searches_the_same():
    net = _nontrivial_network(5, 2, 3, 2, seed=0)
    model = StochasticSearchModel(net, 2)
    obs = torch.randn(4, 5)
    search = wm.StochasticMCTS(2, 3, 12, dirichlet_fraction=0.25, seed=3, pb_c_init=1.5)
    copy = build_search(search_spec(search), seed=3)
    assert type(copy) is wm.StochasticMCTS and copy.num_chance_outcomes == 3
    a = search.search(model, model.initial_inference(obs))
    b = copy.search(model, model.initial_inference(obs))
    np.testing.assert_array_equal(np.asarray(a.visit_counts), np.asarray(b.visit_counts))
    torch.testing.assert_close(a.tree.chance_children_visits, b.tree.chance_children_visits)


def test_stochastic_muzero_learns_the_coin_game_optimum():
    # The best first move gambles on a coin, the best second move matches the coin: return 1
    # (the safe line pays 0.6, gambling without matching 0.5). Fixed seed, CI-sized budget.
    torch.manual_seed(0)
    agent = MuZeroAgent(CoinGame, config=coin_config())
    agent.train(1600, progress=False)
    result = agent.evaluate(20)
    assert result["mean_return"] == pytest.approx(OPTIMAL_RETURN)
    # The learned model: the encoder gives the two coin faces different codes, the chance prior
    # after gambling splits between those two codes about evenly, and the afterstate value of
    # gambling beats the safe line's.
    obs = torch.eye(4)
    with torch.no_grad():
        heads, tails = agent.network.encode(obs[[0, 0]], obs[[1, 2]]).argmax(-1).tolist()
        root = agent.model.initial_inference(obs[:1])
        gamble = agent.model.decision(root.latent, torch.tensor([0]))
        safe = agent.model.decision(root.latent, torch.tensor([1]))
    assert heads != tails
    prior = torch.softmax(gamble.chance_logits[0], -1)
    assert prior[heads] + prior[tails] > 0.9
    assert 0.3 < prior[heads] < 0.7
    assert gamble.value.item() > safe.value.item()


def test_demo_smoke(tmp_path, capsys):
    import json

    from wmfast.demos.stochastic_muzero_coin import main

    assert main(["--smoke", "--json", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["demo"] == "stochastic-muzero-coin" and result["optimum"] == OPTIMAL_RETURN
    assert set(result) >= {"stochastic", "muzero"}
    assert {"stochastic_muzero_coin.png", "curves.csv", "agent.pt"} <= {
        p.name for p in tmp_path.iterdir()}
    agent = MuZeroAgent.load(str(tmp_path / "agent.pt"), CoinGame)
    assert agent.config.search == "stochastic" and agent.env_steps == result["env_steps"]


def test_two_player_stochastic_agent_plays_legal_moves_and_evaluates():
    from wmfast.envs import TicTacToe

    config = Config(search="stochastic", num_chance_outcomes=2, two_player=True, num_envs=4,
                    num_simulations=4, discount=1.0, td_steps=9, unroll_steps=3, latent_dim=8,
                    hidden=8, support_size=0, replay_capacity=500, batch_size=8, min_replay=20,
                    updates_per_step=0.25, seed=0)
    agent = MuZeroAgent(TicTacToe, config=config)
    assert agent.model.two_player
    agent.train(120, progress=False)
    assert agent.episodes > 0 and agent.updates > 0
    stored = np.flatnonzero(agent.replay.valid)
    assert (agent.replay.signs[stored] == -1.0).all()
    assert agent.replay.legal[stored, agent.replay.actions[stored]].all()
    result = agent.evaluate(2)
    assert set(result["returns"].tolist()) <= {-1.0, 0.0, 1.0}


def test_agent_self_play_through_native_decision_and_chance(tmp_path, monkeypatch):
    # native_selfplay exports the two functions (support decoding included) as the
    # (decision, chance) pair wm.StochasticMCTS takes, and refreshes both from the learner.
    import warnings

    monkeypatch.setenv("WMFAST_CACHE", str(tmp_path))
    config = coin_config(native_selfplay=True, native_refresh_every=2, support_size=3)
    agent = MuZeroAgent(CoinGame, config=config)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the eager model
        agent.train(env_steps=120, progress=False)
    native = agent._native_model
    decision, chance = native.native
    assert agent._selfplay.search_model is native.native and agent.updates > 2
    for model in (decision, chance):   # refreshed every 2 updates (and once at the start)
        assert model.weights_version == 1 + agent.updates // 2
    native.refresh()
    latent = agent.model.initial_inference(torch.randn(5, 4)).latent
    action = torch.tensor([0, 1, 0, 1, 1])
    got, want = decision(latent, action), agent.model.decision(latent, action)
    for g, w in zip((got.latent, got.chance_logits, got.value),
                    (want.latent, want.chance_logits, want.value)):
        torch.testing.assert_close(g, w, atol=1e-3, rtol=1e-4)   # AOTInductor's fused kernels
    outcome = torch.tensor([0, 1, 2, 3, 0])
    got, want = chance(want.latent, outcome), agent.model.chance(want.latent, outcome)
    for g, w in zip((got.latent, got.reward, got.logits, got.value, got.discount),
                    (want.latent, want.reward, want.logits, want.value, want.discount)):
        torch.testing.assert_close(g, w, atol=1e-3, rtol=1e-4)
