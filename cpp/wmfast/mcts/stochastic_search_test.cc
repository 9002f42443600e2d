#include "wmfast/mcts/stochastic_search.h"

#include <gtest/gtest.h>

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

TEST(StochasticSearchTest, RejectsBadSettings) {
  EXPECT_THROW(StochasticSearch(Config(2, 4), 0, 1, 5, 0), std::invalid_argument);
  SearchConfig gumbel = Config(2, 4);
  gumbel.gumbel = true;
  gumbel.qtransform = QTransform::kCompletedByMixValue;
  EXPECT_THROW(StochasticSearch(gumbel, 3, 1, 5, 0), std::invalid_argument);
}

}  // namespace
}  // namespace wmfast::mcts
