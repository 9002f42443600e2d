"""The Dreamer world model for vector observations: encoder, RSSM, decoder, reward and continue
heads, and its training loss."""

from __future__ import annotations

import torch
from torch import nn

from wmfast import transforms as T
from wmfast.dreamer.config import Config
from wmfast.dreamer.nets import ContinueHead, MLPDecoder, MLPEncoder, TwoHotHead
from wmfast.dreamer.rssm import RSSM

__all__ = ["WorldModel"]

# Official DreamerV3 (2024) trains the continue head on (1 - terminal) (1 - 1/333): the
# discount is folded into the continue flag.
_FOLDED_DISCOUNT = 1.0 - 1.0 / 333.0


class WorldModel(nn.Module):
    """Encoder, RSSM, decoder and heads, sized by a :class:`Config`.

    Sequences are time-major: ``obs [T, B, obs_dim]``, ``actions [T, B, action_dim]`` with
    ``actions[t]`` the action taken *before* ``obs[t]`` (zero at episode starts),
    ``rewards[t]`` the reward received on arriving at ``obs[t]``, ``terminated[t]`` whether
    ``obs[t]`` is terminal, ``is_first[t]`` whether it starts an episode.
    """

    def __init__(self, obs_dim: int, action_dim: int, config: Config | None = None):
        super().__init__()
        self.config = config = config or Config()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.bins = T.bins(config.bins, config.num_bins)
        self.encoder = MLPEncoder(obs_dim, config.units, config.layers)
        self.rssm = RSSM(action_dim, self.encoder.embed_dim, config.deter, config.stoch,
                         config.classes, config.hidden, config.unimix, config.min_std)
        feat = self.rssm.feat_size
        self.decoder = MLPDecoder(feat, obs_dim, config.units, config.layers)
        self.reward = TwoHotHead(feat, self.bins, config.units, config.layers)
        self.cont = ContinueHead(feat, config.units, config.layers)

    def continue_target(self, terminated: torch.Tensor) -> torch.Tensor:
        target = 1.0 - terminated.to(torch.get_default_dtype())
        if self.config.convention == "dreamerv3-2024":
            target = target * _FOLDED_DISCOUNT
        return target

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
             is_first: torch.Tensor, terminated: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(loss, posteriors [T, B, ...], metrics)``: reconstruction + reward + continue +
        balanced KL, each summed over its event and averaged over ``[T, B]``."""
        c = self.config
        if obs.ndim != 3 or obs.shape[-1] != self.obs_dim:
            raise ValueError(f"obs must have shape [T, B, {self.obs_dim}], got {list(obs.shape)}")
        for name, tensor in (("rewards", rewards), ("is_first", is_first),
                             ("terminated", terminated)):
            if tensor.shape != obs.shape[:2]:
                raise ValueError(
                    f"{name} must have shape {list(obs.shape[:2])}, got {list(tensor.shape)}")
        embed = self.encoder(obs)
        post, prior = self.rssm.observe(embed, actions, is_first)
        feat = self.rssm.feature(post)
        kl, kl_parts = self.rssm.kl_loss(post, prior, c.free_nats, c.dyn_scale, c.rep_scale)
        recon = self.decoder.loss(feat, obs)
        reward = self.reward.loss(feat, rewards)
        cont = self.cont.loss(feat, self.continue_target(terminated))
        loss = (kl + recon + reward + cont).mean()
        metrics = {"kl": kl_parts["kl"].mean(), "recon": recon.detach().mean(),
                   "reward": reward.detach().mean(), "cont": cont.detach().mean(),
                   "model": loss.detach()}
        return loss, post, metrics

    @torch.no_grad()
    def open_loop(self, obs: torch.Tensor, actions: torch.Tensor, context: int,
                  sample: bool = False) -> dict[str, torch.Tensor]:
        """Open-loop predictions of a real sequence: the RSSM filters ``obs[:context]``, then
        rolls its prior forward under the real ``actions[context:]`` without seeing another
        observation, and the heads decode every imagined state.

        Args:
          obs: ``[T, B, obs_dim]`` real observations, ``obs[0]`` the first of an episode.
          actions: ``[T, B, action_dim]``, ``actions[t]`` taken before ``obs[t]``
            (``actions[0]`` is ignored: the episode starts there).
          context: observations filtered before imagining, ``1 <= context < T``.
          sample: sample the latents (``False``: their modes).

        Returns ``{"obs", "reward", "cont"}``: ``[T - context, B, ...]`` predictions for steps
        ``context .. T-1`` (observations in raw space, rewards, continue probabilities).
        """
        if obs.ndim != 3 or obs.shape[-1] != self.obs_dim:
            raise ValueError(f"obs must have shape [T, B, {self.obs_dim}], got {list(obs.shape)}")
        if actions.shape != (*obs.shape[:2], self.action_dim):
            raise ValueError(
                f"actions must have shape {[*obs.shape[:2], self.action_dim]}, "
                f"got {list(actions.shape)}")
        if isinstance(context, bool) or not isinstance(context, int) or not (
            1 <= context < obs.shape[0]
        ):
            raise ValueError(
                f"context must be an int in [1, T - 1] = [1, {obs.shape[0] - 1}], "
                f"got {context!r}")
        rssm = self.rssm
        state = rssm.initial(obs.shape[1])
        first = torch.ones(obs.shape[1], device=obs.device)
        for t in range(context):
            state, _ = rssm.observe_step(state, actions[t], self.encoder(obs[t]),
                                         first if t == 0 else None, sample=sample)
        states = []
        for t in range(context, obs.shape[0]):
            state = rssm.imagine_step(state, actions[t], sample=sample)
            states.append(state)
        feat = rssm.feature({key: torch.stack([s[key] for s in states]) for key in states[0]})
        return {"obs": self.decoder.predict(feat), "reward": self.reward.predict(feat),
                "cont": self.cont.predict(feat)}
