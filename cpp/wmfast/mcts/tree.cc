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
  std::memset(record, 0, (kHeaderWords + kPriorLogits * num_actions) * 4);
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

void Tree::PrefetchWords(int64_t id, int64_t first_word, int64_t words) const {
  const char* begin = reinterpret_cast<const char*>(words_ + id * record_words_ + first_word);
  for (int64_t offset = 0; offset < words * 4; offset += 64) __builtin_prefetch(begin + offset);
}

std::vector<TreeField> Tree::Fields() const {
  auto edge = [&](EdgeField f) { return kHeaderWords + f * num_actions; };
  return {
      {"node_visits", false, false, kNodeVisits},
      {"raw_values", true, false, kRawValue},
      {"node_values", true, false, kNodeValue},
      {"parents", false, false, kParent},
      {"action_from_parent", false, false, kActionFromParent},
      {"children_index", false, true, edge(kChildren)},
      {"children_prior_logits", true, true, edge(kPriorLogits)},
      {"children_priors", true, true, edge(kPriors)},
      {"children_visits", false, true, edge(kVisits)},
      {"children_values", true, true, edge(kValues)},
      {"children_rewards", true, true, edge(kRewards)},
      {"children_discounts", true, true, edge(kDiscounts)},
  };
}

}  // namespace wmfast::mcts
