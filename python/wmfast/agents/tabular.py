"""TabularAgent: learn a count model of a discrete environment, plan on it, act, repeat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from wmfast.tabular import PlanningSolution, TabularModel

__all__ = ["EpisodeStats", "TabularAgent"]


@dataclass(frozen=True)
class EpisodeStats:
    steps: int
    total_reward: float
    terminated: bool  # False: truncated by the environment's time limit


class TabularAgent:
    """Model-based agent for gymnasium environments with Discrete observation and action spaces.

    It counts every transition it sees in a ``TabularModel``, replans by value iteration after
    each episode (warm-started from the previous values), and acts greedily on the plan.
    Exploration is optimistic by default: pairs tried fewer than ``min_visits`` times are valued
    ``r_max / (1 - gamma)`` (R-MAX), so the agent goes to try them, and known pairs get a count
    bonus ``bonus / sqrt(N(s, a))`` (MBIE-EB), so it keeps refining the estimates it is least
    sure of; ``exploration="epsilon"`` acts epsilon-greedily on the plain estimate instead.

    Example:
      >>> agent = TabularAgent.for_env(env, gamma=0.99)
      >>> for _ in range(100):
      ...     agent.run_episode(env)
      >>> agent.greedy_policy()   # [S] int64 tensor: the learned model's policy, no optimism

    ``act`` returns a Python int (what a Discrete gymnasium space takes); plans and policies are
    CPU tensors (see ``TabularModel``).
    """

    def __init__(self, num_states: int, num_actions: int, *, gamma: float = 0.99,
                 exploration: Literal["optimism", "epsilon"] = "optimism", r_max: float = 1.0,
                 min_visits: int = 1, bonus: float = 0.05, epsilon: float = 0.1, tol: float = 1e-8,
                 seed: int | None = None) -> None:
        if exploration not in ("optimism", "epsilon"):
            raise ValueError(f"exploration must be 'optimism' or 'epsilon', got {exploration!r}")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.model = TabularModel(num_states, num_actions)
        self.gamma, self.exploration, self.r_max = gamma, exploration, r_max
        self.min_visits, self.bonus, self.epsilon, self.tol = min_visits, bonus, epsilon, tol
        self.rng = np.random.default_rng(seed)
        self.total_steps = 0
        self._pending: list[tuple[int, int, float, int, bool]] = []
        self._values: torch.Tensor | None = None
        self._plan: PlanningSolution = self.replan()

    @classmethod
    def for_env(cls, env: Any, **kwargs: Any) -> TabularAgent:
        """An agent sized for a gymnasium env with Discrete observation and action spaces."""
        from gymnasium import spaces

        obs, act = env.observation_space, env.action_space
        if not isinstance(obs, spaces.Discrete) or not isinstance(act, spaces.Discrete):
            raise TypeError(f"TabularAgent needs Discrete observation and action spaces, got "
                            f"{type(obs).__name__} and {type(act).__name__}")
        return cls(int(obs.n), int(act.n), **kwargs)

    @property
    def plan(self) -> PlanningSolution:
        """The current (exploring) plan the agent acts on."""
        return self._plan

    def act(self, state: int) -> int:
        """The action for ``state`` under the current plan (epsilon-greedy if so configured)."""
        if self.exploration == "epsilon" and self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.model.num_actions))
        return int(self._plan.policy[state])

    def observe(self, state: int, action: int, reward: float, next_state: int,
                terminated: bool) -> None:
        """Records one real transition; it is counted at the next ``update``."""
        self._pending.append((state, action, reward, next_state, terminated))
        self.total_steps += 1

    def update(self) -> PlanningSolution:
        """Counts the recorded transitions and replans."""
        if self._pending:
            s, a, r, s2, d = map(np.asarray, zip(*self._pending))
            self.model.update(s, a, r, s2, d)
            self._pending.clear()
        return self.replan()

    def replan(self) -> PlanningSolution:
        optimism = {"r_max": self.r_max, "min_visits": self.min_visits, "bonus": self.bonus} \
            if self.exploration == "optimism" else {}
        self._plan = self.model.value_iteration(self.gamma, self.tol,
                                                initial_values=self._values, **optimism)
        # The warm start of the next replan: a copy, so writing to the plan changes nothing.
        self._values = self._plan.values.clone()
        return self._plan

    def greedy_solution(self) -> PlanningSolution:
        """Value iteration on the learned model without optimism (what the agent has learned)."""
        return self.model.value_iteration(self.gamma, self.tol)

    def greedy_policy(self) -> torch.Tensor:
        """[S] int64 greedy policy on the learned model, without exploration."""
        return self.greedy_solution().policy

    def run_episode(self, env: Any, *, learn: bool = True,
                    policy: torch.Tensor | np.ndarray | None = None,
                    seed: int | None = None) -> EpisodeStats:
        """Plays one episode. With ``learn`` it records transitions and replans at the end; with
        ``policy`` it follows that [S] policy (a tensor, numpy array or list) instead of the
        agent's plan."""
        state, _ = env.reset(seed=seed)
        steps, total = 0, 0.0
        while True:
            action = int(policy[state]) if policy is not None else self.act(state)
            next_state, reward, terminated, truncated, _ = env.step(action)
            if learn:
                self.observe(state, action, float(reward), next_state, terminated)
            steps += 1
            total += float(reward)
            state = next_state
            if terminated or truncated:
                break
        if learn:
            self.update()
        return EpisodeStats(steps, total, bool(terminated))
