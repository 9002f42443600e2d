"""``wmfast demo sampled-pendulum``: Pendulum-v1 controlled by wm.SampledMCTS over the true dynamics.

Model-predictive control with Sampled MuZero's tree search (continuous torques, K samples per
node) over a batched torch model of Pendulum-v1's equations, beside wm.CEM on the same model and
the same budget of simulated transitions per decision. All episodes run side by side: one search
(or one CEM plan) per environment step covers every episode.

The search model: a latent is the observation (cos, sin, speed); an edge holds its torque for
``--repeat`` environment steps (reward: their discounted sum; discount: gamma^repeat); the
policy at every node is the same wide Gaussian (mean 0, std ``--policy-std``), clipped to
[-2, 2]; leaves are valued 0, which is optimistic for Pendulum's negative rewards and pulls the
search deeper. Budget per decision: SampledMCTS N * repeat transitions, CEM population * horizon *
iterations.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence

import numpy as np
import torch

from wmfast.cli import HelpFormatter
from wmfast.demos.pendulum import MAX_TORQUE, true_dynamics


class RepeatedPendulum:
    """Pendulum's equations as a wm.SampledMCTS model: each action held for `repeat` steps."""

    def __init__(self, repeat: int, gamma: float, policy_std: float):
        self.repeat, self.gamma = repeat, gamma
        self.log_std = math.log(policy_std)
        self.calls = 0

    def policy(self, n: int) -> torch.Tensor:
        return torch.tensor([[0.0, self.log_std]]).expand(n, 2)

    @torch.no_grad()
    def recurrent_inference(self, latent, action):
        self.calls += 1
        total = torch.zeros(latent.shape[0])
        obs = latent
        for i in range(self.repeat):
            obs, reward = true_dynamics(obs, action)
            total += self.gamma**i * reward
        n = latent.shape[0]
        import wmfast as wm

        return wm.Step(obs, total, self.policy(n), torch.zeros(n),
                       torch.full((n,), self.gamma**self.repeat))


def run_episodes(envs, act, seeds, length):
    """Runs len(envs) episodes side by side; act(obs [E, 3]) -> actions [E, 1]. Returns returns."""
    obs = np.stack([env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)])
    totals = np.zeros(len(envs))
    for _ in range(length):
        actions = act(torch.as_tensor(obs, dtype=torch.float32))
        for i, env in enumerate(envs):
            o, r, *_ = env.step(actions[i].numpy())
            obs[i] = o
            totals[i] += r
    return totals


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wmfast demo sampled-pendulum", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--episode-length", type=int, default=200)
    parser.add_argument("--samples", type=int, default=8, help="K: torques sampled per node")
    parser.add_argument("--simulations", type=int, default=400, help="N per decision")
    parser.add_argument("--repeat", type=int, default=5,
                        help="environment steps an edge holds its torque")
    parser.add_argument("--gamma", type=float, default=0.97, help="discount per environment step")
    parser.add_argument("--policy-std", type=float, default=2.0,
                        help="std of the Gaussian the torques are sampled from (mean 0)")
    parser.add_argument("--cem-horizon", type=int, default=25)
    parser.add_argument("--cem-iterations", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="wmfast-demo-sampled-pendulum", help="output folder")
    parser.add_argument("--json", action="store_true", help="end with a JSON line of the figures")
    parser.add_argument("--smoke", action="store_true", help="a few tiny steps (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.episodes, args.episode_length, args.simulations = 2, 5, 12

    import gymnasium as gym

    import wmfast as wm

    torch.set_num_threads(1)
    budget = args.simulations * args.repeat
    population = max(2, budget // (args.cem_horizon * args.cem_iterations))
    seeds = [args.seed * 1000 + i for i in range(args.episodes)]
    envs = [gym.make("Pendulum-v1", max_episode_steps=args.episode_length)
            for _ in range(args.episodes)]
    model = RepeatedPendulum(args.repeat, args.gamma, args.policy_std)
    search = wm.SampledMCTS(num_samples=args.samples, num_simulations=args.simulations,
                            action_dim=1, action_low=-MAX_TORQUE, action_high=MAX_TORQUE,
                            discount=1.0, dirichlet_fraction=0.0, temperature=0.0,
                            unvisited_q="parent_value", seed=args.seed)

    def act_search(obs):
        n = obs.shape[0]
        out = search.search(model, wm.Root(obs, model.policy(n), torch.zeros(n)))
        return out.action

    cem = wm.CEM(horizon=args.cem_horizon, action_dim=1, population=population,
                 elites=max(2, population // 10), iterations=args.cem_iterations,
                 action_low=-MAX_TORQUE, action_high=MAX_TORQUE, seed=args.seed)
    # One batched plan for all episodes, warm-started from each one's shifted last plan.
    agent = wm.MPCAgent(cem, true_dynamics, warm_start=True, batched=True)

    def act_cem(obs):
        return agent.act(obs).reshape(-1, 1)

    results = {}
    for name, act in (("SampledMCTS", act_search), ("CEM", act_cem)):
        start = time.perf_counter()
        returns = run_episodes(envs, act, seeds, args.episode_length)
        results[name] = (returns, time.perf_counter() - start)

    print(f"Pendulum-v1, {args.episodes} episodes of {args.episode_length} steps (seeds "
          f"{seeds[0]}..{seeds[-1]}), true dynamics, {budget} simulated transitions per decision")
    print(f"  SampledMCTS: K={args.samples} N={args.simulations}, each edge {args.repeat} steps, "
          f"gamma {args.gamma}, policy N(0, {args.policy_std}^2) clipped")
    print(f"  CEM: horizon {args.cem_horizon}, population {population}, iterations "
          f"{args.cem_iterations}, warm start")
    for name, (returns, seconds) in results.items():
        print(f"  {name:<12} mean return {returns.mean():8.1f}  (min {returns.min():7.1f}, max "
              f"{returns.max():7.1f})  {seconds:6.1f} s")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "returns.csv")
    with open(path, "w") as f:
        f.write("episode_seed," + ",".join(results) + "\n")
        f.writelines(f"{seed}," + ",".join(f"{results[n][0][i]:.3f}" for n in results) + "\n" for i, seed in enumerate(seeds))
    print(f"Saved {path}")
    if args.json:
        print(json.dumps({
            "episodes": args.episodes,
            "transitions_per_decision": budget,
            "sampled_mcts_mean_return": round(float(results["SampledMCTS"][0].mean()), 2),
            "cem_mean_return": round(float(results["CEM"][0].mean()), 2),
            "sampled_mcts_seconds": round(results["SampledMCTS"][1], 1),
            "cem_seconds": round(results["CEM"][1], 1),
        }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
