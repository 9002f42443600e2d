"""Benchmarks of the MuZero toolkit beside faithful baselines, same network, same process.

- self-play: environment steps per second on CartPole-v1 with the demo's MLP network (latent 64,
  hidden 64, support 10) and N=50, one torch thread. Baseline: muzero-general's loop (one
  environment, Python tree, batch-1 network calls; benches/muzero_general_loop.py). wmfast:
  ``wmfast.muzero.SelfPlay`` with 1, 16 and 64 environments (one batched search per move). The
  floor: the network's own calls per move (initial inference + N recurrent calls at the batch
  size) plus the environment steps; "x floor" is the time per move over that floor.
- reanalyse: positions re-searched per second, 1024 stored positions, N=50: one batched search
  (``wmfast.muzero.reanalyse``) against the per-position loop (a batch-1 wmfast search per
  position, the strongest per-position loop; the Python tree is far slower still).
- training step: K=5, batch 256, the demo network: ``unrolled_loss`` + backward + Adam step
  against the same loss hand-written in plain torch (``hand_written_loss`` below), on the same
  tensors; and the agent's whole update (replay sampling and priorities included).
- replay memory: bytes per stored position against the raw observation.

  python benches/bench_muzero.py           # the tables
  python benches/bench_muzero.py --native  # plus self-play through a NativeModel search model
  WMFAST_LIGHTZERO_DIR=<folder with mz_tree*.so> ...  # plus LightZero's tree (see bench_mcts)
  python benches/bench_muzero.py --quick   # shorter timings
  pytest benches/bench_muzero.py --benchmark-only
"""

from __future__ import annotations

import one_thread  # noqa: F401  (first: one BLAS thread)

# isort: split
import argparse
import os
import sys
import time
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcts_baselines
import muzero_general_loop as mg
import wmfast as wm
from harness import Table, fmt_rate_cell, fmt_ratio_cell, fmt_time_cell, interleaved, ratios
from wmfast import transforms as T
from wmfast.agents import MuZeroAgent
from wmfast.muzero import Config, MLPNetwork, SearchModel, SelfPlay, reanalyse, unrolled_loss
from wmfast.muzero.native_selfplay import NativeSearchModel

torch.set_num_threads(1)   # small networks: one intra-op thread is fastest on 2 cores
N_SIM = 50


def make_network() -> MLPNetwork:
    torch.manual_seed(0)
    net = MLPNetwork(4, 2, latent_dim=64, hidden=64, support_size=10).eval()
    for head in (net.value_head, net.reward_head, net.policy_head):
        torch.nn.init.normal_(head[-1].weight, std=0.1)   # non-trivial outputs
    return net


def _rate(fn, units: int, seconds: float) -> float:
    """units per second of fn() repeated for at least `seconds`."""
    fn()
    count, start = 0, time.perf_counter()
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return units * count / elapsed


class LightZeroSearch:
    """LightZero's compiled tree (``mz_tree``) driven by its own per-simulation Python loop
    (``mcts_baselines.lightzero_search``, after lzero's MuZeroMCTSCtree.search), with the
    ``search(model, root, legal_actions)`` interface SelfPlay calls: the LightZero-driven
    batched self-play the MuZero issue compares with. Roots are prepared without noise."""

    def __init__(self, mz_tree, num_actions: int, num_simulations: int, discount: float) -> None:
        self.mz_tree, self.num_actions = mz_tree, num_actions
        self.num_simulations, self.discount = num_simulations, discount

    def search(self, model, root, legal_actions=None):
        visits, values = mcts_baselines.lightzero_search(
            self.mz_tree, model.recurrent_inference, root.latent, root.logits, root.value,
            self.num_simulations, self.num_actions, self.discount)
        visits = np.asarray(visits, np.float32)
        return SimpleNamespace(visit_counts=visits, policy=visits / visits.sum(1, keepdims=True),
                               root_value=np.asarray(values, np.float32))


