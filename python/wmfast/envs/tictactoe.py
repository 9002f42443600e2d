"""TicTacToe as a two-player gymnasium environment, and a perfect minimax player.

Two-player protocol (the one ``wmfast.muzero`` expects with ``Config(two_player=True)``):

* One environment plays both sides; the players alternate, the first player ("X") moves first.
* The observation is always the view of the player to move: float32 planes ``[3, 3, 3]``,
  plane 0 the mover's stones, plane 1 the opponent's, plane 2 all ones when the mover is the
  first player (all zeros otherwise).
* The reward of ``step`` belongs to the player who just moved: +1 when the move wins, 0
  otherwise (draws, and every move that does not end the game). Nobody can lose on their own
  move, so a game's rewards are one +1 (for the winner's last move) or all 0 (a draw).
* ``terminated`` is True when the game is over (a line of three, or a full board); the episode
  is never truncated.
* ``info["action_mask"]`` ([9] bool) marks the empty squares; ``info["to_play"]`` is 0 for the
  first player, 1 for the second; ``info["winner"]`` is 0 / 1 for the winner, -1 for none yet
  or a draw.
* An illegal move (an occupied square, an action outside 0..8, or any move after the game is
  over) raises ``ValueError``.
* ``TicTacToe(random_opening=n)`` starts every episode after k uniformly random moves, k drawn
  uniformly from 0..n (n <= 4, so no opening ends the game), from the env's seeded RNG: a way
  to make self-play see more positions. The default, 0, starts from the empty board.

Squares are numbered 0..8 row by row (action ``a`` is row ``a // 3``, column ``a % 3``).

The minimax player searches the whole game (5478 reachable positions, each solved once by
negamax and memoised) and picks, among the optimal moves, uniformly at random from its seed (or
the lowest square with ``random=False``). Optimal means: the best outcome, and among winning
moves the quickest win, among losing moves the slowest loss.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

__all__ = ["LINES", "MinimaxPlayer", "TicTacToe", "board_from_observation", "game_value", "minimax_table",
           "solve", "winner"]

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))


def winner(board: Any) -> int:
    """+1 or -1 if that side has a line of three on ``board`` (9 values in {-1, 0, 1}), else 0."""
    for a, b, c in LINES:
        if board[a] != 0 and board[a] == board[b] == board[c]:
            return int(board[a])
    return 0


def board_from_observation(obs: Any) -> tuple[int, ...]:
    """The mover's board (9 values: +1 the mover's stones, -1 the opponent's, 0 empty) from an
    observation ``[3, 3, 3]`` (or ``[2, 3, 3]``: the first two planes are enough)."""
    if isinstance(obs, torch.Tensor):
        obs = obs.detach().cpu().numpy()
    array = np.asarray(obs)
    if array.ndim != 3 or array.shape[0] not in (2, 3) or array.shape[1:] != (3, 3):
        raise ValueError(f"obs must be TicTacToe planes of shape [3, 3, 3] (or [2, 3, 3]), got "
                         f"shape {list(array.shape)}")
    mine, theirs = array[0].reshape(9) > 0.5, array[1].reshape(9) > 0.5
    if (mine & theirs).any():
        raise ValueError("obs has a square occupied by both players (planes 0 and 1 overlap)")
    return tuple(int(m) - int(t) for m, t in zip(mine, theirs))


class TicTacToe(gym.Env):
    """TicTacToe for two players sharing one gymnasium environment (see the module docstring
    for the protocol). ``render_mode="ansi"`` makes ``render()`` return the board as text;
    ``random_opening=n`` starts each episode after 0..n random moves."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(self, render_mode: str | None = None, random_opening: int = 0) -> None:
        super().__init__()
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if (isinstance(random_opening, bool) or not isinstance(random_opening, (int, np.integer))
                or not 0 <= random_opening <= 4):
            raise ValueError(f"random_opening must be an int in 0..4, got {random_opening!r}")
        self.random_opening = int(random_opening)
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(9)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (3, 3, 3), np.float32)
        self.board = np.zeros(9, np.int8)   # +1: first player's stones, -1: second player's
        self.to_play = 0                     # 0: first player to move, 1: second player
        self.done = False
        self.result = -1                     # winner (0 / 1), or -1

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Empty board, the first player to move (after the random opening, if any). Returns
        (observation, info)."""
        super().reset(seed=seed)
        self.board[:] = 0
        self.to_play, self.done, self.result = 0, False, -1
        if self.random_opening:
            for _ in range(int(self.np_random.integers(self.random_opening + 1))):
                self.step(int(self.np_random.choice(np.flatnonzero(self.board == 0))))
        return self.observation(), self._info()

    def legal_actions(self) -> np.ndarray:
        """[9] bool, the empty squares (all False once the game is over)."""
        return (self.board == 0) & (not self.done)

    def observation(self) -> np.ndarray:
        """[3, 3, 3] float32 planes from the view of the player to move."""
        me = 1 if self.to_play == 0 else -1
        obs = np.zeros((3, 3, 3), np.float32)
        obs[0] = (self.board == me).reshape(3, 3)
        obs[1] = (self.board == -me).reshape(3, 3)
        obs[2] = 1.0 if self.to_play == 0 else 0.0
        return obs

    def _info(self) -> dict:
        return {"action_mask": self.legal_actions(), "to_play": self.to_play,
                "winner": self.result}

    def step(self, action: Any):
        """The player to move plays ``action`` (0..8). Returns (observation of the next mover,
        reward of the player who moved, terminated, False, info)."""
        if self.done:
            raise ValueError("the game is over: call reset() before step()")
        try:
            square = int(action)
        except (TypeError, ValueError):
            raise ValueError(f"action must be an int in 0..8, got {action!r}") from None
        if square != action or not 0 <= square <= 8:
            raise ValueError(f"action must be an int in 0..8, got {action!r}")
        if self.board[square] != 0:
            raise ValueError(f"action {square} is illegal: the square is occupied (legal: "
                             f"{np.flatnonzero(self.board == 0).tolist()})")
        me = 1 if self.to_play == 0 else -1
        self.board[square] = me
        reward = 0.0
        if winner(self.board) == me:
            reward, self.done, self.result = 1.0, True, self.to_play
        elif not (self.board == 0).any():
            self.done = True
        self.to_play = 1 - self.to_play
        return self.observation(), reward, self.done, False, self._info()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        marks = {1: "X", -1: "O", 0: "."}
        rows = ["".join(marks[int(v)] for v in self.board[r * 3:r * 3 + 3]) for r in range(3)]
        return "\n".join(rows) + "\n"

    def close(self) -> None:
        pass


# -- minimax ------------------------------------------------------------------------------------


def _solve(board: tuple[int, ...], table: dict[tuple[int, ...], int]) -> int:
    """Negamax score of ``board`` for the player to move (+1 stones): 0 a draw, +(1 + empty
    squares left at the end) a win, its negative a loss. Memoised in ``table``."""
    score = table.get(board)
    if score is not None:
        return score
    if winner(board) != 0:   # the previous mover (-1 stones) has just won
        score = -(1 + board.count(0))
    elif 0 not in board:
        score = 0
    else:
        score = max(-_solve(_play(board, a), table) for a in range(9) if board[a] == 0)
    table[board] = score
    return score


def _play(board: tuple[int, ...], square: int) -> tuple[int, ...]:
    """The board after the mover plays ``square``, seen by the next mover (signs flipped)."""
    return tuple(-1 if i == square else -v for i, v in enumerate(board))


@functools.lru_cache(maxsize=1)
def minimax_table() -> dict[tuple[int, ...], int]:
    """Negamax scores of every position reachable from the empty board (5478 positions), keyed
    by the mover's board (9 values: +1 the mover's stones, -1 the opponent's, 0 empty)."""
    table: dict[tuple[int, ...], int] = {}
    _solve((0,) * 9, table)
    return table


