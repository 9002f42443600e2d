"""``wmfast demo dreamer-cartpole``: DreamerV3 (wmfast.agents.DreamerAgent) learns CartPole-v1.

The agent learns a world model (RSSM) from replayed sequences and trains its actor and critic
purely in imagination (wmfast.imagine, wmfast.lambda_return). It is evaluated with greedy
actions every ``--eval-every`` environment steps; the curve goes to DIR/dreamer_cartpole.png
and .csv, the trained agent to DIR/agent.pt. ``--smoke`` runs a tiny model for a few hundred
steps (a check that everything runs, not a result).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from collections.abc import Sequence

from wmfast.cli import HelpFormatter


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wmfast demo dreamer-cartpole", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-steps", type=int, default=30_000)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--out", default="wmfast-demo-dreamer-cartpole", help="output folder")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object with the headline figures as the last line")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny networks and a few hundred steps: checks that it runs")
    args = parser.parse_args(argv)

    import gymnasium as gym
    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wmfast import dreamer as dr
    from wmfast.agents import DreamerAgent

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    if args.smoke:
        config = dr.Config(deter=32, hidden=32, units=32, layers=1, stoch=4, classes=4,
                           horizon=5, batch_size=4, seq_len=16, prefill=64, train_every=16,
                           actor_lr=3e-4, critic_lr=3e-4, model_lr=3e-4)
        env_steps, eval_every, eval_episodes = 256, 128, 2
    else:
        config = dr.Config(deter=128, hidden=128, units=128, layers=2, batch_size=16,
                           seq_len=32, prefill=1000, train_every=4, actor_lr=1e-4,
                           critic_lr=1e-4, model_lr=3e-4)
        env_steps, eval_every, eval_episodes = args.env_steps, args.eval_every, args.eval_episodes

    def env_fn():
        return gym.make("CartPole-v1")

    agent = DreamerAgent(env_fn, config, seed=args.seed)
    curve: list[tuple[int, float]] = []
    started = time.perf_counter()
    print(f"{'env steps':>9} {'updates':>7} {'eval return':>11} {'seconds':>8}")
    while agent.total_steps < env_steps:
        agent.train(min(eval_every, env_steps - agent.total_steps))
        score = agent.evaluate(eval_episodes, seed=10**9 + agent.total_steps)
        curve.append((agent.total_steps, score))
        print(f"{agent.total_steps:>9,} {agent.updates:>7,} {score:>11.1f} "
              f"{time.perf_counter() - started:>8.1f}")
    elapsed = time.perf_counter() - started

    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "dreamer_cartpole.csv")
    with open(csv_path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["env_steps", "eval_return"])
        writer.writerows(curve)
    figure, axis = plt.subplots(figsize=(6, 4))
    steps, scores = zip(*curve)
    axis.plot(steps, scores, "o-", label="greedy evaluation")
    if agent.episode_returns:
        train_steps, train_returns = zip(*agent.episode_returns)
        axis.plot(train_steps, train_returns, ".", alpha=0.3, label="training episodes")
    axis.set(xlabel="environment steps", ylabel="return", title="DreamerV3 on CartPole-v1")
    axis.legend()
    figure.tight_layout()
    png_path = os.path.join(args.out, "dreamer_cartpole.png")
    figure.savefig(png_path, dpi=110)
    agent_path = os.path.join(args.out, "agent.pt")
    agent.save(agent_path)
    print(f"Saved {csv_path}, {png_path} and {agent_path} ({elapsed:.1f} s)")
    if args.json:
        print(json.dumps({"demo": "dreamer-cartpole", "seed": args.seed, "smoke": args.smoke,
                          "env_steps": agent.total_steps, "updates": agent.updates,
                          "final_eval_return": curve[-1][1],
                          "best_eval_return": max(scores), "seconds": round(elapsed, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
