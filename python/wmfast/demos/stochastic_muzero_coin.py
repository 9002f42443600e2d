"""``wmfast demo stochastic-muzero-coin``: Stochastic MuZero (MuZeroAgent with
Config(search="stochastic")) learns the coin game, beside plain MuZero on the same budget.

The coin game (``wmfast.envs.CoinGame``): from the start, gamble on a fair coin or take the safe
line (0.6); after a gamble the coin is seen and the matching action pays 1, the other 0. The
optimum gambles and matches: return 1 every episode. Both agents get the same settings, seed and
number of environment steps; after every ``--eval-every`` steps each is evaluated greedily on 20
episodes. The learning curves go to DIR/stochastic_muzero_coin.png and DIR/curves.csv, the
trained Stochastic MuZero agent to DIR/agent.pt (``MuZeroAgent.load(path, CoinGame)``).
``--smoke`` runs a few seconds (a check that everything runs, not a result).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from collections.abc import Sequence

from wmfast.cli import HelpFormatter

SEARCHES = ("stochastic", "muzero")


def config_for(search: str, seed: int, smoke: bool):
    """The demo's settings for one agent (the defaults of wmfast.muzero.Config where not
    given); the two agents differ only in ``search``."""
    from wmfast.muzero import Config

    return Config(search=search, num_chance_outcomes=4, num_envs=8,
                  num_simulations=4 if smoke else 8, batch_size=16 if smoke else 64,
                  min_replay=16 if smoke else 32, hidden=32, latent_dim=16, support_size=0,
                  discount=0.9, td_steps=2, unroll_steps=2, updates_per_step=0.5,
                  learning_rate=3e-3, value_loss_weight=1.0, seed=seed)


def plot(curves: dict[str, list[tuple[int, float]]], optimum: float, safe: float, path: str,
         title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    labels = {"stochastic": "Stochastic MuZero", "muzero": "MuZero"}
    for search, points in curves.items():
        axis.plot([p[0] for p in points], [p[1] for p in points], "o-", label=labels[search])
    axis.axhline(optimum, color="k", ls="--", lw=1, label=f"optimum ({optimum:g})")
    axis.axhline(safe, color="grey", ls=":", lw=1, label=f"safe line ({safe:g})")
    axis.set(xlabel="environment steps", ylabel="greedy mean return (20 episodes)", title=title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wmfast demo stochastic-muzero-coin",
                                     description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument("--steps", type=int, default=2000,
                        help="environment steps per agent (default: 2000)")
    parser.add_argument("--eval-every", type=int, default=400,
                        help="environment steps between evaluations (default: 400)")
    parser.add_argument("--out", default="wmfast-demo-stochastic-muzero-coin",
                        help="output folder (default: wmfast-demo-stochastic-muzero-coin)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object with the headline figures as the last line")
    parser.add_argument("--smoke", action="store_true",
                        help="a few hundred steps: checks that it runs")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.eval_every < 1:
        parser.error(f"--steps and --eval-every must be >= 1, got {args.steps} and "
                     f"{args.eval_every}")

    import torch

    from wmfast.agents import MuZeroAgent
    from wmfast.envs.coin import OPTIMAL_RETURN, SAFE_RETURN, CoinGame

    steps, every = (64, 32) if args.smoke else (args.steps, args.eval_every)
    episodes = 2 if args.smoke else 20
    os.makedirs(args.out, exist_ok=True)
    started = time.perf_counter()
    curves: dict[str, list[tuple[int, float]]] = {}
    summary: dict[str, dict] = {}
    agents = {}
    for search in SEARCHES:
        torch.manual_seed(args.seed)
        agent = MuZeroAgent(CoinGame, config=config_for(search, args.seed, args.smoke))
        points: list[tuple[int, float]] = []
        while agent.env_steps < steps:
            agent.train(min(every, steps - agent.env_steps), progress=False)
            points.append((agent.env_steps, agent.evaluate(episodes)["mean_return"]))
        reached = [s for s, r in points if r >= OPTIMAL_RETURN - 1e-6]
        curves[search], agents[search] = points, agent
        summary[search] = {"final_eval_return": points[-1][1],
                           "env_steps_to_optimum": reached[0] if reached else None,
                           "train_seconds": round(agent.train_seconds, 2)}
    png_path = os.path.join(args.out, "stochastic_muzero_coin.png")
    plot(curves, OPTIMAL_RETURN, SAFE_RETURN, png_path,
         f"The coin game (seed {args.seed}): Stochastic MuZero and MuZero")
    csv_path = os.path.join(args.out, "curves.csv")
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["search", "env_steps", "eval_return"])
        for search, points in curves.items():
            writer.writerows([search, s, r] for s, r in points)
    agent_path = os.path.join(args.out, "agent.pt")
    agents["stochastic"].save(agent_path)
    for search in SEARCHES:
        s = summary[search]
        when = (f"reached the optimum {OPTIMAL_RETURN:g} after {s['env_steps_to_optimum']:,} steps"
                if s["env_steps_to_optimum"] is not None else "did not reach the optimum")
        print(f"{search:>10}: {when}; final greedy mean return {s['final_eval_return']:.2f} "
              f"({s['train_seconds']:.0f} s of training)")
    print(f"Saved {png_path}, {csv_path} and {agent_path}")
    if args.json:
        print(json.dumps({"demo": "stochastic-muzero-coin", "seed": args.seed,
                          "smoke": args.smoke, "env_steps": steps, "optimum": OPTIMAL_RETURN,
                          **summary, "seconds": round(time.perf_counter() - started, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
