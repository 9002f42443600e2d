"""MuZero transforms and replay targets against the formulas, on hand-made episodes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from wmfast import transforms as T
from wmfast.muzero import Game, Replay

# -- transforms -------------------------------------------------------------------------------


def test_h_matches_the_formula_and_inverts():
    x = torch.tensor([-1e6, -300.0, -3.7, -0.2, 0.0, 0.5, 2.0, 7.3, 300.0, 1e6], dtype=torch.float64)
    expected = torch.tensor([math.copysign(math.sqrt(abs(v) + 1) - 1, v) + 1e-3 * v for v in x.tolist()],
                            dtype=torch.float64)
    torch.testing.assert_close(T.h(x), expected)
    torch.testing.assert_close(T.h_inv(T.h(x)), x, rtol=1e-9, atol=1e-7)
    torch.testing.assert_close(T.h_inv(T.h(x, eps=0.0), eps=0.0), x, rtol=1e-9, atol=1e-7)


@settings(max_examples=200, deadline=None)
@given(st.floats(-1e5, 1e5), st.integers(1, 30))
def test_support_expectation_is_the_clamped_scaled_scalar(value, support_size):
    x = torch.tensor([value], dtype=torch.float64)
    probs = T.scalar_to_support(x, support_size)
    assert probs.shape == (1, 2 * support_size + 1)
    assert (probs >= 0).all() and abs(float(probs.sum()) - 1.0) < 1e-12
    assert int((probs > 0).sum()) <= 2
    support = torch.arange(-support_size, support_size + 1, dtype=torch.float64)
    expected = float(T.h(x).clamp(-support_size, support_size))
    assert abs(float((probs * support).sum()) - expected) < 1e-9


def test_support_decode_is_h_inverse_of_the_expectation():
    logits = torch.tensor([[0.0, 1.0, 2.0, 0.5, -1.0]], dtype=torch.float64)
    p = torch.softmax(logits, -1)
    expectation = float((p * torch.arange(-2, 3, dtype=torch.float64)).sum())
    assert float(T.support_to_scalar(logits, 2)) == pytest.approx(float(T.h_inv(torch.tensor(expectation, dtype=torch.float64))))
    # Not the expectation of h^-1 over the atoms:
    wrong = float((p * T.h_inv(torch.arange(-2, 3, dtype=torch.float64))).sum())
    assert float(T.support_to_scalar(logits, 2)) != pytest.approx(wrong)
    # Round trip through log-probabilities of the support encoding (inside the support's range).
    x = torch.tensor([-50.0, -1.5, 0.0, 3.25, 80.0], dtype=torch.float64)
    decoded = T.support_to_scalar(torch.log(T.scalar_to_support(x, 10) + 1e-300), 10)
    torch.testing.assert_close(decoded, x, rtol=1e-6, atol=1e-6)


def test_support_errors_name_the_argument():
    with pytest.raises(ValueError, match="support_size"):
        T.scalar_to_support(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="2 \\* support_size \\+ 1"):
        T.support_to_scalar(torch.zeros(3, 7), 10)


# -- replay targets ---------------------------------------------------------------------------


def _game(rewards, root_values, terminated, end_value=0.0, two_player=False, A=2, obs_dim=3):
    T_ = len(rewards)
    return Game(
        observations=np.arange(T_ * obs_dim, dtype=np.float32).reshape(T_, obs_dim),
        actions=np.arange(T_) % A,
        rewards=np.asarray(rewards, np.float32),
        root_values=np.asarray(root_values, np.float32),
        policies=np.full((T_, A), 1.0 / A, np.float32),
        terminated=terminated,
        end_value=end_value,
        to_play_changes=two_player,
    )


def _reference_value(rewards, values, j, n, gamma, terminated, end_value, two_player):
    """The n-step target written out step by step."""
    T_ = len(rewards)
    if j >= T_:
        return 0.0
    total, scale = 0.0, 1.0
    for m in range(n):
        if j + m >= T_:
            break
        total += scale * rewards[j + m]
        scale *= gamma * (-1.0 if two_player else 1.0)
    if j + n < T_:
        total += scale * values[j + n]
    elif not terminated:
        total += scale * end_value
    return total


@pytest.mark.parametrize("terminated", [True, False])
@pytest.mark.parametrize("two_player", [False, True])
def test_value_targets_match_the_written_out_sum(terminated, two_player):
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=7).round(2)
    values = rng.normal(size=7).round(2)
    gamma, n, K = 0.9, 3, 4
    replay = Replay(100, (3,), np.float32, 2, gamma, n, K)
    replay.add(_game([0.5], [0.1], True))  # another game before it
    replay.add(_game(rewards, values, terminated, end_value=2.5, two_player=two_player))
    batch = replay.targets(np.arange(1, 8))
    for b, i in enumerate(range(7)):
        for k in range(K + 1):
            expected = _reference_value(rewards, values, i + k, n, gamma, terminated, 2.5, two_player)
            assert batch.target_values[b, k] == pytest.approx(expected, abs=1e-5), (i, k)
            inside = i + k < 7
            assert batch.policy_mask[b, k] == inside
            assert batch.value_mask[b, k] == (inside or terminated)
            if k >= 1:
                reward_inside = i + k - 1 < 7
                assert batch.target_rewards[b, k] == pytest.approx(rewards[i + k - 1] if reward_inside else 0.0)
                assert batch.reward_mask[b, k] == (reward_inside or terminated)
            else:
                assert batch.reward_mask[b, 0] == 0
        np.testing.assert_array_equal(batch.observations[b], np.arange(3 * i, 3 * i + 3))
    # Actions inside the game are the ones taken; the rest are valid random actions.
    assert batch.actions.shape == (7, K)
    assert ((batch.actions >= 0) & (batch.actions < 2)).all()
    np.testing.assert_array_equal(batch.actions[0], np.arange(K) % 2)


def test_cartpole_like_episode_known_returns():
    """Reward 1 per step, terminated after 4 steps, gamma 0.5, n = 10: z_j = sum of the rest."""
    replay = Replay(10, (3,), np.float32, 2, 0.5, 10, 2)
    replay.add(_game([1, 1, 1, 1], [9, 9, 9, 9], True))
    batch = replay.targets(np.array([0]))
    np.testing.assert_allclose(batch.target_values[0], [1.875, 1.75, 1.5])
    # Truncated instead: bootstraps from the end value after the last step.
    replay = Replay(10, (3,), np.float32, 2, 0.5, 10, 0)
    replay.add(_game([1, 1, 1, 1], [9, 9, 9, 9], False, end_value=8.0))
    np.testing.assert_allclose(replay.targets(np.array([0, 3])).target_values[:, 0], [1.875 + 0.0625 * 8, 1 + 0.5 * 8])


def test_ring_buffer_drops_whole_games_and_samples_only_valid_positions():
    replay = Replay(10, (3,), np.float32, 2, 0.9, 2, 2, seed=1)
    replay.add(_game([1] * 4, [0] * 4, True))   # [0, 4)
    replay.add(_game([1] * 4, [0] * 4, True))   # [4, 8)
    replay.add(_game([1] * 3, [0] * 3, True))   # does not fit at 8: wraps to [0, 3), drops [0, 4)
    assert replay.valid.tolist() == [True] * 3 + [False] + [True] * 4 + [False] * 2
    assert len(replay) == 7
    batch = replay.sample(64)
    assert replay.valid[batch.index].all()
    assert batch.observations.shape == (64, 3) and batch.target_policies.shape == (64, 3, 2)
    replay.add(_game([1] * 5, [0] * 5, True))   # [3, 8): drops the game at [4, 8)
    assert replay.valid.tolist() == [True] * 8 + [False] * 2
    with pytest.raises(ValueError, match="capacity"):
        replay.add(_game([1] * 11, [0] * 11, True))


@given(st.lists(st.integers(1, 10), min_size=1, max_size=25), st.integers(10, 30))
@settings(max_examples=60, deadline=None)
def test_replay_length_counts_the_valid_positions(lengths, capacity):
    """len(replay) is kept as a count (the Ray driver asks for it per result): it equals the
    valid positions after any sequence of adds, wraps and drops, and after a state round trip."""
    replay = Replay(capacity, (3,), np.float32, 2, 0.9, 2, 1)
    for T_ in lengths:
        replay.add(_game([1] * T_, [0] * T_, True))
        assert len(replay) == int(replay.valid.sum())
    copy = Replay(capacity, (3,), np.float32, 2, 0.9, 2, 1)
    copy.load_state_dict(replay.state_dict())
    assert len(copy) == len(replay)


def test_prioritized_sampling_weights():
    replay = Replay(100, (3,), np.float32, 2, 0.9, 2, 1, alpha=1.0, beta=1.0, seed=0)
    replay.add(_game([0] * 10, [0] * 10, True))
    replay.update_priorities(np.arange(10), np.r_[np.full(9, 0.1), 10.0])
    batch = replay.sample(2000)
    share = (batch.index == 9).mean()
    assert share == pytest.approx(10 / 10.9, abs=0.03)
    # weights (N P(i))^-1 normalised by their max: the rare positions get weight 1.
    rare = batch.weights[batch.index != 9]
    assert np.allclose(rare, 1.0)
    assert np.allclose(batch.weights[batch.index == 9], 0.1 / 10, rtol=1e-3)


def test_replay_rejects_bad_games_and_changes_nothing():
    replay = Replay(10, (3,), np.float32, 2, 0.9, 2, 1)
    replay.add(_game([1, 1], [0, 0], True))
    before = replay.state_dict()
    bad = _game([1, math.nan], [0, 0], True)
    with pytest.raises(ValueError, match="rewards"):
        replay.add(bad)
    bad = _game([1, 1], [0, 0], True)
    bad.actions = np.array([0, 5])
    with pytest.raises(ValueError, match="actions"):
        replay.add(bad)
    after = replay.state_dict()
    for name in Replay._ARRAYS:
        np.testing.assert_array_equal(before[name], after[name])
    assert after["cursor"] == before["cursor"]
