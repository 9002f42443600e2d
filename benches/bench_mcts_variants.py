"""Benchmarks of the tree search variants: wmfast.StochasticMCTS beside mctx, LightZero, numpy.

The peers: mctx's stochastic_muzero_policy (CPU jax), LightZero's compiled Stochastic MuZero tree
driven by its own Python loop, and a vectorised numpy Stochastic MuZero search, on the same
workloads in the same process.

Workloads: a free model (constant outputs: measures the planner's own overhead) and small torch
MLPs (latent 64, hidden 128) for the decision and the chance function, at B=256, A=4, C=32 (2048's
shape), N in {50, 200}. All at one torch thread; wmfast also with num_threads=2. mctx runs the
free model only (its model would be jax; the free model isolates the search).

  python benches/bench_mcts_variants.py            # the ratio table
  python benches/bench_mcts_variants.py --quick    # N=50 only
  pytest benches/bench_mcts_variants.py --benchmark-only   # pytest-benchmark

Peers are optional: mctx needs ``pip install jax jaxlib mctx``; LightZero's
``stochastic_mz_tree`` is found in an installed ``lzero`` or in $WMFAST_LIGHTZERO_DIR (a folder
holding the ``stochastic_mz_tree*.so`` extracted from ``pip download LightZero==0.2.0 --no-deps``),
and is driven by ``mcts_baselines.lightzero_stochastic_search`` (LightZero's
StochasticMuZeroMCTSCtree.search loop; its docstring lists how its tree's semantics differ) on
both models. Without it the column is left out.
"""

from __future__ import annotations

import one_thread  # noqa: F401  (first: sets the thread counts of numpy's BLAS and jax)

# isort: split
import argparse
import os
import sys
import time

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcts_baselines
import wmfast as wm
from bench_mcts import _time_in_turns

LATENT, HIDDEN = 64, 128
CASES = [(256, 4, 32, 50), (256, 4, 32, 200)]


class FreeStochasticModel:
    """Near-zero-cost model: preallocated constant outputs (one set per batch size)."""

    def __init__(self, num_actions, num_chance_outcomes):
        self.A, self.C = num_actions, num_chance_outcomes
        self.afterstates, self.steps = {}, {}

    def decision(self, latent, action):
        n = latent.shape[0]
        out = self.afterstates.get(n)
        if out is None:
            out = self.afterstates[n] = wm.Afterstate(
                torch.zeros(n, LATENT), torch.zeros(n, self.C), torch.zeros(n)
            )
        return out

    def chance(self, afterstate, outcome):
        n = afterstate.shape[0]
        out = self.steps.get(n)
        if out is None:
            out = self.steps[n] = wm.Step(
                torch.zeros(n, LATENT), torch.zeros(n), torch.zeros(n, self.A), torch.zeros(n)
            )
        return out


class MLPStochasticModel(torch.nn.Module):
    """Decision: MLP on [state, one-hot action] -> afterstate, heads for chance logits and value.
    Chance: MLP on [afterstate, one-hot outcome] -> state, heads for logits, value, reward."""

    def __init__(self, num_actions, num_chance_outcomes):
        super().__init__()
        torch.manual_seed(0)
        self.A, self.C = num_actions, num_chance_outcomes

        def mlp(inputs, outputs):
            return torch.nn.Sequential(
                torch.nn.Linear(inputs, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, outputs)
            )

        self.afterstate_net = mlp(LATENT + num_actions, LATENT)
        self.afterstate_heads = mlp(LATENT, num_chance_outcomes + 1)
        self.state_net = mlp(LATENT + num_chance_outcomes, LATENT)
        self.state_heads = mlp(LATENT, num_actions + 2)

    @torch.no_grad()
    def decision(self, latent, action):
        onehot = torch.nn.functional.one_hot(action, self.A).to(latent.dtype)
        afterstate = torch.tanh(self.afterstate_net(torch.cat([latent, onehot], dim=1)))
        out = self.afterstate_heads(afterstate)
        return wm.Afterstate(afterstate, out[:, : self.C], out[:, -1])

    @torch.no_grad()
    def chance(self, afterstate, outcome):
        onehot = torch.nn.functional.one_hot(outcome, self.C).to(afterstate.dtype)
        state = torch.tanh(self.state_net(torch.cat([afterstate, onehot], dim=1)))
        out = self.state_heads(state)
        return wm.Step(state, out[:, -1], out[:, : self.A], out[:, -2])


