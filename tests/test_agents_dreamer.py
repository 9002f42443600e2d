"""wmfast.agents.DreamerAgent: sequence replay, a few updates, acting, save/load, the demo."""

import json
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from wmfast import dreamer as dr
from wmfast.agents import DreamerAgent
from wmfast.agents.dreamer import SequenceReplay

TINY = dr.Config(deter=16, hidden=16, units=16, layers=1, stoch=3, classes=3, horizon=4,
                 batch_size=3, seq_len=8, prefill=20, train_every=10)


def test_sequence_replay_never_crosses_the_cursor():
    replay = SequenceReplay(capacity=10, obs_dim=1, action_dim=1, seed=0)
    for step in range(25):  # wraps around twice; the newest 10 steps are 15..24
        replay.add([step], [step - 1], float(step), step % 7 == 0, False)
    for _ in range(20):
        batch = replay.sample(batch_size=4, seq_len=5)
        obs = batch["obs"][..., 0]
        assert obs.shape == (5, 4)
        assert torch.all(obs[1:] - obs[:-1] == 1)  # contiguous, never across the cursor
        assert torch.all(obs >= 15)
        torch.testing.assert_close(batch["reward"], obs)
        torch.testing.assert_close(batch["prev_action"][..., 0], obs - 1)
        assert torch.all(batch["is_first"][0] == 1)
    with pytest.raises(ValueError, match="fewer than seq_len"):
        SequenceReplay(5, 1, 1).sample(1, 2)


@pytest.mark.parametrize(("env_id", "grad"), [("CartPole-v1", "reinforce"),
                                              ("Pendulum-v1", "dynamics")])
def test_train_act_evaluate_save_load(tmp_path, env_id, grad):
    def env_fn():
        return gym.make(env_id, max_episode_steps=25)

    agent = DreamerAgent(env_fn, TINY.replace(actor_grad=grad), seed=1)
    metrics = agent.train(40)
    assert agent.total_steps == 40 and agent.updates == 3  # at steps 20, 30 and 40
    assert {"model", "kl", "actor", "critic", "returns", "scale"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    env = env_fn()
    obs, _ = env.reset(seed=0)
    action = agent.act(obs)
    assert env.action_space.contains(action if env_id == "CartPole-v1" else
                                     np.asarray(action, np.float32))
    score = agent.evaluate(episodes=1)
    assert np.isfinite(score)
    path = tmp_path / "sub" / "agent.pt"
    agent.save(path)
    assert os.listdir(path.parent) == ["agent.pt"]  # no temporary file left behind
    loaded = DreamerAgent.load(path, env_fn)
    assert loaded.total_steps == 40 and loaded.updates == 3
    for a, b in zip(agent.actor.parameters(), loaded.actor.parameters()):
        assert torch.equal(a, b)
    agent.reset()
    loaded.reset()
    np.testing.assert_allclose(np.asarray(agent.act(obs)), np.asarray(loaded.act(obs)))


def test_rejects_unsupported_spaces():
    with pytest.raises(ValueError, match="vector Box observation space"):
        DreamerAgent(lambda: gym.make("FrozenLake-v1"), TINY)


def test_demo_smoke_json(tmp_path, capsys):
    from wmfast.demos import DEMOS

    assert DEMOS["dreamer-cartpole"](["--smoke", "--json", "--seed", "3",
                                      "--out", str(tmp_path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["demo"] == "dreamer-cartpole" and result["env_steps"] == 256
    assert result["target"] == 450 and result["reached"] is (
        result["seconds_to_target"] is not None)
    assert np.isfinite(result["best_eval_return"])
    assert {"log.csv", "dreamer_cartpole.png", "open_loop.png", "open_loop_error.png",
            "agent.pt"} <= set(os.listdir(tmp_path))
    assert set(result["open_loop_obs_mse"]) == {"1", "2", "3", "4", "5"}


def test_evaluate_is_reproducible_and_leaves_the_training_rng_alone():
    agent = DreamerAgent(lambda: gym.make("CartPole-v1", max_episode_steps=25), TINY, seed=2)
    agent.train(30)
    state = torch.get_rng_state()
    first = agent.evaluate(episodes=2, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert agent.evaluate(episodes=2, seed=5) == first
    assert np.isfinite(agent.evaluate(episodes=2, seed=5, sample_latent=False))
