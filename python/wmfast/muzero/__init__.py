"""The MuZero toolkit: networks, replay and targets, the unrolled loss, batched self-play and
reanalyse, on top of ``wm.MCTS`` / ``wm.GumbelMCTS``, and Stochastic MuZero's network, search
adapter and loss for ``wm.StochasticMCTS`` (``wmfast.muzero.stochastic``). The agent is
``wmfast.agents.MuZeroAgent``."""

from wmfast.muzero.config import Config
from wmfast.muzero.loss import Losses, scale_gradient, unrolled_loss
from wmfast.muzero.networks import MLPNetwork, ResNetwork, SearchModel, scale_latent
from wmfast.muzero.reanalyse import reanalyse
from wmfast.muzero.replay import Batch, Game, Replay
from wmfast.muzero.selfplay import SelfPlay, choose_actions
from wmfast.muzero.stochastic import (
    StochasticLosses,
    StochasticMLPNetwork,
    StochasticSearchModel,
    chance_code,
    stochastic_unrolled_loss,
)

__all__ = [
    "Batch",
    "Config",
    "Game",
    "Losses",
    "MLPNetwork",
    "Replay",
    "ResNetwork",
    "SearchModel",
    "SelfPlay",
    "StochasticLosses",
    "StochasticMLPNetwork",
    "StochasticSearchModel",
    "chance_code",
    "choose_actions",
    "reanalyse",
    "scale_gradient",
    "scale_latent",
    "stochastic_unrolled_loss",
    "unrolled_loss",
]
