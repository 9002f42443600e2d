"""``wmfast demo sampled-muzero-pendulum``: Sampled MuZero (MuZeroAgent with
``Config(search="sampled")``) learns Pendulum-v1's continuous torque from scratch, with a
learned model.

16 environments play together with one batched wm.SampledMCTS search per move (8 torques
sampled per node from the network's Gaussian policy, clipped to [-2, 2]; 20 simulations); the
learner minimises MuZero's 5-step unrolled loss with Sampled MuZero's policy loss (cross-entropy
of the visit distribution over the sampled torques against the policy's log-density there). The
agent is evaluated greedily (the most visited sampled torque, no root noise) on 10 episodes
every ``--eval-every`` seconds and stops at ``--target`` or when the time budget is spent. The
learning curve goes to DIR/sampled_muzero_pendulum.png, the log to DIR/log.csv, the trained agent
to DIR/agent.pt. ``--smoke`` runs a few seconds (a check that everything runs, not a result).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence

from wmfast.cli import HelpFormatter


def config_for(seed: int, smoke: bool):
    """The demo's settings (the defaults of wmfast.muzero.Config where not given)."""
    from wmfast.muzero import Config

    if smoke:
        return Config(search="sampled", num_samples=4, num_envs=4, num_simulations=4,
                      batch_size=16, min_replay=50, hidden=16, latent_dim=16, support_size=25,
                      discount=0.97, updates_per_step=0.25, seed=seed)
    # Rewards in [-16.3, 0]: values down to about -16 / (1 - 0.97), h(550) ~ 23 < 25 atoms.
    # updates_per_step 0.5 (batch 64) learnt where 0.1 (batch 128) had not moved in 12 minutes.
    return Config(search="sampled", num_samples=8, num_simulations=20, num_envs=16,
                  batch_size=64, min_replay=1000, replay_capacity=100_000, support_size=25,
                  unroll_steps=5, td_steps=5, discount=0.97, latent_dim=64, hidden=128,
                  updates_per_step=0.5, learning_rate=1e-3, seed=seed,
                  temperatures=((1.0, 1.0),))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wmfast demo sampled-muzero-pendulum",
                                     description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument("--minutes", type=float, default=15.0,
                        help="wall-clock training budget in minutes (default: 15)")
    parser.add_argument("--target", type=float, default=-200.0,
                        help="stop once a greedy evaluation reaches this mean return "
                             "(default: -200)")
    parser.add_argument("--eval-every", type=float, default=90.0,
                        help="seconds of training between evaluations (default: 90)")
    parser.add_argument("--out", default="wmfast-demo-sampled-muzero-pendulum",
                        help="output folder (default: wmfast-demo-sampled-muzero-pendulum)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object with the headline figures as the last line")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny network for a few seconds: checks that it runs")
    args = parser.parse_args(argv)

    import gymnasium as gym

    from wmfast.agents import MuZeroAgent
    from wmfast.demos.muzero_cartpole import plot

    def env_fn():
        return gym.make("Pendulum-v1")

    started = time.perf_counter()
    agent = MuZeroAgent(env_fn, config=config_for(args.seed, args.smoke))
    os.makedirs(args.out, exist_ok=True)
    budget = 8.0 if args.smoke else args.minutes * 60.0
    eval_episodes = 2 if args.smoke else 10
    # Pendulum's episodes last 200 steps: a smoke run needs enough steps to finish some.
    agent.train(10**9, time_limit=budget, eval_every=4.0 if args.smoke else args.eval_every,
                eval_episodes=eval_episodes, target_return=args.target, log_dir=args.out,
                progress=not args.json)
    evaluations = [row for row in agent.history if "eval_return" in row]
    final = agent.evaluate(eval_episodes)["mean_return"]
    best = max([row["eval_return"] for row in evaluations] + [final])
    reached = [row for row in evaluations if row["eval_return"] >= args.target]
    elapsed = time.perf_counter() - started
    png_path = os.path.join(args.out, "sampled_muzero_pendulum.png")
    plot(agent.history, png_path, f"Sampled MuZero on Pendulum-v1 (seed {args.seed})",
         eval_episodes)
    agent_path = os.path.join(args.out, "agent.pt")
    agent.save(agent_path)
    print(f"Final greedy mean return {final:.1f} over {eval_episodes} episodes (best evaluation "
          f"{best:.1f}) after {agent.env_steps:,} environment steps and {agent.updates:,} "
          f"updates ({elapsed:.0f} s in all); target {args.target:.0f} "
          f"{'reached' if reached else 'not reached'}.")
    print(f"Saved {png_path}, {os.path.join(args.out, 'log.csv')} and {agent_path}")
    if args.json:
        print(json.dumps({
            "demo": "sampled-muzero-pendulum", "seed": args.seed, "smoke": args.smoke,
            "final_eval_return": final, "best_eval_return": best, "target": args.target,
            "reached_target": bool(reached),
            "env_steps_to_target": reached[0]["env_steps"] if reached else None,
            "env_steps": agent.env_steps, "updates": agent.updates,
            "seconds": round(elapsed, 2)}))
    return 0
