"""Baselines for benches/bench_mcts.py: a vectorised numpy MuZero search, mctx (CPU jax) and
LightZero's compiled tree (``mz_tree``), each driving the same workloads as wmfast."""

from __future__ import annotations

import glob
import importlib.util
import os

import numpy as np
import torch


class NumpyMCTS:
    """A careful vectorised pure-numpy MuZero search (pUCT, mctx's parent-and-siblings Q
    transform, no noise): trees are [B, N+1, A] arrays; each simulation descends all trees in
    lock-step with numpy ops over the batch, calls the model once, and backs up level by level."""

    def __init__(self, num_actions, num_simulations, pb_c_init=1.25, pb_c_base=19652.0):
        self.A, self.N = num_actions, num_simulations
        self.pb_c_init, self.pb_c_base = pb_c_init, pb_c_base

    def search(self, model, latent, logits, value):
        B, A, N = latent.shape[0], self.A, self.N
        M = N + 1
        rows = np.arange(B)
        visits = np.zeros((B, M), np.int32)
        node_values = np.zeros((B, M), np.float32)
        parents = np.full((B, M), -1, np.int32)
        from_action = np.full((B, M), -1, np.int32)
        children = np.full((B, M, A), -1, np.int32)
        priors = np.zeros((B, M, A), np.float32)
        cvisits = np.zeros((B, M, A), np.int32)
        cq = np.zeros((B, M, A), np.float32)
        rewards = np.zeros((B, M, A), np.float32)
        discounts = np.zeros((B, M, A), np.float32)
        latents = torch.zeros((B, M) + tuple(latent.shape[1:]), dtype=latent.dtype)

        def softmax(x):
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)

        priors[:, 0] = softmax(np.asarray(logits, np.float32))
        node_values[:, 0] = value
        visits[:, 0] = 1
        latents[:, 0] = latent
        for sim in range(N):
            node = np.zeros(B, np.int64)
            action = np.zeros(B, np.int64)
            active = np.ones(B, bool)
            while active.any():
                b = rows[active]
                n = node[b]
                nv = visits[b, n].astype(np.float32)
                cv = cvisits[b, n]
                q = cq[b, n]
                seen = cv > 0
                nval = node_values[b, n]
                lo = np.minimum(nval, np.where(seen, q, np.inf).min(axis=1))
                hi = np.maximum(nval, np.where(seen, q, -np.inf).max(axis=1))
                norm = np.where(seen, (q - lo[:, None]) / np.maximum(hi - lo, 1e-8)[:, None], 0)
                pb_c = self.pb_c_init + np.log((nv + self.pb_c_base + 1) / self.pb_c_base)
                score = norm + (np.sqrt(nv) * pb_c)[:, None] * priors[b, n] / (cv + 1)
                a = score.argmax(axis=1)
                action[b] = a
                child = children[b, n, a]
                more = child >= 0
                node[b[more]] = child[more]
                active[b[~more]] = False
            leaf = np.full(B, sim + 1)
            step = model(latents[rows, node], torch.from_numpy(action))
            latents[rows, leaf] = step.latent
            r, v = step.reward.numpy(), step.value.numpy()
            d = np.ones(B, np.float32) if step.discount is None else step.discount.numpy()
            priors[rows, leaf] = softmax(step.logits.numpy())
            node_values[rows, leaf] = v
            visits[rows, leaf] = 1
            parents[rows, leaf] = node
            from_action[rows, leaf] = action
            children[rows, node, action] = leaf
            rewards[rows, node, action] = r
            discounts[rows, node, action] = d
            index, g = leaf.copy(), v.astype(np.float32)
            climbing = index != 0
            while climbing.any():
                b = rows[climbing]
                i = index[b]
                p, a = parents[b, i], from_action[b, i]
                g[b] = rewards[b, p, a] + discounts[b, p, a] * g[b]
                count = visits[b, p].astype(np.float32)
                node_values[b, p] = (node_values[b, p] * count + g[b]) / (count + 1)
                visits[b, p] += 1
                cvisits[b, p, a] += 1
                cq[b, p, a] = rewards[b, p, a] + discounts[b, p, a] * node_values[b, i]
                index[b] = p
                climbing = index != 0
        return cvisits[:, 0], node_values[:, 0]


