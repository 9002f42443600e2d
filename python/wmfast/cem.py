"""Sampling-based trajectory optimisation for MPC with learned dynamics: CEM, MPPI and iCEM.

The planners' loop (sampling, clipping, rollouts, elite selection, refitting) runs in C++ over
torch tensors on the device of the state (``wmfast._torch``); the dynamics is any batched Python
callable ``dynamics(state, action) -> (next_state, reward)``. This module checks and converts
arguments and wraps results.

Shapes: B independent problems, H the horizon, A the action dimension, N the number of rows of a
model call (B x population x particles, or split over an ensemble's members, see ``propagation``).

Results are torch tensors of the state's dtype on the state's device, each plan's own (the
planner keeps no reference to them: writing to one changes no later plan). States, goals and
action sequences may be given as numpy arrays or lists: they become CPU tensors, floating point
in ``torch.get_default_dtype()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wmfast import _torch_ext
from wmfast._convert import to_tensor
from wmfast._validate import INT32_MAX, as_bool, as_float, as_int
from wmfast.native import NativeModel

__all__ = ["CEM", "ICEM", "MPPI", "MPCAgent", "Plan"]

Dynamics = Callable[[torch.Tensor, torch.Tensor], Any]
StateFn = Callable[[torch.Tensor], torch.Tensor]

_PROPAGATION = {
    "ts1": "TS1",
    "tsinf": "TSINF",
    "ts_inf": "TSINF",
    "ts∞": "TSINF",
    "expectation": "EXPECTATION",
    "mean": "EXPECTATION",
}
# Options of the subclasses (ICEM, MPPI), passed through CEM.__init__.
_METHOD_OPTIONS = {"noise_beta", "keep_elites", "temperature", "update_std"}
_GOAL_METRICS = {"l2": "L2", "sq_l2": "SQUARED_L2", "squared_l2": "SQUARED_L2", "l1": "L1"}


@dataclass(frozen=True)
class Plan:
    """The result of one ``plan`` call: tensors of the state's dtype on the state's device.

    The tensors belong to this plan: writing to them changes no later plan, and a plan passed as
    ``warm_start`` is read, never written.

    Attributes:
      actions: [B, H, A] the planned action sequences (the best sequence evaluated, or the final
        mean for MPPI and ``return_mean=True``), within the bounds.
      returns: [B] the predicted return of ``actions`` (MPPI with the mean: the softmax-weighted
        return of the last population).
      mean: [B, H, A] the final sampling mean.
      std: [B, H, A] the final sampling standard deviation.
      elites: [B, K, H, A] the last iteration's elites, best first (K = elites, or the population
        for MPPI without elites).
      elite_returns: [B, K] their predicted returns.
    """

    actions: torch.Tensor
    returns: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    elites: torch.Tensor
    elite_returns: torch.Tensor

    @property
    def first_action(self) -> torch.Tensor:
        """[B, A] the action to execute now."""
        return self.actions[:, 0]


def _per_dim(value: float | Sequence[float] | np.ndarray | torch.Tensor, name: str,
             action_dim: int) -> list[float]:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        return [float(array)] * action_dim
    if array.shape != (action_dim,):
        raise ValueError(f"{name} must be a scalar or have shape ({action_dim},) (action_dim), "
                         f"got shape {array.shape}")
    return [float(x) for x in array]


def _as_state(value: Any, name: str) -> torch.Tensor:
    """A tensor as it is; a numpy array or list as a CPU tensor (floating point in the default
    dtype)."""
    return to_tensor(value, name)


def _like_state(value: Any, name: str, state: torch.Tensor) -> torch.Tensor:
    """A tensor as it is; a numpy array or list on the state's device, in its dtype."""
    if isinstance(value, torch.Tensor):
        return value
    return to_tensor(value, name).to(state.device, state.dtype)


