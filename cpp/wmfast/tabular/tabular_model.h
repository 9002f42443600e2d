// TabularModel: a count-based world model of a finite MDP.
//
// It counts N(s,a,s') and sums rewards from batches of observed transitions, and estimates
//   p̂(s'|s,a) = (N(s,a,s') + prior) / (N(s,a) + prior * S)     (a symmetric Dirichlet prior)
//   r̂(s,a)    = mean observed reward,   τ̂(s,a,s') = fraction of (s,a)->s' that terminated.
// Planning on that model (value/policy iteration, R-MAX optimism) lives in planning.h.
//
// Memory grows with the distinct transitions seen, never with S*A*S: one counter (count, reward
// sum) per distinct (s, a, s', terminated) in open-addressing hash tables; per-pair statistics are
// sums over those. Counting is random access, so a large update first partitions the batch by
// the top bits of the key hash (which also pick the table slot): each partition then probes one
// cache-sized region of the table. The tables are split into kNumShards by the top two bits, so
// several threads count at once, each owning whole shards (no locks, no atomics). Planning and
// read-outs use a CSR view of the counts (CompiledModel), rebuilt lazily after updates.
//
// Thread-safe: mutations (Update, AddEntries, Merge) take an exclusive lock, read-outs (Entries,
// Compiled, num_transitions) a shared one, so calls from several threads serialise instead of
// racing. A CompiledModel, once returned, is an immutable snapshot: planning on it while another
// thread updates the model is safe and sees the counts as they were.
//
// Overflow: counts are int64 and reward sums float64. A mutation that would take the number of
// transitions past int64 or the sum of |reward| ever counted past float64's largest value (a
// bound on every reward sum) is refused with std::invalid_argument, leaving the model unchanged.
#ifndef WMFAST_TABULAR_TABULAR_MODEL_H_
#define WMFAST_TABULAR_TABULAR_MODEL_H_

#include <bit>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <vector>

#include "wmfast/common/thread_pool.h"

namespace wmfast::tabular {

// The counts as CSR over the S*A (state, action) pairs; pair p = s * A + a.
struct CompiledModel {
  int64_t num_states = 0;
  int64_t num_actions = 0;
  double prior = 0.0;
  std::vector<int64_t> pair_offsets;    // [S*A+1]; the successors of p are [offsets[p], offsets[p+1])
  std::vector<int32_t> next_state;      // [E] sorted within a pair
  std::vector<int64_t> count;           // [E] N(s,a,s')
  std::vector<int64_t> terminal_count;  // [E] how many of those terminated
  std::vector<double> edge_reward_sum;  // [E] sum of their rewards
  std::vector<int64_t> visits;          // [S*A] N(s,a)
  std::vector<double> reward_sum;       // [S*A] sum of observed rewards
  std::vector<double> mean_reward;      // [S*A] r̂(s,a); 0 where unvisited

  int64_t num_pairs() const { return num_states * num_actions; }
  int64_t num_edges() const { return static_cast<int64_t>(next_state.size()); }
};

// Element types accepted by Update without a conversion copy.
template <typename Index, typename Reward, typename Flag>
struct TransitionBatch {
  const Index* states;
  const Index* actions;
  const Reward* rewards;
  const Index* next_states;
  const Flag* terminated;  // nonzero = the episode ended at this transition
  int64_t size;
};

// The raw counters, one per distinct (pair, next state, terminated): a model's whole state.
struct CounterEntries {
  std::vector<int64_t> pairs;        // s * A + a
  std::vector<int64_t> next_states;
  std::vector<uint8_t> terminated;
  std::vector<int64_t> counts;
  std::vector<double> reward_sums;
};

// Allocates big arrays on transparent huge pages where the OS allows it: the count tables are
// probed at random, and with 4 KiB pages most probes would also miss the TLB.
template <typename T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}
  T* allocate(size_t n);
  void deallocate(T* p, size_t) { std::free(p); }
  bool operator==(const HugePageAllocator&) const { return true; }
};

// Fibonacci hashing. The top two bits pick a shard, the next ones a slot within it.
inline uint64_t MixKey(uint64_t key) { return key * 0x9E3779B97F4A7C15ull; }

// An open-addressing (linear probing) hash table of (count, reward sum) keyed by uint64
// (~0 = empty). `hash` arguments are MixKey(key) << 2 (the bits below the shard bits), so a
// key's slot index is its hash's top bits: keys sharing top bits share a table region.
class CounterTable {
 public:
  static constexpr uint64_t kEmptyKey = ~uint64_t{0};
  struct Slot {
    uint64_t key;
    int64_t count;
    double reward_sum;
  };
  using Slots = std::vector<Slot, HugePageAllocator<Slot>>;

  CounterTable() { Rehash(kInitialCapacity); }
  int64_t size() const { return size_; }
  int64_t bytes() const { return static_cast<int64_t>(slots_.size() * sizeof(Slot)); }
  const Slots& slots() const { return slots_; }