def selfplay_rows(seconds: float, with_native: bool = False) -> list[str]:
    net = make_network()
    model = SearchModel(net, 10)
    rows = []
    baseline_search = mg.PythonTreeSearch(model, 2, N_SIM, 0.997)
    env = gym.make("CartPole-v1")
    base = _rate(lambda: mg.play_moves(env, baseline_search, 5), 5, seconds)
    rows.append(f"muzero-general loop (1 env, Python tree, batch-1 calls): {base:8.1f} steps/s")
    native = NativeSearchModel(model, (4,), num_runners=1) if with_native else None
    mz_tree = mcts_baselines.load_lightzero_mz_tree()
    for num_envs in (1, 16, 64):
        envs = [gym.make("CartPole-v1") for _ in range(num_envs)]
        search = wm.MCTS(2, N_SIM, discount=0.997, dirichlet_fraction=0.25, seed=0)
        play = SelfPlay(envs, model, search, 2)
        rate = _rate(lambda play=play: play.step(1.0), num_envs, seconds)
        if native is not None:
            native_play = SelfPlay([gym.make("CartPole-v1") for _ in range(num_envs)], model,
                                   wm.MCTS(2, N_SIM, discount=0.997, seed=0), 2,
                                   search_model=native.native)
            native_rate = _rate(lambda p=native_play: p.step(1.0), num_envs, seconds)
            rows.append(f"wmfast SelfPlay {num_envs:3d} envs, NativeModel search model: "
                        f"{native_rate:8.1f} steps/s = {native_rate / base:6.1f}x the baseline")
        if mz_tree is not None and num_envs > 1:
            lz_play = SelfPlay([gym.make("CartPole-v1") for _ in range(num_envs)], model,
                               LightZeroSearch(mz_tree, 2, N_SIM, 0.997), 2)
            lz_rate = _rate(lambda p=lz_play: p.step(1.0), num_envs, seconds)
            rows.append(f"LightZero ctree-driven SelfPlay {num_envs:3d} envs: {lz_rate:8.1f} "
                        f"steps/s; wmfast eager {rate / lz_rate:.2f}x"
                        + (f", native {native_rate / lz_rate:.2f}x" if native is not None else ""))
        obs = torch.randn(num_envs, 4)
        root = model.initial_inference(obs)
        action = torch.zeros(num_envs, dtype=torch.long)
        floor_envs = [gym.make("CartPole-v1") for _ in range(num_envs)]
        for i, e in enumerate(floor_envs):
            e.reset(seed=i)

        def floor(envs=floor_envs, obs=obs, root=root, action=action):
            model.initial_inference(obs)
            for _ in range(N_SIM):
                model.recurrent_inference(root.latent, action)
            for e in envs:
                _, _, term, trunc, _ = e.step(0)
                if term or trunc:
                    e.reset()

        floor_rate = _rate(floor, num_envs, seconds)
        rows.append(f"wmfast SelfPlay {num_envs:3d} envs: {rate:8.1f} steps/s = "
                    f"{rate / base:6.1f}x the baseline; per move {floor_rate / rate:.2f}x floor "
                    f"(network calls + env steps: {1e3 * num_envs / floor_rate:.2f} ms)")
    return rows


def reanalyse_rows(seconds: float) -> list[str]:
    net = make_network()
    model = SearchModel(net, 10)
    agent = MuZeroAgent(lambda: gym.make("CartPole-v1"),
                        config=Config(num_envs=16, num_simulations=4, min_replay=10**9))
    agent.train(3000, progress=False)
    index = np.flatnonzero(agent.replay.valid)[:1024]
    search = wm.MCTS(2, N_SIM, discount=0.997, seed=0)
    batched = _rate(lambda: reanalyse(agent.replay, model, search, index), len(index), seconds)
    one = wm.MCTS(2, N_SIM, discount=0.997, seed=0)
    subset = index[:64]

    def per_position():
        for i in subset:
            reanalyse(agent.replay, model, one, np.array([i]))

    loop = _rate(per_position, len(subset), seconds)
    return [(f"reanalyse 1024 positions, N={N_SIM}: batched {batched:8.0f} positions/s, "
             f"per-position loop {loop:6.0f} positions/s -> {batched / loop:.1f}x")]