class CEM:
    """The cross-entropy method for MPC (Rubinstein 1999; PETS, Chua et al. 2018).

    Each of ``iterations`` rounds samples ``population`` action sequences per problem from a
    Gaussian (one mean/std per step and action dimension), clips them to the bounds, predicts
    their returns with the dynamics (one model call per step for all problems), and refits the
    Gaussian to the ``elites`` best: ``new = alpha * old + (1 - alpha) * refit``.

    Args:
      horizon: H, steps planned ahead.
      action_dim: A.
      population: sequences sampled per problem and iteration (>= 1).
      elites: sequences the Gaussian is refitted to (1 <= elites <= population).
      iterations: refitting rounds.
      action_low, action_high: bounds, scalars or [A]; samples are clipped to them.
      init_std: std of a fresh plan, scalar or [A] (default: a quarter of the bounds' width, as
        PETS; 1 where the bounds are infinite).
      min_std: floor of the refitted std.
      alpha: smoothing of the mean and std across iterations, in [0, 1).
      discount: per-step discount of the predicted rewards (and of the terminal value).
      return_mean: return the final mean instead of the best sequence evaluated.
      ensemble_size: E for an ensemble model; the dynamics then takes and returns tensors with a
        leading member dimension: state [E, M, ...], action [E, M, A] -> next_state [E, M, ...],
        reward [E, M].
      propagation: with an ensemble (PETS): ``"ts1"`` a random member for every particle at every
        step, ``"tsinf"`` a fixed member per particle (default), ``"expectation"`` every particle
        through every member (M = N), averaging their next states and rewards.
      particles: rollouts per candidate sequence (returns averaged), as PETS's P.
      disagreement_penalty: with ``propagation="expectation"``: subtracted from each step's reward
        times the members' disagreement (std of their next states, averaged over dimensions).
      goal_metric: ``"l2"``, ``"sq_l2"`` or ``"l1"``: the distance to ``goal`` charged as a cost.
      goal_weight: its weight.
      goal_terminal_only: charge the goal distance on the final state only (undiscounted), or on
        every predicted state (discounted like the rewards).
      policy_samples: population slots filled by rolling a policy prior through the dynamics
        (TD-MPC2); pass ``policy=`` to ``plan``.
      seed: seeds the sampling noise (a cheap generator on the CPU, the device's on GPUs).
    """

    _method = "CEM"

    def __init__(
        self,
        horizon: int,
        action_dim: int,
        population: int = 500,
        elites: int = 50,
        iterations: int = 5,
        action_low: float | Sequence[float] = -1.0,
        action_high: float | Sequence[float] = 1.0,
        init_std: float | Sequence[float] | None = None,
        min_std: float = 0.0,
        alpha: float = 0.0,
        discount: float = 1.0,
        return_mean: bool = False,
        ensemble_size: int | None = None,
        propagation: str | None = None,
        particles: int = 1,
        disagreement_penalty: float = 0.0,
        goal_metric: str = "l2",
        goal_weight: float = 1.0,
        goal_terminal_only: bool = True,
        policy_samples: int = 0,
        seed: int = 0,
        **method_options: Any,
    ) -> None:
        ext = _torch_ext.load()
        horizon = as_int(horizon, "horizon", 1, INT32_MAX)
        action_dim = as_int(action_dim, "action_dim", 1, INT32_MAX)
        population = as_int(population, "population", 1, INT32_MAX)
        iterations = as_int(iterations, "iterations", 1, INT32_MAX)
        if elites is not None:
            elites = as_int(elites, "elites", 0, INT32_MAX)
        particles = as_int(particles, "particles", 1, INT32_MAX)
        policy_samples = as_int(policy_samples, "policy_samples", 0, INT32_MAX)
        if ensemble_size is not None:
            ensemble_size = as_int(ensemble_size, "ensemble_size", 1, INT32_MAX)
        seed = as_int(seed, "seed", 0, 2**64 - 1)
        min_std = as_float(min_std, "min_std", 0.0)
        alpha = as_float(alpha, "alpha", 0.0, 1.0)
        discount = as_float(discount, "discount", 0.0, 1.0)
        return_mean = as_bool(return_mean, "return_mean")
        disagreement_penalty = as_float(disagreement_penalty, "disagreement_penalty", 0.0)
        goal_weight = as_float(goal_weight, "goal_weight", 0.0)
        goal_terminal_only = as_bool(goal_terminal_only, "goal_terminal_only")
        if not isinstance(goal_metric, str):
            raise TypeError(f"goal_metric must be a str, got {type(goal_metric).__name__}")
        for name in ("noise_beta", "keep_elites", "temperature"):
            if name in method_options:
                method_options[name] = as_float(method_options[name], name)
        if "update_std" in method_options:
            method_options["update_std"] = as_bool(method_options["update_std"], "update_std")
        low = _per_dim(action_low, "action_low", action_dim)
        high = _per_dim(action_high, "action_high", action_dim)
        if init_std is None:
            init_std = [(h - lo) / 4 if math.isfinite(h - lo) else 1.0 for lo, h in zip(low, high)]
        config = ext.PlannerConfig()
        config.method = getattr(ext.CemMethod, self._method)
        config.horizon = int(horizon)
        config.action_dim = int(action_dim)
        config.population = int(population)
        config.elites = 0 if elites is None else int(elites)
        config.iterations = int(iterations)
        config.action_low = low
        config.action_high = high
        config.init_std = _per_dim(init_std, "init_std", action_dim)
        config.min_std = float(min_std)
        config.alpha = float(alpha)
        config.discount = float(discount)
        config.return_mean = bool(return_mean)
        if propagation is not None and ensemble_size is None:
            raise ValueError(f"propagation={propagation!r} needs ensemble_size (the number of "
                             "ensemble members)")
        if ensemble_size is not None:
            key = (propagation or "tsinf").lower()
            if key not in _PROPAGATION:
                raise ValueError(f"propagation must be one of 'ts1', 'tsinf', 'expectation', "
                                 f"got {propagation!r}")
            config.ensemble_size = int(ensemble_size)
            config.propagation = getattr(ext.Propagation, _PROPAGATION[key])
        config.particles = int(particles)
        config.disagreement_penalty = float(disagreement_penalty)
        if goal_metric.lower() not in _GOAL_METRICS:
            raise ValueError(f"goal_metric must be one of 'l2', 'sq_l2', 'l1', got {goal_metric!r}")
        config.goal_metric = getattr(ext.GoalMetric, _GOAL_METRICS[goal_metric.lower()])
        config.goal_weight = float(goal_weight)
        config.goal_terminal_only = bool(goal_terminal_only)
        config.policy_samples = int(policy_samples)
        config.seed = seed
        for name, value in method_options.items():
            if name not in _METHOD_OPTIONS:
                raise TypeError(f"{type(self).__name__} got an unexpected keyword argument "
                                f"{name!r}")
            setattr(config, name, value)
        self._planner = ext.Planner(config)
        self._config = config
        self.horizon = int(horizon)
        self.action_dim = int(action_dim)
        self.population = int(population)
        self.iterations = int(iterations)
        self.action_low = torch.tensor(low)
        self.action_high = torch.tensor(high)

    @property
    def kept_elites(self) -> int:
        """Elites carried from one iteration (and, shifted, from one plan) to the next."""
        return self._planner.kept_elites

    def seed(self, seed: int) -> None:
        """Restarts the noise: the following plans repeat those of a planner made with ``seed``."""
        self._planner.seed(as_int(seed, "seed", 0, 2**64 - 1))

    def plan(
        self,
        dynamics: Dynamics,
        state: torch.Tensor | np.ndarray,
        *,
        goal: torch.Tensor | np.ndarray | None = None,
        warm_start: Plan | None = None,
        shift: int = 1,
        value: StateFn | None = None,
        policy: StateFn | None = None,
        noise: torch.Tensor | np.ndarray | None = None,
    ) -> Plan:
        """Plans from a batch of states.

        Args:
          dynamics: ``(state [N, ...], action [N, A]) -> (next_state [N, ...], reward [N])``
            (with an ensemble, a leading member dimension, see the class). ``reward`` may be
            None when ``goal`` supplies the cost. Called once per horizon step, without grad.
          state: [B, ...] floating point; the planner runs on its device and dtype (a numpy
            array or list becomes a CPU tensor of ``torch.get_default_dtype()``).
          goal: [B, ...] goal states (latents) for a goal-reaching cost (see ``goal_metric``).
          warm_start: the previous plan; its mean (and, for iCEM, its elites) shifted by
            ``shift`` steps initialise this one (the new last steps start at the bounds' centre).
          value: terminal value ``value(state [N, ...]) -> [N]``, added with discount^H.
          policy: policy prior ``policy(state [N, ...]) -> action [N, A]`` for policy_samples.
          noise: [iterations, H, B, population, A] standard normal draws to use instead of the
            planner's own (testing, common random numbers).

        Returns:
          a Plan: actions, mean, std [B, H, A], returns [B], elites [B, K, H, A],
          elite_returns [B, K], in the state's dtype on its device.
        """
        state = _as_state(state, "state")
        goal_t = None if goal is None else _as_state(goal, "goal").to(state.device)
        if noise is not None:
            noise = _like_state(noise, "noise", state)
        warm_mean = warm_elites = None
        if warm_start is not None:
            if not isinstance(warm_start, Plan):
                raise TypeError(f"warm_start must be a Plan, got {type(warm_start).__name__}")
            warm_mean = warm_start.mean
            warm_elites = warm_start.elites if self.kept_elites > 0 else None
        out = self._planner.plan(_native_or(dynamics), state, goal_t, warm_mean, warm_elites,
                                 as_int(shift, "shift", 0, INT32_MAX),
                                 noise, value, policy)
        return Plan(*out)

    def evaluate(
        self,
        dynamics: Dynamics,
        state: torch.Tensor | np.ndarray,
        actions: torch.Tensor | np.ndarray,
        *,
        goal: torch.Tensor | np.ndarray | None = None,
        value: StateFn | None = None,
    ) -> torch.Tensor:
        """Predicted returns [B, n] (the state's dtype, on its device) of action sequences
        [B, n, H, A] (clipped to the bounds), propagated as the planner propagates its
        candidates. Numpy or list actions are taken in the state's dtype, on its device."""
        state = _as_state(state, "state")
        goal_t = None if goal is None else _as_state(goal, "goal").to(state.device)
        actions = _like_state(actions, "actions", state)
        return self._planner.evaluate(_native_or(dynamics), state, actions, goal_t, value)

    def noise_filter(self) -> torch.Tensor:
        """[H, H] float64 the lower-triangular filter colouring the noise (identity for white
        noise)."""
        return torch.tensor(self._planner.noise_filter(), dtype=torch.float64).view(
            self.horizon, self.horizon)


