"""Dreamer imagination beside a faithful dreamerv3-torch eager loop: same model, same weights.

The model is DreamerV3's S size as dreamerv3-torch configures it: deter 512, 32x32 categorical
latents with 1% unimix, hidden 512, a LayerNorm GRU, SiLU; the actor a 2x512 MLP with a
one-hot (straight-through, 1% unimix) head over ``--actions`` actions. Both contenders roll
B start states forward H=15 steps; rewards/values are not part of the loop in either (both
apply heads to the stacked features afterwards).

- eager (dreamerv3-torch): ``ImagBehavior._imagine`` as NM512/dreamerv3-torch writes it:
  ``tools.static_scan`` (a Python loop that grows its outputs by ``torch.cat`` each step) over
  a step that takes ``get_feat`` of the state, samples the actor (``OneHotDist.sample``:
  ``torch.multinomial`` plus the straight-through term) and calls ``RSSM.img_step`` (the action
  rescaling, ``cat`` -> img_in -> LN-GRU -> img_out -> ``OneHotDist(logit, unimix)``
  sample). Re-implemented below from its networks.py / models.py / tools.py (not imported:
  the package is not installable here).
- wmfast: ``wm.imagine(rssm.imagine_step, policy, start, 15)`` with ``wmfast.dreamer.RSSM``
  holding the same weights, and the same actor (its first layer's columns permuted, because
  wmfast's feature is ``[deter, stoch]`` and dreamerv3-torch's ``[stoch, deter]``).

Measured, one torch thread, contenders interleaved, best of ``--rounds`` turns each:

- forward (no grad): imagined steps per second (B * H per rollout);
- forward + backward: the rollout with the autograd graph, then backward of a fixed linear
  function of all imagined features (gradients reach the RSSM and the actor through the
  dynamics, Dreamer's dynamics backpropagation);
- saved activations: bytes of the distinct tensors autograd saves for backward during the
  rollout, counted with ``torch.autograd.graph.saved_tensors_hooks`` (storages counted once,
  parameters excluded). This is what dynamics backpropagation keeps alive between forward and
  backward; an RSS delta would mix it with allocator caching and the outputs themselves.

  python benches/bench_dreamer.py                 # B in {256, 1024}, H=15
  python benches/bench_dreamer.py --profile 256   # torch.profiler table of both, no-grad
  python benches/bench_dreamer.py --quick         # fewer rounds

Two more forward-only contenders run the same RSSM and actor exported as NativeModels
(``dr.export_imagination``: AOTInductor, one thread, the draws taken from uniform noise inputs):

- native: ``wm.imagine(dynamics, policy, start, 15, grad=None)``, the whole H-step loop in C++
  (REINFORCE-style imagination, the official DreamerV3's choice);
- native_py: the same NativeModels called from ``wm.imagine``'s Python loop
  (``loop="python"``), to separate what the C++ loop wins from what the compiled models win.

The first run compiles both packages (a minute or two; cached under ``--cache``).
``--no-native`` leaves them out.

A third contender, "careful", runs the same dreamerv3-torch steps without the port's avoidable
overheads (lists stacked once instead of static_scan's per-step torch.cat, torch.distributions
validation off), to show how much of the ratio is the port's loop and how much wmfast's
kernels.
"""

from __future__ import annotations

import one_thread  # noqa: F401  (first: one BLAS thread)

# isort: split
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import distributions as torchd
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wmfast as wm
from wmfast import dreamer as dr
from wmfast.native import default_cache_dir

torch.set_num_threads(1)
DETER, STOCH, CLASSES, HIDDEN, UNIMIX = 512, 32, 32, 512, 0.01


# ----------------------------------------------------------------------------------------------
# dreamerv3-torch, re-implemented from its source (networks.py, models.py, tools.py)


