#include "wmfast/tabular/tabular_model.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <vector>

#include "wmfast/tabular/planning.h"

namespace wmfast::tabular {
namespace {

struct Transitions {
  std::vector<int64_t> states, actions, next_states;
  std::vector<double> rewards;
  std::vector<uint8_t> terminated;
  TransitionBatch<int64_t, double, uint8_t> Batch() const {
    return {states.data(), actions.data(), rewards.data(), next_states.data(), terminated.data(),
            static_cast<int64_t>(states.size())};
  }
};

Transitions RandomTransitions(int64_t S, int64_t A, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Transitions t;
  for (int64_t i = 0; i < n; ++i) {
    t.states.push_back(rng() % S);
    t.actions.push_back(rng() % A);
    t.next_states.push_back((t.states.back() * 31 + t.actions.back() * 7 + rng() % 5) % S);
    t.rewards.push_back(static_cast<double>(rng() % 3));
    t.terminated.push_back(rng() % 10 == 0);
  }
  return t;
}

// (pair, next) -> (count, terminal count, reward sum), the obvious way.
std::map<std::pair<int64_t, int64_t>, std::tuple<int64_t, int64_t, double>> Reference(
    const Transitions& t, int64_t A) {
  std::map<std::pair<int64_t, int64_t>, std::tuple<int64_t, int64_t, double>> counts;
  for (size_t i = 0; i < t.states.size(); ++i) {
    auto& [count, terminal, reward] = counts[{t.states[i] * A + t.actions[i], t.next_states[i]}];
    count += 1;
    terminal += t.terminated[i];
    reward += t.rewards[i];
  }
  return counts;
}

void ExpectMatches(const CompiledModel& model, const Transitions& t, int64_t A) {
  const auto reference = Reference(t, A);
  ASSERT_EQ(model.num_edges(), static_cast<int64_t>(reference.size()));
  for (int64_t p = 0; p < model.num_pairs(); ++p) {
    int64_t visits = 0;
    for (int64_t e = model.pair_offsets[p]; e < model.pair_offsets[p + 1]; ++e) {
      auto it = reference.find({p, model.next_state[e]});
      ASSERT_NE(it, reference.end());
      EXPECT_EQ(model.count[e], std::get<0>(it->second));
      EXPECT_EQ(model.terminal_count[e], std::get<1>(it->second));
      EXPECT_DOUBLE_EQ(model.edge_reward_sum[e], std::get<2>(it->second));
      if (e > model.pair_offsets[p]) EXPECT_LT(model.next_state[e - 1], model.next_state[e]);
      visits += model.count[e];
    }
    EXPECT_EQ(model.visits[p], visits);
  }
}

TEST(TabularModelTest, CountsMatchReferenceForSmallBatches) {
  const Transitions t = RandomTransitions(50, 3, 2000, 1);
  TabularModel model(50, 3);
  model.Update(t.Batch());
  EXPECT_EQ(model.num_transitions(), 2000);
  ExpectMatches(*model.Compiled(), t, 3);
}

// Large batches take the partitioned (and threaded) path; results must not depend on it.
class PartitionedUpdateTest : public ::testing::TestWithParam<int> {};

TEST_P(PartitionedUpdateTest, CountsMatchReference) {
  const Transitions t = RandomTransitions(20000, 4, 600000, 2);
  TabularModel model(20000, 4, 0.0, GetParam());
  model.Update(t.Batch());
  ExpectMatches(*model.Compiled(), t, 4);
}

INSTANTIATE_TEST_SUITE_P(Threads, PartitionedUpdateTest, ::testing::Values(1, 2, 4));

TEST(TabularModelTest, ManyUpdatesEqualOneUpdate) {
  const Transitions t = RandomTransitions(300, 2, 5000, 3);
  TabularModel once(300, 2), pieces(300, 2);
  once.Update(t.Batch());
  for (int64_t begin = 0; begin < 5000; begin += 777) {
    auto batch = t.Batch();
    batch.states += begin;
    batch.actions += begin;
    batch.rewards += begin;
    batch.next_states += begin;
    batch.terminated += begin;
    batch.size = std::min<int64_t>(777, 5000 - begin);
    pieces.Update(batch);
  }
  const CounterEntries a = once.Entries(), b = pieces.Entries();
  EXPECT_EQ(a.pairs, b.pairs);
  EXPECT_EQ(a.counts, b.counts);
  EXPECT_EQ(a.terminated, b.terminated);
}

TEST(TabularModelTest, RejectedUpdateChangesNothing) {
  TabularModel model(10, 2);
  Transitions t = RandomTransitions(10, 2, 100, 4);
  model.Update(t.Batch());
  const CounterEntries before = model.Entries();
  t.next_states[57] = 10;
  try {
    model.Update(t.Batch());
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("next_states[57] = 10"), std::string::npos);
  }
  EXPECT_EQ(model.Entries().counts, before.counts);
  EXPECT_EQ(model.num_transitions(), 100);
}

TEST(TabularModelTest, MergeAddsCountsAndSelfMergeDoubles) {
  const Transitions t = RandomTransitions(40, 3, 1000, 5);
  TabularModel a(40, 3), b(40, 3);
  a.Update(t.Batch());
  b.Merge(a);
  b.Merge(b);
  const CounterEntries ea = a.Entries(), eb = b.Entries();
  ASSERT_EQ(ea.counts.size(), eb.counts.size());
  for (size_t i = 0; i < ea.counts.size(); ++i) EXPECT_EQ(2 * ea.counts[i], eb.counts[i]);
  EXPECT_EQ(b.num_transitions(), 2000);
}

TEST(TabularModelTest, SamplingFollowsCounts) {
  // (0, 0) -> 1 three times, -> 2 once (terminated).
  Transitions t;
  t.states = {0, 0, 0, 0};
  t.actions = {0, 0, 0, 0};
  t.next_states = {1, 1, 1, 2};
  t.rewards = {1, 1, 1, 5};
  t.terminated = {0, 0, 0, 1};
  TabularModel model(3, 1);
  model.Update(t.Batch());
  const int64_t states[] = {0, 0, 0}, actions[] = {0, 0, 0};
  const double u_next[] = {0.0, 0.74, 0.76}, u_terminal[] = {0.5, 0.5, 0.5};
  int64_t next[3];
  double rewards[3];
  uint8_t terminated[3];
  SampleTransitions(*model.Compiled(), states, actions, u_next, u_terminal, 3, next, rewards,
                    terminated);
  EXPECT_EQ(next[0], 1);
  EXPECT_EQ(next[1], 1);
  EXPECT_EQ(next[2], 2);
  EXPECT_EQ(rewards[0], 1.0);
  EXPECT_EQ(rewards[2], 5.0);
  EXPECT_EQ(terminated[0], 0);
  EXPECT_EQ(terminated[2], 1);
  const int64_t unseen[] = {1};
  EXPECT_THROW(SampleTransitions(*model.Compiled(), unseen, actions, u_next, u_terminal, 1, next,
                                 rewards, terminated),
               std::invalid_argument);
}

// The thread-safety contract (see the header): mutations from several threads serialise and
// read-outs see a consistent snapshot. tools/sanitize.sh runs this under ThreadSanitizer, which
// reports any access the locks miss, not only the ones that happen to corrupt the counts here.
TEST(TabularModelTest, ConcurrentUpdatesMergesAndReadsAreSafe) {
  constexpr int64_t S = 200, A = 3;
  constexpr int kUpdaters = 3, kRounds = 6;
  TabularModel model(S, A, 0.0, 2);  // 2 threads: large updates also run the model's own pool
  TabularModel other(S, A);
  other.Update(RandomTransitions(S, A, 10, 99).Batch());
  // The first updater's batches are large enough for the partitioned, threaded path.
  const int64_t sizes[kUpdaters] = {int64_t{1} << 16, 3000, 3000};
  std::vector<Transitions> batches;
  for (int k = 0; k < kUpdaters; ++k) batches.push_back(RandomTransitions(S, A, sizes[k], 10 + k));

  std::atomic<bool> updating{true};
  std::atomic<int> bad_snapshots{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < kUpdaters; ++k) {
    threads.emplace_back([&, k] {
      for (int round = 0; round < kRounds; ++round) {
        model.Update(batches[k].Batch());
        model.Merge(other);
      }
    });
  }
  std::thread reader([&] {
    PlanningOptions options;
    options.gamma = 0.9;
    options.tol = 1e-3;
    do {  // at least once, however fast the updaters are
      // A snapshot's per-pair visits must add up to its edges' counts.
      auto compiled = model.Compiled();
      const int64_t visits = std::accumulate(compiled->visits.begin(), compiled->visits.end(),
                                             int64_t{0});
      const int64_t edges = std::accumulate(compiled->count.begin(), compiled->count.end(),
                                            int64_t{0});
      if (visits != edges) bad_snapshots += 1;
      ValueIteration(*compiled, options);
      const CounterEntries entries = model.Entries();
      const int64_t total = std::accumulate(entries.counts.begin(), entries.counts.end(),
                                            int64_t{0});
      if (total > model.num_transitions()) bad_snapshots += 1;
    } while (updating.load());
  });
  for (auto& thread : threads) thread.join();
  updating = false;
  reader.join();

  EXPECT_EQ(bad_snapshots.load(), 0);
  EXPECT_EQ(model.num_transitions(), kRounds * (sizes[0] + sizes[1] + sizes[2] + 3 * 10));
  // The same batches and merges applied one after another give the same counts.
  TabularModel sequential(S, A);
  for (int k = 0; k < kUpdaters; ++k) {
    for (int round = 0; round < kRounds; ++round) {
      sequential.Update(batches[k].Batch());
      sequential.Merge(other);
    }
  }
  const CounterEntries got = model.Entries(), want = sequential.Entries();
  EXPECT_EQ(got.pairs, want.pairs);
  EXPECT_EQ(got.next_states, want.next_states);
  EXPECT_EQ(got.counts, want.counts);
}

TEST(TabularModelTest, MergingTwoModelsIntoEachOtherConcurrentlyDoesNotDeadlock) {
  TabularModel a(4, 2), b(4, 2);
  a.Update(RandomTransitions(4, 2, 5, 1).Batch());
  b.Update(RandomTransitions(4, 2, 5, 2).Batch());
  // Small counts: each merge at most doubles the total, so 20 rounds stay far from int64.
  std::thread ab([&] { for (int i = 0; i < 20; ++i) a.Merge(b); });
  std::thread ba([&] { for (int i = 0; i < 20; ++i) b.Merge(a); });
  ab.join();
  ba.join();
  EXPECT_GT(a.num_transitions(), 5);
  EXPECT_GT(b.num_transitions(), 5);
}

TEST(TabularModelTest, RejectsBadSizes) {
  EXPECT_THROW(TabularModel(0, 2), std::invalid_argument);
  EXPECT_THROW(TabularModel(5, -1), std::invalid_argument);
  EXPECT_THROW(TabularModel(5, 2, -1.0), std::invalid_argument);
  EXPECT_THROW(TabularModel(int64_t{1} << 30, 4), std::invalid_argument);
  EXPECT_THROW(TabularModel(5, 2, 0.0, 3), std::invalid_argument);
}

}  // namespace
}  // namespace wmfast::tabular
