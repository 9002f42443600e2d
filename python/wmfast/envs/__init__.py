"""Small environments that wmfast's agents and demos use (gymnasium API)."""

from wmfast.envs.tictactoe import MinimaxPlayer, TicTacToe, game_value, minimax_table, solve

__all__ = ["MinimaxPlayer", "TicTacToe", "game_value", "minimax_table", "solve"]
