"""Regression tests of issue 12: no crash, hang or silent garbage from any input or any thread.

Each test names the defect class it pins down (1-7). Hangs and crashes run in a subprocess with a
timeout, so a regression fails the test instead of taking the test run down with it.
"""

import os
import subprocess
import sys
import textwrap
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import wmfast as wm

A = 3


def constant_model(value, reward=0.0, discount=1.0, logits=None):
    def fn(latent, action):
        b = latent.shape[0]
        lg = torch.zeros(b, A) if logits is None else logits.expand(b, A).clone()
        return wm.Step(latent, torch.full((b,), reward), lg, torch.full((b,), value),
                       torch.full((b,), discount))
    return fn


def root(b=1, value=0.0, logits=None):
    lg = torch.zeros(b, A) if logits is None else logits
    return wm.Root(torch.zeros(b, 2), lg, torch.full((b,), value))


def run_isolated(code, timeout=60):
    """Runs `code` in a fresh interpreter; returns (returncode, output). A hang is a failure."""
    try:
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                                capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung for {timeout} s:\n{code}")
    return result.returncode, result.stdout + result.stderr


def check_search(out, b, n):
    visits = out.visit_counts
    assert int(visits.sum()) == b * n
    assert torch.isfinite(out.policy).all() and torch.isfinite(out.root_value).all()
    assert ((out.action >= 0) & (out.action < A)).all()
    torch.testing.assert_close(out.policy.sum(1), torch.ones(b))


# -- 1. threads -----------------------------------------------------------------------------------

def test_concurrent_updates_merges_and_reads_of_one_tabular_model_are_safe():
    code = """
        import threading, numpy as np, wmfast as wm
        S, A = 500, 4
        tm = wm.TabularModel(S, A)
        other = wm.TabularModel(S, A)
        other.update([0], [0], [1.0], [1], [False])
        errors = []
        def updater(seed):
            rng = np.random.default_rng(seed)
            try:
                for _ in range(30):
                    n = 20000
                    tm.update(rng.integers(0, S, n), rng.integers(0, A, n), rng.random(n),
                              rng.integers(0, S, n), rng.random(n) < 0.1)
                    tm.merge(other)
            except Exception as e:
                errors.append(e)
        def reader():
            try:
                for _ in range(30):
                    tm.value_iteration(gamma=0.9, tol=1e-3)
                    tm.state_dict()
                    tm.num_transitions
            except Exception as e:
                errors.append(e)
        threads = [threading.Thread(target=updater, args=(k,)) for k in range(3)]
        threads += [threading.Thread(target=reader)]
        [t.start() for t in threads]; [t.join() for t in threads]
        assert not errors, errors
        assert tm.num_transitions == 3 * 30 * 20001, tm.num_transitions
        assert int(tm.visit_counts().sum()) == tm.num_transitions
        print("ok")
    """
    rc, output = run_isolated(code, timeout=240)
    assert rc == 0 and "ok" in output, output


def test_merging_two_models_into_each_other_from_two_threads_does_not_deadlock():
    a, b = wm.TabularModel(4, 2), wm.TabularModel(4, 2)
    a.update([0], [0], [1.0], [1], [False])
    b.update([1], [1], [1.0], [2], [False])
    errors: list[Exception] = []

    def merge_repeatedly(into, other):
        # Interleaved merges grow the counts like Fibonacci numbers: depending on the timing, a
        # thread may stop on the int64 overflow error, the only error allowed here.
        try:
            for _ in range(200):
                into.merge(other)
        except ValueError as error:
            errors.append(error)

    threads = [threading.Thread(target=merge_repeatedly, args=(a, b)),
               threading.Thread(target=merge_repeatedly, args=(b, a))]
    [t.start() for t in threads]
    [t.join(timeout=60) for t in threads]
    assert not any(t.is_alive() for t in threads)
    assert all("int64" in str(error) for error in errors), errors


# -- 2. selection is total; parameters and overflow checked -----------------------------------------

