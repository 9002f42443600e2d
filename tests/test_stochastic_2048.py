"""wmfast demo stochastic-2048: the batched 2048 model against a plain Python implementation of the
rules, its chance distribution, the expectimax baseline, and the demo's smoke run."""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from wmfast.demos import DEMOS
from wmfast.demos.stochastic_2048 import Game2048Model, expectimax_moves


def slide_reference(board, action):
    """The rules, cell by cell: 0 up, 1 right, 2 down, 3 left; each pair merges once."""
    grid = [list(board[r * 4:(r + 1) * 4]) for r in range(4)]
    lines = {
        0: [[(r, c) for r in range(4)] for c in range(4)],
        1: [[(r, c) for c in reversed(range(4))] for r in range(4)],
        2: [[(r, c) for r in reversed(range(4))] for c in range(4)],
        3: [[(r, c) for c in range(4)] for r in range(4)],
    }[action]
    out = [[0] * 4 for _ in range(4)]
    score = 0
    for line in lines:
        tiles = [grid[r][c] for r, c in line if grid[r][c]]
        merged = []
        while tiles:
            if len(tiles) > 1 and tiles[0] == tiles[1]:
                merged.append(tiles[0] + 1)
                score += 2 ** (tiles[0] + 1)
                tiles = tiles[2:]
            else:
                merged.append(tiles.pop(0))
        for (r, c), e in zip(line, merged + [0] * 4):
            out[r][c] = e
    return [e for row in out for e in row], score


boards = st.lists(st.integers(0, 11), min_size=16, max_size=16)


@settings(max_examples=100, deadline=None)
@given(board=boards, action=st.integers(0, 3))
def test_slide_matches_the_rules(board, action):
    model = Game2048Model()
    slid, score = model.slide(torch.tensor([board]), torch.tensor([action]))
    expected, expected_score = slide_reference(board, action)
    assert slid[0].tolist() == expected
    assert score.item() == expected_score
    legal = model.legal_moves(torch.tensor([board]))[0, action].item()
    assert legal == (expected != board)


@settings(max_examples=30, deadline=None)
@given(board=boards, action=st.integers(0, 3))
def test_decision_and_chance_functions(board, action):
    model = Game2048Model()
    latent = torch.tensor([board + [0, 0]], dtype=torch.float32)
    after = model.decision(latent, torch.tensor([action]))
    expected, score = slide_reference(board, action)
    moved = expected != board
    assert after.latent[0, :16].tolist() == expected
    assert after.latent[0, 16].item() == score and after.latent[0, 17].item() == (not moved)
    probs = after.chance_logits.exp()[0].view(16, 2)
    if moved:
        empty = torch.tensor([e == 0 for e in expected])
        # A 2 (0.9) or a 4 (0.1) on a uniformly chosen empty cell.
        torch.testing.assert_close(probs.sum(), torch.tensor(1.0))
        assert (probs[~empty] == 0).all()
        torch.testing.assert_close(probs[empty, 0], torch.full((int(empty.sum()),), 0.9 / empty.sum()))
        outcome = int(torch.nonzero(empty)[0]) * 2 + 1
        step = model.chance(after.latent, torch.tensor([outcome]))
        placed = list(expected)
        placed[outcome // 2] = 2
        assert step.latent[0, :16].tolist() == placed
        assert step.reward.item() == score
        assert (step.discount.item() == 1.0) == any(slide_reference(placed, a)[0] != placed
                                                   for a in range(4))
    else:
        # An illegal move ends the game in the model: value 0, then discount 0.
        assert after.value.item() == 0.0
        step = model.chance(after.latent, torch.tensor([0]))
        assert step.discount.item() == 0.0 and step.reward.item() == 0.0


def test_expectimax_takes_the_move_that_wins_the_most():
    model = Game2048Model(empty_weight=0.0, monotone_weight=0.0)  # score only
    board = torch.tensor([[10, 10, 0, 0] + [1, 2, 3, 4] + [2, 3, 4, 5] + [3, 4, 5, 6]])
    moves, evaluations = expectimax_moves(model, board)
    assert moves.item() in (1, 3)  # merge the two 1024s
    assert evaluations.item() > 4


def test_demo_smoke_json(tmp_path, capsys):
    assert DEMOS["stochastic-2048"](["--smoke", "--json", "--out", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["demo"] == "stochastic-2048" and figures["smoke"] is True
    for player in ("stochastic_mcts", "expectimax_depth2"):
        assert figures[player]["mean_score"] > 0
        assert math.isfinite(figures[player]["evaluations_per_move"])
    rows = (tmp_path / "games.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * figures["games"]
    assert np.isfinite(figures["simulations"])


def test_living_boards_are_valued_above_a_lost_game():
    # A lost game is worth 0 to both players; boards reached in play must be worth more, or the
    # players walk into losses (without the alive constant a fifth of them scored below 0).
    from wmfast.demos.stochastic_2048 import play

    torch.set_num_threads(1)
    model = Game2048Model()
    seen = []

    def expectimax(boards, games):
        seen.append(boards.clone())
        moves, evaluations = expectimax_moves(model, boards)
        return moves, evaluations.sum()

    play(model, 4, expectimax, seed=3, max_moves=300)
    boards = torch.cat(seen)
    assert (model.heuristic(boards) > 0).all()
    assert (Game2048Model(alive_value=0.0).heuristic(boards) < 0).any()   # what it guards against
    # A state counts the cell its new tile took: its value is the heuristic plus that cell.
    torch.testing.assert_close(model.state_value(boards),
                               model.heuristic(boards) + model.empty_weight)