class ICEM(CEM):
    """Improved CEM (Pinneri et al. 2020): coloured noise, elites kept across iterations and plans.

    Takes CEM's arguments, plus:
      noise_beta: exponent of the noise's 1/f^beta power spectrum along time (0: white noise,
        2: Brownian-like, smoother action sequences).
      keep_elites: fraction of the elites carried into the next iteration's population and,
        shifted by one step, into the next plan's first iteration (with ``warm_start``).
    Defaults follow the paper: beta 2, 30% of the elites kept, alpha 0.1.
    """

    def __init__(self, horizon: int, action_dim: int, population: int = 500, elites: int = 50,
                 iterations: int = 5, *, noise_beta: float = 2.0, keep_elites: float = 0.3,
                 alpha: float = 0.1, **kwargs: Any) -> None:
        super().__init__(horizon, action_dim, population, elites, iterations, alpha=alpha,
                         noise_beta=noise_beta, keep_elites=keep_elites, **kwargs)


class MPPI(CEM):
    """Model-predictive path integral control (Williams et al. 2017).

    Takes CEM's arguments; the update weighs sequences by ``softmax(return / temperature)``
    instead of refitting to a hard elite set, and the plan is the final (clipped) mean.
      temperature: > 0; lower is greedier.
      elites: None weighs the whole population; an int weighs only the best (TD-MPC2).
      update_std: refit the std from the weights as well (TD-MPC2), or keep ``init_std``
        (Williams et al.).
    """

    _method = "MPPI"

    def __init__(self, horizon: int, action_dim: int, population: int = 500,
                 elites: int | None = None, iterations: int = 5, *, temperature: float = 1.0,
                 update_std: bool = False, return_mean: bool = True, **kwargs: Any) -> None:
        super().__init__(horizon, action_dim, population, elites, iterations,
                         return_mean=return_mean, temperature=temperature,
                         update_std=update_std, **kwargs)


