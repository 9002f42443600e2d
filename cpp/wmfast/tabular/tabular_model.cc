#include "wmfast/tabular/tabular_model.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <functional>
#include <numeric>

#include "wmfast/common/check.h"

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace wmfast::tabular {
namespace {


template <typename Index>
void CheckIndices(const Index* values, int64_t size, int64_t upper, const char* name) {
  for (int64_t i = 0; i < size; ++i) {
    if (values[i] < 0 || values[i] >= upper) [[unlikely]] {
      throw std::invalid_argument(StrCat(name, "[", i, "] = ", static_cast<int64_t>(values[i]),
                                     " is out of range: expected 0 <= ", name, " < ", upper));
    }
  }
}

// Checks that the values are finite; returns the sum of their absolute values.
template <typename Real>
double CheckFinite(const Real* values, int64_t size, const char* name) {
  double total = 0.0;
  for (int64_t i = 0; i < size; ++i) {
    if (!std::isfinite(values[i])) [[unlikely]] {
      throw std::invalid_argument(StrCat(name, "[", i, "] = ", static_cast<double>(values[i]),
                                         " is not finite: expected finite values"));
    }
    total += std::abs(static_cast<double>(values[i]));
  }
  return total;
}

// HyperLogLog (Flajolet et al. 2007) over 2^12 registers: the number of distinct keys in a batch
// within a few percent (standard error 1.6%), from one pass and 4 KiB. Update uses it to size the
// tables once before a large batch.
class DistinctKeyEstimate {
 public:
  void Add(uint64_t key) {
    // MurmurHash3's finaliser: the rank below needs well-mixed low bits too, which a Fibonacci
    // hash (MixKey) lacks.
    key ^= key >> 33;
    key *= 0xFF51AFD7ED558CCDull;
    key ^= key >> 33;
    key *= 0xC4CEB9FE1A85EC53ull;
    key ^= key >> 33;
    const uint8_t rank = static_cast<uint8_t>(std::countl_zero((key << kBits) | kRankGuard) + 1);
    uint8_t& slot = registers_[key >> (64 - kBits)];
    slot = std::max(slot, rank);
  }
  int64_t Estimate() const {
    constexpr double m = kRegisters;
    double inverse_sum = 0.0;
    int zeros = 0;
    for (uint8_t r : registers_) {
      inverse_sum += std::ldexp(1.0, -r);
      zeros += r == 0;
    }
    double estimate = 0.7213 / (1.0 + 1.079 / m) * m * m / inverse_sum;
    if (estimate <= 2.5 * m && zeros > 0) estimate = m * std::log(m / zeros);  // linear counting
    return static_cast<int64_t>(estimate);
  }

 private:
  static constexpr int kBits = 12, kRegisters = 1 << kBits;
  static constexpr uint64_t kRankGuard = uint64_t{1} << (kBits - 1);
  uint8_t registers_[kRegisters] = {};
};

}  // namespace

template <typename T>
T* HugePageAllocator<T>::allocate(size_t n) {
  constexpr size_t kHugePage = size_t{2} << 20;
  if (n > (std::numeric_limits<size_t>::max() / 2) / sizeof(T)) throw std::bad_alloc();
  const size_t bytes = n * sizeof(T);
  if (bytes < kHugePage) {
    if (void* p = std::malloc(bytes)) return static_cast<T*>(p);
    throw std::bad_alloc();
  }
  void* p = std::aligned_alloc(kHugePage, (bytes + kHugePage - 1) / kHugePage * kHugePage);
  if (p == nullptr) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  madvise(p, bytes, MADV_HUGEPAGE);  // a hint: without transparent huge pages it does nothing
#endif
  return static_cast<T*>(p);
}
template struct HugePageAllocator<CounterTable::Slot>;
template struct HugePageAllocator<TabularModel::Record>;

void CounterTable::Rehash(uint64_t capacity) {
  Slots old = std::move(slots_);
  slots_.assign(capacity, Slot{kEmptyKey, 0, 0.0});
  mask_ = capacity - 1;
  shift_ = 64 - std::countr_zero(capacity);
  for (const Slot& slot : old) {
    if (slot.key == kEmptyKey) continue;
    uint64_t i = (MixKey(slot.key) << 2) >> shift_;
    while (slots_[i].key != kEmptyKey) i = (i + 1) & mask_;
    slots_[i] = slot;
  }
}

void CounterTable::Reserve(int64_t keys) {
  const uint64_t needed = static_cast<uint64_t>(static_cast<double>(keys) / kReserveLoad) + 1;
  if (needed > slots_.size()) Rehash(std::bit_ceil(needed));
}

TabularModel::TabularModel(int64_t num_states, int64_t num_actions, double prior,
                           int num_threads)
    : num_states_(num_states), num_actions_(num_actions), prior_(prior),
      num_threads_(num_threads) {
  WMFAST_CHECK_ARG(num_states > 0, "num_states must be positive, got ", num_states);
  WMFAST_CHECK_ARG(num_actions > 0, "num_actions must be positive, got ", num_actions);
  // Pair indices and states are int32 in the CSR view.
  WMFAST_CHECK_ARG(num_states <= std::numeric_limits<int32_t>::max() / num_actions,
                   "num_states * num_actions must be below 2^31, got ", num_states, " * ",
                   num_actions);
  WMFAST_CHECK_ARG(std::isfinite(prior) && prior >= 0.0,
                   "prior must be a finite pseudo-count >= 0, got ", prior);
  WMFAST_CHECK_ARG(num_threads == 1 || num_threads == 2 || num_threads == 4,
                   "num_threads must be 1, 2 or 4 (threads own whole shards of the counts), got ",
                   num_threads);
  if (num_threads > 1) pool_ = std::make_unique<ThreadPool>(num_threads);
}

TabularModel::~TabularModel() = default;

int64_t TabularModel::TableBytes() const {
  int64_t bytes = 0;
  for (const CounterTable& shard : shards_) bytes += shard.bytes();
  return bytes;
}

void TabularModel::CountRecords(const Record* records, int64_t size) {
  constexpr int64_t kPrefetchDistance = 16;
  for (int64_t i = 0; i < size; ++i) {
    if (i + kPrefetchDistance < size) {
      const uint64_t ahead = MixKey(records[i + kPrefetchDistance].key);
      shards_[ahead >> 62].Prefetch(ahead << 2);
    }
    const uint64_t hash = MixKey(records[i].key);
    shards_[hash >> 62].Add(records[i].key, hash << 2, 1, records[i].reward);
  }
}

template <typename Index, typename Reward, typename Flag>
void TabularModel::CountChunk(const TransitionBatch<Index, Reward, Flag>& batch, int64_t begin,
                              int64_t end) {
  const uint64_t A = static_cast<uint64_t>(num_actions_);
  auto record_at = [&](int64_t i) {
    const uint64_t pair = static_cast<uint64_t>(batch.states[i]) * A +
                          static_cast<uint64_t>(batch.actions[i]);
    return Record{KeyOf(pair, static_cast<uint64_t>(batch.next_states[i]),
                        batch.terminated[i] != 0),
                  static_cast<double>(batch.rewards[i])};
  };
  const int64_t n = end - begin;
  // Partition by the top hash bits so that each partition probes one ~256 KiB table region.
  // (Never more partitions than regions: a partition must spread over many slots.)
  const int64_t regions = TableBytes() / (int64_t{256} << 10);
  const int bits = std::clamp(static_cast<int>(std::bit_width(static_cast<uint64_t>(regions))),
                              2, 12);
  const int64_t num_partitions = int64_t{1} << bits;
  const int threads = pool_ && n >= (int64_t{1} << 16) ? num_threads_ : 1;
  if (threads == 1 && (n < (int64_t{1} << 14) || bits == 2)) {
    // Small batch or small tables (they fit in cache): count in place, no partitioning.
    records_.resize(std::min<int64_t>(n, 1024));
    for (int64_t first = begin; first < end; first += 1024) {
      const int64_t last = std::min(end, first + 1024);
      for (int64_t i = first; i < last; ++i) records_[i - first] = record_at(i);
      CountRecords(records_.data(), last - first);
    }
    return;
  }

  records_.resize(n);
  std::vector<int64_t> histogram(threads * num_partitions, 0);  // [thread][partition]
  auto run = [&](const std::function<void(int)>& work) {
    if (threads == 1) return work(0);
    pool_->ParallelFor(threads, [&](int, int64_t first, int64_t last) {
      for (int64_t t = first; t < last; ++t) work(static_cast<int>(t));
    });
  };
  const int shift = 64 - bits;
  run([&](int t) {
    auto [first, last] = ShardRange(n, t, threads);
    int64_t* counts = histogram.data() + t * num_partitions;
    for (int64_t i = first; i < last; ++i) ++counts[MixKey(record_at(begin + i).key) >> shift];
  });
  std::vector<int64_t> partition_begin(num_partitions + 1);
  int64_t running = 0;
  for (int64_t p = 0; p < num_partitions; ++p) {
    partition_begin[p] = running;
    for (int t = 0; t < threads; ++t) {
      const int64_t count = histogram[t * num_partitions + p];
      histogram[t * num_partitions + p] = running;  // now: where thread t writes partition p
      running += count;
    }
  }
  partition_begin[num_partitions] = running;
  run([&](int t) {
    auto [first, last] = ShardRange(n, t, threads);
    int64_t* cursor = histogram.data() + t * num_partitions;
    for (int64_t i = first; i < last; ++i) {
      const Record record = record_at(begin + i);
      records_[cursor[MixKey(record.key) >> shift]++] = record;
    }
  });
  // Table shard k holds the partitions [k, k + 1) * P / kNumShards; thread t owns shards t, t + T.
  run([&](int t) {
    for (int shard = t; shard < kNumShards; shard += threads) {
      const int64_t first = partition_begin[shard * num_partitions / kNumShards];
      const int64_t last = partition_begin[(shard + 1) * num_partitions / kNumShards];
      CountRecords(records_.data() + first, last - first);
    }
  });
}

void TabularModel::CheckCapacity(int64_t added, double added_abs_reward,
                                 const char* what) const {
  int64_t total = 0;
  WMFAST_CHECK_ARG(!__builtin_add_overflow(num_transitions_, added, &total), what,
                   ": counting ", added, " more transitions on top of ", num_transitions_,
                   " would overflow the int64 counts (at most ",
                   std::numeric_limits<int64_t>::max(), "); the model is unchanged");
  const double rewards = abs_reward_total_ + added_abs_reward;
  WMFAST_CHECK_ARG(rewards <= kMaxRewardTotal, what, ": the absolute rewards would sum to ",
                   rewards, " (", abs_reward_total_, " counted so far + ", added_abs_reward,
                   " now), past float64's largest value ", kMaxRewardTotal,
                   ": the model's reward sums could overflow; rescale the rewards. The model is "
                   "unchanged");
}

template <typename Index, typename Reward, typename Flag>
void TabularModel::Update(const TransitionBatch<Index, Reward, Flag>& batch) {
  const int64_t n = batch.size;
  constexpr int64_t kMinChunk = int64_t{1} << 16, kMaxChunk = int64_t{1} << 22;
  // One pass over the batch validates it and, for a large batch, estimates its distinct keys: the
  // tables then grow once to hold them, where a fresh model doubled them about ten times while
  // counting (a fifth of a 10^7-transition update). The batch's distinct keys are a lower bound
  // on the tables' final size, so this reserves no more than counting will need (to the
  // estimate's error).
  const uint64_t S = static_cast<uint64_t>(num_states_), A = static_cast<uint64_t>(num_actions_);
  const bool estimate_keys = n >= kMinChunk;
  DistinctKeyEstimate distinct;
  bool valid = true;
  double abs_rewards = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    // Unsigned comparisons also catch negative indices.
    const uint64_t s = static_cast<uint64_t>(batch.states[i]);
    const uint64_t a = static_cast<uint64_t>(batch.actions[i]);
    const uint64_t next = static_cast<uint64_t>(batch.next_states[i]);
    const double reward = static_cast<double>(batch.rewards[i]);
    valid &= (s < S) & (a < A) & (next < S) & std::isfinite(reward);
    abs_rewards += std::abs(reward);
    if (estimate_keys) distinct.Add(KeyOf(s * A + a, next, batch.terminated[i] != 0));
  }
  if (!valid) {  // the checks one array at a time, for the message naming the first bad element
    CheckIndices(batch.states, n, num_states_, "states");
    CheckIndices(batch.actions, n, num_actions_, "actions");
    CheckIndices(batch.next_states, n, num_states_, "next_states");
    CheckFinite(batch.rewards, n, "rewards");
  }
  std::unique_lock lock(mutex_);
  CheckCapacity(n, abs_rewards, "rewards");
  abs_reward_total_ += abs_rewards;
  compiled_.reset();
  const int64_t batch_keys = estimate_keys ? distinct.Estimate() : 0;
  for (CounterTable& shard : shards_) shard.Reserve(batch_keys / kNumShards);
  // Chunks bound the partition buffer (16 bytes a transition). They grow with the tables, whose
  // size sets how finely a chunk is partitioned.
  records_.reserve(std::min(n, kMaxChunk));
  for (int64_t begin = 0; begin < n;) {
    int64_t keys = 0;
    for (const CounterTable& shard : shards_) keys += shard.size();
    keys = std::max(keys, batch_keys);
    const int64_t end = std::min(n, begin + std::clamp(4 * keys, kMinChunk, kMaxChunk));
    CountChunk(batch, begin, end);
    begin = end;
  }
  num_transitions_ += n;
  if (records_.capacity() > 1024) decltype(records_)().swap(records_);
}

