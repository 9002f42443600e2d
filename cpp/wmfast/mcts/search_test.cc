#include "wmfast/mcts/search.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace wmfast::mcts {
namespace {

// A model without latents: each action pays a fixed reward and the episode ends (a bandit), or
// with discount 1 and zero reward it is an endless uninformative tree.
class FixedEvaluator : public model::Evaluator {
 public:
  FixedEvaluator(std::vector<float> rewards, float discount)
      : rewards_(std::move(rewards)), discount_(discount) {}
  void Evaluate(const model::LeafBatch& leaves, const model::LeafOutputs& out) override {
    const int A = static_cast<int>(rewards_.size());
    ++calls;
    for (int64_t i = 0; i < leaves.size; ++i) {
      out.rewards[i] = rewards_[leaves.actions[i]];
      out.discounts[i] = discount_;
      out.values[i] = 0.0f;
      for (int a = 0; a < A; ++a) out.logits[i * A + a] = 0.0f;
      EXPECT_GE(leaves.source_slots[i], 0);
      EXPECT_GT(leaves.target_slots[i], leaves.source_slots[i]);
    }
  }
  int calls = 0;

 private:
  std::vector<float> rewards_;
  float discount_;
};

SearchConfig Config(int A, int N) {
  SearchConfig c;
  c.num_actions = A;
  c.num_simulations = N;
  c.temperature = 0.0f;
  c.qtransform = QTransform::kMinMax;
  c.min_value = 0.0f;
  c.max_value = 1.0f;
  return c;
}

void ExpectConsistent(const Tree& t) {
  for (int64_t b = 0; b < t.batch_size; ++b) {
    for (int64_t n = 0; n < t.num_nodes; ++n) {
      const int64_t id = t.Node(b, n);
      if (!t.created(id)) continue;
      const int32_t visits = t.node_visits(id);
      if (visits == 0) continue;
      int32_t children = 0;
      for (int a = 0; a < t.num_actions; ++a) {
        children += t.visits(id)[a];
        const int32_t child = t.children(id)[a];
        if (child != kUnvisited) {
          EXPECT_EQ(t.parent(t.Node(b, child)), n);
          EXPECT_EQ(t.action_from_parent(t.Node(b, child)), a);
          EXPECT_GT(child, n);
        }
      }
      EXPECT_EQ(visits, 1 + children) << "tree " << b << " node " << n;
    }
  }
}

// Edge visits and node values of the created nodes, in node order.
std::vector<int32_t> EdgeVisits(const Tree& t) {
  std::vector<int32_t> out;
  for (int64_t id = 0; id < t.batch_size * t.num_nodes; ++id) {
    if (t.created(id)) out.insert(out.end(), t.visits(id), t.visits(id) + t.num_actions);
  }
  return out;
}
std::vector<float> NodeValues(const Tree& t) {
  std::vector<float> out;
  for (int64_t id = 0; id < t.batch_size * t.num_nodes; ++id) {
    if (t.created(id)) out.push_back(t.node_value(id));
  }
  return out;
}

TEST(SearchTest, BanditBestArmMostVisited) {
  const std::vector<float> rewards = {0.1f, 0.9f, 0.4f};
  const int B = 3, A = 3, N = 100;
  std::vector<float> logits(B * A, 0.0f), values(B, 0.0f);
  Search search(Config(A, N), B, N + 1, 0);
  search.InitFromRoots({logits.data(), values.data(), nullptr, nullptr});
  FixedEvaluator evaluator(rewards, 0.0f);
  search.Run(evaluator, nullptr);
  EXPECT_EQ(evaluator.calls, N);
  for (int b = 0; b < B; ++b) {
    EXPECT_EQ(search.action()[b], 1);
    EXPECT_FLOAT_EQ(search.q_values()[b * A + 1], 0.9f);
    const int total = std::accumulate(&search.visit_counts()[b * A],
                                      &search.visit_counts()[b * A] + A, 0);
    EXPECT_EQ(total, N);
  }
  ExpectConsistent(search.tree());
}

TEST(SearchTest, ThreadsGiveIdenticalTrees) {
  const int B = 100, A = 4, N = 40;  // 32+ trees per thread: all 3 threads work
  std::vector<float> logits(B * A), values(B, 0.5f);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = 0.1f * static_cast<float>(i % 5);
  SearchConfig config = Config(A, N);
  config.qtransform = QTransform::kParentAndSiblings;
  config.dirichlet_fraction = 0.25f;
  config.temperature = 1.0f;
  config.seed = 42;
  std::vector<Search> searches;
  for (int threads : {1, 2, 3}) {
    config.num_threads = threads;
    searches.emplace_back(config, B, N + 1, 5);
    searches.back().InitFromRoots({logits.data(), values.data(), nullptr, nullptr});
    FixedEvaluator evaluator({0.0f, 0.3f, 0.2f, 0.1f}, 0.9f);
    searches.back().Run(evaluator, nullptr);
    ExpectConsistent(searches.back().tree());
  }
  for (size_t i = 1; i < searches.size(); ++i) {
    EXPECT_EQ(EdgeVisits(searches[i].tree()), EdgeVisits(searches[0].tree()));
    EXPECT_EQ(NodeValues(searches[i].tree()), NodeValues(searches[0].tree()));
    EXPECT_EQ(searches[i].action(), searches[0].action());
  }
}

// Rewards and logits that depend on the leaf (action and source slot, which do not depend on
// the threads); it takes concurrent calls, so a search with threads shards its trees.
class ShardableEvaluator : public model::Evaluator {
 public:
  void Evaluate(const model::LeafBatch& leaves, const model::LeafOutputs& out) override {
    int64_t seen = max_rows.load();
    while (leaves.size > seen && !max_rows.compare_exchange_weak(seen, leaves.size)) {
    }
    for (int64_t i = 0; i < leaves.size; ++i) {
      const int64_t key = leaves.actions[i] + 4 * (leaves.source_slots[i] % 13);
      out.rewards[i] = 0.1f * static_cast<float>(key % 5);
      out.discounts[i] = 0.9f;
      out.values[i] = 0.05f * static_cast<float>(key % 7);
      for (int a = 0; a < 4; ++a) out.logits[i * 4 + a] = 0.2f * static_cast<float>((a + key) % 4);
    }
  }
  int max_concurrent_calls() const override { return 8; }
  std::atomic<int64_t> max_rows{0};
};

TEST(SearchTest, ShardedSearchesGiveIdenticalTrees) {
  const int B = 100, A = 4, N = 30;
  std::vector<float> logits(B * A), values(B, 0.1f);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = 0.1f * static_cast<float>(i % 7);
  SearchConfig config = Config(A, N);
  config.qtransform = QTransform::kParentAndSiblings;
  config.dirichlet_fraction = 0.25f;
  config.temperature = 1.0f;
  config.seed = 9;
  std::vector<Search> searches;
  for (int threads : {1, 2, 3}) {
    config.num_threads = threads;
    searches.emplace_back(config, B, N + 1, 1);
    searches.back().InitFromRoots({logits.data(), values.data(), nullptr, nullptr});
    ShardableEvaluator evaluator;
    searches.back().Run(evaluator, nullptr);
    EXPECT_LE(evaluator.max_rows.load(), (B + threads - 1) / threads);  // one shard per call
    ExpectConsistent(searches.back().tree());
  }
  for (size_t i = 1; i < searches.size(); ++i) {
    EXPECT_EQ(EdgeVisits(searches[i].tree()), EdgeVisits(searches[0].tree()));
    EXPECT_EQ(NodeValues(searches[i].tree()), NodeValues(searches[0].tree()));
    EXPECT_EQ(searches[i].action(), searches[0].action());
    EXPECT_EQ(searches[i].policy(), searches[0].policy());
  }
}

TEST(SearchTest, IllegalRootActionsAreNeverVisited) {
  const int B = 2, A = 4, N = 30;
  std::vector<float> logits(B * A, 0.0f), values(B, 0.0f);
  std::vector<uint8_t> invalid = {0, 1, 1, 0, 1, 1, 1, 0};
  SearchConfig config = Config(A, N);
  config.dirichlet_fraction = 0.5f;
  config.temperature = 1.0f;
  Search search(config, B, N + 1, 0);
  search.InitFromRoots({logits.data(), values.data(), invalid.data(), nullptr});
  FixedEvaluator evaluator({0.0f, 1.0f, 1.0f, 0.5f}, 0.0f);
  search.Run(evaluator, nullptr);
  for (int b = 0; b < B; ++b) {
    EXPECT_FALSE(invalid[b * A + search.action()[b]]);
    for (int a = 0; a < A; ++a) {
      if (invalid[b * A + a]) EXPECT_EQ(search.visit_counts()[b * A + a], 0);
    }
  }
}

TEST(SearchTest, AllIllegalRootThrows) {
  const int A = 2;
  std::vector<float> logits(A, 0.0f), values(1, 0.0f);
  std::vector<uint8_t> invalid = {1, 1};
  Search search(Config(A, 3), 1, 4, 0);
  EXPECT_THROW(search.InitFromRoots({logits.data(), values.data(), invalid.data(), nullptr}),
               std::invalid_argument);
}

TEST(SearchTest, InvalidConfigThrows) {
  SearchConfig config = Config(3, 0);
  EXPECT_THROW(ValidateConfig(config), std::invalid_argument);
  config = Config(3, 4);
  config.dirichlet_fraction = 2.0f;
  EXPECT_THROW(ValidateConfig(config), std::invalid_argument);
}

TEST(SearchTest, ReuseKeepsTheChildSubtree) {
  const int B = 2, A = 3, N = 30;
  std::vector<float> logits(B * A, 0.0f), values(B, 0.0f);
  SearchConfig config = Config(A, N);
  config.qtransform = QTransform::kParentAndSiblings;
  Search first(config, B, N + 1, 0);
  first.InitFromRoots({logits.data(), values.data(), nullptr, nullptr});
  FixedEvaluator evaluator({0.0f, 0.1f, 0.2f}, 1.0f);
  first.Run(evaluator, nullptr);
  const std::vector<int64_t> taken = {first.action()[0], first.action()[1]};
  const int64_t nodes = Search::NodesForReuse(first, taken.data(), N);
  Search second(config, B, nodes, 1);
  std::vector<int64_t> slot_map;
  second.InitFromPrevious(first, taken.data(), RootInput{}, &slot_map);
  for (int b = 0; b < B; ++b) {
    const int32_t child = first.tree().children(first.tree().Node(b, 0))[taken[b]];
    EXPECT_EQ(second.tree().node_visits(second.tree().Node(b, 0)),
              first.tree().node_visits(first.tree().Node(b, child)));
    EXPECT_EQ(slot_map[second.Slot(b, 0)], first.Slot(b, child));
  }
  ExpectConsistent(second.tree());
  second.Run(evaluator, nullptr);
  ExpectConsistent(second.tree());
  for (int b = 0; b < B; ++b) {
    const int32_t child = first.tree().children(first.tree().Node(b, 0))[taken[b]];
    EXPECT_EQ(second.tree().node_visits(second.tree().Node(b, 0)),
              first.tree().node_visits(first.tree().Node(b, child)) + N);
  }
}

// The bindings move the results out of a search before its trees are reused: taking them gives
// what the accessors held, and the next search continuing the trees is unchanged by it.
TEST(SearchTest, TakeResultsLeavesTheTreesForReuse) {
  const int B = 2, A = 3, N = 30;
  std::vector<float> logits(B * A, 0.0f), values(B, 0.0f);
  SearchConfig config = Config(A, N);
  config.qtransform = QTransform::kParentAndSiblings;
  FixedEvaluator evaluator({0.0f, 0.1f, 0.2f}, 1.0f);
  Search kept(config, B, N + 1, 0), taken_from(config, B, N + 1, 0);
  for (Search* s : {&kept, &taken_from}) {
    s->InitFromRoots({logits.data(), values.data(), nullptr, nullptr});
    s->Run(evaluator, nullptr);
  }
  const std::vector<int64_t> taken = {kept.action()[0], kept.action()[1]};
  const std::vector<int32_t> visits = kept.visit_counts();
  const std::vector<float> policy = kept.policy(), root_value = kept.root_value(),
                           q_values = kept.q_values();
  Search::Results results = taken_from.TakeResults();
  EXPECT_EQ(results.action, taken);
  EXPECT_EQ(results.visit_counts, visits);
  EXPECT_EQ(results.policy, policy);
  EXPECT_EQ(results.root_value, root_value);
  EXPECT_EQ(results.q_values, q_values);
  EXPECT_TRUE(results.gumbel.empty());  // MuZero search: no Gumbel noise
  EXPECT_TRUE(taken_from.action().empty());
  EXPECT_TRUE(taken_from.visit_counts().empty());

  const int64_t nodes = Search::NodesForReuse(kept, taken.data(), N);
  ASSERT_EQ(Search::NodesForReuse(taken_from, taken.data(), N), nodes);
  Search after_kept(config, B, nodes, 1), after_taken(config, B, nodes, 1);
  std::vector<int64_t> slots_kept, slots_taken;
  after_kept.InitFromPrevious(kept, taken.data(), RootInput{}, &slots_kept);
  after_taken.InitFromPrevious(taken_from, taken.data(), RootInput{}, &slots_taken);
  after_kept.Run(evaluator, nullptr);
  after_taken.Run(evaluator, nullptr);
  EXPECT_EQ(slots_taken, slots_kept);
  EXPECT_EQ(after_taken.action(), after_kept.action());
  EXPECT_EQ(after_taken.visit_counts(), after_kept.visit_counts());
  EXPECT_EQ(EdgeVisits(after_taken.tree()), EdgeVisits(after_kept.tree()));
  EXPECT_EQ(NodeValues(after_taken.tree()), NodeValues(after_kept.tree()));
}

TEST(SearchTest, GumbelVisitsFollowSequentialHalving) {
  const int A = 4, N = 16;
  std::vector<float> logits(A, 0.0f), values(1, 0.0f), gumbel(A, 0.0f);
  SearchConfig config = Config(A, N);
  config.gumbel = true;
  config.qtransform = QTransform::kCompletedByMixValue;
  config.max_num_considered_actions = 4;
  Search search(config, 1, N + 1, 0);
  search.InitFromRoots({logits.data(), values.data(), nullptr, gumbel.data()});
  FixedEvaluator evaluator({0.1f, 0.9f, 0.5f, 0.2f}, 0.0f);
  search.Run(evaluator, nullptr);
  // 4 actions x 2 visits, then the best 2 get 4 more each.
  EXPECT_EQ(search.visit_counts(), (std::vector<int32_t>{2, 6, 6, 2}));
  EXPECT_EQ(search.action()[0], 1);
  float sum = 0.0f;
  for (float p : search.policy()) sum += p;
  EXPECT_NEAR(sum, 1.0f, 1e-6f);
}

}  // namespace
}  // namespace wmfast::mcts
