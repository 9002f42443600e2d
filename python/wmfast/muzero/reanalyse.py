"""Reanalyse (MuZero Reanalyse, Schrittwieser et al. 2021): fresh search targets for stored
positions, computed with the current network by one batched search over the whole batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from wmfast.muzero.networks import SearchModel
from wmfast.muzero.replay import Replay

__all__ = ["reanalyse", "search_targets"]


def search_targets(model: SearchModel, search: Any, observations: np.ndarray, legal: np.ndarray,
                   samples: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One batched search of stored positions with the current network: (policy targets [B, A]
    or [B, K], root values [B]). ``samples``: Sampled MuZero's stored root samples, searched
    again instead of new draws (the policy target is over them)."""
    obs = torch.as_tensor(observations, dtype=torch.get_default_dtype())
    extra = {}
    if samples is not None:
        extra["root_actions"] = samples
        if samples.ndim == 2:
            legal = np.ones_like(legal)   # discrete samples are legal by construction
    with torch.no_grad():
        out = search.search(model, model.initial_inference(obs),
                            legal_actions=None if legal.all() else legal, **extra)
    return np.asarray(out.policy, np.float32), np.asarray(out.root_value, np.float32)


def reanalyse(replay: Replay, model: SearchModel, search: Any, index: np.ndarray) -> None:
    """Re-searches the positions at storage indices ``index`` [B] and replaces their stored
    policy targets and root values (the value targets' bootstraps) in the replay.

    Args:
      replay: the replay holding the positions.
      model: the current network as the search sees it.
      search: a wm.MCTS / wm.GumbelMCTS / wm.StochasticMCTS / wm.SampledMCTS (one search of B
        trees).
      index: [B] storage indices of valid positions.
    """
    index = np.asarray(index, np.int64)
    if index.ndim != 1 or len(index) == 0:
        raise ValueError(f"index must be a non-empty 1-D array, got shape {list(index.shape)}")
    if not replay.valid[index].all():
        raise ValueError("index must point at stored positions (some are empty or dropped)")
    samples = getattr(replay, "samples", None)   # Sampled MuZero's stored root samples
    policies, root_values = search_targets(model, search, replay.observations[index],
                                           replay.legal[index],
                                           None if samples is None else samples[index])
    replay.update_search(index, policies, root_values)
