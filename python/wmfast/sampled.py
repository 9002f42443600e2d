"""Batched Sampled MuZero search (Hubert et al., "Learning and Planning in Complex Action Spaces",
ICML 2021): pUCT over K actions sampled per node from the model's policy, for continuous or
large discrete action spaces.

The search runs in C++ (``wmfast._torch``, cpp/wmfast/mcts/sampled_search.h), like wm.MCTS: B
independent trees, one batched model call per simulation. The model is the one wm.MCTS takes,
``recurrent_inference(latent, action) -> wm.Step``, with two differences:

- Continuous actions (``action_dim`` D): the model receives ``action`` as a float32 tensor
  [B, D], and its policy, ``Step.logits`` (and ``Root.logits``), is a diagonal Gaussian given as
  [B, 2 * D]: the mean, then the log standard deviation. Each node draws K actions from it
  (i.i.d., clipped to [action_low, action_high]); with the proposal equal to the policy, the
  corrected prior (beta-hat / beta) * pi of the paper is beta-hat, 1/K per sample.
- Discrete actions (``num_actions`` A): ``Step.logits`` [B, A] as usual; each node draws K
  distinct actions by Gumbel-top-k (without replacement) and their prior is the policy restricted
  to them, renormalised (at K = A the search is exactly wm.MCTS). Children are kept in ascending
  action order.

Results are CPU torch tensors that own their memory. The policy target is the visit
distribution over the K root samples, returned with the samples themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from wmfast import _torch_ext
from wmfast._validate import INT32_MAX, as_float, as_int
from wmfast.mcts import (
    _FLOAT32_MAX,
    _QTRANSFORM_NAMES,
    QTransform,
    Root,
    _float_array,
    _invalid_mask,
    _model_fn,
    _root_latent,
)

__all__ = ["SampledMCTS", "SampledResult", "SampledTree"]

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
    "children_actions",
    "num_children",
)


@dataclass(frozen=True)
class SampledTree:
    """The B trees of a Sampled MuZero search, in mctx's ``Tree`` layout over the K sampled
    children of each node, as CPU torch tensors (copies).

    Node 0 is the root; -1 marks "no parent" and "not expanded". N = num_simulations + 1.

    Attributes:
      node_visits, raw_values, node_values, parents: [B, N] as in wm.SearchTree.
      action_from_parent: [B, N] int32 index (in [0, K)) of the parent's child leading here.
      children_index, children_visits: [B, N, K] int32.
      children_prior_logits, children_priors: [B, N, K] float32 corrected prior of each sample
        (log and normalised; root: with Dirichlet noise).
      children_values, children_rewards, children_discounts: [B, N, K] float32.
      children_actions: the sampled action of each child: [B, N, K, D] float32 (NaN where a node
        has no samples) or [B, N, K] int64 (-1).
      num_children: [B, N] int32 samples drawn at each node (0 until the search descended from
        it; discrete nodes with fewer than K actions of finite logit have fewer).
      latents: [B, N, ...] latent of every node (zero for nodes never evaluated).
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
    children_actions: torch.Tensor
    num_children: torch.Tensor
    latents: torch.Tensor = field(repr=False)

    @property
    def q_values(self) -> torch.Tensor:
        """[B, N, K] float32 Q(s, a_k) = reward + discount * child value (a new tensor)."""
        return self.children_rewards + self.children_discounts * self.children_values

    def to_dict(self) -> dict[str, torch.Tensor]:
        """The tensors by name, without the latents."""
        return {name: getattr(self, name) for name in _TREE_FIELDS}

    def to_dot(self, batch_index: int = 0, max_nodes: int = 200) -> str:
        """Graphviz source of tree ``batch_index``: nodes with visits and value, edges with the
        sampled action, reward and prior. Render with ``dot -Tsvg``."""
        b = int(batch_index)
        if not 0 <= b < self.node_visits.shape[0]:
            raise IndexError(
                f"batch_index must be in [0, {self.node_visits.shape[0]}), got {batch_index}"
            )
        visits, values = self.node_visits[b].tolist(), self.node_values[b].tolist()
        children = self.children_index[b].tolist()
        rewards, priors = self.children_rewards[b].tolist(), self.children_priors[b].tolist()
        actions = self.children_actions[b].tolist()
        lines = ["digraph sampled_search_tree {", '  node [shape=box, fontname="monospace"];']
        shown, stack = 0, [0]
        while stack and shown < max_nodes:
            n = stack.pop()
            shown += 1
            lines.append(f'  n{n} [label="#{n}\\nN={visits[n]} V={values[n]:.3f}"];')
            for k, child in enumerate(children[n]):
                if child < 0:
                    continue
                a = actions[n][k]
                shown_action = (
                    "[" + ", ".join(f"{x:.3f}" for x in a) + "]" if isinstance(a, list) else a
                )
                lines.append(
                    f'  n{n} -> n{child} [label="a={shown_action} r={rewards[n][k]:.3f} '
                    f'p={priors[n][k]:.3f}"];'
                )
                stack.append(child)
        lines.append("}")
        return "\n".join(lines)


