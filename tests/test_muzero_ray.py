"""MuZero on Ray (wmfast.muzero.distributed): training on a simulated two-node cluster, actors
killed mid-run and replaced without losing a game, checkpoints taken while actors run, and the
errors. One Ray cluster (two raylets on this machine, ray.cluster_utils.Cluster) serves the whole
module; its actors ask for no CPU. Skipped without ray (pip install "wmfast[ray]")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import gymnasium as gym
import muzero_chain
import numpy as np
import pytest
import torch
import wmfast as wm
from muzero_chain import Chain, small_config
from wmfast.agents import MuZeroAgent
from wmfast.muzero import MLPNetwork, SearchModel
from wmfast.muzero.distributed import RayOptions, build_search, search_spec

try:
    import ray
except ImportError:
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason='needs ray (pip install "wmfast[ray]")')


@pytest.fixture(scope="module")
def cluster():
    """A two-node Ray cluster on this machine for the module; Ray's token auth off and all its
    files in a temporary folder (nothing is left in the user's home or in /tmp/ray: Ray writes
    its address file under $RAY_TMPDIR/ray whatever the nodes' temp_dir)."""
    if ray is None:
        pytest.skip('needs ray (pip install "wmfast[ray]")')
    from ray import cloudpickle
    from ray.cluster_utils import Cluster

    # The actors unpickle this module's lambdas and the shared Chain by value (workers cannot
    # import tests/).
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cloudpickle.register_pickle_by_value(muzero_chain)
    temp = tempfile.mkdtemp(prefix="wmray-")
    os.makedirs(os.path.join(temp, "ray"))
    settings = {"RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": temp}
    previous = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    nodes = None
    try:
        nodes = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False})
        nodes.add_node(num_cpus=1)
        ray.init(address=nodes.address, log_to_driver=False)
        yield nodes
    finally:
        ray.shutdown()
        if nodes is not None:
            nodes.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        cloudpickle.unregister_pickle_by_value(muzero_chain)
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _assert_every_game_stored_once(agent: MuZeroAgent) -> None:
    received = agent.ray_runner.received
    assert len(set(received)) == len(received)
    assert agent.replay.games_added == len(received) == agent.episodes
    by_actor: dict[tuple[int, int], list[int]] = {}
    for slot, incarnation, seq in received:
        by_actor.setdefault((slot, incarnation), []).append(seq)
    for seqs in by_actor.values():
        assert seqs == list(range(len(seqs)))   # in order, no gap, no repeat


# -- training on two nodes -----------------------------------------------------------------------


@needs_ray
def test_self_play_actors_on_both_nodes_train_the_values(cluster):
    nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert len(nodes) == 2
    torch.manual_seed(0)
    agent = MuZeroAgent(lambda: Chain(5), config=small_config())
    agent.train(1600, backend="ray", num_actors=2, progress=False,
                ray_options=RayOptions(weights_every=5))
    runner = agent.ray_runner
    assert set(runner.placement) == {0, 1}
    assert set(runner.placement.values()) == nodes            # one self-play actor per node
    assert agent.env_steps >= 1600 and agent.updates > 500
    _assert_every_game_stored_once(agent)
    assert runner.publishes >= agent.updates // 5
    assert all("staleness" in row for row in agent.history)
    # The same check as the in-process test: the value of each chain state is learned. The
    # actors' weights are staler on a loaded machine (a miss of 0.165 was seen at load 10), so
    # up to two more short runs on the cluster may finish the job.
    true = torch.tensor([0.9 ** (4 - s) for s in range(5)])
    values = SearchModel(agent.network, 5).initial_inference(torch.eye(5)).value
    for _ in range(2):
        if (values - true).abs().max() <= 0.1:
            break
        agent.train(800, backend="ray", num_actors=2, progress=False,
                    ray_options=RayOptions(weights_every=5))
        values = SearchModel(agent.network, 5).initial_inference(torch.eye(5)).value
    torch.testing.assert_close(values, true, atol=0.1, rtol=0)
    # The actors stop with the call.
    for slot in runner.selfplay:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(slot.handle.node_id.remote(), timeout=30)


@needs_ray
def test_stochastic_muzero_trains_on_actors_and_reanalysers(cluster):
    # A variant is a different search, the same agent: the actors rebuild wm.StochasticMCTS from
    # its settings and search with the stochastic adapter; games bring their final observation.
    config = small_config(search="stochastic", num_chance_outcomes=3, reanalyse_fraction=0.25)
    agent = MuZeroAgent(lambda: Chain(5), config=config)
    agent.train(400, backend="ray", num_actors=1, num_reanalysers=1, progress=False)
    assert agent.updates > 0 and agent.ray_runner.restarts == 0
    assert agent.ray_runner.reanalysed > 0
    _assert_every_game_stored_once(agent)
    starts = np.unique(agent.replay.game_start[agent.replay.valid])
    assert sorted(agent.replay.final_observations) == sorted(int(s) for s in starts)
    assert "chance_loss" in agent._learn()


