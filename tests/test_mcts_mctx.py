"""Agreement with mctx (google-deepmind/mctx), using the test suite its wheel ships.

* ``tree_test.py``'s four stored search trees (JSON) are reproduced node for node (atol 1e-3)
  by running wmfast on mctx's own test model: its root and recurrent functions are evaluated
  with jax and fed to wmfast through a Python model.
* ``policies_test.py``'s exact expectations for ``muzero_policy`` and ``gumbel_muzero_policy``
  (actions, visit counts, closed-form action weights, max_depth).
* Live comparisons of whole batched trees against mctx run in the same process.

Skipped when jax or mctx is not installed (``pip install jax jaxlib mctx``).
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import pytest
import torch

jax = pytest.importorskip("jax")
mctx = pytest.importorskip("mctx")
jnp = pytest.importorskip("jax.numpy")
tree_test = pytest.importorskip("mctx._src.tests.tree_test")

import wmfast as wm

jax.config.update("jax_threefry_partitionable", False)

TEST_DATA = os.path.join(os.path.dirname(mctx.__file__), "_src", "tests", "test_data")


class JaxModel:
    """mctx's tree_test model: embeddings are jax PRNG keys (kept as int64 pairs in torch)."""

    def __init__(self, num_actions, **env_config):
        fn = tree_test._prepare_recurrent_fn(num_actions, **env_config)
        self._fn = jax.jit(lambda action, embedding: fn((), None, action, embedding))

    def recurrent_inference(self, latent, action):
        embedding = jnp.asarray(latent.numpy().astype(np.uint32))
        out, embedding = self._fn(jnp.asarray(action.numpy(), dtype=jnp.int32), embedding)
        return wm.Step(
            latent=torch.from_numpy(np.array(embedding).astype(np.int64)),
            reward=torch.from_numpy(np.array(out.reward)),
            logits=torch.from_numpy(np.array(out.prior_logits)),
            value=torch.from_numpy(np.array(out.value)),
            discount=torch.from_numpy(np.array(out.discount)),
        )


def _root(batch_size, num_actions):
    root = tree_test._prepare_root(batch_size=batch_size, num_actions=num_actions)
    return root, wm.Root(
        latent=torch.from_numpy(np.asarray(root.embedding).astype(np.int64)),
        logits=np.asarray(root.prior_logits),
        value=np.asarray(root.value),
    )


def _qtransform(name, kwargs):
    if name == "qtransform_by_min_max":
        return wm.qtransform_by_min_max(**kwargs)
    if name == "qtransform_by_parent_and_siblings":
        return wm.qtransform_by_parent_and_siblings(**kwargs)
    if name == "qtransform_completed_by_mix_value":
        return wm.qtransform_completed_by_mix_value(**kwargs)
    raise AssertionError(name)


def _to_pytree(tree, b=0):
    """tree_test.tree_to_pytree for a wmfast tree."""
    priors = tree.children_priors

    def node(index, prior, action, reward):
        out = {
            "prior": round(float(prior), 10),
            "visit": int(tree.node_visits[b, index]),
            "value_view": round(float(tree.node_values[b, index]), 10),
            "raw_value_view": round(float(tree.raw_values[b, index]), 10),
            "child_stats": [],
            "evaluation_index": index,
        }
        if action is not None:
            out["action"] = action
        if reward is not None:
            out["reward"] = round(float(reward), 10)
        return out

    nodes = {0: node(0, 1.0, None, None)}
    for i in range(tree.node_visits.shape[1]):
        for a in range(tree.children_index.shape[2]):
            prior = priors[b, i, a]
            child = int(tree.children_index[b, i, a])
            if child >= 0:
                nodes[child] = node(child, prior, a, tree.children_rewards[b, i, a])
                nodes[i]["child_stats"].append(nodes[child])
            else:
                nodes[i]["child_stats"].append(
                    {"prior": round(float(prior), 10), "child_stats": [], "action": a}
                )
    return nodes[0]