#define WMFAST_INSTANTIATE_UPDATE(Index, Reward) \
  template void TabularModel::Update(const TransitionBatch<Index, Reward, uint8_t>&);
WMFAST_INSTANTIATE_UPDATE(int32_t, float)
WMFAST_INSTANTIATE_UPDATE(int32_t, double)
WMFAST_INSTANTIATE_UPDATE(int64_t, float)
WMFAST_INSTANTIATE_UPDATE(int64_t, double)
#undef WMFAST_INSTANTIATE_UPDATE

CounterEntries TabularModel::Entries() const {
  std::shared_lock lock(mutex_);
  std::vector<CounterTable::Slot> slots;
  for (const CounterTable& shard : shards_) {
    for (const auto& slot : shard.slots()) {
      if (slot.key != CounterTable::kEmptyKey) slots.push_back(slot);
    }
  }
  std::sort(slots.begin(), slots.end(),
            [](const auto& x, const auto& y) { return x.key < y.key; });
  CounterEntries entries;
  const uint64_t S = static_cast<uint64_t>(num_states_);
  for (const auto& slot : slots) {
    const uint64_t key = slot.key & ~kTerminalBit;
    entries.pairs.push_back(static_cast<int64_t>(key / S));
    entries.next_states.push_back(static_cast<int64_t>(key % S));
    entries.terminated.push_back((slot.key & kTerminalBit) != 0);
    entries.counts.push_back(slot.count);
    entries.reward_sums.push_back(slot.reward_sum);
  }
  return entries;
}

