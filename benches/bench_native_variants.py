"""The tree search variants with wm.NativeModels: wm.StochasticMCTS and wm.SampledMCTS at one and
two threads (two: each thread searches its own shard of trees with its own model calls), beside
the same search with the Python model and the native model's own calls alone.

Models: bench_mcts_variants.py's MLPs for Stochastic MuZero (latent 64, hidden 128; B=256, A=4,
C=32: 2048's shape) and bench_sampled.py's MLP for Sampled MuZero (continuous, action_dim 2,
K=16), exported with num_threads=1 (one kernel thread per call) and two runners; N=50, one
torch thread. Medians (min-max) over interleaved rounds; ratio = how many times faster.

  python benches/bench_native_variants.py            # the table (15 rounds)
  python benches/bench_native_variants.py --quick    # 3 rounds
  pytest benches/bench_native_variants.py --benchmark-only   # pytest-benchmark
"""

from __future__ import annotations

import one_thread  # noqa: F401  (first: sets the thread counts of numpy's BLAS and jax)

# isort: split
import argparse
import os
import sys
import time

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_mcts_variants as variants
import bench_sampled as sampled
import wmfast as wm
from harness import fmt_ratio_cell, fmt_time_cell, interleaved, ratios

B, N = 256, 50
A, C = 4, 32  # Stochastic MuZero (2048's shape)
K = 16  # Sampled MuZero's samples per node


def _export(fn, example):
    native = wm.NativeModel.export(fn, example, num_threads=1)
    return wm.NativeModel(native.path, num_runners=2)


def stochastic_contenders():
    """name -> zero-argument callable: StochasticMCTS over the MLPs, native and Python."""
    model = variants.MLPStochasticModel(A, C)
    index = torch.zeros(8, dtype=torch.long)
    latent = torch.randn(8, variants.LATENT)
    decision = _export(model.decision, (latent, index))
    chance = _export(model.chance, (latent, index))
    root = variants._root(B, A)
    out = {}
    for threads in (1, 2):
        planner = wm.StochasticMCTS(A, C, N, num_threads=threads)
        out[f"native x{threads}"] = lambda p=planner: p.search((decision, chance), root)
    python = wm.StochasticMCTS(A, C, N)
    out["Python model x1"] = lambda: python.search(model, root)
    # The native calls a one-thread search makes: per simulation, each tree calls one of the
    # two functions; here half the batch each, N times.
    half = B // 2
    latents, actions = torch.randn(half, variants.LATENT), torch.zeros(half, dtype=torch.long)

    def calls_alone():
        for _ in range(N):
            decision(latents, actions)
            chance(latents, actions)

    out["native calls alone"] = calls_alone
    return out


def sampled_contenders():
    """name -> zero-argument callable: SampledMCTS over the MLP, native and Python."""
    model = sampled.MLPModel()
    native = _export(model.recurrent_inference,
                     (torch.randn(8, sampled.LATENT), torch.rand(8, sampled.D)))
    root = sampled._root(B)
    out = {}
    for threads in (1, 2):
        planner = wm.SampledMCTS(K, N, action_dim=sampled.D, num_threads=threads)
        out[f"native x{threads}"] = lambda p=planner: p.search(native, root)
    python = wm.SampledMCTS(K, N, action_dim=sampled.D)
    out["Python model x1"] = lambda: python.search(model, root)
    latents, actions = root.latent, torch.zeros(B, sampled.D)

    def calls_alone():
        for _ in range(N):
            native(latents, actions)

    out["native calls alone"] = calls_alone
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 15")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds = 3 if args.quick else 15
    print(f"load average before: {os.getloadavg()}")
    for title, make in (
        (f"StochasticMCTS, MLPs, B={B}, A={A}, C={C}, N={N}", stochastic_contenders),
        (f"SampledMCTS, MLP, B={B}, K={K}, action_dim={sampled.D}, N={N}", sampled_contenders),
    ):
        start = time.perf_counter()
        fns = make()
        print(f"\n{title} (set-up incl. export {time.perf_counter() - start:.1f} s; "
              f"{rounds} interleaved rounds, one torch thread)")
        times = interleaved(fns, rounds, 0.1)
        for name, samples in times.items():
            print(f"  {name:<20} {fmt_time_cell(samples)}")
        print(f"  2 threads over 1 (native): {fmt_ratio_cell(ratios(times, 'native x1', 'native x2'))}")
        print(f"  native x1 over the Python model: "
              f"{fmt_ratio_cell(ratios(times, 'Python model x1', 'native x1'))}")
        print(f"  native x1 / native calls alone: "
              f"{fmt_ratio_cell(ratios(times, 'native x1', 'native calls alone'))}")
    print(f"\nload average after: {os.getloadavg()}")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def fns():
    return {"stochastic": stochastic_contenders(), "sampled": sampled_contenders()}


@pytest.mark.parametrize("variant", ["stochastic", "sampled"])
@pytest.mark.parametrize("name", ["native x1", "native x2", "Python model x1",
                                  "native calls alone"])
def test_native_variants(benchmark, fns, variant, name):
    benchmark.group = f"{variant}, B={B}, N={N}"
    benchmark.pedantic(fns[variant][name], rounds=3, iterations=1, warmup_rounds=1)


if __name__ == "__main__":
    main()
