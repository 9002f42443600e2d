"""Imagination rollouts and λ-returns for Dreamer-style actor-critic learning.

``imagine`` rolls a batch of N latent start states forward H steps under a policy, keeping the
autograd graph through the dynamics when asked (Dreamer's dynamics backpropagation). Heads are
not called inside the loop: the caller applies its reward, continue and value heads once to the
stacked states ``traj.states`` ``[H+1, N, ...]``, one batched call per head instead of H small
ones.

``lambda_return`` computes TD(λ) targets over those H+1 states (Sutton & Barto 12.1; Dreamer,
Hafner et al. 2020 eq. 6; DreamerV3, Hafner et al. 2023),

    R_t = r_{t+1} + γ c_{t+1} ((1 - λ) v_{t+1} + λ R_{t+1}),    R_H = v_H,

for t = 0 .. H-1, where ``r_t``, ``c_t`` and ``v_t`` are the reward, continue flag (or
probability) and value predicted at state t. The Dreamer ports all compute this recursion; they
differ in their default discount, in whether γ is folded into the continue target, and in the
loss weights (the probability of still being alive) they multiply the per-step losses by.
``convention`` names each one:

- ``"dreamerv3-torch"`` (NM512's port): ``tools.lambda_return(r[1:], v[:-1], γ c[1:],
  bootstrap=v[-1])``, γ = 0.997, weights ``w_t = prod_{k<t} γ c_k`` (``w_0 = 1``: a state's own
  continue flag does not weigh its loss).
- ``"dreamerv3-2023"`` (official DreamerV3 2023, SheepRL): ``compute_lambda_values(r[1:], v[1:],
  γ c[1:])``, γ = 1 - 1/333, weights ``cumprod(γ c) / γ``, i.e. ``w_t = c_0 prod_{1<=k<=t} γ c_k``
  (a state's own continue flag, c_0 included, weighs its loss).
- ``"dreamerv3-2024"`` (official DreamerV3 since Dec 2024): γ is folded into the continue head's
  target ``(1 - terminal) (1 - 1/333)``, so the discount defaults to 1; weights as 2023.
  ``last`` flags (episode boundaries inside replayed sequences) cut the λ-chain: where
  ``last_{t+1}`` is set, ``R_t = r_{t+1} + γ c_{t+1} v_{t+1}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "CONVENTIONS",
    "lambda_return",
    "lambda_return_weights",
]

# The discount each convention uses when none is given.
CONVENTIONS: dict[str, float] = {
    "dreamerv3-torch": 0.997,
    "dreamerv3-2023": 1.0 - 1.0 / 333.0,
    "dreamerv3-2024": 1.0,
}


def _float_tensor(value: Any, name: str) -> torch.Tensor:
    """A floating torch tensor from a tensor, numpy array or sequence (converted once)."""
    if isinstance(value, torch.Tensor):
        tensor = value
    elif isinstance(value, np.ndarray):
        tensor = torch.from_numpy(value)
        if tensor.is_floating_point():
            tensor = tensor.to(torch.get_default_dtype())
    else:
        try:
            tensor = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(
                f"{name} must be a torch tensor, a numpy array or a sequence of numbers, "
                f"got {type(value).__name__}"
            ) from error
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    return tensor


def _check_finite(tensor: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} must be finite, got {bad} NaN or infinite entries")


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {list(CONVENTIONS)}, got {convention!r}")


def _check_discount(discount: float | None, convention: str) -> float:
    if discount is None:
        return CONVENTIONS[convention]
    if isinstance(discount, bool) or not isinstance(discount, (int, float)) or not (
        0.0 <= float(discount) <= 1.0
    ):
        raise ValueError(f"discount must be a number in [0, 1], got {discount!r}")
    return float(discount)


def _sequences(reference_name: str, reference: Any, **others: Any) -> list[torch.Tensor]:
    """Converts, checks and dtype-promotes [T, ...] sequences that must share one shape."""
    first = _float_tensor(reference, reference_name)
    if first.ndim < 1 or first.shape[0] < 2:
        raise ValueError(
            f"{reference_name} must have shape [H+1, ...] with H+1 >= 2 states along dim 0, "
            f"got shape {list(first.shape)}"
        )
    tensors = [first]
    for name, value in others.items():
        tensor = _float_tensor(value, name)
        if tensor.shape != first.shape:
            raise ValueError(
                f"{name} must have the shape of {reference_name} {list(first.shape)} "
                f"(H+1 = {first.shape[0]} states), got shape {list(tensor.shape)}"
            )
        if tensor.device != first.device:
            raise ValueError(
                f"{name} must be on the device of {reference_name} ({first.device}), "
                f"got {tensor.device}"
            )
        tensors.append(tensor)
    for name, tensor in zip([reference_name, *others], tensors):
        _check_finite(tensor, name)
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return [tensor.to(dtype) for tensor in tensors]


def lambda_return(
    rewards: Any,
    values: Any,
    continues: Any,
    discount: float | None = None,
    lam: float = 0.95,
    convention: str = "dreamerv3-torch",
    *,
    last: Any = None,
) -> torch.Tensor:
    """λ-returns over H+1 imagined (or replayed) states.

    Args:
      rewards: ``[H+1, N, ...]`` reward predicted at each state (``rewards[0]``, the reward
        for reaching the start state, is not used).
      values: ``[H+1, N, ...]`` value of each state; ``values[H]`` is the bootstrap.
      continues: ``[H+1, N, ...]`` continue flag or probability of each state (1 - terminal),
        without the discount (except in ``"dreamerv3-2024"``, whose continue targets carry it).
      discount: γ; ``None`` takes the convention's (``CONVENTIONS``: 0.997, 1 - 1/333, 1).
      lam: λ in [0, 1]; 1 gives discounted Monte-Carlo returns bootstrapped at H, 0 one-step
        TD targets.
      convention: which port's conventions (see the module docstring); the returns are the
        same recursion in all three, so this only sets the default discount here. The loss
        weights differ: :func:`lambda_return_weights`.
      last: optional ``[H+1, N, ...]`` episode-boundary flags; where ``last[t+1]`` is set the
        λ-chain is cut and ``R_t`` bootstraps from ``values[t+1]`` alone (official 2024's
        replay returns). Imagined rollouts have none.

    Returns:
      ``[H, N, ...]``: ``R_t`` for t = 0 .. H-1, in the promoted dtype of the inputs. Gradients
      flow into ``rewards``, ``values`` and ``continues`` (detach them for critic targets).

    Raises ValueError for mismatched shapes (naming the argument and both shapes), fewer than 2
    states, devices that differ, non-finite entries, or a discount / λ outside [0, 1].
    """
    _check_convention(convention)
    gamma = _check_discount(discount, convention)
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam must be a number in [0, 1], got {lam!r}")
    lam = float(lam)
    extra = {} if last is None else {"last": last}
    r, v, c, *rest = _sequences("rewards", rewards, values=values, continues=continues, **extra)
    live = gamma * c[1:]  # [H, ...]
    if rest:
        lam_t = lam * (1.0 - (rest[0][1:] != 0).to(r.dtype))
        interm = r[1:] + live * (1.0 - lam_t) * v[1:]
        coef = live * lam_t
    else:
        interm = r[1:] + live * ((1.0 - lam) * v[1:])
        coef = live * lam
    horizon = interm.shape[0]
    if torch.is_grad_enabled() and any(t.requires_grad for t in (r, v, c)):
        # Autograd: collect the steps and stack them (in-place writes into one buffer would
        # invalidate the views each step saves for backward).
        returns = [v[horizon]]
        for t in range(horizon - 1, -1, -1):
            returns.append(interm[t] + coef[t] * returns[-1])
        return torch.stack(returns[:0:-1])
    out = torch.empty_like(interm)
    following = v[horizon]
    for t in range(horizon - 1, -1, -1):
        torch.addcmul(interm[t], coef[t], following, out=out[t])
        following = out[t]
    return out


def lambda_return_weights(
    continues: Any, discount: float | None = None, convention: str = "dreamerv3-torch"
) -> torch.Tensor:
    """Per-step loss weights ``[H, N, ...]`` for the H λ-returns of ``continues [H+1, N, ...]``:
    the discounted probability that the rollout is still alive at each state (detached).

    - ``"dreamerv3-torch"``: ``w_t = prod_{k<t} γ c_k`` (``w_0 = 1``).
    - ``"dreamerv3-2023"`` and ``"dreamerv3-2024"``: ``w_t = cumprod(γ c)_t / γ =
      c_0 prod_{1<=k<=t} γ c_k``.

    ``discount=None`` takes the convention's default, as in :func:`lambda_return`.
    """
    _check_convention(convention)
    gamma = _check_discount(discount, convention)
    (c,) = _sequences("continues", continues)
    c = c.detach()
    horizon = c.shape[0] - 1
    if convention == "dreamerv3-torch":
        factors = torch.cat([torch.ones_like(c[:1]), gamma * c[: horizon - 1]])
    else:
        # cumprod(γ c) / γ without the division (γ may be 0).
        factors = torch.cat([c[:1], gamma * c[1:horizon]])
    return torch.cumprod(factors, dim=0)
