"""The distributions of the reference Dreamer, with the gradients DreamerV3 needs.

``OneHotStraightThrough`` is a categorical over the last dimension with ``unimix`` uniform
probability mixed in (``p = (1 - u) softmax(logits) + u / C``, so no class has probability
below ``u / C`` and KL terms stay bounded), whose ``rsample`` returns a one-hot sample with the
straight-through gradient of ``p`` (Bengio et al. 2013): ``onehot + p - sg(p)``.

:func:`sample_onehot` is that sampler fused into one C++ kernel (``wmfast._torch``): softmax,
unimix, log, one inverse-CDF draw per row from a torch generator and the one-hot, with a
backward that needs only ``log p``. ``OneHotStraightThrough`` built from logits and the RSSM
sample through it on CPU tensors.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from wmfast import _torch_ext

__all__ = ["DiagNormal", "OneHotStraightThrough", "categorical_kl", "sample_onehot",
           "unimix_probs"]


class _SampleOneHot(torch.autograd.Function):
    """The fused kernel with its straight-through backward (only ``log p`` is kept)."""

    @staticmethod
    def forward(ctx, logits, unimix, generator):
        sample, log_probs = _torch_ext.load().sample_onehot(logits, unimix, generator)
        ctx.save_for_backward(log_probs)
        ctx.unimix = unimix
        ctx.set_materialize_grads(False)   # an unused output's gradient stays None, not zeros
        return sample, log_probs

    @staticmethod
    def backward(ctx, grad_sample, grad_log_probs):
        (log_probs,) = ctx.saved_tensors
        if grad_sample is None and grad_log_probs is None:
            return None, None, None
        grad = _torch_ext.load().sample_onehot_backward(
            log_probs, grad_sample, grad_log_probs, ctx.unimix)
        return grad, None, None


def _fused_ok(logits: torch.Tensor) -> bool:
    """Whether the C++ kernel serves these logits (CPU float32/float64)."""
    return logits.device.type == "cpu" and logits.dtype in (torch.float32, torch.float64)


def sample_onehot(logits: torch.Tensor, unimix: float = 0.0,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One straight-through one-hot draw per row of ``p = (1 - unimix) softmax(logits) +
    unimix / C`` and ``log p``.

    Args:
      logits: ``[..., C]`` float32/float64 tensor (raw, unnormalised).
      unimix: uniform mixture in [0, 1).
      generator: the ``torch.Generator`` to draw from (one 53-bit uniform per row, in row
        order); ``None`` draws from torch's default generator, so ``torch.manual_seed`` makes
        the samples reproducible bit for bit.

    Returns:
      ``(sample, log_probs)``, both ``[..., C]`` in the dtype of ``logits``: ``sample`` is
      exactly one-hot and its gradient is that of ``p`` (straight-through); ``log_probs``
      differentiates as ``log p``.

    On CPU tensors this is one C++ kernel (wmfast._torch); on other devices the same
    computation runs as torch operations (inverse CDF on the cumulative probabilities).
    Raises TypeError for a non-tensor or non-floating ``logits``, ValueError for a shape
    without classes or ``unimix`` outside [0, 1).
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch tensor [..., C], got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating tensor, got dtype {logits.dtype}")
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have shape [..., C] with C >= 1, got {list(logits.shape)}")
    if isinstance(unimix, bool) or not isinstance(unimix, (int, float)) or not (
            0.0 <= float(unimix) < 1.0):
        raise ValueError(f"unimix must be a number in [0, 1), got {unimix!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}")
    if _fused_ok(logits) and (generator is None or generator.device.type == "cpu"):
        return _SampleOneHot.apply(logits, float(unimix), generator)
    probs = unimix_probs(logits, float(unimix))
    sample = _inverse_cdf(probs.detach(), generator)
    return sample + (probs - probs.detach()), torch.log(probs)


def _inverse_cdf(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    # Inverse-CDF sampling: one uniform per categorical against the cumulative
    # probabilities (torch.multinomial draws C exponentials per row).
    classes = probs.shape[-1]
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[:-1], dtype=probs.dtype, device=probs.device, generator=generator)
    u = u.unsqueeze(-1) * cdf[..., -1:]  # the total, in case rounding left it below 1
    index = (cdf <= u).sum(-1).clamp_(max=classes - 1)
    return F.one_hot(index, classes).to(probs.dtype)


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
    """Categorical over ``[..., C]`` from logits with unimix; straight-through ``rsample``.

    ``probs`` and ``logits`` (the mixed log-probabilities) are computed when first read;
    ``sample``/``rsample`` of a distribution built from logits go through
    :func:`sample_onehot` (one fused kernel on CPU).
    """

    def __init__(self, logits: torch.Tensor, unimix: float = 0.0):
        self._raw: torch.Tensor | None = logits
        self.unimix = unimix
        self._probs: torch.Tensor | None = None
        self._logits: torch.Tensor | None = None

    @classmethod
    def from_probs(cls, probs: torch.Tensor) -> OneHotStraightThrough:
        """From probabilities ``[..., C]`` that are already mixed (no softmax in between)."""
        dist = cls.__new__(cls)
        dist._raw, dist.unimix = None, 0.0
        dist._probs, dist._logits = probs, None
        return dist

    @property
    def probs(self) -> torch.Tensor:
        if self._probs is None:
            assert self._raw is not None
            self._probs = unimix_probs(self._raw, self.unimix)
        return self._probs

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:
            self._logits = torch.log(self.probs)
        return self._logits

    def sample(self) -> torch.Tensor:
        """A one-hot sample ``[..., C]`` (no gradient)."""
        if self._raw is not None:
            return sample_onehot(self._raw.detach(), self.unimix)[0]
        return _inverse_cdf(self.probs.detach())

    def rsample(self) -> torch.Tensor:
        """A one-hot sample whose gradient is that of ``probs`` (straight-through)."""
        if self._raw is not None:
            return sample_onehot(self._raw, self.unimix)[0]
        # The zero (p - sg(p)) is added last so the values stay exactly one-hot.
        return _inverse_cdf(self.probs.detach()) + (self.probs - self.probs.detach())

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
