"""``wmfast demo muzero-tictactoe``: two-player Gumbel MuZero learns TicTacToe by self-play and
is scored against a perfect minimax player.

One network plays both sides (wmfast.agents.MuZeroAgent with ``Config(two_player=True)``): the
observation is the mover's view, a reward belongs to the player who moved, and the search sees
Step.discount = -1, so every value is from the view of the player to move at its node (mctx's
convention). The search is Gumbel MuZero (wm.GumbelMCTS): with TicTacToe's 9 moves it considers
every legal move at the root, Sequential Halving spends a small simulation budget well, and its
completed-Q policy target improves the policy even with few simulations, with no visit
temperature or Dirichlet noise to schedule.

Training runs for ``--minutes`` of training time (time spent in self-play and learning; the
checks against minimax in between are not counted). Every ``--check-every`` seconds the greedy
agent plays a check match against minimax (200 games, minimax seed 1_000_000 + check index):
these make the learning curve. With ``--stop-when-perfect`` (default) training stops once two
checks in a row have no loss. The final table comes from a separate match with its own
minimax seed: 100 games with the agent as first player, 100 as second, minimax choosing at
random among its optimal moves so that the games differ; the agent acts greedily (Gumbel
search without noise). ``--out DIR`` gets muzero_tictactoe.csv / .png (the curve) and
agent.pt (``MuZeroAgent.load(path, TicTacToe)``). ``--smoke`` trains a tiny agent for a few
seconds (a check that everything runs, not a result).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from wmfast.cli import HelpFormatter

__all__ = ["main", "make_agent", "match", "play_minimax", "value_keeping_fraction"]


def play_minimax(agent: Any, games: int, agent_first: bool, seed: int) -> dict[str, int]:
    """Plays ``games`` games of the greedy ``agent`` (a MuZeroAgent, or anything with
    ``act(obs [B, 3, 3, 3], legal_actions=[B, 9]) -> [B] actions``) against a minimax player
    choosing at random among its optimal moves (seeded with ``seed``). All games advance
    together: one batched agent call per agent move. Returns {"wins", "draws", "losses"} from
    the agent's side."""
    from wmfast.envs.tictactoe import MinimaxPlayer, TicTacToe

    if isinstance(games, bool) or not isinstance(games, int) or games < 1:
        raise ValueError(f"games must be an int >= 1, got {games!r}")
    minimax = MinimaxPlayer(seed=seed)
    envs = [TicTacToe() for _ in range(games)]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    agent_player = 0 if agent_first else 1
    live = list(range(games))
    while live:
        agent_turn = [i for i in live if envs[i].to_play == agent_player]
        actions: dict[int, int] = {}
        if agent_turn:
            batch = np.stack([obs[i] for i in agent_turn])
            legal = np.stack([envs[i].legal_actions() for i in agent_turn])
            chosen = np.asarray(agent.act(batch, legal_actions=legal)).reshape(-1)
            actions.update(zip(agent_turn, (int(a) for a in chosen)))
        for i in live:
            if i not in actions:
                actions[i] = minimax.act(obs[i])
        still = []
        for i in live:
            obs[i], _, terminated, _, _ = envs[i].step(actions[i])
            if not terminated:
                still.append(i)
        live = still
    results = [env.result for env in envs]
    wins = sum(r == agent_player for r in results)
    losses = sum(r == 1 - agent_player for r in results)
    return {"wins": wins, "draws": games - wins - losses, "losses": losses}


def value_keeping_fraction(agent: Any) -> float:
    """The fraction of the 4520 reachable positions where a move is due in which the greedy
    ``agent``'s move keeps the position's game-theoretic value (win, draw or loss, as minimax
    scores it): one batched search over all of them."""
    from wmfast.envs.tictactoe import minimax_table, solve, winner

    table = minimax_table()
    boards = [b for b in table if winner(b) == 0 and 0 in b]
    array = np.array(boards)
    obs = np.zeros((len(boards), 3, 3, 3), np.float32)
    obs[:, 0] = (array == 1).reshape(-1, 3, 3)
    obs[:, 1] = (array == -1).reshape(-1, 3, 3)
    obs[:, 2] = ((array != 0).sum(1) % 2 == 0)[:, None, None]   # the first player moves
    actions = np.asarray(agent.act(obs, legal_actions=array == 0)).reshape(-1)
    keeps = [np.sign(float(solve(b)[a])) == np.sign(table[b]) for b, a in zip(boards, actions)]
    return float(np.mean(keeps))


