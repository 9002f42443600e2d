// Batched MuZero and Gumbel MuZero tree search over a learned model.
//
// MuZero (Schrittwieser et al., "Mastering Atari, Go, chess and shogi by planning with a learned
// model", Nature 2020): each simulation descends from the root by pUCT,
//   argmax_a  Qn(s, a) + P(s, a) * sqrt(N(s)) / (1 + N(s, a)) * (c1 + log((N(s) + c2 + 1) / c2)),
// evaluates one new (parent, action) pair with the model's recurrent function, and backs the
// discounted return up the path. Qn is a normalised Q: mctx's by-parent-and-siblings transform
// (default), fixed bounds, or MuZero's tree-wide running min-max. Root priors get Dirichlet noise
// (AlphaZero) and illegal root actions are masked.
//
// Gumbel MuZero (Danihelka et al., "Policy improvement by planning with Gumbel", ICLR 2022):
// at the root, Gumbel-top-k sampling and Sequential Halving pick the actions to visit; inside the
// tree a deterministic selection makes visit frequencies follow softmax(logits + completed Q);
// the policy target is that completed-Q improved policy at the root.
//
// Semantics follow mctx (github.com/google-deepmind/mctx) so its stored trees can be reproduced:
// node indices, max_depth (a leaf at max_depth is re-evaluated), the discount convention (0 at a
// terminal step, -1 for two-player zero-sum). Differences: ties go to the lowest action index
// (mctx adds 1e-7 noise), and Dirichlet noise is spread over the legal root actions only.
//
// Trees descend independently (no lock-step over the batch); each simulation makes one batched
// model call for all B trees, and the tree work between calls is split over num_threads threads.
// With an evaluator that takes concurrent calls (a CPU native model with a runner per thread),
// each thread instead searches its own shard of trees with its own model calls, so one shard's
// tree work overlaps another's model call. Results do not depend on the number of threads.
//
// Thread safety: a Search is used by one thread at a time.
#ifndef WMFAST_MCTS_SEARCH_H_
#define WMFAST_MCTS_SEARCH_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wmfast/common/thread_pool.h"
#include "wmfast/mcts/tree.h"
#include "wmfast/model/evaluator.h"

namespace wmfast::mcts {

enum class QTransform {
  kParentAndSiblings,    // mctx qtransform_by_parent_and_siblings: min/max over V(s) and Q(s, .)
  kMinMax,               // mctx qtransform_by_min_max with fixed min_value/max_value
  kRunningMinMax,        // MuZero: min/max of all backed-up Q in the tree so far
  kCompletedByMixValue,  // mctx qtransform_completed_by_mix_value (Gumbel MuZero)
};

struct SearchConfig {
  int num_actions = 0;          // A
  int num_simulations = 0;      // N: simulations (model calls) per search
  int max_depth = 0;            // edges from the root to a leaf; <= 0 means unlimited
  float discount = 1.0f;        // multiplies the model's per-step discount
  bool gumbel = false;          // Gumbel MuZero root and interior selection instead of pUCT
  float pb_c_init = 1.25f;      // c1 of pUCT
  float pb_c_base = 19652.0f;   // c2 of pUCT
  QTransform qtransform = QTransform::kParentAndSiblings;
  float min_value = -1.0f;      // kMinMax lower bound of Q
  float max_value = 1.0f;       // kMinMax upper bound of Q
  float epsilon = 1e-8f;        // smallest denominator of the normalisations
  float dirichlet_alpha = 0.3f;     // concentration of the root noise
  float dirichlet_fraction = 0.0f;  // weight of the root noise (0: no noise)
  float temperature = 1.0f;     // final action ~ visits^(1/T); 0 picks the most visited
  int max_num_considered_actions = 16;  // Gumbel: actions sampled at the root
  float gumbel_scale = 1.0f;    // Gumbel: scale of the root Gumbel noise
  float value_scale = 0.1f;     // completed Q scale: (maxvisit_init + max N(s, a)) * value_scale
  float maxvisit_init = 50.0f;  // see value_scale
  bool rescale_values = true;   // completed Q rescaled to [0, 1] before scaling
  bool use_mixed_value = true;  // unvisited Q completed by the mixed value (else the raw value)
  uint64_t seed = 0;            // seed of the noise and of the final action
  int num_threads = 1;          // most threads sharing the trees (counting the calling one);
                                // batches under 32 trees per thread use fewer
};

// Throws std::invalid_argument naming the field if `config` is inconsistent.
void ValidateConfig(const SearchConfig& config);

// out = softmax(logits) over n entries, as the search computes its priors (total: -inf rows are
// uniform, NaN entries get no mass).
void SoftmaxRow(const float* logits, int n, float* out);

// Root inputs, all owned by the caller and read during Init only. Init checks that they are
// finite (logits may be -inf where a row keeps a finite entry) and that every root has a legal
// action, naming them as the Python API does (root.logits, root.value, gumbel, legal_actions).
struct RootInput {
  const float* logits = nullptr;     // [B, A] prior logits
  const float* values = nullptr;     // [B] value estimates
  const uint8_t* invalid = nullptr;  // [B, A] 1 = illegal action; nullptr: all legal
  const float* gumbel = nullptr;     // [B, A] Gumbel noise to use; nullptr: sampled (scaled)
};

// actions_taken entry of a tree that keeps nothing of the previous search.
inline constexpr int64_t kStartAfresh = -1;

class Search {
 public:
  // `stream` separates the random streams of successive searches with one seed. num_nodes is
  // the node capacity of each tree: num_simulations + 1 for a fresh search, more when reusing.
  Search(const SearchConfig& config, int64_t batch_size, int64_t num_nodes, uint64_t stream);

