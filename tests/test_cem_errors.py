"""Bad input to the CEM planners: clear errors naming the argument, expected and received."""

from __future__ import annotations

import pytest
import torch
import wmfast as wm


def point_mass(state, action):
    nxt = state + action
    return nxt, -(nxt * nxt).sum(-1)


def small(**kwargs):
    args = {"horizon": 3, "action_dim": 2, "population": 10, "elites": 2, "iterations": 2} | kwargs
    return wm.CEM(**args)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"elites": 11}, ValueError,
         r"elites must be <= population, got elites=11 > population=10"),
        ({"elites": 0}, ValueError, r"elites must be >= 1, got 0"),
        ({"population": 0}, ValueError, r"population must be >= 1, got 0"),
        ({"population": -3}, ValueError, r"population must be >= 1, got -3"),
        ({"horizon": 0}, ValueError, r"horizon must be >= 1, got 0"),
        ({"iterations": 0}, ValueError, r"iterations must be >= 1, got 0"),
        ({"population": 2.5}, TypeError, r"population must be an int, got float"),
        ({"action_low": [0.0, 1.0], "action_high": [1.0, 0.5]}, ValueError,
         (r"action_low must be <= action_high in every dimension, got action_low\[1\]=1 > "
         r"action_high\[1\]=0.5")),
        ({"action_low": [0.0, 0.0, 0.0]}, ValueError,
         r"action_low must be a scalar or have shape \(2,\) \(action_dim\), got shape \(3,\)"),
        ({"action_low": float("nan")}, ValueError, r"action bounds must not be NaN"),
        ({"alpha": 1.0}, ValueError, r"alpha must be in \[0, 1\), got 1"),
        ({"discount": 1.5}, ValueError, r"discount must be in \[0, 1\], got 1.5"),
        ({"init_std": -1.0}, ValueError, r"init_std must be finite and >= 0, got -1"),
        ({"propagation": "ts1"}, ValueError, r"propagation='ts1' needs ensemble_size"),
        ({"ensemble_size": 3, "propagation": "ts7"}, ValueError,
         r"propagation must be one of 'ts1', 'tsinf', 'expectation', got 'ts7'"),
        ({"ensemble_size": 3, "propagation": "ts1"}, ValueError,
         (r"population \* particles must be divisible by ensemble_size for trajectory sampling, "
         r"got 10 \* 1 and ensemble_size=3")),
        ({"ensemble_size": 2, "propagation": "tsinf", "disagreement_penalty": 1.0}, ValueError,
         r"disagreement_penalty needs propagation='expectation'"),
        ({"goal_metric": "cosine"}, ValueError, r"goal_metric must be one of"),
        ({"policy_samples": 11}, ValueError,
         r"policy_samples \+ kept elites must be <= population, got 11 \+ 0 > 10"),
        ({"seed": -1}, ValueError, r"seed must be >= 0, got -1"),
    ],
)
def test_bad_configuration(kwargs, error, match):
    with pytest.raises(error, match=match):
        small(**kwargs)


def test_unknown_keyword():
    with pytest.raises(TypeError, match=r"CEM got an unexpected keyword argument 'popsize'"):
        small(popsize=3)


def test_bad_mppi_and_icem_configuration():
    with pytest.raises(ValueError, match=r"temperature must be a finite number > 0, got 0"):
        wm.MPPI(horizon=3, action_dim=1, population=10, temperature=0.0)
    with pytest.raises(ValueError, match=r"elites must be in \[0, population\]"):
        wm.MPPI(horizon=3, action_dim=1, population=10, elites=20)
    with pytest.raises(ValueError, match=r"noise_beta must be a finite number >= 0, got -1"):
        wm.ICEM(horizon=3, action_dim=1, population=10, elites=2, noise_beta=-1.0)
    with pytest.raises(ValueError, match=r"keep_elites must be a fraction in \[0, 1\], got 2"):
        wm.ICEM(horizon=3, action_dim=1, population=10, elites=2, keep_elites=2.0)


def test_bad_state():
    p = small()
    with pytest.raises(ValueError, match=r"state must be a tensor \[B, \.\.\.\] with a batch "
                                         r"dimension, got shape \[2\]"):
        p.plan(point_mass, torch.zeros(2))
    with pytest.raises(ValueError, match=r"state must be a floating-point tensor, got dtype Long"):
        p.plan(point_mass, torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"state must hold numbers or booleans, got str"):
        p.plan(point_mass, "not a state")
    with pytest.raises(ValueError,
                       match=r"goal must have the shape of state \[1, 2\], got \[1, 3\]"):
        p.plan(point_mass, torch.zeros(1, 2), goal=torch.zeros(1, 3))


