"""wmfast: fast planning for model-based reinforcement learning.

The planning loops run in C++ (``wmfast._core``, no torch) and model execution through libtorch
(``wmfast._torch``, loaded on first use and checked against the installed torch version).
"""

# torch first: it loads its own libgomp, which every later module must share.
import torch  # noqa: F401

from wmfast.cem import CEM, ICEM, MPPI, MPCAgent, Plan
from wmfast.tabular import PlanningSolution, TabularModel, TransitionMatrix

__version__ = "0.1.0"

__all__ = [
    "CEM",
    "ICEM",
    "MPCAgent",
    "MPPI",
    "Plan",
    "PlanningSolution",
    "TabularModel",
    "TransitionMatrix",
    "__version__",
]
