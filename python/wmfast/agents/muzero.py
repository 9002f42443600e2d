"""MuZeroAgent: learn a value-equivalent model of a gymnasium environment and plan with it.

The loop (``train``): N environments play with one batched wmfast search per move; finished
games go to a prioritized replay; the learner minimises MuZero's K-step unrolled loss at a fixed
number of gradient updates per environment step; optionally, stored positions are re-searched
with the current network (reanalyse). Everything runs in one process on the network's device.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import wmfast as wm
from wmfast.agents._checkpoint import atomic_save
from wmfast.muzero.config import Config, training_progress
from wmfast.muzero.loss import unrolled_loss
from wmfast.muzero.networks import MLPNetwork, SearchModel
from wmfast.muzero.reanalyse import reanalyse
from wmfast.muzero.replay import Replay
from wmfast.muzero.selfplay import LegalActionsFn, SelfPlay, _legal_mask, env_action, stack_masks
from wmfast.muzero.stochastic import (
    STOCHASTIC_NETWORK_METHODS,
    StochasticMLPNetwork,
    StochasticSearchModel,
    stochastic_unrolled_loss,
)

__all__ = ["MuZeroAgent", "TrainingError"]


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. the loss became NaN); the message names the update."""


def _check_env(env: Any, sampled: bool = False) -> tuple[tuple[int, ...], Any, int]:
    """(observation shape, observation dtype, A); A is 0 for a Box action space (sampled)."""
    import gymnasium as gym

    box = isinstance(env.action_space, gym.spaces.Box)
    if not isinstance(env.action_space, gym.spaces.Discrete) and not (sampled and box):
        raise TypeError(
            "MuZeroAgent needs a Discrete action space, got "
            f"{type(env.action_space).__name__} ({env.action_space}); continuous (Box) actions "
            "need Config(search='sampled') (Sampled MuZero)")
    if box:
        space = env.action_space
        if len(space.shape) != 1 or not (np.isfinite(space.low).all()
                                         and np.isfinite(space.high).all()):
            raise TypeError(f"search='sampled' needs a 1-D Box action space with finite bounds, "
                            f"got {space}")
    if not isinstance(env.observation_space, gym.spaces.Box):
        raise TypeError(
            "MuZeroAgent needs a Box observation space, got "
            f"{type(env.observation_space).__name__} ({env.observation_space}); wrap the "
            "environment (e.g. gymnasium.wrappers.FlattenObservation / a one-hot wrapper)"
        )
    return (tuple(env.observation_space.shape), env.observation_space.dtype,
            0 if box else int(env.action_space.n))


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    if threads is None or threads == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def search_model(network: Any, config: Config) -> Any:
    """The network as the config's search sees it (supports decoded, no autograd)."""
    if config.search == "stochastic":
        return StochasticSearchModel(network, config.support_size, config.two_player)
    return SearchModel(network, config.support_size, config.two_player)