def test_bad_dynamics():
    p = small()
    state = torch.zeros(4, 2)
    with pytest.raises(TypeError, match=r"dynamics must be callable"):
        p.plan(42, state)
    with pytest.raises(ValueError, match=r"dynamics returned next_state of shape \[40, 3\], "
                                         r"expected \[40, 2\]"):
        p.plan(lambda s, a: (torch.zeros(s.shape[0], 3), torch.zeros(s.shape[0])), state)
    with pytest.raises(ValueError, match=r"dynamics returned reward of shape \[40, 1\], "
                                         r"expected \[40\]"):
        p.plan(lambda s, a: (s + a, torch.zeros(s.shape[0], 1)), state)
    with pytest.raises(TypeError, match=r"dynamics must return \(next_state, reward\) tensors, "
                                        r"got int"):
        p.plan(lambda s, a: 3, state)
    with pytest.raises(TypeError, match=r"dynamics must return a pair \(next_state, reward\), "
                                        r"got a sequence of 3"):
        p.plan(lambda s, a: (s, s, s), state)
    with pytest.raises(TypeError, match=r"dynamics' reward must be a torch.Tensor, got float"):
        p.plan(lambda s, a: (s + a, 1.0), state)
    with pytest.raises(ValueError, match=r"dynamics returned no reward \(None\) and no goal"):
        p.plan(lambda s, a: (s + a, None), state)
    # An exception inside the model propagates unchanged.
    with pytest.raises(ZeroDivisionError):
        p.plan(lambda s, a: 1 / 0, state)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cls", [wm.CEM, wm.MPPI])
def test_nan_reward_is_an_error(cls, dtype):
    def nan_model(state, action):
        reward = -(state * state).sum(-1)
        reward[3] = float("nan")
        return state + action, reward

    p = cls(horizon=3, action_dim=2, population=10, elites=2)
    with pytest.raises(ValueError, match=r"the dynamics model produced NaN: a predicted return "
                                         r"is NaN"):
        p.plan(nan_model, torch.zeros(2, 2, dtype=dtype))


def test_minus_inf_rewards_mark_forbidden_transitions():
    # -inf is allowed (documented): such candidates are never elites while others exist.
    def walls(state, action):
        nxt = state + action
        reward = -(nxt * nxt).sum(-1)
        return nxt, torch.where(action[:, 0] > 0, torch.tensor(float("-inf")), reward)

    p = small(population=64, elites=8)
    plan = p.plan(walls, torch.tensor([[-2.0, 0.0]]))
    assert (plan.actions[..., 0] <= 0).all()
    assert torch.isfinite(plan.returns).all()
    # MPPI gives them zero weight.
    mppi = wm.MPPI(horizon=3, action_dim=2, population=64, temperature=0.5)
    plan = mppi.plan(walls, torch.tensor([[-2.0, 0.0]]))
    assert torch.isfinite(plan.returns).all() and torch.isfinite(plan.mean).all()


def test_ensemble_shape_errors():
    p = wm.CEM(horizon=2, action_dim=1, population=8, elites=2, ensemble_size=2,
               propagation="tsinf")
    with pytest.raises(ValueError, match=r"dynamics returned reward of shape \[8\], "
                                         r"expected \[2, 4\]"):
        p.plan(lambda s, a: (s + a, torch.zeros(8)), torch.zeros(1, 1))
    with pytest.raises(ValueError, match=r"dynamics returned next_state of shape \[2, 4, 3\], "
                                         r"expected \[2, 4, 1\]"):
        p.plan(lambda s, a: (torch.zeros(2, 4, 3), torch.zeros(2, 4)), torch.zeros(1, 1))
    q = wm.CEM(horizon=2, action_dim=1, population=8, elites=2, ensemble_size=2,
               propagation="expectation")
    with pytest.raises(ValueError, match=r"dynamics returned next_state of shape \[8, 1\], "
                                         r"expected \[2, 8, 1\]"):
        q.plan(lambda s, a: (torch.zeros(8, 1), torch.zeros(8)), torch.zeros(1, 1))


def test_bad_plan_arguments():
    p = small()
    state = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"noise must be \[iterations, horizon, B, population, "
                                         r"action_dim\] = \[2, 3, 2, 10, 2\], got \[3, 2, 10, 2\]"):
        p.plan(point_mass, state, noise=torch.zeros(3, 2, 10, 2))
    with pytest.raises(TypeError, match=r"warm_start must be a Plan, got Tensor"):
        p.plan(point_mass, state, warm_start=torch.zeros(2, 3, 2))
    prev = p.plan(point_mass, torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"warm-start mean must be \[B, horizon, action_dim\] = "
                                         r"\[2, 3, 2\], got \[3, 3, 2\]"):
        p.plan(point_mass, state, warm_start=prev)
    with pytest.raises(ValueError, match=r"shift must be >= 0, got -1"):
        p.plan(point_mass, torch.zeros(3, 2), warm_start=prev, shift=-1)
    with pytest.raises(ValueError, match=r"actions must be \[B, n, horizon, action_dim\] = "
                                         r"\[2, n, 3, 2\], got \[2, 4, 3\]"):
        p.evaluate(point_mass, state, torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match=r"policy_samples=2 needs a policy"):
        small(policy_samples=2).plan(point_mass, state)
    with pytest.raises(ValueError, match=r"policy returned actions of shape \[4, 1\], "
                                         r"expected \[4, 2\]"):
        small(policy_samples=2).plan(point_mass, state, policy=lambda s: torch.zeros(4, 1))
    with pytest.raises(ValueError, match=r"value returned shape \[20, 2\], expected \[20\]"):
        p.plan(point_mass, state, value=lambda s: torch.zeros(20, 2))
