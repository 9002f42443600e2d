"""Benchmarks of wmfast.MCTS / GumbelMCTS beside the vectorised numpy baseline, mctx (CPU jax)
and LightZero's compiled tree, on the same workloads in the same process.

Workloads: a free model (constant outputs: measures the planner's own overhead) and a small torch
MLP (latent 64, hidden 128), over B in {16, 256, 1024}, A in {4, 18}, N in {50, 200}. All at one
torch thread (``torch.set_num_threads(1)``), plus wmfast with num_threads=2.

  python benches/bench_mcts.py            # the full table with ratios (several minutes)
  python benches/bench_mcts.py --quick    # B=256, A=18, N=50 only
  pytest benches/bench_mcts.py --benchmark-only   # pytest-benchmark, one case per workload

Peers are optional: mctx needs ``pip install jax jaxlib mctx``; LightZero's ``mz_tree`` module
is found in an installed ``lzero`` or in $WMFAST_LIGHTZERO_DIR (a folder holding the
``mz_tree*.so`` extracted from ``pip download LightZero --no-deps``).
"""

from __future__ import annotations

import one_thread  # noqa: F401  (first: sets the thread counts of numpy's BLAS and jax)

# isort: split
import argparse
import itertools
import os
import statistics
import sys
import time

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcts_baselines
import wmfast as wm
from harness import (
    Table,
    fmt_rate_cell,
    fmt_ratio_cell,
    fmt_time_cell,
    interleaved,
    others_cpu,
    ratios,
    spread,
)

LATENT, HIDDEN = 64, 128
BATCHES, ACTIONS, SIMULATIONS = (16, 256, 1024), (4, 18), (50, 200)


class FreeModel:
    """Near-zero-cost model: returns preallocated constant tensors (one set per batch size: a
    search with num_threads=k calls it with B/k rows)."""

    def __init__(self, batch_size, num_actions):
        self.num_actions = num_actions
        self.steps = {}

    def recurrent_inference(self, latent, action):
        n = latent.shape[0]
        step = self.steps.get(n)
        if step is None:
            A = self.num_actions
            step = self.steps[n] = wm.Step(
                torch.zeros(n, LATENT), torch.zeros(n), torch.zeros(n, A), torch.zeros(n)
            )
        return step


class MLPModel(torch.nn.Module):
    """Dynamics MLP on [latent, one-hot action] and a prediction MLP for logits/value/reward."""

    def __init__(self, num_actions):
        super().__init__()
        torch.manual_seed(0)
        self.A = num_actions
        self.dynamics = torch.nn.Sequential(
            torch.nn.Linear(LATENT + num_actions, HIDDEN),
            torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN, LATENT),
        )
        self.prediction = torch.nn.Sequential(
            torch.nn.Linear(LATENT, HIDDEN),
            torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN, num_actions + 2),
        )

    @torch.no_grad()
    def recurrent_inference(self, latent, action):
        onehot = torch.nn.functional.one_hot(action, self.A).to(latent.dtype)
        nxt = torch.tanh(self.dynamics(torch.cat([latent, onehot], dim=1)))
        out = self.prediction(nxt)
        return wm.Step(nxt, out[:, -1], out[:, : self.A], out[:, -2])


def _root(B, A):
    g = torch.Generator().manual_seed(0)
    return wm.Root(torch.randn(B, LATENT, generator=g), torch.zeros(B, A), torch.zeros(B))