void TabularModel::AddEntries(const int64_t* pairs, const int64_t* next_states,
                              const uint8_t* terminated, const int64_t* counts,
                              const double* reward_sums, int64_t size) {
  CheckIndices(pairs, size, num_states_ * num_actions_, "pairs");
  CheckIndices(next_states, size, num_states_, "next_states");
  for (int64_t i = 0; i < size; ++i) {
    WMFAST_CHECK_ARG(counts[i] > 0, "counts[", i, "] = ", counts[i],
                     ": expected a positive count");
  }
  const double abs_rewards = CheckFinite(reward_sums, size, "reward_sums");
  int64_t added = 0;
  for (int64_t i = 0; i < size; ++i) {
    WMFAST_CHECK_ARG(!__builtin_add_overflow(added, counts[i], &added),
                     "counts: the counts add up to more than int64 holds (at entry ", i,
                     "); the model is unchanged");
  }
  std::unique_lock lock(mutex_);
  CheckCapacity(added, abs_rewards, "counts/reward_sums");
  abs_reward_total_ += abs_rewards;
  AddEntriesLocked(pairs, next_states, terminated, counts, reward_sums, size);
}

void TabularModel::AddEntriesLocked(const int64_t* pairs, const int64_t* next_states,
                                    const uint8_t* terminated, const int64_t* counts,
                                    const double* reward_sums, int64_t size) {
  compiled_.reset();
  for (int64_t i = 0; i < size; ++i) {
    const uint64_t key = KeyOf(static_cast<uint64_t>(pairs[i]),
                               static_cast<uint64_t>(next_states[i]), terminated[i] != 0);
    const uint64_t hash = MixKey(key);
    shards_[hash >> 62].Add(key, hash << 2, counts[i], reward_sums[i]);
    num_transitions_ += counts[i];
  }
}

