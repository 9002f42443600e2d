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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wmfast import _torch_ext
from wmfast.native import NativeModel

__all__ = [
    "CONVENTIONS",
    "Trajectory",
    "imagine",
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


# ----------------------------------------------------------------------------------------------
# Imagination


@dataclass
class Trajectory:
    """An imagined rollout.

    Attributes:
      states: the start's structure (a tensor, or a dict / tuple / list of tensors) with every
        leaf stacked over time: ``[H+1, N, ...]``, ``states[0]`` the start.
      actions: ``[H, N, ...]``: ``actions[t]`` was taken in ``states[t]`` and led to
        ``states[t+1]``.
      horizon: H.
      policy_outputs: what a :class:`wmfast.NativeModel` policy returns after the action
        (e.g. its log-probabilities), each ``[H, N, ...]``; empty for a Python policy.
    """

    states: Any
    actions: torch.Tensor
    horizon: int
    policy_outputs: tuple[torch.Tensor, ...] = ()


def _flatten(tree: Any, path: str = "") -> tuple[list[tuple[str, Any]], Any]:
    """Leaves (with their paths) and a structure spec of a tensor / dict / tuple / list tree."""
    if isinstance(tree, dict):
        leaves, specs = [], []
        for key, value in tree.items():
            sub_leaves, spec = _flatten(value, f"{path}[{key!r}]")
            leaves += sub_leaves
            specs.append((key, spec))
        return leaves, ("dict", type(tree), specs)
    if isinstance(tree, (tuple, list)):
        leaves, specs = [], []
        for index, value in enumerate(tree):
            sub_leaves, spec = _flatten(value, f"{path}[{index}]")
            leaves += sub_leaves
            specs.append(spec)
        return leaves, ("seq", type(tree), specs)
    return [(path or "state", tree)], ("leaf",)


def _unflatten(spec: Any, leaves: list[Any]) -> Any:
    iterator = iter(leaves)

    def build(node: Any) -> Any:
        kind = node[0]
        if kind == "leaf":
            return next(iterator)
        if kind == "dict":
            return node[1]((key, build(sub)) for key, sub in node[2])
        items = [build(sub) for sub in node[2]]
        if hasattr(node[1], "_fields"):  # namedtuple
            return node[1](*items)
        return node[1](items)

    return build(spec)


def _state_leaves(tree: Any, name: str) -> tuple[list[tuple[str, torch.Tensor]], Any]:
    leaves, spec = _flatten(tree)
    if not leaves:
        raise ValueError(f"{name} must contain at least one tensor, got {tree!r}")
    converted = []
    for path, leaf in leaves:
        if isinstance(leaf, np.ndarray):
            leaf = _float_tensor(leaf, f"{name}{path}") if leaf.dtype.kind == "f" else (
                torch.from_numpy(leaf))
        if not isinstance(leaf, torch.Tensor):
            raise TypeError(
                f"{name} must be a tensor or a dict/tuple/list of tensors; "
                f"{name}{'' if path == 'state' else path} is a {type(leaf).__name__}"
            )
        converted.append((path, leaf))
    return converted, spec


def imagine(
    dynamics: Callable[[Any, torch.Tensor], Any],
    policy: Callable[[Any], torch.Tensor],
    start: Any,
    horizon: int,
    *,
    grad: str | None = "dynamics",
    detach_policy_input: bool = True,
    check_finite: bool = True,
    generator: torch.Generator | None = None,
    loop: str = "auto",
) -> Trajectory:
    """Rolls N start states forward ``horizon`` steps under ``policy``.

    Args:
      dynamics: ``dynamics(state, action) -> next_state``, the same structure and leaf shapes
        as ``start`` (e.g. ``rssm.imagine_step``). Rewards, continues and values are not asked
        for inside the loop: apply the heads to ``traj.states`` afterwards, batched over
        ``[H+1, N]``.
      policy: ``policy(state) -> action [N, ...]`` (a sampled action tensor; for dynamics
        backpropagation a reparameterised or straight-through sample).
      start: ``[N, ...]`` tensor, or a dict / tuple / list of them (an RSSM's ``deter`` and
        ``stoch``); numpy arrays are converted. Usually detached posterior states.
      horizon: H >= 1.
      grad: ``"dynamics"`` keeps the autograd graph through the dynamics and the policy's
        actions (Dreamer's dynamics backpropagation); ``None`` runs under ``torch.no_grad()``
        (REINFORCE: recompute the log-probabilities on ``traj.states`` afterwards) and writes
        into preallocated ``[H+1, N, ...]`` buffers.
      detach_policy_input: the policy sees ``state`` detached (dreamerv3-torch, SheepRL and
        official DreamerV3 all do), so actor gradients reach earlier steps only through the
        actions.
      check_finite: raise if the dynamics or the policy produced NaN or infinite values.
      generator: the ``torch.Generator`` that draws the uniform noise inputs of
        :class:`wmfast.NativeModel` s (``None``: torch's default generator of their device, so
        ``torch.manual_seed`` makes rollouts reproducible). Python callables draw their own
        randomness: passing a generator with neither model native is an error.
      loop: ``"auto"`` runs the whole loop in C++ (no GIL, Ctrl-C checked between steps)
        when ``dynamics`` and ``policy`` are both NativeModels, else in Python; ``"python"``
        always runs it in Python (the reference the C++ loop is tested against: same
        draws, same results); ``"native"`` demands the C++ loop.

    NativeModels (``grad=None`` only: they keep no autograd graph): the state's leaves, in
    the order of ``start`` (dict insertion order), are the first inputs of both models. The
    policy ``(*leaves, *noise) -> (action, *outputs)``; the dynamics ``(*leaves, action,
    *noise) -> next leaves``. Every input after those is filled with uniform ``[0, 1)`` noise
    of its exported shape, drawn with ``torch.rand`` from ``generator``, at each step the
    policy's then the dynamics' (an exported model cannot draw from torch's generators
    itself). :func:`wmfast.dreamer.export_imagination` exports an RSSM step and an actor so.

    Returns:
      :class:`Trajectory` with ``states`` ``[H+1, N, ...]`` (the structure of ``start``),
      ``actions`` ``[H, N, ...]`` and a NativeModel policy's other outputs
      ``policy_outputs`` ``[H, N, ...]``.

    Raises ValueError for a bad horizon or ``grad``, start leaves without a common batch size,
    an action whose leading dimension is not N or whose shape/dtype changes between steps, a
    next state whose structure or shapes differ from ``start``, and non-finite values;
    TypeError when the policy returns something other than a tensor. With NativeModels,
    ValueError (before anything runs) when their inputs and outputs do not fit ``start``
    and each other, naming the model, the input or output and both shapes.
    """
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
    horizon = int(horizon)
    if grad not in ("dynamics", None):
        raise ValueError(f"grad must be 'dynamics' or None, got {grad!r}")
    if loop not in ("auto", "python", "native"):
        raise ValueError(f"loop must be 'auto', 'python' or 'native', got {loop!r}")
    native_dynamics = isinstance(dynamics, NativeModel)
    native_policy = isinstance(policy, NativeModel)
    if (native_dynamics or native_policy) and grad is not None:
        raise ValueError(
            f"grad must be None when dynamics or policy is a wmfast.NativeModel (a compiled "
            f"model keeps no autograd graph), got grad={grad!r}")
    if loop == "native" and not (native_dynamics and native_policy):
        raise ValueError(
            "loop='native' needs dynamics and policy to be wmfast.NativeModels, got "
            f"{type(dynamics).__name__} and {type(policy).__name__}")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got "
                            f"{type(generator).__name__}")
        if not (native_dynamics or native_policy):
            raise ValueError(
                "generator draws the noise inputs of NativeModels; dynamics and policy are "
                "Python callables, which draw their own randomness: pass generator=None")
    leaves, spec = _state_leaves(start, "start")
    batch = None
    for path, leaf in leaves:
        if leaf.ndim < 1:
            raise ValueError(f"start{path} must have a batch dimension [N, ...], got a scalar")
        if batch is None:
            batch = leaf.shape[0]
        elif leaf.shape[0] != batch:
            raise ValueError(
                f"every start leaf must have the same batch size N = {batch} (dim 0), "
                f"start{path} has shape {list(leaf.shape)}"
            )
    start_state = _unflatten(spec, [leaf for _, leaf in leaves])
    if native_dynamics or native_policy:
        return _imagine_native(dynamics, policy, leaves, spec, batch, horizon, check_finite,
                               generator, loop)
    if grad is None:
        with torch.no_grad():
            return _rollout(dynamics, policy, start_state, leaves, spec, batch, horizon,
                            detach_policy_input, check_finite, preallocate=True)
    return _rollout(dynamics, policy, start_state, leaves, spec, batch, horizon,
                    detach_policy_input, check_finite, preallocate=False)


