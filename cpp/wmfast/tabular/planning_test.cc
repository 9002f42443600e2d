#include "wmfast/tabular/planning.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace wmfast::tabular {
namespace {

// A chain 0 -> 1 -> ... -> n-1 under action 1 (reward 1 on reaching n-1, which terminates);
// action 0 stays put with reward 0.
std::shared_ptr<const CompiledModel> Chain(int64_t n) {
  TabularModel model(n, 2);
  std::vector<int64_t> states, actions, next;
  std::vector<double> rewards;
  std::vector<uint8_t> terminated;
  for (int64_t s = 0; s + 1 < n; ++s) {
    states.insert(states.end(), {s, s});
    actions.insert(actions.end(), {0, 1});
    next.insert(next.end(), {s, s + 1});
    rewards.insert(rewards.end(), {0.0, s + 2 == n ? 1.0 : 0.0});
    terminated.insert(terminated.end(), {0, s + 2 == n});
  }
  model.Update(TransitionBatch<int64_t, double, uint8_t>{
      states.data(), actions.data(), rewards.data(), next.data(), terminated.data(),
      static_cast<int64_t>(states.size())});
  return model.Compiled();
}

TEST(PlanningTest, ChainValuesAreDiscountedReward) {
  const int64_t n = 10;
  const double gamma = 0.9;
  auto model = Chain(n);
  for (Sweep sweep : {Sweep::kGaussSeidel, Sweep::kJacobi}) {
    PlanningOptions options;
    options.gamma = gamma;
    options.tol = 1e-12;
    options.sweep = sweep;
    const Solution solution = ValueIteration(*model, options);
    EXPECT_TRUE(solution.converged);
    for (int64_t s = 0; s + 1 < n; ++s) {
      EXPECT_NEAR(solution.values[s], std::pow(gamma, n - 2 - s), 1e-10) << "state " << s;
      EXPECT_EQ(solution.policy[s], 1);
    }
    // The terminal state was never left: its pairs are unknown, valued 0.
    EXPECT_EQ(solution.values[n - 1], 0.0);
  }
}

TEST(PlanningTest, PolicyIterationAgreesWithValueIteration) {
  auto model = Chain(7);
  PlanningOptions options;
  options.gamma = 0.95;
  options.tol = 1e-12;
  const Solution vi = ValueIteration(*model, options);
  const Solution pi = PolicyIteration(*model, options);
  EXPECT_TRUE(pi.converged);
  EXPECT_EQ(vi.policy, pi.policy);
  for (size_t s = 0; s < vi.values.size(); ++s) EXPECT_NEAR(vi.values[s], pi.values[s], 1e-9);
}

TEST(PlanningTest, UnknownPairsGetTheOptimisticValue) {
  auto model = Chain(4);
  PlanningOptions options;
  options.gamma = 0.5;
  options.min_visits = 1;
  options.unknown_value = 1.0 / (1.0 - 0.5);  // R-MAX with r_max = 1
  const Solution solution = ValueIteration(*model, options);
  EXPECT_DOUBLE_EQ(solution.values[3], 2.0);  // state 3 was never left: both actions unknown
  EXPECT_DOUBLE_EQ(solution.q_values[3 * 2 + 0], 2.0);
}

TEST(PlanningTest, JacobiWithThreadsEqualsOneThread) {
  auto model = Chain(50);
  PlanningOptions options;
  options.gamma = 0.97;
  options.sweep = Sweep::kJacobi;
  const Solution one = ValueIteration(*model, options);
  options.num_threads = 2;
  const Solution two = ValueIteration(*model, options);
  EXPECT_EQ(one.values, two.values);
  EXPECT_EQ(one.iterations, two.iterations);
}

TEST(PlanningTest, RejectsBadOptions) {
  auto model = Chain(3);
  PlanningOptions options;
  options.gamma = 1.5;
  EXPECT_THROW(ValueIteration(*model, options), std::invalid_argument);
  options.gamma = 0.9;
  options.tol = 0.0;
  EXPECT_THROW(ValueIteration(*model, options), std::invalid_argument);
  options.tol = 1e-6;
  options.max_iters = 0;
  EXPECT_THROW(PolicyIteration(*model, options), std::invalid_argument);
}

TEST(PlanningTest, InterruptStopsALongRun) {
  // One state looping on itself with reward 1: undiscounted, V grows forever.
  TabularModel loop(1, 1);
  const int64_t zero = 0;
  const double one = 1.0;
  const uint8_t no = 0;
  loop.Update(TransitionBatch<int64_t, double, uint8_t>{&zero, &zero, &one, &zero, &no, 1});
  auto model = loop.Compiled();
  PlanningOptions options;
  options.gamma = 1.0;
  options.max_iters = int64_t{1} << 40;
  int calls = 0;
  options.check_interrupt = [&calls] {
    if (++calls == 3) throw std::runtime_error("stop");
  };
  EXPECT_THROW(ValueIteration(*model, options), std::runtime_error);
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace wmfast::tabular
