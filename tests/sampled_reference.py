"""A small, slow, pure-Python Sampled MuZero search: the reference wm.SampledMCTS must match when
the samples are fixed (no root noise, temperature 0).

Written from Hubert et al. (ICML 2021) and cpp/wmfast/mcts/sampled_search.h, one tree at a
time, in float64: pUCT over the K samples of each node with the prior beta-hat (continuous: 1/K
per sample) or the policy restricted to the sampled actions and renormalised (discrete), mctx's
parent-and-siblings Q normalisation, node indices first_new + simulation, max_depth
re-evaluation, lowest-index tie-breaking. The samples themselves come from ``samples_of(node,
policy)``, e.g. read from the C++ tree, so that everything but the sampler is checked.
"""

from __future__ import annotations

import math

import torch


def softmax(x):
    m = max(x)
    e = [math.exp(v - m) for v in x]
    s = sum(e)
    return [v / s for v in e]


def search_one(model, latent, policy, value, samples_of, num_simulations, continuous,
               discount=1.0, max_depth=None, pb_c_init=1.25, pb_c_base=19652.0,
               unvisited_parent_value=False, initial=None):
    """One tree. ``model(latent [1, ...], action) -> Step``; ``policy``: the root's policy row
    (list); ``samples_of(node, policy) -> list of actions`` (each a list of D floats or an int).
    ``initial``: a tree (a dict as returned, of any number of nodes) to continue from (tree
    reuse): new nodes are numbered after its nodes; ``latent``, ``policy`` and ``value`` are then
    ignored. Returns a dict of per-node lists."""
    first_new = 1 if initial is None else len(initial["node_visits"])
    n_nodes = first_new + num_simulations
    t = {
        "node_visits": [0] * n_nodes,
        "raw_values": [0.0] * n_nodes,
        "node_values": [0.0] * n_nodes,
        "parents": [-1] * n_nodes,
        "action_from_parent": [-1] * n_nodes,
        "children": [None] * n_nodes,      # per node: list of K child indices
        "priors": [None] * n_nodes,
        "visits": [None] * n_nodes,
        "q": [None] * n_nodes,
        "actions": [None] * n_nodes,       # per node: the sampled actions
        "reward": [0.0] * n_nodes,         # of the edge into the node
        "discount": [0.0] * n_nodes,
        "policy": [None] * n_nodes,
        "latent": [None] * n_nodes,
    }

    def set_node(n, latent, policy, value):
        t["latent"][n] = latent
        t["policy"][n] = policy
        t["raw_values"][n] = value
        t["node_values"][n] = value

    def ensure_sampled(n):
        if t["actions"][n] is not None:
            return
        actions = samples_of(n, t["policy"][n])
        k = len(actions)
        if continuous:
            priors = [1.0 / k] * k
        else:
            logits = [t["policy"][n][a] for a in actions]
            priors = softmax(logits) if max(logits) > -math.inf else [1.0 / k] * k
        t["actions"][n] = actions
        t["priors"][n] = priors
        t["children"][n] = [-1] * k
        t["visits"][n] = [0] * k
        t["q"][n] = [0.0] * k

    def select(n):
        visits, qs, priors = t["visits"][n], t["q"][n], t["priors"][n]
        nv = t["node_visits"][n]
        explore = math.sqrt(nv) * (pb_c_init + math.log((nv + pb_c_base + 1) / pb_c_base))
        v = t["node_values"][n]
        completed = [qs[k] if visits[k] > 0 else v for k in range(len(qs))]
        lo, hi = min(completed + [v]), max(completed + [v])
        scale = 1.0 / max(hi - lo, 1e-8)
        unvisited = (v - lo) * scale if unvisited_parent_value else 0.0
        best, best_score = 0, -math.inf
        for k in range(len(qs)):
            value_score = (qs[k] - lo) * scale if visits[k] > 0 else unvisited
            score = value_score + explore * priors[k] / (visits[k] + 1)
            if score > best_score:
                best, best_score = k, score
        return best

    if initial is None:
        set_node(0, latent, policy, value)
        t["node_visits"][0] = 1
    else:
        for name, values in initial.items():
            t[name][: len(values)] = [list(v) if isinstance(v, list) else v for v in values]
    for sim in range(num_simulations):
        node, depth = 0, 0
        while True:
            ensure_sampled(node)
            k = select(node)
            child = t["children"][node][k]
            depth += 1
            if child >= 0 and (max_depth is None or depth < max_depth):
                node = child
                continue
            break
        leaf = child if child >= 0 else first_new + sim
        action = t["actions"][node][k]
        a = (torch.tensor([action], dtype=torch.float32) if continuous
             else torch.tensor([action], dtype=torch.int64))
        step = model(t["latent"][node], a)
        d = 1.0 if step.discount is None else float(step.discount[0])
        set_node(leaf, step.latent, [float(x) for x in step.logits[0]], float(step.value[0]))
        if t["actions"][leaf] is not None:
            pass  # a max_depth leaf is never descended from: it has no samples
        t["node_visits"][leaf] += 1
        t["parents"][leaf] = node
        t["action_from_parent"][leaf] = k
        t["reward"][leaf] = float(step.reward[0])
        t["discount"][leaf] = d * discount
        t["children"][node][k] = leaf
        # backup
        child_n, g = leaf, t["node_values"][leaf]
        while t["parents"][child_n] >= 0:
            up = t["parents"][child_n]
            kk = t["action_from_parent"][child_n]
            r, disc = t["reward"][child_n], t["discount"][child_n]
            g = r + disc * g
            c = t["node_visits"][up]
            t["node_values"][up] = (t["node_values"][up] * c + g) / (c + 1)
            t["node_visits"][up] += 1
            t["visits"][up][kk] += 1
            t["q"][up][kk] = r + disc * t["node_values"][child_n]
            child_n = up
    return t


