"""Baselines for benches/bench_mcts.py: a vectorised numpy MuZero search, mctx (CPU jax) and
LightZero's compiled tree (``mz_tree``), each driving the same workloads as wmfast."""

from __future__ import annotations

import glob
import importlib.util
import os
import time

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


def _load_lightzero_tree(name, subfolder):
    """One of LightZero's compiled tree modules (``name``), or None. Looked for as a bare
    ``name*.so`` in $WMFAST_LIGHTZERO_DIR or in an installed ``lzero``
    (lzero/mcts/ctree/``subfolder``/)."""
    directory = os.environ.get("WMFAST_LIGHTZERO_DIR", "")
    paths = glob.glob(os.path.join(directory, f"{name}*.so")) if directory else []
    if not paths:
        spec = importlib.util.find_spec("lzero")
        if spec is None or not spec.submodule_search_locations:
            return None
        root = next(iter(spec.submodule_search_locations))
        paths = glob.glob(os.path.join(root, "mcts", "ctree", subfolder, f"{name}*.so"))
    if not paths:
        return None
    spec = importlib.util.spec_from_file_location(name, paths[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_lightzero_mz_tree():
    """LightZero's compiled MuZero tree module, or None. Looked for as an installed ``lzero`` or
    as a bare ``mz_tree*.so`` in $WMFAST_LIGHTZERO_DIR (extract it from the LightZero wheel:
    ``pip download LightZero --no-deps``; its dependency pins clash with current torch)."""
    return _load_lightzero_tree("mz_tree", "ctree_muzero")


def load_lightzero_stochastic_tree():
    """LightZero's compiled Stochastic MuZero tree (``stochastic_mz_tree``, from
    lzero/mcts/ctree/ctree_stochastic_muzero/), or None; found as ``load_lightzero_mz_tree``
    finds ``mz_tree``."""
    return _load_lightzero_tree("stochastic_mz_tree", "ctree_stochastic_muzero")


def load_lightzero_sampled_tree():
    """LightZero's compiled Sampled MuZero tree (``smz_tree``, from
    lzero/mcts/ctree/ctree_sampled_muzero/), or None; found as ``load_lightzero_mz_tree`` finds
    ``mz_tree``."""
    return _load_lightzero_tree("smz_tree", "ctree_sampled_muzero")


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


# --- LightZero's Stochastic and Sampled MuZero trees ------------------------------------------
#
# Both loops below follow LightZero 0.2.0's Python drivers line for line in what they do per
# simulation (lzero/mcts/tree_search/mcts_ctree_stochastic.py, StochasticMuZeroMCTSCtree.search;
# mcts_ctree_sampled.py, SampledMuZeroMCTSCtree.search), with the arguments LightZero's
# collectors pass (policy/stochastic_muzero.py, policy/sampled_muzero.py: one player, to_play
# -1, pb_c_init 1.25, pb_c_base 19652, value_delta_max 0.01). The compiled trees are LightZero's
# own; no LightZero code is copied here.


class TimedTree:
    """A LightZero tree module whose two per-simulation C++ entry points (``batch_traverse``,
    ``batch_backpropagate``) add their wall time to ``seconds``: what of a driven search is the
    compiled tree, the rest being the Python loop, its conversions and the model."""

    def __init__(self, tree):
        self._tree = tree
        self.seconds = {"batch_traverse": 0.0, "batch_backpropagate": 0.0}

    def __getattr__(self, name):
        attr = getattr(self._tree, name)
        if name not in ("batch_traverse", "batch_backpropagate"):
            return attr

        def timed(*args):
            start = time.perf_counter()
            try:
                return attr(*args)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return timed


class _LightZeroOutput:
    """The fields of LightZero's MZNetworkOutput that its search loops read."""

    __slots__ = ("latent_state", "policy_logits", "reward", "value")

    def __init__(self, value, reward, policy_logits, latent_state):
        self.value, self.reward = value, reward
        self.policy_logits, self.latent_state = policy_logits, latent_state


def _lightzero_h(x):
    """MuZero's value scaling h (eps 0.001): LightZero's heads predict h(value), h(reward), and
    its search loops apply h^-1 to every value and reward they read."""
    return torch.sign(x) * (torch.sqrt(torch.abs(x) + 1.0) - 1.0) + 0.001 * x


def _lightzero_h_inv(x, epsilon=0.001):
    """LightZero's InverseScalarTransform with ``categorical_distribution=False`` (a scalar
    head): h^-1, in its own formula."""
    tmp = (torch.sqrt(1 + 4 * epsilon * (torch.abs(x) + 1 + epsilon)) - 1) / (2 * epsilon)
    return torch.sign(x) * (tmp * tmp - 1)


class LightZeroStochasticModel:
    """A wmfast Stochastic MuZero model (``decision(latent, action) -> wm.Afterstate``,
    ``chance(afterstate, outcome) -> wm.Step``) behind LightZero's
    ``StochasticMuZeroModel.recurrent_inference(state, option, afterstate)``:
    ``afterstate=False`` is the decision function (its reward is 0: LightZero's tree zeroes the
    reward of chance nodes anyway), ``afterstate=True`` the chance function. Values and rewards
    are handed out as h(x), as LightZero's heads predict them, so that the loop's h^-1 gives the
    search the wmfast model's own numbers (a few batched elementwise ops per call). The
    chance function's discount is dropped: LightZero's models have no discount head."""

    def __init__(self, decision, chance):
        self.decision, self.chance = decision, chance

    def eval(self):
        return self

    def recurrent_inference(self, state, option, afterstate=False):
        if afterstate:  # state is an afterstate, option a chance outcome
            step = self.chance(state, option)
            return _LightZeroOutput(
                _lightzero_h(step.value), _lightzero_h(step.reward), step.logits, step.latent
            )
        out = self.decision(state, option)
        return _LightZeroOutput(
            _lightzero_h(out.value), torch.zeros_like(out.value), out.chance_logits, out.latent
        )


def _lightzero_process_nodes(model, latent_states, last_actions, nodes_index, is_chance, batches):
    """The ``process_nodes`` closure of LightZero's stochastic loop: one batched model call for
    the leaves of one kind, then per leaf a one-row split converted to numpy and lists. A chance
    leaf is an afterstate to create from its parent state and action: LightZero calls
    ``recurrent_inference(afterstate=not is_chance)``."""
    if not nodes_index:
        return
    latent_state_batch, value_batch, reward_batch, policy_logits_batch, child_is_chance = batches
    states = torch.stack([latent_states[i] for i in nodes_index], dim=0)
    options = torch.stack([last_actions[i] for i in nodes_index], dim=0)
    out = model.recurrent_inference(states, options, afterstate=not is_chance)
    splits = zip(
        torch.split(out.latent_state, 1, dim=0),
        torch.split(out.value, 1, dim=0),
        torch.split(out.reward, 1, dim=0),
        torch.split(out.policy_logits, 1, dim=0),
    )
    for i, (latent_state, value, reward, policy_logits) in zip(nodes_index, splits):
        value = _lightzero_h_inv(value).detach().cpu().numpy()
        reward = _lightzero_h_inv(reward).detach().cpu().numpy()
        latent_state_batch[i] = latent_state.detach().cpu().numpy()
        value_batch[i] = value.reshape(-1).tolist()
        reward_batch[i] = reward.reshape(-1).tolist()
        policy_logits_batch[i] = policy_logits.detach().cpu().numpy().tolist()
        child_is_chance[i] = is_chance


def lightzero_stochastic_search(
    tree,
    model,
    latent,
    logits,
    num_simulations,
    num_actions,
    discount=0.997,
    pb_c_init=1.25,
    pb_c_base=19652,
    value_delta_max=0.01,
    legal_actions=None,
):
    """LightZero's StochasticMuZeroMCTSCtree.search loop over its compiled tree
    (``load_lightzero_stochastic_tree()``), root prepared as its eval collector does
    (``Roots(B, legal_actions)``, chance_space_size left at its default 2: the tree sizes a
    chance node by its logits; ``prepare_no_noise`` with reward 0 and to_play -1). ``model``
    has LightZero's ``recurrent_inference(state, option, afterstate)`` (see
    ``LightZeroStochasticModel``). Per simulation, as LightZero does: C++ traverse, a Python
    gather of the leaves' parent latents, then per kind of leaf one batched model call whose
    outputs are split into B one-row tensors and converted one leaf at a time (h^-1 of value
    and reward, ``.numpy()``, ``.tolist()``) in a Python loop, then one C++ backpropagate per
    kind. Returns the root visit counts [B, A] and root values [B] (numpy).

    What LightZero's tree does differently from wm.StochasticMCTS and mctx (read in its
    ctree_stochastic_muzero/lib/cnode.cpp at v0.2.0; the reason the visit counts differ):

    - A chance node's outcome is *sampled* from its prior (std::discrete_distribution over a
      std::random_device-seeded generator, a new seed each call: not reproducible), where
      wmfast and mctx take argmax p(c) / (N(c) + 1), which makes visits follow p
      deterministically.
    - Discounting: its backup multiplies by ``discount`` at every edge, decision -> afterstate
      included, so one environment step is discounted twice (wmfast, mctx: the action edge
      has discount 1, reward 0; the outcome edge the chance function's reward and discount).
      Rewards are stored on the state reached through an outcome (a chance node's reward is
      set to 0), as in wmfast.
    - Min-max normalisation is one running min/max per tree over every backed-up
      ``reward + discount * value`` (chance nodes' included), with value_delta_max 0.01 as the
      smallest range and the normalised Q clipped to [0, 1]; wmfast's default is mctx's
      parent-and-siblings transform.
    - An unvisited action scores the parent's mean Q (wmfast, mctx: 0 after the transform).
      In 0.2.0 ``parent_q`` is not reset between the trees of a batch, so a root whose children
      are all unvisited starts from the previous tree's last mean Q (fixed upstream after
      0.2.0, LightZero #474/#477).
    - pUCT ties (scores within 1e-6) are broken by ``rand()``, reseeded from the clock's
      microseconds on every traverse; wmfast and mctx take the first maximum.
    - Its configs use categorical value and reward heads (2048: support 300) and
      discount 0.999; the models here are scalar (its scalar path, h^-1 only).
    """
    B = latent.shape[0]
    if legal_actions is None:
        legal_actions = [list(range(num_actions)) for _ in range(B)]
    roots = tree.Roots(B, legal_actions, 2)
    roots.prepare_no_noise([0.0] * B, np.asarray(logits).tolist(), [-1] * B)
    to_play_batch = [-1] * B
    with torch.no_grad():
        model.eval()
        latent_state_batch_in_search_path = [np.asarray(latent)]
        min_max_stats_lst = tree.MinMaxStatsList(B)
        min_max_stats_lst.set_delta(value_delta_max)
        for simulation_index in range(num_simulations):
            latent_states = []
            results = tree.ResultsWrapper(num=B)
            (leaf_node_is_chance, index_in_path, index_in_batch, last_actions,
             virtual_to_play_batch) = tree.batch_traverse(
                roots, pb_c_base, pb_c_init, discount, min_max_stats_lst, results, to_play_batch
            )
            for ix, iy in zip(index_in_path, index_in_batch):
                latent_states.append(latent_state_batch_in_search_path[ix][iy])
            latent_states = torch.from_numpy(np.asarray(latent_states))
            last_actions = torch.from_numpy(np.asarray(last_actions)).long()

            num = len(leaf_node_is_chance)
            latent_state_batch = [None] * num
            value_batch = [None] * num
            reward_batch = [None] * num
            policy_logits_batch = [None] * num
            child_is_chance_batch = [None] * num
            chance_nodes = [i for i, c in enumerate(leaf_node_is_chance) if c]
            decision_nodes = [i for i, c in enumerate(leaf_node_is_chance) if not c]

            batches = (latent_state_batch, value_batch, reward_batch, policy_logits_batch,
                       child_is_chance_batch)
            _lightzero_process_nodes(model, latent_states, last_actions, chance_nodes, True,
                                     batches)
            _lightzero_process_nodes(model, latent_states, last_actions, decision_nodes, False,
                                     batches)
            latent_state_batch_in_search_path.append(np.concatenate(latent_state_batch, axis=0))
            for nodes in (chance_nodes, decision_nodes):
                if not nodes:
                    continue
                values = np.concatenate([value_batch[i] for i in nodes], axis=0)
                rewards = np.concatenate([reward_batch[i] for i in nodes], axis=0)
                policies = np.concatenate([policy_logits_batch[i] for i in nodes], axis=0)
                tree.batch_backpropagate(
                    simulation_index + 1, discount, rewards.reshape(-1).tolist(),
                    values.reshape(-1).tolist(), policies.tolist(), min_max_stats_lst, results,
                    virtual_to_play_batch, child_is_chance_batch, nodes,
                )
    return np.asarray(roots.get_distributions()), np.asarray(roots.get_values())


class LightZeroSampledModel:
    """A wmfast continuous Sampled MuZero model (``recurrent_inference(latent, action [B, D])
    -> wm.Step`` with policy [B, 2D] = mean, log std) behind LightZero's
    ``SampledMuZeroModel.recurrent_inference(latent, action)``: the policy goes out as LightZero's
    (mu, sigma) = (mean, exp(log std)), the actions come in as float64 (what the loop makes of
    the tree's lists) and are cast to the latent's dtype, values and rewards go out as h(x) for
    the loop's h^-1 (see ``LightZeroStochasticModel``)."""

    def __init__(self, recurrent_inference, action_dim):
        self.fn, self.D = recurrent_inference, action_dim

    def eval(self):
        return self

    def recurrent_inference(self, latent, action):
        step = self.fn(latent, action.to(latent.dtype))
        policy = torch.cat([step.logits[:, : self.D], step.logits[:, self.D :].exp()], dim=1)
        return _LightZeroOutput(
            _lightzero_h(step.value), _lightzero_h(step.reward), policy, step.latent
        )


def lightzero_sampled_policy(policy, action_dim):
    """wmfast's root policy [B, 2D] (mean, log std) as LightZero's (mu, sigma)."""
    policy = torch.as_tensor(policy)
    return torch.cat([policy[:, :action_dim], policy[:, action_dim:].exp()], dim=1)


def lightzero_sampled_search(
    tree,
    model,
    latent,
    root_policy,
    num_simulations,
    num_samples,
    action_dim,
    discount=0.997,
    pb_c_init=1.25,
    pb_c_base=19652,
    value_delta_max=0.01,
):
    """LightZero's SampledMuZeroMCTSCtree.search loop (continuous actions) over its compiled
    tree (``load_lightzero_sampled_tree()``), root prepared as its eval collector does
    (``Roots(B, [[-1] * K] * B, D, K, True)``, ``prepare_no_noise`` with reward 0, to_play -1).
    ``model`` has LightZero's ``recurrent_inference(latent, action)`` (see
    ``LightZeroSampledModel``); ``root_policy`` is [B, 2D] (mu, sigma). Per simulation: C++
    traverse (actions come back as Python lists of floats), a Python gather of the parent
    latents, one batched model call, numpy and list conversions (h^-1 of value and reward),
    C++ expand and backpropagate. Returns the root samples [B, K, D], their visit counts
    [B, K] and the root values [B] (numpy).

    What LightZero's tree does differently from wm.SampledMCTS (its
    ctree_sampled_muzero/lib/cnode.cpp at v0.2.0):

    - Samples: each expanded node draws K actions tanh(clamp(N(mu, sigma), -4, 4)) (SAC-style
      squashing, a generator seeded with the clock's nanoseconds at each expansion: not
      reproducible) and files the children under a hash of their values printed to 6 decimals;
      wm.SampledMCTS draws clip(N(mean, exp(log std)), low, high) from a seeded generator.
    - The pUCT prior is uniform, 1/K per child (its "uniform" empirical distribution), as
      wm.SampledMCTS's corrected prior beta-hat / beta * pi with the proposal equal to the
      policy; the child's stored log-prob is unused.
    - Values: one running min/max per tree over every backed-up Q (value_delta_max 0.01,
      clipped to [0, 1]); an unvisited child scores its parent's mean Q (not reset between the
      trees of a batch in 0.2.0, see ``lightzero_stochastic_search``); ties broken by rand().
      wm.SampledMCTS: mctx's parent-and-siblings transform, ``unvisited_q="min"``.
    """
    B = latent.shape[0]
    legal_actions = [[-1 for _ in range(num_samples)] for _ in range(B)]
    roots = tree.Roots(B, legal_actions, action_dim, num_samples, True)
    roots.prepare_no_noise([0.0] * B, np.asarray(root_policy).tolist(), [-1] * B)
    to_play_batch = [-1] * B
    with torch.no_grad():
        model.eval()
        latent_state_batch_in_search_path = [np.asarray(latent)]
        min_max_stats_lst = tree.MinMaxStatsList(B)
        min_max_stats_lst.set_delta(value_delta_max)
        for simulation_index in range(num_simulations):
            latent_states = []
            results = tree.ResultsWrapper(num=B)
            index_in_path, index_in_batch, last_actions, virtual_to_play_batch = (
                tree.batch_traverse(
                    roots, pb_c_base, pb_c_init, discount, min_max_stats_lst, results,
                    to_play_batch, True,
                )
            )
            results.get_search_len()  # LightZero reads it (for EfficientZero's LSTM resets)
            for ix, iy in zip(index_in_path, index_in_batch):
                latent_states.append(latent_state_batch_in_search_path[ix][iy])
            latent_states = torch.from_numpy(np.asarray(latent_states))
            last_actions = torch.from_numpy(np.asarray(last_actions))
            out = model.recurrent_inference(latent_states, last_actions)
            next_latent, policy, value, reward = (
                t.detach().cpu().numpy()
                for t in (out.latent_state, out.policy_logits, _lightzero_h_inv(out.value),
                          _lightzero_h_inv(out.reward))
            )
            latent_state_batch_in_search_path.append(next_latent)
            tree.batch_backpropagate(
                simulation_index + 1, discount, reward.reshape(-1).tolist(),
                value.reshape(-1).tolist(), policy.tolist(), min_max_stats_lst, results,
                virtual_to_play_batch,
            )
    return (
        np.asarray(roots.get_sampled_actions(), np.float32),
        np.asarray(roots.get_distributions()),
        np.asarray(roots.get_values()),
    )
