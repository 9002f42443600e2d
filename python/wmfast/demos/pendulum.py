"""``wmfast demo pendulum``: PETS-style MPC on gymnasium's Pendulum-v1 with a learned ensemble.

1. Collects a few thousand transitions with random actions.
2. Trains an ensemble of small MLPs (bootstrapped, one per member) to predict the change of the
   observation; the reward is Pendulum's known cost on the observation, as in PETS.
3. Controls the pendulum by MPC with wmfast's CEM/iCEM/MPPI through the ensemble (TS-infinity
   propagation), and prints the episode returns beside a random policy and beside the same MPC
   with the true dynamics; saves a PNG of the returns.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Sequence

import numpy as np
import torch

from wmfast.cli import HelpFormatter

MAX_SPEED, MAX_TORQUE, DT, G, M, L = 8.0, 2.0, 0.05, 10.0, 1.0, 1.0


def pendulum_reward(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Pendulum-v1's reward of taking ``action`` [..., 1] in ``obs`` [..., 3] (cos, sin, speed)."""
    theta = torch.atan2(obs[..., 1], obs[..., 0])
    u = action[..., 0].clamp(-MAX_TORQUE, MAX_TORQUE)
    return -(theta * theta + 0.1 * obs[..., 2] ** 2 + 0.001 * u * u)


def true_dynamics(obs: torch.Tensor, action: torch.Tensor):
    """Pendulum-v1's equations on batched observations: (next_obs, reward)."""
    theta = torch.atan2(obs[..., 1], obs[..., 0])
    u = action[..., 0].clamp(-MAX_TORQUE, MAX_TORQUE)
    speed = obs[..., 2] + (3 * G / (2 * L) * torch.sin(theta) + 3.0 / (M * L * L) * u) * DT
    speed = speed.clamp(-MAX_SPEED, MAX_SPEED)
    theta = theta + speed * DT
    nxt = torch.stack([torch.cos(theta), torch.sin(theta), speed], dim=-1)
    return nxt, pendulum_reward(obs, action)


