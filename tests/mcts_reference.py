"""A small, slow, pure-Python MuZero / Gumbel MuZero search: the reference the C++ search must
match on deterministic models (no Dirichlet noise, temperature 0 or Gumbel).

Written from the papers and mctx's semantics, one tree at a time, in float64: node indices,
max_depth re-evaluation, discount conventions and lowest-index tie-breaking as documented in
cpp/wmfast/mcts/search.h.
"""

from __future__ import annotations

import math

import numpy as np

MASKED_LOGIT = -np.finfo(np.float32).max


def softmax(x):
    m = max(x)
    e = [math.exp(v - m) for v in x]
    s = sum(e)
    return [v / s for v in e]


def considered_visit_sequence(max_num_considered, num_simulations):
    if max_num_considered <= 1:
        return list(range(num_simulations))
    log2max = math.ceil(math.log2(max_num_considered))
    sequence, visits, num_considered = [], [0] * max_num_considered, max_num_considered
    while len(sequence) < num_simulations:
        extra = max(1, int(num_simulations / (log2max * num_considered)))
        for _ in range(extra):
            sequence.extend(visits[:num_considered])
            for i in range(num_considered):
                visits[i] += 1
        num_considered = max(2, num_considered // 2)
    return sequence[:num_simulations]


class ReferenceTree:
    def __init__(self, num_nodes, num_actions):
        n, a = num_nodes, num_actions
        self.A = a
        self.node_visits = [0] * n
        self.raw_values = [0.0] * n
        self.node_values = [0.0] * n
        self.parents = [-1] * n
        self.action_from_parent = [-1] * n
        self.children_index = [[-1] * a for _ in range(n)]
        self.logits = [[0.0] * a for _ in range(n)]
        self.priors = [[0.0] * a for _ in range(n)]
        self.children_visits = [[0] * a for _ in range(n)]
        self.children_values = [[0.0] * a for _ in range(n)]
        self.children_rewards = [[0.0] * a for _ in range(n)]
        self.children_discounts = [[0.0] * a for _ in range(n)]
        self.latents = [None] * n

    def q(self, node, a):
        return (
            self.children_rewards[node][a]
            + self.children_discounts[node][a] * (self.children_values[node][a])
        )


def search_one(
    step,
    latent,
    logits,
    value,
    num_actions,
    num_simulations,
    *,
    discount=1.0,
    pb_c_init=1.25,
    pb_c_base=19652.0,
    qtransform="parent_and_siblings",
    min_value=-1.0,
    max_value=1.0,
    max_depth=None,
    invalid=None,
    gumbel=None,
    max_num_considered_actions=16,
    value_scale=0.1,
    maxvisit_init=50.0,
    rescale_values=True,
    use_mixed_value=True,
):
    """One tree. ``step(latent, action) -> (latent, reward, logits, value, step_discount)``.
    Gumbel MuZero when ``gumbel`` (an [A] noise vector) is given."""
    A = num_actions
    t = ReferenceTree(num_simulations + 1, A)
    invalid = [False] * A if invalid is None else [bool(x) for x in invalid]
    eps = 1e-8
    logits = [float(x) for x in logits]
    if any(invalid):
        m = max(logits)
        logits = [MASKED_LOGIT if inv else x - m for x, inv in zip(logits, invalid)]
    t.logits[0], t.priors[0] = logits, softmax(logits)
    t.raw_values[0] = t.node_values[0] = float(value)
    t.node_visits[0] = 1
    t.latents[0] = latent
    running = [math.inf, -math.inf]
    num_legal = A - sum(invalid)
    table = considered_visit_sequence(min(max_num_considered_actions, num_legal), num_simulations)

    def completed_q(node):
        visits = t.children_visits[node]
        val = t.raw_values[node]
        if use_mixed_value:
            sum_visits = sum(visits)
            probs = [max(p, np.finfo(np.float32).tiny) for p in t.priors[node]]
            sum_probs = sum(p for p, n in zip(probs, visits) if n > 0)
            weighted = sum(
                p * t.q(node, a) / sum_probs for a, (p, n) in enumerate(zip(probs, visits)) if n > 0
            )
            val = (val + sum_visits * weighted) / (sum_visits + 1)
        out = [t.q(node, a) if visits[a] > 0 else val for a in range(A)]
        if rescale_values:
            lo, hi = min(out), max(out)
            out = [(x - lo) / max(hi - lo, eps) for x in out]
        scale = (maxvisit_init + max(visits)) * value_scale
        return [scale * x for x in out]

    def score_considered(node, considered):
        cq = completed_q(node)
        lg = t.logits[node]
        m = max(lg)
        scores = []
        for a in range(A):
            s = max(-1e9, gumbel[a] + (lg[a] - m) + cq[a])
            if t.children_visits[node][a] != considered or invalid[a]:
                s = -math.inf
            scores.append(s)
        return int(np.argmax(scores))

    def select(node, depth):
        visits = t.children_visits[node]
        if gumbel is not None:
            if depth == 0:
                return score_considered(node, table[sum(visits)])
            cq = completed_q(node)
            probs = softmax([lg + c for lg, c in zip(t.logits[node], cq)])
            total = sum(visits)
            return int(np.argmax([p - n / (1 + total) for p, n in zip(probs, visits)]))
        nv = t.node_visits[node]
        pb_c = pb_c_init + math.log((nv + pb_c_base + 1) / pb_c_base)
        if qtransform == "parent_and_siblings":
            lo = hi = t.node_values[node]
            for a in range(A):
                if visits[a] > 0:
                    lo, hi = min(lo, t.q(node, a)), max(hi, t.q(node, a))
            norm = [
                (t.q(node, a) - lo) / max(hi - lo, eps) if visits[a] > 0 else 0.0 for a in range(A)
            ]
        elif qtransform == "min_max":
            norm = [
                (t.q(node, a) - min_value) / (max_value - min_value) if visits[a] > 0 else 0.0
                for a in range(A)
            ]
        else:  # running_min_max
            lo, hi = running
            norm = [
                ((t.q(node, a) - lo) / (hi - lo) if hi > lo else t.q(node, a))
                if visits[a] > 0
                else 0.0
                for a in range(A)
            ]
        best, best_score = -1, -math.inf
        for a in range(A):
            if depth == 0 and invalid[a]:
                continue
            score = norm[a] + math.sqrt(nv) * pb_c * t.priors[node][a] / (visits[a] + 1)
            if best < 0 or score > best_score:
                best, best_score = a, score
        return best

    limit = max_depth if max_depth is not None else 1 << 30
    for sim in range(num_simulations):
        node, depth = 0, 0
        while True:
            action = select(node, depth)
            child = t.children_index[node][action]
            depth += 1
            if child < 0 or depth >= limit:
                break
            node = child
        leaf = sim + 1 if child < 0 else child
        nlatent, reward, nlogits, nvalue, sdisc = step(t.latents[node], action)
        t.latents[leaf] = nlatent
        t.logits[leaf] = [float(x) for x in nlogits]
        t.priors[leaf] = softmax(t.logits[leaf])
        t.raw_values[leaf] = t.node_values[leaf] = float(nvalue)
        t.node_visits[leaf] += 1
        t.parents[leaf], t.action_from_parent[leaf] = node, action
        t.children_index[node][action] = leaf
        t.children_rewards[node][action] = float(reward)
        t.children_discounts[node][action] = float(sdisc) * discount
        index, g = leaf, t.node_values[leaf]
        while index != 0:
            parent, a = t.parents[index], t.action_from_parent[index]
            g = t.children_rewards[parent][a] + t.children_discounts[parent][a] * g
            count = t.node_visits[parent]
            t.node_values[parent] = (t.node_values[parent] * count + g) / (count + 1)
            t.node_visits[parent] += 1
            t.children_values[parent][a] = t.node_values[index]
            t.children_visits[parent][a] += 1
            q = t.q(parent, a)
            running[0], running[1] = min(running[0], q), max(running[1], q)
            index = parent

    visit_counts = np.array(t.children_visits[0])
    out = {
        "node_visits": np.array(t.node_visits),
        "raw_values": np.array(t.raw_values),
        "node_values": np.array(t.node_values),
        "parents": np.array(t.parents),
        "action_from_parent": np.array(t.action_from_parent),
        "children_index": np.array(t.children_index),
        "children_priors": np.array(t.priors),
        "children_visits": np.array(t.children_visits),
        "children_values": np.array(t.children_values),
        "children_rewards": np.array(t.children_rewards),
        "children_discounts": np.array(t.children_discounts),
        "visit_counts": visit_counts,
        "root_value": t.node_values[0],
        "q_values": np.array([t.q(0, a) for a in range(A)]),
    }
    if gumbel is not None:
        out["action"] = score_considered(0, int(visit_counts.max()))
        cq = completed_q(0)
        x = [lg + c for lg, c in zip(t.logits[0], cq)]
        m = max(v for v, inv in zip(x, invalid) if not inv)
        out["policy"] = np.array(
            softmax([MASKED_LOGIT if inv else v - m for v, inv in zip(x, invalid)])
        )
    else:
        masked = np.where(invalid, -1, visit_counts)
        out["action"] = int(np.argmax(masked))
        out["policy"] = visit_counts / max(visit_counts.sum(), 1)
    return out
