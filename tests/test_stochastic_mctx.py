"""wm.StochasticMCTS against mctx's stochastic_muzero_policy, run live in the same process.

A random model (small tanh networks for the decision and the chance function) is written once in
jax; mctx runs it directly and wmfast through a Python model that calls the same jitted
functions, so both searches see the same numbers. Whole batched trees are compared node for node
(visits, values, priors, rewards, discounts, parents, children; atol 1e-3) in mctx's [B, N, A + C]
layout, including a two-player model, terminal steps, illegal root actions and max_depth.

Skipped when jax or mctx is not installed (``pip install jax jaxlib mctx``).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

jax = pytest.importorskip("jax")
mctx = pytest.importorskip("mctx")
jnp = pytest.importorskip("jax.numpy")
mctx_policies = pytest.importorskip("mctx._src.policies")

import wmfast as wm

D = 6  # latent width


def _params(seed, A, C, discount_mode):
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return jnp.asarray(rng.normal(size=shape) * scale, dtype=jnp.float32)

    return {
        "Md": normal(D, D, scale=D**-0.5),
        "Wd": normal(A, D),
        "Wc": normal(D, C, scale=2.0),
        "vd": normal(D),
        "Mc": normal(D, D, scale=D**-0.5),
        "Vc": normal(C, D),
        "Wa": normal(D, A, scale=2.0),
        "vs": normal(D),
        "wr": normal(D),
        # 1: one player; -1: two-player zero-sum; 0.5: terminal (discount 0) where the state's
        # first coordinate exceeds 0.5, else 1.
        "mode": jnp.float32(discount_mode),
    }


def _decision(params, embedding, action):
    afterstate = jnp.tanh(embedding @ params["Md"] + params["Wd"][action])
    return afterstate, afterstate @ params["Wc"], afterstate @ params["vd"]


def _chance(params, afterstate, outcome):
    state = jnp.tanh(afterstate @ params["Mc"] + params["Vc"][outcome])
    mode = params["mode"]
    ones = jnp.ones(state.shape[0], jnp.float32)
    discount = jnp.where(
        mode == 0.5, jnp.where(state[:, 0] > 0.5, 0.0, 1.0), mode * ones
    ).astype(jnp.float32)
    return state, state @ params["Wa"], state @ params["vs"], state @ params["wr"], discount


_decision_jit = jax.jit(_decision)
_chance_jit = jax.jit(_chance)


def _mctx_decision_fn(params, rng_key, action, embedding):
    del rng_key
    afterstate, chance_logits, value = _decision(params, embedding, action)
    return (
        mctx.DecisionRecurrentFnOutput(chance_logits=chance_logits, afterstate_value=value),
        afterstate,
    )


def _mctx_chance_fn(params, rng_key, outcome, afterstate):
    del rng_key
    state, logits, value, reward, discount = _chance(params, afterstate, outcome)
    return (
        mctx.ChanceRecurrentFnOutput(
            action_logits=logits, value=value, reward=reward, discount=discount
        ),
        state,
    )


class JaxStochasticModel:
    """The same functions for wmfast, with numpy in between; counts the rows evaluated."""

    def __init__(self, params):
        self.params = params
        self.decision_rows = self.chance_rows = 0

    def decision(self, latent, action):
        self.decision_rows += latent.shape[0]
        afterstate, logits, value = _decision_jit(
            self.params, jnp.asarray(latent.numpy()), jnp.asarray(action.numpy())
        )
        return wm.Afterstate(
            torch.from_numpy(np.array(afterstate)),
            torch.from_numpy(np.array(logits)),
            torch.from_numpy(np.array(value)),
        )

    def chance(self, afterstate, outcome):
        self.chance_rows += afterstate.shape[0]
        state, logits, value, reward, discount = _chance_jit(
            self.params, jnp.asarray(afterstate.numpy()), jnp.asarray(outcome.numpy())
        )
        return wm.Step(
            torch.from_numpy(np.array(state)),
            torch.from_numpy(np.array(reward)),
            torch.from_numpy(np.array(logits)),
            torch.from_numpy(np.array(value)),
            torch.from_numpy(np.array(discount)),
        )


@functools.cache
def _mctx_policy(num_simulations, max_depth, pb_c_init):
    """mctx's policy, jitted, returning (policy output, whole tree): the policy hands back the
    tree cut to its decision edges, so the tree is taken from the last _mask_tree call."""

    def run(params, root_logits, root_value, root_embedding, invalid):
        root = mctx.RootFnOutput(
            prior_logits=root_logits, value=root_value, embedding=root_embedding
        )
        trees = []
        mask_tree = mctx_policies._mask_tree

        def recording_mask_tree(tree, num_actions, mode):
            trees.append(tree)
            return mask_tree(tree, num_actions, mode)

        mctx_policies._mask_tree = recording_mask_tree
        try:
            out = _stochastic_policy(
                params, root, num_simulations, max_depth, invalid, pb_c_init
            )
        finally:
            mctx_policies._mask_tree = mask_tree
        return out, trees[-1]

    return jax.jit(run)


def _stochastic_policy(params, root, num_simulations, max_depth, invalid, pb_c_init):
    return mctx.stochastic_muzero_policy(
        params,
        jax.random.PRNGKey(0),
        root,
        _mctx_decision_fn,
        _mctx_chance_fn,
        num_simulations=num_simulations,
        invalid_actions=invalid,
        max_depth=max_depth,
        dirichlet_fraction=0.0,
        pb_c_init=pb_c_init,
    )


def _compare(seed, B, A, C, N, discount_mode, max_depth=None, legal=None, pb_c_init=1.25):
    params = _params(seed, A, C, discount_mode)
    rng = np.random.default_rng(seed + 1000)
    embedding = rng.normal(size=(B, D)).astype(np.float32)
    logits = rng.normal(size=(B, A)).astype(np.float32)
    value = rng.normal(size=B).astype(np.float32)
    invalid = np.zeros((B, A), np.float32) if legal is None else (~legal).astype(np.float32)
    expected, mt = _mctx_policy(N, max_depth, pb_c_init)(
        params, jnp.asarray(logits), jnp.asarray(value), jnp.asarray(embedding),
        jnp.asarray(invalid),
    )
    model = JaxStochasticModel(params)
    planner = wm.StochasticMCTS(
        A, C, N, dirichlet_fraction=0.0, max_depth=max_depth, pb_c_init=pb_c_init
    )
    result = planner.search(
        model, wm.Root(torch.from_numpy(embedding), logits, value), legal_actions=legal
    )
    tree = result.tree
    # Every expansion called exactly one of the two functions.
    assert model.decision_rows + model.chance_rows == B * N
    decisions, chances = result.model_calls
    assert 1 <= decisions + chances <= 2 * N

    used = np.asarray(mt.node_visits) > 0
    is_decision = np.asarray(mt.embeddings.is_decision_node)
    np.testing.assert_array_equal(np.asarray(tree.is_chance)[used], ~is_decision[used])
    np.testing.assert_array_equal(tree.node_visits, np.asarray(mt.node_visits))
    for name in ("raw_values", "node_values"):
        np.testing.assert_allclose(
            getattr(tree, name), np.asarray(getattr(mt, name)), atol=1e-3, err_msg=name
        )
    np.testing.assert_array_equal(tree.parents, np.asarray(mt.parents))
    # mctx numbers outcome edges A + c.
    action_from_parent = np.asarray(tree.action_from_parent).copy()
    state_nodes = ~np.asarray(tree.is_chance) & (action_from_parent >= 0)
    action_from_parent[state_nodes] += A
    np.testing.assert_array_equal(action_from_parent, np.asarray(mt.action_from_parent))

    def joined(decision_name, chance_name):
        return np.concatenate(
            [np.asarray(getattr(tree, decision_name)), np.asarray(getattr(tree, chance_name))],
            axis=-1,
        )

    np.testing.assert_array_equal(
        joined("children_index", "chance_children_index"), np.asarray(mt.children_index)
    )
    np.testing.assert_array_equal(
        joined("children_visits", "chance_children_visits"), np.asarray(mt.children_visits)
    )
    for mine, theirs in (
        (("children_values", "chance_children_values"), "children_values"),
        (("children_rewards", "chance_children_rewards"), "children_rewards"),
        (("children_discounts", "chance_children_discounts"), "children_discounts"),
    ):
        np.testing.assert_allclose(
            joined(*mine), np.asarray(getattr(mt, theirs)), atol=1e-3, err_msg=theirs
        )
    # Priors: a decision node's softmax over its A logits, a chance node's over its C.
    mt_logits = np.asarray(mt.children_prior_logits)
    decision_priors = np.asarray(jax.nn.softmax(mt_logits[..., :A], axis=-1))
    chance_probs = np.asarray(jax.nn.softmax(mt_logits[..., A:], axis=-1))
    dec = used & is_decision
    cha = used & ~is_decision
    np.testing.assert_allclose(np.asarray(tree.children_priors)[dec], decision_priors[dec], atol=1e-3)
    np.testing.assert_allclose(np.asarray(tree.chance_children_probs)[cha], chance_probs[cha], atol=1e-3)
    np.testing.assert_allclose(result.policy, np.asarray(expected.action_weights), atol=1e-3)
    np.testing.assert_allclose(
        result.root_value, np.asarray(mt.node_values)[:, 0], atol=1e-3
    )
    return result


@pytest.mark.parametrize(
    "discount_mode, max_depth",
    [(1.0, None), (-1.0, None), (0.5, None), (1.0, 4), (-1.0, 3)],
    ids=["one-player", "two-player", "terminal", "max-depth-4", "two-player-max-depth-3"],
)
def test_whole_batch_matches_live_mctx(discount_mode, max_depth):
    result = _compare(0, B=5, A=4, C=6, N=40, discount_mode=discount_mode, max_depth=max_depth)
    if max_depth is not None:
        # The trees reached the depth limit (re-evaluated leaves leave node slots unused).
        assert (result.tree.node_visits == 0).any()


def test_matches_live_mctx_with_illegal_root_actions_and_wide_chance():
    legal = np.ones((4, 3), bool)
    legal[1, 1:] = False
    legal[2, 0] = False
    _compare(1, B=4, A=3, C=9, N=30, discount_mode=1.0, legal=legal)


def test_matches_live_mctx_with_more_actions_than_outcomes():
    _compare(2, B=3, A=7, C=2, N=50, discount_mode=-1.0, max_depth=6, pb_c_init=2.0)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), mode=st.sampled_from([1.0, -1.0, 0.5]))
def test_random_models_match_live_mctx(seed, mode):
    # Same shapes each time: the jitted mctx search compiles once.
    _compare(seed, B=4, A=4, C=5, N=24, discount_mode=mode)