def _leaf_names(leaves: list) -> list[str]:
    return ["" if path == "state" else path for path, _ in leaves]


def _imagine_native(dynamics: Any, policy: Any, leaves: list[tuple[str, torch.Tensor]],
                    spec: Any, batch: int | None, horizon: int, check_finite: bool,
                    generator: torch.Generator | None, loop: str) -> Trajectory:
    """The rollout with NativeModels: in C++ when both are, else the Python loop calling the
    native one(s) with the same noise."""
    names = _leaf_names(leaves)
    tensors = [leaf for _, leaf in leaves]
    ext = _torch_ext.load()
    native_dynamics = dynamics._native if isinstance(dynamics, NativeModel) else None
    native_policy = policy._native if isinstance(policy, NativeModel) else None
    ext.check_native_imagination(native_dynamics, native_policy, tensors, names)
    device = (policy if native_policy is not None else dynamics).device
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator must be a {device.type} generator for NativeModels on "
                         f"{device}, got one on {generator.device}")
    if native_dynamics is not None and native_policy is not None and loop != "python":
        states, actions, outputs = ext.imagine_native(native_dynamics, native_policy, tensors,
                                                      names, horizon, generator)
        if check_finite:
            _check_rollout_finite(leaves, states, actions)
        return Trajectory(_unflatten(spec, states), actions, horizon, tuple(outputs))
    outputs_per_step: list[tuple[torch.Tensor, ...]] = []
    if native_policy is not None:
        policy = _NativePolicy(policy, len(leaves), batch, generator, outputs_per_step)
    if native_dynamics is not None:
        dynamics = _NativeDynamics(dynamics, len(leaves), batch, generator, spec)
    with torch.no_grad():
        traj = _rollout(dynamics, policy, _unflatten(spec, tensors), leaves, spec, batch,
                        horizon, False, check_finite, preallocate=True)
    if outputs_per_step and outputs_per_step[0]:
        traj.policy_outputs = tuple(torch.stack(steps) for steps in zip(*outputs_per_step))
    return traj