@pytest.mark.parametrize("epsilon", [0.0, 1e-45, -1.0, float("nan")])
def test_parent_and_siblings_epsilon_is_checked(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        wm.qtransform_by_parent_and_siblings(epsilon=epsilon)


def test_qtransform_made_by_hand_is_checked_by_the_core():
    with pytest.raises(ValueError, match="epsilon"):
        wm.MCTS(A, 4, qtransform=wm.QTransform("parent_and_siblings", epsilon=0.0))
    with pytest.raises(ValueError, match="qtransform.kind"):
        wm.MCTS(A, 4, qtransform=wm.QTransform("nope"))


@pytest.mark.parametrize("bounds", [(0.0, 1e-45), (0.0, float("inf")), (-3e38, 3e38)])
def test_min_max_bounds_are_checked(bounds):
    with pytest.raises(ValueError, match="max_value"):
        wm.qtransform_by_min_max(*bounds)


@pytest.mark.parametrize("discount", [1e20, -0.5, 1.5, float("nan")])
def test_mcts_discount_must_be_in_unit_interval(discount):
    with pytest.raises(ValueError, match="discount"):
        wm.MCTS(A, 4, discount=discount)
    with pytest.raises(ValueError, match="discount"):
        wm.GumbelMCTS(A, 4, discount=discount)


def test_huge_finite_values_search_without_hanging():
    # 3e38 at N=50 with the defaults made every pUCT score NaN: selection returned -1 and the
    # descent looped forever. Now the normalisation is computed without overflow.
    code = """
        import torch, wmfast as wm
        A = 3
        def fn(latent, action):
            b = latent.shape[0]
            sign = torch.where(action % 2 == 0, 1.0, -1.0)
            return wm.Step(latent, torch.zeros(b), torch.zeros(b, A), 3e38 * sign, None)
        for max_depth in (None, 3):
            out = wm.MCTS(A, 50, max_depth=max_depth).search(
                fn, wm.Root(torch.zeros(2, 2), torch.zeros(2, A), torch.full((2,), 3e38)))
            assert int(out.visit_counts.sum()) == 100
            assert torch.isfinite(out.root_value).all()
            assert ((out.action >= 0) & (out.action < A)).all()
        print("ok")
    """
    rc, output = run_isolated(code)
    assert rc == 0 and "ok" in output, output


def test_overflowing_backup_is_a_clear_error():
    mcts = wm.MCTS(A, 20)
    with pytest.raises(ValueError, match="overflowed float32"):
        mcts.search(constant_model(3e38, reward=3e38), root())


def test_large_values_do_not_overflow_the_root_mean():
    # (value * count + leaf) overflowed at ~1e35 over long searches.
    out = wm.MCTS(A, 2000).search(constant_model(1e35), root(value=1e35))
    check_search(out, 1, 2000)
    assert torch.allclose(out.root_value, torch.tensor([1e35]), rtol=1e-3)


# -- 3. Gumbel search gives finite policies --------------------------------------------------------

def test_gumbel_policy_finite_when_the_only_legal_action_has_minus_inf_logit():
    logits = torch.tensor([[-float("inf"), 0.0, 0.0]])
    legal = torch.tensor([[True, False, False]])
    out = wm.GumbelMCTS(A, 8).search(constant_model(0.5), root(logits=logits), legal)
    assert torch.equal(out.policy, torch.tensor([[1.0, 0.0, 0.0]]))
    assert out.action.tolist() == [0]
    assert int(out.visit_counts.sum()) == 8


@pytest.mark.parametrize("kwargs", [{"epsilon": 0.0}, {"value_scale": 1e38},
                                    {"maxvisit_init": float("nan")},
                                    {"maxvisit_init": float("inf")}])
def test_gumbel_transform_parameters_are_checked(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        wm.GumbelMCTS(A, 8, qtransform=wm.qtransform_completed_by_mix_value(**kwargs))


def test_gumbel_value_scale_times_visits_is_bounded():
    with pytest.raises(ValueError, match="value_scale"):
        wm.GumbelMCTS(A, 2**20, qtransform=wm.qtransform_completed_by_mix_value(value_scale=1e25))


def test_gumbel_root_value_stays_finite_with_huge_values():
    out = wm.GumbelMCTS(A, 400).search(constant_model(1e35), root(value=1e35))
    check_search(out, 1, 400)
    out = wm.GumbelMCTS(A, 64, qtransform=wm.qtransform_completed_by_mix_value(
        rescale_values=False)).search(constant_model(3e38), root(value=3e38))
    assert torch.isfinite(out.policy).all()


# -- 4. tabular overflow ----------------------------------------------------------------------------

def test_rewards_that_would_sum_to_inf_are_refused_and_the_model_kept():
    tm = wm.TabularModel(2, 1)
    tm.update([0], [0], [1e308], [1], [False])
    before = tm.state_dict()
    with pytest.raises(ValueError, match="rewards"):
        tm.update([0], [0], [1e308], [1], [False])
    after = tm.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in ("counts", "reward_sums"))
    again = wm.TabularModel(2, 1)
    again.load_state_dict(after)  # the model's own state loads


def test_value_iteration_never_reports_convergence_on_non_finite_values():
    tm = wm.TabularModel(2, 1)
    tm.update([0, 1], [0, 0], [1e307, 1e307], [1, 0], [False, False])
    with pytest.raises(ValueError, match="overflowed"):
        tm.value_iteration(gamma=0.999999)
    with pytest.raises(ValueError, match="overflowed"):
        tm.policy_iteration(gamma=0.999999)


def test_counts_cannot_overflow_int64():
    tm = wm.TabularModel(2, 1)
    state = tm.state_dict()
    state.update(pairs=torch.tensor([0, 0]), next_states=torch.tensor([0, 1]),
                 terminated=torch.tensor([False, False]),
                 counts=torch.tensor([2**62, 2**62]), reward_sums=torch.tensor([0.0, 0.0]))
    with pytest.raises(ValueError, match="int64"):
        tm.load_state_dict(state)
    assert tm.num_transitions == 0
    state.update(pairs=torch.tensor([0]), next_states=torch.tensor([0]),
                 terminated=torch.tensor([False]), counts=torch.tensor([2**61]),
                 reward_sums=torch.tensor([0.0]))
    tm.load_state_dict(state)
    tm.merge(tm)  # 2**62
    with pytest.raises(ValueError, match="int64"):
        tm.merge(tm)
    assert tm.num_transitions == 2**62


# -- 5. planner buffers do not escape ---------------------------------------------------------------

@pytest.mark.parametrize("planner", [wm.CEM, wm.ICEM, wm.MPPI])
def test_dynamics_writing_its_action_in_place_does_not_change_the_plan(planner):
    def vandal(state, action):
        reward = -(action - 0.3).square().sum(-1)
        action.mul_(100.0)  # in place, after use
        return state, reward

    plan = planner(horizon=4, action_dim=2, population=32, elites=8, iterations=3,
                   seed=0).plan(vandal, torch.zeros(2, 3))
    assert plan.actions.abs().max() <= 1.0
    assert plan.mean.abs().max() <= 1.0


@pytest.mark.parametrize("planner", [wm.CEM, wm.ICEM, wm.MPPI])
def test_actions_a_dynamics_keeps_are_not_overwritten(planner):
    kept = []

    def keeper(state, action):
        kept.append((action, action.clone()))
        return state, -action.square().sum(-1)

    planner(horizon=3, action_dim=2, population=16, elites=4, iterations=3,
            seed=0).plan(keeper, torch.zeros(1, 3))
    assert all(torch.equal(a, copy) for a, copy in kept)


def test_dynamics_writing_its_state_does_not_change_the_callers_state():
    state = torch.ones(1, 3)

    def writes_state(s, a):
        s.zero_()
        return s + 1, a.sum(-1)

    wm.CEM(horizon=2, action_dim=1, population=1, elites=1, iterations=1).plan(writes_state, state)
    assert torch.equal(state, torch.ones(1, 3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mppi_with_only_minus_inf_rewards_returns_finite_actions(dtype):
    def forbidden(state, action):
        return state, torch.full((state.shape[0],), -float("inf"), dtype=state.dtype)

    plan = wm.MPPI(horizon=3, action_dim=2, population=16, iterations=2).plan(
        forbidden, torch.zeros(2, 2, dtype=dtype))
    assert torch.isfinite(plan.actions).all() and torch.isfinite(plan.mean).all()


@pytest.mark.parametrize("beta", [400.0, 1e6])
def test_icem_noise_beta_with_a_non_finite_filter_is_refused(beta):
    with pytest.raises(ValueError, match="noise_beta"):
        wm.ICEM(horizon=30, action_dim=1, noise_beta=beta)


# -- 6. native packages ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def package(tmp_path_factory):
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            return self.lin(x)

    torch.manual_seed(0)
    cache = tmp_path_factory.mktemp("native")
    native = wm.NativeModel.export(Net(), (torch.randn(3, 4),), cache_dir=cache)
    return native


def _rewrite(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, change(info.filename, zin.read(info.filename)))


def test_package_with_a_bit_flip_in_its_library_is_refused(package, tmp_path):
    data = bytearray(Path(package.path).read_bytes())
    with zipfile.ZipFile(package.path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(".so"))
    # Flip bytes inside the stored library (past its local header).
    name_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    for k in range(64):
        data[start + 1000 + 97 * k] ^= 0xFF
    corrupted = tmp_path / "flipped.pt2"
    corrupted.write_bytes(bytes(data))
    before = set(os.listdir("/tmp"))
    with pytest.raises(ValueError, match="corrupted|manifest"):
        wm.NativeModel.load(corrupted)
    assert set(os.listdir("/tmp")) - before == set()


def test_package_with_tampered_metadata_is_refused(package, tmp_path):
    tampered = tmp_path / "tampered.pt2"
    _rewrite(package.path, tampered,
             lambda name, data: data.replace(b"float32:4", b"float32:1")
             if b"wmfast_inputs" in data and not name.endswith("wmfast_manifest.json") else data)
    with pytest.raises(ValueError, match="manifest"):
        wm.NativeModel.load(tampered)


def test_package_without_manifest_is_refused(package, tmp_path):
    bare = tmp_path / "bare.pt2"
    with zipfile.ZipFile(package.path) as zin, zipfile.ZipFile(bare, "w") as zout:
        for info in zin.infolist():
            if not info.filename.endswith("wmfast_manifest.json"):
                zout.writestr(info, zin.read(info.filename))
    with pytest.raises(ValueError, match="no wmfast manifest"):
        wm.NativeModel.load(bare)


def test_truncated_package_is_refused(package, tmp_path):
    data = Path(package.path).read_bytes()
    cut = tmp_path / "cut.pt2"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupted"):
        wm.NativeModel.load(cut)


def test_intact_package_still_loads(package, tmp_path):
    package.save(tmp_path / "copy.pt2")
    loaded = wm.NativeModel.load(tmp_path / "copy.pt2")
    x = torch.randn(5, 4)
    torch.testing.assert_close(loaded(x), package(x))


# -- 7. validation and messages ---------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    ({"max_depth": True}, "max_depth"), ({"num_threads": True}, "num_threads"),
    ({"seed": 1.5}, "seed"), ({"seed": "1"}, "seed"), ({"num_threads": 0}, "num_threads"),
])
def test_mcts_arguments_of_the_wrong_kind_are_named(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        wm.MCTS(A, 4, **kwargs)


@pytest.mark.parametrize("args, name", [((3, 2**31), "num_simulations"),
                                        ((2**31, 3), "num_actions")])
def test_out_of_range_integers_are_named_not_pybind_errors(args, name):
    with pytest.raises(ValueError, match=name) as error:
        wm.MCTS(*args)
    assert "incompatible function arguments" not in str(error.value)


def test_tabular_sizes_out_of_range_and_wrong_kinds_are_named():
    with pytest.raises(ValueError, match="num_states"):
        wm.TabularModel(2**70, 1)
    with pytest.raises(TypeError, match="num_states"):
        wm.TabularModel("6", 1)
    tm = wm.TabularModel(6, 1)
    state = tm.state_dict()
    state["num_states"] = "6"
    with pytest.raises(TypeError, match="num_states"):
        tm.load_state_dict(state)


@pytest.mark.parametrize("flag", [2, -1])
def test_terminated_must_be_zero_or_one(flag):
    tm = wm.TabularModel(2, 1)
    with pytest.raises(ValueError, match="terminated"):
        tm.update([0], [0], [1.0], [1], np.array([flag]))
    assert tm.num_transitions == 0


def test_reuse_of_the_wrong_kind_is_a_type_error():
    with pytest.raises(TypeError, match="reuse"):
        wm.MCTS(A, 4).search(constant_model(0.0), None, reuse="x", action_taken=[0])
    with pytest.raises(TypeError, match="reuse"):
        wm.MCTS(A, 4).search(constant_model(0.0), root(), reuse="x", action_taken=[0])


def test_nan_in_the_root_latent_is_named_as_such():
    latent = torch.zeros(2, 2)
    latent[1, 0] = float("nan")
    with pytest.raises(ValueError, match="root.latent"):
        wm.MCTS(A, 4).search(constant_model(0.0), wm.Root(latent, torch.zeros(2, A),
                                                          torch.zeros(2)))
    with pytest.raises(ValueError, match="root.latent"):
        wm.MCTS(A, 4).search(constant_model(0.0), wm.Root(latent.double(), torch.zeros(2, A),
                                                          torch.zeros(2)))


def test_cem_arguments_of_the_wrong_kind_are_named():
    with pytest.raises(TypeError, match="seed"):
        wm.CEM(horizon=2, action_dim=1, seed=1.5)
    with pytest.raises(TypeError, match="elites"):
        wm.CEM(horizon=2, action_dim=1, elites=True)
    with pytest.raises(ValueError, match="discount"):
        wm.CEM(horizon=2, action_dim=1, discount=2.0)


def test_mppi_options_are_validated_by_name():
    """Found by the fuzz suite: MPPI converted temperature with float() before validation."""
    import wmfast as wm

    for value in (None, "x", True):
        with pytest.raises(TypeError, match="temperature must be a real number"):
            wm.MPPI(horizon=2, action_dim=1, temperature=value)
    with pytest.raises(TypeError, match="update_std must be a bool"):
        wm.MPPI(horizon=2, action_dim=1, update_std=1)
