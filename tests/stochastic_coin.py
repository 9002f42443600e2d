"""The coin game (wmfast.envs.coin) and the small, fast Stochastic MuZero config of
``wmfast demo stochastic-muzero-coin``, shared by the tests."""

from __future__ import annotations

import dataclasses

from wmfast.demos.stochastic_muzero_coin import config_for
from wmfast.envs.coin import OPTIMAL_RETURN, CoinGame
from wmfast.muzero import Config

__all__ = ["OPTIMAL_RETURN", "CoinGame", "coin_config"]


def coin_config(**changes) -> Config:
    """The demo's Stochastic MuZero settings (seed 0), with ``changes``."""
    return dataclasses.replace(config_for("stochastic", 0, smoke=False), **changes)
