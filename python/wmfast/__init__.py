"""wmfast: fast planning for model-based reinforcement learning.

The planning loops run in C++ (``wmfast._core``, no torch) and model execution through libtorch
(``wmfast._torch``, loaded on first use and checked against the installed torch version).
"""

# torch first: it loads its own libgomp, which every later module must share.
import torch  # noqa: F401

from wmfast import diagnostics
from wmfast.cem import CEM, ICEM, MPPI, MPCAgent, Plan
from wmfast.imagination import Trajectory, imagine, lambda_return, lambda_return_weights
from wmfast.mcts import (
    MCTS,
    GumbelMCTS,
    QTransform,
    Root,
    SearchResult,
    SearchTree,
    Step,
    qtransform_by_min_max,
    qtransform_by_parent_and_siblings,
    qtransform_completed_by_mix_value,
    qtransform_running_min_max,
)
from wmfast.native import ExportError, NativeModel
from wmfast.sampled import SampledMCTS, SampledResult, SampledTree
from wmfast.stochastic_mcts import (
    Afterstate,
    StochasticMCTS,
    StochasticSearchResult,
    StochasticSearchTree,
)
from wmfast.tabular import PlanningSolution, TabularModel, TransitionMatrix

__version__ = "0.1.0"

__all__ = [
    "CEM",
    "ICEM",
    "MCTS",
    "MPPI",
    "Afterstate",
    "ExportError",
    "GumbelMCTS",
    "MPCAgent",
    "NativeModel",
    "Plan",
    "PlanningSolution",
    "QTransform",
    "Root",
    "SampledMCTS",
    "SampledResult",
    "SampledTree",
    "SearchResult",
    "SearchTree",
    "Step",
    "StochasticMCTS",
    "StochasticSearchResult",
    "StochasticSearchTree",
    "TabularModel",
    "Trajectory",
    "TransitionMatrix",
    "__version__",
    "diagnostics",
    "imagine",
    "lambda_return",
    "lambda_return_weights",
    "qtransform_by_min_max",
    "qtransform_by_parent_and_siblings",
    "qtransform_completed_by_mix_value",
    "qtransform_running_min_max",
]
