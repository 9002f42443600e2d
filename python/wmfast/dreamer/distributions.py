"""The distributions of the reference Dreamer, with the gradients DreamerV3 needs.

``OneHotStraightThrough`` is a categorical over the last dimension with ``unimix`` uniform
probability mixed in (``p = (1 - u) softmax(logits) + u / C``, so no class has probability
below ``u / C`` and KL terms stay bounded), whose ``rsample`` returns a one-hot sample with the
straight-through gradient of ``p`` (Bengio et al. 2013): ``onehot + p - sg(p)``.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = ["DiagNormal", "OneHotStraightThrough", "categorical_kl", "unimix_probs"]


def unimix_probs(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """``(1 - unimix) softmax(logits) + unimix / C`` over the last dimension."""
    probs = torch.softmax(logits, dim=-1)
    if unimix > 0.0:
        probs = (1.0 - unimix) * probs + unimix / logits.shape[-1]
    return probs


def categorical_kl(p: torch.Tensor, q: torch.Tensor, event_dims: int = 1) -> torch.Tensor:
    """``KL(p || q)`` of categoricals given by probabilities over the last dimension, summed
    over the last ``event_dims`` dimensions (classes, then latents)."""
    kl = (p * (torch.log(p) - torch.log(q))).sum(-1)
    if event_dims > 1:
        kl = kl.sum(tuple(range(-(event_dims - 1), 0)))
    return kl


class OneHotStraightThrough:
    """Categorical over ``[..., C]`` from logits with unimix; straight-through ``rsample``."""

    def __init__(self, logits: torch.Tensor, unimix: float = 0.0):
        self.probs = unimix_probs(logits, unimix)
        self.logits = torch.log(self.probs)

    @classmethod
    def from_probs(cls, probs: torch.Tensor) -> OneHotStraightThrough:
        """From probabilities ``[..., C]`` that are already mixed (no softmax in between)."""
        dist = cls.__new__(cls)
        dist.probs = probs
        dist.logits = torch.log(probs)
        return dist

    def sample(self) -> torch.Tensor:
        """A one-hot sample ``[..., C]`` (no gradient)."""
        # Inverse-CDF sampling: one uniform per categorical against the cumulative
        # probabilities (torch.multinomial took ~15% of a Dreamer update on CPU).
        probs = self.probs.detach()
        classes = probs.shape[-1]
        cdf = probs.cumsum(-1)
        u = torch.rand(probs.shape[:-1], dtype=probs.dtype, device=probs.device)
        u = u.unsqueeze(-1) * cdf[..., -1:]  # the total, in case rounding left it below 1
        index = (cdf <= u).sum(-1).clamp_(max=classes - 1)
        return F.one_hot(index, classes).to(probs.dtype)

    def rsample(self) -> torch.Tensor:
        """A one-hot sample whose gradient is that of ``probs`` (straight-through)."""
        # The zero (p - sg(p)) is added last so the values stay exactly one-hot.
        return self.sample() + (self.probs - self.probs.detach())

    def mode(self) -> torch.Tensor:
        """The most likely class, one-hot, with the straight-through gradient."""
        index = self.probs.argmax(-1)
        hard = F.one_hot(index, self.probs.shape[-1]).to(self.probs.dtype)
        return hard + (self.probs - self.probs.detach())

    def log_prob(self, onehot: torch.Tensor) -> torch.Tensor:
        """``[...]`` log-probability of one-hot values."""
        return (onehot.detach() * self.logits).sum(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.probs * self.logits).sum(-1)


class DiagNormal:
    """A diagonal Normal over the last dimension (log-probs and entropies summed over it)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean, self.std = mean, std

    def sample(self) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample()

    def rsample(self) -> torch.Tensor:
        return self.mean + self.std * torch.randn_like(self.mean)

    def mode(self) -> torch.Tensor:
        return self.mean

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        z = (value.detach() - self.mean) / self.std
        return (-0.5 * z * z - torch.log(self.std) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (0.5 + 0.5 * math.log(2 * math.pi) + torch.log(self.std)).sum(-1)