def load_lightzero_mz_tree():
    """LightZero's compiled MuZero tree module, or None. Looked for as an installed ``lzero`` or
    as a bare ``mz_tree*.so`` in $WMFAST_LIGHTZERO_DIR (extract it from the LightZero wheel:
    ``pip download LightZero --no-deps``; its dependency pins clash with current torch)."""
    directory = os.environ.get("WMFAST_LIGHTZERO_DIR", "")
    paths = glob.glob(os.path.join(directory, "mz_tree*.so")) if directory else []
    if not paths:
        spec = importlib.util.find_spec("lzero")
        if spec is None or not spec.submodule_search_locations:
            return None
        root = next(iter(spec.submodule_search_locations))
        paths = glob.glob(os.path.join(root, "mcts", "ctree", "ctree_muzero", "mz_tree*.so"))
    if not paths:
        return None
    spec = importlib.util.spec_from_file_location("mz_tree", paths[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lightzero_search(
    mz_tree,
    model,
    latent,
    logits,
    value,
    num_simulations,
    num_actions,
    discount=0.997,
    pb_c_init=1.25,
    pb_c_base=19652.0,
):
    """LightZero's MuZeroMCTSCtree.search loop (lzero/mcts/tree_search/mcts_ctree.py), verbatim
    in what it does per simulation: C++ traverse, Python gather of latents, model call, numpy
    and list conversions, C++ backpropagate."""
    B = latent.shape[0]
    roots = mz_tree.Roots(B, [list(range(num_actions)) for _ in range(B)])
    roots.prepare_no_noise([0.0] * B, np.asarray(logits).tolist(), [-1] * B)
    min_max_stats = mz_tree.MinMaxStatsList(B)
    min_max_stats.set_delta(0.01)
    path_latents = [latent.numpy()]
    to_play = [-1] * B
    for sim in range(num_simulations):
        results = mz_tree.ResultsWrapper(num=B)
        index_in_path, index_in_batch, last_actions, to_play_virtual = mz_tree.batch_traverse(
            roots, pb_c_base, pb_c_init, discount, min_max_stats, results, to_play
        )
        latents = [path_latents[ix][iy] for ix, iy in zip(index_in_path, index_in_batch)]
        latents = torch.from_numpy(np.asarray(latents))
        actions = torch.from_numpy(np.asarray(last_actions)).long()
        step = model(latents, actions)
        path_latents.append(step.latent.detach().cpu().numpy())
        reward = step.reward.detach().cpu().numpy().reshape(-1).tolist()
        val = step.value.detach().cpu().numpy().reshape(-1).tolist()
        policy = step.logits.detach().cpu().numpy().tolist()
        mz_tree.batch_backpropagate(
            sim + 1, discount, reward, val, policy, min_max_stats, results, to_play_virtual
        )
    return roots.get_distributions(), roots.get_values()


def make_mctx_search(batch_size, num_actions, num_simulations, latent_dim, gumbel):
    """A jitted mctx policy over a free jax model (constant outputs), or None without mctx."""
    try:
        import jax
        import jax.numpy as jnp
        import mctx
    except ImportError:
        return None

    def recurrent_fn(params, rng_key, action, embedding):
        B = action.shape[0]
        out = mctx.RecurrentFnOutput(
            reward=jnp.zeros(B),
            discount=jnp.ones(B),
            prior_logits=jnp.zeros((B, num_actions)),
            value=jnp.zeros(B),
        )
        return out, embedding

    root = mctx.RootFnOutput(
        prior_logits=jnp.zeros((batch_size, num_actions)),
        value=jnp.zeros(batch_size),
        embedding=jnp.zeros((batch_size, latent_dim)),
    )
    if gumbel:
        policy = jax.jit(
            lambda key: (
                mctx.gumbel_muzero_policy(
                    (), key, root, recurrent_fn, num_simulations, max_num_considered_actions=16
                ).action
            )
        )
    else:
        policy = jax.jit(
            lambda key: mctx.muzero_policy((), key, root, recurrent_fn, num_simulations).action
        )
    key = jax.random.PRNGKey(0)
    policy(key).block_until_ready()  # compile
    return lambda: policy(key).block_until_ready()


class NumpyStochasticMCTS:
    """A careful vectorised pure-numpy Stochastic MuZero search (decision nodes by pUCT with
    mctx's parent-and-siblings Q transform, chance nodes by argmax p(c) / (N(c) + 1), no noise):
    trees are [B, N+1, max(A, C)] arrays plus a node-kind array; each simulation descends all
    trees in lock-step with numpy ops over the batch, calls the decision function on the trees
    whose leaf hangs below a state and the chance function on the others, and backs up level by
    level."""

    def __init__(self, num_actions, num_chance_outcomes, num_simulations, pb_c_init=1.25,
                 pb_c_base=19652.0):
        self.A, self.C, self.N = num_actions, num_chance_outcomes, num_simulations
        self.pb_c_init, self.pb_c_base = pb_c_init, pb_c_base

    def search(self, decision, chance, latent, logits, value):
        B, A, C, N = latent.shape[0], self.A, self.C, self.N
        M, E = N + 1, max(self.A, self.C)
        rows = np.arange(B)
        visits = np.zeros((B, M), np.int32)
        node_values = np.zeros((B, M), np.float32)
        is_chance = np.zeros((B, M), bool)
        parents = np.full((B, M), -1, np.int32)
        from_action = np.full((B, M), -1, np.int32)
        children = np.full((B, M, E), -1, np.int32)
        priors = np.zeros((B, M, E), np.float32)
        cvisits = np.zeros((B, M, E), np.int32)
        cq = np.zeros((B, M, E), np.float32)
        rewards = np.zeros((B, M, E), np.float32)
        discounts = np.zeros((B, M, E), np.float32)
        latents = torch.zeros((B, M) + tuple(latent.shape[1:]), dtype=latent.dtype)

        def softmax(x):
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)

        priors[:, 0, :A] = softmax(np.asarray(logits, np.float32))
        node_values[:, 0] = value
        visits[:, 0] = 1
        latents[:, 0] = latent
        for sim in range(N):
            node = np.zeros(B, np.int64)
            action = np.zeros(B, np.int64)
            active = np.ones(B, bool)
            while active.any():
                b = rows[active]
                n = node[b]
                at_chance = is_chance[b, n]
                a = np.zeros(len(b), np.int64)
                d = ~at_chance
                if d.any():
                    bd, nd = b[d], n[d]
                    nv = visits[bd, nd].astype(np.float32)
                    cv = cvisits[bd, nd, :A]
                    q = cq[bd, nd, :A]
                    seen = cv > 0
                    nval = node_values[bd, nd]
                    lo = np.minimum(nval, np.where(seen, q, np.inf).min(axis=1))
                    hi = np.maximum(nval, np.where(seen, q, -np.inf).max(axis=1))
                    norm = np.where(
                        seen, (q - lo[:, None]) / np.maximum(hi - lo, 1e-8)[:, None], 0
                    )
                    pb_c = self.pb_c_init + np.log((nv + self.pb_c_base + 1) / self.pb_c_base)
                    score = norm + (np.sqrt(nv) * pb_c)[:, None] * priors[bd, nd, :A] / (cv + 1)
                    a[d] = score.argmax(axis=1)
                if at_chance.any():
                    bc, nc = b[at_chance], n[at_chance]
                    score = priors[bc, nc, :C] / (cvisits[bc, nc, :C] + 1)
                    a[at_chance] = score.argmax(axis=1)
                action[b] = a
                child = children[b, n, a]
                more = child >= 0
                node[b[more]] = child[more]
                active[b[~more]] = False
            leaf = np.full(B, sim + 1)
            from_chance = is_chance[rows, node]
            r = np.zeros(B, np.float32)
            d = np.ones(B, np.float32)
            v = np.zeros(B, np.float32)
            for kind, fn in ((False, decision), (True, chance)):
                b = rows[from_chance == kind]
                if len(b) == 0:
                    continue
                out = fn(latents[b, node[b]], torch.from_numpy(action[b]))
                latents[b, leaf[b]] = out.latent
                v[b] = out.value.numpy()
                if kind:
                    priors[b, leaf[b], :A] = softmax(out.logits.numpy())
                    r[b] = out.reward.numpy()
                    if out.discount is not None:
                        d[b] = out.discount.numpy()
                else:
                    priors[b, leaf[b], :C] = softmax(out.chance_logits.numpy())
            is_chance[rows, leaf] = ~from_chance
            node_values[rows, leaf] = v
            visits[rows, leaf] = 1
            parents[rows, leaf] = node
            from_action[rows, leaf] = action
            children[rows, node, action] = leaf
            rewards[rows, node, action] = r
            discounts[rows, node, action] = d
            index, g = leaf.copy(), v.copy()
            climbing = index != 0
            while climbing.any():
                b = rows[climbing]
                i = index[b]
                p, a = parents[b, i], from_action[b, i]
                g[b] = rewards[b, p, a] + discounts[b, p, a] * g[b]
                count = visits[b, p].astype(np.float32)
                node_values[b, p] = (node_values[b, p] * count + g[b]) / (count + 1)
                visits[b, p] += 1
                cvisits[b, p, a] += 1
                cq[b, p, a] = rewards[b, p, a] + discounts[b, p, a] * node_values[b, i]
                index[b] = p
                climbing = index != 0
        return cvisits[:, 0, :A], node_values[:, 0]


def make_mctx_stochastic_search(batch_size, num_actions, num_chance_outcomes, num_simulations,
                                latent_dim):
    """A jitted mctx.stochastic_muzero_policy over a free jax model (constant outputs), or None
    without mctx."""
    try:
        import jax
        import jax.numpy as jnp
        import mctx
    except ImportError:
        return None

    def decision_fn(params, rng_key, action, embedding):
        B = action.shape[0]
        out = mctx.DecisionRecurrentFnOutput(
            chance_logits=jnp.zeros((B, num_chance_outcomes)), afterstate_value=jnp.zeros(B)
        )
        return out, embedding

    def chance_fn(params, rng_key, outcome, afterstate):
        B = outcome.shape[0]
        out = mctx.ChanceRecurrentFnOutput(
            action_logits=jnp.zeros((B, num_actions)),
            value=jnp.zeros(B),
            reward=jnp.zeros(B),
            discount=jnp.ones(B),
        )
        return out, afterstate

    root = mctx.RootFnOutput(
        prior_logits=jnp.zeros((batch_size, num_actions)),
        value=jnp.zeros(batch_size),
        embedding=jnp.zeros((batch_size, latent_dim)),
    )
    policy = jax.jit(
        lambda key: mctx.stochastic_muzero_policy(
            (), key, root, decision_fn, chance_fn, num_simulations
        ).action
    )
    key = jax.random.PRNGKey(0)
    policy(key).block_until_ready()  # compile
    return lambda: policy(key).block_until_ready()