class MuZeroAgent:
    """A MuZero agent for a gymnasium environment with Discrete actions and Box observations;
    with ``Config(search="sampled")`` (Sampled MuZero, ``wmfast.muzero.sampled``) also Box
    actions, planned with wm.SampledMCTS over ``num_samples`` sampled actions.

    Args:
      env_fn: makes one environment (called ``config.num_envs`` times, plus for evaluation).
      network: an ``nn.Module`` with ``initial_inference`` / ``recurrent_inference``
        (``wmfast.muzero.networks``); with Config.search="stochastic", one with Stochastic
        MuZero's functions (``wmfast.muzero.stochastic``). None builds the reference MLP
        network from the config (MLPNetwork, StochasticMLPNetwork, or for Box actions a
        SampledMLPNetwork: a Gaussian policy clipped to the bounds).
      config: a ``wmfast.muzero.Config``.
      search: the search to plan with (a wm.MCTS / wm.GumbelMCTS / wm.StochasticMCTS /
        wm.SampledMCTS); None builds the one the config names. Evaluation and ``act`` use a
        search built from the config without root noise.
      legal_actions: optional ``legal_actions(env, obs, info) -> [A] bool`` when the
        environment does not put an ``action_mask`` in its info.
    """

    def __init__(
        self,
        env_fn: Callable[[], Any],
        network: torch.nn.Module | None = None,
        config: Config | None = None,
        search: Any = None,
        legal_actions: LegalActionsFn | None = None,
    ) -> None:
        self.config = config = Config() if config is None else config
        if not isinstance(config, Config):
            raise TypeError(f"config must be a wmfast.muzero.Config, got {type(config).__name__}")
        self.env_fn = env_fn
        probe = env_fn()
        sampled = config.search == "sampled"
        self.obs_shape, obs_dtype, self.num_actions = _check_env(probe, sampled)
        # Box actions (search="sampled"): D and the bounds; None for Discrete actions.
        self.action_dim: int | None = None
        if self.num_actions == 0:
            self.action_dim = int(probe.action_space.shape[0])
            self.action_low = np.asarray(probe.action_space.low, np.float32)
            self.action_high = np.asarray(probe.action_space.high, np.float32)
        probe.close()
        if sampled:
            self._check_sampled(config)
        torch.manual_seed(config.seed)
        stochastic = config.search == "stochastic"
        if network is None and stochastic:
            network = StochasticMLPNetwork(int(np.prod(self.obs_shape)), self.num_actions,
                                           config.num_chance_outcomes, config.latent_dim,
                                           config.hidden, config.support_size)
        elif network is None and self.action_dim is not None:
            from wmfast.muzero.sampled import SampledMLPNetwork

            network = SampledMLPNetwork(int(np.prod(self.obs_shape)), self.action_dim,
                                        self.action_low, self.action_high, config.latent_dim,
                                        config.hidden, config.support_size)
        if network is None:
            network = MLPNetwork(int(np.prod(self.obs_shape)), self.num_actions,
                                 config.latent_dim, config.hidden, config.support_size)
        methods = (STOCHASTIC_NETWORK_METHODS if stochastic
                   else ("initial_inference", "recurrent_inference"))
        for method in methods:
            if not callable(getattr(network, method, None)):
                raise TypeError(f"network must have a {method} method (Config.search="
                                f"{config.search!r}), got {type(network).__name__}")
        self.network = network
        self.device = next(network.parameters()).device
        self.model = search_model(network, config)
        self.search = search if search is not None else self._make_search(noise=True)
        self.eval_search = self._make_search(noise=False)
        self.legal_actions = legal_actions
        self.optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        obs_dtype = np.float32 if np.issubdtype(obs_dtype, np.floating) else obs_dtype
        if sampled:
            from wmfast.muzero.sampled import SampledReplay

            self.replay: Replay = SampledReplay(
                config.replay_capacity, self.obs_shape, obs_dtype, config.num_samples,
                config.discount, config.td_steps, config.unroll_steps, config.priority_alpha,
                config.priority_beta, seed=config.seed, **self._sampled_actions())
        else:
            self.replay = Replay(config.replay_capacity, self.obs_shape, obs_dtype,
                                 self.num_actions, config.discount, config.td_steps,
                                 config.unroll_steps, config.priority_alpha,
                                 config.priority_beta, seed=config.seed)
        self.env_steps = 0
        self.updates = 0
        self.episodes = 0
        self.train_seconds = 0.0
        self.history: list[dict[str, float]] = []   # one row per log interval
        self._reanalyse_cursor = 0
        self._updates_due = 0.0
        self._selfplay: SelfPlay | None = None
        self._native_model: Any = None   # Config.native_selfplay: a NativeSearchModel
        self.ray_runner: Any = None   # the last backend="ray" run (actors, received games)

    def _check_sampled(self, c: Config) -> None:
        if self.action_dim is None and c.num_samples > self.num_actions:
            raise ValueError(f"Config.num_samples must be <= the number of actions "
                             f"({self.num_actions}) with a Discrete action space (sampled "
                             f"without replacement), got {c.num_samples}")
        if self.action_dim is None and c.reanalyse_fraction > 0:
            # A position with fewer legal actions than K stores fewer samples, which the search
            # cannot be given back as root samples.
            raise ValueError("Config.reanalyse_fraction > 0 with search='sampled' needs a Box "
                             "action space (reanalysing discrete samples is not offered)")

    def _sampled_actions(self) -> dict[str, Any]:
        """The action-space arguments of SampledMCTS / SampledReplay for this environment."""
        if self.action_dim is None:
            return {"num_actions": self.num_actions}
        return {"action_dim": self.action_dim, "action_low": self.action_low,
                "action_high": self.action_high}

    def _make_search(self, noise: bool) -> Any:
        c = self.config
        if c.search == "stochastic":
            return wm.StochasticMCTS(self.num_actions, c.num_chance_outcomes, c.num_simulations,
                                     discount=c.discount, pb_c_init=c.pb_c_init,
                                     pb_c_base=c.pb_c_base, dirichlet_alpha=c.dirichlet_alpha,
                                     dirichlet_fraction=c.dirichlet_fraction if noise else 0.0,
                                     seed=c.seed, temperature=0.0)
        if c.search == "sampled":
            # Unvisited samples count as their parent's value (see wm.SampledMCTS): with the
            # uniform priors of continuous samples, mctx's minimum stops trying new samples.
            return wm.SampledMCTS(c.num_samples, c.num_simulations, discount=c.discount,
                                  pb_c_init=c.pb_c_init, pb_c_base=c.pb_c_base,
                                  dirichlet_alpha=c.dirichlet_alpha,
                                  dirichlet_fraction=c.dirichlet_fraction if noise else 0.0,
                                  seed=c.seed, temperature=0.0, unvisited_q="parent_value",
                                  **self._sampled_actions())
        if c.search == "gumbel":
            return wm.GumbelMCTS(self.num_actions, c.num_simulations,
                                 max_num_considered_actions=c.max_num_considered_actions,
                                 gumbel_scale=c.gumbel_scale if noise else 0.0,
                                 discount=c.discount, seed=c.seed)
        return wm.MCTS(self.num_actions, c.num_simulations, discount=c.discount,
                       pb_c_init=c.pb_c_init, pb_c_base=c.pb_c_base,
                       dirichlet_alpha=c.dirichlet_alpha,
                       dirichlet_fraction=c.dirichlet_fraction if noise else 0.0,
                       seed=c.seed, temperature=0.0)

    # -- acting ---------------------------------------------------------------------------------

    def _greedy(self, obs: np.ndarray, legal: np.ndarray | None) -> np.ndarray:
        self.network.eval()
        obs_t = torch.as_tensor(obs, dtype=torch.get_default_dtype(), device=self.device)
        out = self.eval_search.search(self.model, self.model.initial_inference(obs_t),
                                      legal_actions=legal)
        if self.config.search == "gumbel":
            return np.asarray(out.action).astype(np.int64)
        best = np.asarray(out.visit_counts).argmax(axis=1)
        if self.config.search == "sampled":   # the most visited root sample
            return np.asarray(out.actions)[np.arange(len(best)), best]
        return best

    def act(self, obs: Any, legal_actions: Any = None) -> int | torch.Tensor:
        """The greedy action (most visited; Gumbel: the best considered action without noise;
        sampled: the most visited root sample): an int for one observation, an int64 tensor [B]
        for a batch [B, *obs_shape]; Box actions: a float32 tensor [D] or [B, D].
        ``legal_actions``: [A] or [B, A] bool (None: all legal, or the environment's mask is
        not known here)."""
        array = np.asarray(obs)
        single = array.shape == self.obs_shape
        if not single and array.shape[1:] != self.obs_shape:
            raise ValueError(f"obs must have shape {list(self.obs_shape)} or [B, "
                             f"{', '.join(map(str, self.obs_shape))}], got {list(array.shape)}")
        batch = array[None] if single else array
        if legal_actions is not None and self.action_dim is not None:
            raise ValueError("legal_actions: continuous (Box) actions have no legal-action mask")
        legal = None if legal_actions is None else np.asarray(legal_actions, bool).reshape(
            len(batch), self.num_actions)
        actions = self._greedy(batch, legal)
        if self.action_dim is not None:
            actions = torch.from_numpy(np.asarray(actions, np.float32))
            return actions[0] if single else actions
        return int(actions[0]) if single else torch.from_numpy(actions)

    def evaluate(self, episodes: int = 20, seed: int = 10_000) -> dict[str, Any]:
        """Greedy returns over ``episodes`` episodes played together (one batched search per
        move). Returns {"mean_return": float, "returns": float64 tensor [episodes],
        "lengths": int64 tensor [episodes]}. In a two-player game (Config.two_player) the agent
        plays both sides and a return is the first player's: its rewards minus the opponent's
        (rewards are the mover's), e.g. +1 win, 0 draw, -1 loss."""
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
            raise ValueError(f"episodes must be an int >= 1, got {episodes!r}")
        with _torch_threads(self.config.torch_threads):
            return self._evaluate(episodes, seed)

    def _evaluate(self, episodes: int, seed: int) -> dict[str, Any]:
        envs = [self.env_fn() for _ in range(episodes)]
        obs, masks = [], []
        for i, env in enumerate(envs):
            o, info = env.reset(seed=seed + i)
            obs.append(o)
            masks.append(_legal_mask(env, o, info, self.num_actions, self.legal_actions))
        returns = np.zeros(episodes)
        lengths = np.zeros(episodes, np.int64)
        live = list(range(episodes))
        while live:
            legal = stack_masks([masks[i] for i in live], self.num_actions)
            actions = self._greedy(np.stack([obs[i] for i in live]), legal)
            still = []
            for i, action in zip(live, actions):
                o, reward, terminated, truncated, info = envs[i].step(env_action(envs[i], action))
                first_player_moved = lengths[i] % 2 == 0
                sign = -1.0 if self.config.two_player and not first_player_moved else 1.0
                returns[i] += sign * reward
                lengths[i] += 1
                obs[i] = o
                masks[i] = _legal_mask(envs[i], o, info, self.num_actions, self.legal_actions)
                if not (terminated or truncated):
                    still.append(i)
            live = still
        for env in envs:
            env.close()
        return {"mean_return": float(returns.mean()), "returns": torch.from_numpy(returns),
                "lengths": torch.from_numpy(lengths)}

    # -- learning -------------------------------------------------------------------------------

    def _learn(self, reanalyse: bool = True) -> dict[str, float]:
        """One gradient update (and, with ``reanalyse`` and Config.reanalyse_fraction > 0, the
        reanalysis that goes with it; the Ray backend's reanalyse actors do that part)."""
        c = self.config
        self.network.train()
        consistency = c.consistency_weight > 0
        stochastic = c.search == "stochastic"   # its chance encoder reads the next observations
        batch = self.replay.sample(c.batch_size, next_observations=consistency or stochastic)
        dev, dtype = self.device, torch.get_default_dtype()

        def tensor(x: np.ndarray, dt: torch.dtype = dtype) -> torch.Tensor:
            return torch.as_tensor(x, dtype=dt, device=dev)

        sampled = batch.sampled_actions
        actions = tensor(batch.actions, torch.int64 if batch.actions.dtype.kind in "iu" else dtype)
        args = (self.network, tensor(batch.observations), actions,
                tensor(batch.target_values), tensor(batch.target_rewards),
                tensor(batch.target_policies), tensor(batch.value_mask),
                tensor(batch.reward_mask), tensor(batch.policy_mask), tensor(batch.weights),
                c.support_size, c.value_loss_weight)
        if stochastic:
            losses = stochastic_unrolled_loss(
                *args, next_observations=tensor(batch.next_observations),
                next_mask=tensor(batch.next_mask), chance_loss_weight=c.chance_loss_weight,
                commitment_weight=c.commitment_weight)
        else:
            losses = unrolled_loss(
                *args,
                next_observations=tensor(batch.next_observations) if consistency else None,
                consistency_weight=c.consistency_weight,
                sampled_actions=None if sampled is None else tensor(
                    sampled, torch.int64 if sampled.dtype.kind in "iu" else dtype))
        if not torch.isfinite(losses.total):
            raise TrainingError(
                f"the loss became {losses.total.item()} at update {self.updates + 1} "
                f"(env step {self.env_steps}); the network's weights are those of update "
                f"{self.updates}")
        self.optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        if c.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), c.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        priorities = (losses.root_values.cpu().numpy() - batch.target_values[:, 0])
        self.replay.update_priorities(batch.index, priorities)
        if reanalyse and c.reanalyse_fraction > 0:
            self._reanalyse(max(1, round(c.reanalyse_fraction * c.batch_size)))
        stats = {"loss": losses.total.item(), "value_loss": float(losses.value),
                 "reward_loss": float(losses.reward), "policy_loss": float(losses.policy),
                 "consistency_loss": float(losses.consistency)}
        if stochastic:
            stats.update(q_loss=float(losses.q_value), chance_loss=float(losses.chance),
                         commitment_loss=float(losses.commitment))
        return stats

    def _reanalyse(self, count: int) -> None:
        """Re-searches the next ``count`` stored positions, sweeping the replay in order."""
        valid = np.flatnonzero(self.replay.valid)
        if len(valid) == 0:
            return
        start = np.searchsorted(valid, self._reanalyse_cursor)
        index = valid[(start + np.arange(min(count, len(valid)))) % len(valid)]
        self._reanalyse_cursor = int(index[-1]) + 1
        self.network.eval()
        reanalyse(self.replay, self.model, self.search, index)

    def train(
        self,
        env_steps: int,
        *,
        time_limit: float | None = None,
        eval_every: float | None = None,
        eval_episodes: int = 20,
        target_return: float | None = None,
        log_dir: str | None = None,
        progress: bool = True,
        checkpoint: str | None = None,
        backend: str = "local",
        num_actors: int | None = None,
        num_reanalysers: int | None = None,
        ray_options: Any = None,
    ) -> list[dict[str, float]]:
        """Trains for ``env_steps`` more environment steps (or until ``time_limit`` seconds).

        Args:
          env_steps: environment steps to play (all environments together).
          time_limit: stop after this many seconds of training (None: no limit).
          eval_every: evaluate greedily every this many seconds of training (None: never).
          eval_episodes: episodes per evaluation.
          target_return: stop once an evaluation's mean return reaches it.
          log_dir: write ``log.csv`` (and TensorBoard events when tensorboard is installed).
          progress: show a tqdm progress bar.
          checkpoint: save the agent there after every evaluation (atomic) and at the end.
          backend: "local" (everything in this process) or "ray": self-play and reanalyse in
            Ray actors, the learner and the replay here (``wmfast.muzero.distributed``; needs
            ``pip install "wmfast[ray]"``).
          num_actors: (ray) self-play actors, each with ``config.num_envs`` environments and
            its own batched search (default 2).
          num_reanalysers: (ray) reanalyse actors doing the learner's reanalysis
            (``config.reanalyse_fraction`` > 0 needed; default 0: the learner reanalyses).
          ray_options: (ray) a ``wmfast.muzero.distributed.RayOptions`` (cluster address,
            weights_every, actor resources, ...).
        Returns: the log rows of this call (also in ``self.history``).
        """
        if isinstance(env_steps, bool) or not isinstance(env_steps, int) or env_steps < 1:
            raise ValueError(f"env_steps must be an int >= 1, got {env_steps!r}")
        runner = self._ray_runner(backend, num_actors, num_reanalysers, ray_options)
        try:
            with _torch_threads(self.config.torch_threads):
                return self._train(env_steps, time_limit, eval_every, eval_episodes,
                                   target_return, log_dir, progress, checkpoint, runner)
        finally:
            if runner is not None:
                runner.shutdown()   # the actors stop with the call (Ray itself keeps running)

    def _ray_runner(self, backend: str, num_actors: int | None, num_reanalysers: int | None,
                    ray_options: Any) -> Any:
        """None for backend="local"; for "ray", a RayRunner with its actors started."""
        if backend == "local":
            for name, value in (("num_actors", num_actors), ("num_reanalysers", num_reanalysers),
                                ("ray_options", ray_options)):
                if value is not None:
                    raise ValueError(f"{name} is a setting of backend='ray', got {name}={value!r} "
                                     "with backend='local'")
            return None
        if backend != "ray":
            raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
        num_actors = 2 if num_actors is None else num_actors
        num_reanalysers = 0 if num_reanalysers is None else num_reanalysers
        for name, value, low in (("num_actors", num_actors, 1),
                                 ("num_reanalysers", num_reanalysers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if num_reanalysers and self.config.reanalyse_fraction == 0:
            raise ValueError(f"num_reanalysers={num_reanalysers} needs Config.reanalyse_fraction "
                             "> 0 (the share of each batch re-searched), got 0")
        from wmfast.muzero.distributed import RayOptions, RayRunner, require_ray

        if self.config.native_selfplay:
            warnings.warn("Config.native_selfplay applies to backend='local': the Ray self-play "
                          "actors search with the eager SearchModel", RuntimeWarning, stacklevel=3)

        require_ray()
        if ray_options is None:
            ray_options = RayOptions()
        if not isinstance(ray_options, RayOptions):
            raise TypeError("ray_options must be a wmfast.muzero.distributed.RayOptions, got "
                            f"{type(ray_options).__name__}")
        self.ray_runner = RayRunner(self, num_actors, num_reanalysers, ray_options)
        return self.ray_runner

    def _train(self, env_steps: int, time_limit: float | None, eval_every: float | None,
               eval_episodes: int, target_return: float | None, log_dir: str | None,
               progress: bool, checkpoint: str | None, runner: Any = None
               ) -> list[dict[str, float]]:
        c = self.config
        if self._selfplay is None and runner is None:
            envs = [self.env_fn() for _ in range(c.num_envs)]
            if c.native_selfplay:
                from wmfast.muzero.native_selfplay import NativeSearchModel

                self._native_model = NativeSearchModel.create(
                    self.model, self.obs_shape, c.native_refresh_every,
                    action_dim=self.action_dim if c.search == "sampled" else None)
            self._selfplay = SelfPlay(envs, self.model, self.search, self.num_actions,
                                      c.two_player, seed=c.seed + 1000 * self.episodes,
                                      legal_actions=self.legal_actions,
                                      search_model=self._native_model and self._native_model.native,
                                      reuse_tree=c.reuse_tree)
        elif self._native_model is not None and runner is None:
            self._native_model.refresh()   # the network may have changed between two calls
        selfplay = self._selfplay
        with contextlib.ExitStack() as stack:
            csv_file = writer = bar = None
            if log_dir is not None:
                os.makedirs(log_dir, exist_ok=True)
                csv_file = stack.enter_context(
                    open(os.path.join(log_dir, "log.csv"), "a", newline=""))
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    pass
                else:
                    writer = SummaryWriter(log_dir)
                    stack.callback(writer.close)
            if progress:
                from tqdm.auto import tqdm

                bar = stack.enter_context(
                    tqdm(total=env_steps, unit="step", desc="MuZero", dynamic_ncols=True))
            if runner is not None:
                rows = runner.run(env_steps, time_limit, eval_every, eval_episodes, target_return,
                                  checkpoint, csv_file, writer, bar)
            else:
                rows = self._train_loop(selfplay, env_steps, time_limit, eval_every,
                                        eval_episodes, target_return, checkpoint, csv_file,
                                        writer, bar)
        if checkpoint is not None:
            self.save(checkpoint)
        return rows

    def _train_loop(self, selfplay: SelfPlay, env_steps: int, time_limit: float | None,
                    eval_every: float | None, eval_episodes: int, target_return: float | None,
                    checkpoint: str | None, csv_file: Any, writer: Any,
                    bar: Any) -> list[dict[str, float]]:
        c = self.config
        rows: list[dict[str, float]] = []
        start_steps, start_time = self.env_steps, time.perf_counter()
        base_seconds = self.train_seconds
        last_eval = base_seconds
        last_log = time.perf_counter()
        learn_stats: dict[str, float] = {}
        while self.env_steps - start_steps < env_steps:
            elapsed = time.perf_counter() - start_time
            if time_limit is not None and elapsed >= time_limit:
                break
            self.network.eval()
            progress = training_progress(self.env_steps - start_steps, env_steps, elapsed,
                                         time_limit)
            games = selfplay.step(c.temperature(progress))
            for game in games:
                self.replay.add(game)
            self.episodes += len(games)
            self.env_steps += len(selfplay.envs)
            if bar is not None:
                bar.update(len(selfplay.envs))
            self._updates_due += c.updates_per_step * len(selfplay.envs)
            while self._updates_due >= 1.0:
                self._updates_due -= 1.0
                if len(self.replay) < max(c.min_replay, 1):
                    continue
                learn_stats = self._learn()
                if self._native_model is not None:
                    self._native_model.updated()
            self.train_seconds = base_seconds + (time.perf_counter() - start_time)
            evaluate_now = (eval_every is not None
                            and self.train_seconds - last_eval >= eval_every
                            and self.updates > 0)
            if evaluate_now or time.perf_counter() - last_log >= 5.0:
                last_log = time.perf_counter()
                recent = selfplay.episode_returns[-20:]
                row = {"env_steps": self.env_steps, "updates": self.updates,
                       "episodes": self.episodes, "seconds": round(self.train_seconds, 2),
                       "train_return": float(np.mean(recent)) if recent else math.nan,
                       **learn_stats}
                if evaluate_now:
                    last_eval = self.train_seconds
                if self._report(row, evaluate_now, eval_episodes,
                                lambda: base_seconds + (time.perf_counter() - start_time),
                                target_return, checkpoint, rows, csv_file, writer, bar):
                    break
        return rows

    def _report(self, row: dict[str, float], evaluate: bool, eval_episodes: int,
                clock: Callable[[], float], target_return: float | None,
                checkpoint: str | None, rows: list[dict[str, float]], csv_file: Any,
                writer: Any, bar: Any) -> bool:
        """One log row of a training loop (local or Ray): a greedy evaluation first when
        ``evaluate`` (its time counted by ``clock``, the training seconds so far), then the row
        to ``rows``, the history, the logs and the progress bar, and the checkpoint after an
        evaluation. True once an evaluation reaches ``target_return``."""
        if evaluate:
            row["eval_return"] = self.evaluate(eval_episodes)["mean_return"]
            self.train_seconds = clock()
            row["seconds"] = round(self.train_seconds, 2)
        rows.append(row)
        self.history.append(row)
        self._log(row, csv_file, writer)
        if bar is not None:
            bar.set_postfix({k: round(v, 1) for k, v in row.items()
                             if k in ("train_return", "eval_return", "loss")})
        if evaluate and checkpoint is not None:
            self.save(checkpoint)
        return (target_return is not None and "eval_return" in row
                and row["eval_return"] >= target_return)

    _LOG_FIELDS = ("env_steps", "updates", "episodes", "seconds", "train_return", "eval_return",
                   "loss", "value_loss", "reward_loss", "policy_loss", "consistency_loss",
                   # Config.search="stochastic"
                   "q_loss", "chance_loss", "commitment_loss",
                   # backend="ray": newest published weights, max staleness, actors replaced
                   "weights_version", "staleness", "actor_restarts")

    def _log(self, row: dict[str, float], csv_file: Any, writer: Any) -> None:
        if csv_file is not None:
            csv_writer = csv.DictWriter(csv_file, fieldnames=self._LOG_FIELDS, extrasaction="ignore")
            if csv_file.tell() == 0:
                csv_writer.writeheader()
            csv_writer.writerow(row)
            csv_file.flush()
        if writer is not None:
            for key, value in row.items():
                if key != "env_steps" and isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(key, value, row["env_steps"])

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Network (the module itself), optimizer, replay, counters, config and RNG states."""
        return {
            "format": "wmfast.MuZeroAgent/1",
            "config": dataclasses.asdict(self.config),
            "network": self.network,
            "optimizer": self.optimizer.state_dict(),
            "replay": self.replay.state_dict(),
            "counters": {"env_steps": self.env_steps, "updates": self.updates,
                         "episodes": self.episodes, "train_seconds": self.train_seconds,
                         "reanalyse_cursor": self._reanalyse_cursor,
                         # Each search of a planner draws the next random stream of its seed:
                         # a resumed run continues the streams.
                         "search_streams": [getattr(s, "_searches", 0)
                                            for s in (self.search, self.eval_search)]},
            "history": list(self.history),
            "torch_rng": torch.get_rng_state(),
        }

    def save(self, path: str) -> None:
        """Writes the agent to ``path`` atomically (a kill mid-save leaves the old file)."""
        atomic_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str, env_fn: Callable[[], Any],
             legal_actions: LegalActionsFn | None = None) -> MuZeroAgent:
        """An agent saved by :meth:`save`, ready to act or to continue training (the
        self-play environments start new episodes)."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or state.get("format") != "wmfast.MuZeroAgent/1":
            raise ValueError(f"{path} is not a wmfast MuZeroAgent checkpoint")
        config = Config(**{k: (tuple(tuple(t) for t in v) if k == "temperatures" else v)
                           for k, v in state["config"].items()})
        agent = cls(env_fn, network=state["network"], config=config,
                    legal_actions=legal_actions)
        agent.optimizer.load_state_dict(state["optimizer"])
        agent.replay.load_state_dict(state["replay"])
        counters = state["counters"]
        agent.env_steps, agent.updates = counters["env_steps"], counters["updates"]
        agent.episodes, agent.train_seconds = counters["episodes"], counters["train_seconds"]
        agent._reanalyse_cursor = counters["reanalyse_cursor"]
        for search, streams in zip((agent.search, agent.eval_search), counters["search_streams"]):
            if hasattr(search, "_searches"):
                search._searches = streams
        agent.history = list(state["history"])
        torch.set_rng_state(state["torch_rng"])
        return agent
