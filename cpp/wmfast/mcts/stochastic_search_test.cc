#include "wmfast/mcts/stochastic_search.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace wmfast::mcts {
namespace {

// Decision: chance logits log(probs), afterstate value 0. Chance: reward = outcome index,
// discount 0 (the episode ends after one move and one outcome), uniform action logits.
class ChanceEvaluator : public model::Evaluator {
 public:
  ChanceEvaluator(int width, bool decision, std::vector<float> probs = {})
      : width_(width), decision_(decision), probs_(std::move(probs)) {}
  void Evaluate(const model::LeafBatch& leaves, const model::LeafOutputs& out) override {
    ++calls;
    rows += leaves.size;
    for (int64_t i = 0; i < leaves.size; ++i) {
      out.values[i] = 0.0f;
      for (int k = 0; k < width_; ++k) {
        out.logits[i * width_ + k] = decision_ ? std::log(probs_[k]) : 0.0f;
      }
      if (!decision_) {
        out.rewards[i] = static_cast<float>(leaves.actions[i]);
        out.discounts[i] = 0.0f;
      }
    }
  }
  int calls = 0;
  int64_t rows = 0;

 private:
  int width_;
  bool decision_;
  std::vector<float> probs_;
};

SearchConfig Config(int A, int N) {
  SearchConfig c;
  c.num_actions = A;
  c.num_simulations = N;
  c.temperature = 0.0f;
  return c;
}

TEST(StochasticSearchTest, ChanceVisitsFollowTheDistributionAndQIsTheExpectation) {
  const std::vector<float> probs = {0.5f, 0.25f, 0.125f, 0.125f};
  SearchConfig config = Config(1, 81);
  config.max_depth = 2;
  StochasticSearch search(config, 4, /*batch_size=*/2, 82, /*stream=*/0);
  const std::vector<float> logits = {0.0f, 0.0f}, values = {0.0f, 0.0f};
  search.InitFromRoots({logits.data(), values.data()});
  ChanceEvaluator decision(4, true, probs), chance(1, false);
  search.Run(decision, chance, nullptr);
  const Tree& t = search.tree();
  // One decision call (the root's only action), then chance calls only.
  EXPECT_EQ(decision.calls, 1);
  EXPECT_EQ(decision.rows + chance.rows, 2 * 81);
  EXPECT_EQ(search.decision_calls(), 1);
  for (int64_t b = 0; b < 2; ++b) {
    const int32_t afterstate = t.children(t.Node(b, 0))[0];
    ASSERT_EQ(afterstate, 1);
    EXPECT_TRUE(search.is_chance(b, afterstate));
    const int32_t* visits = t.visits(t.Node(b, afterstate));
    EXPECT_EQ(visits[0], 40);
    EXPECT_EQ(visits[1], 20);
    EXPECT_EQ(visits[2], 10);
    EXPECT_EQ(visits[3], 10);
    EXPECT_NEAR(t.q(t.Node(b, 0))[0], (20.0f + 20.0f + 30.0f) / 81.0f, 1e-5f);
  }
}

// Outputs that depend on each leaf (its action and source slot; slots do not depend on threads),
// so trees differ in shape. `concurrent` lets a search shard its trees over threads.
class LeafEvaluator : public model::Evaluator {
 public:
  LeafEvaluator(int width, bool decision, bool concurrent)
      : width_(width), decision_(decision), concurrent_(concurrent) {}
  void Evaluate(const model::LeafBatch& leaves, const model::LeafOutputs& out) override {
    calls.fetch_add(1);
    int64_t seen = max_rows.load();
    while (leaves.size > seen && !max_rows.compare_exchange_weak(seen, leaves.size)) {
    }
    for (int64_t i = 0; i < leaves.size; ++i) {
      const int64_t key = leaves.actions[i] + 3 * (leaves.source_slots[i] % 11);
      out.values[i] = 0.05f * static_cast<float>(key % 7) - 0.1f;
      for (int k = 0; k < width_; ++k) {
        out.logits[i * width_ + k] = 0.3f * static_cast<float>((k + key) % width_);
      }
      if (!decision_) {
        out.rewards[i] = 0.1f * static_cast<float>(key % 5);
        out.discounts[i] = key % 13 == 0 ? 0.0f : 0.9f;
      }
    }
  }
  int max_concurrent_calls() const override { return concurrent_ ? 8 : 1; }
  std::atomic<int> calls{0};
  std::atomic<int64_t> max_rows{0};

