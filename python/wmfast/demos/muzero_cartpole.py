"""``wmfast demo muzero-cartpole``: MuZero (wmfast.agents.MuZeroAgent) learns CartPole-v1 from
scratch.

16 environments play together with one batched wmfast search per move (25 simulations); a
prioritized replay feeds the learner MuZero's 5-step unrolled loss. The agent is evaluated
greedily (most visited action, no root noise) on 20 episodes every ``--eval-every`` seconds and
stops once the mean return reaches ``--target`` (475 of the 500 possible) or the time budget is
spent. The learning curve (return against environment steps and against wall time) goes to
DIR/muzero_cartpole.png, the log to DIR/log.csv, the trained agent to DIR/agent.pt (load it with
``MuZeroAgent.load(path, env_fn)``). ``--smoke`` runs a few seconds (a check that everything
runs, not a result).

``--ray`` runs self-play in ``--actors`` Ray actors (16 environments each) with the learner in
this process (``pip install "wmfast[ray]"``): a local Ray instance, or the cluster at
``--ray-address``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence

from wmfast.cli import HelpFormatter


def config_for(seed: int, smoke: bool):
    """The demo's settings (the defaults of wmfast.muzero.Config where not given)."""
    from wmfast.muzero import Config

    if smoke:
        return Config(num_envs=4, num_simulations=4, batch_size=16, min_replay=50, hidden=16,
                      latent_dim=16, updates_per_step=0.25, seed=seed)
    return Config(num_envs=16, num_simulations=25, discount=0.99, support_size=10, td_steps=10,
                  unroll_steps=5, batch_size=128, learning_rate=3e-3, updates_per_step=0.1,
                  min_replay=500, seed=seed)


def plot(history: list[dict], path: str, title: str, eval_episodes: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, key, label in ((axes[0], "env_steps", "environment steps"),
                             (axes[1], "seconds", "wall time (s)")):
        x = [row[key] for row in history]
        axis.plot(x, [row.get("train_return", math.nan) for row in history], "-", alpha=0.6,
                  label="self-play (last 20 episodes)")
        evals = [row for row in history if "eval_return" in row]
        axis.plot([row[key] for row in evals], [row["eval_return"] for row in evals], "o-",
                  label=f"greedy evaluation ({eval_episodes} episodes)")
        axis.set(xlabel=label)
        axis.grid(alpha=0.3)
    axes[0].set(ylabel="return")
    axes[1].legend(loc="lower right")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wmfast demo muzero-cartpole", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="wall-clock training budget in minutes (default: 5)")
    parser.add_argument("--target", type=float, default=475.0,
                        help="stop once a greedy evaluation reaches this mean return (default: 475)")
    parser.add_argument("--eval-every", type=float, default=20.0,
                        help="seconds of training between evaluations (default: 20)")
    parser.add_argument("--out", default="wmfast-demo-muzero-cartpole",
                        help="output folder (default: wmfast-demo-muzero-cartpole)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object with the headline figures as the last line")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny network for a few seconds: checks that it runs")
    parser.add_argument("--ray", action="store_true",
                        help="self-play in Ray actors (pip install \"wmfast[ray]\")")
    parser.add_argument("--actors", type=int, default=2,
                        help="with --ray: self-play actors (default: 2)")
    parser.add_argument("--ray-address", default=None,
                        help="with --ray: the cluster to join (default: a local Ray instance)")
    args = parser.parse_args(argv)
    if not args.ray and (args.actors != 2 or args.ray_address is not None):
        parser.error("--actors and --ray-address need --ray")
    if args.actors < 1:
        parser.error(f"--actors must be >= 1, got {args.actors}")

    import gymnasium as gym

    from wmfast.agents import MuZeroAgent

    def env_fn():
        return gym.make("CartPole-v1")

    started = time.perf_counter()
    config = config_for(args.seed, args.smoke)
    agent = MuZeroAgent(env_fn, config=config)
    os.makedirs(args.out, exist_ok=True)
    budget = 8.0 if args.smoke else args.minutes * 60.0
    eval_episodes = 2 if args.smoke else 20
    backend: dict = {}
    if args.ray:
        from wmfast.muzero.distributed import RayOptions, require_ray

        ray = require_ray()
        started_ray = not ray.is_initialized()
        init = {"include_dashboard": False} if args.ray_address is None else {}
        backend = {"backend": "ray", "num_actors": args.actors,
                   "ray_options": RayOptions(address=args.ray_address, init_kwargs=init)}
    try:
        agent.train(10**9, time_limit=budget, eval_every=4.0 if args.smoke else args.eval_every,
                    eval_episodes=eval_episodes, target_return=args.target, log_dir=args.out,
                    progress=not args.json, **backend)
    finally:
        if args.ray and started_ray:
            ray.shutdown()
    evaluations = [row for row in agent.history if "eval_return" in row]
    solved = [row for row in evaluations if row["eval_return"] >= args.target]
    final = agent.evaluate(eval_episodes) if not evaluations else None
    last_eval = evaluations[-1]["eval_return"] if evaluations else final["mean_return"]
    elapsed = time.perf_counter() - started
    png_path = os.path.join(args.out, "muzero_cartpole.png")
    plot(agent.history, png_path, f"MuZero on CartPole-v1 (seed {args.seed})")
    agent_path = os.path.join(args.out, "agent.pt")
    agent.save(agent_path)
    if solved:
        print(f"Solved: greedy mean return {solved[0]['eval_return']:.1f} over {eval_episodes} "
              f"episodes after {solved[0]['env_steps']:,} environment steps and "
              f"{solved[0]['seconds']:.0f} s of training ({elapsed:.0f} s in all).")
    else:
        print(f"Not solved within {budget / 60:.1f} minutes: last greedy mean return "
              f"{last_eval:.1f} after {agent.env_steps:,} environment steps.")
    print(f"Saved {png_path}, {os.path.join(args.out, 'log.csv')} and {agent_path}")
    if args.json:
        print(json.dumps({
            "demo": "muzero-cartpole", "seed": args.seed, "smoke": args.smoke,
            "backend": "ray" if args.ray else "local", "actors": args.actors if args.ray else 0,
            "solved": bool(solved), "target": args.target,
            "seconds_to_solve": solved[0]["seconds"] if solved else None,
            "env_steps_to_solve": solved[0]["env_steps"] if solved else None,
            "last_eval_return": last_eval, "env_steps": agent.env_steps,
            "updates": agent.updates, "seconds": round(elapsed, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
