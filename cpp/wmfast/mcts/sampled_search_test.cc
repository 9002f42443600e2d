#include "wmfast/mcts/sampled_search.h"

#include <gtest/gtest.h>

#include <atomic>
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

// Reward -(a - target)^2 with a target set by the leaf's source slot (which does not depend on
// the threads), a policy whose mean moves with the action; `concurrent` lets the search shard.
class ShardableEvaluator : public model::Evaluator {
 public:
  explicit ShardableEvaluator(bool concurrent) : concurrent_(concurrent) {}
  void Evaluate(const model::LeafBatch& leaves, const model::LeafOutputs& out) override {
    calls.fetch_add(1);
    int64_t seen = max_rows.load();
    while (leaves.size > seen && !max_rows.compare_exchange_weak(seen, leaves.size)) {
    }
    for (int64_t i = 0; i < leaves.size; ++i) {
      const float a = leaves.continuous_actions[i];
      const float target = 0.1f * static_cast<float>(leaves.source_slots[i] % 7) - 0.3f;
      out.rewards[i] = -(a - target) * (a - target);
      out.discounts[i] = 0.9f;
      out.logits[2 * i] = 0.5f * a;
      out.logits[2 * i + 1] = -0.5f;
      out.values[i] = 0.1f * a;
    }
  }
  int max_concurrent_calls() const override { return concurrent_ ? 8 : 1; }
  std::atomic<int> calls{0};
  std::atomic<int64_t> max_rows{0};

 private:
  bool concurrent_;
};

TEST(SampledSearchTest, ShardedSearchesGiveIdenticalTrees) {
  const int K = 4, N = 25;
  const int64_t B = 100;  // 32+ trees per thread: all 3 threads work
  std::vector<float> policy(B * 2), values(B);
  for (int64_t b = 0; b < B; ++b) {
    policy[2 * b] = 0.02f * static_cast<float>(b % 11) - 0.1f;
    policy[2 * b + 1] = -1.0f;
    values[b] = 0.0f;
  }
  SampledConfig config = Continuous(K, N);
  config.dirichlet_fraction = 0.25f;
  config.temperature = 1.0f;
  config.seed = 11;
  std::vector<std::vector<int32_t>> visits;
  std::vector<std::vector<float>> node_values, samples;
  std::vector<std::vector<int64_t>> chosen;
  for (bool concurrent : {false, true}) {
    for (int threads : {1, 2, 3}) {
      config.num_threads = threads;
      SampledSearch search(config, B, /*stream=*/2);
      search.InitFromRoots({policy.data(), values.data()});
      ShardableEvaluator evaluator(concurrent);
      search.Run(evaluator, nullptr);
      EXPECT_LE(evaluator.max_rows.load(), concurrent ? (B + threads - 1) / threads : B);
      EXPECT_EQ(evaluator.calls.load(), concurrent ? N * threads : N);
      const Tree& t = search.tree();
      std::vector<int32_t> v;
      std::vector<float> q, s;
      for (int64_t id = 0; id < t.batch_size * t.num_nodes; ++id) {
        v.insert(v.end(), t.visits(id), t.visits(id) + t.num_actions);
        q.push_back(t.node_value(id));
        s.insert(s.end(), search.samples(id), search.samples(id) + search.num_children(id));
      }
      visits.push_back(v);
      node_values.push_back(q);
      samples.push_back(s);
      chosen.push_back(search.TakeResults().index);
    }
  }
  for (size_t i = 1; i < visits.size(); ++i) {
    EXPECT_EQ(visits[i], visits[0]) << "run " << i;
    EXPECT_EQ(node_values[i], node_values[0]) << "run " << i;
    EXPECT_EQ(samples[i], samples[0]) << "run " << i;
    EXPECT_EQ(chosen[i], chosen[0]) << "run " << i;
  }
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
