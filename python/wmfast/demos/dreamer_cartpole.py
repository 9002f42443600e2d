"""``wmfast demo dreamer-cartpole``: DreamerV3 (wmfast.agents.DreamerAgent) learns CartPole-v1.

The agent learns a world model (RSSM) from replayed sequences and trains its actor and critic
purely in imagination (wmfast.imagine, wmfast.lambda_return). It is evaluated greedily (the
policy's mode on sampled posterior latents, as dreamerv3-torch) on ``--eval-episodes`` episodes
every ``--eval-every`` seconds of wall time and stops once an evaluation's mean return reaches
``--target`` or the ``--minutes`` budget is spent (evaluations count against the budget). Outputs in DIR: the learning curve (dreamer_cartpole.png, against
environment steps and wall time), its log (log.csv), the world model's open-loop predictions of
a real greedy episode (open_loop.png: observations and rewards imagined from a posterior state
under the episode's real actions, against the real ones), the compounding open-loop error against
the horizon over three greedy episodes (open_loop_error.png, wmfast.diagnostics.open_loop_error)
and the trained agent (agent.pt).
``--smoke`` runs a tiny model for a few hundred steps (a check that everything runs, not a
result).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from collections.abc import Sequence

from wmfast.cli import HelpFormatter

OBS_NAMES = ["cart position", "cart velocity", "pole angle", "pole angular velocity"]


def config_for(smoke: bool):
    """The demo's settings (the defaults of wmfast.dreamer.Config where not given)."""
    from wmfast import dreamer as dr

    if smoke:
        return dr.Config(deter=32, hidden=32, units=32, layers=1, stoch=4, classes=4,
                         horizon=5, batch_size=4, seq_len=16, prefill=64, train_every=16,
                         actor_lr=3e-4, critic_lr=3e-4, model_lr=3e-4)
    return dr.Config(deter=64, hidden=64, units=64, layers=1, stoch=8, classes=8,
                     batch_size=16, seq_len=32, prefill=1000, train_every=4,
                     model_lr=1e-3, actor_lr=3e-4, critic_lr=1e-3, discount=0.99)


