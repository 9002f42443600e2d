"""The MuZero toolkit: networks, replay and targets, the unrolled loss, batched self-play and
reanalyse, on top of ``wm.MCTS`` / ``wm.GumbelMCTS``. The agent is
``wmfast.agents.MuZeroAgent``."""

from wmfast.muzero.config import Config
from wmfast.muzero.loss import Losses, scale_gradient, unrolled_loss
from wmfast.muzero.networks import MLPNetwork, ResNetwork, SearchModel, scale_latent
from wmfast.muzero.reanalyse import reanalyse
from wmfast.muzero.replay import Batch, Game, Replay
from wmfast.muzero.selfplay import SelfPlay, choose_actions

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
    "choose_actions",
    "reanalyse",
    "scale_gradient",
    "scale_latent",
    "unrolled_loss",
]
