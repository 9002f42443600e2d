"""Small environments that wmfast's agents and demos use (gymnasium API)."""

from wmfast.envs.coin import CoinGame
from wmfast.envs.tictactoe import MinimaxPlayer, TicTacToe, game_value, minimax_table, solve

__all__ = ["CoinGame", "MinimaxPlayer", "TicTacToe", "game_value", "minimax_table", "solve"]
