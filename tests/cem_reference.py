"""A plain pure-torch CEM / MPPI / iCEM, written from the papers, to check wmfast.cem against.

Given the same standard normal draws ([iterations, H, B, population, A]) it must produce the same
plans as the C++ planner (non-ensemble models; the ensemble modes are tested by their effect).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def colored_noise_filter(horizon: int, beta: float) -> np.ndarray:
    """Cholesky factor of the covariance of `colorednoise.powerlaw_psd_gaussian(beta, H)`.

    Built the way that package samples: Gaussian Fourier coefficients with std f^(-beta/2)
    (f clipped at 1/H; the zero and Nyquist bins real, scaled by sqrt 2), then an inverse real
    FFT. The covariance is the sum of the outer products of the images of the independent
    coefficients, normalised to unit variance.
    """
    freqs = np.fft.rfftfreq(horizon)
    freqs[freqs < 1.0 / horizon] = 1.0 / horizon
    scale = freqs ** (-beta / 2.0)
    columns = []
    last = len(freqs) - 1
    for k in range(len(freqs)):
        real_only = k == 0 or (horizon % 2 == 0 and k == last)
        for part in ((1.0,) if real_only else (1.0, 1j)):
            coeffs = np.zeros(len(freqs), dtype=complex)
            coeffs[k] = scale[k] * part * (math.sqrt(2.0) if real_only else 1.0)
            columns.append(np.fft.irfft(coeffs, n=horizon))
    m = np.stack(columns, axis=1)
    cov = m @ m.T
    cov /= cov[0, 0]
    return np.linalg.cholesky(cov)


def rollout(dynamics, state, actions, discount, value=None):
    """Returns [B, n] of action sequences [H, B, n, A] from states [B, obs]."""
    h, b, n, a = actions.shape
    s = state.unsqueeze(1).expand(b, n, *state.shape[1:]).reshape(b * n, *state.shape[1:])
    returns = torch.zeros(b * n, dtype=state.dtype)
    weight = 1.0
    for t in range(h):
        s, r = dynamics(s, actions[t].reshape(b * n, a))
        returns += weight * r
        weight *= discount
    if value is not None:
        returns += weight * value(s)
    return returns.view(b, n)


def reference_plan(dynamics, state, noise, *, method="cem", elites=8, low=-1.0, high=1.0,
                   init_std=0.5, alpha=0.0, discount=1.0, temperature=1.0, update_std=True,
                   return_mean=False, noise_beta=0.0, keep_elites=0.0, min_std=0.0,
                   value=None):
    """One plan; returns dict(actions [B,H,A], returns [B], mean, std [B,H,A])."""
    iterations, h, b, pop, a = noise.shape
    dtype = state.dtype
    low_t = (torch.full((a,), low, dtype=dtype) if np.isscalar(low)
             else torch.tensor(low, dtype=dtype))
    high_t = (torch.full((a,), high, dtype=dtype) if np.isscalar(high)
              else torch.tensor(high, dtype=dtype))
    mean = ((low_t + high_t) / 2).expand(h, b, a).clone()
    std = torch.full((h, b, a), init_std, dtype=dtype)
    k = pop if elites is None else elites
    n_keep = round(keep_elites * k)
    filt = torch.tensor(colored_noise_filter(h, noise_beta), dtype=dtype) if noise_beta else None
    kept = None
    best_returns = best_actions = None
    for it in range(iterations):
        eps = noise[it].to(dtype)
        if filt is not None:
            eps = (filt @ eps.reshape(h, -1)).view(h, b, pop, a)
        samples = torch.maximum(torch.minimum(mean[:, :, None] + std[:, :, None] * eps, high_t),
                                low_t)
        if kept is not None:
            samples[:, :, :n_keep] = kept
        returns = rollout(dynamics, state, samples, discount, value)
        values, index = returns.sort(dim=1, descending=True)
        values, index = values[:, :k], index[:, :k]
        elite = torch.stack([samples[:, i, index[i]] for i in range(b)], dim=1)  # [H, B, k, A]
        if best_returns is None:
            best_returns, best_actions = values[:, 0].clone(), elite[:, :, 0].clone()
        else:
            better = values[:, 0] > best_returns
            best_returns = torch.where(better, values[:, 0], best_returns)
            best_actions = torch.where(better[None, :, None], elite[:, :, 0], best_actions)
        if method == "mppi":
            w = torch.softmax(values / temperature, dim=1)  # [B, k]
            new_mean = (w[None, :, :, None] * elite).sum(2)
            if update_std:
                new_std = (w[None, :, :, None] * (elite - new_mean[:, :, None]) ** 2).sum(2).sqrt()
            else:
                new_std = std
        else:
            new_mean = elite.mean(2)
            new_std = elite.var(2, unbiased=False).sqrt()
        mean = alpha * mean + (1 - alpha) * new_mean
        std = (alpha * std + (1 - alpha) * new_std).clamp_min(min_std)
        if n_keep:
            kept = elite[:, :, :n_keep].clone()
    if return_mean:
        actions = torch.maximum(torch.minimum(mean, high_t), low_t)
        plan_returns = (w * values).sum(1) if method == "mppi" else best_returns
    else:
        actions, plan_returns = best_actions, best_returns
    return {
        "actions": actions.transpose(0, 1),
        "returns": plan_returns,
        "mean": mean.transpose(0, 1),
        "std": std.transpose(0, 1),
    }
