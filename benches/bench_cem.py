"""CEM / MPPI / iCEM benchmarks: wmfast beside a careful pure-torch CEM and, when installed,
TorchRL's CEMPlanner/MPPIPlanner and mbrl-lib's CEMOptimizer, on the same models in one process.

Workloads (5 iterations, 50 elites, action_dim 6, bounds +-1, torch.set_num_threads(1)):
  point-mass B=1/H=12/pop=500, point-mass B=32/H=30/pop=1000 (analytic model),
  PETS ensemble (5 MLPs, obs 17, 4 hidden layers of 200) B=1/H=12/pop=500 (TS-infinity),
  and the ensemble's model calls alone (60 calls of [5, 100, .]).

    pytest benches/bench_cem.py --benchmark-only          # pytest-benchmark tables
    python benches/bench_cem.py                           # ratio summary + plan quality
"""

from __future__ import annotations

import itertools
import math
import os
import time

import pytest
import torch
import wmfast as wm
from harness import Table, fmt_ratio_cell, fmt_time_cell, interleaved, ratios
from peers import MbrlCEM, TorchRLPlanner, mbrl_available, torchrl_available
from torch_cem import TorchCEM

torch.set_num_threads(1)
A, ITERS, ELITES = 6, 5, 50
DT = 0.1


def point_mass(state, action):
    """First-order point mass: s' = s + 0.1 a, reward -|s'|^2."""
    nxt = torch.add(state, action, alpha=DT)
    return nxt, -(nxt * nxt).sum(-1)


