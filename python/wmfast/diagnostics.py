"""World-model diagnostics.

:func:`open_loop_error` measures how a Dreamer world model's predictions compound: from the
posterior state at every step of real episodes it rolls the prior forward under the episode's
real actions (never seeing another observation) and compares the decoded observations and
rewards with the real ones, h steps ahead, for every horizon h asked for.
:func:`plot_open_loop_error` draws the curve.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["open_loop_error", "plot_open_loop_error"]


def _episode_tensor(episode: Mapping[str, Any], key: str, index: int, shape: tuple,
                    device: torch.device) -> torch.Tensor:
    if key not in episode:
        raise ValueError(f"episodes[{index}] must have the key {key!r}, got {sorted(episode)}")
    value = episode[key]
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.asarray(value, np.float32))
    tensor = torch.as_tensor(value)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    if tuple(tensor.shape) != shape:
        raise ValueError(
            f"episodes[{index}][{key!r}] must have shape {list(shape)}, got {list(tensor.shape)}")
    return tensor.to(device)


@torch.no_grad()
def open_loop_error(model: Any, episodes: Sequence[Mapping[str, Any]],
                    horizons: Iterable[int] = range(1, 16)) -> dict[str, torch.Tensor]:
    """The compounding-error curve of a world model on real episodes.

    For every episode and every step t with ``t + h <= T - 1`` for the largest h, the model
    filters ``obs[:t+1]`` (posterior modes), then predicts ``obs[t+h]`` and ``rewards[t+h]``
    by rolling its prior (modes) under the real ``actions[t+1 .. t+h]``.

    Args:
      model: a :class:`wmfast.dreamer.WorldModel` (anything with its ``encoder``, ``rssm``,
        ``decoder`` and ``reward``).
      episodes: a sequence of dicts, each with ``"obs"`` ``[T, obs_dim]``, ``"actions"``
        ``[T, action_dim]`` (``actions[t]`` taken before ``obs[t]``, e.g. one-hot; row 0 is
        ignored) and ``"rewards"`` ``[T]`` (``rewards[t]`` received on arriving at ``obs[t]``).
        Tensors, numpy arrays or nested lists.
      horizons: the prediction horizons h >= 1 to report.

    Returns a dict of tensors: ``"horizons"`` ``[K]``; ``"obs_mse"`` ``[K]`` (squared error in
    raw observation space, averaged over dimensions and start states); ``"obs_mse_per_dim"``
    ``[K, obs_dim]``; ``"reward_mae"`` ``[K]`` (absolute reward error); ``"count"`` ``[K]``
    (start states averaged over; every horizon uses the same starts).

    Raises ValueError for no episodes, no horizons, a horizon < 1, missing keys, wrong shapes,
    or episodes all too short for the largest horizon.
    """
    horizons = [int(h) for h in horizons]
    if not horizons:
        raise ValueError("horizons must hold at least one horizon >= 1, got none")
    if min(horizons) < 1:
        raise ValueError(f"horizons must all be >= 1, got {min(horizons)}")
    if isinstance(episodes, Mapping) or len(episodes) == 0:
        raise ValueError("episodes must be a non-empty sequence of episode dicts")
    longest = max(horizons)
    device = next(model.parameters()).device
    obs_dim, action_dim = model.obs_dim, model.action_dim
    rssm = model.rssm
    starts_obs, starts_state, targets_obs, targets_reward, future_actions = [], [], [], [], []
    for index, episode in enumerate(episodes):
        obs = episode.get("obs") if isinstance(episode, Mapping) else None
        if obs is None:
            raise ValueError(f"episodes[{index}] must be a dict with 'obs', 'actions', 'rewards'")
        length = int(np.shape(obs)[0])
        obs = _episode_tensor(episode, "obs", index, (length, obs_dim), device)
        actions = _episode_tensor(episode, "actions", index, (length, action_dim), device)
        rewards = _episode_tensor(episode, "rewards", index, (length,), device)
        starts = length - longest
        if starts < 1:
            continue
        # Posterior modes of the whole episode, one filtering pass.
        state = rssm.initial(1)
        posts = []
        for t in range(starts):
            state, _ = rssm.observe_step(state, actions[t:t + 1], model.encoder(obs[t:t + 1]),
                                         torch.ones(1, device=device) if t == 0 else None,
                                         sample=False)
            posts.append(state)
        starts_state.append({k: torch.cat([p[k] for p in posts]) for k in posts[0]})
        index_t = torch.arange(starts, device=device)
        ahead = index_t[None, :] + torch.arange(1, longest + 1, device=device)[:, None]
        targets_obs.append(obs[ahead])          # [L, S, obs_dim]
        targets_reward.append(rewards[ahead])   # [L, S]
        future_actions.append(actions[ahead])   # [L, S, action_dim]
        starts_obs.append(starts)
    if not starts_state:
        raise ValueError(
            f"episodes must have more than max(horizons) = {longest} steps for at least one "
            f"start state; the longest has {max(int(np.shape(e['obs'])[0]) for e in episodes)}")
    state = {k: torch.cat([s[k] for s in starts_state]) for k in starts_state[0]}
    target_obs = torch.cat(targets_obs, 1)
    target_reward = torch.cat(targets_reward, 1)
    actions = torch.cat(future_actions, 1)
    obs_err, reward_err = [], []
    for step in range(longest):
        state = rssm.imagine_step(state, actions[step], sample=False)
        feat = rssm.feature(state)
        obs_err.append((model.decoder.predict(feat) - target_obs[step]).square().mean(0))
        reward_err.append((model.reward.predict(feat) - target_reward[step]).abs().mean())
    pick = torch.tensor([h - 1 for h in horizons], device=device)
    per_dim = torch.stack(obs_err)[pick]
    count = sum(starts_obs)
    return {"horizons": torch.tensor(horizons), "obs_mse": per_dim.mean(-1).cpu(),
            "obs_mse_per_dim": per_dim.cpu(), "reward_mae": torch.stack(reward_err)[pick].cpu(),
            "count": torch.full((len(horizons),), count)}


def plot_open_loop_error(curve: Mapping[str, torch.Tensor], path: str | os.PathLike,
                         title: str = "Open-loop prediction error",
                         obs_names: Sequence[str] | None = None) -> None:
    """Writes a PNG of :func:`open_loop_error`'s curve: observation error per dimension and
    reward error against the horizon."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key in ("horizons", "obs_mse_per_dim", "reward_mae"):
        if key not in curve:
            raise ValueError(f"curve must be open_loop_error's result with {key!r}")
    horizons = curve["horizons"].tolist()
    per_dim = curve["obs_mse_per_dim"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i in range(per_dim.shape[1]):
        name = obs_names[i] if obs_names is not None and i < len(obs_names) else f"obs[{i}]"
        axes[0].plot(horizons, per_dim[:, i].tolist(), "o-", ms=3, label=name)
    axes[0].set(xlabel="horizon (steps)", ylabel="squared error", yscale="log",
                title="observations")
    axes[0].legend(fontsize=8)
    axes[1].plot(horizons, curve["reward_mae"].tolist(), "o-", ms=3, color="C3")
    axes[1].set(xlabel="horizon (steps)", ylabel="absolute error", title="reward")
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(os.fspath(path), dpi=110)
    plt.close(figure)