def _noise_specs(model: NativeModel, first: int) -> list[tuple[torch.dtype, tuple[int, ...]]]:
    """(dtype, per-example shape) of the model's inputs from ``first`` on: its noise."""
    specs = []
    for entry in model._native.metadata["wmfast_inputs"].split(";")[first:]:
        dtype, _, dims = entry.partition(":")
        specs.append((getattr(torch, dtype), tuple(int(d) for d in dims.split(",") if d)))
    return specs


def _draw_noise(specs, batch, device, generator) -> list[torch.Tensor]:
    # torch.rand is the at::rand the C++ loop calls: the same generator gives the same draws.
    return [torch.rand((batch, *shape), generator=generator, dtype=dtype, device=device)
            for dtype, shape in specs]


class _NativePolicy:
    """A NativeModel policy as the Python loop calls it: state -> action, keeping the other
    outputs."""

    def __init__(self, model, num_leaves, batch, generator, outputs) -> None:
        self.model, self.batch, self.generator, self.outputs = model, batch, generator, outputs
        self.noise = _noise_specs(model, num_leaves)

    def __call__(self, state):
        leaves = [leaf for _, leaf in _flatten(state)[0]]
        noise = _draw_noise(self.noise, self.batch, self.model.device, self.generator)
        action, *rest = self.model._native.run(leaves + noise)
        self.outputs.append(tuple(rest))
        return action


class _NativeDynamics:
    """A NativeModel dynamics as the Python loop calls it: (state, action) -> next state."""

    def __init__(self, model, num_leaves, batch, generator, spec) -> None:
        self.model, self.batch, self.generator, self.spec = model, batch, generator, spec
        self.noise = _noise_specs(model, num_leaves + 1)

    def __call__(self, state, action):
        leaves = [leaf for _, leaf in _flatten(state)[0]]
        noise = _draw_noise(self.noise, self.batch, self.model.device, self.generator)
        return _unflatten(self.spec, list(self.model._native.run([*leaves, action, *noise])))


def _detach(tree: Any) -> Any:
    leaves, spec = _flatten(tree)
    return _unflatten(spec, [leaf.detach() for _, leaf in leaves])


