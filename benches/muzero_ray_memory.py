"""Memory of a long MuZeroAgent.train on Ray: the resident set size (RSS) of the driver and of
every actor, sampled while training runs (a script, not a pytest-benchmark suite).

LightZero (#82) and EfficientZero (#26) users report self-play and reanalyse workers whose memory
grows for as long as training runs. This script trains CartPole-v1 on Ray (self-play actors, a
reanalyse actor, the learner and the replay in this process) with a replay small enough to be
full after a minute or two, samples the RSS of each process every ``--every`` seconds from
``/proc`` (Linux), and reports, per process, the change of its RSS from the first sample after
the replay is full to the end, and the spread (max - min) over that span, both in % of the
first. The goal: every process within 10%.

  python benches/muzero_ray_memory.py --minutes 30 --out /tmp/wmray-memory   # the README's figures
  python benches/muzero_ray_memory.py --minutes 2 --capacity 5000          # a quick look

Writes ``rss.csv`` (time, process, RSS MB, replay positions, env steps) and ``rss.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import threading
import time
from pathlib import Path


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _ray_workers(tmpdir: str) -> dict[int, str]:
    """pid -> actor class of the Ray worker processes hosting wmfast actors (Ray names an
    actor's process ``ray::ClassName``) of the Ray instance started with ``RAY_TMPDIR=tmpdir``
    (its processes inherit it: other Ray instances on the machine are left out)."""
    marker = f"RAY_TMPDIR={tmpdir}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        for name in ("SelfPlayWorker", "ReanalyseWorker"):
            if command.startswith(f"ray::{name}"):
                try:
                    with open(f"/proc/{entry}/environ", "rb") as f:
                        mine = marker in f.read().split(b"\0")
                except OSError:
                    mine = False
                if mine:
                    found[int(entry)] = name
    return found


def env_fn():
    import gymnasium as gym

    return gym.make("CartPole-v1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--reanalysers", type=int, default=1)
    parser.add_argument("--capacity", type=int, default=20_000, help="replay positions")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--out", default="wmray-memory")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="wmray-mem-")
    os.makedirs(os.path.join(temp, "ray"))
    os.environ["RAY_TMPDIR"] = temp
    import ray
    import torch
    from wmfast.agents import MuZeroAgent
    from wmfast.muzero import Config

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = Config(num_envs=16, num_simulations=25, discount=0.99, replay_capacity=args.capacity,
                    reanalyse_fraction=0.1 if args.reanalysers else 0.0, seed=0)
    agent = MuZeroAgent(env_fn, config=config)
    ray.init(include_dashboard=False, log_to_driver=False)
    samples: list[dict] = []
    stop = threading.Event()
    start = time.perf_counter()

    def sample() -> None:
        while not stop.is_set():
            now = time.perf_counter() - start
            processes = {os.getpid(): "driver"}
            processes.update(_ray_workers(temp))
            for pid, kind in processes.items():
                rss = _rss_mb(pid)
                if rss is not None:
                    samples.append({"seconds": round(now, 1), "process": f"{kind}:{pid}",
                                    "rss_mb": round(rss, 1), "replay": len(agent.replay),
                                    "env_steps": agent.env_steps})
            stop.wait(args.every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        agent.train(10**9, time_limit=60 * args.minutes, backend="ray", num_actors=args.actors,
                    num_reanalysers=args.reanalysers, progress=False)
    finally:
        stop.set()
        sampler.join()
        ray.shutdown()
        import shutil

        shutil.rmtree(temp, ignore_errors=True)
    with open(out / "rss.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(samples[0]))
        writer.writeheader()
        writer.writerows(samples)
    full = next((s["seconds"] for s in samples if s["replay"] >= 0.95 * args.capacity), None)
    report = {"minutes": args.minutes, "actors": args.actors, "reanalysers": args.reanalysers,
              "capacity": args.capacity, "env_steps": agent.env_steps, "updates": agent.updates,
              "replay_full_at_s": full, "processes": {}}
    print(f"{agent.env_steps} env steps, {agent.updates} updates; replay full (>= 95%) after "
          f"{full} s")
    for process in sorted({s["process"] for s in samples}):
        mine = [s for s in samples if s["process"] == process]
        after = [s for s in mine if full is not None and s["seconds"] >= full]
        if len(after) < 2:
            continue
        first, last = after[0]["rss_mb"], after[-1]["rss_mb"]
        values = [s["rss_mb"] for s in after]
        change = 100.0 * (last - first) / first
        spread = 100.0 * (max(values) - min(values)) / first
        report["processes"][process] = {"first_mb": first, "last_mb": last, "max_mb": max(values),
                                        "change_pct": round(change, 2),
                                        "spread_pct": round(spread, 2), "samples": len(after)}
        print(f"{process:>24}: {first:7.1f} MB -> {last:7.1f} MB ({change:+.1f}%), spread "
              f"{spread:.1f}% over {len(after)} samples after the replay was full")
    _plot(samples, full, out / "rss.png")
    (out / "rss.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


def _plot(samples: list[dict], full: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for process in sorted({s["process"] for s in samples}):
        mine = [s for s in samples if s["process"] == process]
        ax.plot([s["seconds"] / 60 for s in mine], [s["rss_mb"] for s in mine], label=process)
    if full is not None:
        ax.axvline(full / 60, color="gray", linestyle="--", label="replay full")
    ax.set_xlabel("minutes of training")
    ax.set_ylabel("RSS (MB)")
    ax.set_title("MuZeroAgent.train(backend='ray'): resident memory per process")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
