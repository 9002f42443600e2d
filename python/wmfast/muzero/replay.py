"""Replay of self-play games with MuZero's n-step value targets and K-step unroll targets.

Positions live in flat ring arrays: each observation is stored once (never K + 1 times), a game's
positions are contiguous, and targets are computed for a whole sampled batch at once with numpy
index arithmetic. A position i of a game ending at ``end`` has the unroll targets, for k = 0..K
and j = i + k::

    value z_j = sum_{m < n, j+m < end} c_m r_{j+m}  +  c_n v_{j+n}      if j + n < end
                                                    +  c_{end-j} v_end  otherwise
    c_0 = 1,  c_{m+1} = c_m * discount * sign_{j+m}

where ``r`` are the rewards, ``v`` the stored search root values (refreshed by reanalyse),
``v_end`` the value after the last position (0 when the game terminated, the network's value of
the final observation when it was truncated) and ``sign`` is -1 where the player to move changes
(two-player zero-sum games: a reward is the mover's, a value the next mover's). Past the end of a
terminated game the state is absorbing: value and reward targets 0, the policy not trained;
past a truncated game's end nothing is trained. Unroll actions past the end are random.

Sampling is uniform or prioritized (``alpha > 0``: P(i) ~ priority_i^alpha with importance
weights (N P(i))^-beta / max, priority = |root value - z|).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["Batch", "Game", "Replay"]


@dataclasses.dataclass
class Game:
    """One finished (or cut) self-play game of T positions.

    Attributes:
      observations: [T, *obs_shape] the observation at each position.
      actions: [T] int64 action taken.
      rewards: [T] float32 reward that followed (the mover's, in two-player games).
      root_values: [T] float32 search value of each position.
      policies: [T, A] float32 search policy (the policy target).
      terminated: the last action ended the episode (absorbing state after it).
      end_value: value of the state after the last position (used when not terminated).
      to_play_changes: the player to move alternates after every action (two-player games).
      legal_actions: [T, A] bool legal actions at each position (None: all legal); kept for
        reanalyse.
      final_observation: the observation after the last action (None: not kept); the
        transition into it is then a training target of Stochastic MuZero's chance encoder.
      sampled_actions: Sampled MuZero (``wmfast.muzero.sampled``): the K root samples of each
        position's search, [T, K, D] float32 or [T, K] int64; ``policies`` is then [T, K], the
        visit distribution over them, and ``actions`` [T, D] float32 for continuous actions.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    root_values: np.ndarray
    policies: np.ndarray
    terminated: bool
    end_value: float = 0.0
    to_play_changes: bool = False
    legal_actions: np.ndarray | None = None
    final_observation: np.ndarray | None = None
    sampled_actions: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.actions)


@dataclasses.dataclass
class Batch:
    """Training targets for B positions unrolled K steps.

    Attributes:
      index: [B] int64 storage index of each position (for priority updates).
      observations: [B, *obs_shape] observation at each position.
      actions: [B, K] int64 actions to unroll.
      target_values: [B, K+1] float32 n-step value targets.
      target_rewards: [B, K+1] float32 reward targets (entry 0 unused: 0).
      target_policies: [B, K+1, A] float32 policy targets.
      value_mask, reward_mask, policy_mask: [B, K+1] float32 1 where the target is trained.
      weights: [B] float32 importance-sampling weights (1 with uniform sampling).
      next_observations: [B, K, *obs_shape] observations after each unrolled action (for the
        consistency loss; only when asked for, else None). Past the game's end they repeat the
        position's own observation and ``policy_mask[:, 1:]`` is 0 there; the step right after
        the last position holds the game's final observation when it was kept.
      next_mask: [B, K] float32 (with next_observations) 1 where next_observations[:, k] is
        the observation that really followed position i + k (inside the game, or its kept
        final observation).
      sampled_actions: Sampled MuZero: [B, K+1, S, ...] the S root samples the policy targets
        are over (None for other replays).
    """

    index: np.ndarray
    observations: np.ndarray
    actions: np.ndarray
    target_values: np.ndarray
    target_rewards: np.ndarray
    target_policies: np.ndarray
    value_mask: np.ndarray
    reward_mask: np.ndarray
    policy_mask: np.ndarray
    weights: np.ndarray
    next_observations: np.ndarray | None = None
    next_mask: np.ndarray | None = None
    sampled_actions: np.ndarray | None = None


