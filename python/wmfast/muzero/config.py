"""The settings of a MuZero agent, in one dataclass."""

from __future__ import annotations

import dataclasses
from typing import Literal

from wmfast._validate import as_bool, as_float, as_int

__all__ = ["Config", "training_progress"]


@dataclasses.dataclass
class Config:
    """Settings of :class:`wmfast.agents.MuZeroAgent` (defaults: MuZero's, scaled to small tasks).

    Self-play and search:
      num_envs: environments stepped together, one batched search per move for all of them.
      two_player: alternating two-player zero-sum game (rewards are the mover's; the search
        uses discount -1 per step, mctx's convention).
      search: "muzero" (wm.MCTS, policy target = visit distribution), "gumbel"
        (wm.GumbelMCTS, policy target = completed-Q improved policy), "stochastic"
        (Stochastic MuZero: wm.StochasticMCTS over afterstates and chance outcomes, a network
        with afterstate functions and a chance encoder, ``wmfast.muzero.stochastic``) or
        "sampled" (Sampled MuZero, wm.SampledMCTS over ``num_samples`` actions sampled per node:
        Box action spaces, or large Discrete ones; policy target = visit distribution over the
        root samples; see ``wmfast.muzero.sampled``).
      num_chance_outcomes: C, the chance codes of search="stochastic" (the encoder's codebook
        and the width of the chance prior).
      chance_loss_weight, commitment_weight: (search="stochastic") weights of the chance-prior
        cross-entropy and of the encoder's commitment loss. The commitment term pulls the
        encoder's softmax towards its own one-hot code; at weight 1 it collapsed the codebook
        to one code on the coin game (wmfast.envs.CoinGame, seeds 0 and 1: both coin faces
        got the same code), at 0.01 the faces got distinct codes (seeds 0-3), hence 0.01.
      num_samples: K of search="sampled" (discrete: at most the number of actions).
      num_simulations, discount, pb_c_init, pb_c_base, dirichlet_alpha, dirichlet_fraction,
        max_num_considered_actions, gumbel_scale: the search's parameters.
      temperatures: ((fraction of training, temperature), ...): self-play samples actions from
        visits^(1/temperature), the temperature of the first entry whose fraction is not yet
        reached (MuZero's schedule); the fraction is that of ``train``'s env_steps or, when
        larger, of its time_limit. Not used by the Gumbel search, whose noise explores.
    Network (used when the agent builds its reference network):
      latent_dim, hidden, support_size (0: scalar value and reward heads).
    Replay and targets:
      replay_capacity (positions), td_steps (n), unroll_steps (K), priority_alpha (0: uniform
      sampling), priority_beta.
    Learner:
      batch_size, learning_rate, weight_decay, max_grad_norm, value_loss_weight,
      updates_per_step (gradient updates per environment step), min_replay (positions stored
      before the first update), reanalyse_fraction (positions re-searched with the current
      network per update, as a fraction of batch_size), consistency_weight (EfficientZero's
      self-supervised consistency loss on the unrolled latents; 0: off; the network needs
      ``project(latent, with_predictor)``, as the reference networks have).
    reuse_tree: each self-play search continues from the previous move's subtree (wm.MCTS
      only), so its visits add to those already spent below the move played.
    native_selfplay: self-play searches through a wm.NativeModel export of the search model's
      recurrent_inference (float actions with search="sampled" over a Box), or of Stochastic
      MuZero's decision and chance functions (no Python per simulation; backend="local"), its
      weights refreshed from the learner every ``native_refresh_every`` updates without
      recompiling; when the network cannot be exported, a warning says why and self-play
      stays eager.
    torch_threads: torch's intra-op threads while the agent trains or evaluates (restored
      after); small networks run fastest on one, and two threads that wait on each other are
      several times slower on a busy machine. None leaves torch's setting alone.
    seed: seeds torch, the search, the replay and the environments.
    """

    num_envs: int = 16
    two_player: bool = False
    search: Literal["muzero", "gumbel", "stochastic", "sampled"] = "muzero"
    num_chance_outcomes: int = 32
    chance_loss_weight: float = 1.0
    commitment_weight: float = 0.01
    num_simulations: int = 50
    discount: float = 0.997
    pb_c_init: float = 1.25
    pb_c_base: float = 19652.0
    dirichlet_alpha: float = 0.25
    dirichlet_fraction: float = 0.25
    max_num_considered_actions: int = 16
    gumbel_scale: float = 1.0
    temperatures: tuple[tuple[float, float], ...] = ((0.5, 1.0), (0.75, 0.5), (1.0, 0.25))
    latent_dim: int = 64
    hidden: int = 64
    support_size: int = 10
    replay_capacity: int = 100_000
    td_steps: int = 10
    unroll_steps: int = 5
    priority_alpha: float = 1.0
    priority_beta: float = 1.0
    batch_size: int = 256
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    max_grad_norm: float = 5.0
    value_loss_weight: float = 0.25
    updates_per_step: float = 0.25
    min_replay: int = 1000
    reanalyse_fraction: float = 0.0
    consistency_weight: float = 0.0
    torch_threads: int | None = 1
    seed: int = 0
    reuse_tree: bool = False
    native_selfplay: bool = False
    native_refresh_every: int = 1
    num_samples: int = 16

    def __post_init__(self) -> None:
        # Checked and normalised (numpy scalars become Python numbers, so the config stays
        # what dataclasses.asdict and a checkpoint expect); errors name the field.
        ints = {"num_envs": 1, "num_simulations": 1, "max_num_considered_actions": 1,
                "latent_dim": 1, "hidden": 1, "support_size": 0, "replay_capacity": 1,
                "td_steps": 1, "unroll_steps": 1, "batch_size": 1, "min_replay": 0,
                "native_refresh_every": 1, "seed": 0, "num_chance_outcomes": 1,
                "num_samples": 1}
        for name, low in ints.items():
            setattr(self, name, as_int(getattr(self, name), f"Config.{name}", low))
        if self.torch_threads is not None:
            self.torch_threads = as_int(self.torch_threads, "Config.torch_threads", 1)
        for name in ("two_player", "reuse_tree", "native_selfplay"):
            setattr(self, name, as_bool(getattr(self, name), f"Config.{name}"))
        if self.search not in ("muzero", "gumbel", "stochastic", "sampled"):
            raise ValueError("Config.search must be 'muzero', 'gumbel', 'stochastic' or 'sampled', "
                             f"got {self.search!r}")
        if self.reuse_tree and self.search == "gumbel":
            raise ValueError("Config.reuse_tree needs search='muzero': the Gumbel search offers "
                             "no tree reuse (Sequential Halving budgets one search's visits)")
        if self.search == "stochastic" and self.reuse_tree:
            raise ValueError("Config.reuse_tree needs search='muzero': a Stochastic MuZero "
                             "subtree is reached by an action and a chance outcome, which "
                             "the environment does not report")
        floats = {  # name: (low, high, low excluded)
            "discount": (0.0, 1.0, False), "reanalyse_fraction": (0.0, 1.0, False),
            "learning_rate": (0.0, None, True), "updates_per_step": (0.0, None, True),
            "pb_c_init": (0.0, None, False), "pb_c_base": (0.0, None, True),
            "dirichlet_alpha": (0.0, None, True), "dirichlet_fraction": (0.0, 1.0, False),
            "gumbel_scale": (0.0, None, False), "weight_decay": (0.0, None, False),
            "max_grad_norm": (0.0, None, False), "value_loss_weight": (0.0, None, False),
            "priority_alpha": (0.0, None, False), "priority_beta": (0.0, None, False),
            "consistency_weight": (0.0, None, False),
            "chance_loss_weight": (0.0, None, False), "commitment_weight": (0.0, None, False),
        }
        for name, (lowest, highest, open_below) in floats.items():
            setattr(self, name, as_float(getattr(self, name), f"Config.{name}", lowest, highest,
                                         low_open=open_below))
        if self.search == "stochastic" and self.consistency_weight > 0:
            raise ValueError("Config.consistency_weight must be 0 with search='stochastic' (the "
                             f"Stochastic MuZero loss has no consistency term), got "
                             f"{self.consistency_weight}")
        if not self.temperatures or any(len(t) != 2 or t[1] < 0 for t in self.temperatures):
            raise ValueError(
                "Config.temperatures must be ((fraction, temperature >= 0), ...), got "
                f"{self.temperatures!r}")
        self.temperatures = tuple((float(f), float(t)) for f, t in self.temperatures)

    def temperature(self, progress: float) -> float:
        """The self-play temperature at ``progress`` (fraction of training done, in [0, 1])."""
        for fraction, temperature in self.temperatures:
            if progress < fraction:
                return temperature
        return self.temperatures[-1][1]


def training_progress(steps: int, env_steps: int, seconds: float,
                      time_limit: float | None) -> float:
    """The fraction of a ``train`` call done, which drives the temperature schedule: the larger
    of the step budget's and the time budget's fractions."""
    progress = steps / env_steps
    if time_limit is not None:
        progress = max(progress, seconds / time_limit)
    return min(1.0, progress)
