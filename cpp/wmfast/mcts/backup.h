// The backup shared by the tree searches (Search, StochasticSearch, SampledSearch): a new or
// re-evaluated node's value carried up to the root. Inline: it runs once per tree per
// simulation, next to the expansion that calls it.
#ifndef WMFAST_MCTS_BACKUP_H_
#define WMFAST_MCTS_BACKUP_H_

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "wmfast/mcts/tree.h"

namespace wmfast::mcts {

// Throws std::invalid_argument naming tree b: a backed-up value (reward + discount * value) is
// not finite.
[[noreturn]] void ThrowBackupOverflow(int64_t b, float value, float reward, float discount);

// Backs the value of node `node` (flat id) of tree b up to the root: every ancestor's mean
// value, visits, edge visits and Q(s, a) = reward + discount * child value. With running_min /
// running_max (MuZero's tree-wide min-max; nullptr: none) they take in each Q. Throws (naming
// tree b) when a backed-up value overflows float32.
inline void BackUp(Tree& tree, int64_t b, int64_t node, float* running_min, float* running_max) {
  int64_t child = node;
  float leaf_value = tree.node_value(node);
  while (tree.parent(child) != kNoParent) {
    const int64_t up = tree.Node(b, tree.parent(child));
    const int a = tree.action_from_parent(child);
    const float reward = tree.reward(child), discount = tree.discount(child);
    leaf_value = reward + discount * leaf_value;
    const float count = static_cast<float>(tree.node_visits(up));
    float mean = (tree.node_value(up) * count + leaf_value) / (count + 1.0f);
    if (!std::isfinite(mean)) [[unlikely]] {
      // The running sum overflowed float32 though the mean may not: the mean as a weighted
      // average. A non-finite return itself is an overflow of the model's values.
      if (!std::isfinite(leaf_value)) ThrowBackupOverflow(b, leaf_value, reward, discount);
      mean = tree.node_value(up) * (count / (count + 1.0f)) + leaf_value / (count + 1.0f);
    }
    tree.node_value(up) = mean;
    tree.node_visits(up) += 1;
    const float child_value = tree.node_value(child);
    tree.visits(up)[a] += 1;
    const float q = reward + discount * child_value;
    if (!std::isfinite(q)) [[unlikely]] ThrowBackupOverflow(b, q, reward, discount);
    tree.q(up)[a] = q;
    if (running_min != nullptr) {
      *running_min = std::min(*running_min, q);
      *running_max = std::max(*running_max, q);
    }
    child = up;
  }
}

}  // namespace wmfast::mcts

#endif  // WMFAST_MCTS_BACKUP_H_
