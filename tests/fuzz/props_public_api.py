"""Property-based fuzzing of wmfast's public entry points (hypothesis).

Not collected by the default test run directly: tests/fuzz/test_fuzz.py runs this file in a
subprocess (so a crash is a failed test, not a dead test run) with a per-example hang guard.
Examples per property: $WMFAST_FUZZ_EXAMPLES (default 12).

Properties: every call either returns a valid result (visits sum to B * N, actions legal, finite
policies summing to 1, plans within the bounds, finite values) or raises ValueError/TypeError
(or the model's own exception) whose message names what was wrong; a rejected call changes
nothing.
"""

import faulthandler
import math
import os

import numpy as np
import pytest
import torch
import wmfast as wm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("WMFAST_FUZZ_EXAMPLES", "12"))
HANG_SECONDS = 60
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                    suppress_health_check=list(HealthCheck), database=None)


class ModelError(Exception):
    """What hostile models raise."""


@pytest.fixture(autouse=True)
def hang_guard():
    # A hang ends the process with every thread's traceback (the parent reports it).
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


numbers = st.one_of(
    st.sampled_from([0, 1, -1, 0.5, 1e-45, 1e-8, 1e20, 3e38, 1e308, float("nan"), float("inf"),
                     -float("inf"), True, 2**31, 2**70, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10),
    st.sampled_from(["x", None, 1.5, [1]]))


def names_an_argument(error, names):
    text = str(error)
    return any(name in text for name in names)


# -- MCTS / GumbelMCTS ------------------------------------------------------------------------------

MCTS_ARGS = ["discount", "pb_c_init", "pb_c_base", "dirichlet_alpha", "dirichlet_fraction", "seed",
             "max_depth", "temperature", "num_threads"]
GUMBEL_ARGS = ["max_num_considered_actions", "gumbel_scale", "discount", "seed", "max_depth",
               "num_threads"]


@SETTINGS
@given(kind=st.sampled_from(["mcts", "gumbel"]), data=st.data())
def test_constructors_accept_or_name_the_argument(kind, data):
    names = MCTS_ARGS if kind == "mcts" else GUMBEL_ARGS
    chosen = data.draw(st.lists(st.sampled_from(names), max_size=3, unique=True))
    kwargs = {name: data.draw(numbers) for name in chosen}
    num_actions = data.draw(st.one_of(st.integers(-2, 5), numbers))
    num_simulations = data.draw(st.one_of(st.integers(-2, 9), numbers))
    cls = wm.MCTS if kind == "mcts" else wm.GumbelMCTS
    try:
        cls(num_actions, num_simulations, **kwargs)
    except (ValueError, TypeError) as error:
        assert names_an_argument(error, [*kwargs, "num_actions", "num_simulations"]), error


def hostile_model(A, behaviour, scale, k, rng_seed):
    calls = {"n": 0}
    kept = []
    gen = torch.Generator().manual_seed(rng_seed)

    def fn(latent, action):
        calls["n"] += 1
        b = latent.shape[0]
        value = scale * (torch.rand(b, generator=gen) * 2 - 1)
        reward = scale * (torch.rand(b, generator=gen) * 2 - 1)
        logits = torch.randn(b, A, generator=gen)
        discount = torch.ones(b)
        if behaviour == "nan" and calls["n"] == k:
            value[0] = float("nan")
        if behaviour == "raise" and calls["n"] == k:
            raise ModelError("model failed")
        if behaviour == "inplace":
            action.fill_(A + 5)
            latent.mul_(float("nan"))
            return wm.Step(torch.zeros_like(latent), reward, logits, value, discount)
        if behaviour == "keep":
            kept.append((latent, action))
        if behaviour == "minus_inf_logits":
            logits[:, : A - 1] = -float("inf")
        if behaviour == "two_player":
            discount = -torch.ones(b)
        if behaviour == "terminal":
            discount = torch.zeros(b)
        return wm.Step(latent + 1, reward, logits, value, discount)

    return fn, kept


behaviours = st.sampled_from(["plain", "nan", "raise", "inplace", "keep", "minus_inf_logits",
                              "two_player", "terminal"])
scales = st.sampled_from([0.0, 1.0, 1e10, 1e35, 1e38, 3e38])


def check_result(out, B, A, N, legal):
    assert out.visit_counts.shape == (B, A)
    assert (out.visit_counts.sum(1) == N).all()
    assert (out.visit_counts[~legal] == 0).all()
    assert legal[torch.arange(B), out.action].all()
    assert torch.isfinite(out.policy).all() and (out.policy >= 0).all()
    torch.testing.assert_close(out.policy.sum(1), torch.ones(B))
    assert (out.policy[~legal] == 0).all() or out.gumbel is None
    assert torch.isfinite(out.root_value).all() and torch.isfinite(out.q_values).all()


@SETTINGS
@given(gumbel=st.booleans(), B=st.integers(1, 4), A=st.integers(1, 5), N=st.integers(1, 24),
       max_depth=st.sampled_from([None, 1, 2, 5]), behaviour=behaviours, scale=scales,
       k=st.integers(1, 24), seed=st.integers(0, 2**32), discount=st.sampled_from([0.0, 0.9, 1.0]),
       qtransform=st.sampled_from(["parent_and_siblings", "running_min_max", "min_max"]),
       legal_seed=st.integers(0, 1000), reuse=st.booleans())
def test_search_returns_a_valid_result_or_a_named_error(gumbel, B, A, N, max_depth, behaviour,
                                                        scale, k, seed, discount, qtransform,
                                                        legal_seed, reuse):
    legal = torch.rand(B, A, generator=torch.Generator().manual_seed(legal_seed)) < 0.7
    legal[torch.arange(B), torch.randint(0, A, (B,))] = True
    fn, kept = hostile_model(A, behaviour, scale, k, seed)
    if gumbel:
        planner = wm.GumbelMCTS(A, N, max_depth=max_depth, discount=discount, seed=seed)
    else:
        q = wm.qtransform_by_min_max(-1, 1) if qtransform == "min_max" else qtransform
        planner = wm.MCTS(A, N, max_depth=max_depth, discount=discount, seed=seed, qtransform=q)
    root = wm.Root(torch.zeros(B, 2), torch.randn(B, A), scale * torch.rand(B))
    try:
        out = planner.search(fn, root, legal_actions=legal)
    except ModelError:
        assert behaviour == "raise"
        return
    except (ValueError, TypeError) as error:
        assert names_an_argument(error, ["Step.", "overflowed", "root."]), error
        return
    check_result(out, B, A, N, legal)
    for latent, action in kept:  # references a model kept still hold what it was given
        assert ((action >= 0) & (action < A)).all()
    if reuse and not gumbel and behaviour != "raise":
        try:
            again = planner.search(fn, None, reuse=out, action_taken=out.action)
        except (ValueError, TypeError) as error:
            assert names_an_argument(error, ["Step.", "overflowed", "action_taken"]), error
            return
        except ModelError:
            return
        assert (again.visit_counts.sum(1) >= N).all()
        assert torch.isfinite(again.policy).all()


# -- CEM / MPPI / iCEM -------------------------------------------------------------------------------

@SETTINGS
@given(method=st.sampled_from(["CEM", "ICEM", "MPPI"]), H=st.integers(1, 5), D=st.integers(1, 3),
       pop=st.integers(1, 24), its=st.integers(1, 3), B=st.integers(1, 3),
       dtype=st.sampled_from([torch.float32, torch.float64]),
       behaviour=st.sampled_from(["plain", "inplace", "keep", "nan", "minus_inf", "huge", "raise"]),
       k=st.integers(1, 10), low=st.sampled_from([-1.0, -2.5, 0.0]), width=st.sampled_from([0.0, 0.5, 3.0]),
       extra=st.dictionaries(st.sampled_from(["alpha", "discount", "min_std", "noise_beta",
                                              "temperature", "keep_elites", "seed"]), numbers,
                             max_size=2))
def test_planners_stay_in_bounds_or_name_the_error(method, H, D, pop, its, B, dtype, behaviour, k,
                                                   low, width, extra):
    calls = {"n": 0}
    kept = []

    def dynamics(state, action):
        calls["n"] += 1
        reward = -(action - 0.2).square().sum(-1).to(state.dtype)
        if behaviour == "inplace":
            action.mul_(1e6)
            state.fill_(float("nan"))
            return torch.zeros_like(state), reward
        if behaviour == "keep":
            kept.append((action, action.clone()))
        if behaviour == "nan" and calls["n"] == k:
            reward = reward * float("nan")
        if behaviour == "minus_inf":
            reward = torch.full_like(reward, -float("inf"))
        if behaviour == "huge":
            reward = reward * 1e300 if dtype == torch.float64 else reward * 3e38
        if behaviour == "raise" and calls["n"] == k:
            raise ModelError("dynamics failed")
        return state + 0.1, reward

    cls = {"CEM": wm.CEM, "ICEM": wm.ICEM, "MPPI": wm.MPPI}[method]
    kwargs = {"population": pop, "iterations": its, "action_low": low, "action_high": low + width}
    if method != "MPPI":
        kwargs["elites"] = max(1, pop // 4)
    for name in ("noise_beta", "keep_elites"):
        if name in extra and method != "ICEM":
            extra.pop(name)
    if "temperature" in extra and method != "MPPI":
        extra.pop("temperature")
    try:
        planner = cls(horizon=H, action_dim=D, **kwargs, **extra)
    except (ValueError, TypeError) as error:
        assert names_an_argument(error, [*extra, "elites", "keep_elites", "population"]), error
        return
    try:
        plan = planner.plan(dynamics, torch.zeros(B, 2, dtype=dtype))
    except ModelError:
        assert behaviour == "raise"
        return
    except (ValueError, TypeError) as error:
        assert behaviour in ("nan", "huge") and "NaN" in str(error), error
        return
    assert plan.actions.shape == (B, H, D)
    assert torch.isfinite(plan.actions).all() and torch.isfinite(plan.mean).all()
    assert (plan.actions >= low - 1e-6).all() and (plan.actions <= low + width + 1e-6).all()
    for action, copy in kept:
        assert torch.equal(action, copy)


# -- TabularModel ------------------------------------------------------------------------------------

def snapshot(tm):
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v)
            for k, v in tm.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)


