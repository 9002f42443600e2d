"""Return normalisation and the actor-critic losses of DreamerV3 over imagined trajectories.

All per-step tensors are ``[H, N]`` (the H λ-returns of H+1 imagined states) unless noted.
"""

from __future__ import annotations

import torch
from torch import nn

from wmfast import transforms as T

__all__ = ["ReturnNormalizer", "actor_loss", "critic_loss"]


class ReturnNormalizer(nn.Module):
    """DreamerV3's return scale: an EMA of the ``low``/``high`` percentiles of the λ-returns,
    ``scale = max(limit, P_high - P_low)`` (limit 1: small returns are never scaled up).

    ``update(returns)`` moves ``low``/``high`` by ``rate`` towards this batch's percentiles
    (the 2024 code's ``rate=0.01``; dreamerv3-torch's ``alpha=1e-2``; SheepRL's
    ``decay=0.99``); both start at 0, without debiasing, as those three do.
    """

    def __init__(self, rate: float = 0.01, low: float = 0.05, high: float = 0.95,
                 limit: float = 1.0):
        super().__init__()
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], got {rate!r}")
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"low and high must satisfy 0 <= low < high <= 1, got {low}, {high}")
        self.rate, self.limit = float(rate), float(limit)
        self.register_buffer("quantiles", torch.tensor([low, high]), persistent=False)
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> None:
        flat = returns.detach().reshape(-1).to(self.low.dtype)
        if flat.numel() == 0:
            raise ValueError("returns must not be empty")
        low, high = torch.quantile(flat, self.quantiles.to(flat.device))
        self.low.lerp_(low, self.rate)
        self.high.lerp_(high, self.rate)

    def offset(self) -> torch.Tensor:
        return self.low.detach().clone()

    def scale(self) -> torch.Tensor:
        return torch.clamp(self.high - self.low, min=self.limit).detach()

    def forward(self, returns: torch.Tensor, update: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(offset, scale)`` after (optionally) updating with ``returns``."""
        if update:
            self.update(returns)
        return self.offset(), self.scale()


def actor_loss(
    log_probs: torch.Tensor,
    entropy: torch.Tensor,
    returns: torch.Tensor,
    baseline: torch.Tensor,
    weights: torch.Tensor,
    scale: torch.Tensor | float,
    grad: str = "reinforce",
    entropy_scale: float = 3e-4,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The policy loss ``mean(w_t (-objective_t - η H_t))``.

    Args:
      log_probs: ``[H, N]`` log π(a_t | s_t) of the imagined actions (REINFORCE).
      entropy: ``[H, N]`` policy entropy at s_t.
      returns: ``[H, N]`` λ-returns (keeping their graph for ``grad="dynamics"``).
      baseline: ``[H, N]`` critic values v(s_t) (detach them to keep the critic out of the
        pathwise gradient).
      weights: ``[H, N]`` from :func:`wmfast.lambda_return_weights`.
      scale: the return scale (``ReturnNormalizer.scale()``), ``max(1, P95 - P5)``.
      grad: ``"reinforce"``: objective ``log π(a_t) sg((R_t - v_t) / scale)`` (DreamerV3 for
        discrete actions; official 2024 for all); ``"dynamics"``: objective ``(R_t - v_t) /
        scale`` differentiated through the imagined dynamics (DreamerV3 for continuous actions;
        dreamerv3-torch's ``imag_gradient: dynamics``).
      entropy_scale: η (3e-4).
    """
    if grad not in ("reinforce", "dynamics"):
        raise ValueError(f"grad must be 'reinforce' or 'dynamics', got {grad!r}")
    for name, tensor in (("log_probs", log_probs), ("entropy", entropy), ("baseline", baseline),
                         ("weights", weights)):
        if tensor.shape != returns.shape:
            raise ValueError(
                f"{name} must have the shape of returns {list(returns.shape)}, "
                f"got {list(tensor.shape)}")
    advantage = (returns - baseline) / scale
    if grad == "reinforce":
        objective = log_probs * advantage.detach()
    else:
        objective = advantage
    loss = (weights.detach() * -(objective + entropy_scale * entropy)).mean()
    metrics = {"advantage": advantage.detach().mean(), "entropy": entropy.detach().mean()}
    return loss, metrics


def critic_loss(
    logits: torch.Tensor,
    returns: torch.Tensor,
    weights: torch.Tensor,
    bins: T.Bins,
    slow_values: torch.Tensor | None = None,
    slow_reg: float = 1.0,
) -> torch.Tensor:
    """The critic loss ``mean(w_t (CE(two_hot(sg(R_t)), logits_t) + slow_reg CE(two_hot(
    v_slow(s_t)), logits_t)))`` for ``logits [H, N, num_bins]`` of the first H states: the
    two-hot cross-entropy to the λ-returns, regularised towards the slow critic's predictions
    (DreamerV3)."""
    if logits.shape[:-1] != returns.shape:
        raise ValueError(
            f"logits must have shape {[*returns.shape, bins.num_bins]} (returns' shape and "
            f"the bins), got {list(logits.shape)}")
    log_probs = torch.log_softmax(logits, dim=-1)
    loss = -(T.two_hot(returns.detach(), bins) * log_probs).sum(-1)
    if slow_values is not None and slow_reg > 0:
        loss = loss - slow_reg * (T.two_hot(slow_values.detach(), bins) * log_probs).sum(-1)
    return (weights.detach() * loss).mean()