def _assert_trees_close(expected, actual, path="root"):
    assert set(expected) == set(actual), f"{path}: keys {sorted(expected)} != {sorted(actual)}"
    for key, value in expected.items():
        if key == "child_stats":
            assert len(value) == len(actual[key]), f"{path}: number of children"
            for i, (e, a) in enumerate(zip(value, actual[key])):
                _assert_trees_close(e, a, f"{path}/{i}")
        elif isinstance(value, float):
            assert abs(value - actual[key]) <= 1e-3, f"{path}.{key}: {value} != {actual[key]}"
        else:
            assert value == actual[key], f"{path}.{key}: {value} != {actual[key]}"


def _legal(batch_size, num_actions):
    # tree_test: different invalid actions per batch element give trees of different depths.
    invalid = np.zeros([batch_size, num_actions], bool)
    invalid[1, 1:] = True
    invalid[2, 2:] = True
    return ~invalid


@pytest.mark.parametrize(
    "filename",
    [
        "muzero_tree.json",
        "muzero_qtransform_tree.json",
        "gumbel_muzero_tree.json",
        "gumbel_muzero_reward_tree.json",
    ],
)
def test_reproduces_stored_mctx_tree(filename):
    path = os.path.join(TEST_DATA, filename)
    if not os.path.exists(path):
        pytest.skip(f"mctx's test data {filename} is not installed")
    with open(path, "rb") as fd:
        data = json.load(fd)
    config = dict(data["algorithm_config"])
    num_actions = len(data["tree"]["child_stats"])
    num_simulations = data["tree"]["visit"] - 1
    qtransform = _qtransform(config.pop("qtransform"), config.pop("qtransform_kwargs", {}))
    batch_size = 3
    _, root = _root(batch_size, num_actions)
    model = JaxModel(num_actions, **data["env_config"])
    legal = _legal(batch_size, num_actions)
    if data["algorithm"] == "muzero":
        # The stored trees use dirichlet_fraction=0: the noise only renormalises the logits.
        assert config["dirichlet_fraction"] == 0.0
        planner = wm.MCTS(
            num_actions,
            num_simulations,
            pb_c_init=config["pb_c_init"],
            pb_c_base=float(config["pb_c_base"]),
            dirichlet_fraction=0.0,
            qtransform=qtransform,
        )
        result = planner.search(model, root, legal_actions=legal)
    else:
        planner = wm.GumbelMCTS(
            num_actions,
            num_simulations,
            max_num_considered_actions=config["max_num_considered_actions"],
            gumbel_scale=config["gumbel_scale"],
            qtransform=qtransform,
        )
        assert config["gumbel_scale"] == 0.0
        result = planner.search(model, root, legal_actions=legal)
    _assert_trees_close(data["tree"], _to_pytree(result.tree, 0))


def _mctx_tree_arrays(tree):
    priors = np.asarray(jax.nn.softmax(tree.children_prior_logits, axis=-1))
    return {
        "node_visits": np.asarray(tree.node_visits),
        "raw_values": np.asarray(tree.raw_values),
        "node_values": np.asarray(tree.node_values),
        "parents": np.asarray(tree.parents),
        "action_from_parent": np.asarray(tree.action_from_parent),
        "children_index": np.asarray(tree.children_index),
        "children_priors": priors,
        "children_visits": np.asarray(tree.children_visits),
        "children_values": np.asarray(tree.children_values),
        "children_rewards": np.asarray(tree.children_rewards),
        "children_discounts": np.asarray(tree.children_discounts),
    }


