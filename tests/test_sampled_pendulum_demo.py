"""``wmfast demo sampled-pendulum``: its smoke run through the CLI and its search model."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("gymnasium")


def test_sampled_pendulum_smoke(tmp_path, capsys):
    from wmfast.cli import main

    assert main(["demo", "sampled-pendulum", "--smoke", "--json", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["episodes"] == 2 and figures["transitions_per_decision"] == 12 * 5
    assert figures["sampled_mcts_mean_return"] <= 0 and figures["cem_mean_return"] <= 0
    assert (tmp_path / "returns.csv").read_text().count("\n") == 3


def test_repeated_model_is_the_true_dynamics_held():
    from wmfast.demos.pendulum import true_dynamics
    from wmfast.demos.sampled_pendulum import RepeatedPendulum

    model = RepeatedPendulum(repeat=3, gamma=0.9, policy_std=2.0)
    obs = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, -1.0]])
    action = torch.tensor([[1.5], [-2.0]])
    step = model.recurrent_inference(obs, action)
    expected, total = obs, torch.zeros(2)
    for i in range(3):
        expected, reward = true_dynamics(expected, action)
        total += 0.9**i * reward
    torch.testing.assert_close(step.latent, expected)
    torch.testing.assert_close(step.reward, total)
    torch.testing.assert_close(step.discount, torch.full((2,), 0.9**3))
    torch.testing.assert_close(step.logits, torch.tensor([[0.0, 0.6931472]] * 2))
