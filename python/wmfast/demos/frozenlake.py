"""``wmfast demo frozenlake``: learn slippery FrozenLake by counting, plan by value iteration.

The agent (wmfast.agents.TabularAgent) explores optimistically (R-MAX for untried pairs, a
count bonus for the others), counts every real
transition in a TabularModel and replans after each episode. After each round it is scored by
the greedy policy of its learned model, over real evaluation episodes and exactly (by
propagating the state distribution through the true model for the environment's step limit),
beside the best success rate any policy can reach within that limit.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import numpy as np

from wmfast.cli import HelpFormatter


def true_model(P, num_states: int, num_actions: int):
    """Dense transition probs [S, A, S], success probs [S, A] (goal reached) and done probs."""
    transitions = np.zeros((num_states, num_actions, num_states))
    success = np.zeros((num_states, num_actions))
    for s in range(num_states):
        for a in range(num_actions):
            for p, s2, r, done in P[s][a]:
                if done:
                    success[s, a] += p * (r > 0)
                else:
                    transitions[s, a, s2] += p
    return transitions, success


def success_probability(policy, transitions, success, start: int, limit: int) -> float:
    """Exact probability that `policy` ([S], a tensor or numpy array) reaches the goal within
    `limit` steps from `start`."""
    policy = np.asarray(policy)
    S = transitions.shape[0]
    dist = np.zeros(S)
    dist[start] = 1.0
    rows = np.arange(S)
    step_transitions, step_success = transitions[rows, policy], success[rows, policy]
    total = 0.0
    for _ in range(limit):
        total += dist @ step_success
        dist = dist @ step_transitions
    return float(total)


def optimal_success(transitions, success, start: int, limit: int) -> float:
    """The best success probability within `limit` steps (finite-horizon dynamic programming)."""
    values = np.zeros(transitions.shape[0])
    for _ in range(limit):
        values = (success + transitions @ values).max(axis=1)
    return float(values[start])


def evaluate(env, policy, episodes: int, seed: int) -> float:
    """Empirical success rate of `policy` ([S], a tensor or numpy array) over real episodes."""
    policy = np.asarray(policy)
    wins = 0
    for episode in range(episodes):
        state, _ = env.reset(seed=seed + episode)
        while True:
            state, reward, terminated, truncated, _ = env.step(int(policy[state]))
            if terminated or truncated:
                wins += reward > 0
                break
    return wins / episodes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wmfast demo frozenlake", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--map", default="8x8", choices=["4x4", "8x8"], help="map size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps-per-round", type=int, default=2000,
                        help="real environment steps the agent learns from per round")
    parser.add_argument("--eval-episodes", type=int, default=1000)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--bonus", type=float, default=0.05,
                        help="exploration bonus / sqrt(N(s, a)) added to known pairs' rewards")
    parser.add_argument("--out", default="wmfast-demo-frozenlake", help="output folder")
    args = parser.parse_args(argv)

    import gymnasium as gym
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm import tqdm

    from wmfast.agents import TabularAgent

    env = gym.make("FrozenLake-v1", map_name=args.map, is_slippery=True)
    eval_env = gym.make("FrozenLake-v1", map_name=args.map, is_slippery=True)
    unwrapped = env.unwrapped
    S, A = unwrapped.observation_space.n, unwrapped.action_space.n
    limit = env.spec.max_episode_steps
    start = int(np.flatnonzero(unwrapped.initial_state_distrib)[0])
    transitions, success = true_model(unwrapped.P, S, A)
    optimum = optimal_success(transitions, success, start, limit)

    agent = TabularAgent(S, A, gamma=args.gamma, r_max=1.0, bonus=args.bonus, seed=args.seed)
    print(f"FrozenLake-v1 {args.map} (slippery), {limit}-step limit: the best policy reaches the "
          f"goal with probability {optimum:.4f}")
    print(f"{'round':>5} {'real steps':>10} {'success (exact)':>15} "
          f"{f'success ({args.eval_episodes} eps)':>18} {'optimal':>8} {'gap':>7}")
    history, reached_at = [], None
    episode_seed = args.seed * 1_000_003
    plan_seconds = 0.0
    started = time.perf_counter()
    for round_index in range(1, args.rounds + 1):
        target = agent.total_steps + args.steps_per_round
        with tqdm(total=args.steps_per_round, desc=f"round {round_index}", unit="step",
                  leave=False) as bar:
            while agent.total_steps < target:
                before = agent.total_steps
                tick = time.perf_counter()
                agent.run_episode(env, seed=episode_seed)
                episode_seed += 1
                plan_seconds += time.perf_counter() - tick
                bar.update(min(agent.total_steps, target) - before)
        greedy = agent.greedy_policy()
        exact = success_probability(greedy, transitions, success, start, limit)
        empirical = evaluate(eval_env, greedy, args.eval_episodes, seed=10**9 + round_index)
        history.append((agent.total_steps, exact, empirical))
        if reached_at is None and optimum - exact <= 0.02:
            reached_at = agent.total_steps
        print(f"{round_index:>5} {agent.total_steps:>10,} {exact:>15.4f} {empirical:>18.3f} "
              f"{optimum:>8.4f} {optimum - exact:>7.4f}")
    elapsed = time.perf_counter() - started

    if reached_at is None:
        print(f"Did not reach within 0.02 of the optimum in {agent.total_steps:,} real steps.")
    else:
        print(f"Within 0.02 of the optimal success rate after {reached_at:,} real env steps.")
    print(f"{elapsed:.1f} s in all; learning episodes (acting, counting, replanning) "
          f"{plan_seconds:.1f} s")

    os.makedirs(args.out, exist_ok=True)
    figure, (curve, value_map) = plt.subplots(1, 2, figsize=(11, 4.5))
    steps, exact, empirical = map(np.array, zip(*history))
    curve.plot(steps, exact, "o-", label="learned model's greedy policy (exact)")
    curve.plot(steps, empirical, "x--", alpha=0.7,
               label=f"same, {args.eval_episodes} real episodes")
    curve.axhline(optimum, color="k", linestyle=":", label=f"optimal ({optimum:.3f})")
    curve.axhspan(optimum - 0.02, optimum, color="g", alpha=0.1, label="within 0.02")
    curve.set(xlabel="real environment steps", ylabel="success rate",
              title=f"FrozenLake {args.map}: learn, plan, act")
    curve.legend(loc="lower right", fontsize=8)
    side = round(np.sqrt(S))
    solution = agent.greedy_solution()
    values, policy = solution.values.numpy(), solution.policy.tolist()
    image = value_map.imshow(values.reshape(side, side), cmap="viridis")
    desc = unwrapped.desc.astype(str)
    arrows = "←↓→↑"
    for row in range(side):
        for col in range(side):
            tile = desc[row, col]
            label = tile if tile in "HG" else arrows[policy[row * side + col]]
            value_map.text(col, row, label, ha="center", va="center",
                           color="w", fontsize=9)
    value_map.set(title="learned values and greedy policy", xticks=[], yticks=[])
    figure.colorbar(image, ax=value_map, fraction=0.046)
    figure.tight_layout()
    path = os.path.join(args.out, f"frozenlake_{args.map}.png")
    figure.savefig(path, dpi=120)
    print(f"Saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
