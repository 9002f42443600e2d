"""Batched MuZero and Gumbel MuZero tree search over a learned model.

The search runs in C++ (``wmfast._torch``): B independent trees, one batched call of the model's
recurrent function per simulation, latents kept in a torch tensor on the model's device. This
module validates inputs, adapts the model and wraps the results; semantics follow mctx
(``muzero_policy`` / ``gumbel_muzero_policy``), whose stored trees the tests reproduce.

A model is an object with ``recurrent_inference(latent, action) -> Step`` or a plain function
with that signature::

    def recurrent_inference(latent, action):  # latent [B, ...], action [B] int64
        ...
        return wm.Step(next_latent, reward, logits, value, discount=None)

``Step.discount`` carries mctx's conventions: 0 ends an episode (nothing is backed up past a
terminal step), -1 flips the sign of the value for two-player zero-sum games; the edge discount
used by the search is ``discount * Step.discount``.

Results are torch tensors: CPU tensors that each result owns (writing to them or keeping them
changes no other result and no later search), whatever the model's device (the tree search runs
on the CPU); only ``SearchTree.latents`` stays on the model's device. Inputs may be torch tensors,
numpy arrays or lists; a numpy or list root latent becomes a CPU tensor, floating point in
``torch.get_default_dtype()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from wmfast import _torch_ext
from wmfast._convert import to_tensor
from wmfast._validate import INT32_MAX, as_bool, as_float, as_int
from wmfast.native import NativeModel

__all__ = [
    "MCTS",
    "GumbelMCTS",
    "QTransform",
    "Root",
    "SearchResult",
    "SearchTree",
    "Step",
    "qtransform_by_min_max",
    "qtransform_by_parent_and_siblings",
    "qtransform_completed_by_mix_value",
    "qtransform_running_min_max",
]


@dataclass(frozen=True)
class Step:
    """What a model's recurrent function returns for a batch of B (latent, action) pairs.

    Attributes:
      latent: [B, ...] next latent state (same trailing shape, dtype and device as the root's).
      reward: [B] reward of the transition.
      logits: [B, A] prior policy logits at the next state (-inf masks an action).
      value: [B] value estimate of the next state.
      discount: [B] per-step discount: 1 normally, 0 after a terminal step, -1 for a two-player
        zero-sum turn change; None means 1 everywhere.
    """

    latent: torch.Tensor
    reward: torch.Tensor
    logits: torch.Tensor
    value: torch.Tensor
    discount: torch.Tensor | None = None


@dataclass(frozen=True)
class Root:
    """The roots of B searches, usually from the model's representation/prediction networks.

    Attributes:
      latent: [B, ...] latent state of each root: a torch tensor on the model's device, handed to
        the model as it is (its dtype included); a numpy array or a list becomes a CPU tensor,
        floating point in ``torch.get_default_dtype()`` (a float64 numpy latent reaches a float32
        model as float32).
      logits: [B, A] prior policy logits (torch tensor, numpy array or list, any real dtype).
      value: [B] value estimates (likewise).
    """

    latent: Any
    logits: Any
    value: Any


@dataclass(frozen=True)
class QTransform:
    """How Q-values are normalised for selection; build one with the ``qtransform_*`` functions.

    Attributes:
      kind: "parent_and_siblings", "min_max", "running_min_max" or "completed_by_mix_value".
      min_value, max_value: bounds of "min_value" (Q is mapped by (Q - min) / (max - min)).
      value_scale, maxvisit_init, rescale_values, use_mixed_value, epsilon: parameters of
        mctx's qtransform_completed_by_mix_value (Gumbel MuZero) and the normalisations.
    """

    kind: Literal["parent_and_siblings", "min_max", "running_min_max", "completed_by_mix_value"]
    min_value: float = -1.0
    max_value: float = 1.0
    value_scale: float = 0.1
    maxvisit_init: float = 50.0
    rescale_values: bool = True
    use_mixed_value: bool = True
    epsilon: float = 1e-8


# The smallest normalisation denominator (epsilon, max_value - min_value) accepted: its inverse
# stays far from float32's overflow (the core checks the same bound).
MIN_EPSILON = 1e-30
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _epsilon(epsilon: Any) -> float:
    return as_float(epsilon, "epsilon", MIN_EPSILON, 1.0)


def qtransform_by_parent_and_siblings(epsilon: float = 1e-8) -> QTransform:
    """mctx's default for MuZero: Q normalised by the min/max over V(parent) and its Q(s, .).

    ``epsilon`` (in [1e-30, 1]) is the smallest denominator of that normalisation."""
    return QTransform("parent_and_siblings", epsilon=_epsilon(epsilon))


def qtransform_by_min_max(min_value: float, max_value: float) -> QTransform:
    """Q normalised by fixed bounds, ``(Q - min_value) / (max_value - min_value)``; the bounds
    are finite float32 numbers at least 1e-30 apart."""
    low = as_float(min_value, "min_value", -_FLOAT32_MAX, _FLOAT32_MAX)
    high = as_float(max_value, "max_value", -_FLOAT32_MAX, _FLOAT32_MAX)
    span = float(np.float32(high)) - float(np.float32(low))
    if not (MIN_EPSILON <= span <= _FLOAT32_MAX):
        raise ValueError(
            f"qtransform_by_min_max: max_value - min_value must be in [{MIN_EPSILON}, 3.4e38] "
            f"(float32), got min_value={min_value}, max_value={max_value}"
        )
    return QTransform("min_max", min_value=low, max_value=high)


def qtransform_running_min_max() -> QTransform:
    """MuZero's MinMaxStats: Q normalised by the min/max of all Q backed up in the tree so far."""
    return QTransform("running_min_max")


def qtransform_completed_by_mix_value(
    value_scale: float = 0.1,
    maxvisit_init: float = 50.0,
    rescale_values: bool = True,
    use_mixed_value: bool = True,
    epsilon: float = 1e-8,
) -> QTransform:
    """Gumbel MuZero's completed Q: unvisited actions get the mixed value, then
    ``(maxvisit_init + max visits) * value_scale * Q`` (rescaled to [0, 1] first if asked)."""
    return QTransform(
        "completed_by_mix_value",
        value_scale=as_float(value_scale, "value_scale", 0.0, 1e30),
        maxvisit_init=as_float(maxvisit_init, "maxvisit_init", 0.0, 1e30),
        rescale_values=as_bool(rescale_values, "rescale_values"),
        use_mixed_value=as_bool(use_mixed_value, "use_mixed_value"),
        epsilon=_epsilon(epsilon),
    )


_QTRANSFORM_NAMES = {
    "parent_and_siblings": qtransform_by_parent_and_siblings,
    "running_min_max": qtransform_running_min_max,
    "completed_by_mix_value": qtransform_completed_by_mix_value,
}

_TREE_FIELDS = (
    "node_visits",
    "raw_values",
    "node_values",
    "parents",
    "action_from_parent",
    "children_index",
    "children_prior_logits",
    "children_priors",
    "children_visits",
    "children_values",
    "children_rewards",
    "children_discounts",
    "root_invalid_actions",
)


@dataclass(frozen=True)
class SearchTree:
    """The B search trees in mctx's ``Tree`` layout, as torch tensors.

    Node 0 is the root; -1 marks "no parent" and "not expanded". N is the node capacity. The
    tensors are CPU copies made when ``SearchResult.tree`` is first read (``latents`` a copy on
    the model's device): writing to them changes no later search reusing these trees.

    Attributes:
      node_visits: [B, N] int32 visit count of each node.
      raw_values: [B, N] float32 the model's value of each node.
      node_values: [B, N] float32 mean backed-up value.
      parents: [B, N] int32 parent node.
      action_from_parent: [B, N] int32 action leading to the node.
      children_index: [B, N, A] int32 child node of each action.
      children_prior_logits: [B, N, A] float32 prior logits (root: masked and noised).
      children_priors: [B, N, A] float32 softmax of the prior logits.
      children_visits: [B, N, A] int32 visits through each action.
      children_values: [B, N, A] float32 value of the child.
      children_rewards: [B, N, A] float32 reward of each action.
      children_discounts: [B, N, A] float32 discount of each action (discount * Step.discount).
      root_invalid_actions: [B, A] bool illegal root actions.
      latents: [B, N, ...] latent of every node (the root latent's dtype, on the model's device;
        zero for nodes never evaluated).
    """

    node_visits: torch.Tensor
    raw_values: torch.Tensor
    node_values: torch.Tensor
    parents: torch.Tensor
    action_from_parent: torch.Tensor
    children_index: torch.Tensor
    children_prior_logits: torch.Tensor
    children_priors: torch.Tensor
    children_visits: torch.Tensor
    children_values: torch.Tensor
    children_rewards: torch.Tensor
    children_discounts: torch.Tensor
    root_invalid_actions: torch.Tensor
    latents: torch.Tensor = field(repr=False)

    @property
    def q_values(self) -> torch.Tensor:
        """[B, N, A] float32 Q(s, a) = children_rewards + children_discounts * children_values
        (a new tensor)."""
        return self.children_rewards + self.children_discounts * self.children_values

    def to_dict(self) -> dict[str, torch.Tensor]:
        """The tensors by name (mctx field names), without the latents."""
        return {name: getattr(self, name) for name in _TREE_FIELDS}

    def to_dot(self, batch_index: int = 0, max_nodes: int = 200) -> str:
        """Graphviz source of tree ``batch_index`` (nodes: visits and value; edges: action,
        reward, prior). Render with ``dot -Tsvg``."""
        b = int(batch_index)
        if not 0 <= b < self.node_visits.shape[0]:
            raise IndexError(
                f"batch_index must be in [0, {self.node_visits.shape[0]}), got {batch_index}"
            )
        visits, values = self.node_visits[b].tolist(), self.node_values[b].tolist()
        children = self.children_index[b].tolist()
        rewards, priors = self.children_rewards[b].tolist(), self.children_priors[b].tolist()
        lines = ["digraph search_tree {", '  node [shape=box, fontname="monospace"];']
        shown = 0
        stack = [0]
        while stack and shown < max_nodes:
            n = stack.pop()
            shown += 1
            lines.append(f'  n{n} [label="#{n}\\nN={visits[n]} V={values[n]:.3f}"];')
            for a, child in enumerate(children[n]):
                if child < 0:
                    continue
                lines.append(
                    f'  n{n} -> n{child} [label="a={a} r={rewards[n][a]:.3f} '
                    f'p={priors[n][a]:.3f}"];'
                )
                stack.append(child)
        lines.append("}")
        return "\n".join(lines)


@dataclass(frozen=True)
class SearchResult:
    """The outcome of a batched search, as CPU torch tensors.

    Each tensor owns its memory (the search's result buffers, handed over without a copy): it
    may be written to or kept, and no other result or later search (``reuse=`` included) sees
    the change. ``.numpy()`` gives a numpy view of one.

    Attributes:
      action: [B] int64 action to take (MCTS: sampled from visits^(1/temperature); Gumbel:
        the best considered action).
      visit_counts: [B, A] int32 root visit counts.
      policy: [B, A] float32 policy target: the visit distribution (MCTS) or the completed-Q
        improved policy (Gumbel).
      root_value: [B] float32 searched value of the root.
      q_values: [B, A] float32 Q(root, a) (0 for unvisited actions).
      gumbel: [B, A] float32 root Gumbel noise (GumbelMCTS only, else None).
      tree: the search trees (a SearchTree of tensors, copied on first access).
    """

    action: torch.Tensor
    visit_counts: torch.Tensor
    policy: torch.Tensor
    root_value: torch.Tensor
    q_values: torch.Tensor
    gumbel: torch.Tensor | None = None
    _state: Any = field(default=None, repr=False, compare=False)
    _planner: Any = field(default=None, repr=False, compare=False)
    _tree: Any = field(default=None, repr=False, compare=False)

    @property
    def tree(self) -> SearchTree:
        if self._tree is None:
            arrays = self._state.tree_arrays()
            tree = SearchTree(
                **{name: arrays[name] for name in _TREE_FIELDS}, latents=self._state.latents
            )
            object.__setattr__(self, "_tree", tree)
        return self._tree

    def to_dict(self) -> dict[str, torch.Tensor]:
        """Results and tree tensors by name (``gumbel`` included for GumbelMCTS)."""
        out = {
            "action": self.action,
            "visit_counts": self.visit_counts,
            "policy": self.policy,
            "root_value": self.root_value,
            "q_values": self.q_values,
        }
        if self.gumbel is not None:
            out["gumbel"] = self.gumbel
        out.update(self.tree.to_dict())
        return out

    def to_dot(self, batch_index: int = 0, max_nodes: int = 200) -> str:
        """Graphviz source of one tree (see SearchTree.to_dot)."""
        return self.tree.to_dot(batch_index, max_nodes)


def _float_array(value: Any, name: str, shape: tuple[int, ...]):
    """A root input with its type and shape checked: a floating-point torch tensor as it is (the
    bindings convert it to float32 on the CPU), anything else as a float32 C-contiguous numpy
    array. The core checks that it is finite, in one vectorised pass (numpy's took 8 µs per
    array)."""
    if isinstance(value, torch.Tensor):
        if not (value.is_floating_point()):
            raise TypeError(f"{name} must hold floating-point numbers, got dtype {value.dtype}")
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
        return value
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must be a torch tensor or numpy array, got {type(value).__name__}"
        ) from error
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if tuple(array.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(array.shape)}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _model_fn(model: Any) -> Callable[..., Any]:
    if isinstance(model, NativeModel):
        return model._native  # runs in C++, without Python in the loop
    fn = getattr(model, "recurrent_inference", None)
    if fn is not None and callable(fn):
        return fn
    if callable(model):
        return model
    raise TypeError(
        "model must have a recurrent_inference(latent, action) -> wmfast.Step method or be a "
        f"function with that signature, got {type(model).__name__}"
    )