def _board(board: Any) -> tuple[int, ...]:
    if isinstance(board, torch.Tensor):
        board = board.detach().cpu().numpy()
    array = np.asarray(board)
    if array.shape == (9,) or array.shape == (3, 3):
        values = tuple(int(v) for v in array.reshape(9))
        if any(v not in (-1, 0, 1) for v in values):
            raise ValueError(f"board must hold values in {{-1, 0, 1}}, got {values}")
        return values
    return board_from_observation(array)


def solve(board: Any) -> torch.Tensor:
    """Negamax scores of the moves from ``board`` for the player to move: a float32 tensor [9],
    0 for a move that leads to a draw, +(1 + empty squares at the end) for a win, its negative
    for a loss, -inf for occupied squares.

    ``board``: the mover's board (9 values or [3, 3]: +1 the mover's stones, -1 the opponent's),
    or an observation [3, 3, 3] of :class:`TicTacToe`.
    """
    key = _board(board)
    if winner(key) != 0 or 0 not in key:
        raise ValueError(f"board must be a position where the game goes on, got {key} (over)")
    table = minimax_table()
    if key not in table:
        raise ValueError(f"board {key} is not reachable from the empty board with the mover to "
                         "play (the mover has as many stones as the opponent, or one fewer)")
    scores = torch.full((9,), -float("inf"))
    for a in range(9):
        if key[a] == 0:
            scores[a] = float(-_solve(_play(key, a), table))
    return scores


def game_value(board: Any) -> int:
    """The game-theoretic value of ``board`` for the player to move: +1 win, 0 draw, -1 loss."""
    key = _board(board)
    table = minimax_table()
    if key not in table:
        raise ValueError(f"board {key} is not reachable from the empty board")
    return int(np.sign(table[key]))


class MinimaxPlayer:
    """A perfect TicTacToe player.

    Args:
      seed: seed of the choice among optimal moves (None: fresh entropy).
      random: choose uniformly among the optimal moves (False: the lowest optimal square).
    """

    def __init__(self, seed: int | None = 0, random: bool = True) -> None:
        self.rng = np.random.default_rng(seed)
        self.random = bool(random)

    def optimal_actions(self, obs: Any) -> list[int]:
        """The optimal squares for the player to move (``obs``: as in :func:`solve`)."""
        scores = solve(obs)
        best = scores.max()
        return torch.nonzero(scores == best).flatten().tolist()

    def act(self, obs: Any) -> int:
        """An optimal move for the player to move."""
        moves = self.optimal_actions(obs)
        if not self.random or len(moves) == 1:
            return moves[0]
        return int(moves[self.rng.integers(len(moves))])
