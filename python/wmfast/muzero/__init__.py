"""The MuZero toolkit: networks, replay and targets, the unrolled loss, batched self-play and
reanalyse, on top of ``wm.MCTS`` / ``wm.GumbelMCTS``, Stochastic MuZero's network, search
adapter and loss for ``wm.StochasticMCTS`` (``wmfast.muzero.stochastic``) and Sampled MuZero on
``wm.SampledMCTS`` (``wmfast.muzero.sampled``). The agent is
``wmfast.agents.MuZeroAgent``."""

from wmfast.muzero.config import Config
from wmfast.muzero.loss import Losses, scale_gradient, unrolled_loss
from wmfast.muzero.networks import MLPNetwork, ResNetwork, SearchModel, scale_latent
from wmfast.muzero.reanalyse import reanalyse
from wmfast.muzero.replay import Batch, Game, Replay
from wmfast.muzero.sampled import SampledMLPNetwork, SampledReplay, sampled_policy_loss
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
    "SampledMLPNetwork",
    "SampledReplay",
    "SearchModel",
    "SelfPlay",
    "StochasticLosses",
    "StochasticMLPNetwork",
    "StochasticSearchModel",
    "chance_code",
    "choose_actions",
    "reanalyse",
    "sampled_policy_loss",
    "scale_gradient",
    "scale_latent",
    "stochastic_unrolled_loss",
    "unrolled_loss",
]