class PetsEnsemble:
    """5 MLPs (obs 17 + action 6 -> 4 x 200 -> delta obs 17 + reward), batched over members."""

    def __init__(self, members=5, obs=17, hidden=200, layers=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        sizes = [obs + A] + [hidden] * layers + [obs + 1]
        self.w = [torch.randn(members, i, o, generator=g) / math.sqrt(i)
                  for i, o in itertools.pairwise(sizes)]
        self.b = [torch.zeros(members, 1, o) for o in sizes[1:]]
        self.obs = obs

    def __call__(self, state, action):
        x = torch.cat([state, action], dim=-1)
        last = len(self.w) - 1
        for i, (w, b) in enumerate(zip(self.w, self.b)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = torch.nn.functional.silu(x)
        return state + 0.01 * x[..., : self.obs], x[..., self.obs]


WORKLOADS = {
    "pointmass_B1_H12_P500": {"b": 1, "h": 12, "pop": 500, "model": "pointmass"},
    "pointmass_B32_H30_P1000": {"b": 32, "h": 30, "pop": 1000, "model": "pointmass"},
    "pets_B1_H12_P500": {"b": 1, "h": 12, "pop": 500, "model": "pets"},
}


def workload(name):
    spec = WORKLOADS[name]
    g = torch.Generator().manual_seed(1)
    if spec["model"] == "pointmass":
        model, obs, ensemble = point_mass, A, None
    else:
        model, obs, ensemble = PetsEnsemble(), 17, 5
    state = torch.rand(spec["b"], obs, generator=g) * 4 - 2
    return spec, model, state, obs, ensemble


def make(impl, name):
    spec, model, state, obs, ensemble = workload(name)
    budget = {"horizon": spec["h"], "action_dim": A, "population": spec["pop"], "iterations": ITERS}
    ens = {"ensemble_size": ensemble, "propagation": "tsinf"} if ensemble else {}
    if impl == "wmfast_cem":
        planner = wm.CEM(elites=ELITES, **budget, **ens)
        return lambda: planner.plan(model, state)
    if impl == "wmfast_cem_native":  # the same model exported with AOTInductor: no Python calls
        native = wm.NativeModel.export(model, (torch.zeros(8, obs), torch.zeros(8, A)))
        planner = wm.CEM(elites=ELITES, **budget, **ens)
        return lambda: planner.plan(native, state)
    if impl == "wmfast_icem":
        planner = wm.ICEM(elites=ELITES, **budget, **ens)
        return lambda: planner.plan(model, state)
    if impl == "wmfast_mppi":
        planner = wm.MPPI(elites=ELITES, temperature=1.0, update_std=True, **budget, **ens)
        return lambda: planner.plan(model, state)
    if impl == "torch_cem":
        planner = TorchCEM(spec["h"], A, spec["pop"], ELITES, ITERS, ensemble_size=ensemble)
        return lambda: planner.plan(model, state)
    if impl in ("torchrl_cem", "torchrl_mppi"):
        planner = TorchRLPlanner(impl.split("_")[1], model, obs, A, spec["h"], spec["pop"],
                                 ELITES, ITERS)
        return lambda: planner.plan(state)
    if impl == "mbrl_cem":
        planner = MbrlCEM(model, spec["h"], A, spec["pop"], ELITES, ITERS)
        return lambda: planner.plan(state)
    if impl == "model_calls_only":
        n = spec["b"] * spec["pop"]
        s = state.repeat_interleave(spec["pop"], 0)
        a = torch.rand(n, A) * 2 - 1
        if ensemble:
            s, a = s.view(ensemble, n // ensemble, obs), a.view(ensemble, n // ensemble, A)

        def calls():  # the planner's calls: H chained steps per iteration, from the start state
            with torch.no_grad():
                for _ in range(ITERS):
                    x = s
                    for _ in range(spec["h"]):
                        x = model(x, a)[0]
        return calls
    raise KeyError(impl)


IMPLS = ["wmfast_cem", "wmfast_cem_native", "wmfast_icem", "wmfast_mppi", "torch_cem", "torchrl_cem", "torchrl_mppi",
         "mbrl_cem"]


def available(impl, name):
    if impl.startswith("torchrl") and not torchrl_available():
        return "TorchRL is not installed"
    if impl.startswith("mbrl") and not mbrl_available():
        return "mbrl-lib is not installed"
    if impl == "wmfast_cem_native" and WORKLOADS[name]["model"] == "pets":
        return "the native model is shown on the analytic model"
    if impl.startswith(("torchrl", "mbrl")) and WORKLOADS[name]["model"] == "pets":
        return "peers run on the analytic model only here (the PETS model is compute-bound)"
    return None


@pytest.mark.parametrize("name", sorted(WORKLOADS))
@pytest.mark.parametrize("impl", IMPLS + ["model_calls_only"])
def test_plan_time(benchmark, impl, name):
    if impl == "model_calls_only" and WORKLOADS[name]["model"] != "pets":
        pytest.skip("model-only timing is reported for the PETS workload")
    reason = available(impl, name)
    if reason:
        pytest.skip(reason)
    benchmark.group = name
    fn = make(impl, name)
    slow = impl.startswith(("torchrl", "mbrl")) or "B32" in name
    benchmark.pedantic(fn, rounds=3 if slow else 30, iterations=1, warmup_rounds=1)


def true_return(actions, state):
    """Return of action sequences [B, H, A] on the exact point-mass model."""
    s, total = state, torch.zeros(state.shape[0])
    for t in range(actions.shape[1]):
        s, r = point_mass(s, actions[:, t])
        total += r
    return total


def plan_quality(seeds=5, b=32, h=30, pop=1000):
    """Mean true return of the returned plans at equal budget (point mass, B=32/H=30/P=1000)."""
    g = torch.Generator().manual_seed(2)
    state = torch.rand(b, A, generator=g) * 4 - 2
    budget = {"horizon": h, "action_dim": A, "population": pop, "iterations": ITERS}
    results = {}
    for label, factory in {
        "wmfast CEM": lambda s: wm.CEM(elites=ELITES, seed=s, **budget),
        "wmfast iCEM": lambda s: wm.ICEM(elites=ELITES, seed=s, **budget),
        "wmfast iCEM beta=0": lambda s: wm.ICEM(elites=ELITES, noise_beta=0.0, seed=s, **budget),
        "wmfast MPPI": lambda s: wm.MPPI(elites=ELITES, temperature=1.0, update_std=True,
                                         min_std=0.05, seed=s, **budget),
        "torch CEM": lambda s: TorchCEM(h, A, pop, ELITES, ITERS, seed=s),
    }.items():
        values = []
        for seed in range(seeds):
            planner = factory(seed)
            out = planner.plan(point_mass, state)
            actions = out.actions if isinstance(out, wm.Plan) else out[0]
            values.append(true_return(actions, state).mean().item())
        results[label] = sum(values) / len(values)
    return results


def mpc_quality(episodes=3, steps=40, h=12, pop=500):
    """MPC in closed loop (warm start) on the point mass: mean episode return, CEM vs iCEM."""
    results = {}
    g = torch.Generator().manual_seed(3)
    starts = torch.rand(episodes, A, generator=g) * 4 - 2
    for label, factory in {
        "CEM": lambda s: wm.CEM(horizon=h, action_dim=A, population=pop, elites=ELITES,
                                iterations=ITERS, seed=s),
        "iCEM": lambda s: wm.ICEM(horizon=h, action_dim=A, population=pop, elites=ELITES,
                                  iterations=ITERS, seed=s),
    }.items():
        totals = []
        for ep in range(episodes):
            agent = wm.MPCAgent(factory(ep), point_mass)
            s, total = starts[ep:ep + 1], 0.0
            for _ in range(steps):
                a = agent.act(s[0])[None]
                s, r = point_mass(s, a)
                total += r.item()
            totals.append(total)
        results[label] = sum(totals) / len(totals)
    return results


def _interleaved_medians(fns, rounds):
    """Median seconds per call of each function, timed in interleaved rounds so that load from
    other processes on a shared machine hits every implementation alike."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}


ROUNDS = {"pointmass_B1_H12_P500": 100, "pointmass_B32_H30_P1000": 5, "pets_B1_H12_P500": 40}


def main():
    print(f"torch {torch.__version__}, 1 thread, {os.cpu_count()} cores; median ms per plan")
    for name, spec in WORKLOADS.items():
        print(f"\n{name}")
        fns = {}
        impls = IMPLS + (["model_calls_only"] if spec["model"] == "pets" else [])
        for impl in impls:
            reason = available(impl, name)
            if reason:
                print(f"  {impl:<18} skipped: {reason}")
                continue
            fns[impl] = make(impl, name)
        rows = {k: v * 1e3 for k, v in _interleaved_medians(fns, ROUNDS[name]).items()}
        base = rows["torch_cem"]
        for impl, ms in rows.items():
            extra = ""
            if impl.startswith("wmfast") and WORKLOADS[name]["model"] == "pointmass":
                spec = WORKLOADS[name]
                rate = spec["b"] * spec["pop"] * spec["h"] * ITERS / (ms / 1e3) / 1e6
                extra = f"  {rate:6.1f}M transitions/s"
            if "model_calls_only" in rows and impl.startswith("wmfast"):
                extra = f"  {ms / rows['model_calls_only']:.3f}x the model calls alone"
            print(f"  {impl:<18} {ms:9.2f} ms   torch_cem / this = {base / ms:6.2f}x{extra}")
    print("\nplan quality, point mass B=32/H=30/pop=1000, 5 iterations (mean true return, "
          "5 seeds; higher is better)")
    for label, value in plan_quality().items():
        print(f"  {label:<20} {value:9.3f}")
    print("\nclosed-loop MPC, point mass H=12/pop=500, 40 steps (mean episode return)")
    for label, value in mpc_quality().items():
        print(f"  {label:<20} {value:9.3f}")


def run(quick: bool = False, large: bool = False) -> list[Table]:
    """The suite's table (run_all.py): every planner beside the pure-torch CEM, interleaved."""
    names = ["pointmass_B1_H12_P500"] if quick else list(WORKLOADS)
    table = Table("cem", "Trajectory optimisation: 5 iterations, 50 elites, action_dim 6, "
                  "bounds ±1, one thread; time per plan",
                  ["workload", "wmfast CEM, Python dynamics", "wmfast CEM, NativeModel dynamics",
                   "pure-torch CEM", "TorchRL CEMPlanner", "mbrl-lib CEMOptimizer",
                   "torch CEM / wmfast (Python dynamics)", "torch CEM / wmfast (native)",
                   "wmfast / model calls alone"])
    for name in names:
        impls = ["wmfast_cem", "wmfast_cem_native", "torch_cem", "torchrl_cem", "mbrl_cem"]
        if WORKLOADS[name]["model"] == "pets":
            impls.append("model_calls_only")
        fns = {impl: make(impl, name) for impl in impls if available(impl, name) is None}
        rounds = 3 if quick else ROUNDS[name]
        times = interleaved(fns, rounds)
        table.samples[name] = times

        def cell(impl, times=times):
            return fmt_time_cell(times[impl]) if impl in times else ""

        def ratio(a, b, times=times):
            return fmt_ratio_cell(ratios(times, a, b)) if a in times and b in times else ""

        spec = WORKLOADS[name]
        table.add_row([(f"{spec['model']}, B={spec['b']}, H={spec['h']}, pop={spec['pop']} "
                        f"({rounds} rounds)"),
                       cell("wmfast_cem"), cell("wmfast_cem_native"), cell("torch_cem"),
                       cell("torchrl_cem"), cell("mbrl_cem"),
                       ratio("torch_cem", "wmfast_cem"), ratio("torch_cem", "wmfast_cem_native"),
                       ratio("wmfast_cem", "model_calls_only")])
    table.notes.append("Medians (min-max) of the time per plan over interleaved rounds; ratios "
                       "within each round. Empty: the peer is not installed here, or not run on "
                       "that workload (see available() in bench_cem.py).")
    return [table]


if __name__ == "__main__":
    main()
