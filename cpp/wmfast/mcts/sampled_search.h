// Batched Sampled MuZero tree search: pUCT over K actions sampled per node from the model's
// policy, for continuous or large discrete action spaces.
//
// Hubert et al., "Learning and Planning in Complex Action Spaces" (ICML 2021). Each node, when
// the search first descends from it, draws K actions from a proposal beta; pUCT then runs over
// those K children with the prior (beta-hat / beta) * pi, where beta-hat is the empirical
// distribution of the K draws. Here:
//  - Continuous actions (action_dim D > 0): the model's policy output ("logits", width 2D) is a
//    diagonal Gaussian, mean then log_std; K actions are drawn i.i.d. (beta = pi, with
//    replacement) and clipped to [action_low, action_high]. With beta = pi the corrected prior
//    is beta-hat itself: 1/K per draw (draws are distinct almost surely; two draws clipped to
//    the same bound stay two children of 1/K each, which is beta-hat with their mass split).
//  - Discrete actions (num_actions A): K distinct actions by Gumbel-top-k on the logits
//    (sampling without replacement, Kool et al. 2019). beta-hat/beta is then not defined per
//    action (the inclusion probabilities of a without-replacement sample have no closed form),
//    so the prior is pi restricted to the sampled set and renormalised, as Gumbel MuZero does
//    for its considered actions: it tends to pi as K grows and equals it at K = A, where this
//    search is exactly wm.MCTS (children are kept in ascending action order for that reason).
//    Actions whose logit is -inf are never drawn; a node with fewer than K such actions has
//    fewer children.
// Everything else follows search.h (mctx semantics): node indices first_new + simulation,
// max_depth re-evaluation, Q = reward + discount * child value, Q normalisation, root Dirichlet
// noise (here over the K sampled priors), the final action ~ visits^(1/T) among the K children.
//
// Randomness: node n of tree b draws its samples from its own stream (seed, search, b, n), so
// results are bit-identical for a seed whatever the number of threads, and a node's samples do
// not depend on when it is first descended from.
//
// Thread safety: a SampledSearch is used by one thread at a time.
#ifndef WMFAST_MCTS_SAMPLED_SEARCH_H_
#define WMFAST_MCTS_SAMPLED_SEARCH_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "wmfast/common/thread_pool.h"
#include "wmfast/mcts/search.h"
#include "wmfast/mcts/tree.h"
#include "wmfast/model/evaluator.h"

namespace wmfast::mcts {

struct SampledConfig {
  int num_samples = 0;           // K: actions sampled per node
  int num_simulations = 0;       // N: simulations (model calls) per search
  int num_actions = 0;           // A: discrete action set (0 for continuous actions)
  int action_dim = 0;            // D: continuous action dimensions (0 for discrete actions)
  std::vector<float> action_low, action_high;  // [D] bounds of continuous actions
  int max_depth = 0;             // edges from the root to a leaf; <= 0 means unlimited
  float discount = 1.0f;         // multiplies the model's per-step discount
  float pb_c_init = 1.25f;       // c1 of pUCT
  float pb_c_base = 19652.0f;    // c2 of pUCT
  QTransform qtransform = QTransform::kParentAndSiblings;  // not kCompletedByMixValue
  float min_value = -1.0f, max_value = 1.0f;  // kMinMax bounds
  float epsilon = 1e-8f;         // smallest denominator of the normalisations
  float dirichlet_alpha = 0.3f;     // root noise over the K sampled priors
  float dirichlet_fraction = 0.0f;  // 0: no noise
  float temperature = 1.0f;      // final action ~ visits^(1/T); 0 picks the most visited
  // What an unvisited child's Q counts as in pUCT: the minimum (mctx, MuZero: a value score of
  // 0) or the parent's value (first-play urgency as in KataGo, EfficientZero): with uniform
  // sampled priors the minimum stops exploring once one sample looks good; the parent's value
  // keeps trying the others while their bonus exceeds the best one's lead.
  bool unvisited_parent_value = false;
  uint64_t seed = 0;
  int num_threads = 1;           // threads sharing the trees (at most one per 32 trees)

  bool continuous() const { return action_dim > 0; }
  // Width of the model's policy output: 2D (mean, log_std) or A logits.
  int policy_width() const { return continuous() ? 2 * action_dim : num_actions; }
};

// Throws std::invalid_argument naming the field if `config` is inconsistent.
void ValidateSampledConfig(const SampledConfig& config);

// Root inputs, owned by the caller and read during Init only.
struct SampledRootInput {
  const float* policy = nullptr;     // [B, policy_width] root policy (logits or mean, log_std)
  const float* values = nullptr;     // [B] root value estimates
  const uint8_t* invalid = nullptr;  // [B, A] 1 = illegal (discrete only); nullptr: all legal
  // Fixed root samples instead of drawing them (e.g. to reanalyse with stored samples), or
  // nullptr: continuous [B, K, D] inside the bounds; discrete [B, K] distinct legal actions.
  const float* actions = nullptr;
  const int64_t* action_indices = nullptr;
};

class SampledSearch {
 public:
  // `stream` separates the random streams of successive searches with one seed. num_nodes is
  // the node capacity of each tree: 0 means num_simulations + 1 (a fresh search); more when
  // reusing (NodesForReuse).
  SampledSearch(const SampledConfig& config, int64_t batch_size, uint64_t stream,
                int64_t num_nodes = 0);

  // Node capacity a search continuing `previous` after `taken` [B] needs. taken[b] is the
  // index (in [0, K)) of the root sample played in tree b, or kStartAfresh. Throws
  // std::invalid_argument naming action_taken when an index is out of range.
  static int64_t NodesForReuse(const SampledSearch& previous, const int64_t* taken,
                               int num_simulations);

