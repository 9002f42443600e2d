"""Reference MuZero networks and the network protocol.

A MuZero network is any ``nn.Module`` with two methods::

    initial_inference(obs [B, *obs_shape]) -> wm.Root(latent [B, ...], logits [B, A], value)
    recurrent_inference(latent [B, ...], action [B] int64) -> wm.Step(latent, reward, logits, value)

``value`` and ``reward`` are either scalars ``[B]`` (``support_size=0``) or categorical logits
``[B, 2 * support_size + 1]`` over MuZero's scaled integer support (see ``wmfast.transforms``):
the config's ``support_size`` says which. The training loss reads these raw heads; the search
reads them through :class:`SearchModel`, which decodes supports to scalars.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from wmfast import transforms as T
from wmfast.mcts import Root, Step

__all__ = ["MLPNetwork", "ResNetwork", "SearchModel", "check_head", "scale_latent"]


def scale_latent(latent: torch.Tensor) -> torch.Tensor:
    """MuZero's latent min-max scaling: each sample's latent mapped to [0, 1]."""
    flat = latent.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    high = flat.max(dim=1, keepdim=True).values
    scaled = (flat - low) / (high - low).clamp_min(1e-5)
    return scaled.view_as(latent)


def _head_size(support_size: int) -> int:
    return 2 * support_size + 1 if support_size > 0 else 1


def _scalar_head(out: torch.Tensor, support_size: int) -> torch.Tensor:
    return out if support_size > 0 else out.squeeze(-1)


def check_head(head: torch.Tensor, B: int, support_size: int, name: str) -> None:
    """A value or reward head's shape: [B, 2 * support_size + 1] logits, or [B] scalars when
    support_size is 0; the error names the head."""
    expected = [B, 2 * support_size + 1] if support_size > 0 else [B]
    if list(head.shape) != expected:
        kind = f"categorical logits, support_size={support_size}" if support_size else "scalars"
        raise ValueError(f"{name} must have shape {expected} ({kind}), got {list(head.shape)}")


def _check_sizes(support_size: int, **sizes: int) -> None:
    """A network's constructor arguments: every size an int >= 1, support_size an int >= 0."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if isinstance(support_size, bool) or not isinstance(support_size, int) or support_size < 0:
        raise ValueError(f"support_size must be an int >= 0, got {support_size!r}")


def _zero_last_layers(*heads: nn.Sequential) -> None:
    """Zero-initialised last layers: uniform priors and zero values/rewards at the start."""
    for head in heads:
        last = head[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)


