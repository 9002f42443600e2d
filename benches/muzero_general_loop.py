"""A faithful re-implementation of muzero-general's self-play search loop, the baseline of
bench_muzero.py.

muzero-general (github.com/werner-duvaud/muzero-general, the most used PyTorch MuZero) plays one
environment per self-play actor and searches with a pure-Python tree: per simulation it descends
by pUCT over a dict of child Nodes (MinMaxStats-normalised Q, random tie-breaking), calls the
network's recurrent inference on a batch of one, decodes the value and reward supports to Python
floats and backs up along the path. This file follows that algorithm (from its self_play.py
MCTS / Node / MinMaxStats) with the same network calls wmfast's agent makes, so the comparison
measures the search loop and the batching, not the network.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class MinMaxStats:
    def __init__(self) -> None:
        self.maximum, self.minimum = -float("inf"), float("inf")

    def update(self, value: float) -> None:
        self.maximum = max(self.maximum, value)
        self.minimum = min(self.minimum, value)

    def normalize(self, value: float) -> float:
        if self.maximum > self.minimum:
            return (value - self.minimum) / (self.maximum - self.minimum)
        return value


class Node:
    def __init__(self, prior: float) -> None:
        self.visit_count = 0
        self.prior = prior
        self.value_sum = 0.0
        self.children: dict[int, Node] = {}
        self.hidden_state = None
        self.reward = 0.0

    def expanded(self) -> bool:
        return len(self.children) > 0

    def value(self) -> float:
        return 0.0 if self.visit_count == 0 else self.value_sum / self.visit_count

    def expand(self, actions, reward: float, policy_logits: torch.Tensor, hidden_state) -> None:
        self.reward = reward
        self.hidden_state = hidden_state
        policy = torch.softmax(torch.tensor([policy_logits[0][a] for a in actions]), dim=0).tolist()
        for action, p in zip(actions, policy):
            self.children[action] = Node(p)

    def add_exploration_noise(self, alpha: float, fraction: float, rng) -> None:
        actions = list(self.children)
        noise = rng.dirichlet([alpha] * len(actions))
        for a, n in zip(actions, noise):
            self.children[a].prior = self.children[a].prior * (1 - fraction) + n * fraction


class PythonTreeSearch:
    """muzero-general's MCTS.run for one observation (single-player: to_play fixed)."""

    def __init__(self, model, num_actions: int, num_simulations: int, discount: float,
                 pb_c_base: float = 19652.0, pb_c_init: float = 1.25,
                 dirichlet_alpha: float = 0.25, exploration_fraction: float = 0.25,
                 seed: int = 0) -> None:
        self.model = model   # wmfast.muzero.SearchModel: decoded scalar heads, no autograd
        self.num_actions, self.num_simulations, self.discount = num_actions, num_simulations, discount
        self.pb_c_base, self.pb_c_init = pb_c_base, pb_c_init
        self.alpha, self.fraction = dirichlet_alpha, exploration_fraction
        self.rng = np.random.default_rng(seed)

    def ucb_score(self, parent: Node, child: Node, stats: MinMaxStats) -> float:
        pb_c = math.log((parent.visit_count + self.pb_c_base + 1) / self.pb_c_base) + self.pb_c_init
        pb_c *= math.sqrt(parent.visit_count) / (child.visit_count + 1)
        prior_score = pb_c * child.prior
        if child.visit_count > 0:
            value_score = stats.normalize(child.reward + self.discount * child.value())
        else:
            value_score = 0.0
        return prior_score + value_score

    def select_child(self, node: Node, stats: MinMaxStats):
        scores = {a: self.ucb_score(node, child, stats) for a, child in node.children.items()}
        best = max(scores.values())
        action = self.rng.choice([a for a, s in scores.items() if s == best])
        return int(action), node.children[int(action)]

    def backpropagate(self, path: list[Node], value: float, stats: MinMaxStats) -> None:
        for node in reversed(path):
            node.value_sum += value
            node.visit_count += 1
            stats.update(node.reward + self.discount * node.value())
            value = node.reward + self.discount * value

    def run(self, observation: np.ndarray) -> Node:
        actions = list(range(self.num_actions))
        obs = torch.tensor(observation, dtype=torch.float32).unsqueeze(0)
        root_out = self.model.initial_inference(obs)
        root = Node(0)
        root.expand(actions, 0.0, root_out.logits, root_out.latent)
        root.add_exploration_noise(self.alpha, self.fraction, self.rng)
        stats = MinMaxStats()
        for _ in range(self.num_simulations):
            node, path = root, [root]
            action = 0
            while node.expanded():
                action, node = self.select_child(node, stats)
                path.append(node)
            parent = path[-2]
            step = self.model.recurrent_inference(parent.hidden_state, torch.tensor([action]))
            node.expand(actions, step.reward.item(), step.logits, step.latent)
            self.backpropagate(path, step.value.item(), stats)
        return root


def play_moves(env, search: PythonTreeSearch, moves: int, temperature: float = 1.0,
               seed: int = 0) -> int:
    """Plays ``moves`` moves of one environment (resetting at episode ends); returns the moves."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(moves):
        root = search.run(obs)
        visits = np.array([root.children[a].visit_count for a in range(search.num_actions)], float)
        p = visits ** (1 / temperature)
        action = int(rng.choice(len(p), p=p / p.sum()))
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    return moves