class OneHotDist(torchd.one_hot_categorical.OneHotCategorical):
    """tools.OneHotDist."""

    def __init__(self, logits=None, probs=None, unimix_ratio=0.0):
        if logits is not None and unimix_ratio > 0.0:
            probs = F.softmax(logits, dim=-1)
            probs = probs * (1.0 - unimix_ratio) + unimix_ratio / probs.shape[-1]
            logits = torch.log(probs)
            super().__init__(logits=logits, probs=None)
        else:
            super().__init__(logits=logits, probs=probs)

    def mode(self):
        _mode = F.one_hot(torch.argmax(super().logits, axis=-1), super().logits.shape[-1])
        return _mode.detach() + super().logits - super().logits.detach()

    def sample(self, sample_shape=(), seed=None):
        sample = super().sample(sample_shape).detach()
        probs = super().probs
        while len(probs.shape) < len(sample.shape):
            probs = probs[None]
        sample += probs - probs.detach()
        return sample


def static_scan(fn, inputs, start):
    """tools.static_scan: outputs grow by torch.cat at every step."""
    last = start
    indices = range(inputs[0].shape[0])
    flag = True
    for index in indices:
        def inp(x):
            return (_input[x] for _input in inputs)
        last = fn(last, *inp(index))
        if flag:
            if isinstance(last, dict):
                outputs = {key: value.clone().unsqueeze(0) for key, value in last.items()}
            else:
                outputs = []
                for _last in last:
                    if isinstance(_last, dict):
                        outputs.append(
                            {key: value.clone().unsqueeze(0) for key, value in _last.items()})
                    else:
                        outputs.append(_last.clone().unsqueeze(0))
            flag = False
        else:
            if isinstance(last, dict):
                for key in last:
                    outputs[key] = torch.cat([outputs[key], last[key].unsqueeze(0)], dim=0)
            else:
                for j in range(len(outputs)):
                    if isinstance(last[j], dict):
                        for key in last[j]:
                            outputs[j][key] = torch.cat(
                                [outputs[j][key], last[j][key].unsqueeze(0)], dim=0)
                    else:
                        outputs[j] = torch.cat([outputs[j], last[j].unsqueeze(0)], dim=0)
    if isinstance(last, dict):
        outputs = [outputs]
    return outputs


class GRUCell(nn.Module):
    """networks.GRUCell (norm=True, act=tanh, update_bias=-1)."""

    def __init__(self, inp_size, size, update_bias=-1):
        super().__init__()
        self._size = size
        self._act = torch.tanh
        self._update_bias = update_bias
        self.layers = nn.Sequential()
        self.layers.add_module("GRU_linear", nn.Linear(inp_size + size, 3 * size, bias=False))
        self.layers.add_module("GRU_norm", nn.LayerNorm(3 * size, eps=1e-03))

    def forward(self, inputs, state):
        state = state[0]
        parts = self.layers(torch.cat([inputs, state], -1))
        reset, cand, update = torch.split(parts, [self._size] * 3, -1)
        reset = torch.sigmoid(reset)
        cand = self._act(reset * cand)
        update = torch.sigmoid(update + self._update_bias)
        output = update * cand + (1 - update) * state
        return output, [output]


def _block(inp, out):
    return [nn.Linear(inp, out, bias=False), nn.LayerNorm(out, eps=1e-03), nn.SiLU()]


