"""wm.imagine against hand-written rollout loops: states, actions, gradients and errors."""

from collections import namedtuple

import numpy as np
import pytest
import torch
import wmfast as wm
from torch import nn

N, DETER, STOCH, ACT, H = 6, 5, 4, 3, 7


class ToyRSSM(nn.Module):
    """A tiny deterministic + stochastic latent model with dict states."""

    def __init__(self):
        super().__init__()
        self.cell = nn.GRUCell(STOCH + ACT, DETER)
        self.prior = nn.Linear(DETER, STOCH)

    def step(self, state, action):
        deter = self.cell(torch.cat([state["stoch"], action], -1), state["deter"])
        return {"deter": deter, "stoch": torch.tanh(self.prior(deter))}


class Actor(nn.Module):
    def __init__(self, in_dim):
        super().__init__()
        self.net = nn.Linear(in_dim, ACT)

    def forward(self, state):
        feat = torch.cat([state["deter"], state["stoch"]], -1) if isinstance(state, dict) else state
        return torch.tanh(self.net(feat))


def start_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"deter": torch.randn(N, DETER, generator=g), "stoch": torch.randn(N, STOCH, generator=g)}


def hand_loop(model, actor, start, horizon, detach=True):
    states, actions, state = [start], [], start
    for _ in range(horizon):
        action = actor({k: v.detach() for k, v in state.items()} if detach else state)
        state = model.step(state, action)
        states.append(state)
        actions.append(action)
    return {k: torch.stack([s[k] for s in states]) for k in start}, torch.stack(actions)


def objective(states, actions):
    return states["deter"].square().sum() + states["stoch"].sum() + actions.sum()


@pytest.mark.parametrize("detach", [True, False])
def test_dynamics_gradients_match_a_hand_written_loop(detach):
    torch.manual_seed(0)
    model, actor = ToyRSSM(), Actor(DETER + STOCH)
    start = start_state()
    traj = wm.imagine(model.step, actor, start, H, grad="dynamics", detach_policy_input=detach)
    assert traj.horizon == H and set(traj.states) == {"deter", "stoch"}
    assert traj.states["deter"].shape == (H + 1, N, DETER)
    assert traj.states["stoch"].shape == (H + 1, N, STOCH)
    assert traj.actions.shape == (H, N, ACT)
    params = list(model.parameters()) + list(actor.parameters())
    ours = torch.autograd.grad(objective(traj.states, traj.actions), params)
    states, actions = hand_loop(model, actor, start, H, detach)
    theirs = torch.autograd.grad(objective(states, actions), params)
    for key in states:
        torch.testing.assert_close(traj.states[key], states[key], rtol=0, atol=0)
    torch.testing.assert_close(traj.actions, actions, rtol=0, atol=0)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    assert torch.equal(traj.states["deter"][0], start["deter"])


def test_grad_none_runs_without_a_graph_and_gives_the_same_rollout():
    torch.manual_seed(1)
    model, actor = ToyRSSM(), Actor(DETER + STOCH)
    start = start_state(1)
    traj = wm.imagine(model.step, actor, start, H, grad=None)
    assert not traj.states["deter"].requires_grad and not traj.actions.requires_grad
    with torch.no_grad():
        states, actions = hand_loop(model, actor, start, H)
    for key in states:
        torch.testing.assert_close(traj.states[key], states[key], rtol=0, atol=0)
    torch.testing.assert_close(traj.actions, actions, rtol=0, atol=0)


def test_tensor_tuple_and_namedtuple_starts_and_integer_actions():
    weights = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(2))

    def dynamics(state, action):
        return torch.tanh(torch.einsum("nd,nde->ne", state, weights[action]))

    def policy(state):
        return (state[:, 0] > 0).long()

    start = torch.randn(N, 4, generator=torch.Generator().manual_seed(3))
    traj = wm.imagine(dynamics, policy, start, 5, grad=None)
    assert traj.states.shape == (6, N, 4) and traj.actions.dtype == torch.int64
    state = start
    for t in range(5):
        action = policy(state)
        assert torch.equal(traj.actions[t], action)
        state = dynamics(state, action)
        torch.testing.assert_close(traj.states[t + 1], state, rtol=0, atol=0)

    pair = namedtuple("Pair", "a b")
    traj = wm.imagine(lambda s, a: pair(s.a + a, s.b * 2), lambda s: torch.ones(N, 1),
                      pair(torch.zeros(N, 1), torch.ones(N)), 3)
    assert isinstance(traj.states, pair)
    torch.testing.assert_close(traj.states.a[:, 0, 0], torch.tensor([0.0, 1, 2, 3]))
    torch.testing.assert_close(traj.states.b[:, 0], torch.tensor([1.0, 2, 4, 8]))
    traj = wm.imagine(lambda s, a: (s[0] + a, s[1]), lambda s: torch.ones(N, 1),
                      (np.zeros((N, 1)), np.ones(N)), 2, grad=None)
    assert isinstance(traj.states, tuple) and traj.states[0].dtype == torch.float32