def match(agent: Any, games_per_side: int, seed: int) -> dict[str, dict[str, int]]:
    """``games_per_side`` games as first player and as many as second (minimax seeds ``seed``
    and ``seed + 1``)."""
    return {"first": play_minimax(agent, games_per_side, True, seed),
            "second": play_minimax(agent, games_per_side, False, seed + 1)}


def make_agent(seed: int = 0, smoke: bool = False, simulations: int | None = None) -> Any:
    """The demo's MuZeroAgent on TicTacToe (an MLP network, Gumbel search, two-player).

    Self-play starts each game after 0..4 random moves (``TicTacToe(random_opening=4)``):
    without them self-play settles on a few lines (a 15-minute run had seen 619 distinct
    positions of the 4520 where a move is due) and the agent loses where minimax's random
    choice among optimal moves leaves those lines."""
    from wmfast import muzero as mz
    from wmfast.agents import MuZeroAgent
    from wmfast.envs.tictactoe import TicTacToe

    if smoke:
        config = mz.Config(two_player=True, search="gumbel", num_envs=8, num_simulations=8,
                           max_num_considered_actions=9, discount=1.0, td_steps=9,
                           unroll_steps=3, latent_dim=16, hidden=16, support_size=0,
                           replay_capacity=2000, batch_size=16, min_replay=32,
                           updates_per_step=0.125, priority_alpha=0.0, seed=seed)
    else:
        config = mz.Config(two_player=True, search="gumbel", num_envs=32,
                           num_simulations=simulations or 25, max_num_considered_actions=9,
                           discount=1.0, td_steps=9, unroll_steps=5, latent_dim=64,
                           hidden=128, support_size=0, replay_capacity=30_000, batch_size=128,
                           learning_rate=2e-3, weight_decay=1e-4, min_replay=1000,
                           value_loss_weight=1.0,
                           updates_per_step=0.125, priority_alpha=0.5, seed=seed)
    return MuZeroAgent(functools.partial(TicTacToe, random_opening=0 if smoke else 4),
                       config=config)


