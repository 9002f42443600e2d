"""Batched self-play: N environments, one batched wmfast search per move for all of them.

Every move: one ``initial_inference`` call on the N current observations, one search of N trees
(a batched model call per simulation, the loop in C++), an action per environment (sampled from
visits^(1/temperature), or the Gumbel search's choice), then each environment steps. Finished
episodes come back as :class:`~wmfast.muzero.replay.Game` records; a truncated episode's game
carries the network's value of its final observation to bootstrap from.

With ``reuse_tree`` each search continues from the previous search's subtree under the action
played (its statistics and latents kept, the root refreshed from the new observation); a tree
whose environment was reset starts afresh (``action_taken`` -1 for that tree).

Legal actions come from ``info["action_mask"]`` (the gymnasium/PettingZoo convention) when the
environment provides one, or from a ``legal_actions(env, obs, info)`` callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from wmfast.muzero.networks import SearchModel
from wmfast.muzero.replay import Game

__all__ = ["LegalActionsFn", "SelfPlay", "choose_actions", "env_action"]

LegalActionsFn = Callable[[Any, Any, dict], Any]


def choose_actions(visits: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """[B] actions from visit counts [B, A]: argmax at temperature 0 (ties to the lowest index),
    else sampled from visits^(1/temperature)."""
    if temperature == 0.0:
        return visits.argmax(axis=1)
    weights = visits.astype(np.float64) ** (1.0 / temperature)
    weights /= weights.sum(axis=1, keepdims=True)
    cumulative = weights.cumsum(axis=1)
    draws = rng.random((len(visits), 1)) * cumulative[:, -1:]
    return np.minimum((cumulative <= draws).sum(axis=1), visits.shape[1] - 1)


def env_action(env: Any, action: Any) -> Any:
    """What ``env.step`` takes: an int for a discrete action, an array of the action space's
    dtype for a continuous one (a Box)."""
    if np.ndim(action) == 0:
        return int(action)
    return np.asarray(action, dtype=env.action_space.dtype)


def _legal_mask(env: Any, obs: Any, info: dict, num_actions: int,
                legal_actions: LegalActionsFn | None) -> np.ndarray | None:
    if legal_actions is not None:
        mask = legal_actions(env, obs, info)
    elif "action_mask" in info:
        mask = info["action_mask"]
    else:
        return None
    mask = np.asarray(mask).astype(bool)
    if mask.shape != (num_actions,):
        raise ValueError(f"action mask must have shape [{num_actions}], got {list(mask.shape)}")
    return mask


def stack_masks(masks: Sequence[np.ndarray | None], num_actions: int) -> np.ndarray | None:
    """[N, A] bool legal actions from per-environment masks (None: all legal), or None when no
    environment gave one."""
    if all(m is None for m in masks):
        return None
    return np.stack([np.ones(num_actions, bool) if m is None else m for m in masks])


class SelfPlay:
    """Plays N environments with a batched search and collects finished games.

    Args:
      envs: N gymnasium environments (Discrete actions), reset here with seeds seed..seed+N-1.
      model: the network seen by the search (a SearchModel, or a StochasticSearchModel for a
        wm.StochasticMCTS).
      search: a wm.MCTS, wm.GumbelMCTS or wm.StochasticMCTS with num_actions = the
        environments' action count, or a wm.SampledMCTS (Sampled MuZero): the action played is
        the chosen root sample, and the games keep the root samples (Game.sampled_actions)
        with their visit distribution as the policy target.
      num_actions: A (0 for continuous actions).
      two_player: alternating two-player zero-sum game (recorded in the games).
      seed: seed of the environments and of the action sampling.
      legal_actions: optional ``legal_actions(env, obs, info) -> [A] bool``.
      search_model: what the search calls (default: ``model``), e.g. a wm.NativeModel export
        of ``model.recurrent_inference`` (``wmfast.muzero.native_selfplay``); the root still
        comes from ``model.initial_inference``.
      reuse_tree: continue each search from the previous move's subtree (wm.MCTS only: the
        Gumbel search's Sequential Halving budgets the visits of one search).
    """

    def __init__(
        self,
        envs: Sequence[Any],
        model: SearchModel,
        search: Any,
        num_actions: int,
        two_player: bool = False,
        seed: int = 0,
        legal_actions: LegalActionsFn | None = None,
        search_model: Any = None,
        reuse_tree: bool = False,
    ) -> None:
        self.envs = list(envs)
        self.model, self.search, self.num_actions = model, search, num_actions
        self.search_model = model if search_model is None else search_model
        self.two_player = two_player
        self.legal_actions = legal_actions
        self.rng = np.random.default_rng(seed)
        self._gumbel = type(search).__name__ == "GumbelMCTS"
        self._sampled = type(search).__name__ == "SampledMCTS"
        if reuse_tree and self._gumbel:
            raise ValueError("reuse_tree needs a wm.MCTS search: GumbelMCTS offers no tree reuse "
                             "(Sequential Halving budgets the root visits of one search)")
        if reuse_tree and type(search).__name__ == "StochasticMCTS":
            raise ValueError("reuse_tree needs a wm.MCTS search: a StochasticMCTS subtree is "
                             "reached by an action and a chance outcome, which the environment "
                             "does not report")
        self.reuse_tree = bool(reuse_tree)
        # The last search and, per environment, the action played since (-1: reset), to reuse.
        self._previous: Any = None
        self._taken: np.ndarray | None = None
        self.obs: list[Any] = []
        self.masks: list[np.ndarray | None] = []
        for i, env in enumerate(self.envs):
            obs, info = env.reset(seed=seed + i)
            self.obs.append(obs)
            self.masks.append(_legal_mask(env, obs, info, num_actions, legal_actions))
        self._history: list[dict[str, list]] = [self._empty() for _ in self.envs]
        self._returns = [0.0] * len(self.envs)
        self.episode_returns: list[float] = []   # returns of the episodes finished so far
        self.episode_lengths: list[int] = []

    @staticmethod
    def _empty() -> dict[str, list]:
        return {"observations": [], "actions": [], "rewards": [], "root_values": [], "policies": [],
                "legal": [], "samples": []}

    def _observations(self) -> torch.Tensor:
        return torch.as_tensor(np.stack(self.obs), dtype=torch.get_default_dtype())

    def search_batch(self, obs: torch.Tensor, masks: list[np.ndarray | None],
                     reuse: Any = None, action_taken: np.ndarray | None = None) -> Any:
        """One batched search from the observations [N, *obs_shape] (continuing ``reuse``, the
        previous search, under ``action_taken`` when given)."""
        root = self.model.initial_inference(obs)
        legal = stack_masks(masks, self.num_actions)
        if reuse is None:
            return self.search.search(self.search_model, root, legal_actions=legal)
        return self.search.search(self.search_model, root, legal_actions=legal, reuse=reuse,
                                  action_taken=action_taken)

    def step(self, temperature: float) -> list[Game]:
        """One move in every environment; returns the games that finished."""
        out = self.search_batch(self._observations(), self.masks, self._previous, self._taken)
        visits = np.asarray(out.visit_counts)
        if self._gumbel:
            actions = np.asarray(out.action).astype(np.int64)
        else:
            actions = choose_actions(visits, temperature, self.rng)
        policies = np.asarray(out.policy, dtype=np.float32)
        root_values = np.asarray(out.root_value, dtype=np.float32)
        taken = np.array(actions, dtype=np.int64)   # per tree, for the next search's reuse
        samples = None
        if self._sampled:   # `actions` index the root samples: play the chosen sample
            samples = np.asarray(out.actions)
            actions = samples[np.arange(len(actions)), actions]
        finished: list[Game] = []
        truncated_games: list[tuple[Game, Any]] = []
        for i, env in enumerate(self.envs):
            history = self._history[i]
            history["observations"].append(self.obs[i])
            history["actions"].append(actions[i] if self._sampled else int(actions[i]))
            if samples is not None:
                history["samples"].append(samples[i])
            history["root_values"].append(root_values[i])
            history["policies"].append(policies[i])
            history["legal"].append(self.masks[i])
            obs, reward, terminated, truncated, info = env.step(
                env_action(env, actions[i]))
            history["rewards"].append(float(reward))
            self._returns[i] += float(reward)
            if terminated or truncated:
                game = Game(
                    observations=np.stack(history["observations"]),
                    actions=np.asarray(history["actions"],
                                       np.float32 if samples is not None and samples.ndim == 3
                                       else np.int64),
                    rewards=np.asarray(history["rewards"], np.float32),
                    root_values=np.asarray(history["root_values"], np.float32),
                    policies=np.stack(history["policies"]).astype(np.float32),
                    terminated=bool(terminated),
                    to_play_changes=self.two_player,
                    legal_actions=stack_masks(history["legal"], self.num_actions),
                    final_observation=np.asarray(obs),
                    sampled_actions=np.stack(history["samples"]) if self._sampled else None,
                )
                finished.append(game)
                if not terminated:
                    truncated_games.append((game, obs))
                self.episode_returns.append(self._returns[i])
                self.episode_lengths.append(len(game))
                self._returns[i] = 0.0
                self._history[i] = self._empty()
                obs, info = env.reset()
                taken[i] = -1   # a new episode: its tree starts afresh
            self.obs[i] = obs
            self.masks[i] = _legal_mask(env, obs, info, self.num_actions, self.legal_actions)
        if self.reuse_tree:
            self._previous, self._taken = out, taken
        if truncated_games:
            final = torch.as_tensor(np.stack([o for _, o in truncated_games]),
                                    dtype=torch.get_default_dtype())
            values = self.model.initial_inference(final).value.cpu().numpy()
            for (game, _), value in zip(truncated_games, values):
                game.end_value = float(value)
        return finished
