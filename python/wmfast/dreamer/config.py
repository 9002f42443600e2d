"""``dr.Config``: the hyperparameters of the reference Dreamer (DreamerV3 defaults, small nets)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from wmfast.imagination import CONVENTIONS

__all__ = ["Config"]


@dataclass
class Config:
    """DreamerV3 hyperparameters (Hafner et al. 2023, table W.1), with networks sized for
    vector observations. Every field is checked when the config is made.

    World model: ``deter`` GRU units, ``stoch`` latents of ``classes`` classes each (``classes=0``
    makes them Gaussian with ``min_std``), ``hidden``/``units``/``layers`` for the MLPs,
    ``unimix`` (1% uniform mixed into every categorical), KL balancing with ``free_nats`` and
    ``dyn_scale`` / ``rep_scale``, two-hot heads over ``bins`` (a ``T.bins`` layout name).
    Behaviour: imagination ``horizon``, λ-return ``convention`` (its default discount unless
    ``discount`` is set) and ``lam``; ``actor_grad`` "reinforce" or "dynamics"; return
    normalisation by the ``return_low``/``return_high`` percentiles' EMA at ``return_rate``,
    never scaled up (``return_limit``); ``slow_critic_rate`` EMA of the critic, regularised
    towards with ``slow_reg``. Training: sequence replay of ``batch_size`` x ``seq_len``.
    """

    deter: int = 256
    stoch: int = 32
    classes: int = 32
    hidden: int = 256
    units: int = 256
    layers: int = 2
    unimix: float = 0.01
    min_std: float = 0.1
    free_nats: float = 1.0
    dyn_scale: float = 0.5
    rep_scale: float = 0.1
    bins: str = "symlog_linear"
    num_bins: int = 255
    horizon: int = 15
    convention: str = "dreamerv3-torch"
    discount: float | None = None
    lam: float = 0.95
    actor_grad: str = "reinforce"
    actor_entropy: float = 3e-4
    actor_unimix: float = 0.01
    return_rate: float = 0.01
    return_low: float = 0.05
    return_high: float = 0.95
    return_limit: float = 1.0
    slow_critic_rate: float = 0.02
    slow_reg: float = 1.0
    model_lr: float = 1e-4
    actor_lr: float = 3e-5
    critic_lr: float = 3e-5
    grad_clip: float = 1000.0
    adam_eps: float = 1e-8
    batch_size: int = 16
    seq_len: int = 64
    replay_capacity: int = 1_000_000
    train_every: int = 5
    prefill: int = 2500
    device: str = "cpu"

    def __post_init__(self) -> None:
        positive_ints = ("deter", "stoch", "hidden", "units", "layers", "num_bins", "horizon",
                         "batch_size", "seq_len", "replay_capacity", "train_every")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Config.{name} must be an int >= 1, got {value!r}")
        for name in ("classes", "prefill"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Config.{name} must be an int >= 0, got {value!r}")
        if self.classes == 1:
            raise ValueError("Config.classes must be 0 (Gaussian latents) or >= 2, got 1")
        unit_interval = ("unimix", "actor_unimix", "lam", "return_rate", "return_low",
                         "return_high", "slow_critic_rate")
        for name in unit_interval:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0.0 <= value <= 1.0
            ):
                raise ValueError(f"Config.{name} must be a number in [0, 1], got {value!r}")
        non_negative = ("free_nats", "dyn_scale", "rep_scale", "actor_entropy", "slow_reg",
                        "min_std", "return_limit")
        for name in non_negative:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"Config.{name} must be a number >= 0, got {value!r}")
        for name in ("model_lr", "actor_lr", "critic_lr", "grad_clip", "adam_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"Config.{name} must be a number > 0, got {value!r}")
        if self.return_low >= self.return_high:
            raise ValueError(
                f"Config.return_low must be below return_high, got {self.return_low} and "
                f"{self.return_high}"
            )
        if self.bins not in ("symlog_linear", "symexp"):
            raise ValueError(
                f"Config.bins must be 'symlog_linear' or 'symexp', got {self.bins!r}")
        if self.convention not in CONVENTIONS:
            raise ValueError(
                f"Config.convention must be one of {list(CONVENTIONS)}, got {self.convention!r}")
        if self.discount is not None and not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"Config.discount must be None or in [0, 1], got {self.discount!r}")
        if self.actor_grad not in ("reinforce", "dynamics"):
            raise ValueError(
                f"Config.actor_grad must be 'reinforce' or 'dynamics', got {self.actor_grad!r}")

    @property
    def gamma(self) -> float:
        """The discount in use: ``discount``, or the convention's default."""
        return CONVENTIONS[self.convention] if self.discount is None else float(self.discount)

    @property
    def stoch_size(self) -> int:
        """Width of the flattened stochastic latent."""
        return self.stoch * (self.classes or 1)

    @property
    def feat_size(self) -> int:
        """Width of the model state feature ``[deter, stoch]``."""
        return self.deter + self.stoch_size

    def replace(self, **changes) -> Config:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