def _table(result: dict[str, dict[str, int]]) -> str:
    lines = [f"{'agent plays':<12} {'wins':>5} {'draws':>6} {'losses':>7}"]
    for side in ("first", "second"):
        r = result[side]
        lines.append(f"{side:<12} {r['wins']:>5} {r['draws']:>6} {r['losses']:>7}")
    total = {k: result["first"][k] + result["second"][k] for k in ("wins", "draws", "losses")}
    lines.append(f"{'total':<12} {total['wins']:>5} {total['draws']:>6} {total['losses']:>7}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wmfast demo muzero-tictactoe", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=15.0,
                        help="training budget in minutes (default 15)")
    parser.add_argument("--check-every", type=float, default=60.0,
                        help="seconds of training between checks against minimax")
    parser.add_argument("--simulations", type=int, default=None,
                        help="search simulations per move (default 25)")
    parser.add_argument("--stop-when-perfect", action=argparse.BooleanOptionalAction,
                        default=True, help="stop after two checks in a row without a loss")
    parser.add_argument("--games", type=int, default=100,
                        help="final games per side against minimax (default 100)")
    parser.add_argument("--out", default="wmfast-demo-muzero-tictactoe", help="output folder")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object with the headline figures as the last line")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny agent trained for a few seconds: checks that it runs")
    args = parser.parse_args(argv)
    if not args.minutes > 0:
        parser.error(f"--minutes must be > 0, got {args.minutes}")
    if not args.check_every > 0:
        parser.error(f"--check-every must be > 0, got {args.check_every}")
    if args.games < 1:
        parser.error(f"--games must be >= 1, got {args.games}")

    import matplotlib
    from tqdm.auto import tqdm

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agent = make_agent(args.seed, args.smoke, args.simulations)
    budget = 4.0 if args.smoke else 60.0 * args.minutes
    check_every = 2.0 if args.smoke else args.check_every
    check_games = 10 if args.smoke else 100
    games = 5 if args.smoke else args.games
    rows: list[dict[str, Any]] = []
    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "muzero_tictactoe.csv")
    started = time.perf_counter()
    perfect_checks = 0
    bar = tqdm(total=round(budget), unit="s", desc="MuZero TicTacToe", dynamic_ncols=True)
    while agent.train_seconds < budget:
        before = agent.train_seconds
        agent.train(10**9, time_limit=min(check_every, budget - agent.train_seconds),
                    progress=False)
        bar.update(round(agent.train_seconds) - round(before))
        check = match(agent, check_games, seed=1_000_000 + 2 * len(rows))
        last = agent.history[-1] if agent.history else {}
        row = {"train_seconds": round(agent.train_seconds, 1), "env_steps": agent.env_steps,
               "updates": agent.updates, "episodes": agent.episodes,
               "loss": last.get("loss", float("nan")),
               "value_loss": last.get("value_loss", float("nan")),
               "policy_loss": last.get("policy_loss", float("nan")),
               "reward_loss": last.get("reward_loss", float("nan"))}
        for side in ("first", "second"):
            for key in ("wins", "draws", "losses"):
                row[f"{side}_{key}"] = check[side][key]
        rows.append(row)
        with open(csv_path, "w", newline="") as file:   # rewritten after every check
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        bar.set_postfix(lost_first=check["first"]["losses"],
                        lost_second=check["second"]["losses"], steps=agent.env_steps)
        no_loss = check["first"]["losses"] + check["second"]["losses"] == 0
        perfect_checks = perfect_checks + 1 if no_loss else 0
        if args.stop_when_perfect and not args.smoke and perfect_checks >= 2:
            break
    bar.close()
    wall = time.perf_counter() - started
    result = match(agent, games, seed=12_345 + 10 * args.seed)
    keeping = value_keeping_fraction(agent)

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    minutes = [r["train_seconds"] / 60 for r in rows]
    for side, style in (("first", "o-"), ("second", "s-")):
        left.plot(minutes, [r[f"{side}_losses"] for r in rows], style,
                  label=f"losses as {side} player")
        left.plot(minutes, [r[f"{side}_draws"] for r in rows], style, alpha=0.4,
                  label=f"draws as {side} player")
    left.set(xlabel="training minutes", ylabel=f"games of {check_games}",
             title="Greedy MuZero vs minimax (check matches)")
    left.legend(fontsize=8)
    for key in ("loss", "value_loss", "policy_loss", "reward_loss"):
        right.plot(minutes, [r[key] for r in rows], label=key)
    right.set(xlabel="training minutes", ylabel="loss", title="Learner losses", yscale="log")
    right.legend(fontsize=8)
    figure.tight_layout()
    png_path = os.path.join(args.out, "muzero_tictactoe.png")
    figure.savefig(png_path, dpi=110)
    plt.close(figure)
    agent_path = os.path.join(args.out, "agent.pt")
    agent.save(agent_path)

    print(f"Gumbel MuZero vs perfect minimax, {games} games per side "
          f"(seed {args.seed}, {agent.train_seconds / 60:.2f} training minutes, "
          f"{agent.env_steps:,} env steps, {agent.updates:,} updates):")
    print(_table(result))
    print(f"Its move keeps the game-theoretic value in {100 * keeping:.1f}% of the 4520 "
          "positions where a move is due")
    print(f"Saved {csv_path}, {png_path} and {agent_path} ({wall:.1f} s wall)")
    if args.json:
        figures = {"demo": "muzero-tictactoe", "seed": args.seed, "smoke": args.smoke,
                   "search": agent.config.search,
                   "num_simulations": agent.config.num_simulations,
                   "training_minutes": round(agent.train_seconds / 60, 3),
                   "wall_minutes": round(wall / 60, 3), "env_steps": agent.env_steps,
                   "updates": agent.updates, "episodes": agent.episodes,
                   "games_per_side": games, "value_keeping_fraction": round(keeping, 4)}
        for side in ("first", "second"):
            for key in ("wins", "draws", "losses"):
                figures[f"{side}_{key}"] = result[side][key]
        figures["losses"] = result["first"]["losses"] + result["second"]["losses"]
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
