"""Stochastic MuZero (Antonoglou et al., ICLR 2022) for the MuZero toolkit: a reference network,
its search-model adapter for ``wm.StochasticMCTS`` and its unrolled loss.

A step of the environment is split in two: the agent's action leads to an *afterstate*, and a
discrete *chance outcome* (a code in ``[0, C)``) leads from the afterstate to the next state.
The network has six functions::

    representation    h(o_t) = s                 prediction            f(s) = (pi, v)
    afterstate dyn.   phi(s, a) = as             afterstate prediction psi(as) = (sigma, Q)
    dynamics          g(as, c) = (s', r)         encoder               e(o_t, o_t+1) -> c

The encoder turns the observed transition into a one-hot chance code (argmax of its softmax),
passing gradients straight through to the softmax (a VQ-VAE whose codebook is the C one-hot
vectors). Unrolled along the stored actions, the codes the encoder gives for the transitions
that really happened drive the dynamics, and the loss adds three terms to MuZero's:

    Q loss           Q^k against the value target z_{t+k} of the state the action left
    chance loss      cross-entropy of sigma^k against the encoder's code (no gradient to it)
    commitment loss  || code - softmax(e) ||^2 (the code without gradient)

A network is any ``nn.Module`` with ``initial_inference(obs) -> wm.Root``,
``afterstate_inference(latent, action) -> wm.Afterstate(afterstate, chance_logits, q_value)``,
``chance_inference(afterstate, code) -> wm.Step`` (``code``: [B] int64 outcomes, as the search
gives them, or [B, C] one-hot rows, as the loss gives them) and ``encode(obs, next_obs) -> [B, C]
logits``; value, reward and Q heads are scalars or support logits as in ``networks.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from wmfast.mcts import Root, Step
from wmfast.muzero.loss import Losses, _root_values, _scalar_loss, scale_gradient
from wmfast.muzero.networks import (
    SearchModel,
    _check_sizes,
    _head_size,
    _mlp,
    _scalar_head,
    _zero_last_layers,
    check_head,
    scale_latent,
)
from wmfast.stochastic_mcts import Afterstate

__all__ = [
    "STOCHASTIC_NETWORK_METHODS",
    "StochasticLosses",
    "StochasticMLPNetwork",
    "StochasticSearchModel",
    "chance_code",
    "stochastic_unrolled_loss",
]

# What MuZeroAgent checks a Stochastic MuZero network for.
STOCHASTIC_NETWORK_METHODS = ("initial_inference", "afterstate_inference", "chance_inference", "encode")


def chance_code(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's one-hot code with a straight-through gradient.

    Returns (code [B, C], probs [B, C]): ``code`` equals ``one_hot(argmax(logits))`` in the
    forward pass and has the gradient of ``probs = softmax(logits)`` in the backward pass."""
    probs = F.softmax(logits, dim=-1)
    one_hot = F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
    return one_hot + probs - probs.detach(), probs