ops = st.lists(st.tuples(st.sampled_from(["update", "bad_update", "merge", "load", "plan"]),
                         st.integers(0, 2**16)), min_size=1, max_size=8)


@SETTINGS
@given(S=st.integers(1, 6), A=st.integers(1, 3), ops=ops,
       reward_scale=st.sampled_from([1.0, 1e100, 1e307, 1.7e308]))
def test_tabular_operations_match_a_reference_and_rejected_calls_change_nothing(S, A, ops,
                                                                                reward_scale):
    tm = wm.TabularModel(S, A)
    counts = {}
    for op, seed in ops:
        rng = np.random.default_rng(seed)
        before = snapshot(tm)
        n = int(rng.integers(0, 5))
        s, a, s2 = rng.integers(0, S, n), rng.integers(0, A, n), rng.integers(0, S, n)
        r = rng.uniform(-1, 1, n) * reward_scale
        done = rng.random(n) < 0.3
        try:
            if op == "update":
                tm.update(s, a, r, s2, done)
                for x in zip(s, a, s2, done):
                    counts[tuple(map(int, x))] = counts.get(tuple(map(int, x)), 0) + 1
            elif op == "bad_update":
                bad = rng.integers(0, 5)
                args = [s, a, r, s2, done]
                if n == 0:
                    args = [[0], [0], [float("nan")], [0], [False]]
                elif bad == 0:
                    args[0] = s + S
                elif bad == 1:
                    args[2] = np.where(np.arange(n) == n - 1, np.nan, r)
                elif bad == 2:
                    args[4] = np.full(n, 2)
                elif bad == 3:
                    args[1] = a - A
                else:
                    args[3] = s2.astype(float) + 0.5
                tm.update(*args)
                pytest.fail(f"a bad update was accepted: {args}")
            elif op == "merge":
                tm.merge(tm)
                counts = {key: 2 * c for key, c in counts.items()}
            elif op == "load":
                state = snapshot(tm)
                if seed % 2:
                    state["counts"] = state["counts"] * 0 - 1 if len(state["counts"]) else \
                        torch.tensor([-1])
                tm.load_state_dict(state)
            else:
                sol = tm.value_iteration(gamma=float(rng.uniform(0, 0.99)), max_iters=500)
                if sol.converged:
                    assert torch.isfinite(sol.values).all()
                    assert torch.isfinite(sol.q_values).all()
        except (ValueError, TypeError, KeyError) as error:
            assert str(error), error
            if op != "plan":
                assert same(before, snapshot(tm)), f"{op} was rejected but changed the model"
        except RuntimeWarning:
            pass
    visits = tm.transition_counts(dense=True)
    for (s, a, s2, _), c in counts.items():
        assert int(visits[s, a, s2]) >= c


# -- λ-returns ---------------------------------------------------------------------------------------

@SETTINGS
@given(H=st.integers(1, 5), N=st.integers(1, 3),
       convention=st.sampled_from(["dreamerv3-torch", "dreamerv3-2023", "dreamerv3-2024", "x"]),
       discount=numbers, lam=numbers)
def test_lambda_return_is_finite_or_names_the_error(H, N, convention, discount, lam):
    rewards, values = torch.randn(H + 1, N), torch.randn(H + 1, N)
    continues = (torch.rand(H + 1, N) < 0.8).float()
    try:
        out = wm.lambda_return(rewards, values, continues, discount=discount, lam=lam,
                               convention=convention)
    except (ValueError, TypeError) as error:
        assert names_an_argument(error, ["discount", "lam", "convention", "rewards", "values",
                                         "continues"]), error
        return
    assert torch.isfinite(out).all() or not (math.isfinite(float(discount)) and
                                             math.isfinite(float(lam)))
