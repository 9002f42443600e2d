"""Batched Stochastic MuZero search (Antonoglou et al., ICLR 2022): trees with chance nodes.

For environments with randomness (2048, backgammon, slippery worlds) the model splits a step in
two: the decision function maps a state and an action to an *afterstate* (the state before
chance acts), and the chance function maps an afterstate and a chance outcome to the next state::

    class Model:
        def decision(self, latent, action):       # latent [B, ...], action [B] int64
            return wm.Afterstate(afterstate, chance_logits, value)  # [B, ...], [B, C], [B]
        def chance(self, afterstate, outcome):    # afterstate [B, ...], outcome [B] int64
            return wm.Step(latent, reward, logits, value, discount=None)  # logits [B, A]

The search (in C++, ``wmfast._torch``) alternates decision nodes (pUCT over the A actions, as in
``wm.MCTS``) and chance nodes (the outcome maximising ``p(c) / (N(c) + 1)``, so that visits
follow the chance distribution). Each expansion calls exactly one of the two functions: a search
of N simulations evaluates N leaves per tree, in at most two batched calls per simulation.
Semantics follow mctx's ``stochastic_muzero_policy``, whose trees the tests reproduce node for
node: state -> afterstate edges carry reward 0 and discount 1, afterstate -> state edges the
chance function's reward and discount (times ``discount``), ``max_depth`` counts decision and
chance edges alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from wmfast._validate import INT32_MAX, as_int
from wmfast.mcts import (
    QTransform,
    Root,
    SearchResult,
    _invalid_mask,
    _Planner,
    _root_inputs,
)
from wmfast.native import NativeModel

__all__ = ["Afterstate", "StochasticMCTS", "StochasticSearchResult", "StochasticSearchTree"]


@dataclass(frozen=True)
class Afterstate:
    """What a model's decision function returns for a batch of B (state, action) pairs.

    Attributes:
      latent: [B, ...] afterstate (same trailing shape, dtype and device as the state latents).
      chance_logits: [B, C] logits of the chance outcomes that follow.
      value: [B] value estimate of the afterstate (Q(s, a)).
    """

    latent: torch.Tensor
    chance_logits: torch.Tensor
    value: torch.Tensor


_NODE_FIELDS = ("node_visits", "raw_values", "node_values", "parents", "action_from_parent")
# Edge fields as the core names them, and (decision name, chance name, fill of unused entries).
_EDGE_FIELDS = (
    ("children_index", "children_index", "chance_children_index", -1),
    ("children_prior_logits", "children_prior_logits", "chance_children_logits", 0.0),
    ("children_priors", "children_priors", "chance_children_probs", 0.0),
    ("children_visits", "children_visits", "chance_children_visits", 0),
    ("children_values", "children_values", "chance_children_values", 0.0),
    ("children_rewards", "children_rewards", "chance_children_rewards", 0.0),
    ("children_discounts", "children_discounts", "chance_children_discounts", 0.0),
)
_TREE_FIELDS = (
    *_NODE_FIELDS,
    "is_chance",
    *(names[1] for names in _EDGE_FIELDS),
    *(names[2] for names in _EDGE_FIELDS),
    "root_invalid_actions",
)


@dataclass(frozen=True)
class StochasticSearchTree:
    """The B trees of a Stochastic MuZero search, as CPU torch tensors (copies).

    Node 0 is the root (a decision node); decision and chance nodes alternate. -1 marks "no
    parent" and "not expanded"; N is the node capacity. Edge fields are split by node kind: the
    ``children_*`` tensors hold the A action edges of decision nodes (-1 / 0 at chance nodes),
    the ``chance_children_*`` tensors the C outcome edges of chance nodes (-1 / 0 at decision
    nodes). Concatenating the two along the last axis gives mctx's [B, N, A + C] layout.

    Attributes:
      node_visits: [B, N] int32 visit count of each node.
      raw_values: [B, N] float32 the model's value (decision nodes: the chance function's
        Step.value, chance nodes: the decision function's Afterstate.value).
      node_values: [B, N] float32 mean backed-up value.
      parents: [B, N] int32 parent node.
      action_from_parent: [B, N] int32 the action (chance nodes) or outcome (decision nodes)
        leading to the node.
      is_chance: [B, N] bool True for chance nodes (afterstates).
      children_index: [B, N, A] int32 child (an afterstate) of each action, -1 if unexpanded.
      children_prior_logits: [B, N, A] float32 prior logits (root: masked and noised).
      children_priors: [B, N, A] float32 softmax of the prior logits.
      children_visits: [B, N, A] int32 visits through each action.
      children_values: [B, N, A] float32 value of the afterstate reached.
      children_rewards: [B, N, A] float32 0 (the reward comes with the chance outcome).
      children_discounts: [B, N, A] float32 1 on expanded action edges.
      chance_children_index: [B, N, C] int32 child (a state) of each outcome, -1 if unexpanded.
      chance_children_logits: [B, N, C] float32 the decision function's chance logits.
      chance_children_probs: [B, N, C] float32 softmax of the chance logits.
      chance_children_visits: [B, N, C] int32 visits through each outcome.
      chance_children_values: [B, N, C] float32 value of the state reached.
      chance_children_rewards: [B, N, C] float32 the chance function's reward.
      chance_children_discounts: [B, N, C] float32 the chance function's discount times the
        search's.
      root_invalid_actions: [B, A] bool illegal root actions.
      latents: [B, N, ...] latent of every node (states and afterstates; zero for nodes never
        evaluated), on the model's device.
    """

    node_visits: torch.Tensor
    raw_values: torch.Tensor
    node_values: torch.Tensor
    parents: torch.Tensor
    action_from_parent: torch.Tensor
    is_chance: torch.Tensor
    children_index: torch.Tensor
    children_prior_logits: torch.Tensor
    children_priors: torch.Tensor
    children_visits: torch.Tensor
    children_values: torch.Tensor
    children_rewards: torch.Tensor
    children_discounts: torch.Tensor
    chance_children_index: torch.Tensor
    chance_children_logits: torch.Tensor
    chance_children_probs: torch.Tensor
    chance_children_visits: torch.Tensor
    chance_children_values: torch.Tensor
    chance_children_rewards: torch.Tensor
    chance_children_discounts: torch.Tensor
    root_invalid_actions: torch.Tensor
    latents: torch.Tensor = field(repr=False)

    @property
    def q_values(self) -> torch.Tensor:
        """[B, N, A] float32 Q(s, a) of the action edges: the afterstate's value (a new
        tensor)."""
        return self.children_rewards + self.children_discounts * self.children_values

    def to_dict(self) -> dict[str, torch.Tensor]:
        """The tensors by name, without the latents."""
        return {name: getattr(self, name) for name in _TREE_FIELDS}

    def to_dot(self, batch_index: int = 0, max_nodes: int = 200) -> str:
        """Graphviz source of tree ``batch_index``: decision nodes as boxes, chance nodes as
        ellipses (visits and value); action edges labelled a= (prior), outcome edges c= (reward,
        probability). Render with ``dot -Tsvg``."""
        b = int(batch_index)
        if not 0 <= b < self.node_visits.shape[0]:
            raise IndexError(
                f"batch_index must be in [0, {self.node_visits.shape[0]}), got {batch_index}"
            )
        visits, values = self.node_visits[b].tolist(), self.node_values[b].tolist()
        chance = self.is_chance[b].tolist()
        actions, priors = self.children_index[b].tolist(), self.children_priors[b].tolist()
        outcomes = self.chance_children_index[b].tolist()
        probs = self.chance_children_probs[b].tolist()
        rewards = self.chance_children_rewards[b].tolist()
        lines = ["digraph stochastic_search_tree {", '  node [fontname="monospace"];']
        shown = 0
        stack = [0]
        while stack and shown < max_nodes:
            n = stack.pop()
            shown += 1
            shape = "ellipse" if chance[n] else "box"
            kind = "chance" if chance[n] else "decision"
            lines.append(
                f'  n{n} [shape={shape}, label="#{n} {kind}\\nN={visits[n]} V={values[n]:.3f}"];'
            )
            if chance[n]:
                edges = [
                    (child, f"c={c} r={rewards[n][c]:.3f} p={probs[n][c]:.3f}")
                    for c, child in enumerate(outcomes[n])
                ]
            else:
                edges = [
                    (child, f"a={a} p={priors[n][a]:.3f}") for a, child in enumerate(actions[n])
                ]
            for child, label in edges:
                if child < 0:
                    continue
                style = ", style=dashed" if chance[n] else ""
                lines.append(f'  n{n} -> n{child} [label="{label}"{style}];')
                stack.append(child)
        lines.append("}")
        return "\n".join(lines)


@dataclass(frozen=True)
class StochasticSearchResult(SearchResult):
    """The outcome of a batched Stochastic MuZero search, as CPU torch tensors (see
    SearchResult: action [B] int64, visit_counts [B, A] int32, policy [B, A] float32 (the visit
    distribution), root_value [B], q_values [B, A] float32 (the afterstate values at the root));
    ``tree`` is a StochasticSearchTree, ``model_calls`` the number of (decision, chance) calls
    the search made (each shard's calls, when sharded over threads with NativeModels)."""

    @property
    def tree(self) -> StochasticSearchTree:  # type: ignore[override]
        if self._tree is None:
            arrays = self._state.tree_arrays()
            A = self.visit_counts.shape[1]
            C = self._state.num_chance_outcomes
            is_chance = arrays["is_chance"]
            fields: dict[str, torch.Tensor] = {name: arrays[name] for name in _NODE_FIELDS}
            fields["is_chance"] = is_chance
            for core_name, decision_name, chance_name, fill in _EDGE_FIELDS:
                edges = arrays[core_name]
                decision = edges[..., :A].clone()
                decision[is_chance] = fill
                outcome = edges[..., :C].clone()
                outcome[~is_chance] = fill
                fields[decision_name] = decision
                fields[chance_name] = outcome
            fields["root_invalid_actions"] = arrays["root_invalid_actions"]
            tree = StochasticSearchTree(**fields, latents=self._state.latents)
            object.__setattr__(self, "_tree", tree)
        return self._tree

    @property
    def model_calls(self) -> tuple[int, int]:
        """(decision calls, chance calls) made by the search."""
        return tuple(self._state.model_calls)

    def to_dict(self) -> dict[str, torch.Tensor]:
        """Results and tree tensors by name."""
        out = {
            "action": self.action,
            "visit_counts": self.visit_counts,
            "policy": self.policy,
            "root_value": self.root_value,
            "q_values": self.q_values,
        }
        out.update(self.tree.to_dict())
        return out


class _StochasticState:
    """The core's search state and C (which the tree split needs)."""

    def __init__(self, state: Any, num_chance_outcomes: int) -> None:
        self._state = state
        self.num_chance_outcomes = num_chance_outcomes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)