class StochasticMLPNetwork(nn.Module):
    """Stochastic MuZero's six functions as MLPs, for vector observations.

    Args:
      obs_dim: size of the (flattened) observation.
      num_actions: A.
      num_chance_outcomes: C, the number of chance codes.
      latent_dim: size of the state and afterstate latents (min-max scaled).
      hidden: width of the hidden layers.
      support_size: categorical value/reward/Q heads over ``2 * support_size + 1`` atoms; 0 for
        scalar heads.
    """

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        num_chance_outcomes: int,
        latent_dim: int = 64,
        hidden: int = 64,
        support_size: int = 10,
    ) -> None:
        super().__init__()
        _check_sizes(support_size, obs_dim=obs_dim, num_actions=num_actions,
                     num_chance_outcomes=num_chance_outcomes, latent_dim=latent_dim,
                     hidden=hidden)
        self.obs_dim, self.num_actions = obs_dim, num_actions
        self.num_chance_outcomes = num_chance_outcomes
        self.latent_dim, self.support_size = latent_dim, support_size
        out = _head_size(support_size)
        self.representation = _mlp([obs_dim, hidden, latent_dim])
        self.afterstate_dynamics = _mlp([latent_dim + num_actions, hidden, latent_dim])
        self.dynamics = _mlp([latent_dim + num_chance_outcomes, hidden, latent_dim])
        self.reward_head = _mlp([latent_dim, hidden, out])
        self.policy_head = _mlp([latent_dim, hidden, num_actions])
        self.value_head = _mlp([latent_dim, hidden, out])
        self.q_head = _mlp([latent_dim, hidden, out])
        self.chance_head = _mlp([latent_dim, hidden, num_chance_outcomes])
        self.encoder = _mlp([2 * obs_dim, hidden, num_chance_outcomes])
        _zero_last_layers(self.reward_head, self.policy_head, self.value_head, self.q_head,
                          self.chance_head)   # uniform chance priors too

    def _predict(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy_head(latent), _scalar_head(self.value_head(latent), self.support_size)

    def initial_inference(self, obs: torch.Tensor) -> Root:
        latent = scale_latent(self.representation(obs.flatten(1)))
        logits, value = self._predict(latent)
        return Root(latent, logits, value)

    def afterstate_inference(self, latent: torch.Tensor, action: torch.Tensor) -> Afterstate:
        one_hot = F.one_hot(action.long(), self.num_actions).to(latent.dtype)
        afterstate = scale_latent(self.afterstate_dynamics(torch.cat([latent, one_hot], dim=1)))
        q_value = _scalar_head(self.q_head(afterstate), self.support_size)
        return Afterstate(afterstate, self.chance_head(afterstate), q_value)

    def chance_inference(self, afterstate: torch.Tensor, code: torch.Tensor) -> Step:
        if code.dim() == 1:   # outcome indices (the search)
            code = F.one_hot(code.long(), self.num_chance_outcomes).to(afterstate.dtype)
        latent = scale_latent(self.dynamics(torch.cat([afterstate, code], dim=1)))
        reward = _scalar_head(self.reward_head(latent), self.support_size)
        logits, value = self._predict(latent)
        return Step(latent, reward, logits, value)

    def encode(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """[B, C] logits of the chance code of the transition obs -> next_obs."""
        return self.encoder(torch.cat([obs.flatten(1), next_obs.flatten(1)], dim=1))


class StochasticSearchModel(SearchModel):
    """A Stochastic MuZero network seen by ``wm.StochasticMCTS``: ``decision`` and ``chance``
    with supports decoded to scalars, no autograd, and the two-player discount (-1 on the chance
    edge, where the turn passes) when asked.

    Args:
      network: the Stochastic MuZero network.
      support_size: 0 if its heads are scalars.
      two_player: alternating two-player zero-sum game.
    """

    @torch.no_grad()
    def decision(self, latent: torch.Tensor, action: torch.Tensor) -> Afterstate:
        after = self.network.afterstate_inference(latent, action)
        return Afterstate(after.latent, after.chance_logits,
                          self._scalar(after.value, latent.shape[0], "afterstate_inference value"))

    @torch.no_grad()
    def chance(self, afterstate: torch.Tensor, outcome: torch.Tensor) -> Step:
        return self._decoded(self.network.chance_inference(afterstate, outcome), afterstate,
                             "chance_inference")


@dataclasses.dataclass
class StochasticLosses(Losses):
    """Losses plus Stochastic MuZero's terms (scalar tensors, detached, summed over the unroll):
    q_value (afterstate value), chance (chance prior against the encoder's code) and
    commitment (encoder softmax against its one-hot code)."""

    q_value: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(()))
    chance: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(()))
    commitment: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(()))


