"""The output and input conventions of every planner (DESIGN.md, "Conventions for every public
result"): results are torch tensors with the documented dtype and shape, the caller's own
(writable, no warning, no effect on later results when written to), and floating-point numpy
inputs reach torch code in ``torch.get_default_dtype()``."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import fields

import gymnasium as gym
import numpy as np
import pytest
import torch
import wmfast as wm
from wmfast.agents import TabularAgent

B, A, L = 5, 4, 3


@contextmanager
def default_dtype(dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def expect(tensor, dtype, shape):
    assert isinstance(tensor, torch.Tensor), type(tensor)
    assert tensor.dtype == dtype, (tensor.dtype, dtype)
    assert tuple(tensor.shape) == tuple(shape), (tuple(tensor.shape), shape)
    assert tensor.device.type == "cpu"


def scribble(tensor):
    """Writes over a result in place, as a user may: must not warn or fail."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.as_tensor(tensor)  # read-only numpy arrays used to warn here
        if tensor.dtype == torch.bool:
            tensor.logical_not_()
        else:
            tensor.add_(7)


class Recorder:
    """A small deterministic model that records the latent dtypes it is given."""

    def __init__(self):
        self.dtypes = []

    def recurrent_inference(self, latent, action):
        self.dtypes.append(latent.dtype)
        n = latent.shape[0]
        nxt = torch.tanh(latent + action[:, None].to(latent.dtype) * 0.3)
        logits = torch.stack([nxt.sum(1) * k for k in range(A)], 1).float()
        return wm.Step(nxt, nxt[:, 0].float(), logits, nxt[:, 1].float(), torch.ones(n))


def root(seed=0, latent_dtype=np.float32):
    rng = np.random.default_rng(seed)
    return wm.Root(rng.normal(size=(B, L)).astype(latent_dtype),
                   rng.normal(size=(B, A)).astype(np.float32), rng.normal(size=B))


# -- tree search -------------------------------------------------------------------------------

@pytest.mark.parametrize("planner", [wm.MCTS, wm.GumbelMCTS])
def test_search_results_are_owned_tensors(planner):
    N = 12
    out = planner(A, N, seed=1).search(Recorder(), root())
    expect(out.action, torch.int64, [B])
    expect(out.visit_counts, torch.int32, [B, A])
    expect(out.policy, torch.float32, [B, A])
    expect(out.root_value, torch.float32, [B])
    expect(out.q_values, torch.float32, [B, A])
    if planner is wm.GumbelMCTS:
        expect(out.gumbel, torch.float32, [B, A])
    else:
        assert out.gumbel is None
    tree = out.tree
    for name in ("node_visits", "parents", "action_from_parent"):
        expect(getattr(tree, name), torch.int32, [B, N + 1])
    for name in ("raw_values", "node_values"):
        expect(getattr(tree, name), torch.float32, [B, N + 1])
    expect(tree.children_index, torch.int32, [B, N + 1, A])
    expect(tree.children_visits, torch.int32, [B, N + 1, A])
    for name in ("children_prior_logits", "children_priors", "children_values",
                 "children_rewards", "children_discounts"):
        expect(getattr(tree, name), torch.float32, [B, N + 1, A])
    expect(tree.root_invalid_actions, torch.bool, [B, A])
    expect(tree.q_values, torch.float32, [B, N + 1, A])
    expect(tree.latents, torch.float32, [B, N + 1, L])
    assert all(isinstance(v, torch.Tensor) for v in out.to_dict().values())
    assert "digraph" in out.to_dot(0)

    # Written over, the results change nothing else: the same search again gives the same.
    again = planner(A, N, seed=1).search(Recorder(), root())
    for name, value in out.to_dict().items():
        scribble(value)
    scribble(tree.latents)
    for name, value in again.to_dict().items():
        assert not torch.equal(value, out.to_dict()[name]), name
    fresh = planner(A, N, seed=1).search(Recorder(), root())
    for name, value in fresh.to_dict().items():
        assert torch.equal(value, again.to_dict()[name]), name