class MPCAgent:
    """Model-predictive control in a gymnasium environment with a Box action space.

    Plans with ``planner`` from the current observation, executes the first action(s), and
    replans every ``replan_every`` steps; with ``warm_start`` each plan starts from the previous
    one shifted by the steps executed since.

    Args:
      planner: a CEM, ICEM or MPPI.
      dynamics: the planner's dynamics callable.
      warm_start: initialise each plan from the previous one.
      replan_every: k: plan every k steps and execute the plan's next action in between
        (1 <= k <= horizon).
      action_space: optional gymnasium Box; its shape must be (action_dim,), and actions are
        clipped to it.
      value, policy, goal: passed to every ``plan`` (goal: [obs...] or [B, obs...]).
      batched: observations come with a batch dimension (vector environments) and actions are
        returned with one.
      device, dtype: where and in which dtype observations (numpy arrays, lists or tensors) are
        planned from; dtype None means ``torch.get_default_dtype()``.
    """

    def __init__(self, planner: CEM, dynamics: Dynamics, warm_start: bool = True,
                 replan_every: int = 1, action_space: Any = None, value: StateFn | None = None,
                 policy: StateFn | None = None, goal: Any = None, batched: bool = False,
                 device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> None:
        if not isinstance(planner, CEM):
            raise TypeError(f"planner must be a wmfast CEM, ICEM or MPPI, got "
                            f"{type(planner).__name__}")
        if not callable(dynamics):
            raise TypeError(f"dynamics must be callable, got {type(dynamics).__name__}")
        if not 1 <= int(replan_every) <= planner.horizon:
            raise ValueError(f"replan_every must be in [1, horizon={planner.horizon}], "
                             f"got {replan_every}")
        self.planner = planner
        self.dynamics = dynamics
        self.warm_start = bool(warm_start)
        self.replan_every = int(replan_every)
        self.value, self.policy, self.batched = value, policy, bool(batched)
        self.device = torch.device(device)
        self.dtype = torch.get_default_dtype() if dtype is None else dtype
        self._low = self._high = None
        if action_space is not None:
            shape = tuple(getattr(action_space, "shape", ()) or ())
            if shape != (planner.action_dim,):
                raise ValueError(f"action_space has shape {shape}, expected ({planner.action_dim},)"
                                 " (the planner's action_dim)")
            self._low = torch.as_tensor(np.asarray(action_space.low, dtype=np.float64)).to(
                self.device, self.dtype)
            self._high = torch.as_tensor(np.asarray(action_space.high, dtype=np.float64)).to(
                self.device, self.dtype)
        self.goal = None if goal is None else self._batch(goal)
        self.last_plan: Plan | None = None
        self._step = 0

    def _batch(self, obs: Any) -> torch.Tensor:
        tensor = to_tensor(obs, "obs").to(self.device, self.dtype)
        return tensor if self.batched else tensor.unsqueeze(0)

    def reset(self) -> None:
        """Forgets the current plan (call at the start of an episode)."""
        self.last_plan = None
        self._step = 0

    def act(self, obs: Any) -> torch.Tensor:
        """The action for observation ``obs`` (a numpy array, list or tensor): a tensor [A], or
        [B, A] when batched, in the agent's dtype on its device, the caller's own (writing to it
        changes no later action). ``.cpu().numpy()`` gives what a gymnasium env takes."""
        if self.last_plan is None or self._step >= self.replan_every:
            warm = self.last_plan if self.warm_start else None
            shift = self._step if self.last_plan is not None else 1
            self.last_plan = self.planner.plan(
                self.dynamics, self._batch(obs), goal=self.goal, warm_start=warm, shift=shift,
                value=self.value, policy=self.policy)
            self._step = 0
        action = self.last_plan.actions[:, self._step].detach()
        self._step += 1
        if self._low is not None:
            action = torch.clamp(action, self._low, self._high)  # a new tensor
        else:
            action = action.clone()  # the plan's later steps stay as planned
        return action if self.batched else action[0]


def _native_or(dynamics: Any) -> Any:
    """A wm.NativeModel's C++ runner (the planner then calls it without Python), else as is."""
    return dynamics._native if isinstance(dynamics, NativeModel) else dynamics