def _root(B, A):
    g = torch.Generator().manual_seed(0)
    return wm.Root(torch.randn(B, LATENT, generator=g), torch.zeros(B, A), torch.zeros(B))


def contenders(B, A, C, N, model_kind):
    """name -> zero-argument callable running one batched search."""
    model = FreeStochasticModel(A, C) if model_kind == "free" else MLPStochasticModel(A, C)
    root = _root(B, A)
    out = {}
    for threads in (1, 2):
        planner = wm.StochasticMCTS(A, C, N, dirichlet_fraction=0.0, num_threads=threads)
        out[f"wmfast x{threads}"] = lambda p=planner: p.search(model, root)
    tree = mcts_baselines.load_lightzero_stochastic_tree()
    if tree is not None:
        lz_model = mcts_baselines.LightZeroStochasticModel(model.decision, model.chance)
        out["lightzero"] = lambda: mcts_baselines.lightzero_stochastic_search(
            tree, lz_model, root.latent, root.logits, N, A, discount=1.0
        )
    numpy_search = mcts_baselines.NumpyStochasticMCTS(A, C, N)
    out["numpy"] = lambda: numpy_search.search(
        model.decision, model.chance, root.latent, root.logits.numpy(), root.value.numpy()
    )
    if model_kind == "free":
        fn = mcts_baselines.make_mctx_stochastic_search(B, A, C, N, LATENT)
        if fn is not None:
            out["mctx stochastic"] = fn
    else:
        actions = torch.randint(0, A, (B,))
        outcomes = torch.randint(0, C, (B,))

        def model_calls_alone():
            # What a search must at least spend on the model: N calls of one of the two
            # functions over the batch (half each, on whole batches: an upper bound).
            for i in range(N):
                if i % 2:
                    model.chance(root.latent, outcomes)
                else:
                    model.decision(root.latent, actions)

        out["model alone"] = model_calls_alone
    return out


def check_numpy_baseline(B=16, A=4, C=32, N=40):
    """The numpy baseline searches as wmfast does: same root visits on the MLP model."""
    model = MLPStochasticModel(A, C)
    root = _root(B, A)
    visits, _ = mcts_baselines.NumpyStochasticMCTS(A, C, N).search(
        model.decision, model.chance, root.latent, root.logits.numpy(), root.value.numpy()
    )
    result = wm.StochasticMCTS(A, C, N, dirichlet_fraction=0.0).search(model, root)
    np.testing.assert_array_equal(visits, result.visit_counts.numpy())


def check_lightzero(B=256, A=4, C=32, N=50, against_itself=False):
    """LightZero's tree, driven here, searches the MLP model sensibly: root visits sum to N in
    every tree (asserted); returns how often its most visited root action is wmfast's (its
    chance nodes sample outcomes and it scores unvisited actions at the parent's mean Q, so
    the two searches are not expected to agree everywhere), or, ``against_itself``, that of a
    second LightZero search (its own run-to-run agreement); None without LightZero."""
    tree = mcts_baselines.load_lightzero_stochastic_tree()
    if tree is None:
        return None
    model = MLPStochasticModel(A, C)
    root = _root(B, A)
    visits, _ = mcts_baselines.lightzero_stochastic_search(
        tree, mcts_baselines.LightZeroStochasticModel(model.decision, model.chance),
        root.latent, root.logits, N, A, discount=1.0,
    )
    if not (visits.sum(axis=1) == N).all():
        raise AssertionError(f"LightZero root visits do not sum to {N}: {visits.sum(axis=1)}")
    if against_itself:
        other, _ = mcts_baselines.lightzero_stochastic_search(
            tree, mcts_baselines.LightZeroStochasticModel(model.decision, model.chance),
            root.latent, root.logits, N, A, discount=1.0,
        )
    else:
        other = wm.StochasticMCTS(A, C, N, dirichlet_fraction=0.0).search(model, root)
        other = other.visit_counts.numpy()
    return float((visits.argmax(axis=1) == other.argmax(axis=1)).mean())


