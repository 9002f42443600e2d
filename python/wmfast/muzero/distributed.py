"""MuZero on Ray: self-play and reanalyse in Ray actors, the learner and the replay in the driver.

``MuZeroAgent.train(..., backend="ray", num_actors=N, num_reanalysers=M)`` runs this module's
:class:`RayRunner`; the agent, its config, network and search are the ones of the in-process path.

Layout:
  * N self-play actors, each with ``config.num_envs`` environments of its own, a copy of the
    network (on the CPU) and its own batched wmfast search (the agent's search rebuilt with a
    seed of its own). A call plays ``moves_per_call`` moves in every environment and returns the
    games that finished; the driver keeps ``calls_in_flight`` calls queued on each actor, so an
    actor does not wait for the driver between calls.
  * M reanalyse actors: the driver hands each a batch of stored positions (observations and
    legal masks), the actor searches them with the current weights and returns policies and root
    values, which the driver writes back where the replay still holds the same position.
  * The learner and the replay live in the driver. The learner samples a batch for every update;
    keeping the replay beside it costs no round trip and no copy of the batch, the replay has one
    writer (no locking), and a checkpoint (``agent.save``) is the in-process one, taken between
    two updates. A game is one object per finished episode: the traffic into the driver is the
    games themselves, which the learner has to see anyway.
  * Weights: one ``ray.put`` of the network's state dict per version, published once at least
    ``weights_every`` learner updates have happened since the last one. Each actor call names the
    newest version; an actor fetches it only when it differs from the one it holds. The games of
    a call were played with weights at most ``weights_every - 1`` updates behind the learner's at
    the time the call was submitted (logged per interval as ``staleness``: learner updates at
    receipt minus the updates of the weights the games were played with, the maximum over the
    interval).
  * The learner keeps the in-process ratio of gradient updates to environment steps
    (``config.updates_per_step``): it learns as results arrive, and the actors wait when it falls
    behind, so a Ray run learns from the same amount of data per update as a local one.

Fault tolerance: an actor that dies (``ray.kill``, a crashed process, a lost node) is replaced by a
new one in its slot, with a new seed, and training continues; games from calls that returned
before the death are all in the replay (each game carries its actor slot, the actor's
incarnation and a sequence number, and the driver checks that none is missing or repeated).
Episodes in progress on the dead actor are lost. An exception raised by the user's code inside an
actor (an environment's error, say) is not retried: it stops training with that error, and so
does an actor whose construction failed.

Imports ray lazily: the in-process path never imports it.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from wmfast.muzero.config import Config, training_progress
from wmfast.muzero.reanalyse import search_targets
from wmfast.muzero.replay import Game
from wmfast.muzero.selfplay import LegalActionsFn, SelfPlay

__all__ = ["RayOptions", "RayRunner", "require_ray"]


def require_ray() -> Any:
    """The ray module, or an ImportError naming the extra that installs it."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            "backend='ray' needs Ray: pip install \"wmfast[ray]\" (or pip install ray)"
        ) from error
    return ray


