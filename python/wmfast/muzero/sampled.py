"""Sampled MuZero training (Hubert et al., "Learning and Planning in Complex Action Spaces",
ICML 2021): the pieces ``MuZeroAgent`` uses with ``Config(search="sampled")``.

- :class:`SampledMLPNetwork`: a reference MLP network for continuous (Box) actions. Its policy is
  a diagonal Gaussian given as wm.SampledMCTS reads it, ``logits`` [B, 2 * D] = (mean,
  log_std). The Gaussian is **clipped**, not tanh-squashed: the mean is kept inside the action
  bounds (center + half_range * tanh), the search draws from the Gaussian and clips each draw to
  the bounds, and the loss scores the stored (clipped) actions by the Gaussian's log-density
  there. (A draw clipped to a bound is scored by the density at the bound, not by the
  probability mass beyond it: a bias toward the bounds' inside that the search's clipping
  makes small while the mean stays inside.)
- :func:`sampled_policy_loss`: the paper's policy loss, the cross-entropy of the search's visit
  distribution over the K sampled actions against the network's log-probabilities of those
  actions: ``-sum_k pi_hat(a_k) log pi(a_k)`` (Gaussian log-density for continuous actions,
  log-softmax of the logits for discrete ones).
- :class:`SampledReplay`: the replay storing the K root samples of every position beside their
  visit distribution (the policy target) and the action played.

Large Discrete action spaces also train with ``search="sampled"``: wm.SampledMCTS draws K
distinct actions by Gumbel-top-k from the logits of the usual MLPNetwork, and the same loss
scores log-softmax at the sampled actions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from wmfast.mcts import Root, Step
from wmfast.muzero.networks import (
    _check_sizes,
    _head_size,
    _mlp,
    _Projection,
    _scalar_head,
    _zero_last_layers,
    scale_latent,
)
from wmfast.muzero.replay import Game, Replay

__all__ = [
    "SampledMLPNetwork",
    "SampledReplay",
    "categorical_log_prob",
    "gaussian_log_prob",
    "sampled_policy_loss",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(policy: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """[B, S] log-density of actions [B, S, D] under diagonal Gaussians ``policy`` [B, 2 * D]
    (mean, then log_std: wm.SampledMCTS's layout)."""
    D = actions.shape[-1]
    if policy.dim() != 2 or policy.shape[1] != 2 * D:
        raise ValueError(f"policy must have shape [B, {2 * D}] (mean, then log_std for "
                         f"action_dim={D}), got {list(policy.shape)}")
    mean, log_std = policy[:, None, :D], policy[:, None, D:]
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - _LOG_SQRT_2PI).sum(-1)


