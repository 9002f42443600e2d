"""Every planner's device path: the model on the GPU gives the CPU's results.

Each test runs on "cpu" here and on "cuda" where a GPU is present (marked ``cuda``; skipped
without one). The tree-search models compute only with small dyadic numbers (integers times
powers of two) and element-wise operations, which every device computes exactly, so a search
over the model on the GPU must match the CPU's node for node; the planners that draw their noise
on the model's device (CEM, MPPI, iCEM) are checked against the known optimum instead.
"""

from __future__ import annotations

import pytest
import torch
import wmfast as wm
from torch.nn import functional as F

CUDA = pytest.param("cuda", marks=[
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")])
DEVICES = ["cpu", CUDA]
A = 4          # actions
B = 3          # trees


class CountingModel:
    """A deterministic MuZero model in exact arithmetic: the latent counts the actions taken."""

    def recurrent_inference(self, latent, action):
        latent = latent + F.one_hot(action, A).to(latent.dtype)
        reward = 0.125 * (action + 1).to(latent.dtype) - 0.0625 * latent[:, 0]
        logits = 0.5 * latent - 0.25 * latent.flip(1)
        value = 0.25 * latent[:, 1] - 0.125 * latent[:, 2]
        return wm.Step(latent, reward, logits, value)


def _root(device):
    latent = torch.tensor([[0.0, 1, 2, 0], [3, 0, 1, 1], [1, 1, 0, 2]], device=device)
    logits = torch.tensor([[0.5, 0, -0.5, 1], [0, 0, 0, 0], [1, -1, 0.25, 0]], device=device)
    return wm.Root(latent, logits, torch.tensor([0.5, -0.25, 0.0], device=device))


def _same_search(out, expected):
    torch.testing.assert_close(out.visit_counts, expected.visit_counts, rtol=0, atol=0)
    torch.testing.assert_close(out.root_value, expected.root_value, rtol=0, atol=0)
    torch.testing.assert_close(out.action, expected.action, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("planner", ["mcts", "gumbel"])
def test_tree_search_on_the_device_matches_the_cpu(device, planner):
    def make():
        if planner == "mcts":
            return wm.MCTS(A, 40, discount=0.5, seed=3)
        return wm.GumbelMCTS(A, 40, max_num_considered_actions=4, discount=0.5, seed=3)

    out = make().search(CountingModel(), _root(device))
    expected = make().search(CountingModel(), _root("cpu"))
    _same_search(out, expected)
    # Results are CPU tensors (the search runs there); the latents stay on the model's device.
    assert out.visit_counts.device.type == "cpu"
    assert out.tree.latents.device.type == device
    torch.testing.assert_close(out.tree.latents.cpu(), expected.tree.latents, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_tree_reuse_on_the_device_matches_the_cpu(device):
    def run(dev):
        mcts = wm.MCTS(A, 30, discount=0.5, seed=1, temperature=0.0)
        first = mcts.search(CountingModel(), _root(dev))
        return mcts.search(CountingModel(), None, reuse=first, action_taken=first.action)

    out, expected = run(device), run("cpu")
    _same_search(out, expected)
    assert out.tree.latents.device.type == device


class CountingStochasticModel:
    """Stochastic MuZero's two functions in exact arithmetic (C = 3 chance outcomes)."""

    def decision(self, latent, action):
        after = latent + F.one_hot(action, A).to(latent.dtype)
        chance_logits = 0.5 * after[:, :3] - 0.25 * after[:, 1:]
        return wm.Afterstate(after, chance_logits, 0.25 * after[:, 0] - 0.125 * after[:, 3])

    def chance(self, afterstate, outcome):
        latent = afterstate + 0.5 * F.one_hot(outcome, A).to(afterstate.dtype)
        reward = 0.125 * outcome.to(afterstate.dtype) - 0.0625 * afterstate[:, 2]
        return wm.Step(latent, reward, 0.5 * latent - 0.25 * latent.flip(1),
                       0.25 * latent[:, 1] - 0.125 * latent[:, 2])


@pytest.mark.parametrize("device", DEVICES)
def test_stochastic_search_on_the_device_matches_the_cpu(device):
    def run(dev):
        return wm.StochasticMCTS(A, 3, 40, discount=0.5, seed=2).search(
            CountingStochasticModel(), _root(dev))

    out, expected = run(device), run("cpu")
    _same_search(out, expected)
    assert out.visit_counts.device.type == "cpu"


def _bandit(latent, action):
    """Sampled MuZero's 1-D bandit (optimum at 0.375), element-wise operations only."""
    reward = -(action[:, 0] - 0.375) * (action[:, 0] - 0.375)
    policy = torch.zeros(latent.shape[0], 2, device=latent.device)   # mean 0, log std 0
    zeros = torch.zeros(latent.shape[0], device=latent.device)
    return wm.Step(latent, reward, policy, zeros, discount=zeros)


@pytest.mark.parametrize("device", DEVICES)
def test_sampled_search_on_the_device_matches_the_cpu(device):
    seen = []

    def model(latent, action):
        seen.append(action.device.type)
        return _bandit(latent, action)

    def run(dev, fn):
        root = wm.Root(torch.zeros(B, 2, device=dev), torch.zeros(B, 2, device=dev),
                       torch.zeros(B, device=dev))
        return wm.SampledMCTS(num_samples=16, num_simulations=128, action_dim=1,
                              action_low=-2.0, action_high=2.0, dirichlet_fraction=0.0,
                              temperature=0.0, unvisited_q="parent_value", seed=5).search(fn, root)

    out, expected = run(device, model), run("cpu", _bandit)
    assert set(seen) == {device}          # the model gets its actions on its own device
    torch.testing.assert_close(out.actions, expected.actions, rtol=0, atol=0)
    _same_search(out, expected)
    assert ((out.action[:, 0] - 0.375).abs() < 0.2).all(), out.action


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["cem", "mppi", "icem"])
def test_trajectory_optimisers_plan_on_the_device(device, method):
    def dynamics(state, action):
        next_state = state + 0.5 * action
        return next_state, -((next_state - 1.0) ** 2).sum(-1)

    options = {"horizon": 4, "action_dim": 2, "population": 200, "iterations": 6,
               "action_low": -1.0, "action_high": 1.0, "seed": 0}
    planner = {"cem": lambda: wm.CEM(elites=20, **options),
               "mppi": lambda: wm.MPPI(temperature=0.1, **options),
               "icem": lambda: wm.ICEM(elites=20, noise_beta=2.0, keep_elites=0.3,
                                       **options)}[method]()
    start = torch.zeros(B, 2, device=device)
    plan = planner.plan(dynamics, start)
    for tensor in (plan.actions, plan.first_action, plan.returns, plan.mean, plan.std):
        assert tensor.device.type == device and tensor.dtype == start.dtype
    assert plan.actions.shape == (B, 4, 2) and plan.actions.abs().max() <= 1.0
    # The optimum: +1 twice in both dimensions (states 0.5 and 1, rewards 2 * -0.25 and 0),
    # then stay at the goal: return -0.5.
    optimum = -0.5
    assert (plan.returns <= optimum + 1e-5).all() and (plan.returns > optimum - 0.3).all(), (
        plan.returns)
    assert (plan.first_action > 0.5).all(), plan.first_action

    agent = wm.MPCAgent(planner, dynamics, device=device)
    action = agent.act(torch.zeros(2))
    assert action.device.type == device and action.shape == (2,)


@pytest.mark.parametrize("device", DEVICES)
def test_imagine_on_the_device_matches_the_cpu(device):
    torch.manual_seed(0)
    net = torch.nn.Linear(6, 4)
    head = torch.nn.Linear(4, 2)

    def run(dev):
        step, actor = net.to(dev), head.to(dev)

        def dynamics(state, action):
            return torch.tanh(step(torch.cat([state, action], -1)))

        def policy(state):
            return torch.tanh(actor(state))

        start = torch.linspace(-1, 1, 5 * 4, device=dev).reshape(5, 4)
        return wm.imagine(dynamics, policy, start, horizon=6, grad=None)

    out, expected = run(device), run("cpu")
    assert out.states.device.type == device and out.states.shape == (7, 5, 4)
    torch.testing.assert_close(out.states.cpu(), expected.states, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.actions.cpu(), expected.actions, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_native_model_search_on_the_gpu_matches_python(tmp_path):
    check_native_search("cuda", tmp_path)


def check_native_search(device, cache_dir):
    """wm.MCTS over a wm.NativeModel exported on ``device`` equals the search over the eager
    module (an MLP: float results may differ in the last bits, so visits are compared on a
    clear-cut model)."""
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(A + A, A)
            self.heads = torch.nn.Linear(A, A + 2)

        def forward(self, latent, action):
            nxt = torch.tanh(self.body(torch.cat([latent, F.one_hot(action, A).float()], -1)))
            out = self.heads(nxt)
            return wm.Step(nxt, out[:, 0], 4.0 * out[:, 2:], out[:, 1])

    net = Net().to(device)
    example = (torch.zeros(2, A, device=device), torch.zeros(2, dtype=torch.int64, device=device))
    native = wm.NativeModel.export(net, example, cache_dir=cache_dir)
    assert native.device.type == device
    root = _root(device)
    out = wm.MCTS(A, 32, seed=0).search(native, root)
    expected = wm.MCTS(A, 32, seed=0).search(net, root)
    torch.testing.assert_close(out.root_value, expected.root_value, rtol=1e-4, atol=1e-4)
    assert (out.visit_counts - expected.visit_counts).abs().sum() <= 2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_native_imagination_on_the_gpu_matches_its_python_loop(tmp_path):
    check_native_imagination("cuda", tmp_path)


def check_native_imagination(device, cache_dir):
    """wm.imagine's C++ loop over NativeModels exported on ``device`` equals its Python loop
    over the same models with the same draws (noise from a generator of that device)."""
    torch.manual_seed(0)

    class Dynamics(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4 + 2, 4)

        def forward(self, state, action, noise):
            return torch.tanh(self.net(torch.cat([state, action], -1))) + 0.1 * noise

    class Policy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 2)

        def forward(self, state, noise):
            return torch.tanh(self.net(state)) + 0.1 * noise

    n = 3
    state = torch.randn(n, 4, device=device)
    dynamics = wm.NativeModel.export(
        Dynamics().to(device), (state, torch.zeros(n, 2, device=device),
                                torch.rand(n, 4, device=device)), cache_dir=cache_dir)
    policy = wm.NativeModel.export(Policy().to(device), (state, torch.rand(n, 2, device=device)),
                                   cache_dir=cache_dir)
    start = torch.linspace(-1, 1, 5 * 4, device=device).reshape(5, 4)

    def run(loop):
        generator = torch.Generator(device=device).manual_seed(7)
        return wm.imagine(dynamics, policy, start, 6, grad=None, generator=generator, loop=loop)

    native, python = run("native"), run("python")
    assert native.states.device.type == device and native.states.shape == (7, 5, 4)
    torch.testing.assert_close(native.states, python.states, rtol=0, atol=0)
    torch.testing.assert_close(native.actions, python.actions, rtol=0, atol=0)
