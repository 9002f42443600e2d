"""Count-based tabular world models: learn p̂(s'|s,a), r̂(s,a) by counting, plan on them.

The counting, the planning and the sampling run in the C++ core (``wmfast._core``) with the GIL
released; this module converts inputs and wraps results.

Results are CPU torch tensors, each call's own (fresh memory: writing to one changes neither the
model nor a later result): indices and counts int64 (CSR column indices int32), estimates float64
(the model counts and plans in float64), flags bool. Inputs may be torch tensors, numpy arrays or
sequences.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from wmfast import _core
from wmfast._convert import to_vector
from wmfast._validate import INT32_MAX, INT64_MAX, as_float, as_int

__all__ = ["PlanningSolution", "TabularModel", "TransitionMatrix"]

# Dense read-outs allocate S*A*S numbers; past this they are refused (use the sparse form).
MAX_DENSE_ENTRIES = 50_000_000


@dataclass(frozen=True)
class PlanningSolution:
    """The result of value or policy iteration (CPU tensors).

    Attributes:
      values: [S] float64 V(s) = max_a Q(s, a).
      q_values: [S, A] float64 Q(s, a).
      policy: [S] int64 greedy action (lowest index on ties).
      iterations: sweeps (value iteration) or policy improvements (policy iteration).
      residual: value iteration: the last sweep's max_s |V_new(s) - V_old(s)|;
        policy iteration: the Bellman residual of the final values.
      converged: whether the stopping criterion was met within max_iters.
      evaluation_sweeps: policy iteration only: sweeps spent evaluating policies.
    """

    values: torch.Tensor
    q_values: torch.Tensor
    policy: torch.Tensor
    iterations: int
    residual: float
    converged: bool
    evaluation_sweeps: int = 0


@dataclass(frozen=True)
class TransitionMatrix:
    """A sparse [S*A, S] matrix over (state, action) rows, pair p = s * A + a, in CSR form, as
    CPU tensors.

    Entry (p, s') is ``data[k] + uniform[p]`` for the stored successors and ``uniform[p]`` for the
    others (``uniform`` carries a prior's pseudo-counts; it is zero without one). Rows of pairs
    that were never visited (``visited[p]`` False) are empty: unseen, not a self-loop.

    Attributes:
      indptr: [S*A+1] int64, row p holds entries indptr[p]:indptr[p+1].
      indices: [nnz] int32 successor states, sorted within a row.
      data: [nnz] float64 probabilities (transition_probs) or int64 counts (transition_counts).
      uniform: [S*A] float64 value added to every entry of the row.
      visited: [S*A] bool, N(s, a) > 0.
    """

    num_states: int
    num_actions: int
    indptr: torch.Tensor
    indices: torch.Tensor
    data: torch.Tensor
    uniform: torch.Tensor
    visited: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_states * self.num_actions, self.num_states)

    def successors(self, state: int, action: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(next_states [k] int32, values [k]) stored for one pair (without the uniform part);
        views of this matrix's tensors."""
        p = state * self.num_actions + action
        lo, hi = int(self.indptr[p]), int(self.indptr[p + 1])
        return self.indices[lo:hi], self.data[lo:hi]

    def to_dense(self) -> torch.Tensor:
        """[S, A, S] float64 tensor; rows of unvisited pairs are NaN when there is no prior."""
        S, A = self.num_states, self.num_actions
        _check_dense_size(S, A)
        dense = self.uniform.to(torch.float64)[:, None].repeat(1, S)
        rows = torch.repeat_interleave(torch.arange(S * A), torch.diff(self.indptr))
        dense.index_put_((rows, self.indices.long()), self.data.to(torch.float64),
                         accumulate=True)
        if not bool(self.uniform.any()):
            dense[~self.visited] = float("nan")
        return dense.reshape(S, A, S)

    def to_scipy(self):
        """The stored entries as a ``scipy.sparse.csr_array`` of shape [S*A, S] (no uniform part;
        it shares the tensors' memory)."""
        from scipy import sparse

        return sparse.csr_array((self.data.numpy(), self.indices.numpy(), self.indptr.numpy()),
                                shape=self.shape)


def _check_dense_size(num_states: int, num_actions: int) -> None:
    entries = num_states * num_actions * num_states
    if entries > MAX_DENSE_ENTRIES:
        raise ValueError(
            f"a dense read-out would hold S*A*S = {entries:,} entries (more than "
            f"{MAX_DENSE_ENTRIES:,}); use the sparse form (dense=False)"
        )


class TabularModel:
    """A count-based world model of a finite MDP with S states and A actions.

    Counts N(s,a,s'), terminations and reward sums from batches of transitions and estimates
      p̂(s'|s,a) = (N(s,a,s') + prior) / (N(s,a) + prior * S),  r̂(s,a) = mean reward,
    τ̂(s,a,s') = the fraction of (s,a)->s' that terminated. Memory grows with the distinct
    transitions seen, never with S*A*S. ``num_threads`` (1 to 4) threads count large updates.

    Read-outs and plans are CPU torch tensors (see the module's docstring for dtypes).

    Example:
      >>> tm = TabularModel(num_states=64, num_actions=4)
      >>> tm.update(states, actions, rewards, next_states, terminated)
      >>> sol = tm.value_iteration(gamma=0.99)
      >>> sol.policy[state]   # a tensor; int(...) for an environment
    """

    def __init__(self, num_states: int, num_actions: int, *, prior: float = 0.0,
                 num_threads: int = 1) -> None:
        self._model = _core.TabularModel(as_int(num_states, "num_states", 1, INT32_MAX),
                                         as_int(num_actions, "num_actions", 1, INT32_MAX),
                                         as_float(prior, "prior", 0.0),
                                         as_int(num_threads, "num_threads", 1, 4))

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def num_states(self) -> int:
        return self._model.num_states

    @property
    def num_actions(self) -> int:
        return self._model.num_actions

    @property
    def prior(self) -> float:
        return self._model.prior

    @property
    def num_transitions(self) -> int:
        """How many transitions have been counted."""
        return self._model.num_transitions

    @property
    def num_visited_pairs(self) -> int:
        """How many (state, action) pairs have been visited at least once."""
        return int(np.count_nonzero(self._arrays()["visits"]))

    def __repr__(self) -> str:
        return (f"TabularModel(num_states={self.num_states}, num_actions={self.num_actions}, "
                f"prior={self.prior}, transitions={self.num_transitions:,}, "
                f"visited_pairs={self.num_visited_pairs:,})")

    # -- learning ------------------------------------------------------------------------------
    def update(self, states: Any, actions: Any, rewards: Any, next_states: Any,
               terminated: Any) -> None:
        """Counts a batch of transitions (numpy arrays, torch tensors or sequences, any length).

        Args:
          states: [n] integer states in [0, S).
          actions: [n] integer actions in [0, A).
          rewards: [n] finite real rewards.
          next_states: [n] integer states in [0, S).
          terminated: [n] bool, True where the episode ended at that transition.

        Every element is validated before anything is counted: a ValueError/TypeError names
        the argument and the offending position and value, and the model is left unchanged.
        """
        flags = to_vector(terminated, "terminated")
        if flags.dtype.kind in "iu":
            bad = np.flatnonzero((flags != 0) & (flags != 1))
            if bad.size:
                raise ValueError(f"terminated[{bad[0]}] = {flags[bad[0]]}: expected booleans or "
                                 "0/1 integers")
        self._model.update(to_vector(states, "states"), to_vector(actions, "actions"),
                           to_vector(rewards, "rewards"), to_vector(next_states, "next_states"),
                           flags)

    def merge(self, other: TabularModel) -> None:
        """Adds the counts of another model of the same sizes (e.g. collected elsewhere)."""
        if not isinstance(other, TabularModel):
            raise TypeError(f"other must be a TabularModel, got {type(other).__name__}")
        self._model.merge(other._model)

    # -- read-outs -----------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        return self._model.compiled_arrays()

    def visit_counts(self) -> torch.Tensor:
        """[S, A] int64 N(s, a)."""
        return torch.from_numpy(self._arrays()["visits"].reshape(self.num_states,
                                                                 self.num_actions))

    def transition_counts(self, dense: bool = False) -> TransitionMatrix | torch.Tensor:
        """N(s, a, s') as a sparse TransitionMatrix (int64 data), or a dense [S, A, S] int64
        tensor."""
        arrays = self._arrays()
        if not dense:
            return self._matrix(arrays, arrays["count"], np.zeros(len(arrays["visits"])))
        _check_dense_size(self.num_states, self.num_actions)
        counts = np.zeros((self.num_states * self.num_actions, self.num_states), dtype=np.int64)
        rows = np.repeat(np.arange(counts.shape[0]), np.diff(arrays["pair_offsets"]))
        counts[rows, arrays["next_state"]] = arrays["count"]
        return torch.from_numpy(counts.reshape(self.num_states, self.num_actions,
                                               self.num_states))

    def transition_probs(self, dense: bool = False) -> TransitionMatrix | torch.Tensor:
        """p̂(s'|s,a): a sparse TransitionMatrix, or a dense [S, A, S] float64 tensor.

        Pairs never visited are reported as unseen: an empty row with ``visited`` False in the
        sparse form, NaN rows in the dense form (unless a prior makes them uniform).
        """
        arrays = self._arrays()
        visits = arrays["visits"].astype(np.float64)
        denominator = visits + self.prior * self.num_states
        safe = np.where(denominator > 0, denominator, 1.0)
        rows = np.repeat(np.arange(len(visits)), np.diff(arrays["pair_offsets"]))
        probs = arrays["count"] / safe[rows]
        uniform = np.where(denominator > 0, self.prior / safe, 0.0)
        matrix = self._matrix(arrays, probs, uniform)
        return matrix.to_dense() if dense else matrix

    def _matrix(self, arrays: dict[str, np.ndarray], data: np.ndarray,
                uniform: np.ndarray) -> TransitionMatrix:
        # The arrays are fresh copies made by the core for this call: shared, not copied again.
        return TransitionMatrix(self.num_states, self.num_actions,
                                torch.from_numpy(arrays["pair_offsets"]),
                                torch.from_numpy(arrays["next_state"]), torch.from_numpy(data),
                                torch.from_numpy(uniform), torch.from_numpy(arrays["visits"] > 0))

    def mean_rewards(self) -> torch.Tensor:
        """[S, A] float64 r̂(s, a); NaN for pairs never visited."""
        arrays = self._arrays()
        rewards = np.where(arrays["visits"] > 0, arrays["mean_reward"], np.nan)
        return torch.from_numpy(rewards.reshape(self.num_states, self.num_actions))

    def terminal_probs(self) -> torch.Tensor:
        """[S, A] float64 probability that (s, a) ends the episode; NaN for pairs never
        visited."""
        arrays = self._arrays()
        visits = arrays["visits"]
        rows = np.repeat(np.arange(len(visits)), np.diff(arrays["pair_offsets"]))
        terminal = np.bincount(rows, weights=arrays["terminal_count"], minlength=len(visits))
        probs = np.where(visits > 0, terminal / np.maximum(visits, 1), np.nan)
        return torch.from_numpy(probs.reshape(self.num_states, self.num_actions))

    # -- planning ------------------------------------------------------------------------------
    def value_iteration(self, gamma: float = 0.99, tol: float = 1e-8, max_iters: int = 100_000,
                        *, r_max: float | None = None, min_visits: int = 1, bonus: float = 0.0,
                        sweep: Literal["gauss_seidel", "jacobi"] = "gauss_seidel",
                        num_threads: int = 1, initial_values: Any = None) -> PlanningSolution:
        """Value iteration on the learned model, stopping when max_s |ΔV(s)| < tol.

        Args:
          gamma: discount in [0, 1].
          tol: sup-norm stopping threshold on the change of V in one sweep.
          max_iters: at most this many sweeps (a RuntimeWarning says when it was not enough).
          r_max: plan optimistically (R-MAX): pairs visited fewer than ``min_visits`` times get
            Q = r_max / (1 - gamma), so a greedy agent goes to try them. Without it, such pairs
            get Q = 0.
          min_visits: visits a pair needs before its estimate is trusted.
          bonus: exploration bonus (MBIE-EB): adds bonus / sqrt(N(s, a)) to r̂ of known pairs.
          sweep: "gauss_seidel" (in place, fewer sweeps) or "jacobi" (the textbook iteration,
            splittable over ``num_threads``).
          initial_values: [S] warm start (e.g. the previous solution's values).

        Returns:
          a PlanningSolution: values [S] float64, q_values [S, A] float64, policy [S] int64
          (CPU tensors), iterations, residual, converged.
        """
        return self._plan(False, gamma, tol, max_iters, r_max, min_visits, bonus, sweep,
                          num_threads, initial_values)

    def policy_iteration(self, gamma: float = 0.99, tol: float = 1e-8, max_iters: int = 1_000,
                         *, r_max: float | None = None, min_visits: int = 1,
                         bonus: float = 0.0, initial_values: Any = None) -> PlanningSolution:
        """Policy iteration: evaluate the policy (sweeps to tol), improve greedily, repeat until
        the policy is stable. Arguments as in ``value_iteration``."""
        return self._plan(True, gamma, tol, max_iters, r_max, min_visits, bonus,
                          "gauss_seidel", 1, initial_values)

    def _plan(self, policy_iteration: bool, gamma: float, tol: float, max_iters: int,
              r_max: float | None, min_visits: int, bonus: float, sweep: str, num_threads: int,
              initial_values: Any) -> PlanningSolution:
        gamma = as_float(gamma, "gamma", 0.0, 1.0)
        tol = as_float(tol, "tol", 0.0, low_open=True)
        if sweep not in ("gauss_seidel", "jacobi"):
            raise ValueError(f"sweep must be 'gauss_seidel' or 'jacobi', got {sweep!r}")
        unknown_value = 0.0
        if r_max is not None:
            r_max = as_float(r_max, "r_max")
            if not gamma < 1.0:
                raise ValueError(f"r_max needs gamma < 1 (its optimistic value is "
                                 f"r_max / (1 - gamma)), got gamma={gamma}")
            unknown_value = r_max / (1.0 - gamma)
            if not np.isfinite(unknown_value):
                raise ValueError(f"r_max / (1 - gamma) must be finite, got r_max={r_max}, "
                                 f"gamma={gamma}")
        if initial_values is not None:
            initial_values = to_vector(initial_values, "initial_values")
        out = self._model.plan(policy_iteration, gamma, tol,
                               as_int(max_iters, "max_iters", 1, INT64_MAX),
                               as_int(min_visits, "min_visits", 0, INT64_MAX),
                               unknown_value, as_float(bonus, "bonus", 0.0), sweep,
                               as_int(num_threads, "num_threads", 1, 1024),
                               initial_values)
        for name in ("values", "q_values", "policy"):
            out[name] = torch.from_numpy(out[name])  # owned by the core's result: no copy
        solution = PlanningSolution(**out)
        if not solution.converged:
            warnings.warn(f"{'policy' if policy_iteration else 'value'} iteration stopped after "
                          f"max_iters={max_iters} with residual {solution.residual:.3g} "
                          f"(tol={tol})", RuntimeWarning, stacklevel=3)
        return solution

    # -- imagination ---------------------------------------------------------------------------
    def sample(self, states: Any, actions: Any,
               seed: int | np.random.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draws imagined transitions (Dyna): s' ~ p̂(.|s,a), terminated ~ τ̂(s,a,s').

        Args:
          states, actions: [n] integer arrays of visited pairs.
          seed: an int, a numpy Generator, or None (fresh entropy).
        Returns:
          (next_states [n] int64, rewards [n] float64, terminated [n] bool) CPU tensors; the
          reward is the mean reward observed on (s, a, s').
        """
        states = to_vector(states, "states")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        uniforms = rng.random((2, len(states)))
        out = self._model.sample(states, to_vector(actions, "actions"), uniforms[0], uniforms[1])
        return tuple(torch.from_numpy(array) for array in out)

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """All counters as CPU tensors (save with torch.save), with the sizes and the prior.

        One entry per distinct (pair, next state, terminated), pair = s * A + a: ``pairs``,
        ``next_states``, ``counts`` [n] int64, ``terminated`` [n] bool, ``reward_sums`` [n]
        float64.
        """
        entries = {key: torch.from_numpy(array) for key, array in self._model.entries().items()}
        return {"num_states": self.num_states, "num_actions": self.num_actions,
                "prior": self.prior, **entries}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replaces the counts with those of ``state_dict()`` (tensors, or the numpy arrays of
        earlier versions); all-or-nothing."""
        missing = {"num_states", "num_actions", "prior", *_ENTRY_KEYS} - set(state)
        if missing:
            raise KeyError(f"state is missing {sorted(missing)}")
        sizes = (as_int(state["num_states"], "state['num_states']", 1, INT32_MAX),
                 as_int(state["num_actions"], "state['num_actions']", 1, INT32_MAX))
        if sizes != (self.num_states, self.num_actions):
            raise ValueError(
                f"state has num_states={state['num_states']}, num_actions={state['num_actions']}"
                f": expected num_states={self.num_states}, num_actions={self.num_actions}")
        fresh = _core.TabularModel(self.num_states, self.num_actions,
                                   as_float(state["prior"], "state['prior']", 0.0),
                                   self._model.num_threads)
        fresh.add_entries(*(to_vector(state[key], key) for key in _ENTRY_KEYS))
        self._model = fresh


_ENTRY_KEYS = ("pairs", "next_states", "terminated", "counts", "reward_sums")