def _root_latent(root: Any) -> torch.Tensor:
    """The root's latent as a tensor with a batch of at least one root; root must have the
    fields of a wmfast.Root."""
    for name in ("latent", "logits", "value"):
        if not hasattr(root, name):
            raise TypeError(
                f"root must be a wmfast.Root(latent, logits, value), got "
                f"{type(root).__name__} without .{name}"
            )
    latent = root.latent
    if not isinstance(latent, torch.Tensor):
        latent = to_tensor(latent, "root.latent")
    if latent.dim() < 1:
        raise ValueError("root.latent must have a leading batch dimension, got a scalar")
    if latent.shape[0] < 1:
        raise ValueError("root.latent holds no roots (batch size 0)")
    return latent


def _root_inputs(root: Any, A: int) -> tuple[torch.Tensor, Any, Any]:
    """The root's latent (a tensor), logits [B, A] and value [B], checked (see _float_array)."""
    latent = _root_latent(root)
    B = latent.shape[0]
    raw_logits = root.logits
    logits_shape = tuple(raw_logits.shape if hasattr(raw_logits, "shape") else np.shape(raw_logits))
    if len(logits_shape) == 2 and logits_shape[0] == B and logits_shape[1] != A:
        raise ValueError(
            f"root.logits has {logits_shape[1]} actions (shape {list(logits_shape)}) but "
            f"num_actions={A}"
        )
    logits = _float_array(raw_logits, "root.logits", (B, A))
    value = _float_array(root.value, "root.value", (B,))
    return latent, logits, value