@dataclasses.dataclass
class RayOptions:
    """Settings of a Ray run (``MuZeroAgent.train(..., backend="ray", ray_options=...)``).

    Args:
      address: the cluster to join when Ray is not initialised yet (``"auto"``, ``"ray://..."``,
        ``"HOST:6379"``); None starts a local Ray instance. An initialised Ray is used as it is,
        and Ray is left running after training either way.
      init_kwargs: more keyword arguments for ``ray.init`` when this run initialises Ray.
      weights_every: publish the learner's weights (one ``ray.put``) every this many learner
        updates; the actors' games are at most this many updates behind (see ``staleness`` in
        the log).
      moves_per_call: moves each self-play actor plays (in all its environments) per call.
      calls_in_flight: calls queued on each self-play actor.
      actor_options: ``.options(...)`` of the self-play actors (resources, runtime_env, ...).
        The default asks for no CPU (the muzero-general pattern: Ray schedules by resources, and
        actors asking for 1 CPU each do not all start on a small machine); pass
        ``{"num_cpus": 1}`` to have Ray place one actor per core.
      reanalyser_options: ``.options(...)`` of the reanalyse actors.
      spread: place self-play actor i on the cluster's live node i mod (number of nodes) (a
        node affinity; it waits there for the resources it asks for), unless actor_options names
        a scheduling_strategy (pass "SPREAD" or "DEFAULT" to leave placement to Ray).
      max_restarts: actors (self-play and reanalyse together) replaced after dying before the
        run gives up with an error.
    """

    address: str | None = None
    init_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    weights_every: int = 10
    moves_per_call: int = 1
    calls_in_flight: int = 2
    actor_options: dict[str, Any] = dataclasses.field(default_factory=lambda: {"num_cpus": 0})
    reanalyser_options: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"num_cpus": 0})
    spread: bool = True
    max_restarts: int = 100

    def __post_init__(self) -> None:
        for name in ("weights_every", "moves_per_call", "calls_in_flight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RayOptions.{name} must be an int >= 1, got {value!r}")
        if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int) or (
                self.max_restarts < 0):
            raise ValueError(f"RayOptions.max_restarts must be an int >= 0, got "
                             f"{self.max_restarts!r}")
        for name in ("init_kwargs", "actor_options", "reanalyser_options"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"RayOptions.{name} must be a dict, got "
                                f"{type(getattr(self, name)).__name__}")


# -- searches travel as their settings -----------------------------------------------------------

def search_spec(search: Any) -> tuple[type, dict[str, Any], Any, int]:
    """What rebuilds ``search`` in another process: (class, MctsConfig / SampledConfig fields,
    qtransform, seed). wm.MCTS / wm.GumbelMCTS / wm.StochasticMCTS / wm.SampledMCTS hold a
    compiled config that does not pickle."""
    from wmfast.mcts import _Planner
    from wmfast.sampled import SampledMCTS

    if not isinstance(search, (_Planner, SampledMCTS)):
        raise TypeError("search must be a wm.MCTS, wm.GumbelMCTS, wm.StochasticMCTS or "
                        f"wm.SampledMCTS to run on Ray actors, got {type(search).__name__}")
    config = search.config
    fields = {name: getattr(config, name) for name in dir(config)
              if not name.startswith("_") and name not in ("validate", "seed")}
    fields["qtransform"] = config.qtransform.name
    # Settings a search class keeps beside its MctsConfig (StochasticMCTS: C).
    fields["_attributes"] = {name: getattr(search, name)
                             for name in ("num_chance_outcomes",) if hasattr(search, name)}
    return type(search), fields, search.qtransform, int(config.seed)


def build_search(spec: tuple[type, dict[str, Any], Any, int], seed: int) -> Any:
    """The search described by :func:`search_spec`, with random streams from ``seed``."""
    from wmfast import _torch_ext
    from wmfast.sampled import SampledMCTS

    cls, fields, qtransform, _ = spec
    search = cls.__new__(cls)
    search._ext = _torch_ext.load()
    sampled = issubclass(cls, SampledMCTS)
    config = search._ext.SampledConfig() if sampled else search._ext.MctsConfig()
    fields = dict(fields)
    for name, value in fields.pop("_attributes", {}).items():
        setattr(search, name, value)
    for name, value in fields.items():
        if name == "qtransform":
            value = getattr(search._ext.QTransform, value)
        setattr(config, name, value)
    config.seed = int(seed) % (1 << 64)
    config.validate()
    search.config, search.qtransform = config, qtransform
    search.num_simulations = int(config.num_simulations)
    if sampled:
        search.num_samples = int(config.num_samples)
        search._action_low, search._action_high = config.action_low, config.action_high
    else:
        search.num_actions = int(config.num_actions)
    search._searches = 0
    return search


def _actor_seed(base: int, slot: int, incarnation: int, episodes: int) -> int:
    return base + 7919 * (slot + 1) + 104_729 * incarnation + 1000 * episodes


# -- actors (plain classes: ray.remote wraps them when a run starts) -----------------------------

class _Worker:
    def __init__(self, network: torch.nn.Module, config: Config) -> None:
        torch.set_num_threads(config.torch_threads or 1)
        self.network = network
        self.network.eval()
        from wmfast.agents.muzero import search_model

        self.model = search_model(network, config)
        self.version = -1

    def _refresh(self, version: int, weights: list[Any]) -> None:
        if version != self.version:
            import ray

            self.network.load_state_dict(ray.get(weights[0]))
            self.network.eval()
            self.version = version

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


