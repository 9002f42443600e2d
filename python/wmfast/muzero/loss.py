"""MuZero's K-step unrolled value-equivalent loss.

From the observation at position i the network is unrolled along the K actions that were taken::

    root = initial_inference(obs_i);  s_0 = root.latent
    step_k = recurrent_inference(s_{k-1}, a_{i+k-1});  s_k = scale_gradient(step_k.latent, 1/2)

and each prediction is scored against its target: cross-entropy of the value and reward supports
(or squared error for scalar heads) and of the policy logits against the search policy. As in the
MuZero pseudocode, the gradient of each unrolled step's loss is scaled by 1/K and the dynamics'
incoming latent gradient by 1/2; losses are weighted per sample by the replay's importance
weights. With ``consistency_weight > 0`` the EfficientZero consistency term is added: the
negative cosine similarity between ``network.project(s_k, with_predictor=True)`` and
``network.project(representation(o_{i+k}), with_predictor=False)`` (no gradient through the
target branch), for unrolled steps inside the game.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.nn import functional as F

from wmfast import transforms as T
from wmfast.muzero.networks import check_head

__all__ = ["Losses", "scale_gradient", "unrolled_loss"]


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the gradient is multiplied by ``scale``."""
    return x * scale + x.detach() * (1.0 - scale)


@dataclasses.dataclass
class Losses:
    """The loss of one batch.

    Attributes:
      total: scalar tensor to minimise (weighted sum, with graph).
      value, reward, policy: scalar tensors (detached) per component, summed over the unroll.
      consistency: scalar tensor (detached), 0 when the term is off.
      root_values: [B] (detached) predicted value at the root, as a scalar, for new priorities.
    """

    total: torch.Tensor
    value: torch.Tensor
    reward: torch.Tensor
    policy: torch.Tensor
    root_values: torch.Tensor
    consistency: torch.Tensor


def _scalar_loss(head: torch.Tensor, target: torch.Tensor, support_size: int) -> torch.Tensor:
    """[B] loss of a value/reward head against scalar targets."""
    if support_size > 0:
        return -(T.scalar_to_support(target, support_size) * F.log_softmax(head, -1)).sum(-1)
    return 0.5 * (head - target) ** 2


def _root_values(head: torch.Tensor, support_size: int) -> torch.Tensor:
    """[B] detached scalar root values of a value head (for the replay's priorities)."""
    with torch.no_grad():
        return (T.support_to_scalar(head, support_size) if support_size > 0 else head).detach()


def unrolled_loss(
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
    next_observations: torch.Tensor | None = None,
    consistency_weight: float = 0.0,
    sampled_actions: torch.Tensor | None = None,
) -> Losses:
    """The loss of a batch of B positions unrolled K = actions.shape[1] steps.

    Args:
      network: ``initial_inference`` / ``recurrent_inference`` as in ``wmfast.muzero.networks``.
      observations: [B, *obs_shape].
      actions: [B, K] int64.
      target_values, target_rewards: [B, K+1] (entry 0 of target_rewards is unused).
      target_policies: [B, K+1, A].
      value_mask, reward_mask, policy_mask: [B, K+1], 1 where the target is trained.
      weights: [B] importance-sampling weights.
      support_size: size of the categorical heads' support (0: scalar heads).
      value_loss_weight: weight of the value loss (MuZero Reanalyse: 0.25).
      next_observations: [B, K, *obs_shape] observations after each unrolled action (needed
        when consistency_weight > 0).
      consistency_weight: weight of EfficientZero's consistency loss (0: off).
      sampled_actions: Sampled MuZero: [B, K+1, S, D] float (Gaussian policy heads) or
        [B, K+1, S] int64 (logits) root samples; target_policies [B, K+1, S] is then the visit
        distribution over them and the policy loss is Hubert et al.'s
        (``wmfast.muzero.sampled.sampled_policy_loss``); actions are [B, K, D] for continuous
        actions.
    """
    B, K = actions.shape[:2]
    A = target_policies.shape[-1]
    consistency_on = consistency_weight > 0
    if consistency_on:
        if not callable(getattr(network, "project", None)):
            raise TypeError(
                "consistency_weight > 0 needs network.project(latent, with_predictor) (the "
                f"reference networks have it), got {type(network).__name__} without it")
        if next_observations is None or tuple(next_observations.shape[:2]) != (B, K):
            got = None if next_observations is None else list(next_observations.shape)
            raise ValueError(
                f"next_observations must have shape [{B}, {K}, ...] with consistency_weight > 0, "
                f"got {got}")
        with torch.no_grad():
            next_latent = network.initial_inference(next_observations.flatten(0, 1)).latent
            targets = network.project(next_latent, with_predictor=False).view(B, K, -1)
    consistency_loss = torch.zeros(B, dtype=observations.dtype, device=observations.device)
    root = network.initial_inference(observations)
    if sampled_actions is not None:
        from wmfast.muzero.sampled import sampled_policy_loss

        def policy_term(logits: torch.Tensor, k: int) -> torch.Tensor:
            return sampled_policy_loss(logits, sampled_actions[:, k], target_policies[:, k])
    else:
        def policy_term(logits: torch.Tensor, k: int) -> torch.Tensor:
            return -(target_policies[:, k] * F.log_softmax(logits, -1)).sum(-1)
    if sampled_actions is None and list(root.logits.shape) != [B, A]:
        raise ValueError(
            f"initial_inference logits must have shape {[B, A]}, got {list(root.logits.shape)}"
        )
    check_head(root.value, B, support_size, "initial_inference value")
    value_loss = _scalar_loss(root.value, target_values[:, 0], support_size) * value_mask[:, 0]
    policy_loss = policy_term(root.logits, 0) * policy_mask[:, 0]
    reward_loss = torch.zeros_like(value_loss)
    latent = root.latent
    for k in range(1, K + 1):
        step = network.recurrent_inference(latent, actions[:, k - 1])
        check_head(step.value, B, support_size, "recurrent_inference value")
        check_head(step.reward, B, support_size, "recurrent_inference reward")
        v = _scalar_loss(step.value, target_values[:, k], support_size) * value_mask[:, k]
        r = _scalar_loss(step.reward, target_rewards[:, k], support_size) * reward_mask[:, k]
        p = policy_term(step.logits, k) * policy_mask[:, k]
        value_loss = value_loss + scale_gradient(v, 1.0 / K)
        reward_loss = reward_loss + scale_gradient(r, 1.0 / K)
        policy_loss = policy_loss + scale_gradient(p, 1.0 / K)
        if consistency_on:
            online = network.project(step.latent, with_predictor=True)
            c = -F.cosine_similarity(online, targets[:, k - 1], dim=-1) * policy_mask[:, k]
            consistency_loss = consistency_loss + scale_gradient(c, 1.0 / K)
        latent = scale_gradient(step.latent, 0.5)
    per_sample = value_loss_weight * value_loss + reward_loss + policy_loss
    if consistency_on:
        per_sample = per_sample + consistency_weight * consistency_loss
    total = (per_sample * weights).mean()
    root_values = _root_values(root.value, support_size)
    return Losses(
        total=total,
        value=value_loss.detach().mean(),
        reward=reward_loss.detach().mean(),
        policy=policy_loss.detach().mean(),
        root_values=root_values,
        consistency=consistency_loss.detach().mean(),
    )