def _model_fns(model: Any) -> tuple[Any, Any]:
    """The two functions the core calls: Python callables, or a NativeModel's compiled runner."""
    if isinstance(model, (tuple, list)) and len(model) == 2:
        decision, chance = model
    else:
        decision = getattr(model, "decision", None)
        chance = getattr(model, "chance", None)
    out = []
    for name, fn in (("decision", decision), ("chance", chance)):
        if isinstance(fn, NativeModel):
            out.append(fn._native)  # runs in C++, without Python in the loop
            continue
        if fn is None or not callable(fn):
            raise TypeError(
                "model must have decision(latent, action) -> wmfast.Afterstate and "
                "chance(afterstate, outcome) -> wmfast.Step methods (or be a (decision, chance) "
                f"pair of functions or wm.NativeModels), got {type(model).__name__} without a "
                f"callable .{name}"
            )
        out.append(fn)
    return out[0], out[1]


class StochasticMCTS(_Planner):
    """Batched Stochastic MuZero search: decision nodes by pUCT, chance nodes by
    ``argmax p(c) / (N(c) + 1)``.

    Args:
      num_actions: A.
      num_chance_outcomes: C, the width of ``Afterstate.chance_logits``.
      num_simulations: simulations per search (each expands one node per tree, calling either
        the decision or the chance function for it).
      discount: multiplies the chance function's Step.discount on every outcome edge.
      pb_c_init, pb_c_base: c1 and c2 of the pUCT formula, as in MCTS.
      dirichlet_alpha, dirichlet_fraction: root noise, on the decision priors only, as in MCTS.
      seed, qtransform, temperature: as in MCTS.
      num_threads: as in MCTS; with two CPU wm.NativeModels (num_runners >= num_threads) each
        thread searches its own shard of trees, calls of both functions included. Results do
        not depend on it.
      max_depth: maximum edges from the root to a leaf, decision and chance edges each counting
        one (mctx's convention; None: unlimited).
    """

    def __init__(
        self,
        num_actions: int,
        num_chance_outcomes: int,
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
                "qtransform: completed_by_mix_value is Gumbel MuZero's transform; StochasticMCTS "
                "uses pUCT"
            )
        num_chance_outcomes = as_int(num_chance_outcomes, "num_chance_outcomes", 1, INT32_MAX)
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
        self.num_chance_outcomes = num_chance_outcomes

    def search(
        self,
        model: Any,
        root: Root | None,
        legal_actions: Any = None,
        reuse: StochasticSearchResult | None = None,
        action_taken: Any = None,
        outcome_taken: Any = None,
    ) -> StochasticSearchResult:
        """Searches from B roots (decision nodes).

        Args:
          model: an object with ``decision(latent [B, ...], action [B] int64) -> Afterstate``
            and ``chance(afterstate [B, ...], outcome [B] int64) -> Step`` (or a (decision,
            chance) pair of functions).
          root: the roots (``wm.Root(latent, logits [B, A], value [B])``); with ``reuse`` it
            may be None (the reached states' own statistics are kept).
          legal_actions: [B, A] bool (or 0/1 integers), legal root actions (None: all legal).
          reuse: the previous StochasticSearchResult of this planner: the search continues from
            the subtree under the state reached by ``action_taken`` then ``outcome_taken``
            (statistics and latents kept; with a root, its latent, logits and value replace
            the reached state's).
          action_taken, outcome_taken: [B] int, the action played in each environment since
            ``reuse`` and the chance outcome that followed.

        Returns:
          a StochasticSearchResult of CPU tensors: action [B] int64, visit_counts [B, A] int32,
          policy and q_values [B, A] float32, root_value [B] float32, and the trees (``.tree``).
        """
        decision, chance = _model_fns(model)
        A, C = self.num_actions, self.num_chance_outcomes
        latent = logits = value = None
        if reuse is not None and (
            not isinstance(reuse, StochasticSearchResult) or reuse._state is None
        ):
            raise TypeError(
                "reuse must be the StochasticSearchResult of a previous search, got "
                f"{type(reuse).__name__}"
            )
        if root is None:
            if reuse is None:
                raise ValueError("root is required (it may be omitted only with reuse=)")
            B = reuse.action.shape[0]
        else:
            latent, logits, value = _root_inputs(root, A)
            B = latent.shape[0]
        invalid = _invalid_mask(legal_actions, B, A)
        state = actions = outcomes = None
        if reuse is not None:
            previous = (reuse.visit_counts.shape[1], reuse._state.num_chance_outcomes)
            if previous != (A, C):
                raise ValueError(
                    f"reuse: the previous search had {previous[0]} actions and {previous[1]} "
                    f"chance outcomes, this planner has num_actions={A}, num_chance_outcomes={C}"
                )
            if reuse.action.shape[0] != B:
                raise ValueError(
                    f"reuse: the previous search had {reuse.action.shape[0]} trees, root.latent "
                    f"has {B}"
                )
            actions = _taken(action_taken, "action_taken", B, A)
            outcomes = _taken(outcome_taken, "outcome_taken", B, C)
            if latent is not None and latent.device != reuse._state.latent_device:
                raise ValueError(
                    f"root.latent is on {latent.device} but the reused search's latents are on "
                    f"{reuse._state.latent_device}"
                )
            state = reuse._state._state
        elif action_taken is not None or outcome_taken is not None:
            raise ValueError("action_taken and outcome_taken are only meaningful with reuse=")
        stream = self._searches
        self._searches += 1
        core_state = self._ext.stochastic_search(
            self.config,
            C,
            decision,
            chance,
            latent,
            logits,
            value,
            invalid,
            state,
            actions,
            outcomes,
            stream,
        )
        results = core_state.take_results()
        return StochasticSearchResult(
            *results,
            _state=_StochasticState(core_state, C),
            _planner=type(self),
        )


def _taken(values: Any, name: str, B: int, high: int) -> np.ndarray:
    """[B] int64 indices in [0, high) played since the reused search."""
    if values is None:
        raise ValueError(f"{name} is required with reuse: one index per tree")
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values).reshape(-1) if np.ndim(values) == 0 else np.asarray(values)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.shape != (B,):
        raise ValueError(f"{name} must have shape [{B}], got {list(array.shape)}")
    bad = (array < 0) | (array >= high)
    if bad.any():
        raise ValueError(f"{name} must be in [0, {high}), got {int(array[bad][0])}")
    return np.ascontiguousarray(array, dtype=np.int64)