 private:
  int width_;
  bool decision_, concurrent_;
};

TEST(StochasticSearchTest, ShardedSearchesGiveIdenticalTrees) {
  const int B = 100, A = 3, C = 4, N = 30;  // 32+ trees per thread: all 3 threads work
  std::vector<float> logits(B * A), values(B);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = 0.2f * static_cast<float>(i % 7);
  for (int b = 0; b < B; ++b) values[b] = 0.01f * static_cast<float>(b % 9);
  SearchConfig config = Config(A, N);
  config.dirichlet_fraction = 0.25f;
  config.temperature = 1.0f;
  config.seed = 7;
  std::vector<std::vector<int32_t>> visits;
  std::vector<std::vector<float>> node_values;
  std::vector<std::vector<int64_t>> actions;
  for (bool concurrent : {false, true}) {
    for (int threads : {1, 2, 3}) {
      config.num_threads = threads;
      StochasticSearch search(config, C, B, N + 1, /*stream=*/3);
      search.InitFromRoots({logits.data(), values.data()});
      LeafEvaluator decision(C, true, concurrent), chance(A, false, concurrent);
      search.Run(decision, chance, nullptr);
      // Sharded: each call holds one shard's leaves at most.
      EXPECT_LE(std::max(decision.max_rows.load(), chance.max_rows.load()),
                concurrent ? (B + threads - 1) / threads : B);
      EXPECT_EQ(search.decision_calls(), decision.calls.load());
      EXPECT_EQ(search.chance_calls(), chance.calls.load());
      const Tree& t = search.tree();
      std::vector<int32_t> v;
      std::vector<float> q;
      for (int64_t id = 0; id < t.batch_size * t.num_nodes; ++id) {
        v.insert(v.end(), t.visits(id), t.visits(id) + t.num_actions);
        q.push_back(t.node_value(id));
      }
      visits.push_back(v);
      node_values.push_back(q);
      actions.push_back(search.action());
    }
  }
  for (size_t i = 1; i < visits.size(); ++i) {
    EXPECT_EQ(visits[i], visits[0]) << "run " << i;
    EXPECT_EQ(node_values[i], node_values[0]) << "run " << i;
    EXPECT_EQ(actions[i], actions[0]) << "run " << i;
  }
}

TEST(StochasticSearchTest, ShardedSearchStopsWhenPollThrows) {
  const int B = 64, A = 2, C = 2, N = 5000;
  std::vector<float> logits(B * A, 0.0f), values(B, 0.0f);
  SearchConfig config = Config(A, N);
  config.num_threads = 2;
  StochasticSearch search(config, C, B, N + 1, 0);
  search.InitFromRoots({logits.data(), values.data()});
  LeafEvaluator decision(C, true, true), chance(A, false, true);
  int polls = 0;
  EXPECT_THROW(search.Run(decision, chance,
                          [&] {
                            if (++polls >= 5) throw std::runtime_error("stop");
                          }),
               std::runtime_error);
  // The caller polls in whichever shards it runs: after its own failed, it may run the other
  // shard (when no worker has claimed it yet), which stops at its first poll.
  EXPECT_GE(polls, 5);
  EXPECT_LE(polls, 6);
  // The other shard stopped too: a whole search makes a call per shard per simulation at least.
  EXPECT_LT(decision.calls.load() + chance.calls.load(), 2 * N);
}

TEST(StochasticSearchTest, RejectsBadSettings) {
  EXPECT_THROW(StochasticSearch(Config(2, 4), 0, 1, 5, 0), std::invalid_argument);
  SearchConfig gumbel = Config(2, 4);
  gumbel.gumbel = true;
  gumbel.qtransform = QTransform::kCompletedByMixValue;
  EXPECT_THROW(StochasticSearch(gumbel, 3, 1, 5, 0), std::invalid_argument);
}

}  // namespace
}  // namespace wmfast::mcts
