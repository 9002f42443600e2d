"""The recurrent state-space model (RSSM) of Dreamer (Hafner et al. 2019, 2023).

The state is a dict of tensors, a pytree :func:`wmfast.imagine` rolls forward:

- ``deter`` ``[N, deter]``: the GRU's deterministic path,
- ``stoch`` ``[N, stoch, classes]`` one-hot samples (categorical latents) or ``[N, stoch]``
  (Gaussian latents),
- ``logits`` ``[N, stoch, classes]`` (categorical: the unimix'ed log-probabilities) or ``mean``
  and ``std`` ``[N, stoch]`` (Gaussian): the statistics ``stoch`` was drawn from.

One step: ``x = MLP([stoch, action])``; ``deter' = GRU(x, deter)`` (a LayerNorm GRU with the
update gate biased by -1, as DreamerV3); the prior is ``MLP(deter')``, the posterior
``MLP([deter', embed])``. Categorical samples carry straight-through gradients; Gaussian
samples are reparameterised. ``is_first`` resets a sequence to the learned initial state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from wmfast.dreamer.distributions import (
    OneHotStraightThrough,
    categorical_kl,
    sample_onehot,
    unimix_probs,
)

__all__ = ["RSSM", "GRUCell", "kl_loss"]


class _LayerNormGRUGates(torch.autograd.Function):
    """LayerNorm + the GRU's gates, keeping for backward only the pre-activations and the
    norm's statistics (autograd would keep the normalised gates, three activations and two
    products: ~4x the memory per step) and recomputing the rest."""

    @staticmethod
    def forward(ctx, pre, state, weight, bias, eps, update_bias):
        size = state.shape[-1]
        parts, mean, rstd = torch.native_layer_norm(pre, [3 * size], weight, bias, eps)
        out = _gates(parts, state, size, update_bias)
        ctx.save_for_backward(pre, state, weight, bias, mean, rstd)
        ctx.update_bias = update_bias
        return out

    @staticmethod
    def backward(ctx, grad_out):
        pre, state, weight, bias, mean, rstd = ctx.saved_tensors
        size = state.shape[-1]
        parts = (pre - mean) * rstd * weight + bias
        reset_pre, cand_pre, update_pre = parts.split(size, -1)
        reset = torch.sigmoid(reset_pre)
        cand = torch.tanh(reset * cand_pre)
        update = torch.sigmoid(update_pre + ctx.update_bias)
        grad_state = grad_out * (1.0 - update)
        grad_cand = grad_out * update * (1.0 - cand * cand)          # through tanh
        grad_parts = torch.cat([
            grad_cand * cand_pre * reset * (1.0 - reset),             # reset gate
            grad_cand * reset,                                        # candidate
            grad_out * (cand - state) * update * (1.0 - update),      # update gate
        ], -1)
        grad_pre, grad_weight, grad_bias = torch.ops.aten.native_layer_norm_backward(
            grad_parts, pre, [3 * size], mean, rstd, weight, bias,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[2], ctx.needs_input_grad[3]])
        return grad_pre, grad_state, grad_weight, grad_bias, None, None


def _gates(parts: torch.Tensor, state: torch.Tensor, size: int,
           update_bias: float) -> torch.Tensor:
    reset, cand, update = parts.split(size, -1)
    reset = torch.sigmoid(reset)
    cand = torch.tanh(reset * cand)
    update = torch.sigmoid(update + update_bias)
    return update * cand + (1.0 - update) * state


class GRUCell(nn.Module):
    """A GRU with one LayerNorm over its three gates' pre-activations (DreamerV3).

    With autograd on, the norm and the gates are one autograd function that keeps only the
    pre-activations for backward (same values and gradients as the plain operations)."""

    def __init__(self, in_dim: int, size: int, update_bias: float = -1.0):
        super().__init__()
        self.size = size
        self.update_bias = update_bias
        self.linear = nn.Linear(in_dim + size, 3 * size, bias=False)
        self.norm = nn.LayerNorm(3 * size, eps=1e-3)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        pre = self.linear(torch.cat([x, state], -1))
        if torch.is_grad_enabled():
            return _LayerNormGRUGates.apply(pre, state, self.norm.weight, self.norm.bias,
                                            self.norm.eps, self.update_bias)
        return _gates(self.norm(pre), state, self.size, self.update_bias)


def _block(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim, bias=False),
                         nn.LayerNorm(out_dim, eps=1e-3), nn.SiLU())


class RSSM(nn.Module):
    """Recurrent state-space model.

    Args:
      action_dim: width of the action input (one-hot for discrete actions).
      embed_dim: width of the observation embedding :meth:`observe_step` takes.
      deter, stoch, classes, hidden: sizes; ``classes=0`` makes ``stoch`` Gaussian latents.
      unimix: uniform mixture of the categorical latents (0.01 in DreamerV3).
      min_std: lower bound of Gaussian latents' std.
    """

    def __init__(self, action_dim: int, embed_dim: int, deter: int = 256, stoch: int = 32,
                 classes: int = 32, hidden: int = 256, unimix: float = 0.01,
                 min_std: float = 0.1):
        super().__init__()
        if classes == 1 or classes < 0:
            raise ValueError(f"classes must be 0 (Gaussian latents) or >= 2, got {classes}")
        self.action_dim, self.embed_dim = action_dim, embed_dim
        self.deter, self.stoch, self.classes, self.hidden = deter, stoch, classes, hidden
        self.unimix, self.min_std = unimix, min_std
        self.discrete = classes > 0
        stats = stoch * classes if self.discrete else 2 * stoch
        self.stoch_size = stoch * (classes or 1)
        self.feat_size = deter + self.stoch_size
        self.img_in = _block(self.stoch_size + action_dim, hidden)
        self.gru = GRUCell(hidden, deter)
        self.img_out = nn.Sequential(_block(deter, hidden), nn.Linear(hidden, stats))
        self.obs_out = nn.Sequential(_block(deter + embed_dim, hidden), nn.Linear(hidden, stats))
        self.initial_deter = nn.Parameter(torch.zeros(deter))

    # -- states ---------------------------------------------------------------------------------

    def _latent(self, raw: torch.Tensor, sample: bool) -> dict[str, torch.Tensor]:
        """``{"stoch", **stats}`` from the stats layer's output."""
        if self.discrete:
            logits = raw.reshape(*raw.shape[:-1], self.stoch, self.classes)
            if sample:
                # One fused kernel: softmax, unimix, log, draw, one-hot, straight-through.
                stoch, log_probs = sample_onehot(logits, self.unimix)
                return {"stoch": stoch, "logits": log_probs}
            log_probs = torch.log(unimix_probs(logits, self.unimix))
            stoch = OneHotStraightThrough.from_probs(log_probs.exp()).mode()  # already mixed
            return {"stoch": stoch, "logits": log_probs}
        mean, std = raw.chunk(2, -1)
        std = 2.0 * torch.sigmoid(std / 2.0) + self.min_std
        stoch = mean + std * torch.randn_like(mean) if sample else mean
        return {"stoch": stoch, "mean": mean, "std": std}

    def initial(self, batch_size: int) -> dict[str, torch.Tensor]:
        """The learned initial state ``[batch_size, ...]``: ``deter = tanh(w)``, ``stoch`` the
        mode of its prior."""
        deter = torch.tanh(self.initial_deter).expand(batch_size, self.deter)
        return {"deter": deter, **self._latent(self.img_out(deter), sample=False)}

    def feature(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[..., deter + stoch * classes]``: the input of heads, actor and critic."""
        stoch = state["stoch"]
        if self.discrete:
            stoch = stoch.reshape(*stoch.shape[:-2], self.stoch_size)
        return torch.cat([state["deter"], stoch], -1)

    def distribution(self, state: dict[str, torch.Tensor]) -> torch.distributions.Distribution:
        """The latent distribution of ``state`` as a ``torch.distributions`` object (events are
        the whole latent: KL and entropy sum over latents and classes)."""
        if self.discrete:
            base = torch.distributions.OneHotCategorical(logits=state["logits"])
            return torch.distributions.Independent(base, 1)
        base = torch.distributions.Normal(state["mean"], state["std"])
        return torch.distributions.Independent(base, 1)

    # -- steps ----------------------------------------------------------------------------------

    def imagine_step(self, state: dict[str, torch.Tensor], action: torch.Tensor,
                     sample: bool = True) -> dict[str, torch.Tensor]:
        """Prior step ``(state [N, ...], action [N, action_dim]) -> next state``; the
        ``dynamics`` of :func:`wmfast.imagine`."""
        x = self._img_in_linear(state["stoch"], action.to(state["stoch"].dtype))
        x = self.img_in[2](self.img_in[1](x))   # LayerNorm, SiLU
        deter = self.gru(x, state["deter"])
        return {"deter": deter, **self._latent(self.img_out(deter), sample)}

    def _img_in_linear(self, stoch: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``img_in``'s linear layer on ``[stoch, action]``. One-hot latents (what the sampler
        and ``mode`` produce) take 32 of the 1024 weight columns per row: a gather-sum
        (``embedding_bag``) instead of a [N, 1024] x [1024, hidden] product, and backward
        keeps the indices instead of the latents."""
        linear = self.img_in[0]
        if not self.discrete:
            return linear(torch.cat([stoch, action], -1))
        lead = stoch.shape[:-2]
        flat = stoch.reshape(-1, self.stoch_size)
        if not _is_one_hot(stoch):
            return linear(torch.cat([flat, action.reshape(flat.shape[0], -1)], -1)).reshape(
                *lead, -1)
        rows = flat.shape[0]
        offsets = torch.arange(self.stoch, device=stoch.device) * self.classes
        index = (stoch.detach().reshape(rows, self.stoch, self.classes).argmax(-1)
                 + offsets).reshape(-1)
        w_stoch = linear.weight[:, :self.stoch_size]
        x = F.embedding_bag(index, self._stoch_columns(w_stoch),
                            torch.arange(0, rows * self.stoch, self.stoch, device=stoch.device),
                            mode="sum")
        x = torch.addmm(x, action.reshape(rows, -1), linear.weight[:, self.stoch_size:].t())
        if torch.is_grad_enabled() and stoch.requires_grad:
            x = _LatentInputGradient.apply(x, flat, w_stoch)
        return x.reshape(*lead, -1)

    def _stoch_columns(self, w_stoch: torch.Tensor) -> torch.Tensor:
        """``w_stoch`` transposed to rows (what ``embedding_bag`` gathers). Without autograd
        the copy is cached until the weights change (their version counter moves)."""
        if torch.is_grad_enabled() and w_stoch.requires_grad:
            return w_stoch.t().contiguous()
        key = (w_stoch.data_ptr(), w_stoch._version, w_stoch.dtype, w_stoch.device)
        cached = getattr(self, "_stoch_columns_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, w_stoch.detach().t().contiguous())
            self._stoch_columns_cache = cached
        return cached[1]

    def observe_step(self, state: dict[str, torch.Tensor], action: torch.Tensor,
                     embed: torch.Tensor, is_first: torch.Tensor | None = None,
                     sample: bool = True) -> tuple[dict, dict]:
        """One filtering step -> ``(posterior, prior)``. ``action`` is the action taken before
        this observation; where ``is_first`` is set the state and action are reset first."""
        if is_first is not None:
            first = is_first.to(torch.bool)
            if bool(first.any()):
                initial = self.initial(first.shape[0])
                state = {key: _where(first, initial[key], value) for key, value in state.items()}
                action = torch.where(first[:, None], torch.zeros_like(action), action)
        prior = self.imagine_step(state, action, sample)
        post = {"deter": prior["deter"],
                **self._latent(self.obs_out(torch.cat([prior["deter"], embed], -1)), sample)}
        return post, prior

    def observe(self, embed: torch.Tensor, actions: torch.Tensor,
                is_first: torch.Tensor | None = None,
                state: dict[str, torch.Tensor] | None = None) -> tuple[dict, dict]:
        """Filters sequences: ``embed [T, B, embed_dim]``, ``actions [T, B, action_dim]``
        (``actions[t]`` precedes observation t), ``is_first [T, B]`` -> ``(posteriors,
        priors)``, dicts of ``[T, B, ...]``. Starts from ``state`` or the initial state."""
        if embed.ndim != 3 or embed.shape[-1] != self.embed_dim:
            raise ValueError(
                f"embed must have shape [T, B, {self.embed_dim}], got {list(embed.shape)}")
        if actions.shape != (*embed.shape[:2], self.action_dim):
            raise ValueError(
                f"actions must have shape {[*embed.shape[:2], self.action_dim]}, "
                f"got {list(actions.shape)}")
        if is_first is not None and is_first.shape != embed.shape[:2]:
            raise ValueError(
                f"is_first must have shape {list(embed.shape[:2])}, got {list(is_first.shape)}")
        if state is None:
            state = self.initial(embed.shape[1])
        posts, priors = [], []
        for t in range(embed.shape[0]):
            state, prior = self.observe_step(
                state, actions[t], embed[t], None if is_first is None else is_first[t])
            posts.append(state)
            priors.append(prior)
        return _stack(posts), _stack(priors)

    def kl_loss(self, post: dict, prior: dict, free_nats: float = 1.0, dyn_scale: float = 0.5,
                rep_scale: float = 0.1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """KL balancing with free bits; see :func:`kl_loss`."""
        return kl_loss(self, post, prior, free_nats, dyn_scale, rep_scale)


def _is_one_hot(stoch: torch.Tensor) -> bool:
    """Whether every latent is exactly one-hot (values 0 / 1, one 1)."""
    values = stoch.detach()
    return bool(((values == 0) | (values == 1)).all()) and bool((values.sum(-1) == 1).all())


class _LatentInputGradient(torch.autograd.Function):
    """Identity on ``x`` whose backward also hands the latents their gradient ``dL/dx W``
    (the gather-sum that computed ``x`` from their indices gives the weights theirs)."""

    @staticmethod
    def forward(ctx, x, stoch, weight):
        ctx.save_for_backward(weight)
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        grad_stoch = grad @ weight if ctx.needs_input_grad[1] else None
        return grad, grad_stoch, None


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.reshape(-1, *([1] * (b.ndim - 1))), a, b)


def _stack(states: list[dict]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([s[key] for s in states]) for key in states[0]}


def _detach(state: dict) -> dict:
    return {key: value.detach() for key, value in state.items()}


def _kl(rssm: RSSM, p: dict, q: dict) -> torch.Tensor:
    if rssm.discrete:
        return categorical_kl(p["logits"].exp(), q["logits"].exp(), event_dims=2)
    var_ratio = (p["std"] / q["std"]).square()
    mean_term = ((p["mean"] - q["mean"]) / q["std"]).square()
    return (0.5 * (var_ratio + mean_term - 1.0 - torch.log(var_ratio))).sum(-1)


def kl_loss(rssm: RSSM, post: dict, prior: dict, free_nats: float = 1.0,
            dyn_scale: float = 0.5, rep_scale: float = 0.1) -> tuple[torch.Tensor, dict[str, Any]]:
    """DreamerV3's KL balancing with free bits, per step ``[...]``:

    ``dyn = max(free, KL(sg(post) || prior))`` trains the prior, ``rep = max(free, KL(post ||
    sg(prior)))`` the representation; the loss is ``dyn_scale dyn + rep_scale rep``. The KL sums
    over all latents (and classes); ``max`` (not a soft clip) stops gradients below ``free``.
    Returns ``(loss, {"kl": the raw KL, "dyn": dyn, "rep": rep})``.
    """
    dyn = _kl(rssm, _detach(post), prior)
    rep = _kl(rssm, post, _detach(prior))
    raw = dyn.detach()
    dyn = dyn.clamp(min=free_nats)
    rep = rep.clamp(min=free_nats)
    return dyn_scale * dyn + rep_scale * rep, {"kl": raw, "dyn": dyn, "rep": rep}