# -- fault tolerance -----------------------------------------------------------------------------


def _train_in_thread(agent: MuZeroAgent, **kwargs) -> tuple[threading.Thread, list]:
    errors: list[BaseException] = []

    def run():
        try:
            agent.train(**kwargs)
        except BaseException as error:  # noqa: BLE001 (re-raised by the test)
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.05)


@needs_ray
def test_killed_actors_are_replaced_and_no_finished_game_is_lost(cluster):
    # Few updates per step: a long run in steps, so the replacement actor has steps left to play
    # even when the other actor did most of them while this one was starting.
    agent = MuZeroAgent(lambda: Chain(5),
                        config=small_config(reanalyse_fraction=0.25, updates_per_step=0.15))
    thread, errors = _train_in_thread(agent, env_steps=3200, backend="ray", num_actors=2,
                                      num_reanalysers=1, progress=False)
    _wait_for(lambda: agent.ray_runner is not None and agent.updates > 0
              and sum(slot == 0 for slot, _, _ in agent.ray_runner.received) >= 3)
    runner = agent.ray_runner
    victim = runner.selfplay[0].handle
    # Calls run in order: this answer comes after every call queued before it has returned.
    produced = ray.get(victim.games_produced.remote())
    ray.kill(victim)
    ray.kill(runner.reanalysers[0].handle)
    thread.join(timeout=120)
    assert not thread.is_alive()
    if errors:
        raise errors[0]
    assert agent.env_steps >= 3200
    assert runner.restarts == 2
    assert runner.selfplay[0].incarnation == 1 and runner.reanalysers[0].incarnation == 1
    first_life = [seq for slot, inc, seq in runner.received if (slot, inc) == (0, 0)]
    assert len(first_life) >= produced > 0          # every game handed over before the kill
    assert runner.steps_by_actor[(0, 1)] > 0 and any(   # the new actor played and finished games
        inc == 1 for slot, inc, _ in runner.received if slot == 0)
    _assert_every_game_stored_once(agent)


@needs_ray
def test_a_checkpoint_taken_while_actors_run_restores_and_resumes(cluster, tmp_path):
    agent = MuZeroAgent(lambda: Chain(5), config=small_config())
    path = str(tmp_path / "agent.pt")
    snapshots: list[dict] = []
    save = agent.save

    def save_and_copy(target):
        save(target)
        if not snapshots:      # the first checkpoint, taken mid-run with calls in flight
            shutil.copy(target, str(tmp_path / "mid.pt"))
            snapshots.append({"env_steps": agent.env_steps, "updates": agent.updates,
                              "episodes": agent.episodes,
                              "games": agent.replay.games_added,
                              "in_flight": sum(len(s.queue) for s in agent.ray_runner.selfplay),
                              "params": [p.detach().clone() for p in agent.network.parameters()]})

    agent.save = save_and_copy
    agent.train(1200, backend="ray", num_actors=2, eval_every=0.5, eval_episodes=1,
                checkpoint=path, progress=False)
    assert snapshots and snapshots[0]["in_flight"] > 0
    mid = snapshots[0]
    loaded = MuZeroAgent.load(str(tmp_path / "mid.pt"), lambda: Chain(5))
    assert (loaded.env_steps, loaded.updates, loaded.episodes) == (
        mid["env_steps"], mid["updates"], mid["episodes"])
    assert loaded.replay.games_added == mid["games"] < agent.replay.games_added
    for p, q in zip(loaded.network.parameters(), mid["params"]):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    loaded.train(200, backend="ray", num_actors=1, progress=False)
    assert loaded.env_steps >= mid["env_steps"] + 200
    assert loaded.updates > mid["updates"]
    assert loaded.replay.games_added == mid["games"] + len(loaded.ray_runner.received)


@needs_ray
def test_an_actor_that_cannot_start_stops_training_with_its_error(cluster):
    driver = os.getpid()

    def env_fn():    # works here (the agent probes it), fails in the actors
        if os.getpid() != driver:
            raise OSError("no display in the actor")
        return Chain(5)

    agent = MuZeroAgent(env_fn, config=small_config())
    with pytest.raises(RuntimeError, match="(?s)selfplay actor 0 failed to start.*no display"):
        agent.train(100, backend="ray", num_actors=1, progress=False)
    assert agent.ray_runner.restarts == 0


# -- without a cluster ---------------------------------------------------------------------------


