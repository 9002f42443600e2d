"""wm.diagnostics.open_loop_error: the compounding-error curve of a Dreamer world model."""

import numpy as np
import pytest
import torch
import wmfast as wm
from wmfast import dreamer as dr

SMALL = {"deter": 16, "hidden": 16, "units": 16, "layers": 1, "stoch": 3, "classes": 3}


def _episode(length, obs_dim=3, action_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    actions = torch.nn.functional.one_hot(torch.randint(action_dim, (length,), generator=g),
                                          action_dim).float()
    actions[0] = 0
    rewards = torch.ones(length)
    rewards[0] = 0
    return {"obs": torch.randn(length, obs_dim, generator=g), "actions": actions,
            "rewards": rewards}


def test_open_loop_error_matches_world_model_open_loop(tmp_path):
    torch.manual_seed(0)
    model = dr.WorldModel(obs_dim=3, action_dim=2, config=dr.Config(**SMALL))
    episodes = [_episode(9, seed=0), _episode(12, seed=1), _episode(3, seed=2)]  # last: too short
    curve = wm.diagnostics.open_loop_error(model, episodes, horizons=[1, 2, 4])
    assert curve["horizons"].tolist() == [1, 2, 4]
    assert curve["obs_mse_per_dim"].shape == (3, 3)
    assert curve["obs_mse"].shape == curve["reward_mae"].shape == (3,)
    assert curve["count"].tolist() == [5 + 8] * 3
    # The same numbers from WorldModel.open_loop, one start state at a time.
    errors = {h: [] for h in (1, 2, 4)}
    for episode in episodes[:2]:
        length = episode["obs"].shape[0]
        for t in range(length - 4):
            pred = model.open_loop(episode["obs"][:, None], episode["actions"][:, None], t + 1)
            for h, found in errors.items():
                found.append((pred["obs"][h - 1, 0] - episode["obs"][t + h]).square())
    expected = torch.stack([torch.stack(errors[h]).mean(0) for h in (1, 2, 4)])
    torch.testing.assert_close(curve["obs_mse_per_dim"], expected, rtol=1e-4, atol=1e-5)
    # numpy episodes work too, and the PNG helper writes a file.
    as_numpy = [{k: v.numpy() for k, v in e.items()} for e in episodes]
    torch.testing.assert_close(wm.diagnostics.open_loop_error(model, as_numpy, [1, 2, 4])
                               ["obs_mse"], curve["obs_mse"])
    wm.diagnostics.plot_open_loop_error(curve, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_open_loop_error_rejects_bad_input():
    model = dr.WorldModel(obs_dim=3, action_dim=2, config=dr.Config(**SMALL))
    episode = _episode(6)
    with pytest.raises(ValueError, match="horizons must all be >= 1"):
        wm.diagnostics.open_loop_error(model, [episode], [0, 1])
    with pytest.raises(ValueError, match="non-empty sequence"):
        wm.diagnostics.open_loop_error(model, [], [1])
    with pytest.raises(ValueError, match=r"episodes\[0\]\['actions'\] must have shape \[6, 2\]"):
        wm.diagnostics.open_loop_error(model, [dict(episode, actions=np.zeros((6, 3)))], [1])
    with pytest.raises(ValueError, match="more than max\\(horizons\\) = 6 steps"):
        wm.diagnostics.open_loop_error(model, [episode], range(1, 7))
