"""TabularAgent on real gymnasium environments, and the FrozenLake demo end to end."""

import gymnasium as gym
import numpy as np
import pytest
from wmfast.agents import TabularAgent
from wmfast.demos import frozenlake as demo


def test_agent_learns_frozenlake_4x4_to_near_optimal():
    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True)
    unwrapped = env.unwrapped
    transitions, success = demo.true_model(unwrapped.P, 16, 4)
    optimum = demo.optimal_success(transitions, success, 0, 100)
    agent = TabularAgent.for_env(env, gamma=0.99, seed=0)
    for episode in range(600):
        agent.run_episode(env, seed=episode)
    assert agent.total_steps == agent.model.num_transitions
    learned = demo.success_probability(agent.greedy_policy(), transitions, success, 0, 100)
    assert learned > optimum - 0.05, (learned, optimum)


def test_exact_success_matches_real_episodes():
    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True)
    transitions, success = demo.true_model(env.unwrapped.P, 16, 4)
    policy = np.random.default_rng(0).integers(0, 4, 16)
    exact = demo.success_probability(policy, transitions, success, 0, 100)
    empirical = demo.evaluate(env, policy, 4000, seed=0)
    assert abs(exact - empirical) < 4 * np.sqrt(0.25 / 4000) + 1e-3


def test_epsilon_agent_explores_and_rejects_bad_settings():
    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=False)
    agent = TabularAgent.for_env(env, exploration="epsilon", epsilon=1.0, seed=0)
    for episode in range(20):
        agent.run_episode(env, seed=episode)
    assert (agent.model.visit_counts()[0] > 0).sum() == 4  # random actions: all tried at start
    with pytest.raises(ValueError, match="exploration must be 'optimism' or 'epsilon'"):
        TabularAgent(4, 2, exploration="greedy")
    with pytest.raises(TypeError, match="needs Discrete observation and action spaces"):
        TabularAgent.for_env(gym.make("CartPole-v1"))


def test_frozenlake_demo_runs_and_saves_its_plot(tmp_path, capsys):
    code = demo.main(["--map", "4x4", "--rounds", "2", "--steps-per-round", "300",
                      "--eval-episodes", "50", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "the best policy reaches the goal with probability" in out
    assert (tmp_path / "frozenlake_4x4.png").stat().st_size > 10_000