def hand_written_loss(net, obs, actions, tv, tr, tp, vm, rm, pm, w, size=10, vw=0.25):
    """MuZero's unrolled loss as a user would write it in plain torch (same semantics as
    wmfast.muzero.unrolled_loss: 1/K gradient scale on unrolled steps, half the latent's
    gradient through the dynamics, support cross-entropies, masks, importance weights)."""
    K = actions.shape[1]

    def two_hot(x):
        y = T.h(x).clamp(-size, size)
        low = y.floor()
        frac = y - low
        idx = (low + size).long()
        out = torch.zeros(*y.shape, 2 * size + 1)
        out.scatter_(-1, idx.unsqueeze(-1), (1 - frac).unsqueeze(-1))
        out.scatter_add_(-1, (idx + 1).clamp(max=2 * size).unsqueeze(-1),
                         (frac * (idx < 2 * size)).unsqueeze(-1))
        return out

    root = net.initial_inference(obs)
    loss = (vw * -(two_hot(tv[:, 0]) * F.log_softmax(root.value, -1)).sum(-1) * vm[:, 0]
            - (tp[:, 0] * F.log_softmax(root.logits, -1)).sum(-1) * pm[:, 0])
    latent = root.latent
    for k in range(1, K + 1):
        step = net.recurrent_inference(latent, actions[:, k - 1])
        term = (vw * -(two_hot(tv[:, k]) * F.log_softmax(step.value, -1)).sum(-1) * vm[:, k]
                - (two_hot(tr[:, k]) * F.log_softmax(step.reward, -1)).sum(-1) * rm[:, k]
                - (tp[:, k] * F.log_softmax(step.logits, -1)).sum(-1) * pm[:, k])
        loss = loss + term / K + (term - term / K).detach()
        latent = step.latent * 0.5 + step.latent.detach() * 0.5
    return (loss * w).mean()


def training_rows(seconds: float) -> list[str]:
    agent = MuZeroAgent(lambda: gym.make("CartPole-v1"),
                        config=Config(num_envs=16, num_simulations=4, min_replay=10**9,
                                      batch_size=256, unroll_steps=5))
    agent.train(3000, progress=False)
    agent.config.min_replay = 0
    batch = agent.replay.sample(256)
    tensors = [torch.as_tensor(x) for x in (
        batch.observations, batch.actions, batch.target_values, batch.target_rewards,
        batch.target_policies, batch.value_mask, batch.reward_mask, batch.policy_mask,
        batch.weights)]
    net = agent.network.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

    def ours():
        loss = unrolled_loss(net, *tensors, support_size=10).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def theirs():
        loss = hand_written_loss(net, *tensors)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    rates = {name: _rate(fn, 1, seconds) for name, fn in (("ours", ours), ("theirs", theirs))}
    rates["ours"] = max(rates["ours"], _rate(ours, 1, seconds))   # second turn each
    rates["theirs"] = max(rates["theirs"], _rate(theirs, 1, seconds))
    whole = _rate(agent._learn, 1, seconds)
    return [(f"training step K=5 B=256: unrolled_loss {1e3 / rates['ours']:.2f} ms, hand-written "
             f"{1e3 / rates['theirs']:.2f} ms -> ours takes {rates['theirs'] / rates['ours']:.3f}x "
             f"the hand-written time; the agent's whole update (sampling, clipping, priorities) "
             f"{1e3 / whole:.2f} ms")]


def memory_rows() -> list[str]:
    replay = wm.muzero.Replay(100_000, (4,), np.float32, 2, 0.997, 10, 5)
    arrays = [getattr(replay, name) for name in replay._ARRAYS]
    per_position = sum(a.nbytes for a in arrays) / replay.capacity
    obs = replay.observations.nbytes / replay.capacity
    return [(f"replay: {per_position:.0f} bytes per stored position, of which the observation "
             f"{obs:.0f} bytes (stored once; {per_position / obs:.1f}x the raw observation; "
             f"K+1 copies would be {6 * obs:.0f} bytes of observations alone)")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--native", action="store_true",
                        help="also self-play through a NativeModel export (compiles ~20 s once)")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 3.0
    print(f"torch {torch.__version__}, one thread, CartPole-v1, N={N_SIM}", flush=True)
    for row in selfplay_rows(seconds, args.native):
        print(row, flush=True)
    for rows in (reanalyse_rows, training_rows):
        for row in rows(seconds):
            print(row, flush=True)
    for row in memory_rows():
        print(row)


# -- run_all: medians over interleaved rounds ----------------------------------------------------

