"""The reference Dreamer (DreamerV3, Hafner et al. 2023) in PyTorch, around
:func:`wmfast.imagine` and :func:`wmfast.lambda_return`.

- :class:`RSSM`: GRU deterministic path with LayerNorm, 32x32 categorical latents with 1%
  unimix and straight-through gradients (or Gaussian latents); ``observe`` and
  ``imagine_step``; KL balancing with free bits (:func:`kl_loss`).
- :mod:`nets`: MLP encoder/decoder for vector observations, two-hot reward and value heads,
  a continue head, the actor and a critic with a slow copy.
- :class:`ReturnNormalizer`, :func:`actor_loss`, :func:`critic_loss`.
- :class:`Config`: hyperparameters.
- :func:`export_imagination`: the RSSM's imagination step and the actor as NativeModels, for
  the C++ no-grad imagination loop of :func:`wmfast.imagine`.

The usual imagination step, with heads applied after the rollout::

    traj = wm.imagine(rssm.imagine_step, lambda s: actor(rssm.feature(s)).rsample(),
                      start, horizon=15, grad="dynamics")
    feat = rssm.feature(traj.states)                              # [H+1, N, F]
    returns = wm.lambda_return(reward.predict(feat), critic.predict(feat), cont.predict(feat))
"""

from wmfast.dreamer.config import Config
from wmfast.dreamer.distributions import (
    DiagNormal,
    OneHotStraightThrough,
    categorical_kl,
    sample_onehot,
    unimix_probs,
)
from wmfast.dreamer.export import export_imagination
from wmfast.dreamer.losses import ReturnNormalizer, actor_loss, critic_loss
from wmfast.dreamer.nets import (
    MLP,
    Actor,
    ContinueHead,
    Critic,
    MLPDecoder,
    MLPEncoder,
    TwoHotHead,
)
from wmfast.dreamer.rssm import RSSM, GRUCell, kl_loss
from wmfast.dreamer.world_model import WorldModel

__all__ = [
    "MLP",
    "RSSM",
    "Actor",
    "Config",
    "ContinueHead",
    "Critic",
    "DiagNormal",
    "GRUCell",
    "MLPDecoder",
    "MLPEncoder",
    "OneHotStraightThrough",
    "ReturnNormalizer",
    "TwoHotHead",
    "WorldModel",
    "actor_loss",
    "categorical_kl",
    "critic_loss",
    "export_imagination",
    "kl_loss",
    "sample_onehot",
    "unimix_probs",
]
