"""Self-play searches through wm.NativeModels: the search model's ``recurrent_inference`` (or
Stochastic MuZero's ``decision`` and ``chance``), support decoding included, compiled with
AOTInductor, their weights refreshed from the learner's network without recompiling
(``NativeModel.load_weights``)."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from wmfast.muzero.networks import SearchModel
from wmfast.muzero.stochastic import StochasticSearchModel
from wmfast.native import ExportError, NativeModel

__all__ = ["NativeSearchModel"]


class NativeSearchModel:
    """A SearchModel's ``recurrent_inference`` as a NativeModel that follows its network; for a
    StochasticSearchModel, ``native`` is the ``(decision, chance)`` pair wm.StochasticMCTS takes.

    ``initial_inference`` (once per move) stays eager; the search's calls (one per simulation)
    run in C++. ``refresh()`` copies the network's current weights into the compiled model;
    ``updated()`` counts learner updates and refreshes every ``refresh_every`` of them.

    Args:
      model: the eager SearchModel (its network is the learner's).
      obs_shape: the shape of one observation (to build the example inputs).
      refresh_every: learner updates between two refreshes (1: after every update).
      cache_dir, num_runners: as in ``NativeModel.export``.
      action_dim: for continuous actions (Sampled MuZero over a Box), their width: the search
        hands them to the model as float [B, action_dim]; None for integer actions.
    """

    def __init__(self, model: SearchModel, obs_shape: tuple[int, ...], refresh_every: int = 1,
                 cache_dir: Any = None, num_runners: int | None = None,
                 action_dim: int | None = None) -> None:
        if isinstance(refresh_every, bool) or not isinstance(refresh_every, int) \
                or refresh_every < 1:
            raise ValueError(f"refresh_every must be an int >= 1, got {refresh_every!r}")
        self.model, self.refresh_every = model, refresh_every
        network = model.network
        device = next(network.parameters()).device
        with torch.no_grad():
            obs = torch.zeros((2, *obs_shape), dtype=torch.get_default_dtype(), device=device)
            latent = model.initial_inference(obs).latent
        action = (torch.zeros(2, dtype=torch.int64, device=device) if action_dim is None else
                  torch.zeros(2, action_dim, dtype=latent.dtype, device=device))
        # A fresh search model over the same network: tracing must not touch the eager one's
        # cached tensors.
        traced = type(model)(network, model.support_size, model.two_player)

        def export(fn: Any, inputs: tuple[torch.Tensor, ...]) -> NativeModel:
            # Cached by the weights' names and shapes: a new network of the same architecture
            # reuses the compiled package (its weights are loaded below).
            return NativeModel.export(fn, inputs, cache_dir=cache_dir, num_runners=num_runners,
                                      cache_by_weights=False)

        training = network.training
        network.eval()  # self-play's mode (dropout off, batch norm from its statistics)
        try:
            if isinstance(model, StochasticSearchModel):
                with torch.no_grad():
                    afterstate = traced.decision(latent, action).latent
                self.native: Any = (export(traced.decision, (latent, action)),
                                    export(traced.chance, (afterstate, action)))
                self._models: tuple[NativeModel, ...] = self.native
            else:
                self.native = export(traced.recurrent_inference, (latent, action))
                self._models = (self.native,)
        finally:
            network.train(training)
        self._since_refresh = 0
        self.refresh()

    @classmethod
    def create(cls, model: SearchModel, obs_shape: tuple[int, ...], refresh_every: int = 1,
               **kwargs: Any) -> NativeSearchModel | None:
        """The native search model, or None (with a warning saying why) when the network cannot
        be exported; self-play then searches with the eager SearchModel."""
        try:
            return cls(model, obs_shape, refresh_every, **kwargs)
        except ExportError as error:
            warnings.warn(f"native self-play is off: {error} Self-play searches with the eager "
                          "SearchModel instead.", RuntimeWarning, stacklevel=2)
            return None

    def refresh(self) -> None:
        """Loads the network's current weights into the compiled model(s) (waits for a search
        in progress with them)."""
        for native in self._models:
            native.load_weights(self.model.network, prefix="inner.network.")
        self._since_refresh = 0

    def updated(self, count: int = 1) -> bool:
        """Counts ``count`` learner updates; refreshes after ``refresh_every``. Returns whether it
        refreshed."""
        self._since_refresh += count
        if self._since_refresh >= self.refresh_every:
            self.refresh()
            return True
        return False