def test_writing_to_results_does_not_change_a_reused_search():
    def first_search():
        mcts = wm.MCTS(A, 20, seed=3, dirichlet_fraction=0.0, temperature=0.0)
        return mcts, mcts.search(Recorder(), root())

    mcts, kept = first_search()
    taken = kept.action.clone()
    expected = mcts.search(Recorder(), None, reuse=kept, action_taken=taken)

    mcts, written = first_search()
    tree = written.tree  # built, then written over: the trees the reuse reads are the search's
    for value in (*written.to_dict().values(), tree.latents):
        scribble(value)
    result = mcts.search(Recorder(), None, reuse=written, action_taken=taken)
    for name, value in expected.to_dict().items():
        assert torch.equal(result.to_dict()[name], value), name
    torch.testing.assert_close(result.tree.latents, expected.tree.latents, rtol=0, atol=0)


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_numpy_root_latent_reaches_the_model_in_the_default_dtype(default):
    with default_dtype(default):
        for latent_dtype in (np.float64, np.float32, np.float16):
            model = Recorder()
            out = wm.MCTS(A, 4).search(model, root(latent_dtype=latent_dtype))
            assert set(model.dtypes) == {default}, (latent_dtype, model.dtypes)
            assert out.tree.latents.dtype == default
        model = Recorder()  # a list, too
        wm.GumbelMCTS(A, 4).search(model, wm.Root(root().latent.tolist(), np.zeros((B, A)),
                                                  [0.0] * B))
        assert set(model.dtypes) == {default}
        model = Recorder()  # a torch tensor is the caller's choice: kept as it is
        wm.MCTS(A, 4).search(model, wm.Root(torch.zeros(B, L, dtype=torch.float64),
                                            np.zeros((B, A)), np.zeros(B)))
        assert set(model.dtypes) == {torch.float64}


def test_search_takes_numpy_and_list_arguments():
    legal = np.ones((B, A), bool)
    legal[:, 0] = False
    out = wm.MCTS(A, 8).search(Recorder(), root(), legal_actions=legal.tolist())
    assert (out.visit_counts[:, 0] == 0).all()
    again = wm.MCTS(A, 8).search(Recorder(), None, reuse=out,
                                 action_taken=out.action.numpy(), legal_actions=legal)
    assert (again.visit_counts[:, 0] == 0).all()


# -- trajectory optimisation -------------------------------------------------------------------

def point_mass(state, action):
    nxt = state + action
    return nxt, -(nxt * nxt).sum(-1)


@pytest.mark.parametrize("planner_cls", [wm.CEM, wm.ICEM, wm.MPPI])
def test_plans_are_owned_tensors(planner_cls):
    H = 4

    def planner():
        return planner_cls(horizon=H, action_dim=2, population=32, elites=4, iterations=2,
                           seed=5)

    state = np.array([[1.0, -2.0], [0.5, 0.5]])  # float64: planned in the default dtype
    p = planner()
    plan = p.plan(point_mass, state)
    K = plan.elites.shape[1]
    for name, shape in (("actions", [2, H, 2]), ("mean", [2, H, 2]), ("std", [2, H, 2]),
                        ("returns", [2]), ("elites", [2, K, H, 2]), ("elite_returns", [2, K])):
        expect(getattr(plan, name), torch.float32, shape)
    expect(plan.first_action, torch.float32, [2, 2])

    reference = planner()
    first = reference.plan(point_mass, state)
    expected = reference.plan(point_mass, state, warm_start=first)
    kept = {f.name: getattr(first, f.name).clone() for f in fields(first)}
    for f in fields(plan):
        scribble(getattr(plan, f.name))  # written over after the plan
    after = p.plan(point_mass, state, warm_start=first)  # warm start: read, not written
    for name, value in kept.items():
        assert torch.equal(getattr(first, name), value), name
    for f in fields(expected):
        assert torch.equal(getattr(after, f.name), getattr(expected, f.name)), f.name
    returns = p.evaluate(point_mass, state, np.zeros((2, 3, H, 2)))
    expect(returns, torch.float32, [2, 3])
    expect(p.noise_filter(), torch.float64, [H, H])


def test_float64_numpy_state_reaches_the_dynamics_in_the_default_dtype():
    seen = []

    def dynamics(state, action):
        seen.append((state.dtype, action.dtype))
        return point_mass(state, action)

    for default in (torch.float32, torch.float64):
        seen.clear()
        with default_dtype(default):
            plan = wm.CEM(horizon=3, action_dim=2, population=8, elites=2, iterations=1).plan(
                dynamics, np.zeros((1, 2)), goal=[[0.0, 0.0]])
        assert set(seen) == {(default, default)} and plan.actions.dtype == default


def test_mpc_agent_actions_are_owned_tensors():
    space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    planner = wm.CEM(horizon=4, action_dim=2, population=32, elites=4, iterations=2, seed=0)
    agent = wm.MPCAgent(planner, point_mass, replan_every=2)
    clipped = wm.MPCAgent(planner, point_mass, replan_every=2, action_space=space)
    for a in (agent, clipped):
        obs = np.array([0.5, -0.25])  # float64 numpy observation
        first = a.act(obs)
        expect(first, torch.get_default_dtype(), [2])
        plan = a.last_plan.actions.clone()
        scribble(first)
        assert torch.equal(a.last_plan.actions, plan)  # the agent's plan is not written
        second = a.act(obs)  # the plan's next step
        planned = plan[0, 1].clamp(-1, 1) if a is clipped else plan[0, 1]
        torch.testing.assert_close(second, planned)
    batched = wm.MPCAgent(planner, point_mass, batched=True)
    expect(batched.act([[0.1, 0.2], [0.3, 0.4], [0.0, 0.0]]), torch.get_default_dtype(), [3, 2])


