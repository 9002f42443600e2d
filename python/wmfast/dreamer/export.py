"""An RSSM's imagination step and an actor as :class:`wmfast.NativeModel` s, for the C++
imagination loop of :func:`wmfast.imagine` (REINFORCE-style, no gradients).

An exported model cannot call torch's random number generator reproducibly (AOTInductor
compiles its own draws, outside torch's generators), so the exported step and policy take
their randomness as inputs: after the state (and, for the step, the action) come uniform
``[0, 1)`` noise tensors, which :func:`wmfast.imagine` draws with ``torch.rand`` from the
given generator (torch's default one unless ``generator=`` is passed), in a fixed order
(each step: the policy's noise, then the dynamics'). The C++ loop and the Python loop draw
the same numbers in the same order, so they give the same rollouts.

Inside the models, categorical latents and discrete actions are drawn by inverse CDF (one
uniform per categorical against the cumulative unimix'ed probabilities, as
:func:`wmfast.dreamer.sample_onehot`), Gaussian ones by Box-Muller from two uniforms.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from wmfast.dreamer.nets import Actor
from wmfast.dreamer.rssm import RSSM, _gates
from wmfast.native import NativeModel

__all__ = ["export_imagination"]


def _onehot_from_uniform(log_probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One-hot draws ``[..., C]`` from log-probabilities ``[..., C]`` and uniforms ``[...]``."""
    classes = log_probs.shape[-1]
    cdf = log_probs.exp().cumsum(-1)
    u = uniform.unsqueeze(-1) * cdf[..., -1:]   # the total, in case rounding left it below 1
    index = (cdf <= u).sum(-1).clamp(max=classes - 1)
    return (torch.arange(classes, device=index.device) == index.unsqueeze(-1)).to(
        log_probs.dtype)


def _normal_from_uniform(uniform: torch.Tensor) -> torch.Tensor:
    """Standard normal ``[..., D]`` from uniforms ``[..., 2, D]`` (Box-Muller)."""
    u1, u2 = uniform.unbind(-2)
    radius = torch.sqrt(-2.0 * torch.log1p(-u1))   # 1 - u1 is in (0, 1]: no log(0)
    return radius * torch.cos(2.0 * math.pi * u2)


