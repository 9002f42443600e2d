"""MCTS and CEM with a wm.NativeModel: the same results as the Python callback, no Python loop."""

import _thread
import threading

import pytest
import torch
import wmfast as wm
from torch import nn

NUM_ACTIONS, LATENT = 6, 16


class MuZeroModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.dynamics = nn.Sequential(nn.Linear(LATENT + NUM_ACTIONS, 32), nn.Tanh(),
                                      nn.Linear(32, LATENT + 1))
        self.prediction = nn.Linear(LATENT, NUM_ACTIONS + 1)

    def recurrent_inference(self, latent, action):
        x = torch.cat([latent, nn.functional.one_hot(action, NUM_ACTIONS).float()], -1)
        y = self.dynamics(x)
        next_latent = torch.tanh(y[:, :LATENT])
        out = self.prediction(next_latent)
        return wm.Step(latent=next_latent, reward=y[:, LATENT], logits=out[:, :NUM_ACTIONS],
                       value=out[:, NUM_ACTIONS])


class Dynamics(nn.Module):
    def __init__(self, obs=4, act=2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs + act, 32), nn.Tanh(), nn.Linear(32, obs))

    def forward(self, state, action):
        next_state = state + 0.1 * self.net(torch.cat([state, action], -1))
        return next_state, -(next_state ** 2).sum(-1)


@pytest.fixture(scope="module")
def muzero(tmp_path_factory):
    torch.manual_seed(0)
    model = MuZeroModel()
    example = (torch.randn(4, LATENT), torch.randint(0, NUM_ACTIONS, (4,)))
    native = wm.NativeModel.export(model.recurrent_inference, example,
                                   cache_dir=tmp_path_factory.mktemp("cache"))
    return model, native


def _root(batch, seed=1):
    g = torch.Generator().manual_seed(seed)
    return wm.Root(latent=torch.randn(batch, LATENT, generator=g),
                   logits=torch.randn(batch, NUM_ACTIONS, generator=g),
                   value=torch.randn(batch, generator=g))


@pytest.mark.parametrize("planner", [
    lambda: wm.MCTS(num_actions=NUM_ACTIONS, num_simulations=40, seed=3),
    lambda: wm.GumbelMCTS(num_actions=NUM_ACTIONS, num_simulations=24,
                          max_num_considered_actions=4, seed=3),
])
def test_native_search_equals_callback_search(muzero, planner):
    model, native = muzero
    root = _root(37)
    with torch.no_grad():
        callback = planner().search(model, root)
    native_result = planner().search(native, root)
    assert torch.equal(native_result.visit_counts, callback.visit_counts)
    assert torch.equal(native_result.action, callback.action)
    torch.testing.assert_close(native_result.q_values, callback.q_values, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(native_result.root_value, callback.root_value, rtol=1e-4,
                               atol=1e-5)


def test_native_search_releases_the_gil_and_stops_on_ctrl_c(muzero, ctrl_c):
    _, native = muzero
    ticks, stop = [], threading.Event()
    thread = threading.Thread(target=lambda: [ticks.append(1) for _ in iter(stop.is_set, True)])
    thread.start()
    try:
        wm.MCTS(num_actions=NUM_ACTIONS, num_simulations=200, seed=0).search(native, _root(512))
        assert len(ticks) > 0  # the other Python thread ran during the search
    finally:
        stop.set()
        thread.join()
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        wm.MCTS(num_actions=NUM_ACTIONS, num_simulations=100_000, seed=0).search(
            native, _root(256))
    timer.join()


def test_native_model_that_is_not_a_step_is_refused_by_mcts(tmp_path):
    native = wm.NativeModel.export(Dynamics(LATENT, NUM_ACTIONS), (torch.randn(4, LATENT),
                                                                    torch.randn(4, NUM_ACTIONS)),
                                   cache_dir=tmp_path)
    with pytest.raises(ValueError, match="must be exported from a function returning wmfast.Step"):
        wm.MCTS(num_actions=NUM_ACTIONS, num_simulations=4).search(native, _root(2))


@pytest.mark.parametrize("planner", [
    lambda: wm.CEM(horizon=8, action_dim=2, population=64, elites=8, iterations=3, seed=5),
    lambda: wm.MPPI(horizon=8, action_dim=2, population=64, iterations=3, seed=5),
])
def test_native_dynamics_plans_like_the_callback(tmp_path, planner):
    torch.manual_seed(0)
    dynamics = Dynamics()
    native = wm.NativeModel.export(dynamics, (torch.randn(8, 4), torch.randn(8, 2)),
                                   cache_dir=tmp_path)
    state = torch.randn(3, 4)
    with torch.no_grad():
        callback = planner().plan(dynamics, state)
    from_native = planner().plan(native, state)
    torch.testing.assert_close(from_native.actions, callback.actions, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(from_native.returns, callback.returns, rtol=1e-4, atol=1e-4)


def test_native_plan_releases_the_gil(tmp_path):
    dynamics = Dynamics()
    native = wm.NativeModel.export(dynamics, (torch.randn(8, 4), torch.randn(8, 2)),
                                   cache_dir=tmp_path)
    planner = wm.CEM(horizon=30, action_dim=2, population=2000, elites=50, iterations=5, seed=0)
    ticks, stop = [], threading.Event()
    thread = threading.Thread(target=lambda: [ticks.append(1) for _ in iter(stop.is_set, True)])
    thread.start()
    try:
        planner.plan(native, torch.randn(8, 4))
        assert len(ticks) > 0
    finally:
        stop.set()
        thread.join()


def test_sharded_native_search_equals_one_shard(muzero, ctrl_c):
    """With num_threads=2 each thread searches its own trees with its own model calls."""
    model, native = muzero
    assert native._native.num_runners >= 1
    root = _root(160)
    with torch.no_grad():
        callback = wm.MCTS(num_actions=NUM_ACTIONS, num_simulations=30, seed=4).search(model, root)
    two = wm.NativeModel(native.path, num_runners=2)
    sharded = wm.MCTS(num_actions=NUM_ACTIONS, num_simulations=30, seed=4,
                      num_threads=2).search(two, root)
    assert torch.equal(sharded.visit_counts, callback.visit_counts)
    assert torch.equal(sharded.action, callback.action)
    torch.testing.assert_close(sharded.q_values, callback.q_values, rtol=1e-4, atol=1e-5)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        wm.MCTS(num_actions=NUM_ACTIONS, num_simulations=100_000, seed=0,
                num_threads=2).search(two, _root(256))
    timer.join()
