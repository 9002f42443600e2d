"""Adapters running the benchmark workloads through peer libraries, when installed.

TorchRL's CEMPlanner/MPPIPlanner plan through an EnvBase (here an unlocked-batch environment
around the same dynamics); mbrl-lib's optimizers take an objective over a population for one
problem at a time.
"""

from __future__ import annotations

import torch


def torchrl_available() -> bool:
    try:
        import torchrl.modules.planners  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "absent"
        return False
    return True


def mbrl_available() -> bool:
    try:
        import mbrl.planning  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def make_torchrl_env(dynamics, obs_dim: int, action_dim: int, low: float, high: float):
    """An EnvBase with unlocked batch size whose step is ``dynamics(obs, action)``."""
    from tensordict import TensorDict
    from torchrl.data import Bounded, Composite, Unbounded
    from torchrl.envs import EnvBase

    class DynamicsEnv(EnvBase):
        batch_locked = False

        def __init__(self):
            super().__init__(device="cpu", batch_size=torch.Size([]))
            self.observation_spec = Composite(observation=Unbounded(shape=(obs_dim,)))
            self.action_spec = Bounded(low, high, shape=(action_dim,))
            self.reward_spec = Unbounded(shape=(1,))

        def _step(self, td):
            obs = td.get("observation")
            action = td.get("action")
            lead = obs.shape[:-1]
            nxt, reward = dynamics(obs.reshape(-1, obs_dim), action.reshape(-1, action_dim))
            done = torch.zeros(*lead, 1, dtype=torch.bool)
            return TensorDict({"observation": nxt.reshape(*lead, obs_dim),
                               "reward": reward.reshape(*lead, 1), "done": done,
                               "terminated": done.clone()}, batch_size=lead)

        def _reset(self, td):
            raise NotImplementedError("planning only: rollouts start from given states")

        def _set_seed(self, seed):
            torch.manual_seed(seed)

    return DynamicsEnv()


class TorchRLPlanner:
    def __init__(self, kind, dynamics, obs_dim, action_dim, horizon, population, elites,
                 iterations, low=-1.0, high=1.0, temperature=1.0):
        from torch import nn
        from torchrl.modules.planners import CEMPlanner, MPPIPlanner

        self.env = make_torchrl_env(dynamics, obs_dim, action_dim, low, high)
        if kind == "cem":
            self.planner = CEMPlanner(self.env, horizon, iterations, population, elites)
        else:
            # MPPI ranks candidates by an "advantage" entry; the reward-to-go makes it the sum of
            # rewards, as for the other planners here.
            class RewardToGo(nn.Module):
                def forward(self, td):
                    reward = td.get(("next", "reward"))
                    td.set("advantage", reward.flip(-2).cumsum(-2).flip(-2))
                    return td

            advantage = RewardToGo()
            self.planner = MPPIPlanner(self.env, advantage, temperature, horizon, iterations,
                                       population, elites)

    def plan(self, state):
        from tensordict import TensorDict

        td = TensorDict({"observation": state}, batch_size=state.shape[:1])
        return self.planner.planning(td)


class MbrlCEM:
    """mbrl-lib's CEMOptimizer, one optimizer call per problem (how mbrl-lib plans)."""

    def __init__(self, dynamics, horizon, action_dim, population, elites, iterations, low=-1.0,
                 high=1.0):
        from mbrl.planning import CEMOptimizer

        self.dynamics, self.horizon, self.action_dim = dynamics, horizon, action_dim
        self.optimizer = CEMOptimizer(
            num_iterations=iterations, elite_ratio=elites / population,
            population_size=population, lower_bound=[[low] * action_dim] * horizon,
            upper_bound=[[high] * action_dim] * horizon, alpha=0.0, device=torch.device("cpu"))

    def plan(self, state):
        plans = []
        for b in range(state.shape[0]):
            s0 = state[b:b + 1]

            def objective(population, s0=s0):
                s = s0.expand(population.shape[0], *s0.shape[1:])
                total = torch.zeros(population.shape[0])
                for t in range(self.horizon):
                    s, r = self.dynamics(s, population[:, t])
                    total += r
                return total

            plans.append(self.optimizer.optimize(
                objective, x0=torch.zeros(self.horizon, self.action_dim)))
        return torch.stack(plans)
