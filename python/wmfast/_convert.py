"""Conversion of user inputs (numpy arrays, torch tensors, lists, scalars), once.

The convention of every public entry point: torch tensors are taken as they are; numpy arrays
and (nested) sequences become CPU tensors, floating-point ones in ``torch.get_default_dtype()``
(so a float64 numpy array never reaches a float32 model by accident).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_NUMPY_OF_TORCH = {torch.float32: np.float32, torch.float64: np.float64,
                   torch.float16: np.float16}


def to_numpy(value: Any, name: str) -> np.ndarray:
    """A numpy view (or, for GPU tensors and Python sequences, a copy) of ``value``."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, torch.Tensor):
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


def to_tensor(value: Any, name: str) -> torch.Tensor:
    """``value`` as a torch tensor: a tensor as it is; a numpy array (shared when it can be) or a
    sequence as a CPU tensor, floating point in ``torch.get_default_dtype()``.

    Raises TypeError naming ``name`` for objects that are none of these, or hold no numbers.
    """
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        array = value
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{name} must be a torch tensor, a numpy array or a sequence of numbers, "
                f"got {type(value).__name__}"
            ) from error
    kind = array.dtype.kind
    if kind not in "biuf":
        raise TypeError(f"{name} must hold numbers or booleans, got {type(value).__name__} of "
                        f"dtype {array.dtype}")
    default = torch.get_default_dtype()
    if kind == "f":
        target = _NUMPY_OF_TORCH.get(default)
        if target is None:  # a default numpy cannot hold (bfloat16): through float32
            return torch.from_numpy(array.astype(np.float32)).to(default)
        if array.dtype != target:
            array = array.astype(target)  # a fresh, writable array
    if not array.flags.writeable:
        array = array.copy()  # torch.from_numpy warns about (and may write into) read-only arrays
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    try:
        return torch.from_numpy(array)
    except TypeError as error:  # dtypes torch lacks, e.g. uint32 in older torch
        raise TypeError(f"{name}: torch cannot hold numpy dtype {array.dtype}") from error
