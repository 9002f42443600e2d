"""TicTacToe: the environment's rules, the minimax player, the muzero-tictactoe demo and a
MuZeroAgent self-play smoke (two-player signs, legal actions only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from wmfast.envs import MinimaxPlayer, TicTacToe, game_value, minimax_table, solve
from wmfast.envs.tictactoe import board_from_observation, winner


def play(env: TicTacToe, moves):
    out = None
    for move in moves:
        out = env.step(move)
    return out


# -- the environment -------------------------------------------------------------------------


def test_reset_gives_empty_board_and_first_player_view():
    env = TicTacToe()
    obs, info = env.reset(seed=3)
    assert obs.shape == (3, 3, 3) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    assert obs[0].sum() == 0 and obs[1].sum() == 0 and (obs[2] == 1).all()
    assert info["action_mask"].dtype == bool and info["action_mask"].all()
    assert info["to_play"] == 0 and info["winner"] == -1
    assert env.action_space.n == 9


def test_observation_is_the_movers_view():
    env = TicTacToe()
    env.reset()
    obs, reward, terminated, truncated, info = env.step(4)   # X in the centre
    assert (reward, terminated, truncated) == (0.0, False, False)
    # O to move: the centre is the opponent's stone, plane 2 is zeros (second player).
    assert obs[1, 1, 1] == 1 and obs[0].sum() == 0 and (obs[2] == 0).all()
    assert info["to_play"] == 1 and not info["action_mask"][4] and info["action_mask"].sum() == 8
    obs, *_ = env.step(0)                                    # O in a corner
    assert obs[0, 1, 1] == 1 and obs[1, 0, 0] == 1 and (obs[2] == 1).all()
    assert board_from_observation(obs) == (-1, 0, 0, 0, 1, 0, 0, 0, 0)


@pytest.mark.parametrize("moves, mover", [
    ([0, 3, 1, 4, 2], 0),            # X: top row
    ([0, 1, 3, 4, 8, 7], 1),         # O: middle column
    ([2, 0, 4, 1, 6], 0),            # X: anti-diagonal
    ([1, 0, 2, 4, 3, 8], 1),         # O: diagonal
])
def test_the_winning_move_gets_the_reward_and_ends_the_game(moves, mover):
    env = TicTacToe()
    env.reset()
    rewards = []
    for move in moves:
        _, reward, terminated, truncated, info = env.step(move)
        rewards.append(reward)
        assert not truncated
    assert rewards == [0.0] * (len(moves) - 1) + [1.0]
    assert terminated and info["winner"] == mover and not info["action_mask"].any()
    with pytest.raises(ValueError, match="game is over"):
        env.step(int(np.flatnonzero(env.board == 0)[0]))


def test_draw_ends_with_zero_reward():
    env = TicTacToe()
    env.reset()
    _, reward, terminated, _, info = play(env, [0, 1, 2, 4, 3, 5, 7, 6, 8])
    assert reward == 0.0 and terminated and info["winner"] == -1 and (env.board != 0).all()


@pytest.mark.parametrize("action, match", [(4, "occupied"), (9, "0..8"), (-1, "0..8"),
                                           (1.5, "0..8"), ("a", "0..8")])
def test_illegal_moves_raise(action, match):
    env = TicTacToe()
    env.reset()
    env.step(4)
    with pytest.raises(ValueError, match=match):
        env.step(action)
    assert env.board.tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0] and env.to_play == 1


def test_numpy_integer_actions_and_ansi_render():
    env = TicTacToe(render_mode="ansi")
    env.reset()
    env.step(np.int64(0))
    env.step(np.int32(4))
    assert env.render() == "X..\n.O.\n...\n"
    with pytest.raises(ValueError, match="render_mode"):
        TicTacToe(render_mode="human")


def test_random_opening_plays_zero_to_n_legal_moves_from_the_seed():
    env = TicTacToe(random_opening=4)
    counts = set()
    for seed in range(60):
        obs, info = env.reset(seed=seed)
        stones = int((env.board != 0).sum())
        counts.add(stones)
        assert (env.board == 1).sum() - (env.board == -1).sum() in (0, 1)
        assert info["to_play"] == stones % 2 and not env.done
        assert np.array_equal(info["action_mask"], env.board == 0)
        assert (obs[2] == (1.0 if stones % 2 == 0 else 0.0)).all()
        again = TicTacToe(random_opening=4)
        again.reset(seed=seed)
        assert np.array_equal(again.board, env.board)
    assert counts == {0, 1, 2, 3, 4}
    for bad in (-1, 5, 1.0, True):
        with pytest.raises(ValueError, match="random_opening must be an int in 0..4"):
            TicTacToe(random_opening=bad)


# -- minimax ---------------------------------------------------------------------------------


def test_the_table_holds_every_reachable_position_and_the_empty_board_is_a_draw():
    table = minimax_table()
    assert len(table) == 5478
    assert game_value([0] * 9) == 0
    scores = solve(np.zeros((3, 3, 3), np.float32))
    assert isinstance(scores, torch.Tensor) and scores.shape == (9,) and scores.dtype == torch.float32
    assert (scores == 0).all()   # every opening move draws with perfect play


def test_known_values():
    # O to move (O's view: +1 O's stones) after X 0, O 1 (a mistake), X 4: O must block 8,
    # then X forks with 6 and wins.
    board_o_view = (-1, 1, 0, 0, -1, 0, 0, 0, 0)
    assert game_value(board_o_view) == -1
    with pytest.raises(ValueError, match="not reachable"):
        game_value((1, 1, 1, 1, 0, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="over"):
        solve((1, 1, 1, -1, -1, 0, 0, 0, 0))


def test_minimax_takes_an_immediate_win_over_a_slower_one():
    # Mover: 0 and 1; opponent: 3 and 4 (the opponent threatens 5). 2 wins now.
    board = (1, 1, 0, -1, -1, 0, 0, 0, 0)
    player = MinimaxPlayer(seed=0)
    assert player.optimal_actions(board) == [2]
    scores = solve(board)
    assert scores[2] > 0 and scores[5] < scores[2]
    for seed in range(10):
        assert MinimaxPlayer(seed=seed).act(board) == 2


def test_minimax_blocks():
    # The mover (O, one stone fewer) has 4; the opponent's 0 and 1 threaten 2.
    board = (-1, -1, 0, 0, 1, 0, 0, 0, 0)
    assert MinimaxPlayer().optimal_actions(board) == [2]
    env = TicTacToe()
    obs, _ = env.reset()
    for move in (0, 4, 1):        # X 0, O 4, X 1: O must block at 2
        obs, *_ = env.step(move)
    assert MinimaxPlayer(seed=1).act(obs) == 2


def _play_game(first, second, seed):
    env = TicTacToe()
    obs, _ = env.reset(seed=seed)
    players = (first, second)
    terminated = False
    while not terminated:
        obs, _, terminated, _, _ = env.step(players[env.to_play](env, obs))
    return env.result


def test_minimax_never_loses():
    rng = np.random.default_rng(0)

    def random_player(env, obs):
        return int(rng.choice(np.flatnonzero(env.legal_actions())))

    for seed in range(150):
        a, b = MinimaxPlayer(seed=seed), MinimaxPlayer(seed=seed + 1000)
        first, second = (lambda env, obs, a=a: a.act(obs)), (lambda env, obs, b=b: b.act(obs))
        assert _play_game(first, second, seed) == -1                # perfect play draws
        assert _play_game(first, random_player, seed) in (-1, 0)   # never loses as X
        assert _play_game(random_player, second, seed) in (-1, 1)  # never loses as O
    # Against random play, minimax as first player wins most games.
    wins = sum(_play_game(lambda env, obs: a.act(obs), random_player, s) == 0 for s in range(100))
    assert wins >= 80


def test_minimax_randomises_among_optimal_moves_with_its_seed():
    empty = np.zeros(9)
    first = [MinimaxPlayer(seed=s).act(empty) for s in range(40)]
    assert len(set(first)) > 3
    assert first == [MinimaxPlayer(seed=s).act(empty) for s in range(40)]
    assert MinimaxPlayer(random=False).act(empty) == 0


def test_minimax_errors_name_the_input():
    with pytest.raises(ValueError, match=r"shape \[3, 3, 3\].*got shape \[4\]"):
        solve(np.zeros(4))
    with pytest.raises(ValueError, match="values in"):
        solve([2, 0, 0, 0, 0, 0, 0, 0, 0])
    obs = np.zeros((3, 3, 3), np.float32)
    obs[0, 0, 0] = obs[1, 0, 0] = 1
    with pytest.raises(ValueError, match="both players"):
        solve(obs)


def test_winner_helper():
    assert winner((1, 1, 1, 0, 0, 0, 0, 0, 0)) == 1
    assert winner((-1, 0, 0, -1, 0, 0, -1, 0, 0)) == -1
    assert winner((0,) * 9) == 0


# -- the demo and the agent ------------------------------------------------------------------


def test_demo_smoke_json(tmp_path, capsys):
    from wmfast.demos import DEMOS

    assert DEMOS["muzero-tictactoe"](["--smoke", "--json", "--out", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["demo"] == "muzero-tictactoe" and figures["smoke"] is True
    for side in ("first", "second"):
        assert sum(figures[f"{side}_{k}"] for k in ("wins", "draws", "losses")) == 5
    assert figures["env_steps"] > 0 and figures["training_minutes"] > 0
    assert 0.0 <= figures["value_keeping_fraction"] <= 1.0
    for name in ("muzero_tictactoe.csv", "muzero_tictactoe.png", "agent.pt"):
        assert (tmp_path / name).stat().st_size > 0
    from wmfast.agents import MuZeroAgent

    agent = MuZeroAgent.load(str(tmp_path / "agent.pt"), TicTacToe)
    obs, info = TicTacToe().reset()
    assert 0 <= agent.act(obs, legal_actions=info["action_mask"]) <= 8


def test_play_minimax_counts_games_from_the_agents_side():
    from wmfast.demos.muzero_tictactoe import play_minimax

    class Minimax:   # a perfect "agent" draws every game
        player = MinimaxPlayer(seed=5)

        def act(self, obs, legal_actions=None):
            return np.array([self.player.act(o) for o in obs])

    class FirstLegal:   # plays the lowest empty square: minimax beats it
        def act(self, obs, legal_actions=None):
            return np.asarray(legal_actions).argmax(axis=1)

    assert play_minimax(Minimax(), 20, True, seed=0) == {"wins": 0, "draws": 20, "losses": 0}
    assert play_minimax(Minimax(), 20, False, seed=0) == {"wins": 0, "draws": 20, "losses": 0}
    for first in (True, False):
        assert play_minimax(FirstLegal(), 10, first, seed=0)["losses"] == 10
    with pytest.raises(ValueError, match="games must be an int >= 1, got 0"):
        play_minimax(FirstLegal(), 0, True, seed=0)


def test_value_keeping_fraction_of_perfect_and_naive_players():
    from wmfast.demos.muzero_tictactoe import value_keeping_fraction

    class Perfect:
        def act(self, obs, legal_actions=None):
            return np.array([MinimaxPlayer(random=False).act(o) for o in obs])

    class FirstLegal:
        def act(self, obs, legal_actions=None):
            return np.asarray(legal_actions).argmax(axis=1)

    assert value_keeping_fraction(Perfect()) == 1.0
    assert 0.3 < value_keeping_fraction(FirstLegal()) < 1.0


def test_muzero_selfplay_stores_alternating_signs_and_legal_actions_only():
    from wmfast import muzero as mz
    from wmfast.agents import MuZeroAgent

    config = mz.Config(two_player=True, search="gumbel", num_envs=4, num_simulations=4,
                       max_num_considered_actions=9, discount=1.0, td_steps=9, unroll_steps=3,
                       latent_dim=8, hidden=8, support_size=0, replay_capacity=500,
                       batch_size=8, min_replay=20, updates_per_step=0.25, seed=0)
    agent = MuZeroAgent(TicTacToe, config=config)
    agent.train(120, progress=False)
    replay = agent.replay
    assert agent.episodes > 0 and agent.updates > 0
    stored = np.flatnonzero(replay.valid)
    assert len(stored) > 0
    assert (replay.signs[stored] == -1.0).all()
    for start in np.unique(replay.game_start[stored]):
        end = replay.game_end[start]
        env = TicTacToe()
        env.reset()
        for i in range(start, end):
            # The stored observation is the mover's view of the replayed position, the action
            # was legal there, and the reward is the mover's.
            assert np.array_equal(replay.observations[i], env.observation())
            assert np.array_equal(replay.legal[i], env.legal_actions())
            assert replay.legal[i, replay.actions[i]]
            assert replay.policies[i][~replay.legal[i]].sum() == 0
            _, reward, terminated, _, _ = env.step(int(replay.actions[i]))
            assert replay.rewards[i] == reward
        assert terminated and replay.terminated[start]
        # n-step value targets alternate in sign: with discount 1 and td_steps >= game length,
        # the target at a position is +1 if its mover wins, -1 if it loses, 0 for a draw.
        values = replay._value_targets(np.arange(start, end), end)
        result = env.result
        movers = np.arange(end - start) % 2
        expected = np.zeros(end - start) if result == -1 else np.where(movers == result, 1.0, -1.0)
        np.testing.assert_allclose(values, expected, atol=1e-6)
