"""A chain MDP with known values and a small, fast MuZero config, and a 1-D continuous bandit
with its Sampled MuZero config, shared by the MuZero tests (local and Ray)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from wmfast.muzero import Config


class Chain(gym.Env):
    """States 0..L-1 (one-hot), both actions move right, reward 1 on leaving the last state."""

    def __init__(self, length: int = 5) -> None:
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (length,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.state = 0

    def _obs(self):
        obs = np.zeros(self.length, np.float32)
        obs[self.state] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = 0
        return self._obs(), {}

    def step(self, action):
        self.state += 1
        done = self.state == self.length
        if done:
            self.state = 0
        return self._obs(), float(done), done, False, {}


def small_config(**changes) -> Config:
    settings = {"num_envs": 4, "num_simulations": 4, "batch_size": 32, "min_replay": 20,
                "hidden": 16, "latent_dim": 8, "support_size": 5, "discount": 0.9, "td_steps": 10,
                "unroll_steps": 3, "updates_per_step": 0.5, "learning_rate": 1e-2, "seed": 0}
    settings.update(changes)
    return Config(**settings)


OPTIMUM = 0.4


class Bandit(gym.Env):
    """One step: reward 1 - 4 (a - 0.4)^2 for a in [-1, 1]; the optimum is a = 0.4 (reward 1)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        a = float(np.asarray(action).reshape(-1)[0])
        return np.zeros(2, np.float32), 1.0 - 4.0 * (a - OPTIMUM) ** 2, True, False, {}


def bandit_config(**changes) -> Config:
    settings_ = {"search": "sampled", "num_samples": 8, "num_simulations": 16, "num_envs": 8,
                 "batch_size": 64, "min_replay": 64, "replay_capacity": 5000, "support_size": 0,
                 "unroll_steps": 1, "td_steps": 1, "latent_dim": 16, "hidden": 32,
                 "updates_per_step": 0.25, "learning_rate": 3e-3, "seed": 0}
    settings_.update(changes)
    return Config(**settings_)
