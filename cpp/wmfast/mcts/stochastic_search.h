// Batched Stochastic MuZero tree search (Antonoglou et al., "Planning in stochastic environments
// with a learned model", ICLR 2022).
//
// The tree alternates decision nodes (states) and chance nodes (afterstates). From a decision
// node the search selects an action by pUCT, as MuZero does; the edge state -> afterstate carries
// reward 0 and discount 1, and the afterstate's value is the decision function's estimate. From
// a chance node it selects the outcome c maximising p(c) / (N(c) + 1) (visits follow the chance
// distribution); the edge afterstate -> state carries the chance function's reward and discount
// (times the search's discount). Each simulation expands one edge per tree, so it calls exactly
// one of the two model functions for that tree: the decision function when the leaf's parent is
// a state, the chance function when it is an afterstate. Per simulation the trees needing each
// function are gathered into (at most) two batched calls (per shard of trees when the search is
// sharded over threads: see simulation_loop.h).
//
// Semantics follow mctx's stochastic_muzero_policy so its trees can be reproduced node for node:
// node indices (node first_new + s is created by simulation s), max_depth (edges from the root,
// decision and chance edges alike; a leaf at max_depth is re-evaluated), root Dirichlet noise on
// the decision priors only, the discount conventions (0 after a terminal step, -1 for two-player
// zero-sum). Differences from mctx are those of Search: pUCT ties go to the lowest action, the
// noise is spread over the legal root actions only; and no extra decision call is made at the
// root (mctx makes one to learn C).
//
// The tree's records hold max(A, C) edges: a decision node uses the first A, a chance node the
// first C. Selection, root set-up, backup, results and threads are Search's.
//
// Thread safety: a StochasticSearch is used by one thread at a time.
#ifndef WMFAST_MCTS_STOCHASTIC_SEARCH_H_
#define WMFAST_MCTS_STOCHASTIC_SEARCH_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "wmfast/mcts/search.h"
#include "wmfast/model/evaluator.h"

namespace wmfast::mcts {

class StochasticSearch : public Search {
 public:
  // config.gumbel must be false; num_chance_outcomes is C.
  StochasticSearch(const SearchConfig& config, int num_chance_outcomes, int64_t batch_size,
                   int64_t num_nodes, uint64_t stream);

  // Fresh trees holding only their (decision) roots.
  void InitFromRoots(const RootInput& root);

  // Node capacity a search continuing `previous` after actions_taken[b] then outcomes_taken[b]
  // needs (checks that they are in range, naming them).
  static int64_t NodesForReuse(const StochasticSearch& previous, const int64_t* actions_taken,
                               const int64_t* outcomes_taken, int num_simulations);

  // Trees made of the subtrees of `previous` under the states reached by actions_taken[b] then
  // outcomes_taken[b], as Search::InitFromPrevious: with root.logits (and values) the new roots
  // take them; without, the reached state must have been expanded. Fills slot_map.
  void InitFromPrevious(const StochasticSearch& previous, const int64_t* actions_taken,
                        const int64_t* outcomes_taken, const RootInput& root,
                        std::vector<int64_t>* slot_map);

  // Runs num_simulations simulations, then computes the results. `decision` receives
  // (state slot, action, afterstate slot) leaves and fills chance logits ([n, C], in
  // LeafOutputs::logits) and afterstate values, its rewards and discounts being ignored;
  // `chance` receives (afterstate slot, outcome, state slot) leaves and fills a Step. Either
  // is skipped in a simulation where no tree needs it. `poll` (may be empty) runs between
  // simulations on the calling thread and may throw to stop the search. With evaluators that
  // both take concurrent calls (and num_threads > 1), each thread searches its shard of trees
  // with its own calls of the two functions (see simulation_loop.h).
  void Run(model::Evaluator& decision, model::Evaluator& chance,
           const std::function<void()>& poll);

  int num_chance_outcomes() const { return num_chance_; }
  // Whether node n of tree b is a chance node (an afterstate).
  bool is_chance(int64_t b, int64_t n) const { return is_chance_[tree_.Node(b, n)] != 0; }
  // [B * num_nodes] 1 for chance nodes.
  const std::vector<uint8_t>& chance_flags() const { return is_chance_; }

  // Makes every field of the arena defined (see Search): priors of the nodes never searched
  // from, records of the nodes never created, and the edge entries a node's kind leaves unused
  // (zero; children -1).
  void CompleteForInspection();

  // Calls made in the last Run: of the decision function and of the chance function (a sharded
  // search makes them per shard).
  int64_t decision_calls() const { return decision_calls_.load(); }
  int64_t chance_calls() const { return chance_calls_.load(); }

 private:
  // The number of edges a node of this kind uses (A or C).
  int Width(int64_t id) const { return is_chance_[id] ? num_chance_ : config_.num_actions; }
  void EnsureNodePriors(int64_t id);
  // argmax_c p(c) / (N(c) + 1) at chance node id (first maximum).
  int SelectChance(int64_t id) const;
  bool SelectStep(int64_t b, int sim, Descent& d);
  void ExpandAndBackup(int64_t b);
  void Advance(int64_t begin, int64_t end, int sim);
  void Finish(int64_t begin, int64_t end);
  // The node of `previous` reached from each root by actions_taken[b] then outcomes_taken[b]
  // (kUnvisited when either edge was never expanded).
  static std::vector<int32_t> ReachedStates(const StochasticSearch& previous,
                                            const int64_t* actions_taken,
                                            const int64_t* outcomes_taken);
  // Splits the leaves of trees [begin, end) into the decision and the chance batch (in tree
  // order, rows from begin on); returns the two batches' sizes.
  std::pair<int64_t, int64_t> Gather(int64_t begin, int64_t end);

  int num_chance_;
  std::vector<uint8_t> is_chance_;      // [B * num_nodes]
  std::vector<uint8_t> leaf_chance_;    // [B] 1 when the leaf's parent is a chance node
  std::vector<int32_t> leaf_position_;  // [B] the leaf's row in its batch
  // The two batches' inputs and outputs ([B] rows: a shard of trees [begin, end) uses rows
  // begin.. of each); rewards and discounts of decision rows stay 0 and 1.
  struct Batch {
    std::vector<int64_t> source_slots, actions, target_slots;
    std::vector<float> rewards, discounts, logits, values;
  };
  Batch decision_batch_, chance_batch_;
  std::atomic<int64_t> decision_calls_{0}, chance_calls_{0};  // counted by concurrent shards
};

}  // namespace wmfast::mcts

#endif  // WMFAST_MCTS_STOCHASTIC_SEARCH_H_
