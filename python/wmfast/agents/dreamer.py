"""``DreamerAgent``: DreamerV3 on a gymnasium environment with vector observations.

Each environment step is stored in a sequence replay; every ``config.train_every`` steps
(after ``config.prefill`` random steps) one update trains the world model on a batch of
``batch_size x seq_len`` replayed sequences, then the actor and critic on ``horizon``-step
imaginations (:func:`wmfast.imagine`) started from every posterior state of that batch, with
λ-returns and loss weights in ``config.convention``. The agent acts with the posterior of its
RSSM, filtering the observations it is shown.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from wmfast.agents._checkpoint import atomic_save
from wmfast.dreamer import Actor, Config, Critic, ReturnNormalizer, WorldModel, actor_loss
from wmfast.dreamer import critic_loss as _critic_loss
from wmfast.imagination import imagine, lambda_return, lambda_return_weights

__all__ = ["DreamerAgent", "SequenceReplay"]


class SequenceReplay:
    """A ring buffer of steps sampled as contiguous time-major sequences.

    Row t holds ``obs[t]``, the action taken before it (``prev_action``, zeros at episode
    starts), the reward received on arriving at it, ``is_first`` and ``terminated``. Sequences
    may cross episode boundaries; ``is_first`` resets the RSSM there.
    """

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, seed: int = 0):
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.prev_action = np.zeros((capacity, action_dim), np.float32)
        self.reward = np.zeros(capacity, np.float32)
        self.is_first = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.size = 0
        self.cursor = 0
        self.rng = np.random.default_rng(seed)

    def add(self, obs, prev_action, reward: float, is_first: bool, terminated: bool) -> None:
        i = self.cursor
        self.obs[i], self.prev_action[i] = obs, prev_action
        self.reward[i], self.is_first[i], self.terminated[i] = reward, is_first, terminated
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
        """``[seq_len, batch_size, ...]`` tensors; never across the write cursor."""
        if self.size < seq_len:
            raise ValueError(f"replay holds {self.size} steps, fewer than seq_len = {seq_len}")
        # Sequence starts counted from the oldest stored step, so none crosses the cursor.
        oldest = self.cursor if self.size == self.capacity else 0
        starts = self.rng.integers(0, self.size - seq_len + 1, size=batch_size)
        index = (oldest + starts[None, :] + np.arange(seq_len)[:, None]) % self.capacity
        out = {
            "obs": self.obs[index], "prev_action": self.prev_action[index],
            "reward": self.reward[index], "is_first": self.is_first[index].copy(),
            "terminated": self.terminated[index],
        }
        out["is_first"][0] = 1.0  # a sampled sequence starts from the initial state
        return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in out.items()}


class DreamerAgent:
    """DreamerV3 for gymnasium environments with a vector ``Box`` observation space and a
    ``Discrete`` or ``Box`` action space.

    Args:
      env_fn: makes the environment (called once here, again by ``evaluate``).
      config: :class:`wmfast.dreamer.Config`.
      seed: seeds torch, the replay sampler and the environment resets.
    """

    def __init__(self, env_fn: Callable[[], Any], config: Config | None = None, seed: int = 0):
        import gymnasium as gym

        self.env_fn = env_fn
        self.config = config = config or Config()
        self.seed = seed
        torch.manual_seed(seed)
        env = env_fn()
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(
                f"env_fn must make an environment with a vector Box observation space, "
                f"got {obs_space}")
        if isinstance(act_space, gym.spaces.Discrete):
            self.discrete, self.action_dim = True, int(act_space.n)
        elif isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
            self.discrete, self.action_dim = False, int(act_space.shape[0])
            self._low = act_space.low.astype(np.float32)
            self._high = act_space.high.astype(np.float32)
        else:
            raise ValueError(
                f"env_fn must make an environment with a Discrete or vector Box action space, "
                f"got {act_space}")
        self.env = env
        self.obs_dim = int(obs_space.shape[0])
        self.device = torch.device(config.device)
        self.world_model = WorldModel(self.obs_dim, self.action_dim, config).to(self.device)
        feat = self.world_model.rssm.feat_size
        self.actor = Actor(feat, self.action_dim, self.discrete, config.units, config.layers,
                           config.actor_unimix).to(self.device)
        self.critic = Critic(feat, self.world_model.bins, config.units,
                             config.layers).to(self.device)
        self.normalizer = ReturnNormalizer(config.return_rate, config.return_low,
                                           config.return_high, config.return_limit
                                           ).to(self.device)
        adam = {"eps": config.adam_eps}
        self.model_opt = torch.optim.Adam(self.world_model.parameters(), config.model_lr, **adam)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), config.actor_lr, **adam)
        self.critic_opt = torch.optim.Adam(self.critic.head.parameters(), config.critic_lr,
                                           **adam)
        self.replay = SequenceReplay(min(config.replay_capacity, 10**7), self.obs_dim,
                                     self.action_dim, seed)
        self.total_steps = 0
        self.updates = 0
        self._episode_seed = seed * 1_000_003
        self._obs: np.ndarray | None = None
        self._state: dict | None = None
        self._prev_action: torch.Tensor | None = None
        self._episode_return = 0.0
        self.episode_returns: list[tuple[int, float]] = []

    # -- acting -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forgets the filtered state: the next ``act`` starts an episode."""
        self._state, self._prev_action = None, None

    def _env_action(self, action: torch.Tensor) -> Any:
        if self.discrete:
            return int(action.argmax(-1))
        a = action.clamp(-1.0, 1.0).cpu().numpy()
        return self._low + (a + 1.0) * 0.5 * (self._high - self._low)

    @torch.no_grad()
    def _policy_step(self, obs: Any, greedy: bool, sample_latent: bool | None = None
                     ) -> torch.Tensor:
        obs_t = torch.as_tensor(np.asarray(obs, np.float32), device=self.device)[None]
        if obs_t.shape != (1, self.obs_dim):
            raise ValueError(f"obs must have shape [{self.obs_dim}], got {list(obs_t.shape[1:])}")
        rssm = self.world_model.rssm
        first = self._state is None
        if first:
            self._state = rssm.initial(1)
            self._prev_action = torch.zeros(1, self.action_dim, device=self.device)
        embed = self.world_model.encoder(obs_t)
        is_first = torch.ones(1, device=self.device) if first else None
        if sample_latent is None:
            sample_latent = not greedy
        self._state, _ = rssm.observe_step(self._state, self._prev_action, embed, is_first,
                                           sample=sample_latent)
        dist = self.actor(rssm.feature(self._state))
        action = dist.mode() if greedy else dist.sample()
        if not self.discrete:
            action = action.clamp(-1.0, 1.0)
        self._prev_action = action
        return action[0]

    def act(self, obs: Any, greedy: bool = True, sample_latent: bool | None = None) -> Any:
        """The environment action for ``obs`` (filtered with the previous ones since the last
        :meth:`reset`); ``greedy`` takes the mode of the policy, otherwise the action is
        sampled. ``sample_latent`` samples the posterior latents (``None``: unless
        ``greedy``, so a plain greedy ``act`` is deterministic)."""
        return self._env_action(self._policy_step(obs, greedy, sample_latent))

    # -- training ---------------------------------------------------------------------------

    def train(self, env_steps: int, callback: Callable[[DreamerAgent], None] | None = None
              ) -> dict[str, float]:
        """Interacts for ``env_steps`` more steps, updating every ``train_every`` steps once
        ``prefill`` steps are stored. Returns the last update's metrics."""
        c = self.config
        metrics: dict[str, float] = {}
        for _ in range(int(env_steps)):
            if self._obs is None:
                self._obs, _ = self.env.reset(seed=self._episode_seed)
                self._episode_seed += 1
                self.reset()
                self.replay.add(self._obs, np.zeros(self.action_dim), 0.0, True, False)
                self._episode_return = 0.0
            if self.total_steps < c.prefill:
                action = self._random_action()
                self._policy_step(self._obs, greedy=False)  # keep the filter in step
                self._prev_action = action[None].to(self.device)
            else:
                action = self._policy_step(self._obs, greedy=False)
            obs, reward, terminated, truncated, _ = self.env.step(self._env_action(action))
            self.total_steps += 1
            self._episode_return += float(reward)
            self.replay.add(obs, action.cpu().numpy(), float(reward), False, bool(terminated))
            self._obs = obs
            if terminated or truncated:
                self.episode_returns.append((self.total_steps, self._episode_return))
                self._obs = None
            if (self.total_steps >= c.prefill and self.replay.size >= c.seq_len
                    and self.total_steps % c.train_every == 0):
                metrics = self.update()
                if callback is not None:
                    callback(self)
        return metrics

    def _random_action(self) -> torch.Tensor:
        if self.discrete:
            index = int(self.replay.rng.integers(self.action_dim))
            return nn.functional.one_hot(torch.tensor(index), self.action_dim).float()
        return torch.from_numpy(self.replay.rng.uniform(-1, 1, self.action_dim).astype(np.float32))

    def update(self) -> dict[str, float]:
        """One world-model update and one actor-critic update on a replayed batch."""
        c = self.config
        batch = {k: v.to(self.device) for k, v in self.replay.sample(c.batch_size,
                                                                     c.seq_len).items()}
        wm_loss, post, metrics = self.world_model.loss(
            batch["obs"], batch["prev_action"], batch["reward"], batch["is_first"],
            batch["terminated"])
        self.model_opt.zero_grad(set_to_none=True)
        wm_loss.backward()
        nn.utils.clip_grad_norm_(self.world_model.parameters(), c.grad_clip)
        self.model_opt.step()

        rssm = self.world_model.rssm
        start = {k: v.detach().reshape(-1, *v.shape[2:]) for k, v in post.items()}
        # The world model is not trained by the actor loss: freeze it during imagination.
        self.world_model.requires_grad_(False)
        try:
            grad = "dynamics" if c.actor_grad == "dynamics" else None
            traj = imagine(rssm.imagine_step,
                           lambda s: self.actor(rssm.feature(s)).rsample(), start, c.horizon,
                           grad=grad)
            feat = rssm.feature(traj.states)
            rewards = self.world_model.reward.predict(feat)
            conts = self.world_model.cont.predict(feat)
            # Start states are real: their continue flag is the replayed one.
            first_cont = self.world_model.continue_target(batch["terminated"]).reshape(-1)
            conts = torch.cat([first_cont[None].to(conts.dtype), conts[1:]])
            values = self.critic.predict(feat)
            returns = lambda_return(rewards, values, conts, c.discount, c.lam, c.convention)
            weights = lambda_return_weights(conts, c.discount, c.convention)
            _, scale = self.normalizer(returns)
            policy = self.actor(feat[:-1].detach())
            loss_actor, actor_metrics = actor_loss(
                policy.log_prob(traj.actions), policy.entropy(), returns,
                values[:-1].detach(), weights, scale, c.actor_grad, c.actor_entropy)
        finally:
            self.world_model.requires_grad_(True)
        self.actor_opt.zero_grad(set_to_none=True)
        loss_actor.backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), c.grad_clip)
        self.actor_opt.step()

        critic_feat = feat[:-1].detach()
        loss_critic = _critic_loss(self.critic(critic_feat), returns.detach(), weights,
                                   self.world_model.bins, self.critic.predict_slow(critic_feat),
                                   c.slow_reg)
        self.critic_opt.zero_grad(set_to_none=True)
        loss_critic.backward()
        nn.utils.clip_grad_norm_(self.critic.head.parameters(), c.grad_clip)
        self.critic_opt.step()
        self.critic.update_slow(c.slow_critic_rate)
        self.updates += 1
        out = {k: float(v) for k, v in metrics.items()}
        out.update(actor=float(loss_actor.detach()), critic=float(loss_critic.detach()),
                   returns=float(returns.detach().mean()), scale=float(scale),
                   **{k: float(v) for k, v in actor_metrics.items()})
        return out

    # -- evaluation and persistence ---------------------------------------------------------

    def evaluate(self, episodes: int = 10, seed: int = 10**9, sample_latent: bool = True
                 ) -> float:
        """Mean return of greedy episodes (the policy's mode) on a fresh environment.

        ``sample_latent`` samples the posterior latents as in training (dreamerv3-torch's
        evaluation: the actor never sees latent modes in training); the samples come from
        a generator seeded with ``seed``, forked from torch's, so an evaluation is reproducible
        and leaves the training's random numbers untouched. ``False``: latent modes.
        """
        env = self.env_fn()
        total = 0.0
        saved = self._state, self._prev_action
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                for episode in range(episodes):
                    obs, _ = env.reset(seed=seed + episode)
                    self.reset()
                    while True:
                        action = self.act(obs, greedy=True, sample_latent=sample_latent)
                        obs, reward, terminated, truncated, _ = env.step(action)
                        total += float(reward)
                        if terminated or truncated:
                            break
        finally:
            self._state, self._prev_action = saved
            env.close()
        return total / episodes

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(), "seed": self.seed,
            "world_model": self.world_model.state_dict(), "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(), "normalizer": self.normalizer.state_dict(),
            "model_opt": self.model_opt.state_dict(), "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(), "total_steps": self.total_steps,
            "updates": self.updates, "episode_returns": self.episode_returns,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Writes the agent (networks, optimisers, counters; not the replay) atomically: to a
        temporary file in the same folder, then renamed over ``path``."""
        atomic_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike, env_fn: Callable[[], Any]) -> DreamerAgent:
        """An agent saved by :meth:`save`, for the environments ``env_fn`` makes."""
        state = torch.load(os.fspath(path), map_location="cpu", weights_only=False)
        agent = cls(env_fn, Config(**state["config"]), seed=state["seed"])
        agent.world_model.load_state_dict(state["world_model"])
        agent.actor.load_state_dict(state["actor"])
        agent.critic.load_state_dict(state["critic"])
        agent.normalizer.load_state_dict(state["normalizer"])
        agent.model_opt.load_state_dict(state["model_opt"])
        agent.actor_opt.load_state_dict(state["actor_opt"])
        agent.critic_opt.load_state_dict(state["critic_opt"])
        agent.total_steps, agent.updates = state["total_steps"], state["updates"]
        agent.episode_returns = [tuple(x) for x in state["episode_returns"]]
        return agent
