"""A careful, vectorised pure-torch CEM: the baseline wmfast.CEM is measured against.

Batched over B problems, one model call per horizon step over B x population, time-major
candidates (each step's actions are a contiguous [B * population, A] slice), torch's own
generator for the noise, topk + gather for the elites, and the best sequence seen returned
(like wmfast.CEM). For an ensemble (``ensemble_size``) the candidates are split over the members
by contiguous blocks (TS-infinity with one particle), the layout the model takes directly.
"""

from __future__ import annotations

import torch


class TorchCEM:
    def __init__(self, horizon, action_dim, population, elites, iterations, low=-1.0, high=1.0,
                 init_std=None, seed=0, ensemble_size=None):
        self.h, self.a, self.p, self.k = horizon, action_dim, population, elites
        self.iters = iterations
        self.low, self.high = float(low), float(high)
        self.init_std = (self.high - self.low) / 4 if init_std is None else init_std
        self.gen = torch.Generator().manual_seed(seed)
        self.ensemble_size = ensemble_size

    @torch.no_grad()
    def plan(self, dynamics, state):
        h, a, p, k = self.h, self.a, self.p, self.k
        b = state.shape[0]
        mean = torch.full((h, b, 1, a), (self.low + self.high) / 2)
        std = torch.full((h, b, 1, a), self.init_std)
        s0 = state.repeat_interleave(p, dim=0)  # [B * P, obs]
        e = self.ensemble_size
        if e:
            s0 = s0.view(b, e, p // e, -1).transpose(0, 1).reshape(e, b * p // e, -1)
        best_returns = torch.full((b,), -float("inf"))
        best_actions = torch.zeros(h, b, a)
        for _ in range(self.iters):
            noise = torch.randn(h, b, p, a, generator=self.gen)
            actions = noise.mul_(std).add_(mean).clamp_(self.low, self.high)  # [H, B, P, A]
            step_actions = actions
            if e:
                step_actions = (actions.view(h, b, e, p // e, a).transpose(1, 2)
                                .reshape(h, e, b * p // e, a))
            s = s0
            returns = torch.zeros(s0.shape[:-1])
            for t in range(h):
                s, r = dynamics(s, step_actions[t].reshape(*s0.shape[:-1], a))
                returns += r
            if e:
                returns = returns.view(e, b, p // e).transpose(0, 1)
            returns = returns.reshape(b, p)
            values, index = returns.topk(k, dim=1)
            elites = actions.gather(2, index.view(1, b, k, 1).expand(h, b, k, a))
            mean = elites.mean(2, keepdim=True)
            std = elites.std(2, keepdim=True, unbiased=False)
            better = values[:, 0] > best_returns
            best_returns = torch.where(better, values[:, 0], best_returns)
            best_actions = torch.where(better.view(1, b, 1), elites[:, :, 0], best_actions)
        return best_actions.transpose(0, 1), best_returns