class Ensemble(torch.nn.Module):
    """E independent MLPs (obs, action) -> delta obs, evaluated together with batched matmuls.

    forward takes [E, N, 3] observations and [E, N, 1] actions (one batch per member)."""

    def __init__(self, members: int, hidden: int, obs_dim: int = 3, action_dim: int = 1):
        super().__init__()
        sizes = [obs_dim + action_dim, hidden, hidden, obs_dim]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            w = torch.randn(members, fan_in, fan_out) / math.sqrt(fan_in)
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(torch.zeros(members, 1, fan_out)))
        self.register_buffer("in_mean", torch.zeros(obs_dim + action_dim))
        self.register_buffer("in_std", torch.ones(obs_dim + action_dim))
        self.register_buffer("out_std", torch.ones(obs_dim))
        self.members = members

    def delta(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = (torch.cat([obs, action], dim=-1) - self.in_mean) / self.in_std
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = torch.nn.functional.silu(x)
        return x  # normalised delta

    def forward(self, obs: torch.Tensor, action: torch.Tensor):
        nxt = obs + self.delta(obs, action) * self.out_std
        return nxt, pendulum_reward(obs, action)


def collect_random(env, steps: int, episode_length: int, seed: int):
    obs_list, act_list, next_list = [], [], []
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    t = 0
    for _ in range(steps):
        action = rng.uniform(-MAX_TORQUE, MAX_TORQUE, size=(1,)).astype(np.float32)
        nxt, _, terminated, truncated, _ = env.step(action)
        obs_list.append(obs)
        act_list.append(action)
        next_list.append(nxt)
        obs, t = nxt, t + 1
        if terminated or truncated or t >= episode_length:
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            t = 0
    def as_tensor(rows):
        return torch.as_tensor(np.array(rows), dtype=torch.float32)

    return as_tensor(obs_list), as_tensor(act_list), as_tensor(next_list)


def train_ensemble(obs, act, nxt, members, hidden, epochs, seed, progress):
    torch.manual_seed(seed)
    model = Ensemble(members, hidden)
    inputs = torch.cat([obs, act], dim=1)
    delta = nxt - obs
    model.in_mean.copy_(inputs.mean(0))
    model.in_std.copy_(inputs.std(0) + 1e-6)
    model.out_std.copy_(delta.std(0) + 1e-6)
    target = delta / model.out_std
    n = obs.shape[0]
    boot = torch.randint(0, n, (members, n))  # a bootstrap resample per member
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = min(256, n)
    loss = torch.tensor(0.0)
    for _ in progress(range(epochs), desc="training ensemble", unit="epoch"):
        perm = boot[:, torch.randperm(n)]
        for start in range(0, n, batch):
            idx = perm[:, start:start + batch]  # [E, batch]
            pred = model.delta(obs[idx], act[idx])
            loss = ((pred - target[idx]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model, loss.detach().item()


def make_planner(name: str, horizon: int, population: int, iterations: int, seed: int,
                 ensemble: int | None):
    import wmfast as wm

    common = {"horizon": horizon, "action_dim": 1, "population": population,
              "iterations": iterations, "action_low": -MAX_TORQUE, "action_high": MAX_TORQUE,
              "seed": seed}
    if ensemble:
        common.update(ensemble_size=ensemble, propagation="tsinf")
    elites = max(2, population // 10)
    if name == "cem":
        return wm.CEM(elites=elites, alpha=0.1, **common)
    if name == "icem":
        return wm.ICEM(elites=elites, noise_beta=1.0, **common)
    return wm.MPPI(elites=elites, temperature=1.0, update_std=True, min_std=0.1, **common)


def run_episode(env, act, seed: int, length: int, steps_bar=None) -> float:
    obs, _ = env.reset(seed=seed)
    total = 0.0
    for _ in range(length):
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        total += float(reward)
        if steps_bar is not None:
            steps_bar.update(1)
        if terminated or truncated:
            break
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wmfast demo pendulum", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--train-steps", type=int, default=3000,
                        help="random-action transitions to learn from")
    parser.add_argument("--collect-episode-length", type=int, default=50,
                        help="reset the environment this often while collecting (more starts)")
    parser.add_argument("--members", type=int, default=5, help="ensemble size")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--planner", choices=["cem", "icem", "mppi"], default="cem")
    parser.add_argument("--horizon", type=int, default=25)
    parser.add_argument("--population", type=int, default=400)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=4, help="evaluation episodes per policy")
    parser.add_argument("--episode-length", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--png", default="pendulum_returns.png", help="where to save the plot")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    import gymnasium as gym
    from tqdm import tqdm

    import wmfast as wm

    torch.set_num_threads(args.threads)
    if args.population % args.members:
        parser.error(f"--population ({args.population}) must be divisible by --members "
                     f"({args.members}) for trajectory sampling")

    def progress(iterable=None, **kwargs):
        return tqdm(iterable, disable=args.no_progress, leave=False, **kwargs)

    env = gym.make("Pendulum-v1", max_episode_steps=args.episode_length)
    start = time.perf_counter()
    obs, act, nxt = collect_random(env, args.train_steps, args.collect_episode_length, args.seed)
    model, loss = train_ensemble(obs, act, nxt, args.members, args.hidden, args.epochs,
                                 args.seed, progress)
    model.eval()
    with torch.no_grad():
        pred, _ = true_dynamics(obs, act)
        check = (pred - nxt).abs().max().item()
    print(f"data: {len(obs)} random-action transitions; ensemble of {args.members} MLPs "
          f"(hidden {args.hidden}) trained in {time.perf_counter() - start:.1f} s, final loss "
          f"{loss:.4f}; true-model check {check:.1e}")

    space = env.action_space
    rng = np.random.default_rng(args.seed)
    policies = {
        "random": lambda o: rng.uniform(space.low, space.high).astype(np.float32),
    }
    agents = {}
    for label, dynamics, members in (("MPC, true dynamics", true_dynamics, None),
                                     ("MPC, learned ensemble", model, args.members)):
        planner = make_planner(args.planner, args.horizon, args.population, args.iterations,
                               args.seed, members)
        agents[label] = wm.MPCAgent(planner, dynamics, warm_start=True, action_space=space)
        policies[label] = lambda o, agent=agents[label]: agent.act(o).cpu().numpy()

    returns: dict[str, list[float]] = {name: [] for name in policies}
    seeds = [args.seed + 1000 + i for i in range(args.episodes)]
    total_steps = len(policies) * args.episodes * args.episode_length
    timings = {}
    with progress(total=total_steps, desc="episodes", unit="step") as bar:
        for name, policy in policies.items():
            t0 = time.perf_counter()
            for seed in seeds:
                if name in agents:
                    agents[name].reset()
                returns[name].append(run_episode(env, policy, seed, args.episode_length, bar))
            timings[name] = time.perf_counter() - t0

    print(f"\nPendulum-v1, {args.episodes} episodes of {args.episode_length} steps, "
          f"{args.planner.upper()} H={args.horizon} population={args.population} "
          f"iterations={args.iterations}")
    width = max(len(n) for n in returns)
    for name, values in returns.items():
        per_step = timings[name] / max(1, args.episodes * args.episode_length) * 1e3
        print(f"  {name:<{width}}  mean return {np.mean(values):9.1f}  "
              f"(min {np.min(values):8.1f}, max {np.max(values):8.1f})  "
              f"{per_step:6.2f} ms/step")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(returns)
    for i, name in enumerate(names):
        ax.scatter(np.full(len(returns[name]), i), returns[name], alpha=0.6)
        ax.hlines(np.mean(returns[name]), i - 0.25, i + 0.25, color="k")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("episode return")
    ax.set_title(f"Pendulum-v1: {args.planner.upper()} MPC (wmfast)")
    fig.tight_layout()
    fig.savefig(args.png, dpi=100)
    plt.close(fig)
    print(f"plot saved to {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