def _invalid_mask(legal_actions: Any, B: int, A: int) -> np.ndarray | None:
    """[B, A] uint8, 1 for illegal root actions, from legal_actions (None: all legal)."""
    if legal_actions is None:
        return None
    legal = legal_actions
    if isinstance(legal, torch.Tensor):
        legal = legal.detach().cpu().numpy()
    legal = np.asarray(legal)
    if legal.dtype.kind not in "biu":
        raise TypeError(
            f"legal_actions must hold booleans (or 0/1 integers), got dtype {legal.dtype}"
        )
    if legal.shape != (B, A):
        raise ValueError(
            f"legal_actions must have shape {[B, A]} (batch, num_actions), got "
            f"{list(legal.shape)}"
        )
    # A root with no legal action is the core's error (it names the first such tree).
    return np.ascontiguousarray(legal == 0, dtype=np.uint8)


class _Planner:
    """Shared input handling of MCTS and GumbelMCTS."""

    _gumbel = False

    def __init__(self, num_actions: int, num_simulations: int, **settings: Any) -> None:
        self._ext = _torch_ext.load()
        num_actions = as_int(num_actions, "num_actions", 1, INT32_MAX)
        # Node indices are int32: a tree holds num_simulations + 1 nodes (more when reusing).
        num_simulations = as_int(num_simulations, "num_simulations", 1, 2**30)
        max_depth = settings.pop("max_depth")
        if max_depth is not None:
            max_depth = as_int(max_depth, "max_depth", 1, INT32_MAX)
        qtransform = settings.pop("qtransform")
        if isinstance(qtransform, str):
            if qtransform not in _QTRANSFORM_NAMES:
                raise ValueError(
                    f"qtransform must be one of {sorted(_QTRANSFORM_NAMES)} or a QTransform, "
                    f"got {qtransform!r}"
                )
            qtransform = _QTRANSFORM_NAMES[qtransform]()
        if not isinstance(qtransform, QTransform):
            raise TypeError(
                f"qtransform must be a QTransform or its name, got {type(qtransform).__name__}"
            )
        config = self._ext.MctsConfig()
        config.num_actions = int(num_actions)
        config.num_simulations = int(num_simulations)
        config.max_depth = 0 if max_depth is None else int(max_depth)
        config.gumbel = self._gumbel
        kinds = ("parent_and_siblings", "min_max", "running_min_max", "completed_by_mix_value")
        if qtransform.kind not in kinds:
            raise ValueError(f"qtransform.kind must be one of {list(kinds)}, got {qtransform.kind!r}")
        config.qtransform = getattr(self._ext.QTransform, qtransform.kind.upper())
        for name in ("min_value", "max_value", "value_scale", "maxvisit_init", "epsilon"):
            value = as_float(getattr(qtransform, name), f"qtransform.{name}")
            if abs(value) > _FLOAT32_MAX:
                raise ValueError(f"qtransform.{name} must be a finite float32 number, got {value}")
            setattr(config, name, value)
        config.rescale_values = as_bool(qtransform.rescale_values, "qtransform.rescale_values")
        config.use_mixed_value = as_bool(qtransform.use_mixed_value, "qtransform.use_mixed_value")
        seed = as_int(settings.pop("seed"), "seed")
        config.seed = seed % (1 << 64)
        config.num_threads = as_int(settings.pop("num_threads"), "num_threads", 1, 1024)
        if "max_num_considered_actions" in settings:
            config.max_num_considered_actions = settings.pop("max_num_considered_actions")
        if "discount" in settings:
            settings["discount"] = as_float(settings["discount"], "discount", 0.0, 1.0)
        for name, value in settings.items():
            value = as_float(value, name)
            if abs(value) > _FLOAT32_MAX:
                raise ValueError(f"{name} must be a finite float32 number, got {value}")
            setattr(config, name, value)
        config.validate()
        self.config = config
        self.qtransform = qtransform
        self.num_actions = int(num_actions)
        self.num_simulations = int(num_simulations)
        self._searches = 0

    def _search(
        self,
        model: Any,
        root: Root | None,
        legal_actions: Any,
        reuse: SearchResult | None,
        action_taken: Any,
        gumbel: Any,
    ) -> SearchResult:
        fn = _model_fn(model)
        A = self.num_actions
        latent = logits = value = None
        if reuse is not None and (not isinstance(reuse, SearchResult) or reuse._state is None):
            raise TypeError(
                f"reuse must be the SearchResult of a previous search, got {type(reuse).__name__}"
            )
        if root is None:
            if reuse is None:
                raise ValueError("root is required (it may be omitted only with reuse=)")
            B = reuse.action.shape[0]
        else:
            latent, logits, value = _root_inputs(root, A)
            B = latent.shape[0]
        invalid = _invalid_mask(legal_actions, B, A)
        taken = None
        state = None
        if reuse is not None:
            if reuse._planner is not type(self):
                raise ValueError(
                    f"reuse must come from a {type(self).__name__} search, got a result of "
                    f"{getattr(reuse._planner, '__name__', reuse._planner)}"
                )
            if reuse.visit_counts.shape[1] != A:
                raise ValueError(
                    f"reuse: the previous search had {reuse.visit_counts.shape[1]} actions, "
                    f"num_actions={A}"
                )
            if reuse.action.shape[0] != B:
                raise ValueError(
                    f"reuse: the previous search had {reuse.action.shape[0]} trees, root.latent "
                    f"has {B}"
                )
            if action_taken is None:
                raise ValueError("action_taken is required with reuse: the action played per tree")
            taken = action_taken
            if isinstance(taken, torch.Tensor):
                taken = taken.detach().cpu().numpy()
            taken = np.asarray(taken).reshape(-1) if np.ndim(taken) == 0 else np.asarray(taken)
            if taken.dtype.kind not in "iu":
                raise TypeError(f"action_taken must hold integers, got dtype {taken.dtype}")
            if taken.shape != (B,):
                raise ValueError(f"action_taken must have shape [{B}], got {list(taken.shape)}")
            out_of_range = (taken < -1) | (taken >= A)
            if out_of_range.any():
                raise ValueError(
                    f"action_taken must be in [0, {A}) (or -1: start that tree afresh), got "
                    f"{int(taken[out_of_range][0])}"
                )
            if root is None and (taken == -1).any():
                raise ValueError(
                    f"action_taken[{int(np.flatnonzero(taken == -1)[0])}] is -1 (start afresh), "
                    "which needs a root to start from"
                )
            taken = np.ascontiguousarray(taken, dtype=np.int64)
            previous_device = reuse._state.latent_device
            if latent is not None and latent.device != previous_device:
                raise ValueError(
                    f"root.latent is on {latent.device} but the reused search's latents are on "
                    f"{previous_device}"
                )
            state = reuse._state
        elif action_taken is not None:
            raise ValueError("action_taken is only meaningful with reuse=")
        gumbel_array = None
        if gumbel is not None:
            gumbel_array = _float_array(gumbel, "gumbel", (B, A))
        stream = self._searches
        self._searches += 1
        state = self._ext.mcts_search(
            self.config, fn, latent, logits, value, invalid, gumbel_array, state, taken, stream
        )
        return _result(state, type(self))


