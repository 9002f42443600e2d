"""Benchmarks of wmfast.SampledMCTS (continuous actions) beside LightZero's and numpy's.

LightZero's compiled Sampled MuZero tree is driven by its own Python loop; the numpy baseline is
a vectorised Sampled MuZero search; all on the same workloads in the same process.

Workloads: a free model (constant outputs: the planner's own overhead) and a small torch MLP
(latent 64, hidden 128, policy = Gaussian mean and log_std), over B in {16, 256}, K in {8, 16},
N in {50, 200}, action_dim 2. One torch thread (``torch.set_num_threads(1)``), plus wmfast with
num_threads=2. LightZero's ``smz_tree`` (optional) is found in an installed ``lzero`` or in
$WMFAST_LIGHTZERO_DIR (a folder holding the ``smz_tree*.so`` extracted from ``pip download
LightZero==0.2.0 --no-deps``) and driven by ``mcts_baselines.lightzero_sampled_search``
(LightZero's SampledMuZeroMCTSCtree.search loop; its docstring lists how its tree differs: tanh
squashed samples, a running min-max, unvisited children at the parent's mean Q). Without it the
column is left out.

  python benches/bench_sampled.py            # the full table with ratios
  python benches/bench_sampled.py --quick    # B=256, K=16, N=50 only
  pytest benches/bench_sampled.py --benchmark-only   # pytest-benchmark, one case per workload
"""

from __future__ import annotations

import one_thread  # noqa: F401  (first: sets the thread counts of numpy's BLAS)

# isort: split
import argparse
import itertools
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

LATENT, HIDDEN, D = 64, 128, 2
BATCHES, SAMPLES, SIMULATIONS = (16, 256), (8, 16), (50, 200)


class FreeModel:
    """Near-zero-cost model: preallocated constant outputs (policy width 2D: mean 0, log_std 0;
    or `width` logits, for wm.MCTS over K actions as a yardstick)."""

    def __init__(self, width=2 * D):
        self.width = width
        self.steps = {}

    def recurrent_inference(self, latent, action):
        n = latent.shape[0]
        step = self.steps.get(n)
        if step is None:
            step = self.steps[n] = wm.Step(
                torch.zeros(n, LATENT), torch.zeros(n), torch.zeros(n, self.width), torch.zeros(n)
            )
        return step