class EagerRSSM(nn.Module):
    """networks.RSSM's imagination part (discrete latents, one img_in / img_out layer)."""

    def __init__(self, num_actions):
        super().__init__()
        self._stoch, self._discrete, self._unimix_ratio = STOCH, CLASSES, UNIMIX
        self._img_in_layers = nn.Sequential(*_block(STOCH * CLASSES + num_actions, HIDDEN))
        self._cell = GRUCell(HIDDEN, DETER)
        self._img_out_layers = nn.Sequential(*_block(DETER, HIDDEN))
        self._imgs_stat_layer = nn.Linear(HIDDEN, STOCH * CLASSES)

    def get_feat(self, state):
        stoch = state["stoch"]
        shape = list(stoch.shape[:-2]) + [self._stoch * self._discrete]
        stoch = stoch.reshape(shape)
        return torch.cat([stoch, state["deter"]], -1)

    def get_dist(self, state):
        return torchd.independent.Independent(
            OneHotDist(state["logit"], unimix_ratio=self._unimix_ratio), 1)

    def img_step(self, prev_state, prev_action, sample=True):
        prev_action *= (1.0 / torch.clip(torch.abs(prev_action), min=1.0)).detach()
        prev_stoch = prev_state["stoch"]
        shape = list(prev_stoch.shape[:-2]) + [self._stoch * self._discrete]
        prev_stoch = prev_stoch.reshape(shape)
        x = torch.cat([prev_stoch, prev_action], -1)
        x = self._img_in_layers(x)
        deter = prev_state["deter"]
        x, deter = self._cell(x, [deter])
        deter = deter[0]
        x = self._img_out_layers(x)
        logit = self._imgs_stat_layer(x)
        stats = {"logit": logit.reshape(list(logit.shape[:-1]) + [self._stoch, self._discrete])}
        stoch = self.get_dist(stats).sample() if sample else self.get_dist(stats).mode()
        return {"stoch": stoch, "deter": deter, **stats}


class EagerActor(nn.Module):
    """networks.MLP with dist="onehot" (2 layers of 512, LayerNorm, SiLU)."""

    def __init__(self, inp_dim, num_actions, unimix_ratio=0.01):
        super().__init__()
        self.layers = nn.Sequential(*_block(inp_dim, HIDDEN), *_block(HIDDEN, HIDDEN))
        self.mean_layer = nn.Linear(HIDDEN, num_actions)
        self._unimix_ratio = unimix_ratio

    def forward(self, features):
        return OneHotDist(self.mean_layer(self.layers(features)), unimix_ratio=self._unimix_ratio)


def eager_imagine(dynamics, policy, start, horizon):
    """models.ImagBehavior._imagine."""
    def flatten(x):
        return x.reshape([-1] + list(x.shape[2:]))
    start = {k: flatten(v) for k, v in start.items()}

    def step(prev, _):
        state, _, _ = prev
        feat = dynamics.get_feat(state)
        inp = feat.detach()
        action = policy(inp).sample()
        succ = dynamics.img_step(state, action)
        return succ, feat, action

    succ, feats, actions = static_scan(step, [torch.arange(horizon)], (start, None, None))
    states = {k: torch.cat([start[k][None], v[:-1]], 0) for k, v in succ.items()}
    return feats, states, actions


def careful_eager_imagine(dynamics, policy, start, horizon):
    """The same steps without the port's avoidable overheads: outputs collected in lists and
    stacked once (static_scan re-concatenates them every step) and torch.distributions'
    argument validation off (dreamerv3-torch leaves it on)."""
    def flatten(x):
        return x.reshape([-1] + list(x.shape[2:]))
    state = {k: flatten(v) for k, v in start.items()}
    validate = torchd.Distribution._validate_args
    torchd.Distribution.set_default_validate_args(False)
    try:
        feats, actions, states = [], [], [state]
        for _ in range(horizon):
            feat = dynamics.get_feat(state)
            action = policy(feat.detach()).sample()
            state = dynamics.img_step(state, action)
            feats.append(feat)
            actions.append(action)
            states.append(state)
    finally:
        torchd.Distribution.set_default_validate_args(validate)
    stacked = {k: torch.stack([s[k] for s in states[:-1]]) for k in state}
    return torch.stack(feats), stacked, torch.stack(actions)


# ----------------------------------------------------------------------------------------------
# One model, two implementations


