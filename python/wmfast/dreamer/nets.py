"""Networks of the reference Dreamer: MLPs, vector encoder/decoder, two-hot and continue heads,
actor and critic with a slow copy.

Every hidden layer is Linear (no bias) -> LayerNorm -> SiLU, as in DreamerV3. Output layers
of the reward and value heads start at zero (``outscale=0``), so their first predictions are
exactly 0 (the two-hot decode of a uniform distribution).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from wmfast import transforms as T
from wmfast.dreamer.distributions import DiagNormal, OneHotStraightThrough

__all__ = [
    "MLP",
    "Actor",
    "ContinueHead",
    "Critic",
    "MLPDecoder",
    "MLPEncoder",
    "TwoHotHead",
]


class MLP(nn.Module):
    """``layers`` hidden blocks of ``units`` (Linear -> LayerNorm -> SiLU), then a Linear to
    ``out_dim`` (``None``: no output layer, the last hidden activation is the output)."""

    def __init__(self, in_dim: int, out_dim: int | None, units: int = 256, layers: int = 2,
                 outscale: float = 1.0):
        super().__init__()
        blocks: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, units, bias=False), nn.LayerNorm(units, eps=1e-3),
                       nn.SiLU()]
            width = units
        self.hidden = nn.Sequential(*blocks)
        self.out_dim = width if out_dim is None else out_dim
        self.out = None
        if out_dim is not None:
            self.out = nn.Linear(width, out_dim)
            if outscale == 0.0:
                nn.init.zeros_(self.out.weight)
                nn.init.zeros_(self.out.bias)
            elif outscale != 1.0:
                with torch.no_grad():
                    self.out.weight.mul_(outscale)
                    self.out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hidden(x)
        return x if self.out is None else self.out(x)


class MLPEncoder(nn.Module):
    """Vector observations ``[..., obs_dim]`` -> embeddings ``[..., units]`` (symlog inputs)."""

    def __init__(self, obs_dim: int, units: int = 256, layers: int = 2):
        super().__init__()
        self.obs_dim = obs_dim
        self.net = MLP(obs_dim, None, units, layers)
        self.embed_dim = self.net.out_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(T.symlog(obs))


class MLPDecoder(nn.Module):
    """Features ``[..., feat]`` -> symlog-space observation predictions ``[..., obs_dim]``;
    ``loss`` is the squared error to ``symlog(obs)`` summed over ``obs_dim``."""

    def __init__(self, feat_dim: int, obs_dim: int, units: int = 256, layers: int = 2):
        super().__init__()
        self.net = MLP(feat_dim, obs_dim, units, layers)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat)

    def loss(self, feat: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """``[...]`` per-step reconstruction loss."""
        return (self(feat) - T.symlog(obs)).square().sum(-1)

    def predict(self, feat: torch.Tensor) -> torch.Tensor:
        """Observations in raw space."""
        return T.symexp(self(feat))


class TwoHotHead(nn.Module):
    """Features -> logits ``[..., num_bins]`` of a two-hot scalar (reward, value).

    ``predict`` decodes the mean; ``loss(feat, target)`` is the cross-entropy to the two-hot
    code of ``target`` (detached), per step.
    """

    def __init__(self, feat_dim: int, bins: T.Bins, units: int = 256, layers: int = 2):
        super().__init__()
        self.bins = bins
        self.net = MLP(feat_dim, bins.num_bins, units, layers, outscale=0.0)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat)

    def predict(self, feat: torch.Tensor) -> torch.Tensor:
        return T.two_hot_decode(self(feat), self.bins, from_logits=True)

    def loss_from_logits(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        code = T.two_hot(target.detach(), self.bins)
        return -(code * F.log_softmax(logits, dim=-1)).sum(-1)

    def loss(self, feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_from_logits(self(feat), target)


class ContinueHead(nn.Module):
    """Features -> Bernoulli logits of "the episode continues" ``[...]``."""

    def __init__(self, feat_dim: int, units: int = 256, layers: int = 2):
        super().__init__()
        self.net = MLP(feat_dim, 1, units, layers)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat).squeeze(-1)

    def predict(self, feat: torch.Tensor) -> torch.Tensor:
        """Continue probabilities ``[...]``."""
        return torch.sigmoid(self(feat))

    def loss(self, feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self(feat), target.detach(), reduction="none")


class Actor(nn.Module):
    """The policy: features -> a distribution over actions.

    Discrete actions (``num_actions``): a one-hot categorical with ``unimix`` uniform mixed in
    whose ``rsample`` is straight-through (one-hot values, softmax gradients). Continuous
    actions (``action_dim``): a Normal with mean ``tanh`` and std in ``[min_std, max_std]``,
    actions clipped to [-1, 1] by the caller. Actions are one-hot vectors ``[..., A]`` or
    vectors ``[..., action_dim]``, the input the RSSM takes.
    """

    def __init__(self, feat_dim: int, action_dim: int, discrete: bool, units: int = 256,
                 layers: int = 2, unimix: float = 0.01, min_std: float = 0.1,
                 max_std: float = 1.0):
        super().__init__()
        self.discrete = discrete
        self.action_dim = action_dim
        self.unimix = unimix
        self.min_std, self.max_std = min_std, max_std
        self.net = MLP(feat_dim, action_dim * (1 if discrete else 2), units, layers,
                       outscale=0.01)

    def forward(self, feat: torch.Tensor) -> OneHotStraightThrough | DiagNormal:
        out = self.net(feat)
        if self.discrete:
            return OneHotStraightThrough(out, self.unimix)
        mean, std = out.chunk(2, -1)
        std = (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std
        return DiagNormal(torch.tanh(mean), std)


class Critic(nn.Module):
    """A two-hot value head with a slow (EMA) copy used for targets and regularisation."""

    def __init__(self, feat_dim: int, bins: T.Bins, units: int = 256, layers: int = 2):
        super().__init__()
        self.head = TwoHotHead(feat_dim, bins, units, layers)
        self.slow = copy.deepcopy(self.head)
        self.slow.requires_grad_(False)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.head(feat)

    def predict(self, feat: torch.Tensor) -> torch.Tensor:
        return self.head.predict(feat)

    def predict_slow(self, feat: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.slow.predict(feat)

    @torch.no_grad()
    def update_slow(self, rate: float) -> None:
        """``slow <- rate * head + (1 - rate) * slow`` (parameters and buffers)."""
        for slow, fast in zip(self.slow.parameters(), self.head.parameters()):
            slow.lerp_(fast, rate)
        for slow, fast in zip(self.slow.buffers(), self.head.buffers()):
            slow.copy_(fast)
