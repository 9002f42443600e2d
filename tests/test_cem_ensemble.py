"""Ensemble dynamics: PETS propagation modes (TS1, TS-infinity, expectation), particles,
disagreement penalty."""

from __future__ import annotations

import pytest
import torch
import wmfast as wm

E, H = 4, 5


def member_coded(state, action):
    """An ensemble [E, M, ...] whose reward tells which member ran it at which step.

    state[..., 0] is the step t; member e earns e * E**t, so a particle's return sum_t e_t E^t
    spells its member sequence in base E.
    """
    assert state.dim() == 3 and state.shape[0] == E
    t = state[..., 0]
    member = torch.arange(E, dtype=state.dtype).view(E, 1).expand_as(t)
    nxt = state.clone()
    nxt[..., 0] += 1
    return nxt, member * E**t


def digits(returns):
    """Base-E digits (member per step) of the coded returns: [..., H]."""
    r = returns.round().long()
    return torch.stack([(r // E**t) % E for t in range(H)], dim=-1)


def planner(propagation, particles=1, **kwargs):
    return wm.CEM(horizon=H, action_dim=1, population=16, elites=4, ensemble_size=E,
                  propagation=propagation, particles=particles, **kwargs)


def test_tsinf_keeps_one_member_per_particle_and_balances_members():
    b, n = 3, 16
    returns = planner("tsinf").evaluate(member_coded, torch.zeros(b, 2), torch.zeros(b, n, H, 1))
    seq = digits(returns)  # [B, n, H]
    assert (seq == seq[..., :1]).all()  # a fixed member for each particle
    for i in range(b):  # each problem's candidates spread evenly over the members
        assert torch.bincount(seq[i, :, 0], minlength=E).tolist() == [n // E] * E


def test_ts1_draws_a_member_per_step_with_equal_loads():
    b, n = 2, 64
    p = planner("ts1")
    returns = p.evaluate(member_coded, torch.zeros(b, 2), torch.zeros(b, n, H, 1))
    seq = digits(returns)
    # Every model call gives each member the same number of rows (B * n / E).
    for t in range(H):
        assert torch.bincount(seq[..., t].flatten(), minlength=E).tolist() == [b * n // E] * E
    # Members change along a particle's trajectory (all constant would be TS-infinity).
    changes = (seq[..., 1:] != seq[..., :-1]).float().mean().item()
    assert 0.6 < changes < 0.9  # 1 - 1/E = 0.75 for uniform independent draws
    # Different draws at the next call, the same after reseeding.
    again = p.evaluate(member_coded, torch.zeros(b, 2), torch.zeros(b, n, H, 1))
    assert not torch.equal(again, returns)


def test_expectation_averages_members():
    calls = []

    def dyn(state, action):
        calls.append((state.shape, action.shape))
        return member_coded(state, action)

    b, n = 2, 6
    returns = planner("expectation").evaluate(dyn, torch.zeros(b, 2), torch.zeros(b, n, H, 1))
    mean_member = (E - 1) / 2
    expected = sum(mean_member * E**t for t in range(H))
    torch.testing.assert_close(returns, torch.full((b, n), float(expected)))
    assert calls[0] == (torch.Size([E, b * n, 2]), torch.Size([E, b * n, 1]))


def test_particles_average_over_members():
    # With P = E particles per candidate under TS-infinity, each candidate's particles run on
    # all E members: its return is the mean member's.
    b, n = 2, 8
    returns = planner("tsinf", particles=E).evaluate(member_coded, torch.zeros(b, 2),
                                                     torch.zeros(b, n, H, 1))
    expected = sum((E - 1) / 2 * E**t for t in range(H))
    torch.testing.assert_close(returns, torch.full((b, n), float(expected)))


def test_disagreement_penalty():
    spread = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(E, 1, 1)

    def dyn(state, action):  # members disagree by a fixed offset in one of two dimensions
        nxt = state + action.sum(-1, keepdim=True) + spread * torch.tensor([1.0, 0.0])
        return nxt, torch.zeros(state.shape[:2])

    p = planner("expectation", disagreement_penalty=2.0)
    returns = p.evaluate(dyn, torch.zeros(1, 2), torch.zeros(1, 3, H, 1))
    std = spread.flatten().std(unbiased=False).item()
    # Per step: 2.0 * mean over dimensions of the members' std ((std + 0) / 2).
    torch.testing.assert_close(returns, torch.full((1, 3), -2.0 * std / 2 * H))


@pytest.mark.parametrize("propagation", ["ts1", "tsinf", "expectation"])
def test_ensemble_planning_solves_the_point_mass(propagation):
    offsets = torch.tensor([0.0, 0.02, -0.02, 0.01]).view(E, 1, 1)

    def ensemble(state, action):  # members agree up to small biases
        nxt = state + action + offsets
        return nxt, -(nxt * nxt).sum(-1)

    # PETS executes the final mean: the best single sequence is a noisy pick under TS1.
    p = wm.CEM(horizon=6, action_dim=2, population=400, elites=40, iterations=5,
               ensemble_size=E, propagation=propagation, return_mean=True)
    state = torch.tensor([[2.0, -1.5], [0.5, 0.0]])
    plan = p.plan(ensemble, state)
    final = state + plan.actions.sum(1)
    assert final.abs().max() < 0.25
    assert plan.actions.shape == (2, 6, 2)


def test_policy_prior_with_an_ensemble():
    def ensemble(state, action):
        nxt = state + action
        return nxt, -(nxt * nxt).sum(-1)

    seen = []

    def policy(state):
        seen.append(state.shape)
        return (-state).clamp(-1, 1)

    p = wm.CEM(horizon=3, action_dim=1, population=8, elites=2, iterations=2, ensemble_size=2,
               propagation="tsinf", policy_samples=2)
    plan = p.plan(ensemble, torch.tensor([[2.5]]), policy=policy)
    assert seen == [torch.Size([2, 1])] * 3
    torch.testing.assert_close(plan.actions[0, :, 0], torch.tensor([-1.0, -1.0, -0.5]))
