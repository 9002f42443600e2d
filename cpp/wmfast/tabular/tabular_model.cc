#include "wmfast/tabular/tabular_model.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>

#include "wmfast/common/check.h"

namespace wmfast::tabular {
namespace {

constexpr int kPrefetchDistance = 16;
constexpr uint64_t kInitialCapacity = 1024;

template <typename Index>
void CheckIndices(const Index* values, int64_t size, int64_t upper, const char* name) {
  for (int64_t i = 0; i < size; ++i) {
    if (values[i] < 0 || values[i] >= upper) [[unlikely]] {
      throw std::invalid_argument(StrCat(name, "[", i, "] = ", static_cast<int64_t>(values[i]),
                                     " is out of range: expected 0 <= ", name, " < ", upper));
    }
  }
}

template <typename Real>
void CheckFinite(const Real* values, int64_t size, const char* name) {
  for (int64_t i = 0; i < size; ++i) {
    if (!std::isfinite(values[i])) [[unlikely]] {
      throw std::invalid_argument(StrCat(name, "[", i, "] = ", static_cast<double>(values[i]),
                                         " is not finite: expected finite values"));
    }
  }
}

}  // namespace

TabularModel::TabularModel(int64_t num_states, int64_t num_actions, double prior)
    : num_states_(num_states), num_actions_(num_actions), prior_(prior) {
  WMFAST_CHECK_ARG(num_states > 0, "num_states must be positive, got ", num_states);
  WMFAST_CHECK_ARG(num_actions > 0, "num_actions must be positive, got ", num_actions);
  // Pair indices are int32 in the per-pair index, and states int32 in the CSR view.
  WMFAST_CHECK_ARG(num_states <= std::numeric_limits<int32_t>::max() / num_actions,
                   "num_states * num_actions must be below 2^31, got ", num_states, " * ",
                   num_actions);
  WMFAST_CHECK_ARG(std::isfinite(prior) && prior >= 0.0,
                   "prior must be a finite pseudo-count >= 0, got ", prior);
  pair_slot_.assign(static_cast<size_t>(num_states * num_actions), -1);
  Rehash(kInitialCapacity);
}

void TabularModel::Rehash(uint64_t new_capacity) {
  std::vector<Slot> old = std::move(table_);
  table_.assign(new_capacity, Slot{kEmptyKey, 0});
  table_mask_ = new_capacity - 1;
  hash_shift_ = 64 - std::countr_zero(new_capacity);
  for (const Slot& slot : old) {
    if (slot.key == kEmptyKey) continue;
    uint64_t i = SlotOf(slot.key);
    while (table_[i].key != kEmptyKey) i = (i + 1) & table_mask_;
    table_[i] = slot;
  }
}

inline void TabularModel::CountEdge(uint64_t key, int64_t count) {
  uint64_t i = SlotOf(key);
  while (true) {
    Slot& slot = table_[i];
    if (slot.key == key) {
      slot.count += count;
      return;
    }
    if (slot.key == kEmptyKey) break;
    i = (i + 1) & table_mask_;
  }
  // A new key: keep the load factor under 0.7 so probes stay short.
  if ((table_size_ + 1) * 10 > static_cast<int64_t>(table_.size()) * 7) {
    Rehash(table_.size() * 2);
    i = SlotOf(key);
    while (table_[i].key != kEmptyKey) i = (i + 1) & table_mask_;
  }
  table_[i] = Slot{key, count};
  ++table_size_;
}

inline int32_t TabularModel::PairSlot(int64_t pair) {
  int32_t slot = pair_slot_[pair];
  if (slot < 0) [[unlikely]] {
    slot = static_cast<int32_t>(visited_pairs_.size());
    pair_slot_[pair] = slot;
    visited_pairs_.push_back(pair);
    pair_visits_.push_back(0);
    pair_reward_sum_.push_back(0.0);
  }
  return slot;
}

template <typename Index, typename Reward, typename Flag>
void TabularModel::Update(const TransitionBatch<Index, Reward, Flag>& batch) {
  const int64_t n = batch.size;
  CheckIndices(batch.states, n, num_states_, "states");
  CheckIndices(batch.actions, n, num_actions_, "actions");
  CheckIndices(batch.next_states, n, num_states_, "next_states");
  CheckFinite(batch.rewards, n, "rewards");

  const uint64_t S = static_cast<uint64_t>(num_states_);
  const int64_t A = num_actions_;
  auto key_of = [&](int64_t i) {
    const uint64_t pair = static_cast<uint64_t>(batch.states[i] * A + batch.actions[i]);
    const uint64_t key = pair * S + static_cast<uint64_t>(batch.next_states[i]);
    return batch.terminated[i] ? (key | kTerminalBit) : key;
  };
  compiled_.reset();
  for (int64_t i = 0; i < n; ++i) {
    // The table is larger than the caches for big models: fetch a later slot while this one
    // is being counted.
    if (i + kPrefetchDistance < n) {
      __builtin_prefetch(&table_[SlotOf(key_of(i + kPrefetchDistance))], 1, 1);
    }
    CountEdge(key_of(i), 1);
    const int32_t slot = PairSlot(batch.states[i] * A + batch.actions[i]);
    pair_visits_[slot] += 1;
    pair_reward_sum_[slot] += static_cast<double>(batch.rewards[i]);
  }
  num_transitions_ += n;
}

#define WMFAST_INSTANTIATE_UPDATE(Index, Reward) \
  template void TabularModel::Update(const TransitionBatch<Index, Reward, uint8_t>&);
WMFAST_INSTANTIATE_UPDATE(int32_t, float)
WMFAST_INSTANTIATE_UPDATE(int32_t, double)
WMFAST_INSTANTIATE_UPDATE(int64_t, float)
WMFAST_INSTANTIATE_UPDATE(int64_t, double)
#undef WMFAST_INSTANTIATE_UPDATE

void TabularModel::AddCounts(const int64_t* edge_pairs, const int64_t* edge_next,
                             const int64_t* edge_count, const int64_t* edge_terminal,
                             int64_t num_edges, const int64_t* reward_pairs,
                             const double* reward_sums, int64_t num_reward_pairs) {
  const int64_t num_pairs = num_states_ * num_actions_;
  CheckIndices(edge_pairs, num_edges, num_pairs, "pairs");
  CheckIndices(edge_next, num_edges, num_states_, "next_states");
  for (int64_t e = 0; e < num_edges; ++e) {
    WMFAST_CHECK_ARG(edge_count[e] >= 0, "counts[", e, "] = ", edge_count[e],
                     ": expected a count >= 0");
    WMFAST_CHECK_ARG(edge_terminal[e] >= 0 && edge_terminal[e] <= edge_count[e],
                     "terminal_counts[", e, "] = ", edge_terminal[e],
                     ": expected 0 <= terminal_counts <= counts (", edge_count[e], ")");
  }
  CheckIndices(reward_pairs, num_reward_pairs, num_pairs, "reward_pairs");
  CheckFinite(reward_sums, num_reward_pairs, "reward_sums");
  // A reward sum needs transitions of its pair to average over.
  std::vector<int64_t> counted(edge_pairs, edge_pairs + num_edges);
  std::sort(counted.begin(), counted.end());
  for (int64_t i = 0; i < num_reward_pairs; ++i) {
    const int64_t pair = reward_pairs[i];
    WMFAST_CHECK_ARG(pair_slot_[pair] >= 0 ||
                         std::binary_search(counted.begin(), counted.end(), pair),
                     "reward_pairs[", i, "] = ", pair,
                     " has a reward sum but no counted transitions");
  }

  compiled_.reset();
  const uint64_t S = static_cast<uint64_t>(num_states_);
  for (int64_t e = 0; e < num_edges; ++e) {
    if (edge_count[e] == 0) continue;
    const uint64_t key = static_cast<uint64_t>(edge_pairs[e]) * S + edge_next[e];
    const int64_t terminal = edge_terminal[e];
    if (edge_count[e] > terminal) CountEdge(key, edge_count[e] - terminal);
    if (terminal > 0) CountEdge(key | kTerminalBit, terminal);
    pair_visits_[PairSlot(edge_pairs[e])] += edge_count[e];
    num_transitions_ += edge_count[e];
  }
  for (int64_t i = 0; i < num_reward_pairs; ++i) {
    pair_reward_sum_[PairSlot(reward_pairs[i])] += reward_sums[i];
  }
}

void TabularModel::Merge(const TabularModel& other) {
  WMFAST_CHECK_ARG(other.num_states_ == num_states_ && other.num_actions_ == num_actions_,
                   "other has num_states=", other.num_states_, ", num_actions=",
                   other.num_actions_, ": expected num_states=", num_states_,
                   ", num_actions=", num_actions_);
  // The view is a snapshot held here, so merging a model into itself doubles its counts.
  auto view = other.Compiled();
  const int64_t num_pairs = view->num_pairs();
  std::vector<int64_t> edge_pairs(view->num_edges());
  for (int64_t p = 0; p < num_pairs; ++p) {
    std::fill(edge_pairs.begin() + view->pair_offsets[p],
              edge_pairs.begin() + view->pair_offsets[p + 1], p);
  }
  std::vector<int64_t> edge_next(view->next_state.begin(), view->next_state.end());
  std::vector<int64_t> reward_pairs;
  std::vector<double> reward_sums;
  for (int64_t p = 0; p < num_pairs; ++p) {
    if (view->visits[p] > 0) {
      reward_pairs.push_back(p);
      reward_sums.push_back(view->reward_sum[p]);
    }
  }
  AddCounts(edge_pairs.data(), edge_next.data(), view->count.data(),
            view->terminal_count.data(), view->num_edges(), reward_pairs.data(),
            reward_sums.data(), static_cast<int64_t>(reward_pairs.size()));
}

std::shared_ptr<const CompiledModel> TabularModel::Compiled() const {
  std::lock_guard<std::mutex> lock(compiled_mutex_);
  if (compiled_) return compiled_;

  auto model = std::make_shared<CompiledModel>();
  const int64_t S = num_states_, num_pairs = num_states_ * num_actions_;
  model->num_states = num_states_;
  model->num_actions = num_actions_;
  model->prior = prior_;
  model->visits.assign(num_pairs, 0);
  model->reward_sum.assign(num_pairs, 0.0);
  model->mean_reward.assign(num_pairs, 0.0);
  for (size_t slot = 0; slot < visited_pairs_.size(); ++slot) {
    const int64_t pair = visited_pairs_[slot];
    model->visits[pair] = pair_visits_[slot];
    model->reward_sum[pair] = pair_reward_sum_[slot];
    if (pair_visits_[slot] > 0) {
      model->mean_reward[pair] = pair_reward_sum_[slot] / static_cast<double>(pair_visits_[slot]);
    }
  }

  // Counting sort of the table's keys by pair, then a small sort within each pair; the
  // terminated and continuing keys of one (s, a, s') merge into one edge.
  std::vector<int64_t> bucket(num_pairs + 1, 0);
  for (const Slot& slot : table_) {
    if (slot.key != kEmptyKey) ++bucket[((slot.key & ~kTerminalBit) / S) + 1];
  }
  std::partial_sum(bucket.begin(), bucket.end(), bucket.begin());
  std::vector<Slot> grouped(table_size_);
  {
    std::vector<int64_t> fill(bucket.begin(), bucket.end() - 1);
    for (const Slot& slot : table_) {
      if (slot.key != kEmptyKey) grouped[fill[(slot.key & ~kTerminalBit) / S]++] = slot;
    }
  }
  model->pair_offsets.assign(num_pairs + 1, 0);
  model->next_state.reserve(table_size_);
  model->count.reserve(table_size_);
  model->terminal_count.reserve(table_size_);
  for (int64_t pair = 0; pair < num_pairs; ++pair) {
    auto first = grouped.begin() + bucket[pair], last = grouped.begin() + bucket[pair + 1];
    std::sort(first, last, [](const Slot& x, const Slot& y) {
      const uint64_t x_edge = x.key & ~kTerminalBit, y_edge = y.key & ~kTerminalBit;
      return x_edge != y_edge ? x_edge < y_edge : x.key < y.key;
    });
    for (auto it = first; it != last; ++it) {
      const int32_t next = static_cast<int32_t>((it->key & ~kTerminalBit) % S);
      const bool terminal = (it->key & kTerminalBit) != 0;
      const bool same_edge = model->next_state.size() >
                                 static_cast<size_t>(model->pair_offsets[pair]) &&
                             model->next_state.back() == next;
      if (!same_edge) {
        model->next_state.push_back(next);
        model->count.push_back(0);
        model->terminal_count.push_back(0);
      }
      model->count.back() += it->count;
      if (terminal) model->terminal_count.back() += it->count;
    }
    model->pair_offsets[pair + 1] = static_cast<int64_t>(model->next_state.size());
  }
  compiled_ = std::move(model);
  return compiled_;
}

void SampleTransitions(const CompiledModel& model, const int64_t* states, const int64_t* actions,
                       const double* uniform_next, const double* uniform_terminal, int64_t size,
                       int64_t* next_states, double* rewards, uint8_t* terminated) {
  const int64_t S = model.num_states, A = model.num_actions;
  CheckIndices(states, size, S, "states");
  CheckIndices(actions, size, A, "actions");
  for (int64_t i = 0; i < size; ++i) {
    const int64_t pair = states[i] * A + actions[i];
    WMFAST_CHECK_ARG(model.visits[pair] > 0 || model.prior > 0, "(states[", i, "], actions[", i,
                     "]) = (", states[i], ", ", actions[i],
                     ") was never visited: there is no transition to sample (set a prior > 0 to "
                     "sample uniformly there)");
  }
  for (int64_t i = 0; i < size; ++i) {
    const int64_t pair = states[i] * A + actions[i];
    // Inverse CDF over the counts followed by the prior's uniform pseudo-counts.
    double mass = uniform_next[i] * (static_cast<double>(model.visits[pair]) + model.prior * S);
    int64_t chosen_edge = -1;
    for (int64_t e = model.pair_offsets[pair]; e < model.pair_offsets[pair + 1]; ++e) {
      const double count = static_cast<double>(model.count[e]);
      if (mass < count) {
        chosen_edge = e;
        break;
      }
      mass -= count;
    }
    if (chosen_edge < 0 && model.prior == 0.0) chosen_edge = model.pair_offsets[pair + 1] - 1;
    if (chosen_edge >= 0) {
      next_states[i] = model.next_state[chosen_edge];
      terminated[i] = uniform_terminal[i] * static_cast<double>(model.count[chosen_edge]) <
                      static_cast<double>(model.terminal_count[chosen_edge]);
    } else {
      next_states[i] = std::min<int64_t>(S - 1, static_cast<int64_t>(mass / model.prior));
      terminated[i] = 0;
    }
    rewards[i] = model.mean_reward[pair];
  }
}

}  // namespace wmfast::tabular
