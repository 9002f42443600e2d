"""Reanalyse (MuZero Reanalyse, Schrittwieser et al. 2021): fresh search targets for stored
positions, computed with the current network by one batched search over the whole batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from wmfast.muzero.networks import SearchModel
from wmfast.muzero.replay import Replay

__all__ = ["reanalyse"]


def reanalyse(replay: Replay, model: SearchModel, search: Any, index: np.ndarray) -> None:
    """Re-searches the positions at storage indices ``index`` [B] and replaces their stored
    policy targets and root values (the value targets' bootstraps) in the replay.

    Args:
      replay: the replay holding the positions.
      model: the current network as the search sees it.
      search: a wm.MCTS / wm.GumbelMCTS (one search of B trees).
      index: [B] storage indices of valid positions.
    """
    index = np.asarray(index, np.int64)
    if index.ndim != 1 or len(index) == 0:
        raise ValueError(f"index must be a non-empty 1-D array, got shape {list(index.shape)}")
    if not replay.valid[index].all():
        raise ValueError("index must point at stored positions (some are empty or dropped)")
    obs = torch.as_tensor(replay.observations[index], dtype=torch.get_default_dtype())
    legal = replay.legal[index]
    extra = {}
    samples = getattr(replay, "samples", None)
    if samples is not None:   # Sampled MuZero: re-search over the stored root samples
        extra["root_actions"] = samples[index]
        if samples.ndim == 2:
            legal = np.ones_like(legal)   # discrete samples are legal by construction
    out = search.search(model, model.initial_inference(obs),
                        legal_actions=None if legal.all() else legal, **extra)
    replay.update_search(index, np.asarray(out.policy, np.float32),
                         np.asarray(out.root_value, np.float32))
