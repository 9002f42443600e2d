"""A two-step game whose best second move depends on a coin flip: a small stochastic task with a
known optimum, for Stochastic MuZero's tests and ``wmfast demo stochastic-muzero-coin``.

States (one-hot observations): 0 start, 1 heads, 2 tails, 3 safe. From the start, action 0
gambles (a fair coin, seen in the next observation, leads to heads or tails) and action 1 goes
to safe; nothing is paid on the first step. Then, in heads action 0 pays 1, in tails action 1
pays 1 (the other action 0), and in safe either action pays 0.6; the episode ends. The optimum
gambles and matches the coin: return 1 in every episode (0.6 for the safe line, 0.5 for a
gamble without matching the coin). ``CoinGame(sides, wrong)`` generalises it to a die of
``sides`` faces whose wrong guesses pay ``wrong``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

__all__ = ["OPTIMAL_RETURN", "SAFE_RETURN", "CoinGame"]

OPTIMAL_RETURN = 1.0   # gamble, then match the face
SAFE_RETURN = 0.6      # the safe line


class CoinGame(gym.Env):
    """The game with a die of ``sides`` faces (2: the coin) and ``sides`` actions; a wrong
    guess pays ``wrong``. Observation: one-hot over start, the faces, safe."""

    def __init__(self, sides: int = 2, wrong: float = 0.0) -> None:
        self.sides, self.wrong = sides, wrong
        self.observation_space = gym.spaces.Box(0.0, 1.0, (sides + 2,), np.float32)
        self.action_space = gym.spaces.Discrete(sides)
        self.state = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.sides + 2, np.float32)
        obs[self.state] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = 0
        return self._obs(), {}

    def step(self, action):
        action = int(action)
        safe = self.sides + 1
        if self.state == 0:
            self.state = 1 + int(self.np_random.integers(self.sides)) if action == 0 else safe
            return self._obs(), 0.0, False, False, {}
        if self.state == safe:
            reward = SAFE_RETURN
        else:
            reward = 1.0 if action == self.state - 1 else self.wrong
        self.state = 0
        return self._obs(), reward, True, False, {}