def categorical_log_prob(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """[B, S] log-softmax of ``logits`` [B, A] at actions [B, S] (int; -1, a missing sample,
    gives 0)."""
    log_p = torch.log_softmax(logits, -1).gather(1, actions.clamp(min=0))
    return torch.where(actions >= 0, log_p, torch.zeros_like(log_p))


def sampled_policy_loss(policy: torch.Tensor, sampled_actions: torch.Tensor,
                        target: torch.Tensor) -> torch.Tensor:
    """[B] Sampled MuZero's policy loss: ``-sum_k target[:, k] * log pi(sampled_actions[:, k])``.

    Args:
      policy: [B, 2 * D] Gaussian (mean, log_std) or [B, A] logits.
      sampled_actions: [B, S, D] float or [B, S] int64 (-1: no sample, target 0 there).
      target: [B, S] the search's visit distribution over the samples.
    """
    if sampled_actions.is_floating_point():
        log_p = gaussian_log_prob(policy, sampled_actions)
    else:
        log_p = categorical_log_prob(policy, sampled_actions)
    return -(target * log_p).sum(-1)


class SampledMLPNetwork(nn.Module):
    """MuZero's three functions as MLPs for vector observations and continuous actions in
    [action_low, action_high]^D, with the clipped diagonal Gaussian policy wm.SampledMCTS reads.

    The dynamics sees actions rescaled to [-1, 1]. The policy head's last layer starts at zero:
    the initial policy is centred in the bounds with a standard deviation of half the half-range
    (log_std is kept within [log(half_range) - 5, log(2 * half_range)]).

    Args:
      obs_dim: size of the (flattened) observation.
      action_dim: D.
      action_low, action_high: the bounds (numbers or [D]).
      latent_dim, hidden, support_size: as in MLPNetwork.
    """

    def __init__(self, obs_dim: int, action_dim: int, action_low: Any = -1.0,
                 action_high: Any = 1.0, latent_dim: int = 64, hidden: int = 64,
                 support_size: int = 10) -> None:
        super().__init__()
        _check_sizes(support_size, obs_dim=obs_dim, action_dim=action_dim,
                     latent_dim=latent_dim, hidden=hidden)
        low = np.broadcast_to(np.asarray(action_low, np.float64), (action_dim,))
        high = np.broadcast_to(np.asarray(action_high, np.float64), (action_dim,))
        if not (np.isfinite(low).all() and np.isfinite(high).all() and (low < high).all()):
            raise ValueError(f"action_low < action_high must hold (finite, [{action_dim}]), got "
                             f"action_low={low.tolist()}, action_high={high.tolist()}")
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.latent_dim, self.support_size = latent_dim, support_size
        dtype = torch.get_default_dtype()
        self.register_buffer("center", torch.as_tensor((low + high) / 2, dtype=dtype))
        self.register_buffer("half_range", torch.as_tensor((high - low) / 2, dtype=dtype))
        out = _head_size(support_size)
        self.representation = _mlp([obs_dim, hidden, latent_dim])
        self.dynamics = _mlp([latent_dim + action_dim, hidden, latent_dim])
        self.reward_head = _mlp([latent_dim, hidden, out])
        self.policy_head = _mlp([latent_dim, hidden, 2 * action_dim])
        self.value_head = _mlp([latent_dim, hidden, out])
        self.consistency = _Projection(latent_dim, hidden)
        _zero_last_layers(self.reward_head, self.policy_head, self.value_head)

    @property
    def action_low(self) -> torch.Tensor:
        return self.center - self.half_range

    @property
    def action_high(self) -> torch.Tensor:
        return self.center + self.half_range

    def _predict(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.policy_head(latent)
        D = self.action_dim
        mean = self.center + self.half_range * torch.tanh(raw[:, :D])
        # log(std / half_range) in [-5, log 2], log 0.5 at the start (raw = 0).
        scaled = torch.clamp(raw[:, D:] + math.log(0.5), -5.0, math.log(2.0))
        log_std = torch.log(self.half_range) + scaled
        value = _scalar_head(self.value_head(latent), self.support_size)
        return torch.cat([mean, log_std], 1), value

    def project(self, latent: torch.Tensor, with_predictor: bool) -> torch.Tensor:
        """The consistency loss's projection (as MLPNetwork.project)."""
        return self.consistency(latent, with_predictor)

    def initial_inference(self, obs: torch.Tensor) -> Root:
        latent = scale_latent(self.representation(obs.flatten(1)))
        policy, value = self._predict(latent)
        return Root(latent, policy, value)

    def recurrent_inference(self, latent: torch.Tensor, action: torch.Tensor) -> Step:
        a = ((action.to(latent.dtype) - self.center) / self.half_range).reshape(
            latent.shape[0], self.action_dim)
        next_latent = scale_latent(self.dynamics(torch.cat([latent, a], dim=1)))
        reward = _scalar_head(self.reward_head(next_latent), self.support_size)
        policy, value = self._predict(next_latent)
        return Step(next_latent, reward, policy, value)


class SampledReplay(Replay):
    """A Replay (same targets, sampling and priorities) for Sampled MuZero games: each position
    keeps the S root samples of its search and the visit distribution over them (the policy
    target); Batch.sampled_actions [B, K+1, S, ...] goes with Batch.target_policies [B, K+1, S].

    Args:
      capacity, obs_shape, obs_dtype, discount, td_steps, unroll_steps, alpha, beta, seed: as
        Replay.
      num_samples: S, samples per search.
      action_dim, action_low, action_high: continuous actions (D and the bounds, from which the
        unroll actions past a game's end are drawn uniformly); or
      num_actions: A, discrete actions.
    """

    _ARRAYS = (*Replay._ARRAYS, "samples")

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: Any,
                 num_samples: int, discount: float, td_steps: int, unroll_steps: int,
                 alpha: float = 0.0, beta: float = 1.0, seed: int = 0, *,
                 action_dim: int | None = None, action_low: Any = -1.0, action_high: Any = 1.0,
                 num_actions: int | None = None) -> None:
        if (action_dim is None) == (num_actions is None):
            raise ValueError("give action_dim (continuous actions) or num_actions (discrete), "
                             f"got action_dim={action_dim}, num_actions={num_actions}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        super().__init__(capacity, obs_shape, obs_dtype, num_actions or 1, discount, td_steps,
                         unroll_steps, alpha, beta, seed)
        cap, S = self.capacity, num_samples
        self.num_samples = S
        self.continuous = action_dim is not None
        self.policies = np.zeros((cap, S), np.float32)
        if self.continuous:
            if isinstance(action_dim, bool) or not isinstance(action_dim, int) or action_dim < 1:
                raise ValueError(f"action_dim must be an int >= 1, got {action_dim!r}")
            self.action_dim = action_dim
            self.low = np.broadcast_to(np.asarray(action_low, np.float32), (action_dim,)).copy()
            self.high = np.broadcast_to(np.asarray(action_high, np.float32), (action_dim,)).copy()
            self.actions = np.zeros((cap, action_dim), np.float32)
            self.samples = np.zeros((cap, S, action_dim), np.float32)
        else:
            self.samples = np.zeros((cap, S), np.int64)

    def _check_actions(self, game: Game, T: int) -> np.ndarray:
        S = self.num_samples
        samples = None if game.sampled_actions is None else np.asarray(game.sampled_actions)
        if not self.continuous:
            actions = super()._check_actions(game, T)
            if samples is None or samples.shape != (T, S) or samples.dtype.kind not in "iu" or (
                    (samples < -1) | (samples >= self.num_actions)).any():
                raise ValueError(f"game.sampled_actions must be [{T}, {S}] ints in [-1, "
                                 f"{self.num_actions}), got {None if samples is None else list(samples.shape)}")
            return actions
        D = self.action_dim
        actions = np.asarray(game.actions)
        if actions.shape != (T, D) or not np.isfinite(actions).all():
            raise ValueError(f"game.actions must be [{T}, {D}] finite floats, got "
                             f"{list(actions.shape)}")
        if samples is None or samples.shape != (T, S, D) or not np.isfinite(samples).all():
            raise ValueError(f"game.sampled_actions must be [{T}, {S}, {D}] finite floats, got "
                             f"{None if samples is None else list(samples.shape)}")
        return actions

    def _store_extra(self, span: slice, game: Game) -> None:
        self.samples[span] = game.sampled_actions

    def _random_actions(self, B: int, K: int) -> np.ndarray:
        if not self.continuous:
            return super()._random_actions(B, K)
        return self.rng.uniform(self.low, self.high, size=(B, K, self.action_dim)).astype(
            np.float32)

    def _sampled_targets(self, safe: np.ndarray, inside: np.ndarray) -> np.ndarray:
        return self.samples[safe]
