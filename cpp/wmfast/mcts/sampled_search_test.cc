#include "wmfast/mcts/sampled_search.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

namespace wmfast::mcts {
namespace {

// Continuous 1-D actions: reward -(a - 0.3)^2, discount 0.9, policy N(0, 1), value 0.
class BanditEvaluator : public model::Evaluator {
 public:
  void Evaluate(const model::LeafBatch& leaves, const model::LeafOutputs& out) override {
    for (int64_t i = 0; i < leaves.size; ++i) {
      const float a = leaves.continuous_actions[i];
      out.rewards[i] = -(a - 0.3f) * (a - 0.3f);
      out.discounts[i] = 0.9f;
      out.logits[2 * i] = 0.0f;
      out.logits[2 * i + 1] = 0.0f;
      out.values[i] = 0.0f;
    }
  }
};

SampledConfig Continuous(int K, int N) {
  SampledConfig c;
  c.num_samples = K;
  c.num_simulations = N;
  c.action_dim = 1;
  c.action_low = {-1.0f};
  c.action_high = {1.0f};
  c.temperature = 0.0f;
  return c;
}

TEST(SampledSearchTest, ReuseKeepsTheSubtreeAndNumbersNewNodesAfterIt) {
  const int K = 3, N = 30;
  const int64_t B = 2;
  SampledSearch first(Continuous(K, N), B, /*stream=*/0);
  const std::vector<float> policy = {0.0f, 0.0f, 0.0f, 0.0f}, values = {0.0f, 0.0f};
  first.InitFromRoots({policy.data(), values.data()});
  BanditEvaluator evaluator;
  first.Run(evaluator, nullptr);
  const Tree& old = first.tree();
  const std::vector<int64_t> taken = {0, kStartAfresh};
  const int64_t nodes = SampledSearch::NodesForReuse(first, taken.data(), N);
  const int32_t child = old.children(old.Node(0, kRootIndex))[0];
  ASSERT_GE(child, 1);
  SampledSearch second(Continuous(K, N), B, /*stream=*/1, nodes);
  std::vector<int64_t> slot_map;
  second.InitFromPrevious(first, taken.data(), {policy.data(), values.data()}, &slot_map);
  const Tree& t = second.tree();
  // Tree 0: its root is the old child, with its samples and edge visits.
  const int64_t root0 = t.Node(0, kRootIndex), old_child = old.Node(0, child);
  EXPECT_EQ(slot_map[second.Slot(0, 0)], first.Slot(0, child));
  EXPECT_EQ(second.num_children(root0), first.num_children(old_child));
  int32_t kept_visits = 1;
  for (int k = 0; k < second.num_children(root0); ++k) {
    EXPECT_EQ(second.samples(root0)[k], first.samples(old_child)[k]);
    EXPECT_EQ(t.visits(root0)[k], old.visits(old_child)[k]);
    kept_visits += t.visits(root0)[k];
  }
  EXPECT_EQ(t.node_visits(root0), kept_visits);
  // Tree 1 starts afresh: only its root, nothing to copy.
  EXPECT_EQ(t.node_visits(t.Node(1, kRootIndex)), 1);
  for (int64_t n = 0; n < nodes; ++n) EXPECT_EQ(slot_map[second.Slot(1, n)], -1);
  second.Run(evaluator, nullptr);
  EXPECT_EQ(second.tree().node_visits(root0), kept_visits + N);
  EXPECT_EQ(second.tree().node_visits(t.Node(1, kRootIndex)), 1 + N);
}

TEST(SampledSearchTest, ReuseRejectsBadTakenIndices) {
  SampledSearch first(Continuous(2, 4), 1, 0);
  const std::vector<float> policy = {0.0f, 0.0f}, values = {0.0f};
  first.InitFromRoots({policy.data(), values.data()});
  BanditEvaluator evaluator;
  first.Run(evaluator, nullptr);
  const std::vector<int64_t> too_big = {2}, too_small = {-2}, afresh = {kStartAfresh};
  EXPECT_THROW(SampledSearch::NodesForReuse(first, too_big.data(), 4), std::invalid_argument);
  EXPECT_THROW(SampledSearch::NodesForReuse(first, too_small.data(), 4), std::invalid_argument);
  SampledSearch second(Continuous(2, 4), 1, 1, 5);
  std::vector<int64_t> slot_map;
  // Starting afresh needs a root.
  EXPECT_THROW(second.InitFromPrevious(first, afresh.data(), {}, &slot_map),
               std::invalid_argument);
  SampledSearch other(Continuous(3, 4), 1, 1, 5);
  EXPECT_THROW(other.InitFromPrevious(first, afresh.data(), {policy.data(), values.data()},
                                      &slot_map),
               std::invalid_argument);
}

}  // namespace
}  // namespace wmfast::mcts