class SelfPlayWorker(_Worker):
    """A self-play actor: ``config.num_envs`` environments and one batched search."""

    def __init__(self, env_fn: Callable[[], Any], network: torch.nn.Module, spec: Any,
                 num_actions: int, config: Config, legal_actions: LegalActionsFn | None,
                 seed: int, slot: int, incarnation: int) -> None:
        super().__init__(network, config)
        self.slot, self.incarnation = slot, incarnation
        envs = [env_fn() for _ in range(config.num_envs)]
        self.selfplay = SelfPlay(envs, self.model, build_search(spec, seed), num_actions,
                                 config.two_player, seed=seed, legal_actions=legal_actions,
                                 reuse_tree=config.reuse_tree)
        self.produced = 0        # games handed over (sequence numbers 0..produced-1)
        self.node = self.node_id()
        self._returns_sent = 0

    def play(self, moves: int, temperature: float, version: int,
             weights: list[Any]) -> dict[str, Any]:
        self._refresh(version, weights)
        games: list[Game] = []
        with torch.no_grad():
            for _ in range(moves):
                games.extend(self.selfplay.step(temperature))
        first = self.produced
        self.produced += len(games)
        returns = self.selfplay.episode_returns[self._returns_sent:]
        self._returns_sent = len(self.selfplay.episode_returns)
        return {"slot": self.slot, "incarnation": self.incarnation, "node": self.node,
                "first_seq": first,
                "games": games, "returns": list(returns), "version": version,
                "env_steps": moves * len(self.selfplay.envs),
                "cpu_seconds": time.process_time()}     # the actor's CPU time so far

    def games_produced(self) -> int:
        return self.produced


