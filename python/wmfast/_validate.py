"""Checks of scalar arguments shared by the public entry points.

Every check raises TypeError (wrong kind: a bool, a float or a string where an int is expected)
or ValueError (out of range) naming the argument, the expected and the received value, before
anything is changed or handed to the C++ core (whose fixed-width integers would otherwise give
pybind11's "incompatible function arguments").
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def as_int(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python int in [low, high]: ints and numpy integers only (not bools, floats
    or strings)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def as_float(value: Any, name: str, low: float | None = None, high: float | None = None, *,
             finite: bool = True, low_open: bool = False) -> float:
    """``value`` as a float in [low, high] (or (low, high] with low_open): real numbers only (not
    bools or strings); NaN always and infinities (unless ``finite=False``) rejected."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{name} must be a finite number, got {value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        left = "(" if low_open else "["
        bounds = (f"in {left}{low:g}, {high:g}]" if low is not None and high is not None
                  else f"{'>' if low_open else '>='} {low:g}" if low is not None
                  else f"<= {high:g}")
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def as_bool(value: Any, name: str) -> bool:
    """``value`` as a bool: Python and numpy booleans only."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} ({value!r})")
    return bool(value)