  void Add(uint64_t key, uint64_t hash, int64_t count, double reward_sum) {
    uint64_t i = hash >> shift_;
    int probes = 0;
    while (true) {
      Slot& slot = slots_[i];
      if (slot.key == key) {
        slot.count += count;
        slot.reward_sum += reward_sum;
        return;
      }
      if (slot.key == kEmptyKey) break;
      i = (i + 1) & mask_;
      ++probes;
    }
    // A new key. Grow past a load factor of 0.7, and also when a probe ran long: partitioned
    // updates fill one region of the table at a time, which can overflow it long before the
    // table as a whole is 70% full.
    if ((size_ + 1) * 10 > static_cast<int64_t>(slots_.size()) * 7 || probes > kMaxProbes) {
      Rehash(slots_.size() * 2);
      i = hash >> shift_;
      while (slots_[i].key != kEmptyKey) i = (i + 1) & mask_;
    }
    ++size_;
    slots_[i] = Slot{key, count, reward_sum};
  }
  void Prefetch(uint64_t hash) const { __builtin_prefetch(&slots_[hash >> shift_], 1, 3); }
  // Grows (never shrinks) to a capacity that holds `keys` keys at a load factor of at most
  // kReserveLoad, in one rehash instead of the several doublings that adding them would cost.
  void Reserve(int64_t keys);

 private:
  static constexpr uint64_t kInitialCapacity = 256;
  static constexpr int kMaxProbes = 48;
  static constexpr double kReserveLoad = 0.6;
  void Rehash(uint64_t capacity);

  Slots slots_;
  uint64_t mask_ = 0;
  int shift_ = 64;
  int64_t size_ = 0;
};

class TabularModel {
 public:
  static constexpr int kNumShards = 4;  // the most threads an update can use
  // The most the absolute rewards counted by one model may add up to (see the class comment).
  static constexpr double kMaxRewardTotal = std::numeric_limits<double>::max();

  // Throws std::invalid_argument for non-positive sizes, S*A beyond 2^31, a negative prior or
  // num_threads outside {1, 2, 4}.
  TabularModel(int64_t num_states, int64_t num_actions, double prior = 0.0, int num_threads = 1);
  ~TabularModel();

  int64_t num_states() const { return num_states_; }
  int64_t num_actions() const { return num_actions_; }
  double prior() const { return prior_; }
  int num_threads() const { return num_threads_; }
  int64_t num_transitions() const {  // transitions counted so far
    std::shared_lock lock(mutex_);
    return num_transitions_;
  }

  // Counts a batch. Every element is validated before anything is changed: on a bad index or a
  // non-finite reward it throws (naming the array, position and value) and the model is unchanged.
  template <typename Index, typename Reward, typename Flag>
  void Update(const TransitionBatch<Index, Reward, Flag>& batch);

  // The raw counters (sorted by key), and adding such counters (validated first, all-or-nothing):
  // state_dict, load_state_dict and merge are built on these.
  CounterEntries Entries() const;
  void AddEntries(const int64_t* pairs, const int64_t* next_states, const uint8_t* terminated,
                  const int64_t* counts, const double* reward_sums, int64_t size);
  void Merge(const TabularModel& other);

  // The CSR view of the current counts; rebuilt on first use after a change. The returned
  // pointer stays valid (and unchanged) until the next update.
  std::shared_ptr<const CompiledModel> Compiled() const;

 private:
  static constexpr uint64_t kTerminalBit = uint64_t{1} << 63;
  struct Record {  // one transition, ready to count
    Record() {}    // left uninitialised: buffers of them are written before they are read
    Record(uint64_t k, double r) : key(k), reward(r) {}
    uint64_t key;  // (pair * S + next) | kTerminalBit if terminated
    double reward;
  };

  uint64_t KeyOf(uint64_t pair, uint64_t next, bool terminated) const {
    const uint64_t key = pair * static_cast<uint64_t>(num_states_) + next;
    return terminated ? (key | kTerminalBit) : key;
  }
  template <typename Index, typename Reward, typename Flag>
  void CountChunk(const TransitionBatch<Index, Reward, Flag>& batch, int64_t begin, int64_t end);
  void CountRecords(const Record* records, int64_t size);
  // Throws (naming `what`) unless `added` transitions and `added_abs_reward` of |reward| fit.
  void CheckCapacity(int64_t added, double added_abs_reward, const char* what) const;
  void AddEntriesLocked(const int64_t* pairs, const int64_t* next_states,
                        const uint8_t* terminated, const int64_t* counts,
                        const double* reward_sums, int64_t size);
  int64_t TableBytes() const;

  int64_t num_states_, num_actions_;
  double prior_;
  int num_threads_;
  int64_t num_transitions_ = 0;
  double abs_reward_total_ = 0.0;  // sum of |reward| (of |reward sum| for added entries)
  mutable std::shared_mutex mutex_;  // exclusive for mutations, shared for read-outs
  CounterTable shards_[kNumShards];
  std::unique_ptr<ThreadPool> pool_;  // when num_threads > 1
  // Partitioned transitions of the chunk being counted (kept only during an update).
  std::vector<Record, HugePageAllocator<Record>> records_;

  mutable std::mutex compiled_mutex_;
  mutable std::shared_ptr<const CompiledModel> compiled_;
};

// Draws imagined transitions from the model (Dyna): s' ~ p̂(.|s,a) by inverse CDF of
// uniform_next, terminated ~ τ̂(s,a,s') by uniform_terminal, and the reward is the mean reward
// observed on (s, a, s') (r̂(s,a) where a prior picked an unseen successor). Uniforms in [0, 1)
// come from the caller so any generator can drive it. Throws for out-of-range indices and for
// never-visited pairs when the prior is 0. Outputs are [size].
void SampleTransitions(const CompiledModel& model, const int64_t* states, const int64_t* actions,
                       const double* uniform_next, const double* uniform_terminal, int64_t size,
                       int64_t* next_states, double* rewards, uint8_t* terminated);

}  // namespace wmfast::tabular

#endif  // WMFAST_TABULAR_TABULAR_MODEL_H_