@dataclass(frozen=True)
class SampledResult:
    """The outcome of a batched Sampled MuZero search, as CPU torch tensors (each owns its
    memory).

    Attributes:
      action: the chosen action: [B, D] float32 (continuous) or [B] int64 (discrete); sampled
        from visits^(1/temperature) over the root samples (temperature 0: the most visited).
      index: [B] int64 which of the K root samples was chosen.
      actions: the K root samples: [B, K, D] float32 or [B, K] int64 (-1 past num_children).
      visit_counts: [B, K] int32 root visits of each sample.
      policy: [B, K] float32 policy target: the visit distribution over the samples.
      priors: [B, K] float32 the corrected prior of each sample used by pUCT (with root noise).
      q_values: [B, K] float32 Q(root, sample) (0 unvisited).
      root_value: [B] float32 searched value of the root.
      tree: the trees (a SampledTree, copied on first access).
    """

    action: torch.Tensor
    index: torch.Tensor
    actions: torch.Tensor
    visit_counts: torch.Tensor
    policy: torch.Tensor
    priors: torch.Tensor
    q_values: torch.Tensor
    root_value: torch.Tensor
    _state: Any = field(default=None, repr=False, compare=False)
    _tree: Any = field(default=None, repr=False, compare=False)

    @property
    def tree(self) -> SampledTree:
        if self._tree is None:
            arrays = self._state.tree_arrays()
            # Nodes never descended from have no samples: their prior logits were never written.
            unsampled = arrays["num_children"] == 0
            arrays["children_prior_logits"][unsampled] = 0.0
            tree = SampledTree(
                **{name: arrays[name] for name in _TREE_FIELDS}, latents=self._state.latents
            )
            object.__setattr__(self, "_tree", tree)
        return self._tree

    def to_dict(self) -> dict[str, torch.Tensor]:
        """Results and tree tensors by name."""
        out = {
            name: getattr(self, name)
            for name in (
                "action", "index", "actions", "visit_counts", "policy", "priors", "q_values",
                "root_value",
            )
        }
        out.update(self.tree.to_dict())
        return out

    def to_dot(self, batch_index: int = 0, max_nodes: int = 200) -> str:
        """Graphviz source of one tree (see SampledTree.to_dot)."""
        return self.tree.to_dot(batch_index, max_nodes)


def _bounds(value: Any, name: str, dim: int) -> list[float]:
    """A scalar or [dim] bound as a list of finite float32 numbers."""
    array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim == 0:
        array = np.full(dim, float(array))
    if array.shape != (dim,):
        raise ValueError(
            f"{name} must be a number or have shape [{dim}] (action_dim), got {list(array.shape)}"
        )
    if not np.all(np.isfinite(array)) or np.any(np.abs(array) > _FLOAT32_MAX):
        raise ValueError(f"{name} must hold finite float32 numbers, got {array.tolist()}")
    return [float(x) for x in array]