def lightzero_breakdown(B=256, A=4, C=32, N=50):
    """Seconds of one LightZero-driven search of the free model: in all, and in its tree's
    two C++ calls (the rest is the Python loop, its per-leaf conversions and the model)."""
    tree = mcts_baselines.load_lightzero_stochastic_tree()
    if tree is None:
        return None
    timed = mcts_baselines.TimedTree(tree)
    model = FreeStochasticModel(A, C)
    root = _root(B, A)
    start = time.perf_counter()
    mcts_baselines.lightzero_stochastic_search(
        timed, mcts_baselines.LightZeroStochasticModel(model.decision, model.chance),
        root.latent, root.logits, N, A, discount=1.0,
    )
    return time.perf_counter() - start, timed.seconds


def run_table(cases):
    torch.set_num_threads(1)
    check_numpy_baseline()
    agreement = check_lightzero()
    if agreement is not None:
        again = check_lightzero(against_itself=True)
        print(f"# LightZero stochastic tree: root visits sum to N; most visited root action = "
              f"wmfast's in {agreement:.0%} of 256 trees, = its own in a second search in "
              f"{again:.0%} (MLP model, N=50)")
        total, calls = lightzero_breakdown()
        print(f"# LightZero free model, N=50: {total:.2f} s a search, of which C++ "
              f"batch_traverse {calls['batch_traverse']:.2f} s, batch_backpropagate "
              f"{calls['batch_backpropagate']:.2f} s")
    print(
        f"# wmfast StochasticMCTS benchmark, torch {torch.__version__}, 1 torch thread, "
        f"{os.cpu_count()} cpus"
    )
    for model_kind in ("free", "mlp"):
        print(f"\n## {model_kind} model: simulations/s (B*N per second); ratio = other / wmfast x1")
        for B, A, C, N in cases:
            row = _time_in_turns(contenders(B, A, C, N, model_kind), rounds=5)
            base = row["wmfast x1"]
            parts = []
            for name, seconds in row.items():
                if name == "model alone":
                    parts.append(
                        f"model alone {seconds * 1e3:.1f} ms -> wmfast/model {base / seconds:.2f}"
                    )
                else:
                    ratio = "" if name == "wmfast x1" else f" ({seconds / base:.2f}x)"
                    parts.append(f"{name} {B * N / seconds / 1e6:.3f}M{ratio}")
            print(f"B={B} A={A} C={C} N={N:3d} | " + " | ".join(parts), flush=True)


# --- pytest-benchmark ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_numpy_baseline_agrees_with_wmfast():
    check_numpy_baseline()


@pytest.mark.parametrize("B, A, C, N", CASES)
@pytest.mark.parametrize("model_kind", ["free", "mlp"])
@pytest.mark.parametrize("name", ["wmfast x1", "wmfast x2", "numpy", "mctx stochastic",
                                  "lightzero", "model alone"])
def test_stochastic_mcts(benchmark, B, A, C, N, model_kind, name):
    fns = contenders(B, A, C, N, model_kind)
    if name not in fns:
        pytest.skip(f"{name} is not available for the {model_kind} model here")
    benchmark.extra_info["simulations"] = B * N
    benchmark.pedantic(fns[name], rounds=3, iterations=1, warmup_rounds=1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=50 only")
    args = parser.parse_args()
    run_table(CASES[:1] if args.quick else CASES)