def reuse_subtree(t, child, model, continuous, policy=None, value=None, invalid=None):
    """The tree a reused search starts from: the subtree of ``t`` under node ``child``,
    renumbered in ascending order (as the C++ search does). With ``policy``/``value`` the new
    root takes them (discrete priors of its samples recomputed from the new policy); ``invalid``
    (a set of discrete actions) drops the root samples that are now illegal, with their
    subtrees. The root's visits and value are recomputed from its children."""
    n_old = len(t["node_visits"])
    root_actions = t["actions"][child]
    keep = None
    if root_actions is not None and invalid:
        keep = [k for k, a in enumerate(root_actions) if a not in invalid]
    order = [child]
    old_to_new = {child: 0}
    for n in range(child + 1, n_old):
        p = t["parents"][n]
        if p in old_to_new and t["node_visits"][n] > 0:
            if p == child and keep is not None and t["action_from_parent"][n] not in keep:
                continue
            old_to_new[n] = len(order)
            order.append(n)
    new = {name: [] for name in t}
    for n in order:
        for name in t:
            v = t[name][n]
            new[name].append(list(v) if isinstance(v, list) else v)
        i = len(new["parents"]) - 1
        new["parents"][i] = -1 if n == child else old_to_new[t["parents"][n]]
        if n == child:
            new["action_from_parent"][i] = -1
        elif t["parents"][n] == child and keep is not None:
            new["action_from_parent"][i] = keep.index(t["action_from_parent"][n])
        if new["children"][i] is not None:
            new["children"][i] = [old_to_new.get(c, -1) for c in new["children"][i]]
    if keep is not None:
        for name in ("actions", "children", "visits", "q"):
            new[name][0] = [new[name][0][k] for k in keep]
        if not keep:
            for name in ("actions", "children", "visits", "q", "priors"):
                new[name][0] = None
    if policy is not None:
        new["policy"][0] = list(policy)
        new["raw_values"][0] = value
    if new["actions"][0] is not None:
        k = len(new["actions"][0])
        if continuous:
            new["priors"][0] = [1.0 / k] * k
        else:
            logits = [new["policy"][0][a] for a in new["actions"][0]]
            new["priors"][0] = softmax(logits) if max(logits) > -math.inf else [1.0 / k] * k
        visits, qs = new["visits"][0], new["q"][0]
        total = 1 + sum(visits)
        new["node_visits"][0] = total
        new["node_values"][0] = (new["raw_values"][0] + sum(
            v * q for v, q in zip(visits, qs) if v > 0)) / total
    else:
        new["node_visits"][0] = 1
        new["node_values"][0] = new["raw_values"][0]
    new["reward"][0] = 0.0
    new["discount"][0] = 0.0
    return new