def record_episode(agent, env, seed: int) -> dict:
    """One greedy episode (sampled latents, as ``agent.evaluate``): ``obs [T, obs_dim]``, ``actions [T, A]`` (one-hot, ``actions[t]``
    taken before ``obs[t]``, zeros at t = 0) and ``rewards [T]`` (``rewards[0] = 0``)."""
    import numpy as np
    import torch

    obs, _ = env.reset(seed=seed)
    agent.reset()
    observations, actions, rewards = [obs], [np.zeros(agent.action_dim)], [0.0]
    with torch.random.fork_rng():  # latent samples as in evaluate, seeded the same way
        torch.manual_seed(seed)
        while True:
            action = agent.act(obs, greedy=True, sample_latent=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(np.eye(agent.action_dim)[action])
            rewards.append(float(reward))
            if terminated or truncated:
                break
    agent.reset()
    return {key: torch.as_tensor(np.asarray(value, np.float32)) for key, value in
            (("obs", observations), ("actions", actions), ("rewards", rewards))}


def plot_open_loop(agent, episode: dict, path: str, context: int, horizon: int,
                   title: str) -> None:
    """Real against open-loop imagined observations and rewards for ``horizon`` steps after
    ``context`` filtered ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    length = episode["obs"].shape[0]
    context = max(1, min(context, length - 1))
    end = min(length, context + horizon)
    pred = agent.world_model.open_loop(episode["obs"][:end, None], episode["actions"][:end, None],
                                       context)
    steps = list(range(end))
    imagined = list(range(context, end))
    figure, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True)
    panels = [(OBS_NAMES[i] if i < len(OBS_NAMES) else f"obs[{i}]", episode["obs"][:end, i],
               pred["obs"][:, 0, i]) for i in range(min(4, episode["obs"].shape[1]))]
    panels.append(("reward", episode["rewards"][:end], pred["reward"][:, 0]))
    continues = [1.0] * (end - 1) + [0.0 if end == length and length < 501 else 1.0]
    panels.append(("continue (probability)", continues, pred["cont"][:, 0]))
    for axis, (name, real, predicted) in zip(axes.flat, panels):
        axis.plot(steps, list(map(float, real)), "k-", label="real")
        axis.plot(imagined, list(map(float, predicted)), "C1--", label="imagined (open loop)")
        axis.axvline(context - 0.5, color="C0", alpha=0.4, lw=1)
        axis.set(title=name)
        axis.grid(alpha=0.3)
    for axis in axes[-1]:
        axis.set(xlabel="episode step")
    axes.flat[0].legend(loc="best", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_curve(history: list[dict], episodes: list[tuple[int, float]], target: float,
               path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, key, label in ((axes[0], "env_steps", "environment steps"),
                             (axes[1], "seconds", "wall time (s)")):
        if key == "env_steps" and episodes:
            axis.plot([s for s, _ in episodes], [r for _, r in episodes], ".", alpha=0.3,
                      label="training episodes")
        axis.plot([row[key] for row in history], [row["eval_return"] for row in history], "o-",
                  label="greedy evaluation")
        axis.axhline(target, color="k", ls=":", lw=1, label=f"target {target:g}")
        axis.set(xlabel=label)
        axis.grid(alpha=0.3)
    axes[0].set(ylabel="return")
    axes[0].legend(loc="upper left", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wmfast demo dreamer-cartpole", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="wall-clock budget in minutes (default: 30)")
    parser.add_argument("--target", type=float, default=450.0,
                        help="stop once a greedy evaluation reaches this mean return "
                             "(default: 450)")
    parser.add_argument("--eval-every", type=float, default=60.0,
                        help="seconds of wall time between evaluations (default: 60)")
    parser.add_argument("--eval-episodes", type=int, default=10,
                        help="greedy episodes per evaluation (default: 10)")
    parser.add_argument("--eval-latent-modes", action="store_true",
                        help="also evaluate with the posterior latents' modes instead of "
                             "samples (logged, not used for --target; its time counts)")
    parser.add_argument("--env-steps", type=int, default=None,
                        help="also stop after this many environment steps (default: no limit)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default: 1)")
    parser.add_argument("--out", default="wmfast-demo-dreamer-cartpole",
                        help="output folder (default: wmfast-demo-dreamer-cartpole)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object with the headline figures as the last line")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny networks and a few hundred steps: checks that it runs")
    args = parser.parse_args(argv)
    for name in ("minutes", "eval_every"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.eval_episodes < 1 or args.threads < 1:
        parser.error("--eval-episodes and --threads must be >= 1")
    if args.env_steps is not None and args.env_steps < 1:
        parser.error(f"--env-steps must be >= 1, got {args.env_steps}")

    import gymnasium as gym
    import numpy as np
    import torch

    import wmfast as wm
    from wmfast.agents import DreamerAgent

    def env_fn():
        return gym.make("CartPole-v1")

    torch.set_num_threads(args.threads)
    config = config_for(args.smoke)
    budget = args.minutes * 60.0
    eval_every, eval_episodes, env_steps = args.eval_every, args.eval_episodes, args.env_steps
    if args.smoke:
        eval_every, eval_episodes, env_steps = 1e9, 2, 256
    env_steps = env_steps or 10**12

    started = time.perf_counter()
    agent = DreamerAgent(env_fn, config, seed=args.seed)
    history: list[dict] = []
    reached: dict | None = None
    bar = None
    if not args.json:
        from tqdm.auto import tqdm

        bar = tqdm(total=round(budget), unit="s", desc="Dreamer", dynamic_ncols=True,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s"
                              "| {postfix}")

    def evaluate() -> dict:
        score = agent.evaluate(eval_episodes, seed=10**9 + agent.total_steps)
        recent = [r for _, r in agent.episode_returns[-10:]]
        row = {"env_steps": agent.total_steps, "updates": agent.updates,
               "seconds": round(time.perf_counter() - started, 2), "eval_return": score,
               "train_return": float(np.mean(recent)) if recent else math.nan}
        if args.eval_latent_modes:
            row["eval_return_latent_modes"] = agent.evaluate(
                eval_episodes, seed=10**9 + agent.total_steps, sample_latent=False)
        history.append(row)
        message = (f"{row['seconds']:>7.0f} s {row['env_steps']:>7,} steps "
                   f"{row['updates']:>6,} updates  eval {score:6.1f}  "
                   f"train (last 10) {row['train_return']:6.1f}")
        if args.eval_latent_modes:
            message += f"  eval on latent modes {row['eval_return_latent_modes']:6.1f}"
        if bar is not None:
            bar.write(message)
        else:
            print(message, flush=True)
        return row

    try:
        last_eval = time.perf_counter()
        chunk = 16 if args.smoke else 50
        while agent.total_steps < env_steps:
            agent.train(min(chunk, env_steps - agent.total_steps))
            now = time.perf_counter()
            if bar is not None:
                recent = [r for _, r in agent.episode_returns[-10:]]
                bar.n = min(now - started, budget)
                bar.set_postfix_str(
                    f"steps={agent.total_steps:,} updates={agent.updates:,} "
                    f"train={np.mean(recent) if recent else 0:.0f} "
                    f"eval={history[-1]['eval_return'] if history else 0:.0f}", refresh=True)
            if now - started >= budget:
                break
            if now - last_eval >= eval_every:
                row = evaluate()
                last_eval = time.perf_counter()
                if row["eval_return"] >= args.target:
                    reached = row
                    break
        if reached is None and (not history or history[-1]["env_steps"] != agent.total_steps):
            row = evaluate()
            if row["eval_return"] >= args.target:
                reached = row
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - started

    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "log.csv")
    with open(csv_path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    title = f"DreamerV3 on CartPole-v1 (seed {args.seed})"
    png_path = os.path.join(args.out, "dreamer_cartpole.png")
    plot_curve(history, agent.episode_returns, args.target, png_path, title)
    env = env_fn()
    episodes = [record_episode(agent, env, seed=10**9 - 1 - i) for i in range(3)]
    env.close()
    episode = episodes[0]
    horizons = range(1, 6 if args.smoke else 31)
    curve = None
    if max(e["obs"].shape[0] for e in episodes) > max(horizons):
        curve = wm.diagnostics.open_loop_error(agent.world_model, episodes, horizons)
        error_path = os.path.join(args.out, "open_loop_error.png")
        wm.diagnostics.plot_open_loop_error(
            curve, error_path, f"{title}: open-loop error of {len(episodes)} greedy episodes",
            OBS_NAMES)
    open_loop_path = os.path.join(args.out, "open_loop.png")
    plot_open_loop(agent, episode, open_loop_path, context=5 if args.smoke else 10,
                   horizon=15 if args.smoke else 60,
                   title=f"{title}: open-loop imagination under the real actions "
                         f"(episode return {float(episode['rewards'].sum()):.0f})")
    agent_path = os.path.join(args.out, "agent.pt")
    agent.save(agent_path)
    best = max(row["eval_return"] for row in history)
    if reached:
        print(f"Reached {args.target:g}: greedy mean return {reached['eval_return']:.1f} over "
              f"{eval_episodes} episodes after {reached['seconds']:.0f} s, "
              f"{reached['env_steps']:,} environment steps and {reached['updates']:,} updates.")
    else:
        print(f"Did not reach {args.target:g} within {elapsed / 60:.1f} minutes: best greedy "
              f"mean return {best:.1f}, last {history[-1]['eval_return']:.1f} after "
              f"{agent.total_steps:,} environment steps.")
    saved = [png_path, open_loop_path] + ([error_path] if curve is not None else [])
    print(f"Saved {', '.join(saved)}, {csv_path} and {agent_path}")
    if curve is not None:
        print("Open-loop error (squared, raw observations) at horizons "
              + ", ".join(f"{h}: {e:.3g}" for h, e in zip(curve["horizons"].tolist(),
                                                           curve["obs_mse"].tolist())
                          if h in (1, 5, 15, 30)))
    if args.json:
        print(json.dumps({
            "demo": "dreamer-cartpole", "seed": args.seed, "smoke": args.smoke,
            "target": args.target, "reached": reached is not None,
            "seconds_to_target": reached["seconds"] if reached else None,
            "env_steps_to_target": reached["env_steps"] if reached else None,
            "final_eval_return": history[-1]["eval_return"], "best_eval_return": best,
            "env_steps": agent.total_steps, "updates": agent.updates,
            "open_loop_obs_mse": None if curve is None else {
                str(h): float(f"{e:.4g}") for h, e in zip(curve["horizons"].tolist(),
                                                          curve["obs_mse"].tolist())},
            "seconds": round(elapsed, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
