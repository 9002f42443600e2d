"""Value transforms shared by the MuZero and Dreamer toolkits.

MuZero (Schrittwieser et al. 2020, appendix F; Pohlen et al. 2018) scales values and rewards with
the invertible ``h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x`` before representing them as a
categorical distribution over the integers ``[-support_size, support_size]``: a scalar is split
between the two integers around it (``scalar_to_support``) and a distribution is decoded as
``h^-1`` of its expectation (``support_to_scalar``), never as the expectation of ``h^-1``.

All functions take and return torch tensors and work on any device and leading shape.
"""

from __future__ import annotations

import torch

__all__ = ["h", "h_inv", "scalar_to_support", "support_to_scalar"]


def h(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """MuZero's value scaling ``sign(x) (sqrt(|x| + 1) - 1) + eps x`` (elementwise)."""
    return torch.sign(x) * (torch.sqrt(torch.abs(x) + 1.0) - 1.0) + eps * x


def h_inv(y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The closed-form inverse of :func:`h`:
    ``sign(y) (((sqrt(1 + 4 eps (|y| + 1 + eps)) - 1) / (2 eps))^2 - 1)``."""
    if eps == 0.0:
        return torch.sign(y) * ((torch.abs(y) + 1.0) ** 2 - 1.0)
    root = (torch.sqrt(1.0 + 4.0 * eps * (torch.abs(y) + 1.0 + eps)) - 1.0) / (2.0 * eps)
    return torch.sign(y) * (root * root - 1.0)


def _check_support_size(support_size: int) -> int:
    if isinstance(support_size, bool) or not isinstance(support_size, int) or support_size < 1:
        raise ValueError(f"support_size must be an int >= 1, got {support_size!r}")
    return support_size


def scalar_to_support(
    x: torch.Tensor, support_size: int, eps: float = 1e-3, transform: bool = True
) -> torch.Tensor:
    """Scalars ``[...]`` -> categorical targets ``[..., 2 * support_size + 1]``.

    The scalar is scaled by ``h`` (unless ``transform=False``), clamped to
    ``[-support_size, support_size]`` and split between the two neighbouring integers, so the
    target's expectation is exactly the (scaled, clamped) scalar.
    """
    _check_support_size(support_size)
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    y = h(x, eps) if transform else x
    y = y.clamp(-support_size, support_size)
    low = y.floor()
    upper_weight = y - low
    index = (low + support_size).long()
    out = torch.zeros(*y.shape, 2 * support_size + 1, dtype=y.dtype, device=y.device)
    out.scatter_(-1, index.unsqueeze(-1), (1.0 - upper_weight).unsqueeze(-1))
    # At the upper clamp the upper neighbour does not exist; its weight is 0 there.
    upper = (index + 1).clamp(max=2 * support_size).unsqueeze(-1)
    out.scatter_add_(-1, upper, (upper_weight * (index < 2 * support_size)).unsqueeze(-1))
    return out


def support_to_scalar(
    logits: torch.Tensor, support_size: int, eps: float = 1e-3, transform: bool = True
) -> torch.Tensor:
    """Categorical logits ``[..., 2 * support_size + 1]`` -> scalars ``[...]``: the softmax's
    expectation over the integer support, mapped back by ``h^-1`` (unless ``transform=False``)."""
    _check_support_size(support_size)
    if logits.shape[-1] != 2 * support_size + 1:
        raise ValueError(
            f"logits must have {2 * support_size + 1} entries in the last dimension "
            f"(2 * support_size + 1), got shape {list(logits.shape)}"
        )
    support = torch.arange(
        -support_size, support_size + 1, dtype=logits.dtype, device=logits.device
    )
    y = (torch.softmax(logits, dim=-1) * support).sum(-1)
    return h_inv(y, eps) if transform else y