  // Node capacity a search continuing `previous` after `actions_taken` [B] needs.
  static int64_t NodesForReuse(const Search& previous, const int64_t* actions_taken,
                               int num_simulations);

  // Fresh trees holding only their roots.
  void InitFromRoots(const RootInput& root);

  // Trees made of the subtrees of `previous` under the root actions `actions_taken` [B]
  // (kStartAfresh: tree b starts from root b alone, e.g. after its episode ended). With
  // root.logits (and values) the new roots take them (their statistics are kept); without, the
  // subtree roots keep their own and every taken action must have been expanded. root.invalid
  // (and gumbel) apply either way: subtrees under now-illegal root actions are dropped. Fills
  // slot_map [B * num_nodes]: for each new latent slot the previous search's slot holding its
  // latent, or -1 (nothing to copy).
  void InitFromPrevious(const Search& previous, const int64_t* actions_taken,
                        const RootInput& root, std::vector<int64_t>* slot_map);

  // Runs num_simulations simulations, then computes the results. `poll` (may be empty) runs
  // between simulations on the calling thread and may throw to stop the search.
  // With an evaluator that takes concurrent calls (and num_threads > 1), each thread searches
  // its shard of trees with its own model calls.
  void Run(model::Evaluator& evaluator, const std::function<void()>& poll);

  // The evaluator's latent slot of node n of tree b. Node-major, so the latents a simulation
  // creates in fresh trees (node first_new + sim of every tree) fill one contiguous run.
  int64_t Slot(int64_t b, int64_t n) const { return n * tree_.batch_size + b; }

  const SearchConfig& config() const { return config_; }
  const Tree& tree() const { return tree_; }

  // Makes every field of the arena defined, for inspecting the trees: fills the priors of the
  // nodes never searched from and the records of the nodes never created.
  void CompleteForInspection();
  int64_t batch_size() const { return tree_.batch_size; }

  // Results, valid after Run.
  const std::vector<int64_t>& action() const { return action_; }       // [B] chosen action
  const std::vector<int32_t>& visit_counts() const { return visit_counts_; }  // [B, A]
  const std::vector<float>& policy() const { return policy_; }         // [B, A] policy target
  const std::vector<float>& root_value() const { return root_value_; }  // [B] root node value
  const std::vector<float>& q_values() const { return q_values_; }     // [B, A] Q at the root
  const std::vector<float>& gumbel() const { return gumbel_; }         // [B, A] root Gumbel noise

  // The results above, moved out (the accessors return empty vectors afterwards): for owners
  // that outlive or are independent of the search, such as the tensors the bindings hand out.
  // Tree reuse (InitFromPrevious) reads only the trees, never these.
  struct Results {
    std::vector<int64_t> action;
    std::vector<int32_t> visit_counts;
    std::vector<float> policy, root_value, q_values, gumbel;
  };
  Results TakeResults();

