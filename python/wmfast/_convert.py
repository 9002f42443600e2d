"""Conversion of user inputs (numpy arrays, torch tensors, lists, scalars) to numpy, once."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(value: Any, name: str) -> np.ndarray:
    """A numpy view (or, for GPU tensors and Python sequences, a copy) of ``value``."""
    if isinstance(value, np.ndarray):
        return value
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must be a numpy array, a torch tensor or a sequence, "
            f"got {type(value).__name__}"
        ) from error


def to_vector(value: Any, name: str) -> np.ndarray:
    """``to_numpy`` for a batch argument: scalars become length-1 arrays."""
    array = to_numpy(value, name)
    return array.reshape(1) if array.ndim == 0 else array