def _result(state: Any, planner: type) -> SearchResult:
    # Tensors that own the search's result buffers (moved out of it: no copy).
    return SearchResult(*state.take_results(), _state=state, _planner=planner)


class MCTS(_Planner):
    """Batched MuZero search: pUCT, root Dirichlet noise, normalised Q, per-step discounts.

    Args:
      num_actions: A.
      num_simulations: simulations per search (each is one batched model call).
      discount: multiplies the model's Step.discount on every edge.
      pb_c_init, pb_c_base: c1 and c2 of the pUCT formula.
      dirichlet_alpha, dirichlet_fraction: root noise (fraction 0 turns it off); it is spread
        over the legal actions.
      seed: seed of the noise and of the action sampling; the same seed gives bit-identical
        results, each search of one planner drawing a fresh stream.
      qtransform: a QTransform or its name ("parent_and_siblings", the default, or
        "running_min_max"); ``qtransform_by_min_max(lo, hi)`` for fixed bounds.
      max_depth: maximum edges from the root to a leaf (None: unlimited).
      temperature: action ~ visit_counts^(1/temperature); 0 takes the most visited action.
      num_threads: threads sharing the trees for selection and backup (at most one per 32
        trees: below that, waking a thread costs more than the work it takes over). With a CPU
        wm.NativeModel (num_runners >= num_threads) each thread searches its own shard of trees,
        model calls included.
    """

    def __init__(
        self,
        num_actions: int,
        num_simulations: int,
        discount: float = 1.0,
        pb_c_init: float = 1.25,
        pb_c_base: float = 19652.0,
        dirichlet_alpha: float = 0.3,
        dirichlet_fraction: float = 0.25,
        seed: int = 0,
        qtransform: QTransform | str = "parent_and_siblings",
        max_depth: int | None = None,
        temperature: float = 1.0,
        num_threads: int = 1,
    ) -> None:
        kind = qtransform.kind if isinstance(qtransform, QTransform) else qtransform
        if kind == "completed_by_mix_value":
            raise ValueError(
                "qtransform: completed_by_mix_value is Gumbel MuZero's transform; use GumbelMCTS"
            )
        super().__init__(
            num_actions,
            num_simulations,
            discount=discount,
            pb_c_init=pb_c_init,
            pb_c_base=pb_c_base,
            dirichlet_alpha=dirichlet_alpha,
            dirichlet_fraction=dirichlet_fraction,
            seed=seed,
            qtransform=qtransform,
            max_depth=max_depth,
            temperature=temperature,
            num_threads=num_threads,
        )

    def search(
        self,
        model: Any,
        root: Root | None,
        legal_actions: Any = None,
        reuse: SearchResult | None = None,
        action_taken: Any = None,
    ) -> SearchResult:
        """Searches from B roots.

        Args:
          model: ``recurrent_inference(latent [B, ...], action [B] int64) -> Step`` (method or
            function).
          root: the roots; with ``reuse`` it may be None (the subtree roots are kept).
          legal_actions: [B, A] bool (or 0/1 integers), legal root actions (None: all legal);
            a torch tensor, numpy array or list, like every array argument.
          reuse: the previous SearchResult of this planner; the search continues from the
            subtree under ``action_taken`` (statistics and latents are kept; with a root, the
            root's latent, logits and value replace the subtree root's).
          action_taken: [B] int, the action played in each environment since ``reuse``; -1
            starts that tree afresh from its root (its episode ended and the environment was
            reset), keeping nothing of the previous search.

        Returns:
          a SearchResult of CPU tensors: action [B] int64, visit_counts [B, A] int32, policy,
          q_values [B, A] float32, root_value [B] float32, and the trees (``.tree``).
        """
        return self._search(model, root, legal_actions, reuse, action_taken, None)