void TabularModel::Merge(const TabularModel& other) {
  WMFAST_CHECK_ARG(other.num_states_ == num_states_ && other.num_actions_ == num_actions_,
                   "other has num_states=", other.num_states_, ", num_actions=",
                   other.num_actions_, ": expected num_states=", num_states_,
                   ", num_actions=", num_actions_);
  // A snapshot of the counters, so merging a model into itself doubles its counts.
  const CounterEntries entries = other.Entries();
  AddEntries(entries.pairs.data(), entries.next_states.data(), entries.terminated.data(),
             entries.counts.data(), entries.reward_sums.data(),
             static_cast<int64_t>(entries.pairs.size()));
}

std::shared_ptr<const CompiledModel> TabularModel::Compiled() const {
  std::shared_lock shared(mutex_);
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

  // Counting sort of the counters by pair, then a small sort within each pair; the terminated
  // and continuing counters of one (s, a, s') merge into one edge.
  constexpr uint64_t kEmptyKey = CounterTable::kEmptyKey;
  std::vector<int64_t> bucket(num_pairs + 1, 0);
  int64_t num_keys = 0;
  for (const CounterTable& shard : shards_) {
    for (const auto& slot : shard.slots()) {
      if (slot.key != kEmptyKey) ++bucket[((slot.key & ~kTerminalBit) / S) + 1];
    }
    num_keys += shard.size();
  }
  std::partial_sum(bucket.begin(), bucket.end(), bucket.begin());
  std::vector<CounterTable::Slot> grouped(num_keys);
  {
    std::vector<int64_t> fill(bucket.begin(), bucket.end() - 1);
    for (const CounterTable& shard : shards_) {
      for (const auto& slot : shard.slots()) {
        if (slot.key != kEmptyKey) grouped[fill[(slot.key & ~kTerminalBit) / S]++] = slot;
      }
    }
  }
  model->pair_offsets.assign(num_pairs + 1, 0);
  model->next_state.reserve(num_keys);
  model->count.reserve(num_keys);
  model->terminal_count.reserve(num_keys);
  model->edge_reward_sum.reserve(num_keys);
  for (int64_t pair = 0; pair < num_pairs; ++pair) {
    auto first = grouped.begin() + bucket[pair], last = grouped.begin() + bucket[pair + 1];
    std::sort(first, last, [](const auto& x, const auto& y) {
      const uint64_t x_edge = x.key & ~kTerminalBit, y_edge = y.key & ~kTerminalBit;
      return x_edge != y_edge ? x_edge < y_edge : x.key < y.key;
    });
    for (auto it = first; it != last; ++it) {
      const int32_t next = static_cast<int32_t>((it->key & ~kTerminalBit) % S);
      const bool same_edge = model->num_edges() > model->pair_offsets[pair] &&
                             model->next_state.back() == next;
      if (!same_edge) {
        model->next_state.push_back(next);
        model->count.push_back(0);
        model->terminal_count.push_back(0);
        model->edge_reward_sum.push_back(0.0);
      }
      model->count.back() += it->count;
      if (it->key & kTerminalBit) model->terminal_count.back() += it->count;
      model->edge_reward_sum.back() += it->reward_sum;
      model->visits[pair] += it->count;
      model->reward_sum[pair] += it->reward_sum;
    }
    model->pair_offsets[pair + 1] = model->num_edges();
    if (model->visits[pair] > 0) {
      model->mean_reward[pair] = model->reward_sum[pair] / static_cast<double>(model->visits[pair]);
    }
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
    rewards[i] = chosen_edge >= 0 ? model.edge_reward_sum[chosen_edge] /
                                        static_cast<double>(model.count[chosen_edge])
                                  : model.mean_reward[pair];
  }
}

}  // namespace wmfast::tabular
