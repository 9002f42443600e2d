"""Careful numpy/scipy implementations of what wmfast.TabularModel does, the benchmark baselines.

Each computes the same outputs as the C++ core: one counter (count, reward sum) per distinct
(s, a, s', terminated), and value iteration on p̂, r̂, τ̂ to a sup-norm tolerance.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def make_transitions(num_states: int, num_actions: int, successors: int, size: int,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Random transitions of an MDP where each (s, a) has `successors` possible next states."""
    rng = np.random.default_rng(seed)
    table = rng.integers(0, num_states, size=(num_states, num_actions, successors))
    states = rng.integers(0, num_states, size)
    actions = rng.integers(0, num_actions, size)
    next_states = table[states, actions, rng.integers(0, successors, size)]
    return {
        "states": states,
        "actions": actions,
        "rewards": rng.random(size),
        "next_states": next_states,
        "terminated": rng.random(size) < 0.01,
    }


def _keys(batch: dict[str, np.ndarray], num_states: int, num_actions: int) -> np.ndarray:
    pairs = batch["states"] * num_actions + batch["actions"]
    return (pairs * num_states + batch["next_states"]) * 2 + batch["terminated"]


def count_unique(batch, num_states, num_actions):
    """The sparse way: np.unique on flattened keys, then reward sums with bincount."""
    keys, inverse, counts = np.unique(_keys(batch, num_states, num_actions),
                                      return_inverse=True, return_counts=True)
    reward_sums = np.bincount(inverse, weights=batch["rewards"], minlength=len(keys))
    return keys, counts, reward_sums


def count_scipy(batch, num_states, num_actions):
    """scipy COO -> CSR (sums duplicates by sorting): counts and reward sums per key."""
    pairs = batch["states"] * num_actions + batch["actions"]
    columns = batch["next_states"] * 2 + batch["terminated"]
    shape = (num_states * num_actions, num_states * 2)
    counts = sparse.coo_array((np.ones(len(pairs)), (pairs, columns)), shape=shape).tocsr()
    rewards = sparse.coo_array((batch["rewards"], (pairs, columns)), shape=shape).tocsr()
    return counts, rewards


def count_bincount(batch, num_states, num_actions):
    """The dense way, where S*A*S*2 counters fit: bincount on flattened keys."""
    bins = num_states * num_actions * num_states * 2
    keys = _keys(batch, num_states, num_actions)
    counts = np.bincount(keys, minlength=bins)
    reward_sums = np.bincount(keys, weights=batch["rewards"], minlength=bins)
    return counts, reward_sums


def planning_matrices(model) -> tuple[sparse.csr_array, np.ndarray]:
    """(P_continue [S*A, S] CSR, r̂ [S*A]) from a wmfast.TabularModel, for the scipy baseline."""
    arrays = model._model.compiled_arrays()
    visits = arrays["visits"].astype(np.float64)
    rows = np.repeat(np.arange(len(visits)), np.diff(arrays["pair_offsets"]))
    weights = (arrays["count"] - arrays["terminal_count"]) / np.maximum(visits, 1)[rows]
    matrix = sparse.csr_array((weights, arrays["next_state"], arrays["pair_offsets"]),
                              shape=(len(visits), model.num_states))
    return matrix, arrays["mean_reward"]


def value_iteration_scipy(matrix: sparse.csr_array, rewards: np.ndarray, num_actions: int,
                          gamma: float, tol: float, max_iters: int = 100_000):
    """Jacobi value iteration with a CSR matvec per sweep; stops when max|ΔV| < tol."""
    num_states = matrix.shape[1]
    values = np.zeros(num_states)
    for sweep in range(1, max_iters + 1):
        q = rewards + gamma * (matrix @ values)
        updated = q.reshape(num_states, num_actions).max(axis=1)
        residual = np.abs(updated - values).max()
        values = updated
        if residual < tol:
            break
    return values, sweep


def value_iteration_dense(transitions: np.ndarray, rewards: np.ndarray, gamma: float,
                          tol: float, max_iters: int = 100_000):
    """Jacobi value iteration on dense [S, A, S] continuation probabilities and [S, A] rewards."""
    values = np.zeros(transitions.shape[0])
    for sweep in range(1, max_iters + 1):
        updated = (rewards + gamma * transitions @ values).max(axis=1)
        residual = np.abs(updated - values).max()
        values = updated
        if residual < tol:
            break
    return values, sweep