class GumbelMCTS(_Planner):
    """Batched Gumbel MuZero search (Danihelka et al., ICLR 2022).

    Gumbel-top-k and Sequential Halving at the root, deterministic selection inside the tree; the
    policy target is the completed-Q improved policy. Tree reuse is not offered: Sequential
    Halving budgets the root visits of one search.

    Args:
      num_actions, num_simulations, discount, seed, max_depth, num_threads: as in MCTS.
      max_num_considered_actions: actions sampled at the root (fewer if fewer are legal).
      gumbel_scale: scale of the root Gumbel noise (0 for deterministic evaluation).
      qtransform: ``qtransform_completed_by_mix_value(...)`` (the default uses its defaults).
    """

    _gumbel = True

    def __init__(
        self,
        num_actions: int,
        num_simulations: int,
        max_num_considered_actions: int = 16,
        gumbel_scale: float = 1.0,
        discount: float = 1.0,
        seed: int = 0,
        qtransform: QTransform | str | None = None,
        max_depth: int | None = None,
        num_threads: int = 1,
    ) -> None:
        if qtransform is None:
            qtransform = qtransform_completed_by_mix_value()
        kind = qtransform if isinstance(qtransform, str) else getattr(qtransform, "kind", None)
        if kind != "completed_by_mix_value":
            raise ValueError(
                f"qtransform: GumbelMCTS uses qtransform_completed_by_mix_value(...), got {kind!r}"
            )
        max_num_considered_actions = as_int(
            max_num_considered_actions, "max_num_considered_actions", 1, INT32_MAX
        )
        super().__init__(
            num_actions,
            num_simulations,
            gumbel_scale=gumbel_scale,
            discount=discount,
            seed=seed,
            qtransform=qtransform,
            max_depth=max_depth,
            num_threads=num_threads,
            max_num_considered_actions=int(max_num_considered_actions),
        )

    def search(
        self,
        model: Any,
        root: Root,
        legal_actions: Any = None,
        gumbel: Any = None,
    ) -> SearchResult:
        """Searches from B roots.

        Args:
          model: ``recurrent_inference(latent [B, ...], action [B] int64) -> Step``.
          root: the roots.
          legal_actions: [B, A] bool (or 0/1 integers), legal root actions (None: all legal).
          gumbel: [B, A] Gumbel noise to use instead of sampling it (e.g. to reproduce another
            implementation); None samples ``gumbel_scale * Gumbel(0, 1)`` from the seed.

        Returns:
          a SearchResult of CPU tensors: action [B] int64 (the best considered action),
          visit_counts [B, A] int32, policy [B, A] float32 (the completed-Q improved policy),
          q_values [B, A] float32, root_value [B] float32, gumbel [B, A] float32 (the noise
          used), and the trees (``.tree``).
        """
        if root is None:
            raise ValueError("root is required")
        return self._search(model, root, legal_actions, None, None, gumbel)
