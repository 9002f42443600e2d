// TabularModel: a count-based world model of a finite MDP.
//
// It counts N(s,a,s') and sums rewards from batches of observed transitions, and estimates
//   p̂(s'|s,a) = (N(s,a,s') + prior) / (N(s,a) + prior * S)     (a symmetric Dirichlet prior)
//   r̂(s,a)    = mean observed reward,   τ̂(s,a,s') = fraction of (s,a)->s' that terminated.
// Planning on that model (value/policy iteration, R-MAX optimism) lives in planning.h.
//
// Memory grows with the distinct transitions seen, never with S*A*S: transitions are keyed in one
// open-addressing hash table (a key per (s, a, s', terminated)), and per-pair statistics are kept
// only for pairs that were visited (plus a 4-byte index per (s, a)). Planning and read-outs use a
// CSR view of the counts (CompiledModel), rebuilt lazily after updates.
//
// Not thread-safe: one writer at a time; read-outs may run concurrently with each other.
#ifndef WMFAST_TABULAR_TABULAR_MODEL_H_
#define WMFAST_TABULAR_TABULAR_MODEL_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

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

class TabularModel {
 public:
  // Throws std::invalid_argument for non-positive sizes, S*A beyond 2^31, or a negative prior.
  TabularModel(int64_t num_states, int64_t num_actions, double prior = 0.0);

  int64_t num_states() const { return num_states_; }
  int64_t num_actions() const { return num_actions_; }
  double prior() const { return prior_; }
  int64_t num_transitions() const { return num_transitions_; }  // transitions counted so far
  int64_t num_visited_pairs() const { return static_cast<int64_t>(pair_visits_.size()); }

  // Counts a batch. Every element is validated before anything is changed: on a bad index or a
  // non-finite reward it throws (naming the array, position and value) and the model is unchanged.
  template <typename Index, typename Reward, typename Flag>
  void Update(const TransitionBatch<Index, Reward, Flag>& batch);

  // Adds raw counts (used by merge and load): per edge (pair, next state, count, terminal count)
  // and per pair (pair, reward sum). Validated first, all-or-nothing like Update.
  void AddCounts(const int64_t* edge_pairs, const int64_t* edge_next, const int64_t* edge_count,
                 const int64_t* edge_terminal, int64_t num_edges, const int64_t* reward_pairs,
                 const double* reward_sums, int64_t num_reward_pairs);
  void Merge(const TabularModel& other);

  // The CSR view of the current counts; rebuilt on first use after a change. The returned
  // pointer stays valid (and unchanged) until the next update.
  std::shared_ptr<const CompiledModel> Compiled() const;

 private:
  static constexpr uint64_t kEmptyKey = ~uint64_t{0};
  static constexpr uint64_t kTerminalBit = uint64_t{1} << 63;
  struct Slot {
    uint64_t key;  // (pair * S + next) | kTerminalBit if the transition terminated
    int64_t count;
  };

  void CountEdge(uint64_t key, int64_t count);
  void Rehash(uint64_t new_capacity);
  int32_t PairSlot(int64_t pair);  // allocates statistics for a first-visited pair
  uint64_t SlotOf(uint64_t key) const {
    return (key * 0x9E3779B97F4A7C15ull) >> hash_shift_;
  }

  int64_t num_states_, num_actions_;
  double prior_;
  int64_t num_transitions_ = 0;

  std::vector<Slot> table_;
  uint64_t table_mask_ = 0;
  int hash_shift_ = 64;
  int64_t table_size_ = 0;  // occupied slots

  std::vector<int32_t> pair_slot_;  // [S*A], -1 for never-visited pairs
  std::vector<int64_t> visited_pairs_;  // slot -> pair
  std::vector<int64_t> pair_visits_;    // slot -> N(s,a)
  std::vector<double> pair_reward_sum_;  // slot -> sum of rewards

  mutable std::mutex compiled_mutex_;
  mutable std::shared_ptr<const CompiledModel> compiled_;
};

// Draws imagined transitions from the model (Dyna): s' ~ p̂(.|s,a) by inverse CDF of
// uniform_next, terminated ~ τ̂(s,a,s') by uniform_terminal, reward = r̂(s,a). Uniforms in [0, 1)
// come from the caller so any generator can drive it. Throws for out-of-range indices and for
// never-visited pairs when the prior is 0. Outputs are [size].
void SampleTransitions(const CompiledModel& model, const int64_t* states, const int64_t* actions,
                       const double* uniform_next, const double* uniform_terminal, int64_t size,
                       int64_t* next_states, double* rewards, uint8_t* terminated);

}  // namespace wmfast::tabular

#endif  // WMFAST_TABULAR_TABULAR_MODEL_H_
