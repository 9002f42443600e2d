"""Smoke test of ``wmfast demo pendulum`` with tiny settings."""

from __future__ import annotations

import pytest

pytest.importorskip("gymnasium")


def test_pendulum_demo_runs(tmp_path, capsys):
    from wmfast.cli import main

    png = tmp_path / "returns.png"
    code = main(["demo", "pendulum", "--train-steps", "200", "--epochs", "2", "--members", "2",
                 "--hidden", "16", "--episodes", "1", "--episode-length", "8", "--population",
                 "20", "--horizon", "5", "--iterations", "2", "--no-progress", "--png", str(png)])
    assert code == 0
    out = capsys.readouterr().out
    for name in ("random", "MPC, true dynamics", "MPC, learned ensemble"):
        assert name in out
    assert "200 random-action transitions" in out
    assert png.exists() and png.stat().st_size > 1000


def test_pendulum_true_dynamics_match_gymnasium():
    import gymnasium as gym
    import numpy as np
    import torch
    from wmfast.demos.pendulum import true_dynamics

    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(50):
        action = rng.uniform(-2, 2, size=(1,)).astype(np.float32)
        nxt, reward, *_ = env.step(action)
        pred, pred_reward = true_dynamics(torch.tensor(obs)[None], torch.tensor(action)[None])
        np.testing.assert_allclose(pred[0].numpy(), nxt, atol=1e-4)
        np.testing.assert_allclose(pred_reward.item(), reward, atol=1e-4)
        obs = nxt