# -- tabular -----------------------------------------------------------------------------------

def small_model():
    rng = np.random.default_rng(0)
    S, A_ = 6, 3
    n = 200
    tm = wm.TabularModel(S, A_)
    tm.update(rng.integers(0, S, n), rng.integers(0, A_, n), rng.normal(size=n),
              rng.integers(0, S, n), rng.random(n) < 0.1)
    return tm


def test_tabular_results_are_owned_tensors():
    tm = small_model()
    S, A_ = tm.num_states, tm.num_actions
    sol = tm.value_iteration(gamma=0.9)
    expect(sol.values, torch.float64, [S])
    expect(sol.q_values, torch.float64, [S, A_])
    expect(sol.policy, torch.int64, [S])
    pi = tm.policy_iteration(gamma=0.9)
    expect(pi.policy, torch.int64, [S])
    expect(tm.visit_counts(), torch.int64, [S, A_])
    expect(tm.mean_rewards(), torch.float64, [S, A_])
    expect(tm.terminal_probs(), torch.float64, [S, A_])
    expect(tm.transition_probs(dense=True), torch.float64, [S, A_, S])
    expect(tm.transition_counts(dense=True), torch.int64, [S, A_, S])
    for matrix, data_dtype in ((tm.transition_probs(), torch.float64),
                               (tm.transition_counts(), torch.int64)):
        nnz = matrix.indices.shape[0]
        expect(matrix.indptr, torch.int64, [S * A_ + 1])
        expect(matrix.indices, torch.int32, [nnz])
        expect(matrix.data, data_dtype, [nnz])
        expect(matrix.uniform, torch.float64, [S * A_])
        expect(matrix.visited, torch.bool, [S * A_])
        expect(matrix.to_dense(), torch.float64, [S, A_, S])
    torch.testing.assert_close(tm.transition_probs().to_dense(), tm.transition_probs(dense=True),
                               equal_nan=True)
    next_states, rewards, terminated = tm.sample([0, 1, 2], [0, 0, 0], seed=0)
    expect(next_states, torch.int64, [3])
    expect(rewards, torch.float64, [3])
    expect(terminated, torch.bool, [3])
    state = tm.state_dict()
    n = state["pairs"].shape[0]
    for key, dtype in (("pairs", torch.int64), ("next_states", torch.int64),
                       ("terminated", torch.bool), ("counts", torch.int64),
                       ("reward_sums", torch.float64)):
        expect(state[key], dtype, [n])

    # Written over, results change neither the model nor later results.
    before = {"sol": tm.value_iteration(gamma=0.9), "probs": tm.transition_probs(dense=True),
              "state": tm.state_dict()}
    for value in (sol.values, sol.q_values, sol.policy, next_states, rewards, terminated,
                  *(state[k] for k in ("pairs", "counts", "reward_sums", "terminated"))):
        scribble(value)
    for name in ("indptr", "indices", "data", "uniform", "visited"):
        scribble(getattr(matrix, name))
    after = tm.value_iteration(gamma=0.9)
    for name in ("values", "q_values", "policy"):
        assert torch.equal(getattr(after, name), getattr(before["sol"], name)), name
    torch.testing.assert_close(tm.transition_probs(dense=True), before["probs"], equal_nan=True)
    for key, value in tm.state_dict().items():
        assert np.array_equal(np.asarray(value), np.asarray(before["state"][key])), key


def test_tabular_takes_tensors_and_old_numpy_state_dicts():
    tm = small_model()
    state = tm.state_dict()
    legacy = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    restored = wm.TabularModel(tm.num_states, tm.num_actions)
    restored.load_state_dict(legacy)
    assert torch.equal(restored.visit_counts(), tm.visit_counts())
    warm = tm.value_iteration(gamma=0.9, initial_values=tm.value_iteration(gamma=0.9).values)
    assert warm.iterations <= 2


def test_tabular_agent_plans_are_tensors_and_its_own():
    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True)
    agent = TabularAgent.for_env(env, seed=0)
    for episode in range(20):
        agent.run_episode(env, seed=episode)
    expect(agent.greedy_policy(), torch.int64, [16])
    assert isinstance(agent.act(0), int)
    expected = agent.replan()
    values = expected.values.clone()
    scribble(agent.plan.values)  # the agent's warm start is a copy
    again = agent.replan()
    torch.testing.assert_close(again.values, values, rtol=0, atol=1e-7)
    agent.run_episode(env, learn=False, policy=agent.greedy_policy())