def _mlp(sizes: list[int], activate_last: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or activate_last:
            layers.append(nn.LayerNorm(sizes[i + 1]))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _Projection(nn.Module):
    """EfficientZero's consistency heads (SimSiam): a projection of the flattened latent and a
    predictor applied on the dynamics branch only."""

    def __init__(self, latent_size: int, size: int) -> None:
        super().__init__()
        self.projection = _mlp([latent_size, size, size])
        self.predictor = _mlp([size, size, size])

    def forward(self, latent: torch.Tensor, with_predictor: bool) -> torch.Tensor:
        z = self.projection(latent.flatten(1))
        return self.predictor(z) if with_predictor else z


class MLPNetwork(nn.Module):
    """MuZero's three functions as MLPs, for vector observations.

    representation: obs -> latent [B, latent_dim] (min-max scaled); dynamics: (latent, one-hot
    action) -> next latent (scaled) and reward; prediction: latent -> policy logits and value.

    Args:
      obs_dim: size of the (flattened) observation.
      num_actions: A.
      latent_dim: size of the latent state.
      hidden: width of the hidden layers.
      support_size: categorical value/reward heads over ``2 * support_size + 1`` atoms; 0 for
        scalar heads.
    """

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        latent_dim: int = 64,
        hidden: int = 64,
        support_size: int = 10,
    ) -> None:
        super().__init__()
        _check_sizes(support_size, obs_dim=obs_dim, num_actions=num_actions,
                     latent_dim=latent_dim, hidden=hidden)
        self.obs_dim, self.num_actions = obs_dim, num_actions
        self.latent_dim, self.support_size = latent_dim, support_size
        out = _head_size(support_size)
        self.representation = _mlp([obs_dim, hidden, latent_dim])
        self.dynamics = _mlp([latent_dim + num_actions, hidden, latent_dim])
        self.reward_head = _mlp([latent_dim, hidden, out])
        self.policy_head = _mlp([latent_dim, hidden, num_actions])
        self.value_head = _mlp([latent_dim, hidden, out])
        self.consistency = _Projection(latent_dim, hidden)
        _zero_last_layers(self.reward_head, self.policy_head, self.value_head)

    def _predict(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value = _scalar_head(self.value_head(latent), self.support_size)
        return self.policy_head(latent), value

    def project(self, latent: torch.Tensor, with_predictor: bool) -> torch.Tensor:
        """The consistency loss's projection of a latent (and predictor, for the dynamics
        branch)."""
        return self.consistency(latent, with_predictor)

    def initial_inference(self, obs: torch.Tensor) -> Root:
        latent = scale_latent(self.representation(obs.flatten(1)))
        logits, value = self._predict(latent)
        return Root(latent, logits, value)

    def recurrent_inference(self, latent: torch.Tensor, action: torch.Tensor) -> Step:
        one_hot = nn.functional.one_hot(action.long(), self.num_actions).to(latent.dtype)
        next_latent = scale_latent(self.dynamics(torch.cat([latent, one_hot], dim=1)))
        reward = _scalar_head(self.reward_head(next_latent), self.support_size)
        logits, value = self._predict(next_latent)
        return Step(next_latent, reward, logits, value)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class ResNetwork(nn.Module):
    """A small residual conv net for board games (observations ``[B, C, H, W]``).

    The latent is a ``[B, channels, H, W]`` feature map (min-max scaled); an action is given to
    the dynamics as one extra plane, 1 on the action's square when ``num_actions == H * W``
    (placement games such as TicTacToe), else filled with ``action / num_actions``.

    Args:
      obs_shape: (C, H, W).
      num_actions: A.
      channels, blocks: width and depth of the residual towers.
      support_size: as in MLPNetwork.
    """

    def __init__(
        self,
        obs_shape: tuple[int, int, int],
        num_actions: int,
        channels: int = 32,
        blocks: int = 2,
        support_size: int = 10,
    ) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"obs_shape must be (C, H, W), got {tuple(obs_shape)!r}")
        c, height, width = (int(v) for v in obs_shape)
        self.obs_shape, self.num_actions, self.support_size = (c, height, width), num_actions, support_size
        self.board = height * width
        out = _head_size(support_size)

        def tower(in_channels: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels), nn.ReLU(),
                *[_ResidualBlock(channels) for _ in range(blocks)])

        self.representation = tower(c)
        self.dynamics = tower(channels + 1)
        flat = channels * self.board
        self.reward_head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, out))
        self.policy_head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(),
                                         nn.Linear(64, num_actions))
        self.value_head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, out))
        self.consistency = _Projection(flat, 64)
        _zero_last_layers(self.reward_head, self.policy_head, self.value_head)

    def _predict(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy_head(latent), _scalar_head(self.value_head(latent), self.support_size)

    def _action_plane(self, action: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        B, _, height, width = like.shape
        if self.num_actions == self.board:
            plane = nn.functional.one_hot(action.long(), self.board).to(like.dtype)
            return plane.view(B, 1, height, width)
        return (action.to(like.dtype) / self.num_actions).view(B, 1, 1, 1).expand(B, 1, height, width)

    def project(self, latent: torch.Tensor, with_predictor: bool) -> torch.Tensor:
        """The consistency loss's projection of a latent (and predictor, for the dynamics
        branch)."""
        return self.consistency(latent, with_predictor)

    def initial_inference(self, obs: torch.Tensor) -> Root:
        latent = scale_latent(self.representation(obs))
        logits, value = self._predict(latent)
        return Root(latent, logits, value)

    def recurrent_inference(self, latent: torch.Tensor, action: torch.Tensor) -> Step:
        x = torch.cat([latent, self._action_plane(action, latent)], dim=1)
        next_latent = scale_latent(self.dynamics(x))
        reward = _scalar_head(self.reward_head(next_latent), self.support_size)
        logits, value = self._predict(next_latent)
        return Step(next_latent, reward, logits, value)


class SearchModel:
    """A network seen by ``wm.MCTS``/``wm.GumbelMCTS``: supports decoded to scalars, no autograd,
    and the two-player discount (-1: the value flips sign at each turn) when asked.

    Args:
      network: the MuZero network.
      support_size: 0 if its heads are scalars.
      two_player: alternating two-player zero-sum game (Step.discount = -1).
    """

    def __init__(self, network: Any, support_size: int, two_player: bool = False) -> None:
        self.network = network
        self.support_size = support_size
        self.two_player = two_player
        self._discount: torch.Tensor | None = None

    def _scalar(self, head: torch.Tensor, B: int, name: str) -> torch.Tensor:
        if self.support_size == 0:
            return head   # scalar heads: the search checks their shapes
        check_head(head, B, self.support_size, name)
        return T.support_to_scalar(head, self.support_size)

    @torch.no_grad()
    def initial_inference(self, obs: torch.Tensor) -> Root:
        root = self.network.initial_inference(obs)
        return Root(root.latent, root.logits,
                    self._scalar(root.value, obs.shape[0], "initial_inference value"))

    @torch.no_grad()
    def recurrent_inference(self, latent: torch.Tensor, action: torch.Tensor) -> Step:
        return self._decoded(self.network.recurrent_inference(latent, action), latent,
                             "recurrent_inference")

    def _decoded(self, step: Any, latent: torch.Tensor, name: str) -> Step:
        """``step`` (a network's Step from ``latent``) with its reward and value decoded and
        the two-player discount; ``name`` names the network function in errors."""
        B = latent.shape[0]
        discount = None
        if self.two_player:
            if self._discount is None or self._discount.shape[0] != B:
                self._discount = torch.full((B,), -1.0, device=latent.device)
            discount = self._discount
        if self.support_size == 0:
            return Step(step.latent, step.reward, step.logits, step.value, discount)
        check_head(step.reward, B, self.support_size, f"{name} reward")
        check_head(step.value, B, self.support_size, f"{name} value")
        # Both heads decoded by one call: half the small torch ops per simulation.
        scalars = T.support_to_scalar(torch.cat([step.reward, step.value]), self.support_size)
        return Step(step.latent, scalars[:B], step.logits, scalars[B:], discount)
