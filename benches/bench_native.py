"""Native (AOTInductor) models in the planning loop, beside the Python-callback mode.

MCTS over the MLP MuZero model of bench_mcts.py (latent 64, hidden 128), B=256, A=18, N=50, one
torch thread: the search with the model as a Python callback, the search with the same model as
a wm.NativeModel (1 and 2 threads: each thread its own shard of trees and model calls), and the
model's own calls alone (N batched calls of B, eager and native).

  python benches/bench_native.py                  # ratios table
  pytest benches/bench_native.py --benchmark-only # pytest-benchmark
"""

from __future__ import annotations

import one_thread  # noqa: F401  (first: sets the thread counts of numpy's BLAS and jax)

# isort: split
import os
import sys
import time

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmfast as wm
from bench_mcts import LATENT, MLPModel, _root, _time_in_turns
from harness import Table, fmt_ratio_cell, fmt_time_cell, interleaved, ratios

B, A, N = 256, 18, 50


def setup():
    model = MLPModel(A)
    example = (torch.randn(8, LATENT), torch.randint(0, A, (8,)))
    start = time.perf_counter()
    native = wm.NativeModel.export(model.recurrent_inference, example, num_threads=1)
    export_seconds = time.perf_counter() - start
    latents = torch.randn(B, LATENT)
    actions = torch.randint(0, A, (B,))
    contenders = {
        "search, Python callback": lambda: wm.MCTS(A, N, seed=0).search(model, _root(B, A)),
        "search, NativeModel": lambda: wm.MCTS(A, N, seed=0).search(native, _root(B, A)),
        "search, NativeModel, 2 threads": lambda: wm.MCTS(A, N, seed=0, num_threads=2).search(
            native, _root(B, A)),
        "model calls alone, eager": lambda: [model.recurrent_inference(latents, actions)
                                             for _ in range(N)],
        "model calls alone, native": lambda: [native(latents, actions) for _ in range(N)],
    }
    return contenders, export_seconds


@pytest.fixture(scope="module")
def contenders():
    return setup()[0]


@pytest.mark.parametrize("name", ["search, Python callback", "search, NativeModel",
                                  "search, NativeModel, 2 threads",
                                  "model calls alone, eager", "model calls alone, native"])
def test_native_vs_callback(benchmark, contenders, name):
    benchmark.group = f"MCTS with an MLP model, B={B}, A={A}, N={N}"
    benchmark.name = name
    benchmark(contenders[name])


def main() -> None:
    torch.set_num_threads(1)
    contenders, export_seconds = setup()
    times = _time_in_turns(contenders)
    print(f"export (cached after the first time): {export_seconds:.2f} s")
    print(f"MCTS, MLP model (latent {LATENT}), B={B}, A={A}, N={N}, 1 torch thread")
    for name, seconds in times.items():
        print(f"  {name:<28} {seconds * 1e3:8.2f} ms")
    native, callback = times["search, NativeModel"], times["search, Python callback"]
    print(f"native search speed-up over the callback search: {callback / native:.2f}x")
    print(f"2 threads over 1 thread (native): "
          f"{native / times['search, NativeModel, 2 threads']:.2f}x")
    print(f"native search / native model calls alone: "
          f"{native / times['model calls alone, native']:.3f}")


def run(quick: bool = False, large: bool = False) -> list[Table]:
    """The suite's table (run_all.py): native vs callback search, interleaved rounds."""
    torch.set_num_threads(1)
    contenders, export_seconds = setup()
    rounds, min_seconds = (2, 0.02) if quick else (15, 0.1)
    times = interleaved(contenders, rounds, min_seconds)
    table = Table("native", f"MCTS over the MLP model exported as a wm.NativeModel "
                  f"(num_threads=1), B={B}, A={A}, N={N}, one torch thread",
                  ["search, Python callback", "search, NativeModel",
                   "search, NativeModel, 2 threads", "native model's N calls alone", "callback / native search",
                   "2 threads: speed-up", "native search / native calls alone"],
                  samples={"times": times, "export_seconds": export_seconds})
    table.add_row([fmt_time_cell(times["search, Python callback"]),
                   fmt_time_cell(times["search, NativeModel"]),
                   fmt_time_cell(times["search, NativeModel, 2 threads"]),
                   fmt_time_cell(times["model calls alone, native"]),
                   fmt_ratio_cell(ratios(times, "search, Python callback", "search, NativeModel")),
                   fmt_ratio_cell(ratios(times, "search, NativeModel",
                                         "search, NativeModel, 2 threads")),
                   fmt_ratio_cell(ratios(times, "search, NativeModel",
                                         "model calls alone, native"))])
    table.notes.append(f"Medians (min-max) over {rounds} interleaved rounds; export "
                       f"{export_seconds:.1f} s (cached after the first time).")
    return [table]


if __name__ == "__main__":
    main()