def _log_mixed(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """``log((1 - unimix) softmax + unimix / C)``; log_softmax without a mixture (finite)."""
    if unimix > 0.0:
        probs = (1.0 - unimix) * torch.softmax(logits, -1) + unimix / logits.shape[-1]
        return torch.log(probs)
    return torch.log_softmax(logits, -1)


class _ImagineStep(nn.Module):
    """``RSSM.imagine_step`` with its draw from uniform noise: ``(deter, stoch, logits, action,
    noise [N, stoch])`` -> ``(deter, stoch, logits)`` for categorical latents, ``(deter, stoch,
    mean, std, action, noise [N, 2, stoch])`` -> ``(deter, stoch, mean, std)`` for Gaussian
    ones. The LayerNorm GRU runs as plain operations (the RSSM's fused autograd function
    only matters for gradients)."""

    def __init__(self, rssm: RSSM) -> None:
        super().__init__()
        self.rssm = rssm

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        r = self.rssm
        deter, stoch = inputs[0], inputs[1]
        action, noise = inputs[-2], inputs[-1]
        flat = stoch.reshape(stoch.shape[0], r.stoch_size)
        x = r.img_in(torch.cat([flat, action.to(flat.dtype)], -1))
        pre = r.gru.linear(torch.cat([x, deter], -1))
        deter = _gates(r.gru.norm(pre), deter, r.gru.size, r.gru.update_bias)
        raw = r.img_out(deter)
        if r.discrete:
            log_probs = _log_mixed(raw.reshape(raw.shape[0], r.stoch, r.classes), r.unimix)
            return deter, _onehot_from_uniform(log_probs, noise), log_probs
        mean, std = raw.chunk(2, -1)
        std = 2.0 * torch.sigmoid(std / 2.0) + r.min_std
        return deter, mean + std * _normal_from_uniform(noise), mean, std


class _Policy(nn.Module):
    """The actor on the RSSM's feature, with its draw from uniform noise: ``(*state, noise)``
    -> ``(action, log_probs [N, A])`` for discrete actions (noise ``[N, 1]``), ``(action,
    mean, std)`` for continuous ones (noise ``[N, 2, action_dim]``)."""

    def __init__(self, rssm: RSSM, actor: Actor) -> None:
        super().__init__()
        self.rssm, self.actor = rssm, actor

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        deter, stoch, noise = inputs[0], inputs[1], inputs[-1]
        feat = torch.cat([deter, stoch.reshape(stoch.shape[0], self.rssm.stoch_size)], -1)
        out = self.actor.net(feat)
        a = self.actor
        if a.discrete:
            log_probs = _log_mixed(out, a.unimix)
            return _onehot_from_uniform(log_probs, noise[:, 0]), log_probs
        mean, std = out.chunk(2, -1)
        mean = torch.tanh(mean)
        std = (a.max_std - a.min_std) * torch.sigmoid(std + 2.0) + a.min_std
        return mean + std * _normal_from_uniform(noise), mean, std


def export_imagination(rssm: RSSM, actor: Actor, *, cache_dir: str | os.PathLike | None = None,
                       num_threads: int | None = None, num_runners: int | None = None,
                       cache_by_weights: bool = True) -> tuple[NativeModel, NativeModel]:
    """Exports ``rssm``'s imagination step and ``actor`` as ``(dynamics, policy)``
    NativeModels for ``wm.imagine(dynamics, policy, start, horizon, grad=None)``.

    ``start`` is an RSSM state dict as :meth:`RSSM.observe` returns (``deter``, ``stoch``,
    ``logits`` for categorical latents; ``deter``, ``stoch``, ``mean``, ``std`` for Gaussian
    ones), in that key order: its leaves are the models' first inputs.

    - dynamics: ``(*state, action, noise)`` -> the next state's leaves, as
      ``rssm.imagine_step`` computes them; noise is ``[N, stoch]`` uniforms (categorical) or
      ``[N, 2, stoch]`` (Gaussian, Box-Muller).
    - policy: ``(*state, noise)`` -> ``(action, log_probs)`` for a discrete actor (one-hot
      actions; ``log_probs`` the unimix'ed log-probabilities, in
      ``traj.policy_outputs[0]``), ``(action, mean, std)`` for a continuous one (unclipped
      Normal draws).

    The draws follow the distributions of ``rssm.imagine_step`` and ``actor(...).rsample()``
    but not their random streams: the exported models use the uniforms
    :func:`wmfast.imagine` gives them. ``cache_dir``, ``num_threads``, ``num_runners`` and
    ``cache_by_weights`` are passed to :meth:`NativeModel.export` (``num_threads=1`` for one
    thread per rollout; ``cache_by_weights=False`` compiles once for a learner whose weights
    change, then ``load_weights``).
    """
    if not isinstance(rssm, RSSM):
        raise TypeError(f"rssm must be a wmfast.dreamer.RSSM, got {type(rssm).__name__}")
    if not isinstance(actor, Actor):
        raise TypeError(f"actor must be a wmfast.dreamer.Actor, got {type(actor).__name__}")
    if actor.net.hidden[0].in_features != rssm.feat_size:
        raise ValueError(f"actor must take the RSSM's feature ({rssm.feat_size} wide), "
                         f"got an actor for {actor.net.hidden[0].in_features}")
    if actor.action_dim != rssm.action_dim:
        raise ValueError(f"actor must return the RSSM's action width {rssm.action_dim}, "
                         f"got {actor.action_dim}")
    param = next(rssm.parameters())
    dtype, device = param.dtype, param.device
    batch = 2
    state = _example_state(rssm, batch, dtype, device)
    action = torch.zeros(batch, rssm.action_dim, dtype=dtype, device=device)
    action[:, 0] = 1.0
    step_noise = torch.rand(batch, *(() if rssm.discrete else (2,)), rssm.stoch, dtype=dtype,
                            device=device)
    policy_noise = torch.rand(batch, *((1,) if actor.discrete else (2, actor.action_dim)),
                              dtype=dtype, device=device)
    options: dict[str, Any] = {"cache_dir": cache_dir, "num_threads": num_threads,
                               "num_runners": num_runners, "cache_by_weights": cache_by_weights}
    dynamics = NativeModel.export(_ImagineStep(rssm).eval(), (*state, action, step_noise),
                                  **options)
    policy = NativeModel.export(_Policy(rssm, actor).eval(), (*state, policy_noise), **options)
    return dynamics, policy


def _example_state(rssm: RSSM, batch: int, dtype: torch.dtype,
                   device: torch.device) -> list[torch.Tensor]:
    with torch.no_grad():
        deter = torch.tanh(torch.randn(batch, rssm.deter, dtype=dtype, device=device))
        if rssm.discrete:
            logits = torch.log_softmax(
                torch.randn(batch, rssm.stoch, rssm.classes, dtype=dtype, device=device), -1)
            stoch = _onehot_from_uniform(logits, torch.rand(batch, rssm.stoch, dtype=dtype,
                                                            device=device))
            return [deter, stoch, logits]
        mean = torch.randn(batch, rssm.stoch, dtype=dtype, device=device)
        std = torch.ones(batch, rssm.stoch, dtype=dtype, device=device)
        # Distinct tensors: torch.export traces one input passed twice as one input.
        return [deter, mean + 0.1, mean, std]