def make_models(num_actions: int, seed: int = 0):
    """wmfast's RSSM and actor, and the dreamerv3-torch modules holding the same weights."""
    torch.manual_seed(seed)
    rssm = dr.RSSM(num_actions, embed_dim=8, deter=DETER, stoch=STOCH, classes=CLASSES,
                   hidden=HIDDEN, unimix=UNIMIX)
    feat = rssm.feat_size
    actor = dr.Actor(feat, num_actions, discrete=True, units=HIDDEN, layers=2, unimix=UNIMIX)
    with torch.no_grad():   # non-trivial action probabilities
        actor.net.out.weight.normal_(0.0, 0.05)
    eager = EagerRSSM(num_actions)
    eager_actor = EagerActor(feat, num_actions, UNIMIX)
    with torch.no_grad():
        pairs = [
            (eager._img_in_layers[0], rssm.img_in[0]), (eager._img_in_layers[1], rssm.img_in[1]),
            (eager._cell.layers.GRU_linear, rssm.gru.linear),
            (eager._cell.layers.GRU_norm, rssm.gru.norm),
            (eager._img_out_layers[0], rssm.img_out[0][0]),
            (eager._img_out_layers[1], rssm.img_out[0][1]),
            (eager._imgs_stat_layer, rssm.img_out[1]),
            (eager_actor.layers[1], actor.net.hidden[1]),
            (eager_actor.layers[3], actor.net.hidden[3]),
            (eager_actor.layers[4], actor.net.hidden[4]),
            (eager_actor.mean_layer, actor.net.out),
        ]
        for dst, src in pairs:
            dst.load_state_dict(src.state_dict())
        # wmfast's feature is [deter, stoch], dreamerv3-torch's [stoch, deter].
        w = actor.net.hidden[0].weight
        eager_actor.layers[0].weight.copy_(torch.cat([w[:, DETER:], w[:, :DETER]], 1))
    return rssm, actor, eager, eager_actor