def _check_action(action: Any, first: torch.Tensor | None, batch: int, step: int) -> None:
    if not isinstance(action, torch.Tensor):
        raise TypeError(
            f"policy must return an action tensor [N, ...], got {type(action).__name__} "
            f"at step {step}"
        )
    if first is None:
        if action.ndim < 1 or action.shape[0] != batch:
            raise ValueError(
                f"policy must return actions with the batch size N = {batch} in dim 0, "
                f"got shape {list(action.shape)} at step {step}"
            )
    elif action.shape != first.shape or action.dtype != first.dtype:
        raise ValueError(
            f"policy must return actions of one shape and dtype at every step: "
            f"{list(first.shape)} {first.dtype} at step 0, "
            f"{list(action.shape)} {action.dtype} at step {step}"
        )


def _check_next_state(state: Any, spec: Any, leaves: list, step: int) -> list[torch.Tensor]:
    next_leaves, next_spec = _flatten(state)
    if next_spec != spec:
        raise ValueError(
            f"dynamics must return a state with the structure of start, got "
            f"{[path for path, _ in next_leaves]} instead of {[path for path, _ in leaves]} "
            f"at step {step}"
        )
    out = []
    for (path, reference), (_, leaf) in zip(leaves, next_leaves):
        if not isinstance(leaf, torch.Tensor) or leaf.shape != reference.shape:
            got = list(leaf.shape) if isinstance(leaf, torch.Tensor) else type(leaf).__name__
            raise ValueError(
                f"dynamics must return state{'' if path == 'state' else path} with the shape "
                f"of start {list(reference.shape)}, got {got} at step {step}"
            )
        if leaf.dtype != reference.dtype or leaf.device != reference.device:
            raise ValueError(
                f"dynamics must return state{'' if path == 'state' else path} with the dtype "
                f"and device of start ({reference.dtype}, {reference.device}), got "
                f"{leaf.dtype}, {leaf.device} at step {step}"
            )
        out.append(leaf)
    return out


def _first_bad_step(stacked: torch.Tensor) -> int:
    ok = torch.isfinite(stacked.reshape(stacked.shape[0], -1)).all(1)
    return int((~ok).nonzero()[0, 0])


def _rollout(dynamics, policy, state, leaves, spec, batch, horizon, detach_policy_input,
             check_finite, preallocate):
    state_buffers = None
    action_buffer = None
    state_steps = [[leaf] for _, leaf in leaves]
    action_steps = []
    first_action = None
    if preallocate:
        state_buffers = []
        for _, leaf in leaves:
            buffer = leaf.new_empty((horizon + 1, *leaf.shape))
            buffer[0] = leaf
            state_buffers.append(buffer)
    for t in range(horizon):
        action = policy(_detach(state) if detach_policy_input else state)
        _check_action(action, first_action, batch, t)
        next_state = dynamics(state, action)
        next_leaves = _check_next_state(next_state, spec, leaves, t)
        if first_action is None:
            first_action = action
            if preallocate:
                action_buffer = action.new_empty((horizon, *action.shape))
        if preallocate:
            action_buffer[t] = action
            for buffer, leaf in zip(state_buffers, next_leaves):
                buffer[t + 1] = leaf
        else:
            action_steps.append(action)
            for steps, leaf in zip(state_steps, next_leaves):
                steps.append(leaf)
        state = next_state
    if preallocate:
        stacked_states, actions = state_buffers, action_buffer
    else:
        stacked_states = [torch.stack(steps) for steps in state_steps]
        actions = torch.stack(action_steps)
    if check_finite:
        _check_rollout_finite(leaves, stacked_states, actions)
    return Trajectory(_unflatten(spec, stacked_states), actions, horizon)


def _check_rollout_finite(leaves: list, stacked_states: list[torch.Tensor],
                          actions: torch.Tensor) -> None:
    """Raises ValueError naming the earliest producer of a NaN or infinite value: a NaN state
    at step t makes the policy's action at step t + 1 NaN too; at one step the policy ran
    first."""
    problems = []
    if actions.is_floating_point() and not bool(torch.isfinite(actions).all()):
        step = _first_bad_step(actions)
        problems.append((step, 0, f"policy returned NaN or infinite actions at step {step}"))
    for (path, _), stacked in zip(leaves, stacked_states):
        if stacked.is_floating_point() and not bool(torch.isfinite(stacked).all()):
            index = _first_bad_step(stacked)
            leaf = "" if path == "state" else path
            message = (f"start{leaf} has NaN or infinite values" if index == 0 else
                       f"dynamics returned NaN or infinite values in state{leaf} at step "
                       f"{index - 1} (states[{index}])")
            problems.append((index - 1, 1, message))
    if problems:
        raise ValueError(min(problems)[2])