def test_heads_apply_to_the_stacked_states_afterwards():
    torch.manual_seed(4)
    model, actor = ToyRSSM(), Actor(DETER + STOCH)
    reward_head, value_head = nn.Linear(DETER + STOCH, 1), nn.Linear(DETER + STOCH, 1)
    traj = wm.imagine(model.step, actor, start_state(4), H)
    feat = torch.cat([traj.states["deter"], traj.states["stoch"]], -1)  # [H+1, N, F]
    rewards, values = reward_head(feat)[..., 0], value_head(feat)[..., 0]
    returns = wm.lambda_return(rewards, values, torch.ones(H + 1, N))
    weights = wm.lambda_return_weights(torch.ones(H + 1, N))
    loss = -(weights * returns).mean()
    loss.backward()
    assert actor.net.weight.grad is not None and model.cell.weight_hh.grad is not None


def test_errors():
    model, actor = ToyRSSM(), Actor(DETER + STOCH)
    start = start_state()
    with pytest.raises(ValueError, match="horizon must be an int >= 1, got 0"):
        wm.imagine(model.step, actor, start, 0)
    with pytest.raises(ValueError, match="horizon must be an int >= 1"):
        wm.imagine(model.step, actor, start, 2.5)
    with pytest.raises(ValueError, match="grad must be 'dynamics' or None"):
        wm.imagine(model.step, actor, start, 3, grad="reinforce")
    with pytest.raises(ValueError, match=r"batch size N = 6 in dim 0, got shape \[5, 3\] at step 0"):
        wm.imagine(model.step, lambda s: torch.zeros(5, ACT), start, 3)
    with pytest.raises(ValueError, match=r"batch size N = 6 in dim 0, got shape \[\]"):
        wm.imagine(model.step, lambda s: torch.zeros(()), start, 3)
    calls = []

    def growing(state):
        calls.append(1)
        return torch.zeros(N, ACT + len(calls) // 2)

    with pytest.raises(ValueError, match=r"one shape and dtype.*\[6, 3\].*\[6, 4\].*step 1"):
        wm.imagine(lambda s, a: s, growing, start, 3)
    with pytest.raises(TypeError, match="policy must return an action tensor.*list"):
        wm.imagine(model.step, lambda s: [0] * N, start, 3)
    with pytest.raises(ValueError, match=r"same batch size N = 6.*start\['stoch'\].*\[5, 4\]"):
        wm.imagine(model.step, actor, {"deter": torch.zeros(N, DETER),
                                       "stoch": torch.zeros(5, STOCH)}, 3)
    with pytest.raises(ValueError, match=r"dynamics must return state\['stoch'\] with the shape"):
        wm.imagine(lambda s, a: {"deter": s["deter"], "stoch": s["stoch"][:, :2]}, actor,
                   start, 3)
    with pytest.raises(ValueError, match="dynamics must return a state with the structure"):
        wm.imagine(lambda s, a: {"deter": s["deter"]}, actor, start, 3)
    with pytest.raises(TypeError, match=r"start\['deter'\] is a str"):
        wm.imagine(model.step, actor, {"deter": "x"}, 3)
    with pytest.raises(ValueError, match=r"NaN or infinite values in state\['deter'\] at step 2"):
        steps = []

        def exploding(state, action):
            steps.append(1)
            out = dict(state)
            if len(steps) == 3:
                out["deter"] = state["deter"] / 0.0
            return out

        wm.imagine(exploding, actor, start, 5, grad=None)
    with pytest.raises(ValueError, match="policy returned NaN or infinite actions at step 0"):
        wm.imagine(model.step, lambda s: torch.full((N, ACT), float("nan")), start, 3)
    bad_start = start_state()
    bad_start["stoch"][1, 1] = float("inf")
    with pytest.raises(ValueError, match=r"start\['stoch'\] has NaN or infinite values"):
        wm.imagine(lambda s, a: s, lambda s: torch.zeros(N, ACT), bad_start, 2)
    with pytest.raises(ValueError, match=r"dtype and device of start \(torch.float32, cpu\), got "
                                         r"torch.float64, cpu at step 0"):
        wm.imagine(lambda s, a: {k: v.double() for k, v in s.items()}, actor, start, 2)