@pytest.mark.parametrize(
    "algorithm, qtransform_name, qtransform_kwargs, env_config, max_depth",
    [
        (
            "muzero",
            "qtransform_by_parent_and_siblings",
            {},
            {"discount": -1.0, "zero_reward": False},
            None,
        ),
        (
            "muzero",
            "qtransform_by_min_max",
            {"min_value": -2.0, "max_value": 2.0},
            {"discount": 0.9, "zero_reward": False},
            4,
        ),
        (
            "gumbel_muzero",
            "qtransform_completed_by_mix_value",
            {},
            {"discount": 0.997, "zero_reward": False},
            None,
        ),
        (
            "gumbel_muzero",
            "qtransform_completed_by_mix_value",
            {
                "value_scale": 0.3,
                "maxvisit_init": 10.0,
                "rescale_values": False,
                "use_mixed_value": False,
            },
            {"discount": -1.0, "zero_reward": True},
            3,
        ),
    ],
)
def test_whole_batch_matches_live_mctx(
    algorithm, qtransform_name, qtransform_kwargs, env_config, max_depth
):
    num_actions, num_simulations, batch_size = 7, 40, 3
    jax_root, root = _root(batch_size, num_actions)
    legal = _legal(batch_size, num_actions)
    mctx_qtransform = functools.partial(getattr(mctx, qtransform_name), **qtransform_kwargs)
    recurrent_fn = tree_test._prepare_recurrent_fn(num_actions, **env_config)
    common = {
        "params": (),
        "rng_key": jax.random.PRNGKey(1),
        "root": jax_root,
        "recurrent_fn": recurrent_fn,
        "num_simulations": num_simulations,
        "invalid_actions": jnp.asarray(~legal, dtype=jnp.float32),
        "max_depth": max_depth,
        "qtransform": mctx_qtransform,
    }
    qtransform = _qtransform(qtransform_name, qtransform_kwargs)
    model = JaxModel(num_actions, **env_config)
    if algorithm == "muzero":
        expected = mctx.muzero_policy(dirichlet_fraction=0.0, **common)
        result = wm.MCTS(
            num_actions,
            num_simulations,
            dirichlet_fraction=0.0,
            qtransform=qtransform,
            max_depth=max_depth,
        ).search(model, root, legal_actions=legal)
    else:
        expected = mctx.gumbel_muzero_policy(gumbel_scale=1.0, **common)
        # The Gumbel noise mctx drew from its key: split once, then jax.random.gumbel.
        _, gumbel_key = jax.random.split(jax.random.PRNGKey(1))
        gumbel = np.asarray(jax.random.gumbel(gumbel_key, shape=(batch_size, num_actions)))
        result = wm.GumbelMCTS(
            num_actions, num_simulations, qtransform=qtransform, max_depth=max_depth
        ).search(model, root, legal_actions=legal, gumbel=gumbel)
        np.testing.assert_array_equal(result.action, np.asarray(expected.action))
    arrays = _mctx_tree_arrays(expected.search_tree)
    used = arrays["node_visits"] > 0
    for name, value in arrays.items():
        actual = getattr(result.tree, name)
        if name == "children_priors":
            # Node slots left unused (max_depth re-evaluations) hold softmax(0) in mctx, 0 here.
            value, actual = value[used], actual[used]
        if value.dtype.kind in "iu":
            np.testing.assert_array_equal(actual, value, err_msg=name)
        else:
            np.testing.assert_allclose(actual, value, atol=1e-3, err_msg=name)
    np.testing.assert_allclose(result.policy, np.asarray(expected.action_weights), atol=1e-3)


def _bandit_model(rewards):
    rewards = torch.as_tensor(np.asarray(rewards), dtype=torch.float32)

    def recurrent_inference(latent, action):
        B = latent.shape[0]
        return wm.Step(
            latent,
            rewards[torch.arange(B), action],
            torch.zeros_like(rewards),
            torch.zeros(B),
            torch.zeros(B),
        )

    return recurrent_inference


def _deepest_leaf(tree, b, node):
    leaf, depth = node, 0
    for a in range(tree.children_index.shape[2]):
        child = int(tree.children_index[b, node, a])
        if child >= 0:
            found, found_depth = _deepest_leaf(tree, b, child)
            if (1 + found_depth, int(tree.node_visits[b, found])) > (
                depth,
                int(tree.node_visits[b, leaf]),
            ):
                leaf, depth = found, 1 + found_depth
    return leaf, depth


def test_policies_test_muzero_policy():
    root = wm.Root(torch.zeros(1, 1), torch.tensor([[-1.0, 0.0, 2.0, 3.0]]), torch.zeros(1))
    legal = np.array([[True, True, True, False]])
    result = wm.MCTS(4, 1, dirichlet_fraction=0.0).search(
        _bandit_model(np.zeros((1, 4))), root, legal_actions=legal
    )
    np.testing.assert_array_equal(result.action, [2])
    np.testing.assert_allclose(result.policy, [[0.0, 0.0, 1.0, 0.0]])