  // Fresh trees holding their roots, with the root samples drawn (or copied). Throws
  // std::invalid_argument naming root.logits, root.value, legal_actions or root_actions.
  void InitFromRoots(const SampledRootInput& root);

  // Trees made of the subtrees of `previous` under the root samples `taken` [B] (as
  // Search::InitFromPrevious; kStartAfresh or a sample never expanded: tree b starts from
  // root b alone, which then must be given). With root.policy (and values) the new roots take
  // them: their kept samples stay (the statistics are theirs), their priors are recomputed from
  // the new policy (discrete; continuous priors are 1/K whatever the policy), and a root never
  // descended from draws its samples from it. Without, the subtree roots keep their own policy
  // and raw value. root.invalid (discrete) drops the kept root samples that are now illegal,
  // with their subtrees (all dropped: the root draws anew). Root noise applies either way.
  // root.actions / action_indices are not accepted here. Fills slot_map [B * num_nodes]: for
  // each new latent slot the previous search's slot holding its latent, or -1.
  void InitFromPrevious(const SampledSearch& previous, const int64_t* taken,
                        const SampledRootInput& root, std::vector<int64_t>* slot_map);

  // Runs the simulations and computes the results. `poll` (may be empty) runs between
  // simulations on the calling thread and may throw to stop the search. With an evaluator that
  // takes concurrent calls (and num_threads > 1), each thread searches its shard of trees with
  // its own model calls (see simulation_loop.h).
  void Run(model::Evaluator& evaluator, const std::function<void()>& poll);

  // The evaluator's latent slot of node n of tree b (node-major, as in Search).
  int64_t Slot(int64_t b, int64_t n) const { return n * tree_.batch_size + b; }

  const SampledConfig& config() const { return config_; }
  const Tree& tree() const { return tree_; }
  int64_t batch_size() const { return tree_.batch_size; }
  // Children of node id: 0 until the search first descends from it (its samples are drawn then).
  int32_t num_children(int64_t id) const { return num_children_[id]; }
  // The K sampled actions of node id: [K, D] floats (continuous) or [K] indices (discrete);
  // entries past num_children are unspecified.
  const float* samples(int64_t id) const {
    return &samples_[id * config_.num_samples * config_.action_dim];
  }
  const int64_t* sample_indices(int64_t id) const {
    return &sample_indices_[id * config_.num_samples];
  }
  // Makes the arena inspectable: creates the nodes never created (empty records) and fills
  // mctx's derived per-edge fields.
  void CompleteForInspection();

  struct Results {
    std::vector<int64_t> index;           // [B] chosen child (index into the K samples)
    std::vector<float> action;            // [B, D] chosen continuous action
    std::vector<int64_t> action_index;    // [B] chosen discrete action
    std::vector<float> actions;           // [B, K, D] root samples (continuous)
    std::vector<int64_t> action_indices;  // [B, K] root samples (discrete; -1 past the children)
    std::vector<int32_t> visit_counts;    // [B, K]
    std::vector<float> policy;            // [B, K] visit distribution over the samples
    std::vector<float> priors;            // [B, K] corrected prior (after root noise)
    std::vector<float> q_values;          // [B, K] Q(root, sample) (0 unvisited)
    std::vector<float> root_value;        // [B]
  };
  // Results of the finished search, moved out (call once).
  Results TakeResults() { return std::move(results_); }

 private:
  // Draws node id's samples and priors (once), from its stored policy output.
  void EnsureSampled(int64_t b, int64_t node);
  // Priors of node id's n samples from its stored policy: 1/n (continuous) or the policy
  // restricted to the sampled actions and renormalised (discrete; all -inf: 1/n).
  void SetSamplePriors(int64_t id, int n);
  // Checks root.policy / root.values / root.invalid and copies the discrete root mask.
  void CheckRootInput(const SampledRootInput& root, bool need_policy);
  void DrawContinuous(int64_t b, int64_t node, float* out) const;
  int DrawDiscrete(int64_t b, int64_t node, const uint8_t* invalid, int64_t* out) const;
  void AddRootNoise(int64_t b);
  int SelectPuct(int64_t b, int64_t node) const;
  // Descends tree b for simulation sim and writes its leaf.
  void Select(int64_t b, int sim);
  void ExpandAndBackup(int64_t b);
  void Finalize(int64_t b);
  ThreadPool& Pool();

  SampledConfig config_;
  Tree tree_;  // edges = the K sampled children; prior_logits hold log priors
  uint64_t stream_;
  int P_;      // policy_width
  std::vector<float> explore_;          // pUCT exploration factor by node visits
  std::vector<float> policy_;           // [B * N, P] the model's policy output at each node
  std::vector<float> samples_;          // [B * N, K, D]
  std::vector<int64_t> sample_indices_;  // [B * N, K]
  std::vector<int32_t> num_children_;   // [B * N]
  std::vector<int32_t> first_new_;      // [B] index of the first node a simulation creates
  std::vector<float> running_min_, running_max_;  // [B] kRunningMinMax bounds
  std::vector<uint8_t> root_invalid_;   // [B, A] discrete root mask

  // Per-simulation leaf of each tree and the model's outputs for it.
  std::vector<int32_t> leaf_parent_, leaf_edge_, leaf_node_;  // [B]
  std::vector<int64_t> source_slots_, actions_, target_slots_;  // [B]
  std::vector<float> float_actions_;                           // [B, D]
  std::vector<float> out_rewards_, out_discounts_, out_values_, out_policy_;

  Results results_;
  CachedPool pool_;
};

}  // namespace wmfast::mcts

#endif  // WMFAST_MCTS_SAMPLED_SEARCH_H_