class Replay:
    """A ring buffer of game positions with MuZero targets.

    Args:
      capacity: positions kept (the oldest games are dropped whole).
      obs_shape, obs_dtype: shape and dtype of one observation.
      num_actions: A.
      discount: per-step discount of the value targets.
      td_steps: n of the n-step value targets.
      unroll_steps: K.
      alpha, beta: prioritized sampling (alpha = 0: uniform).
      seed: seed of the sampling.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: Any,
        num_actions: int,
        discount: float,
        td_steps: int,
        unroll_steps: int,
        alpha: float = 0.0,
        beta: float = 1.0,
        seed: int = 0,
    ) -> None:
        for name, value, low in (("capacity", capacity, 1), ("num_actions", num_actions, 1),
                                 ("td_steps", td_steps, 1), ("unroll_steps", unroll_steps, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if not 0.0 <= discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1], got {discount!r}")
        if not alpha >= 0.0 or not 0.0 <= beta <= 1.0:
            raise ValueError(f"alpha must be >= 0 and beta in [0, 1], got alpha={alpha}, beta={beta}")
        self.capacity, self.num_actions = int(capacity), int(num_actions)
        self.obs_shape, self.obs_dtype = tuple(obs_shape), np.dtype(obs_dtype)
        self.discount, self.td_steps, self.unroll_steps = float(discount), int(td_steps), int(unroll_steps)
        self.alpha, self.beta = float(alpha), float(beta)
        self.rng = np.random.default_rng(seed)
        cap = self.capacity
        self.observations = np.zeros((cap, *self.obs_shape), self.obs_dtype)
        self.actions = np.zeros(cap, np.int64)
        self.rewards = np.zeros(cap, np.float32)
        self.root_values = np.zeros(cap, np.float32)
        self.policies = np.zeros((cap, self.num_actions), np.float32)
        self.legal = np.ones((cap, self.num_actions), bool)
        self.signs = np.ones(cap, np.float32)        # -1 where the player to move changes next
        self.game_start = np.zeros(cap, np.int64)
        self.game_end = np.zeros(cap, np.int64)      # one past the game's last position
        self.end_values = np.zeros(cap, np.float32)  # value after the game's last position
        self.terminated = np.zeros(cap, bool)
        self.valid = np.zeros(cap, bool)
        self.priorities = np.zeros(cap, np.float32)
        # Each game's final observation (when the game carries one), by its start index: one
        # observation a game, not a second ring of them.
        self.final_observations: dict[int, np.ndarray] = {}
        self.cursor = 0                              # where the next game is written
        self.stored = 0                              # valid positions (len): counted, not summed
        self.games_added = 0
        self.positions_added = 0

    def __len__(self) -> int:
        return self.stored

    # -- writing -------------------------------------------------------------------------------

    def add(self, game: Game) -> None:
        """Stores a game (all positions contiguous), dropping the oldest games it overwrites."""
        T = len(game)
        if T < 1:
            raise ValueError("game must hold at least one position")
        if T > self.capacity:
            raise ValueError(f"game has {T} positions, more than the replay capacity {self.capacity}")
        shapes = {
            "observations": (game.observations, (T, *self.obs_shape)),
            "rewards": (game.rewards, (T,)),
            "root_values": (game.root_values, (T,)),
            "policies": (game.policies, (T, self.policies.shape[1])),
        }
        for name, (array, shape) in shapes.items():
            if tuple(np.shape(array)) != shape:
                raise ValueError(f"game.{name} must have shape {list(shape)}, got {list(np.shape(array))}")
        actions = self._check_actions(game, T)
        legal = np.ones((T, self.num_actions), bool)
        if game.legal_actions is not None:
            legal = np.asarray(game.legal_actions, bool)
            if legal.shape != (T, self.num_actions):
                raise ValueError(f"game.legal_actions must have shape {[T, self.num_actions]}, "
                                 f"got {list(legal.shape)}")
        final = None
        if game.final_observation is not None:
            final = np.asarray(game.final_observation)
            if final.shape != self.obs_shape:
                raise ValueError(f"game.final_observation must have shape {list(self.obs_shape)}, "
                                 f"got {list(final.shape)}")
        for name in ("rewards", "root_values", "policies"):
            if not np.isfinite(getattr(game, name)).all():
                raise ValueError(f"game.{name} holds NaN or inf")
        if not np.isfinite(game.end_value):
            raise ValueError(f"game.end_value must be finite, got {game.end_value}")
        start = self.cursor if self.cursor + T <= self.capacity else 0
        stop = start + T
        self._drop(start, stop)
        if start == 0 and self.cursor != 0:
            self._drop(self.cursor, self.capacity)  # the unused tail is dropped too
        span = slice(start, stop)
        self.observations[span] = game.observations
        self.actions[span] = actions
        self.rewards[span] = game.rewards
        self.root_values[span] = game.root_values
        self.policies[span] = game.policies
        self.legal[span] = legal
        self._store_extra(span, game)
        self.signs[span] = -1.0 if game.to_play_changes else 1.0
        self.game_start[span] = start
        self.game_end[span] = stop
        self.end_values[span] = 0.0 if game.terminated else game.end_value
        self.terminated[span] = game.terminated
        self.valid[span] = True
        if final is not None:
            self.final_observations[start] = final.astype(self.obs_dtype, copy=True)
        self.stored += T
        index = np.arange(start, stop)
        values = self._value_targets(index, self.game_end[index])
        self.priorities[span] = np.abs(self.root_values[span] - values) + 1e-6
        self.cursor = stop % self.capacity
        self.games_added += 1
        self.positions_added += T

    # Dispatch points of replays that store other actions (wmfast.muzero.sampled.SampledReplay).
    def _check_actions(self, game: Game, T: int) -> np.ndarray:
        """game.actions checked (nothing is stored before every check passed)."""
        actions = np.asarray(game.actions)
        if actions.shape != (T,) or ((actions < 0) | (actions >= self.num_actions)).any():
            raise ValueError(f"game.actions must be [{T}] ints in [0, {self.num_actions})")
        return actions

    def _store_extra(self, span: slice, game: Game) -> None:
        """Stores what a subclass keeps beside the arrays above (checked by _check_actions)."""

    def _random_actions(self, B: int, K: int) -> np.ndarray:
        """[B, K] unroll actions past a game's end."""
        return self.rng.integers(0, self.num_actions, size=(B, K))

    def _sampled_targets(self, safe: np.ndarray, inside: np.ndarray) -> np.ndarray | None:
        """Batch.sampled_actions of the positions ``safe`` [B, K+1] (None: not a sampled replay)."""
        return None

    def _drop(self, start: int, stop: int) -> None:
        """Invalidates every game that overlaps [start, stop)."""
        if start >= stop:
            return
        live = self.valid[start:stop]
        if not live.any():
            return
        first = int(self.game_start[start:stop][live].min())
        last = int(self.game_end[start:stop][live].max())
        for game_start in np.unique(self.game_start[first:last][self.valid[first:last]]):
            self.final_observations.pop(int(game_start), None)
        self.stored -= int(self.valid[first:last].sum())
        self.valid[first:last] = False
        self.priorities[first:last] = 0.0

    # -- targets -------------------------------------------------------------------------------

    def _value_targets(self, index: np.ndarray, end: np.ndarray) -> np.ndarray:
        """n-step value targets at storage indices ``index`` of games ending at ``end`` (arrays
        of one shape, or ``end`` broadcastable); indices past the end get 0."""
        end = np.broadcast_to(end, index.shape)
        inside = index < end
        j = np.where(inside, index, end - 1)
        value = np.zeros(index.shape, np.float64)
        scale = np.ones(index.shape, np.float64)
        done = ~inside
        for m in range(self.td_steps):
            at = j + m
            live = ~done & (at < end)
            safe = np.where(live, at, 0)
            value += np.where(live, scale * self.rewards[safe], 0.0)
            scale = np.where(live, scale * self.discount * self.signs[safe], scale)
            done |= ~live
            # at == end: the game is over after m steps; bootstrap from its end value below.
        boot_at = j + self.td_steps
        in_game = boot_at < end
        boot = np.where(in_game, self.root_values[np.where(in_game, boot_at, 0)],
                        self.end_values[np.minimum(j, self.capacity - 1)])
        value += scale * boot
        return np.where(inside, value, 0.0).astype(np.float32)

    def sample(self, batch_size: int, next_observations: bool = False) -> Batch:
        """B positions with their K-step unroll targets (and the observations after each
        unrolled action when ``next_observations``)."""
        if not self.valid.any():
            raise ValueError("the replay is empty: add games before sampling")
        candidates = np.flatnonzero(self.valid)
        if self.alpha > 0.0:
            p = self.priorities[candidates].astype(np.float64) ** self.alpha
            p /= p.sum()
            pick = self.rng.choice(len(candidates), size=batch_size, p=p)
            weights = (len(candidates) * p[pick]) ** (-self.beta)
            weights = (weights / weights.max()).astype(np.float32)
        else:
            pick = self.rng.integers(0, len(candidates), size=batch_size)
            weights = np.ones(batch_size, np.float32)
        return self.targets(candidates[pick], weights, next_observations)

    def targets(self, index: np.ndarray, weights: np.ndarray | None = None,
                next_observations: bool = False) -> Batch:
        """The unroll targets of the positions at storage indices ``index`` [B]."""
        index = np.asarray(index, np.int64)
        B, K = len(index), self.unroll_steps
        steps = index[:, None] + np.arange(K + 1)[None, :]          # [B, K+1]
        end = self.game_end[index][:, None]
        terminated = self.terminated[index][:, None]
        inside = steps < end
        safe = np.where(inside, steps, index[:, None])
        values = self._value_targets(steps, end)
        # Rewards: target k >= 1 is the reward of the action at step k-1.
        prev = steps - 1
        prev_inside = (prev < end) & (np.arange(K + 1)[None, :] >= 1)
        rewards = np.where(prev_inside, self.rewards[np.where(prev_inside, prev, 0)], 0.0)
        policies = self.policies[safe] * inside[..., None]
        next_obs = next_mask = None
        if next_observations:
            next_obs = self.observations[safe[:, 1:]]
            next_mask = inside[:, 1:].copy()
            at_end = (steps[:, 1:] == end) & self.valid[index][:, None]
            for b, k in zip(*np.nonzero(at_end)):
                final = self.final_observations.get(int(self.game_start[index[b]]))
                if final is not None:
                    next_obs[b, k] = final
                    next_mask[b, k] = True
        unroll = inside[:, :K].reshape(B, K, *([1] * (self.actions.ndim - 1)))
        actions = np.where(unroll, self.actions[safe[:, :K]], self._random_actions(B, K))
        value_mask = inside | terminated
        reward_mask = (prev_inside | terminated) & (np.arange(K + 1)[None, :] >= 1)
        return Batch(
            index=index,
            observations=self.observations[index],
            actions=actions.astype(self.actions.dtype),
            target_values=values,
            target_rewards=rewards.astype(np.float32),
            target_policies=policies.astype(np.float32),
            value_mask=value_mask.astype(np.float32),
            reward_mask=reward_mask.astype(np.float32),
            policy_mask=inside.astype(np.float32),
            weights=np.ones(B, np.float32) if weights is None else weights,
            next_observations=next_obs,
            next_mask=None if next_mask is None else next_mask.astype(np.float32),
            sampled_actions=self._sampled_targets(safe, inside),
        )

    def update_priorities(self, index: np.ndarray, priorities: np.ndarray) -> None:
        """Sets new priorities (e.g. |predicted value - target|) at storage indices."""
        priorities = np.asarray(priorities, np.float32)
        if not np.isfinite(priorities).all():
            raise ValueError("priorities must be finite")
        live = self.valid[index]
        self.priorities[np.asarray(index)[live]] = np.abs(priorities[live]) + 1e-6

    def update_search(self, index: np.ndarray, policies: np.ndarray, root_values: np.ndarray) -> None:
        """Replaces the stored search policies and root values (reanalyse)."""
        self.policies[index] = policies
        self.root_values[index] = root_values

    # -- checkpointing -------------------------------------------------------------------------

    _ARRAYS = ("observations", "actions", "rewards", "root_values", "policies", "legal", "signs",
               "game_start", "game_end", "end_values", "terminated", "valid", "priorities")

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name).copy() for name in self._ARRAYS}
        state.update(final_observations={k: v.copy() for k, v in self.final_observations.items()},
                     cursor=self.cursor, games_added=self.games_added,
                     positions_added=self.positions_added, rng=self.rng.bit_generator.state)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._ARRAYS:
            current = getattr(self, name)
            array = np.asarray(state[name])
            if array.shape != current.shape or array.dtype != current.dtype:
                raise ValueError(
                    f"replay state {name}: expected {current.dtype} {list(current.shape)}, got "
                    f"{array.dtype} {list(array.shape)}"
                )
        for name in self._ARRAYS:
            getattr(self, name)[...] = state[name]
        # Checkpoints written before final observations were kept have none.
        self.final_observations = {int(k): np.asarray(v, self.obs_dtype).copy()
                                   for k, v in state.get("final_observations", {}).items()}
        self.cursor = int(state["cursor"])
        self.stored = int(self.valid.sum())
        self.games_added = int(state["games_added"])
        self.positions_added = int(state["positions_added"])
        self.rng.bit_generator.state = state["rng"]