def _gumbel_policies_case(invalid_actions):
    root_value = np.array([-5.0], np.float32)
    prior_logits = np.array([[0.0, -1.0, 2.0, 3.0]], np.float32)
    rewards = np.array([[20.0, 3.0, -1.0, 10.0]], np.float32)
    value_scale, maxvisit_init, num_simulations, max_depth = 0.05, 60, 17, 3
    # gumbel_muzero_policy's noise for PRNGKey(0).
    _, gumbel_key = jax.random.split(jax.random.PRNGKey(0))
    gumbel = np.asarray(jax.random.gumbel(gumbel_key, shape=prior_logits.shape))
    planner = wm.GumbelMCTS(
        4,
        num_simulations,
        max_depth=max_depth,
        gumbel_scale=1.0,
        qtransform=wm.qtransform_completed_by_mix_value(
            value_scale=value_scale, maxvisit_init=maxvisit_init, rescale_values=True
        ),
    )
    legal = None if invalid_actions is None else invalid_actions == 0
    result = planner.search(
        _bandit_model(rewards),
        wm.Root(torch.zeros(1, 1), prior_logits, root_value),
        legal_actions=legal,
        gumbel=gumbel,
    )
    return result, {
        "root_value": root_value,
        "prior_logits": prior_logits,
        "rewards": rewards,
        "value_scale": value_scale,
        "maxvisit_init": maxvisit_init,
        "num_simulations": num_simulations,
        "max_depth": max_depth,
    }


def test_policies_test_gumbel_muzero_policy():
    invalid_actions = np.array([[1.0, 0.0, 0.0, 1.0]])
    result, c = _gumbel_policies_case(invalid_actions)
    np.testing.assert_array_equal(result.action, [1])
    # The closed-form action weights of policies_test.py.
    probs = np.asarray(jax.nn.softmax(jnp.where(invalid_actions, -jnp.inf, c["prior_logits"])))
    n = c["num_simulations"]
    mix_value = (
        1.0
        / (n + 1)
        * (
            c["root_value"]
            + n * (probs[:, 1] * c["rewards"][:, 1] + probs[:, 2] * c["rewards"][:, 2])
        )
    )
    completed = np.array([[mix_value[0], c["rewards"][0, 1], c["rewards"][0, 2], mix_value[0]]])
    lo, hi = completed.min(axis=-1, keepdims=True), completed.max(axis=-1, keepdims=True)
    scale = (c["maxvisit_init"] + np.ceil(n / 2)) * c["value_scale"]
    expected = np.asarray(
        jax.nn.softmax(
            jnp.where(
                invalid_actions, -jnp.inf, c["prior_logits"] + scale * (completed - lo) / (hi - lo)
            )
        )
    )
    np.testing.assert_allclose(result.policy, expected, atol=1e-6)
    np.testing.assert_array_equal(result.visit_counts, [[0, np.ceil(n / 2), n // 2, 0]])
    leaf, depth = _deepest_leaf(result.tree, 0, 0)
    assert depth == c["max_depth"]
    assert result.tree.node_visits[0, leaf] == 6


def test_policies_test_gumbel_muzero_policy_without_invalid_actions():
    result, c = _gumbel_policies_case(None)
    np.testing.assert_array_equal(result.action, [3])
    completed = c["rewards"]
    lo, hi = completed.min(axis=-1, keepdims=True), completed.max(axis=-1, keepdims=True)
    scale = (c["maxvisit_init"] + result.visit_counts.max().item()) * c["value_scale"]
    expected = np.asarray(jax.nn.softmax(c["prior_logits"] + scale * (completed - lo) / (hi - lo)))
    np.testing.assert_allclose(result.policy, expected, atol=1e-6)
    np.testing.assert_array_equal(result.visit_counts, [[6, 2, 2, 7]])