class ReanalyseWorker(_Worker):
    """A reanalyse actor: searches batches of stored positions with the current weights."""

    def __init__(self, network: torch.nn.Module, spec: Any, config: Config, seed: int) -> None:
        super().__init__(network, config)
        self.search = build_search(spec, seed)

    def run(self, observations: np.ndarray, legal: np.ndarray, samples: np.ndarray | None,
            version: int, weights: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        self._refresh(version, weights)
        return search_targets(self.model, self.search, observations, legal, samples)


# -- the driver ----------------------------------------------------------------------------------

@dataclasses.dataclass
class _Slot:
    handle: Any
    incarnation: int
    queue: collections.deque = dataclasses.field(default_factory=collections.deque)  # self-play
    busy: bool = False       # reanalysers: a batch is out


class RayRunner:
    """Runs one ``MuZeroAgent.train`` call on Ray (made by the agent; see the module's text).

    After (and during) a run: ``selfplay`` and ``reanalysers`` hold the actor handles by slot,
    ``received`` the (slot, incarnation, sequence number) of every game added to the replay,
    ``placement`` the node id of each self-play slot's actor, ``steps_by_actor`` the
    environment steps received from each (slot, incarnation),
    ``restarts`` the actors replaced, ``reanalysed`` the positions whose search targets the
    reanalyse actors replaced, ``weights_version`` the learner updates of the newest
    published weights.
    """

    def __init__(self, agent: Any, num_actors: int, num_reanalysers: int,
                 options: RayOptions) -> None:
        self.ray = ray = require_ray()
        if not ray.is_initialized():
            ray.init(address=options.address, **options.init_kwargs)
        self.agent, self.options = agent, options
        self.num_actors, self.num_reanalysers = num_actors, num_reanalysers
        self.spec = search_spec(agent.search)
        network = agent.network
        cpu_network = _cpu_copy(network)
        self.network_ref = ray.put(cpu_network)
        self._selfplay_cls = ray.remote(SelfPlayWorker)
        self._reanalyse_cls = ray.remote(ReanalyseWorker)
        self.weights_version = -1
        self.weights_ref: Any = None
        self.publishes = 0
        self._publish()
        self.restarts = 0
        self.reanalysed = 0   # positions whose targets a reanalyse actor replaced
        self.received: list[tuple[int, int, int]] = []
        self.placement: dict[int, str] = {}    # self-play slot -> Ray node id (last seen)
        self.steps_by_actor: dict[tuple[int, int], int] = {}   # (slot, incarnation) -> steps
        self._next_seq: dict[tuple[int, int], int] = {}
        self._episodes_at_start = agent.episodes
        self.selfplay = [self._start_selfplay(i, 0) for i in range(num_actors)]
        self.reanalysers = [self._start_reanalyser(i, 0) for i in range(num_reanalysers)]
        self.pending: dict[Any, tuple[str, int, int, Any]] = {}
        self.recent_returns: list[float] = []
        self._staleness = 0
        self._reanalyse_owed = 0.0

    # -- actors ----------------------------------------------------------------------------------

    def _start_selfplay(self, slot: int, incarnation: int) -> _Slot:
        a, c = self.agent, self.agent.config
        options = dict(self.options.actor_options)
        if self.options.spread and "scheduling_strategy" not in options:
            # Round robin over the live nodes, as it is started (a replacement goes to a node
            # alive then). Ray's "SPREAD" and soft node affinity are best effort: on a two-node
            # test cluster they put zero-CPU actors on one node.
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            nodes = sorted(n["NodeID"] for n in self.ray.nodes() if n["Alive"])
            if nodes:
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                    nodes[(slot + incarnation) % len(nodes)], soft=False)
        seed = _actor_seed(self.spec[3], slot, incarnation, self._episodes_at_start)
        handle = self._selfplay_cls.options(**options).remote(
            a.env_fn, self.network_ref, self.spec, a.num_actions, c, a.legal_actions, seed, slot,
            incarnation)
        return _Slot(handle, incarnation)

    def _start_reanalyser(self, slot: int, incarnation: int) -> _Slot:
        seed = _actor_seed(self.spec[3] + 55_555, slot, incarnation, self._episodes_at_start)
        handle = self._reanalyse_cls.options(**self.options.reanalyser_options).remote(
            self.network_ref, self.spec, self.agent.config, seed)
        return _Slot(handle, incarnation)

    def _replace(self, kind: str, slot: int, incarnation: int) -> None:
        slots = self.selfplay if kind == "selfplay" else self.reanalysers
        if slots[slot].incarnation != incarnation:
            return                   # another call of the dead actor already replaced it
        self.restarts += 1
        if self.restarts > self.options.max_restarts:
            raise RuntimeError(
                f"Ray actors died {self.restarts} times (RayOptions.max_restarts="
                f"{self.options.max_restarts}); the last was {kind} actor {slot}")
        self.ray.kill(slots[slot].handle)   # a dead actor's handle: makes sure it stays down
        start = self._start_selfplay if kind == "selfplay" else self._start_reanalyser
        slots[slot] = start(slot, incarnation + 1)

    def shutdown(self, timeout: float = 30.0) -> None:
        handles = [slot.handle for slot in self.selfplay + self.reanalysers]
        for handle in handles:
            self.ray.kill(handle)
        self.pending.clear()
        # ray.kill only sends the request, and a call made just after it can still be served
        # on a busy machine: wait until each actor answers with RayActorError, so the actors
        # are down when train() returns.
        deadline = time.monotonic() + timeout
        for handle in handles:
            while time.monotonic() < deadline:
                try:
                    self.ray.get(handle.__ray_ready__.remote(),
                                 timeout=max(0.1, deadline - time.monotonic()))
                except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError):
                    break
                time.sleep(0.05)

    # -- weights ---------------------------------------------------------------------------------

    def _publish(self) -> None:
        state = {k: v.detach().cpu() for k, v in self.agent.network.state_dict().items()}
        self.weights_ref = self.ray.put(state)
        self.weights_version = self.agent.updates
        self.publishes += 1

    # -- calls -----------------------------------------------------------------------------------

    def _submit_play(self, slot: int, temperature: float) -> int:
        s = self.selfplay[slot]
        ref = s.handle.play.remote(self.options.moves_per_call, temperature,
                                   self.weights_version, [self.weights_ref])
        self.pending[ref] = ("selfplay", slot, s.incarnation, None)
        s.queue.append(ref)
        return self.options.moves_per_call * self.agent.config.num_envs

    def _submit_reanalyse(self, slot: int, count: int) -> None:
        replay = self.agent.replay
        valid = np.flatnonzero(replay.valid)
        if len(valid) == 0:
            return
        a = self.agent
        start = np.searchsorted(valid, a._reanalyse_cursor)
        index = valid[(start + np.arange(min(count, len(valid)))) % len(valid)]
        a._reanalyse_cursor = int(index[-1]) + 1
        obs, legal = replay.observations[index].copy(), replay.legal[index].copy()
        samples = getattr(replay, "samples", None)   # Sampled MuZero: searched again
        samples = None if samples is None else samples[index].copy()
        s = self.reanalysers[slot]
        ref = s.handle.run.remote(obs, legal, samples, self.weights_version, [self.weights_ref])
        self.pending[ref] = ("reanalyse", slot, s.incarnation, (index, obs, legal, samples))
        s.busy = True

    def _add_games(self, result: dict[str, Any]) -> None:
        key = (result["slot"], result["incarnation"])
        expected = self._next_seq.get(key, 0)
        if result["first_seq"] != expected:
            raise RuntimeError(f"self-play actor {key}: games {expected}.."
                               f"{result['first_seq'] - 1} never arrived")
        for offset, game in enumerate(result["games"]):
            self.agent.replay.add(game)
            self.received.append((*key, expected + offset))
        self._next_seq[key] = expected + len(result["games"])
        self.placement[result["slot"]] = result["node"]
        self.steps_by_actor[key] = self.steps_by_actor.get(key, 0) + result["env_steps"]
        self.agent.episodes += len(result["games"])
        self.recent_returns = (self.recent_returns + result["returns"])[-20:]

    def _apply_reanalyse(self, work: Any, result: tuple[np.ndarray, np.ndarray]) -> None:
        index, obs, legal, samples = work
        replay = self.agent.replay
        # Where the ring has overwritten a position since, its new content differs: skip it (the
        # same observation, mask and samples again would have the same search target).
        same = replay.valid[index] & (replay.legal[index] == legal).all(axis=1)
        same &= (replay.observations[index] == obs).reshape(len(index), -1).all(axis=1)
        if samples is not None:
            same &= (replay.samples[index] == samples).reshape(len(index), -1).all(axis=1)
        if same.any():
            replay.update_search(index[same], result[0][same], result[1][same])
            self.reanalysed += int(same.sum())

    # -- the loop --------------------------------------------------------------------------------

    def run(self, env_steps: int, time_limit: float | None, eval_every: float | None,
            eval_episodes: int, target_return: float | None, checkpoint: str | None,
            csv_file: Any, writer: Any, bar: Any) -> list[dict[str, float]]:
        ray, a, c = self.ray, self.agent, self.agent.config
        rows: list[dict[str, float]] = []
        start_steps, start_time = a.env_steps, time.perf_counter()
        base_seconds = a.train_seconds
        last_eval, last_log = base_seconds, time.perf_counter()
        learn_stats: dict[str, float] = {}
        scheduled = a.env_steps

        def temperature() -> float:
            return c.temperature(training_progress(scheduled - start_steps, env_steps,
                                                   time.perf_counter() - start_time, time_limit))

        def fill() -> None:
            nonlocal scheduled
            for slot, s in enumerate(self.selfplay):
                while len(s.queue) < self.options.calls_in_flight and (
                        scheduled - start_steps < env_steps):
                    scheduled += self._submit_play(slot, temperature())

        fill()
        try:
            while a.env_steps - start_steps < env_steps:
                if time_limit is not None and time.perf_counter() - start_time >= time_limit:
                    break
                # An actor's calls are taken in the order they were made (the oldest of each
                # self-play actor), so its games arrive in sequence.
                waiting = [s.queue[0] for s in self.selfplay if s.queue]
                waiting += [ref for ref, (kind, *_) in self.pending.items() if kind == "reanalyse"]
                ready, _ = ray.wait(waiting, num_returns=1, timeout=1.0)
                for ref in ready:
                    kind, slot, incarnation, work = self.pending.pop(ref)
                    slots = self.selfplay if kind == "selfplay" else self.reanalysers
                    if slots[slot].incarnation == incarnation:
                        if kind == "selfplay":
                            slots[slot].queue.popleft()
                        else:
                            slots[slot].busy = False
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayActorError as error:
                        if error.actor_init_failed:
                            # its constructor raised (env_fn, say): a new one would too
                            raise RuntimeError(
                                f"{kind} actor {slot} failed to start: {error}") from error
                        if kind == "selfplay":
                            # the dead actor's calls were not played: schedule them anew
                            lost = [ref, *slots[slot].queue]
                            for other in lost[1:]:
                                self.pending.pop(other)
                            scheduled -= len(lost) * self.options.moves_per_call * c.num_envs
                        self._replace(kind, slot, incarnation)
                        continue
                    if kind == "reanalyse":
                        self._apply_reanalyse(work, result)
                        continue
                    self._add_games(result)
                    steps = result["env_steps"]
                    a.env_steps += steps
                    if bar is not None:
                        bar.update(steps)
                    self._staleness = max(self._staleness, a.updates - result["version"])
                    a._updates_due += c.updates_per_step * steps
                    while a._updates_due >= 1.0:
                        a._updates_due -= 1.0
                        if len(a.replay) < max(c.min_replay, 1):
                            continue
                        learn_stats = a._learn(reanalyse=self.num_reanalysers == 0)
                        if self.num_reanalysers:
                            # owed positions, capped at two batches per reanalyser
                            self._reanalyse_owed = min(
                                self._reanalyse_owed + c.reanalyse_fraction * c.batch_size,
                                2.0 * self.num_reanalysers * c.batch_size)
                        if a.updates - self.weights_version >= self.options.weights_every:
                            self._publish()
                fill()
                for slot, s in enumerate(self.reanalysers):
                    if not s.busy and self._reanalyse_owed >= 1.0 and len(a.replay) > 0:
                        count = max(1, round(c.reanalyse_fraction * c.batch_size))
                        self._reanalyse_owed = max(0.0, self._reanalyse_owed - count)
                        self._submit_reanalyse(slot, count)
                a.train_seconds = base_seconds + (time.perf_counter() - start_time)
                evaluate_now = (eval_every is not None
                                and a.train_seconds - last_eval >= eval_every and a.updates > 0)
                if evaluate_now or time.perf_counter() - last_log >= 5.0:
                    last_log = time.perf_counter()
                    row = self._row(learn_stats)
                    if evaluate_now:
                        last_eval = a.train_seconds
                    if a._report(row, evaluate_now, eval_episodes,
                                 lambda: base_seconds + (time.perf_counter() - start_time),
                                 target_return, checkpoint, rows, csv_file, writer, bar):
                        break
            self._drain(bar)
            a.train_seconds = base_seconds + (time.perf_counter() - start_time)
        finally:
            self.shutdown()
        return rows

    def _drain(self, bar: Any, timeout: float = 30.0) -> None:
        """Collects the self-play calls still out (games finished there go to the replay; their
        steps count, their updates are owed to the next train call)."""
        c = self.agent.config
        deadline = time.perf_counter() + timeout
        for s in self.selfplay:
            while s.queue:
                ref = s.queue.popleft()
                self.pending.pop(ref)
                try:
                    result = self.ray.get(ref, timeout=max(0.0, deadline - time.perf_counter()))
                except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError):
                    s.queue.clear()
                    break
                self._add_games(result)
                self.agent.env_steps += result["env_steps"]
                self.agent._updates_due += c.updates_per_step * result["env_steps"]
                if bar is not None:
                    bar.update(result["env_steps"])

    def _row(self, learn_stats: dict[str, float]) -> dict[str, float]:
        a = self.agent
        row = {"env_steps": a.env_steps, "updates": a.updates, "episodes": a.episodes,
               "seconds": round(a.train_seconds, 2),
               "train_return": (float(np.mean(self.recent_returns)) if self.recent_returns
                                else math.nan),
               **learn_stats,
               "weights_version": self.weights_version, "staleness": self._staleness,
               "actor_restarts": self.restarts}
        self._staleness = 0
        return row


def _cpu_copy(network: torch.nn.Module) -> torch.nn.Module:
    import copy

    clone = copy.deepcopy(network)
    return clone.cpu()