def make_start(rssm: dr.RSSM, batch: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """Posterior-like start states: random deter, one-hot stoch drawn from random logits."""
    gen = torch.Generator().manual_seed(seed)
    deter = torch.tanh(torch.randn(batch, DETER, generator=gen))
    logits = torch.log(dr.unimix_probs(torch.randn(batch, STOCH, CLASSES, generator=gen), UNIMIX))
    index = torch.multinomial(logits.exp().reshape(-1, CLASSES), 1, generator=gen)
    stoch = F.one_hot(index.reshape(batch, STOCH), CLASSES).float()
    return {"deter": deter, "stoch": stoch, "logits": logits}


def wmfast_runner(rssm, actor, start, horizon):
    def policy(state):
        return actor(rssm.feature(state)).rsample()

    def run(grad):
        traj = wm.imagine(rssm.imagine_step, policy, start, horizon,
                          grad="dynamics" if grad else None, check_finite=False)
        return rssm.feature(traj.states)[:horizon]       # [H, B, F]: the features of the
    return run                                            # states actions were taken in


def eager_runner(eager, eager_actor, start, horizon, imagine=eager_imagine):
    # dreamerv3-torch imagines from posteriors [B, T, ...] and flattens them: T = 1 here.
    estart = {"deter": start["deter"][:, None], "stoch": start["stoch"][:, None],
              "logit": start["logits"][:, None]}

    def run(grad):
        with torch.set_grad_enabled(grad):
            feats, _, _ = imagine(eager, eager_actor, estart, horizon)
        # [stoch, deter] -> [deter, stoch], so one projection serves both
        return torch.cat([feats[..., STOCH * CLASSES:], feats[..., :STOCH * CLASSES]], -1)
    return run


def native_runner(rssm, actor, start, horizon, cache_dir, loop="auto"):
    dynamics, policy = dr.export_imagination(rssm, actor, num_threads=1, cache_dir=cache_dir)

    def run(grad):
        if grad:
            raise ValueError("NativeModels imagine without gradients")
        traj = wm.imagine(dynamics, policy, start, horizon, grad=None, check_finite=False,
                          loop=loop)
        return rssm.feature(traj.states)[:horizon]
    return run


def saved_bytes(fn) -> int:
    """Bytes of the distinct non-parameter storages autograd saves while fn() runs."""
    storages: dict[int, int] = {}
    params: set[int] = set()

    def pack(tensor):
        if isinstance(tensor, nn.Parameter) or tensor.data_ptr() in params:
            return tensor
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    def unpack(tensor):
        return tensor

    for module in _MODULES:
        params.update(p.data_ptr() for p in module.parameters())
    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        out = fn()
    del out
    return sum(storages.values())


_MODULES: list[nn.Module] = []


def check_same_model(rssm, actor, eager, eager_actor, start, horizon=4) -> float:
    """Max |difference| of deter after `horizon` mode steps under the same actions (the
    implementations must be one model), and of the actors' logits."""
    actions = torch.randn(horizon, start["deter"].shape[0], eager_actor.mean_layer.out_features)
    actions = F.one_hot(actions.argmax(-1), actions.shape[-1]).float()
    with torch.no_grad():
        a = dict(start)
        b = {"deter": start["deter"], "stoch": start["stoch"], "logit": start["logits"]}
        for t in range(horizon):
            a = rssm.imagine_step(a, actions[t], sample=False)
            b = eager.img_step(b, actions[t].clone(), sample=False)
        err = float((a["deter"] - b["deter"]).abs().max())
        la = actor(rssm.feature(a)).logits
        lb = eager_actor(eager.get_feat(b)).logits
        err = max(err, float((la - lb).abs().max()))
    return err


def best_time(fns: dict, rounds: int, min_seconds: float) -> dict[str, float]:
    """Contenders take turns; each keeps its best per-call time over the rounds."""
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn()   # warm-up
    for _ in range(rounds):
        for name, fn in fns.items():
            count, start = 0, time.perf_counter()
            while True:
                fn()
                count += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
            best[name] = min(best[name], elapsed / count)
    return best


def bench(batch: int, horizon: int, num_actions: int, rounds: int, min_seconds: float,
          native_cache: str | None = None) -> dict:
    rssm, actor, eager, eager_actor = make_models(num_actions)
    _MODULES[:] = [rssm, actor, eager, eager_actor]
    start = make_start(rssm, batch)
    err = check_same_model(rssm, actor, eager, eager_actor, start)
    runners = {"eager": eager_runner(eager, eager_actor, start, horizon),
               "careful": eager_runner(eager, eager_actor, start, horizon,
                                       careful_eager_imagine),
               "wmfast": wmfast_runner(rssm, actor, start, horizon)}
    forward_only = {}
    if native_cache is not None:
        forward_only = {"native": native_runner(rssm, actor, start, horizon, native_cache),
                        "native_py": native_runner(rssm, actor, start, horizon, native_cache,
                                                   loop="python")}
    proj = torch.randn(rssm.feat_size) / rssm.feat_size ** 0.5

    def fwd(run):
        return lambda: run(False)

    def fwd_bwd(run):
        def go():
            (run(True) @ proj).mean().backward()
        return go

    result = {"batch": batch, "horizon": horizon, "actions": num_actions,
              "same_model_max_abs_diff": err}
    times = best_time({name: fwd(run) for name, run in {**runners, **forward_only}.items()},
                      rounds, min_seconds)
    for name, seconds in times.items():
        result[f"{name}_fwd_steps_per_s"] = batch * horizon / seconds
    times = best_time({name: fwd_bwd(run) for name, run in runners.items()}, rounds,
                      min_seconds)
    for name, seconds in times.items():
        result[f"{name}_fwd_bwd_steps_per_s"] = batch * horizon / seconds
    for name, run in runners.items():
        result[f"{name}_saved_MB"] = saved_bytes(lambda run=run: run(True)) / 2**20
    for module in _MODULES:
        module.zero_grad(set_to_none=True)
    result["fwd_ratio"] = result["wmfast_fwd_steps_per_s"] / result["eager_fwd_steps_per_s"]
    result["fwd_bwd_ratio"] = (result["wmfast_fwd_bwd_steps_per_s"]
                               / result["eager_fwd_bwd_steps_per_s"])
    result["memory_ratio"] = result["wmfast_saved_MB"] / result["eager_saved_MB"]
    result["careful_fwd_ratio"] = (result["wmfast_fwd_steps_per_s"]
                                   / result["careful_fwd_steps_per_s"])
    result["careful_fwd_bwd_ratio"] = (result["wmfast_fwd_bwd_steps_per_s"]
                                       / result["careful_fwd_bwd_steps_per_s"])
    result["careful_memory_ratio"] = result["wmfast_saved_MB"] / result["careful_saved_MB"]
    for name in forward_only:
        result[f"{name}_fwd_ratio"] = (result[f"{name}_fwd_steps_per_s"]
                                       / result["eager_fwd_steps_per_s"])
    return result


def profile(batch: int, horizon: int, num_actions: int, grad: bool) -> None:
    rssm, actor, eager, eager_actor = make_models(num_actions)
    start = make_start(rssm, batch)
    proj = torch.randn(rssm.feat_size)
    for name, run in (("eager", eager_runner(eager, eager_actor, start, horizon)),
                      ("wmfast", wmfast_runner(rssm, actor, start, horizon))):
        def go(run=run):
            out = run(grad)
            if grad:
                (out @ proj).mean().backward()
        go()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                go()
        print(f"== {name} (B={batch}, H={horizon}, grad={grad}), 3 rollouts")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--actions", type=int, default=18)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum time of a turn")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", type=int, metavar="B", help="profile at this batch")
    parser.add_argument("--grad", action="store_true", help="profile forward + backward")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-native", action="store_true",
                        help="leave out the NativeModel contenders (no AOTInductor compile)")
    parser.add_argument("--cache", default=None,
                        help="where the exported packages go (default: wmfast's cache)")
    args = parser.parse_args(argv)
    if args.profile:
        profile(args.profile, args.horizon, args.actions, args.grad)
        return
    if args.quick:
        args.rounds, args.seconds = 2, 0.5
    print(f"load average before: {os.getloadavg()}")
    rows = []
    for batch in args.batch:
        native_cache = None if args.no_native else (args.cache or str(default_cache_dir()))
        row = bench(batch, args.horizon, args.actions, args.rounds, args.seconds, native_cache)
        rows.append(row)
        print(f"B={batch} H={args.horizon} A={args.actions} "
              f"(same model: max |diff| {row['same_model_max_abs_diff']:.1e})")
        print(f"  forward:    eager {row['eager_fwd_steps_per_s']:8.0f} steps/s, "
              f"careful {row['careful_fwd_steps_per_s']:8.0f}, "
              f"wmfast {row['wmfast_fwd_steps_per_s']:8.0f} ({row['fwd_ratio']:.2f}x; "
              f"{row['careful_fwd_ratio']:.2f}x careful)")
        if "native_fwd_steps_per_s" in row:
            print(f"  no grad, NativeModels: C++ loop {row['native_fwd_steps_per_s']:8.0f} "
                  f"steps/s ({row['native_fwd_ratio']:.2f}x eager), Python loop "
                  f"{row['native_py_fwd_steps_per_s']:8.0f} ({row['native_py_fwd_ratio']:.2f}x)")
        print(f"  fwd + bwd:  eager {row['eager_fwd_bwd_steps_per_s']:8.0f} steps/s, "
              f"careful {row['careful_fwd_bwd_steps_per_s']:8.0f}, "
              f"wmfast {row['wmfast_fwd_bwd_steps_per_s']:8.0f} ({row['fwd_bwd_ratio']:.2f}x; "
              f"{row['careful_fwd_bwd_ratio']:.2f}x careful)")
        print(f"  saved:      eager {row['eager_saved_MB']:8.1f} MB, "
              f"careful {row['careful_saved_MB']:8.1f}, "
              f"wmfast {row['wmfast_saved_MB']:8.1f} MB ({row['memory_ratio']:.2f}x; "
              f"{row['careful_memory_ratio']:.2f}x careful)")
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
