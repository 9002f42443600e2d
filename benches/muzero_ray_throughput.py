"""Self-play throughput of MuZeroAgent.train on Ray against the in-process loop (a script, not a
pytest-benchmark suite: it starts a Ray instance).

Besides the rates (which on a shared machine depend on what else runs: the OS shares the cores
per process, so more processes get more of them), the CPU time per environment step, in the
driver and in the actors, is the overhead measure that does not depend on the machine's load.

Self-play bound: CartPole-v1, the demo's network and search (16 environments per actor, 25
simulations), no learning (min_replay above the run), one torch thread per process. Rates are
environment steps per second of the steady state (the first results, while actors import torch
and build their environments, are left out), so they exclude Ray's and the actors' start-up,
which is printed separately.

  python benches/muzero_ray_throughput.py                 # local, Ray with 1 and 2 actors
  python benches/muzero_ray_throughput.py --steps 4000 --actors 1 2 4
  python benches/muzero_ray_throughput.py --steps 20000 --repeat 5   # the README's figures
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time


def config():
    from wmfast.muzero import Config

    return Config(num_envs=16, num_simulations=25, discount=0.99, min_replay=10**9,
                  replay_capacity=200_000, seed=0)


def env_fn():
    import gymnasium as gym

    return gym.make("CartPole-v1")


def local_rate(steps: int) -> tuple[float, float]:
    """(env steps/s, CPU ms per env step)."""
    from wmfast.agents import MuZeroAgent

    agent = MuZeroAgent(env_fn, config=config())
    agent.train(16 * 5, progress=False)                 # warm-up
    start, cpu, before = time.perf_counter(), time.process_time(), agent.env_steps
    agent.train(steps, progress=False)
    played = agent.env_steps - before
    return (played / (time.perf_counter() - start),
            1e3 * (time.process_time() - cpu) / played)


def ray_rate(steps: int, actors: int, moves_per_call: int) -> tuple[float, float, float, float]:
    """(steady env steps/s, driver CPU ms per env step, actors' CPU ms per env step, seconds
    from train() to the first result)."""
    from wmfast.agents import MuZeroAgent
    from wmfast.muzero import distributed

    stamps: list[tuple[float, float, int, int, float]] = []
    original = distributed.RayRunner._add_games

    def add_games(self, result):
        original(self, result)
        stamps.append((time.perf_counter(), time.process_time(), result["env_steps"],
                       result["slot"], result["cpu_seconds"]))

    distributed.RayRunner._add_games = add_games
    try:
        agent = MuZeroAgent(env_fn, config=config())
        start = time.perf_counter()
        agent.train(steps, backend="ray", num_actors=actors, progress=False,
                    ray_options=distributed.RayOptions(moves_per_call=moves_per_call))
    finally:
        distributed.RayRunner._add_games = original
    skip = 2 * actors                                   # each actor's first calls: start-up
    steady = stamps[skip:]
    played = sum(s[2] for s in steady[1:])
    actor_cpu = 0.0
    for slot in range(actors):
        mine = [s for s in steady if s[3] == slot]
        actor_cpu += mine[-1][4] - mine[0][4]
    actor_played = sum(sum(s[2] for s in steady if s[3] == slot)
                       - next(s[2] for s in steady if s[3] == slot) for slot in range(actors))
    return (played / (steady[-1][0] - steady[0][0]),
            1e3 * (steady[-1][1] - steady[0][1]) / played, 1e3 * actor_cpu / actor_played,
            stamps[0][0] - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3200)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--moves-per-call", type=int, nargs="+", default=[1],
                        help="RayOptions.moves_per_call values to run (each with every --actors)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of (local, every Ray setting), in turns; ratios per round "
                             "and their median")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="wmray-bench-")
    os.makedirs(os.path.join(temp, "ray"))
    os.environ["RAY_TMPDIR"] = temp
    import ray
    import torch

    torch.set_num_threads(1)
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    print(f"ray.init: {time.perf_counter() - started:.1f} s")
    settings = list(itertools.product(args.moves_per_call, args.actors))
    rates: dict[object, list[float]] = {}
    try:
        for round_ in range(args.repeat):
            print(f"-- round {round_ + 1}/{args.repeat}, load average "
                  f"{os.getloadavg()[0]:.1f}")
            rate, cpu = local_rate(args.steps)
            rates.setdefault("local", []).append(rate)
            print(f"local (in-process, 16 envs): {rate:.0f} env steps/s, {cpu:.2f} CPU ms per "
                  "step")
            for moves, actors in settings:
                rate, driver, actor, first = ray_rate(args.steps, actors, moves)
                rates.setdefault((moves, actors), []).append(rate)
                print(f"ray, {actors} actor(s) x 16 envs, {moves} move(s) per call: {rate:.0f} "
                      f"env steps/s, CPU ms per step: {actor:.2f} in the actors + {driver:.2f} "
                      f"in the driver (first result {first:.1f} s after train())")
    finally:
        ray.shutdown()
        import shutil

        shutil.rmtree(temp, ignore_errors=True)
    print(f"-- ratios per round (median over {args.repeat} rounds)")
    local = rates["local"]
    for moves, actors in settings:
        ray_rates = rates[(moves, actors)]
        overhead = [lo / r for lo, r in zip(local, ray_rates)]
        print(f"time per env step, ray {actors} actor(s) / local, {moves} move(s) per call: "
              f"{_rounds(overhead)}")
        if actors != args.actors[0]:
            scaling = [r / one for r, one in zip(ray_rates, rates[(moves, args.actors[0])])]
            print(f"env steps/s, {actors} / {args.actors[0]} actor(s), {moves} move(s) per call:"
                  f" {_rounds(scaling)}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def _rounds(ratios: list[float]) -> str:
    return (f"median {statistics.median(ratios):.2f}x (rounds: "
            + ", ".join(f"{r:.2f}" for r in ratios) + ")")


if __name__ == "__main__":
    main()