 protected:
  // A search whose tree records hold `tree_width` (>= num_actions) edges: the stochastic search
  // keeps decision and chance nodes in one tree (see stochastic_search.h).
  Search(const SearchConfig& config, int64_t batch_size, int64_t num_nodes, uint64_t stream,
         int tree_width);

  // Trees made of the subtrees of `previous` under its nodes new_roots[b] (see
  // InitFromPrevious); `unexpanded(b)` is the error message when new_roots[b] is kUnvisited and
  // there is no root input.
  void InitFromNodes(const Search& previous, const std::vector<int32_t>& new_roots,
                     const RootInput& root, std::vector<int64_t>* slot_map,
                     const std::function<std::string(int64_t)>& unexpanded);

  // Throws std::invalid_argument at the first non-finite root input or the first root with no
  // legal action.
  void CheckRootInput(const RootInput& root) const;
  // Writes the root's prior (masked, noised) and raw value (CheckRootInput has checked them).
  void SetupRoot(int64_t b, const float* logits, float value, const uint8_t* invalid,
                 const float* gumbel);
  // Recomputes the root's visits and value from its children (after reuse).
  void RecomputeRoot(int64_t b);
  // Where a tree's selection has got to: the current node and its depth.
  struct Descent {
    int32_t node = kRootIndex;
    int depth = 0;
  };
  // One level of tree b's descent in simulation sim; true once the leaf is chosen (and written
  // to the leaf arrays), else d moves to the child (whose lines are prefetched).
  bool SelectStep(int64_t b, int sim, Descent& d);
  void EnsurePriors(int64_t b, int64_t node);
  int SelectPuct(int64_t b, int64_t node, bool at_root) const;
  int SelectGumbelRoot(int64_t b, int sim_index) const;
  int SelectGumbelInterior(int64_t b, int64_t node) const;
  void CompletedQ(int64_t b, int64_t node, float* out) const;
  void ExpandAndBackup(int64_t b);
  // Backs the value of the new (or re-evaluated) node `node` (flat id) of tree b up to the root.
  void Backup(int64_t b, int64_t node);
  void Prefetch(int64_t b, bool backup) const;
  void Finalize(int64_t b);
  // Backs up the last simulation (sim > 0) and selects the leaves of simulation sim, for the
  // trees [begin, end); Finish backs up the last simulation and computes their results.
  void Advance(int64_t begin, int64_t end, int sim);
  void Finish(int64_t begin, int64_t end);
  // The search's threads (config.num_threads, fewer for small batches), taken from the process's
  // cache of pools on first use and returned by Run.
  ThreadPool& Pool();

  SearchConfig config_;
  Tree tree_;
  uint64_t stream_;
  std::vector<std::vector<int>> considered_table_;  // Gumbel: [m + 1][N] visits to consider
  std::vector<float> explore_;         // pUCT: ExploreFactor of 0..num_nodes node visits
  std::vector<int32_t> first_new_;     // [B] index of the node simulation 0 creates
  std::vector<int32_t> num_considered_;  // [B] Gumbel: min(max considered, legal actions)
  std::vector<float> gumbel_;          // [B, A] Gumbel noise at the root
  std::vector<float> running_min_, running_max_;  // [B] kRunningMinMax bounds
  // Added to pUCT scores: [B, A] -inf for illegal root actions, else 0; [A] zeros elsewhere.
  std::vector<float> root_score_offset_, interior_score_offset_;

  // Per-simulation leaf of each tree and the model's outputs for it.
  std::vector<int32_t> leaf_parent_, leaf_action_, leaf_node_;  // [B]
  std::vector<int64_t> source_slots_, actions_, target_slots_;  // [B] evaluator inputs
  std::vector<float> out_rewards_, out_discounts_, out_values_, out_logits_;  // evaluator outputs

  std::vector<int64_t> action_;
  std::vector<int32_t> visit_counts_;
  std::vector<float> policy_, root_value_, q_values_;
  CachedPool pool_;
};

}  // namespace wmfast::mcts

#endif  // WMFAST_MCTS_SEARCH_H_
