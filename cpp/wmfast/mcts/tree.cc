#include "wmfast/mcts/tree.h"

#include <algorithm>
#include <cstring>

namespace wmfast::mcts {

Tree::Tree(int64_t batch_size, int64_t num_nodes, int num_actions)
    : batch_size(batch_size),
      num_nodes(num_nodes),
      num_actions(num_actions),
      root_invalid_actions(batch_size * num_actions, 0),
      record_words_((kHeaderWords + kNumEdgeFields * num_actions + 15) / 16 * 16),
      block_(static_cast<size_t>(batch_size * num_nodes * record_words_) * 4),
      words_(static_cast<uint32_t*>(block_.data())),
      created_(batch_size * num_nodes, 0) {}

void Tree::Create(int64_t id) {
  uint32_t* record = words_ + id * record_words_;
  // Everything before the prior logits is zero but the parent and children links.
  std::memset(record, 0, (kHeaderWords + kChildren * num_actions) * 4);
  parent(id) = kNoParent;
  action_from_parent(id) = kNoParent;
  std::fill_n(children(id), num_actions, kUnvisited);
  created_[id] = 1;
}

void Tree::CreateUnused() {
  for (int64_t id = 0; id < batch_size * num_nodes; ++id) {
    if (created_[id]) continue;
    Create(id);
    std::fill_n(prior_logits(id), num_actions, 0.0f);
  }
}

void Tree::CopyNode(int64_t id, const Tree& other, int64_t from) {
  std::memcpy(words_ + id * record_words_, other.words_ + from * other.record_words_,
              record_words_ * 4);
  created_[id] = 1;
}

void Tree::DeriveEdgeFields() {
  const int64_t size = batch_size * num_nodes * num_actions;
  // Filled in place: numpy views of these vectors may be alive.
  if (edge_values_.empty()) {
    edge_values_.resize(size);
    edge_rewards_.resize(size);
    edge_discounts_.resize(size);
  }
  for (int64_t b = 0; b < batch_size; ++b) {
    // Parents come before their children, so a parent's row is cleared before a child fills it.
    for (int64_t n = 0; n < num_nodes; ++n) {
      const int64_t id = Node(b, n);
      std::fill_n(&edge_values_[id * num_actions], num_actions, 0.0f);
      std::fill_n(&edge_rewards_[id * num_actions], num_actions, 0.0f);
      std::fill_n(&edge_discounts_[id * num_actions], num_actions, 0.0f);
      if (!created_[id] || parent(id) < 0) continue;
      const int64_t edge = Node(b, parent(id)) * num_actions + action_from_parent(id);
      edge_values_[edge] = node_value(id);
      edge_rewards_[edge] = reward(id);
      edge_discounts_[edge] = discount(id);
    }
  }
}

void Tree::PrefetchWords(int64_t id, int64_t first_word, int64_t words) const {
  const char* begin = reinterpret_cast<const char*>(words_ + id * record_words_ + first_word);
  for (int64_t offset = 0; offset < words * 4; offset += 64) __builtin_prefetch(begin + offset);
}

std::vector<TreeField> Tree::Fields() const {
  const int64_t record = record_words_ * 4, row = num_actions * 4;
  auto word = [&](int64_t w) { return static_cast<const void*>(words_ + w); };
  auto edge = [&](EdgeField f) { return word(kHeaderWords + f * num_actions); };
  return {
      {"node_visits", false, false, word(kNodeVisits), record},
      {"raw_values", true, false, word(kRawValue), record},
      {"node_values", true, false, word(kNodeValue), record},
      {"parents", false, false, word(kParent), record},
      {"action_from_parent", false, false, word(kActionFromParent), record},
      {"children_index", false, true, edge(kChildren), record},
      {"children_prior_logits", true, true, edge(kPriorLogits), record},
      {"children_priors", true, true, edge(kPriors), record},
      {"children_visits", false, true, edge(kVisits), record},
      {"children_values", true, true, edge_values_.data(), row},
      {"children_rewards", true, true, edge_rewards_.data(), row},
      {"children_discounts", true, true, edge_discounts_.data(), row},
  };
}

int64_t SubtreeCapacity(const Tree& old, const std::vector<int32_t>& new_roots,
                        int num_simulations) {
  std::vector<uint8_t> inside(old.num_nodes);
  int64_t largest = 1;
  for (int64_t b = 0; b < old.batch_size; ++b) {
    const int32_t child = new_roots[b];
    if (child == kUnvisited) continue;
    // Old node indices ascend from parent to child: one pass finds the subtree.
    std::fill(inside.begin(), inside.end(), 0);
    inside[child] = 1;
    int64_t size = 1;
    for (int64_t n = child + 1; n < old.num_nodes; ++n) {
      const int32_t parent = old.created(old.Node(b, n)) ? old.parent(old.Node(b, n)) : kNoParent;
      if (parent >= 0 && inside[parent]) {
        inside[n] = 1;
        ++size;
      }
    }
    largest = std::max(largest, size);
  }
  return largest + num_simulations;
}

int32_t NumberSubtree(const Tree& old, int64_t b, int32_t root,
                      const std::function<bool(int32_t edge)>& drop_edge,
                      std::vector<int32_t>* old_to_new) {
  // Old node indices ascend from parent to child, so one pass finds the subtree in order.
  old_to_new->assign(old.num_nodes, -1);
  (*old_to_new)[root] = 0;
  int32_t next = 1;
  for (int64_t n = root + 1; n < old.num_nodes; ++n) {
    const int64_t id = old.Node(b, n);
    if (!old.created(id)) continue;
    const int32_t parent = old.parent(id);
    if (parent < 0 || (*old_to_new)[parent] < 0) continue;
    if (parent == root && drop_edge(old.action_from_parent(id))) continue;
    (*old_to_new)[n] = next++;
  }
  return next;
}

}  // namespace wmfast::mcts