def stochastic_unrolled_loss(
    network: Any,
    observations: torch.Tensor,
    actions: torch.Tensor,
    target_values: torch.Tensor,
    target_rewards: torch.Tensor,
    target_policies: torch.Tensor,
    value_mask: torch.Tensor,
    reward_mask: torch.Tensor,
    policy_mask: torch.Tensor,
    weights: torch.Tensor,
    support_size: int,
    value_loss_weight: float = 0.25,
    *,
    next_observations: torch.Tensor,
    next_mask: torch.Tensor,
    chance_loss_weight: float = 1.0,
    commitment_weight: float = 1.0,
) -> StochasticLosses:
    """Stochastic MuZero's loss of a batch of B positions unrolled K = actions.shape[1] steps.

    Unroll step k (1..K): ``after = afterstate_inference(s_{k-1}, a_{k-1})``; the code of the
    transition o_{k-1} -> o_k is ``chance_code(encode(o_{k-1}, o_k))``; ``step =
    chance_inference(after.latent, code)``. MuZero's value, reward and policy terms are scored
    as in :func:`wmfast.muzero.unrolled_loss`; the Q term scores ``after.value`` against
    ``target_values[:, k-1]`` (weight ``value_loss_weight``, mask ``value_mask[:, k-1]``); the
    chance and commitment terms are masked by ``next_mask[:, k-1]``. Every unrolled term is
    scaled by 1/K in the gradient and both latents entering a dynamics function by 1/2, as in
    MuZero.

    Args (beyond unrolled_loss's):
      next_observations: [B, K, *obs_shape] the observation after each unrolled action.
      next_mask: [B, K] 1 where that observation is the one that really followed (inside the
        game, or the game's final observation); elsewhere the code still drives the dynamics,
        but the encoder gets no gradient and the chance and commitment terms are not trained.
      chance_loss_weight, commitment_weight: weights of the chance and commitment terms.
    """
    B, K = actions.shape
    A = target_policies.shape[-1]
    if tuple(next_observations.shape[:2]) != (B, K) or \
            tuple(next_observations.shape[2:]) != tuple(observations.shape[1:]):
        raise ValueError(f"next_observations must have shape {[B, K, *observations.shape[1:]]}, "
                         f"got {list(next_observations.shape)}")
    if tuple(next_mask.shape) != (B, K):
        raise ValueError(f"next_mask must have shape {[B, K]}, got {list(next_mask.shape)}")
    root = network.initial_inference(observations)
    if list(root.logits.shape) != [B, A]:
        raise ValueError(
            f"initial_inference logits must have shape {[B, A]}, got {list(root.logits.shape)}")
    check_head(root.value, B, support_size, "initial_inference value")
    value_loss = _scalar_loss(root.value, target_values[:, 0], support_size) * value_mask[:, 0]
    policy_loss = -(target_policies[:, 0] * F.log_softmax(root.logits, -1)).sum(-1) * policy_mask[:, 0]
    zeros = torch.zeros_like(value_loss)
    reward_loss, q_loss, chance_loss, commitment_loss = zeros, zeros, zeros, zeros
    latent = root.latent
    previous_obs = observations
    for k in range(1, K + 1):
        after = network.afterstate_inference(latent, actions[:, k - 1])
        check_head(after.value, B, support_size, "afterstate_inference value")
        C = after.chance_logits.shape[-1]
        logits = network.encode(previous_obs, next_observations[:, k - 1])
        if list(logits.shape) != [B, C] or list(after.chance_logits.shape) != [B, C]:
            raise ValueError(
                f"encode logits and afterstate_inference chance_logits must both have shape "
                f"[{B}, C], got {list(logits.shape)} and {list(after.chance_logits.shape)}")
        code, probs = chance_code(logits)
        live = next_mask[:, k - 1]
        # Past a game's real transitions the encoder is not trained: its input there (padding)
        # can equal a real transition's, whose code the absorbing targets would then pull.
        code = torch.where(live[:, None] > 0, code, code.detach())
        step = network.chance_inference(scale_gradient(after.latent, 0.5), code)
        check_head(step.value, B, support_size, "chance_inference value")
        check_head(step.reward, B, support_size, "chance_inference reward")
        q = _scalar_loss(after.value, target_values[:, k - 1], support_size) * value_mask[:, k - 1]
        target_code = code.detach()
        chance = -(target_code * F.log_softmax(after.chance_logits, -1)).sum(-1) * live
        commit = ((target_code - probs) ** 2).sum(-1) * live
        v = _scalar_loss(step.value, target_values[:, k], support_size) * value_mask[:, k]
        r = _scalar_loss(step.reward, target_rewards[:, k], support_size) * reward_mask[:, k]
        p = -(target_policies[:, k] * F.log_softmax(step.logits, -1)).sum(-1) * policy_mask[:, k]
        value_loss = value_loss + scale_gradient(v, 1.0 / K)
        reward_loss = reward_loss + scale_gradient(r, 1.0 / K)
        policy_loss = policy_loss + scale_gradient(p, 1.0 / K)
        q_loss = q_loss + scale_gradient(q, 1.0 / K)
        chance_loss = chance_loss + scale_gradient(chance, 1.0 / K)
        commitment_loss = commitment_loss + scale_gradient(commit, 1.0 / K)
        latent = scale_gradient(step.latent, 0.5)
        previous_obs = next_observations[:, k - 1]
    per_sample = (value_loss_weight * (value_loss + q_loss) + reward_loss + policy_loss
                  + chance_loss_weight * chance_loss + commitment_weight * commitment_loss)
    total = (per_sample * weights).mean()
    return StochasticLosses(
        total=total,
        value=value_loss.detach().mean(),
        reward=reward_loss.detach().mean(),
        policy=policy_loss.detach().mean(),
        root_values=_root_values(root.value, support_size),
        consistency=torch.zeros((), dtype=total.dtype),
        q_value=q_loss.detach().mean(),
        chance=chance_loss.detach().mean(),
        commitment=commitment_loss.detach().mean(),
    )