def test_a_search_rebuilt_from_its_settings_searches_the_same():
    net = MLPNetwork(5, 2, latent_dim=8, hidden=16, support_size=5)
    model = SearchModel(net, 5)
    obs = torch.eye(5)
    for search in (wm.MCTS(2, 8, dirichlet_fraction=0.25, seed=3, pb_c_init=1.5),
                   wm.GumbelMCTS(2, 8, max_num_considered_actions=2, seed=3)):
        copy = build_search(search_spec(search), seed=3)
        assert type(copy) is type(search)
        a = search.search(model, model.initial_inference(obs))
        b = copy.search(model, model.initial_inference(obs))
        np.testing.assert_array_equal(np.asarray(a.policy), np.asarray(b.policy))
        other = build_search(search_spec(search), seed=4).search(model, model.initial_inference(obs))
        assert other.policy.shape == a.policy.shape
    with pytest.raises(TypeError, match="search must be a wm.MCTS, wm.GumbelMCTS, "
                                        "wm.StochasticMCTS or wm.SampledMCTS"):
        search_spec(object())


def test_ray_backend_errors_name_the_argument(monkeypatch):
    agent = MuZeroAgent(lambda: Chain(5), config=small_config())
    with pytest.raises(ValueError, match="backend must be 'local' or 'ray'"):
        agent.train(10, backend="dask", progress=False)
    with pytest.raises(ValueError, match="num_actors is a setting of backend='ray'"):
        agent.train(10, num_actors=2, progress=False)
    with pytest.raises(ValueError, match="num_actors must be an int >= 1"):
        agent.train(10, backend="ray", num_actors=0, progress=False)
    with pytest.raises(ValueError, match=r"num_reanalysers=1 needs Config.reanalyse_fraction"):
        agent.train(10, backend="ray", num_reanalysers=1, progress=False)
    with pytest.raises(ValueError, match="RayOptions.weights_every"):
        RayOptions(weights_every=0)
    monkeypatch.setitem(sys.modules, "ray", None)       # as if ray were not installed
    with pytest.raises(ImportError, match=r'pip install "wmfast\[ray\]"'):
        agent.train(10, backend="ray", progress=False)
    assert agent.env_steps == 0


def test_the_local_backend_does_not_import_ray():
    code = ("import sys, gymnasium as gym\n"
            "from wmfast.agents import MuZeroAgent\n"
            "from wmfast.muzero import Config\n"
            "a = MuZeroAgent(lambda: gym.make('CartPole-v1'), config=Config(num_envs=2, "
            "num_simulations=2, hidden=8, latent_dim=8, min_replay=10, batch_size=8))\n"
            "a.train(40, progress=False)\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@needs_ray
def test_demo_smoke_on_ray(cluster, tmp_path, capsys):
    import json

    from wmfast.demos.muzero_cartpole import main

    assert main(["--smoke", "--ray", "--actors", "2", "--json", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["backend"] == "ray" and result["actors"] == 2 and result["env_steps"] > 0
    assert ray.is_initialized()      # the demo leaves a Ray it did not start running
    agent = MuZeroAgent.load(str(tmp_path / "agent.pt"), lambda: gym.make("CartPole-v1"))
    assert agent.env_steps == result["env_steps"]


def test_a_sampled_search_rebuilt_from_its_settings_searches_the_same():
    from wmfast.muzero import SampledMLPNetwork

    net = SampledMLPNetwork(3, 2, action_low=-2.0, action_high=[1.0, 2.0], latent_dim=8,
                            hidden=16, support_size=0)
    model = SearchModel(net, 0)
    obs = torch.randn(6, 3)
    search = wm.SampledMCTS(4, 10, action_dim=2, action_low=-2.0, action_high=[1.0, 2.0],
                            dirichlet_fraction=0.25, seed=3, unvisited_q="parent_value")
    copy = build_search(search_spec(search), seed=3)
    assert type(copy) is wm.SampledMCTS and copy.num_samples == 4 and copy.continuous
    a = search.search(model, model.initial_inference(obs))
    b = copy.search(model, model.initial_inference(obs))
    np.testing.assert_array_equal(np.asarray(a.actions), np.asarray(b.actions))
    np.testing.assert_array_equal(np.asarray(a.policy), np.asarray(b.policy))


@needs_ray
def test_sampled_muzero_trains_on_ray(cluster):
    from muzero_chain import Bandit, bandit_config

    agent = MuZeroAgent(Bandit, config=bandit_config(num_envs=4, min_replay=16, batch_size=16,
                                                     reanalyse_fraction=0.25))
    agent.train(200, backend="ray", num_actors=1, num_reanalysers=1, progress=False)
    _assert_every_game_stored_once(agent)
    # The reanalyse actor re-searched stored positions over their stored root samples.
    assert agent.ray_runner.reanalysed > 0 and agent.ray_runner.restarts == 0
    assert agent.updates > 0 and len(agent.replay) >= 100
    valid = agent.replay.valid
    assert np.all(np.abs(agent.replay.samples[valid] - agent.replay.actions[valid][:, None])
                  .min(1) == 0.0)
