"""Self-play env steps/s on CartPole: the eager SearchModel vs a NativeModel export of its
recurrent_inference (wmfast.muzero.native_selfplay), in the same process, interleaved.

    python benches/selfplay_native.py [--envs 16 64] [--moves 30] [--trials 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import gymnasium as gym
import torch
import wmfast as wm
from wmfast import muzero as mz
from wmfast.muzero.native_selfplay import NativeSearchModel
from wmfast.muzero.selfplay import SelfPlay


def steps_per_second(selfplay: SelfPlay, moves: int) -> float:
    start = time.perf_counter()
    for _ in range(moves):
        selfplay.step(1.0)
    return moves * len(selfplay.envs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--moves", type=int, default=30)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--simulations", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    network = mz.MLPNetwork(4, 2, latent_dim=64, hidden=64, support_size=10).eval()
    model = mz.SearchModel(network, 10)
    start = time.perf_counter()
    native = NativeSearchModel(model, (4,), num_runners=1)
    export_seconds = time.perf_counter() - start
    start = time.perf_counter()
    native.refresh()
    refresh_ms = 1000 * (time.perf_counter() - start)
    results = {"torch": torch.__version__, "export_s": round(export_seconds, 1),
               "refresh_ms": round(refresh_ms, 3), "load_before": os.getloadavg()}
    for num_envs in args.envs:
        runs: dict[str, list[float]] = {"eager": [], "native": []}
        players = {}
        for name, search_model in (("eager", None), ("native", native.native)):
            envs = [gym.make("CartPole-v1") for _ in range(num_envs)]
            search = wm.MCTS(2, args.simulations, dirichlet_alpha=0.25, seed=0)
            players[name] = SelfPlay(envs, model, search, 2, seed=0, search_model=search_model)
            steps_per_second(players[name], 3)  # warm-up
        for _ in range(args.trials):
            for name, player in players.items():
                runs[name].append(steps_per_second(player, args.moves))
        eager, fast = statistics.median(runs["eager"]), statistics.median(runs["native"])
        results[f"envs{num_envs}"] = {"eager_steps_s": round(eager, 1),
                                      "native_steps_s": round(fast, 1),
                                      "ratio": round(fast / eager, 2),
                                      "runs": {k: [round(v, 1) for v in r] for k, r in runs.items()}}
        print(num_envs, results[f"envs{num_envs}"], flush=True)
    results["load_after"] = os.getloadavg()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