def run(quick: bool = False, large: bool = False) -> list[Table]:
    """The suite's tables (run_all.py): self-play against the muzero-general loop (and, in the full
    run, through a NativeModel search model), and the training step against a hand-written loss."""
    torch.set_num_threads(1)
    net = make_network()
    model = SearchModel(net, 10)
    env = gym.make("CartPole-v1")
    baseline_search = mg.PythonTreeSearch(model, 2, N_SIM, 0.997)
    moves = 1 if quick else 5
    fns = {"muzero-general": lambda: mg.play_moves(env, baseline_search, moves)}
    units = {"muzero-general": moves}
    env_counts = (1, 16) if quick else (1, 16, 64)
    native = None if quick else NativeSearchModel(model, (4,), num_runners=1)
    for num_envs in env_counts:
        play = SelfPlay([gym.make("CartPole-v1") for _ in range(num_envs)], model,
                        wm.MCTS(2, N_SIM, discount=0.997, dirichlet_fraction=0.25, seed=0), 2)
        fns[f"eager {num_envs}"] = lambda play=play: play.step(1.0)
        units[f"eager {num_envs}"] = num_envs
        if native is not None and num_envs > 1:
            native_play = SelfPlay([gym.make("CartPole-v1") for _ in range(num_envs)], model,
                                   wm.MCTS(2, N_SIM, discount=0.997, seed=0), 2,
                                   search_model=native.native)
            fns[f"native {num_envs}"] = lambda p=native_play: p.step(1.0)
            units[f"native {num_envs}"] = num_envs
    rounds, min_seconds = (2, 0.05) if quick else (7, 1.0)
    times = interleaved(fns, rounds, min_seconds)
    # Environment steps per second in each round, then the ratio to the baseline's in that round.
    rates = {k: [units[k] / t for t in v] for k, v in times.items()}
    selfplay = Table("muzero", f"MuZero self-play on CartPole-v1 (MLP latent 64, hidden 64, N={N_SIM}), "
                     "environment steps per second, one thread",
                     ["workload", "wmfast", "muzero-general loop (1 env, Python tree)",
                      "wmfast / muzero-general"], samples={"seconds": times, "units": units})
    for key in fns:
        if key == "muzero-general":
            continue
        kind, num_envs = key.split()
        per_round = [a / b for a, b in zip(rates[key], rates["muzero-general"], strict=True)]
        label = f"{num_envs} environment{'s' * (num_envs != '1')}, " + (
            "eager network" if kind == "eager" else "NativeModel search model")
        selfplay.add_row([label, fmt_rate_cell(times[key], units[key], 1.0, ""),
                          fmt_rate_cell(times["muzero-general"], moves, 1.0, ""),
                          fmt_ratio_cell(per_round)])
    selfplay.notes.append(f"Medians (min-max) over {rounds} interleaved rounds of at least "
                          f"{min_seconds} s; ratios within each round.")
    return [selfplay, _training_table(quick)]


def _training_table(quick: bool) -> Table:
    agent = MuZeroAgent(lambda: gym.make("CartPole-v1"),
                        config=Config(num_envs=16, num_simulations=4, min_replay=10**9,
                                      batch_size=64 if quick else 256, unroll_steps=5))
    agent.train(300 if quick else 3000, progress=False)
    batch = agent.replay.sample(agent.config.batch_size)
    tensors = [torch.as_tensor(x) for x in (
        batch.observations, batch.actions, batch.target_values, batch.target_rewards,
        batch.target_policies, batch.value_mask, batch.reward_mask, batch.policy_mask,
        batch.weights)]
    net = agent.network.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step(loss_fn):
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    fns = {"unrolled_loss": lambda: step(lambda: unrolled_loss(net, *tensors,
                                                               support_size=10).total),
           "hand-written": lambda: step(lambda: hand_written_loss(net, *tensors))}
    rounds, min_seconds = (2, 0.02) if quick else (9, 0.5)
    times = interleaved(fns, rounds, min_seconds)
    table = Table("muzero", f"MuZero training step (K=5, batch {agent.config.batch_size}, loss + "
                  "backward + Adam), one thread",
                  ["wmfast.muzero.unrolled_loss", "the same loss hand-written in plain torch",
                   "unrolled_loss / hand-written (time)"], samples={"seconds": times})
    table.add_row([fmt_time_cell(times["unrolled_loss"]), fmt_time_cell(times["hand-written"]),
                   fmt_ratio_cell(ratios(times, "unrolled_loss", "hand-written"))])
    table.notes.append(f"Medians (min-max) over {rounds} interleaved rounds.")
    return table


# -- pytest-benchmark (smallest sizes) ----------------------------------------------------------


@pytest.mark.parametrize("num_envs", [1, 16])
def test_selfplay_move(benchmark, num_envs):
    model = SearchModel(make_network(), 10)
    play = SelfPlay([gym.make("CartPole-v1") for _ in range(num_envs)], model,
                    wm.MCTS(2, N_SIM, seed=0), 2)
    benchmark(play.step, 1.0)


def test_muzero_general_move(benchmark):
    search = mg.PythonTreeSearch(SearchModel(make_network(), 10), 2, N_SIM, 0.997)
    env = gym.make("CartPole-v1")
    benchmark(mg.play_moves, env, search, 1)


if __name__ == "__main__":
    main()