class MLPModel(torch.nn.Module):
    """Dynamics MLP on [latent, action], prediction MLP for (mean, log_std), value, reward."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.dynamics = torch.nn.Sequential(
            torch.nn.Linear(LATENT + D, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, LATENT)
        )
        self.prediction = torch.nn.Sequential(
            torch.nn.Linear(LATENT, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 2 * D + 2)
        )

    @torch.no_grad()
    def recurrent_inference(self, latent, action):
        nxt = torch.tanh(self.dynamics(torch.cat([latent, action], dim=1)))
        out = self.prediction(nxt)
        policy = torch.cat([torch.tanh(out[:, :D]), out[:, D : 2 * D].clamp(-2, 0)], 1)
        return wm.Step(nxt, out[:, -2], policy, out[:, -1])


class NumpySampledMCTS:
    """A careful vectorised numpy Sampled MuZero search (the same algorithm as wm.SampledMCTS:
    K Gaussian samples per node clipped to the bounds, prior 1/K, pUCT with mctx's
    parent-and-siblings Q transform, no noise): trees are [B, N+1, K] arrays; each simulation
    descends all trees in lock-step with numpy ops over the batch, calls the model once, and
    backs up level by level. Samples are drawn when a node is expanded (vectorised over the
    batch), not when first descended from."""

    def __init__(self, num_samples, num_simulations, low=-1.0, high=1.0, pb_c_init=1.25,
                 pb_c_base=19652.0, seed=0):
        self.K, self.N, self.low, self.high = num_samples, num_simulations, low, high
        self.pb_c_init, self.pb_c_base = pb_c_init, pb_c_base
        self.rng = np.random.default_rng(seed)

    def _draw(self, policy):
        mean, log_std = policy[:, None, :D], policy[:, None, D:]
        eps = self.rng.standard_normal((policy.shape[0], self.K, D), dtype=np.float32)
        return np.clip(mean + np.exp(log_std) * eps, self.low, self.high)

    def search(self, model, latent, policy, value):
        B, K, N = latent.shape[0], self.K, self.N
        M = N + 1
        rows = np.arange(B)
        visits = np.zeros((B, M), np.int32)
        node_values = np.zeros((B, M), np.float32)
        parents = np.full((B, M), -1, np.int32)
        from_edge = np.full((B, M), -1, np.int32)
        children = np.full((B, M, K), -1, np.int32)
        samples = np.zeros((B, M, K, D), np.float32)
        cvisits = np.zeros((B, M, K), np.int32)
        cq = np.zeros((B, M, K), np.float32)
        rewards = np.zeros((B, M, K), np.float32)
        discounts = np.zeros((B, M, K), np.float32)
        latents = torch.zeros((B, M) + tuple(latent.shape[1:]), dtype=latent.dtype)
        prior = np.float32(1.0 / K)

        samples[:, 0] = self._draw(np.asarray(policy, np.float32))
        node_values[:, 0] = value
        visits[:, 0] = 1
        latents[:, 0] = latent
        for sim in range(N):
            node = np.zeros(B, np.int64)
            edge = np.zeros(B, np.int64)
            active = np.ones(B, bool)
            while active.any():
                b = rows[active]
                n = node[b]
                nv = visits[b, n].astype(np.float32)
                cv = cvisits[b, n]
                q = cq[b, n]
                seen = cv > 0
                nval = node_values[b, n]
                lo = np.minimum(nval, np.where(seen, q, np.inf).min(axis=1))
                hi = np.maximum(nval, np.where(seen, q, -np.inf).max(axis=1))
                norm = np.where(seen, (q - lo[:, None]) / np.maximum(hi - lo, 1e-8)[:, None], 0)
                pb_c = self.pb_c_init + np.log((nv + self.pb_c_base + 1) / self.pb_c_base)
                score = norm + (np.sqrt(nv) * pb_c)[:, None] * prior / (cv + 1)
                k = score.argmax(axis=1)
                edge[b] = k
                child = children[b, n, k]
                more = child >= 0
                node[b[more]] = child[more]
                active[b[~more]] = False
            leaf = np.full(B, sim + 1)
            action = torch.from_numpy(samples[rows, node, edge])
            step = model(latents[rows, node], action)
            latents[rows, leaf] = step.latent
            r, v = step.reward.numpy(), step.value.numpy()
            d = np.ones(B, np.float32) if step.discount is None else step.discount.numpy()
            samples[rows, leaf] = self._draw(step.logits.numpy())
            node_values[rows, leaf] = v
            visits[rows, leaf] = 1
            parents[rows, leaf] = node
            from_edge[rows, leaf] = edge
            children[rows, node, edge] = leaf
            rewards[rows, node, edge] = r
            discounts[rows, node, edge] = d
            index, g = leaf.copy(), v.astype(np.float32)
            climbing = index != 0
            while climbing.any():
                b = rows[climbing]
                i = index[b]
                p, k = parents[b, i], from_edge[b, i]
                g[b] = rewards[b, p, k] + discounts[b, p, k] * g[b]
                count = visits[b, p].astype(np.float32)
                node_values[b, p] = (node_values[b, p] * count + g[b]) / (count + 1)
                visits[b, p] += 1
                cvisits[b, p, k] += 1
                cq[b, p, k] = rewards[b, p, k] + discounts[b, p, k] * node_values[b, i]
                index[b] = p
                climbing = index != 0
        return samples[:, 0], cvisits[:, 0], node_values[:, 0]


def _root(B):
    g = torch.Generator().manual_seed(0)
    return wm.Root(torch.randn(B, LATENT, generator=g), torch.zeros(B, 2 * D), torch.zeros(B))


def contenders(B, K, N, model_kind):
    """name -> zero-argument callable running one batched search."""
    model = FreeModel() if model_kind == "free" else MLPModel()
    root = _root(B)
    out = {}
    for threads in (1, 2):
        planner = wm.SampledMCTS(K, N, action_dim=D, num_threads=threads)
        out[f"wmfast x{threads}"] = lambda p=planner: p.search(model, root)
    tree = mcts_baselines.load_lightzero_sampled_tree()
    if tree is not None:
        lz_model = mcts_baselines.LightZeroSampledModel(model.recurrent_inference, D)
        lz_policy = mcts_baselines.lightzero_sampled_policy(root.logits, D)
        out["lightzero"] = lambda: mcts_baselines.lightzero_sampled_search(
            tree, lz_model, root.latent, lz_policy, N, K, D, discount=1.0
        )
    baseline = NumpySampledMCTS(K, N)
    out["numpy"] = lambda: baseline.search(
        model.recurrent_inference, root.latent, root.logits.numpy(), root.value.numpy()
    )
    if model_kind == "free":
        # The same tree work over K fixed discrete actions: what sampling and continuous actions
        # add to a search.
        mcts, free_k = wm.MCTS(K, N), FreeModel(K)
        root_k = wm.Root(root.latent, torch.zeros(B, K), root.value)
        out["wm.MCTS A=K"] = lambda: mcts.search(free_k, root_k)
    if model_kind == "mlp":
        actions = torch.zeros(B, D)
        latent = root.latent

        def model_calls_alone():
            for _ in range(N):
                model.recurrent_inference(latent, actions)

        out["model alone"] = model_calls_alone
    return out


def check_lightzero(B=256, K=16, N=50):
    """LightZero's tree, driven here, searches the MLP model: root visits sum to N and the root
    samples lie in (-1, 1) (tanh) in every tree (asserted). Returns the mean root value of its
    search and of wm.SampledMCTS's (with unvisited_q="parent_value", the closer rule), or
    None without LightZero: their samples and value rules differ, so only the scale compares."""
    tree = mcts_baselines.load_lightzero_sampled_tree()
    if tree is None:
        return None
    model = MLPModel()
    root = _root(B)
    samples, visits, values = mcts_baselines.lightzero_sampled_search(
        tree, mcts_baselines.LightZeroSampledModel(model.recurrent_inference, D), root.latent,
        mcts_baselines.lightzero_sampled_policy(root.logits, D), N, K, D, discount=1.0,
    )
    if not ((visits.sum(axis=1) == N).all() and (np.abs(samples) < 1).all()):
        raise AssertionError("LightZero's sampled tree: visits do not sum to N or samples "
                             "outside (-1, 1)")
    ours = wm.SampledMCTS(K, N, action_dim=D, dirichlet_fraction=0.0,
                          unvisited_q="parent_value").search(model, root)
    return float(values.mean()), float(ours.root_value.mean())


def lightzero_breakdown(B=256, K=16, N=50):
    """Seconds of one LightZero-driven search of the free model: in all, and in its tree's
    two C++ calls (the rest is the Python loop, its conversions and the model)."""
    tree = mcts_baselines.load_lightzero_sampled_tree()
    if tree is None:
        return None
    timed = mcts_baselines.TimedTree(tree)
    model = FreeModel()
    root = _root(B)
    start = time.perf_counter()
    mcts_baselines.lightzero_sampled_search(
        timed, mcts_baselines.LightZeroSampledModel(model.recurrent_inference, D), root.latent,
        mcts_baselines.lightzero_sampled_policy(root.logits, D), N, K, D, discount=1.0,
    )
    return time.perf_counter() - start, timed.seconds


def run_table(cases):
    torch.set_num_threads(1)
    values = check_lightzero()
    if values is not None:
        print(f"# LightZero sampled tree: root visits sum to N, samples in (-1, 1); mean root "
              f"value {values[0]:.3f} (wmfast, unvisited_q='parent_value': {values[1]:.3f}), "
              "MLP model, B=256, K=16, N=50")
        total, calls = lightzero_breakdown()
        print(f"# LightZero free model, B=256, K=16, N=50: {total:.2f} s a search, of which C++ "
              f"batch_traverse {calls['batch_traverse']:.2f} s, batch_backpropagate "
              f"{calls['batch_backpropagate']:.2f} s")
    print(
        f"# wmfast SampledMCTS benchmark (action_dim {D}), torch {torch.__version__}, "
        f"1 torch thread, {os.cpu_count()} cpus"
    )
    for model_kind in ("free", "mlp"):
        print(f"\n## {model_kind} model: simulations/s (B*N per second); ratio = other / wmfast x1 "
              "time")
        for B, K, N in cases:
            row = _time_in_turns(contenders(B, K, N, model_kind))
            base = row["wmfast x1"]
            parts = []
            for name, seconds in row.items():
                ratio = "" if name == "wmfast x1" else f" ({seconds / base:.2f}x)"
                if name == "model alone":
                    parts.append(
                        f"model alone {seconds * 1e3:.2f} ms -> wmfast/model {base / seconds:.3f}"
                    )
                else:
                    parts.append(f"{name} {B * N / seconds / 1e6:.3f}M{ratio}")
            print(f"B={B:4d} K={K:2d} N={N:3d} | " + " | ".join(parts), flush=True)


# --- pytest-benchmark ------------------------------------------------------------------------

CASES = list(itertools.product(BATCHES, SAMPLES, SIMULATIONS))


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("B, K, N", CASES)
@pytest.mark.parametrize("model_kind", ["free", "mlp"])
@pytest.mark.parametrize("name", ["wmfast x1", "wmfast x2", "numpy", "wm.MCTS A=K", "lightzero",
                                  "model alone"])
def test_sampled(benchmark, B, K, N, model_kind, name):
    fns = contenders(B, K, N, model_kind)
    if name not in fns:
        pytest.skip(f"{name} is not available for the {model_kind} model")
    benchmark.extra_info["simulations"] = B * N
    benchmark.pedantic(fns[name], rounds=3, iterations=1, warmup_rounds=1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="B=256, K=16, N=50 only")
    args = parser.parse_args()
    run_table([(256, 16, 50)] if args.quick else CASES)