class SampledMCTS:
    """Batched Sampled MuZero search over K sampled actions per node.

    Args:
      num_samples: K, actions sampled at each node (discrete: at most num_actions).
      num_simulations: simulations per search (each one batched model call).
      action_dim: D for continuous actions; None (with num_actions None too) takes D from the
        first root's logits ([B, 2 * D]).
      action_low, action_high: bounds of continuous actions (numbers or [D]); samples are
        clipped to them.
      num_actions: A for discrete actions (instead of action_dim).
      discount, pb_c_init, pb_c_base, seed, qtransform, max_depth, temperature, num_threads: as
        in wm.MCTS ("completed_by_mix_value" is not offered; with a CPU wm.NativeModel of
        num_runners >= num_threads each thread searches its own shard of trees, model calls
        included). Results do not depend on num_threads.
      dirichlet_alpha, dirichlet_fraction: root noise mixed into the K sampled priors (fraction 0
        turns it off).
      unvisited_q: the value of an unvisited child in pUCT: "min" (mctx / MuZero: a normalised
        value of 0) or "parent_value" (its parent's value, as KataGo's first-play urgency and
        EfficientZero do). With the uniform priors of continuous samples, "min" stops trying new
        samples once one looks good; "parent_value" keeps trying them while their exploration
        bonus exceeds the best sample's lead (the bandit test and the pendulum demo use it).
    """

    def __init__(
        self,
        num_samples: int,
        num_simulations: int,
        action_dim: int | None = None,
        action_low: Any = -1.0,
        action_high: Any = 1.0,
        num_actions: int | None = None,
        discount: float = 1.0,
        pb_c_init: float = 1.25,
        pb_c_base: float = 19652.0,
        dirichlet_alpha: float = 0.3,
        dirichlet_fraction: float = 0.25,
        seed: int = 0,
        qtransform: QTransform | str = "parent_and_siblings",
        max_depth: int | None = None,
        temperature: float = 1.0,
        unvisited_q: str = "min",
        num_threads: int = 1,
    ) -> None:
        self._ext = _torch_ext.load()
        config = self._ext.SampledConfig()
        config.num_samples = as_int(num_samples, "num_samples", 1, INT32_MAX)
        config.num_simulations = as_int(num_simulations, "num_simulations", 1, 2**30)
        if action_dim is not None and num_actions is not None:
            raise ValueError(
                f"give action_dim (continuous actions) or num_actions (discrete actions), not "
                f"both: got action_dim={action_dim}, num_actions={num_actions}"
            )
        if num_actions is not None:
            config.num_actions = as_int(num_actions, "num_actions", 1, INT32_MAX)
            if config.num_samples > config.num_actions:
                raise ValueError(
                    f"num_samples must be <= num_actions={config.num_actions} (discrete actions "
                    f"are sampled without replacement), got {config.num_samples}"
                )
        elif action_dim is not None:
            config.action_dim = as_int(action_dim, "action_dim", 1, 2**20)
        self._action_low, self._action_high = action_low, action_high
        if max_depth is not None:
            max_depth = as_int(max_depth, "max_depth", 1, INT32_MAX)
        config.max_depth = 0 if max_depth is None else max_depth
        if isinstance(qtransform, str):
            if qtransform not in _QTRANSFORM_NAMES or qtransform == "completed_by_mix_value":
                raise ValueError(
                    "qtransform must be 'parent_and_siblings', 'running_min_max' or a "
                    f"QTransform (qtransform_by_min_max), got {qtransform!r}"
                )
            qtransform = _QTRANSFORM_NAMES[qtransform]()
        if not isinstance(qtransform, QTransform):
            raise TypeError(
                f"qtransform must be a QTransform or its name, got {type(qtransform).__name__}"
            )
        if qtransform.kind not in ("parent_and_siblings", "min_max", "running_min_max"):
            raise ValueError(
                "qtransform.kind must be 'parent_and_siblings', 'min_max' or 'running_min_max', "
                f"got {qtransform.kind!r}"
            )
        config.qtransform = getattr(self._ext.QTransform, qtransform.kind.upper())
        for name in ("min_value", "max_value", "epsilon"):
            setattr(config, name, as_float(getattr(qtransform, name), f"qtransform.{name}"))
        config.discount = as_float(discount, "discount", 0.0, 1.0)
        for name, value in (
            ("pb_c_init", pb_c_init),
            ("pb_c_base", pb_c_base),
            ("dirichlet_alpha", dirichlet_alpha),
            ("dirichlet_fraction", dirichlet_fraction),
            ("temperature", temperature),
        ):
            value = as_float(value, name)
            if abs(value) > _FLOAT32_MAX:
                raise ValueError(f"{name} must be a finite float32 number, got {value}")
            setattr(config, name, value)
        if unvisited_q not in ("min", "parent_value"):
            raise ValueError(f"unvisited_q must be 'min' or 'parent_value', got {unvisited_q!r}")
        config.unvisited_parent_value = unvisited_q == "parent_value"
        config.seed = as_int(seed, "seed") % (1 << 64)
        config.num_threads = as_int(num_threads, "num_threads", 1, 1024)
        if config.action_dim > 0:
            self._set_bounds(config, config.action_dim)
        if config.action_dim > 0 or config.num_actions > 0:
            config.validate()
        else:
            # Continuous with D from the first root: everything else is checked now.
            probe = self._ext.SampledConfig()
            for name in dir(config):
                if not name.startswith("_") and name != "validate":
                    setattr(probe, name, getattr(config, name))
            probe.action_dim = 1
            self._set_bounds(probe, 1)
            probe.validate()
        self.config = config
        self.qtransform = qtransform
        self.num_samples = config.num_samples
        self.num_simulations = config.num_simulations
        self._searches = 0

    def _set_bounds(self, config: Any, dim: int) -> None:
        low = _bounds(self._action_low, "action_low", dim)
        high = _bounds(self._action_high, "action_high", dim)
        for d in range(dim):
            if not low[d] < high[d]:
                raise ValueError(
                    f"action_low must be below action_high in every dimension, got "
                    f"action_low[{d}]={low[d]}, action_high[{d}]={high[d]}"
                )
        config.action_low, config.action_high = low, high

    @property
    def continuous(self) -> bool:
        """Whether actions are continuous (num_actions was not given)."""
        return self.config.num_actions == 0

    @property
    def action_dim(self) -> int | None:
        """D (None until the first search when it is taken from the root)."""
        return self.config.action_dim or None if self.continuous else None

    @property
    def num_actions(self) -> int | None:
        """A for discrete actions, else None."""
        return None if self.continuous else self.config.num_actions

    def search(
        self,
        model: Any,
        root: Root | None,
        legal_actions: Any = None,
        root_actions: Any = None,
        reuse: SampledResult | None = None,
        action_taken: Any = None,
    ) -> SampledResult:
        """Searches from B roots.

        Args:
          model: ``recurrent_inference(latent [B, ...], action) -> Step`` (method, function or
            wm.NativeModel); action is [B, D] float32 (continuous) or [B] int64 (discrete).
          root: wm.Root(latent [B, ...], logits, value [B]); logits [B, 2 * D] (mean, log_std)
            or [B, A].
          legal_actions: [B, A] bool legal root actions (discrete only; None: all legal).
          root_actions: the K root samples to use instead of drawing them (e.g. stored samples
            to reanalyse): [B, K, D] inside the bounds, or [B, K] distinct legal actions.
            Not with reuse.
          reuse: the SampledResult of this planner's previous search: each tree continues
            from the subtree under the root sample it played (as wm.MCTS's reuse). With a
            root, the new roots take its policy and value (kept samples and their statistics
            stay; discrete priors are recomputed from the new logits); root None keeps the
            subtree roots' own. legal_actions drops kept root samples that are now illegal.
          action_taken: [B] int, with reuse: the index (in [0, K)) of the root sample played
            in each tree (e.g. the previous result's ``index``), or -1 to start that tree
            afresh from ``root``. A sample never expanded also starts afresh (root needed).

        Returns:
          a SampledResult of CPU tensors (action, index, actions, visit_counts, policy, priors,
          q_values, root_value) and the trees (``.tree``).
        """
        fn = _model_fn(model)
        if reuse is not None and (not isinstance(reuse, SampledResult) or reuse._state is None):
            raise TypeError(
                f"reuse must be the SampledResult of a previous search, got {type(reuse).__name__}"
            )
        if reuse is None and action_taken is not None:
            raise ValueError("action_taken is only meaningful with reuse=")
        if root is None:
            if reuse is None:
                raise ValueError("root is required (it may be omitted only with reuse=)")
            return self._continue(fn, None, reuse, action_taken, legal_actions, root_actions)
        if reuse is not None:
            return self._continue(fn, root, reuse, action_taken, legal_actions, root_actions)
        latent = _root_latent(root)
        B = latent.shape[0]
        config = self.config
        raw_logits = root.logits
        shape = tuple(raw_logits.shape if hasattr(raw_logits, "shape") else np.shape(raw_logits))
        if self.continuous and config.action_dim == 0:
            if len(shape) != 2 or shape[0] != B or shape[1] < 2 or shape[1] % 2:
                raise ValueError(
                    f"root.logits must have shape [{B}, 2 * action_dim] (the Gaussian policy's "
                    f"mean, then log_std), got {list(shape)}"
                )
            dim = shape[1] // 2
            fresh = self._ext.SampledConfig()
            for name in dir(config):
                if not name.startswith("_") and name != "validate":
                    setattr(fresh, name, getattr(config, name))
            fresh.action_dim = dim
            self._set_bounds(fresh, dim)
            fresh.validate()
            config = fresh  # kept once a search succeeded
        K, D, A = config.num_samples, config.action_dim, config.num_actions
        width = 2 * D if self.continuous else A
        what = "mean, then log_std of the Gaussian policy" if self.continuous else "num_actions"
        if len(shape) == 2 and shape[0] == B and shape[1] != width:
            raise ValueError(
                f"root.logits must have shape [{B}, {width}] ({what}), got {list(shape)}"
            )
        logits = np.ascontiguousarray(
            _as_numpy(_float_array(raw_logits, "root.logits", (B, width))), dtype=np.float32
        )
        value = np.ascontiguousarray(
            _as_numpy(_float_array(root.value, "root.value", (B,))), dtype=np.float32
        )
        if legal_actions is not None and self.continuous:
            raise ValueError("legal_actions: continuous actions have no legal-action mask")
        invalid = _invalid_mask(legal_actions, B, A)
        fixed_actions = fixed_indices = None
        if root_actions is not None:
            given = root_actions
            if isinstance(given, torch.Tensor):
                given = given.detach().cpu().numpy()
            given = np.asarray(given)
            if self.continuous:
                if given.dtype.kind not in "fiu" or given.dtype == np.bool_:
                    raise TypeError(f"root_actions must hold real numbers, got dtype {given.dtype}")
                if given.shape != (B, K, D):
                    raise ValueError(
                        f"root_actions must have shape {[B, K, D]} (batch, num_samples, "
                        f"action_dim), got {list(given.shape)}"
                    )
                fixed_actions = np.ascontiguousarray(given, dtype=np.float32)
            else:
                if given.dtype.kind not in "iu":
                    raise TypeError(f"root_actions must hold integers, got dtype {given.dtype}")
                if given.shape != (B, K):
                    raise ValueError(
                        f"root_actions must have shape {[B, K]} (batch, num_samples), got "
                        f"{list(given.shape)}"
                    )
                fixed_indices = np.ascontiguousarray(given, dtype=np.int64)
        stream = self._searches
        state = self._ext.sampled_search(
            config, fn, latent, logits, value, invalid, fixed_actions, fixed_indices, None, None,
            stream,
        )
        self._searches += 1
        self.config = config
        return SampledResult(**state.take_results(), _state=state)

    def _continue(
        self, fn: Any, root: Root | None, reuse: SampledResult, action_taken: Any,
        legal_actions: Any, root_actions: Any,
    ) -> SampledResult:
        """search() with reuse: checks the reuse arguments, then continues in C++."""
        config = self.config
        if root_actions is not None:
            raise ValueError("root_actions cannot be combined with reuse (the kept roots have "
                             "their samples)")
        if self.continuous and config.action_dim == 0:
            raise ValueError("reuse must come from a search of this planner (it has not searched "
                             "yet)")
        K, D, A = config.num_samples, config.action_dim, config.num_actions
        prev_k = reuse.visit_counts.shape[1]
        prev_d = reuse.actions.shape[2] if reuse.actions.dim() == 3 else 0
        if prev_k != K or prev_d != D:
            raise ValueError(
                f"reuse: the previous search had num_samples={prev_k}, action_dim={prev_d}; this "
                f"planner has num_samples={K}, action_dim={D}"
            )
        B = reuse.index.shape[0]
        latent = logits = value = None
        if root is not None:
            latent = _root_latent(root)
            if latent.shape[0] != B:
                raise ValueError(
                    f"reuse: the previous search had {B} trees, root.latent has {latent.shape[0]}"
                )
            if latent.device != reuse._state.latent_device:
                raise ValueError(
                    f"root.latent is on {latent.device} but the reused search's latents are on "
                    f"{reuse._state.latent_device}"
                )
            width = 2 * D if self.continuous else A
            logits = np.ascontiguousarray(
                _as_numpy(_float_array(root.logits, "root.logits", (B, width))), dtype=np.float32
            )
            value = np.ascontiguousarray(
                _as_numpy(_float_array(root.value, "root.value", (B,))), dtype=np.float32
            )
        if legal_actions is not None and self.continuous:
            raise ValueError("legal_actions: continuous actions have no legal-action mask")
        invalid = _invalid_mask(legal_actions, B, A)
        if action_taken is None:
            raise ValueError(
                "action_taken is required with reuse: the index of the root sample played per tree"
            )
        taken = action_taken
        if isinstance(taken, torch.Tensor):
            taken = taken.detach().cpu().numpy()
        taken = np.asarray(taken).reshape(-1) if np.ndim(taken) == 0 else np.asarray(taken)
        if taken.dtype.kind not in "iu":
            raise TypeError(
                f"action_taken must hold integers (root sample indices), got dtype {taken.dtype}"
            )
        if taken.shape != (B,):
            raise ValueError(f"action_taken must have shape [{B}], got {list(taken.shape)}")
        taken = np.ascontiguousarray(taken, dtype=np.int64)
        stream = self._searches
        state = self._ext.sampled_search(
            config, fn, latent, logits, value, invalid, None, None, reuse._state, taken, stream
        )
        self._searches += 1
        return SampledResult(**state.take_results(), _state=state)


def _as_numpy(array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().to("cpu", torch.float32).numpy()
    return array