def _mean_time(fn, min_seconds):
    """Mean seconds per call over enough calls to last min_seconds."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def _time_in_turns(fns, min_seconds=0.1, rounds=10):
    """name -> median of `rounds` mean times, the callables taking turns in each round (the
    script's quick table; run_all.py reports the spreads too). Medians, not the best round: the
    best round of a loaded machine is a lucky moment, not what a user sees (issue 17)."""
    times = interleaved(fns, rounds, min_seconds)
    return {name: statistics.median(samples) for name, samples in times.items()}


def contenders(B, A, N, model_kind, peers=True):
    """name -> zero-argument callable running one batched search (peers: LightZero and mctx,
    when installed; mctx's jit compilation takes seconds)."""
    model = FreeModel(B, A) if model_kind == "free" else MLPModel(A)
    root = _root(B, A)
    out = {}
    for threads in (1, 2):
        mcts = wm.MCTS(A, N, dirichlet_fraction=0.25, num_threads=threads)
        out[f"wmfast x{threads}"] = lambda m=mcts: m.search(model, root)
    gumbel = wm.GumbelMCTS(A, N)
    out["wmfast gumbel"] = lambda: gumbel.search(model, root)
    numpy_mcts = mcts_baselines.NumpyMCTS(A, N)
    out["numpy"] = lambda: numpy_mcts.search(
        model.recurrent_inference, root.latent, root.logits.numpy(), root.value.numpy()
    )
    mz_tree = mcts_baselines.load_lightzero_mz_tree() if peers else None
    if mz_tree is not None:
        out["lightzero"] = lambda: mcts_baselines.lightzero_search(
            mz_tree, model.recurrent_inference, root.latent, root.logits, root.value, N, A
        )
    if model_kind == "free" and peers:
        for gumbel_policy in (False, True):
            fn = mcts_baselines.make_mctx_search(B, A, N, LATENT, gumbel_policy)
            if fn is not None:
                out["mctx gumbel" if gumbel_policy else "mctx muzero"] = fn
    else:
        actions = torch.randint(0, A, (B,))
        latent = root.latent

        def model_calls_alone():
            for _ in range(N):
                model.recurrent_inference(latent, actions)

        out["model alone"] = model_calls_alone
    return out


def run_table(cases, skip_slow_baselines=True):
    torch.set_num_threads(1)
    print(
        f"# wmfast MCTS benchmark, torch {torch.__version__}, 1 torch thread, {os.cpu_count()} cpus"
    )
    for model_kind in ("free", "mlp"):
        print(f"\n## {model_kind} model: simulations/s (B*N per second); ratio = wmfast x1 / other")
        for B, A, N in cases:
            fns = {}
            for name, fn in contenders(B, A, N, model_kind).items():
                slow = name in ("numpy", "lightzero", "mctx muzero") and B * N > 256 * 200
                if not (skip_slow_baselines and slow):
                    fns[name] = fn
            row = _time_in_turns(fns)
            base = row["wmfast x1"]
            parts = []
            for name, seconds in row.items():
                rate = B * N / seconds
                ratio = "" if name == "wmfast x1" else f" ({seconds / base:.2f}x)"
                if name == "model alone":
                    parts.append(
                        f"model alone {seconds * 1e3:.2f} ms -> wmfast/model {base / seconds:.3f}"
                    )
                else:
                    parts.append(f"{name} {rate / 1e6:.3f}M{ratio}")
            print(f"B={B:5d} A={A:2d} N={N:3d} | " + " | ".join(parts), flush=True)


# --- run_all: medians over interleaved rounds ---------------------------------------------------

PEERS = {"numpy": "vectorised numpy", "lightzero": "LightZero ctree", "mctx muzero": "mctx muzero",
         "mctx gumbel": "mctx gumbel"}


def _free_table(cases, rounds, min_seconds, skip_slow_baselines, peers=True):
    table = Table("mcts", "Tree search, free model (the planner's own cost, Python model call "
                  "included): simulations per second, one thread",
                  ["B, A, N", "wmfast", "wmfast, 2 threads: speed-up"] +
                  [f"{label}: wmfast is" for label in PEERS.values()])
    for B, A, N in cases:
        fns = {}
        for name, fn in contenders(B, A, N, "free", peers).items():
            slow = name in ("numpy", "lightzero", "mctx muzero") and B * N > 256 * 200
            if name == "wmfast gumbel" or (skip_slow_baselines and slow):
                continue
            fns[name] = fn
        times = interleaved(fns, rounds, min_seconds)
        table.samples[f"B={B} A={A} N={N}"] = times
        table.add_row(
            [f"{B}, {A}, {N}", fmt_rate_cell(times["wmfast x1"], B * N),
             fmt_ratio_cell(ratios(times, "wmfast x1", "wmfast x2")) if B >= 64
             else "(one thread below 64 trees)"]
            + [fmt_ratio_cell(ratios(times, name, "wmfast x1")) if name in times else ""
               for name in PEERS])
    table.notes.append(
        f"Medians (min-max) over {rounds} interleaved rounds of at least {min_seconds} s per "
        "contender; ratios within each round (\"wmfast is\" = the peer's time / wmfast's). Empty: "
        "the peer is not installed here, or too slow to time at that size by default.")
    return table


def _mlp_table(cases, rounds, min_seconds, peers=True):
    table = Table("mcts", "Tree search with the small torch MLP (latent 64, hidden 128) as a "
                  "Python callback, one thread",
                  ["B, A, N", "wmfast search", "the model's N calls alone",
                   "search / model alone", "LightZero ctree: wmfast is"])
    for B, A, N in cases:
        names = ("wmfast x1", "model alone") + (("lightzero",) if peers else ())
        fns = {k: v for k, v in contenders(B, A, N, "mlp", peers).items() if k in names}
        times = interleaved(fns, rounds, min_seconds)
        table.samples[f"B={B} A={A} N={N}"] = times
        table.add_row([f"{B}, {A}, {N}", fmt_time_cell(times["wmfast x1"]),
                       fmt_time_cell(times["model alone"]),
                       fmt_ratio_cell(ratios(times, "wmfast x1", "model alone")),
                       fmt_ratio_cell(ratios(times, "lightzero", "wmfast x1"))
                       if "lightzero" in times else ""])
    table.notes.append(f"Medians (min-max) over {rounds} interleaved rounds.")
    return table


def two_thread_rounds(B, A, N, rounds, min_seconds):
    """Issue 17's two-thread question, per round: one-thread and two-thread seconds per search
    (free model, timed moments apart, the order alternating), the cores' worth of CPU other
    processes used while each ran, and an estimate of the search's serial part: a one-tree
    search (B=1) of the same N simulations, which is mostly the per-simulation Python model call
    and hand-over path that stays on one thread (a lower bound: at B rows the call converts
    more outputs)."""
    fns = {k: v for k, v in contenders(B, A, N, "free", peers=False).items()
           if k in ("wmfast x1", "wmfast x2")}
    one_tree_model, one_tree_root = FreeModel(1, A), _root(1, A)
    one_tree = wm.MCTS(A, N, dirichlet_fraction=0.25)

    def model_calls():
        one_tree.search(one_tree_model, one_tree_root)

    timed = {**fns, "model calls": model_calls}
    for fn in timed.values():
        fn()
    out = {"x1": [], "x2": [], "model calls": [], "others x1": [], "others x2": []}
    for r in range(rounds):
        order = ["wmfast x1", "wmfast x2"] if r % 2 == 0 else ["wmfast x2", "wmfast x1"]
        for name in order:
            seconds, others = others_cpu(lambda f=timed[name]: _mean_time(f, min_seconds))
            key = "x1" if name == "wmfast x1" else "x2"
            out[key].append(seconds)
            out[f"others {key}"].append(others)
        out["model calls"].append(_mean_time(model_calls, min_seconds / 4))
    out["speedups"] = [a / b for a, b in zip(out["x1"], out["x2"], strict=True)]
    # Amdahl: the serial part stays on one thread, everything else halves at best.
    out["amdahl"] = [t / (c + (t - c) / 2) for t, c in zip(out["x1"], out["model calls"],
                                                            strict=True)]
    return out


def _scaling_table(cases, rounds, min_seconds):
    table = Table("mcts", "Two search threads, free model: the distribution of the speed-up "
                  "over one thread, and what the second thread competed with",
                  ["B, A, N", "speed-up: median", "IQR", "min-max", "rounds >= 1.5x",
                   "median when others used < 0.5 core / >= 0.5 core (rounds)",
                   "Amdahl bound (serial part: a one-tree search)"])
    for B, A, N in cases:
        out = two_thread_rounds(B, A, N, rounds, min_seconds)
        table.samples[f"B={B} A={A} N={N}"] = out
        speedups = out["speedups"]
        s = spread(speedups)
        others = [o if o is not None else float("nan") for o in out["others x2"]]
        quiet = [x for x, o in zip(speedups, others, strict=True) if o < 0.5]
        busy = [x for x, o in zip(speedups, others, strict=True) if o >= 0.5]

        def median(xs):
            return f"{statistics.median(xs):.2f}x ({len(xs)})" if xs else "- (0)"

        table.add_row([f"{B}, {A}, {N}", f"{s['median']:.2f}x", f"{s['q1']:.2f}-{s['q3']:.2f}x",
                       f"{s['min']:.2f}-{s['max']:.2f}x",
                       f"{sum(x >= 1.5 for x in speedups)} of {len(speedups)}",
                       f"{median(quiet)} / {median(busy)}",
                       f"{statistics.median(out['amdahl']):.2f}x"])
    table.notes.append(
        f"{rounds} rounds; each times one thread and two threads moments apart (at least "
        f"{min_seconds} s each, the order alternating). \"Others\" is the CPU time other "
        "processes used during the two-thread timing, in cores (from /proc/stat). The Amdahl "
        "bound takes a one-tree search of N simulations (the per-simulation Python call and "
        "its fixed costs) as the serial part: a lower bound on it, so an upper bound on the "
        "speed-up.")
    return table


def run(quick: bool = False, large: bool = False) -> list[Table]:
    """The suite's tables (run_all.py): free model, MLP model, two-thread scaling."""
    torch.set_num_threads(1)
    if quick:
        cases, rounds, min_seconds = [(16, 4, 50)], 2, 0.01
    else:
        cases, rounds, min_seconds = CASES_SORTED, 10, 0.1
    scaling = [(64, 4, 50)] if quick else [(256, 4, 50), (256, 18, 50), (1024, 18, 50)]
    return [_free_table(cases, rounds, min_seconds, not large, peers=not quick),
            _mlp_table(cases, rounds, min_seconds, peers=not quick),
            _scaling_table(scaling, 3 if quick else 20, min_seconds)]


# --- pytest-benchmark ------------------------------------------------------------------------

CASES = list(itertools.product(BATCHES, ACTIONS, SIMULATIONS))
CASES_SORTED = sorted(CASES)


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("B, A, N", CASES)
@pytest.mark.parametrize("model_kind", ["free", "mlp"])
@pytest.mark.parametrize(
    "name",
    [
        "wmfast x1",
        "wmfast x2",
        "wmfast gumbel",
        "numpy",
        "lightzero",
        "mctx muzero",
        "mctx gumbel",
        "model alone",
    ],
)
def test_mcts(benchmark, B, A, N, model_kind, name):
    fns = contenders(B, A, N, model_kind)
    if name not in fns:
        pytest.skip(f"{name} is not available for the {model_kind} model here")
    benchmark.extra_info["simulations"] = B * N
    benchmark.pedantic(fns[name], rounds=3, iterations=1, warmup_rounds=1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="B=256, A=18, N=50 only")
    parser.add_argument(
        "--all-baselines",
        action="store_true",
        help="also time slow baselines on the largest workloads",
    )
    args = parser.parse_args()
    cases = [(256, 18, 50)] if args.quick else CASES
    run_table(cases, skip_slow_baselines=not args.all_baselines)
