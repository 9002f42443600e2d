#include "wmfast/mcts/stochastic_search.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <limits>
#include <utility>
#include <vector>

#include "wmfast/common/check.h"
#include "wmfast/common/thread_pool.h"
#include "wmfast/mcts/simulation_loop.h"

namespace wmfast::mcts {

StochasticSearch::StochasticSearch(const SearchConfig& config, int num_chance_outcomes,
                                   int64_t batch_size, int64_t num_nodes, uint64_t stream)
    : Search(config, batch_size, num_nodes, stream, std::max(num_chance_outcomes, 1)),
      num_chance_(num_chance_outcomes),
      is_chance_(batch_size * num_nodes, 0),
      leaf_chance_(batch_size, 0),
      leaf_position_(batch_size, 0) {
  WMFAST_CHECK_ARG(num_chance_outcomes >= 1, "num_chance_outcomes must be >= 1, got ",
                   num_chance_outcomes);
  WMFAST_CHECK_ARG(!config.gumbel, "the stochastic search uses pUCT (gumbel must be false)");
  for (Batch* batch : {&decision_batch_, &chance_batch_}) {
    batch->source_slots.resize(batch_size);
    batch->actions.resize(batch_size);
    batch->target_slots.resize(batch_size);
    batch->rewards.assign(batch_size, 0.0f);
    batch->discounts.assign(batch_size, 1.0f);
    batch->values.resize(batch_size);
  }
  decision_batch_.logits.resize(batch_size * num_chance_outcomes);
  chance_batch_.logits.resize(batch_size * config.num_actions);
}

void StochasticSearch::InitFromRoots(const RootInput& root) { Search::InitFromRoots(root); }

std::vector<int32_t> StochasticSearch::ReachedStates(const StochasticSearch& previous,
                                                     const int64_t* actions_taken,
                                                     const int64_t* outcomes_taken) {
  const Tree& old = previous.tree_;
  std::vector<int32_t> reached(old.batch_size, kUnvisited);
  for (int64_t b = 0; b < old.batch_size; ++b) {
    const int64_t a = actions_taken[b], c = outcomes_taken[b];
    WMFAST_CHECK_ARG(a >= 0 && a < previous.config_.num_actions, "action_taken[", b,
                     "] must be in [0, ", previous.config_.num_actions, "), got ", a);
    WMFAST_CHECK_ARG(c >= 0 && c < previous.num_chance_, "outcome_taken[", b,
                     "] must be in [0, ", previous.num_chance_, "), got ", c);
    const int32_t afterstate = old.children(old.Node(b, kRootIndex))[a];
    if (afterstate != kUnvisited) reached[b] = old.children(old.Node(b, afterstate))[c];
  }
  return reached;
}

int64_t StochasticSearch::NodesForReuse(const StochasticSearch& previous,
                                        const int64_t* actions_taken,
                                        const int64_t* outcomes_taken, int num_simulations) {
  return SubtreeCapacity(previous.tree_, ReachedStates(previous, actions_taken, outcomes_taken),
                         num_simulations);
}

void StochasticSearch::InitFromPrevious(const StochasticSearch& previous,
                                        const int64_t* actions_taken,
                                        const int64_t* outcomes_taken, const RootInput& root,
                                        std::vector<int64_t>* slot_map) {
  WMFAST_CHECK_ARG(previous.config_.num_actions == config_.num_actions &&
                       previous.num_chance_ == num_chance_,
                   "reuse: the previous search had ", previous.config_.num_actions,
                   " actions and ", previous.num_chance_, " chance outcomes, this one has ",
                   config_.num_actions, " and ", num_chance_);
  const std::vector<int32_t> reached = ReachedStates(previous, actions_taken, outcomes_taken);
  InitFromNodes(previous, reached, root, slot_map, [&](int64_t b) {
    return StrCat("action_taken / outcome_taken: the state reached by action ", actions_taken[b],
                  " then outcome ", outcomes_taken[b], " in tree ", b,
                  " was never expanded in the previous search, so there is no subtree to "
                  "continue from; pass a root to start that tree afresh");
  });
  // Kinds alternate from the (decision) root, and parents precede their children.
  for (int64_t b = 0; b < tree_.batch_size; ++b) {
    is_chance_[tree_.Node(b, kRootIndex)] = 0;
    for (int64_t n = 1; n < first_new_[b]; ++n) {
      const int64_t id = tree_.Node(b, n);
      is_chance_[id] = is_chance_[tree_.Node(b, tree_.parent(id))] ? 0 : 1;
    }
  }
}

void StochasticSearch::EnsureNodePriors(int64_t id) {
  if (tree_.priors_ready(id)) return;
  SoftmaxRow(tree_.prior_logits(id), Width(id), tree_.priors(id));
  tree_.priors_ready(id) = 1;
}

int StochasticSearch::SelectChance(int64_t id) const {
  // mctx: argmax(softmax(logits) / (N(c) + 1)), in float32, first maximum.
  const float* priors = tree_.priors(id);
  const int32_t* visits = tree_.visits(id);
  int best = 0;
  float best_score = -std::numeric_limits<float>::infinity();
  for (int c = 0; c < num_chance_; ++c) {
    const float score = priors[c] / static_cast<float>(visits[c] + 1);
    if (score > best_score) {
      best = c;
      best_score = score;
    }
  }
  return best;
}

bool StochasticSearch::SelectStep(int64_t b, int sim, Descent& d) {
  const int64_t id = tree_.Node(b, d.node);
  EnsureNodePriors(id);
  const bool chance = is_chance_[id] != 0;
  const int action = chance ? SelectChance(id) : SelectPuct(b, d.node, d.depth == 0);
  const int32_t child = tree_.children(id)[action];
  ++d.depth;
  const int max_depth = config_.max_depth > 0 ? config_.max_depth : INT_MAX;
  if (child != kUnvisited && d.depth < max_depth) {
    d.node = child;
    tree_.PrefetchSelection(tree_.Node(b, child));
    return false;
  }
  leaf_parent_[b] = d.node;
  leaf_action_[b] = action;
  leaf_node_[b] = child == kUnvisited ? first_new_[b] + sim : child;
  leaf_chance_[b] = chance ? 1 : 0;
  source_slots_[b] = Slot(b, d.node);
  actions_[b] = action;
  target_slots_[b] = Slot(b, leaf_node_[b]);
  return true;
}

std::pair<int64_t, int64_t> StochasticSearch::Gather(int64_t begin, int64_t end) {
  // In tree order whatever the threads did: a batch's rows (and so the model's inputs) depend
  // only on the trees gathered. A shard's rows start at its first tree's index, so shards
  // gather into disjoint rows.
  int64_t decisions = 0, chances = 0;
  for (int64_t b = begin; b < end; ++b) {
    const bool chance = leaf_chance_[b] != 0;
    Batch& batch = chance ? chance_batch_ : decision_batch_;
    const int64_t i = begin + (chance ? chances++ : decisions++);
    batch.source_slots[i] = source_slots_[b];
    batch.actions[i] = actions_[b];
    batch.target_slots[i] = target_slots_[b];
    leaf_position_[b] = static_cast<int32_t>(i);
  }
  return {decisions, chances};
}

void StochasticSearch::ExpandAndBackup(int64_t b) {
  const int32_t parent = leaf_parent_[b], action = leaf_action_[b], leaf = leaf_node_[b];
  const int64_t node = tree_.Node(b, leaf);
  const bool from_chance = leaf_chance_[b] != 0;
  const Batch& batch = from_chance ? chance_batch_ : decision_batch_;
  const int64_t i = leaf_position_[b];
  // The new node is a state below a chance node, an afterstate below a decision node.
  const int width = from_chance ? config_.num_actions : num_chance_;
  // A leaf at max_depth already exists: mctx re-evaluates it in place.
  if (!tree_.created(node)) tree_.Create(node);
  is_chance_[node] = from_chance ? 0 : 1;
  std::copy_n(&batch.logits[i * width], width, tree_.prior_logits(node));
  tree_.priors_ready(node) = 0;
  tree_.raw_value(node) = batch.values[i];
  tree_.node_value(node) = batch.values[i];
  tree_.node_visits(node) += 1;
  tree_.parent(node) = parent;
  tree_.action_from_parent(node) = action;
  // state -> afterstate: reward 0, discount 1; afterstate -> state: the chance function's.
  tree_.reward(node) = from_chance ? batch.rewards[i] : 0.0f;
  tree_.discount(node) = from_chance ? batch.discounts[i] * config_.discount : 1.0f;
  tree_.children(tree_.Node(b, parent))[action] = leaf;
  Backup(b, node);
}

void StochasticSearch::Advance(int64_t begin, int64_t end, int sim) {
  // As Search::Advance: backup of sim - 1 and selection of sim in one pass, trees of a group
  // descending a level each per round so that one tree's cache misses overlap another's work.
  constexpr int64_t kGroup = 8, kPrefetchDistance = 2;
  Descent descents[kGroup];
  for (int64_t group = begin; group < end; group += kGroup) {
    const int64_t size = std::min(kGroup, end - group);
    for (int64_t b = group; b < group + size; ++b) {
      if (b + kPrefetchDistance < end) Prefetch(b + kPrefetchDistance, sim > 0);
      if (sim > 0) ExpandAndBackup(b);
    }
    int64_t pending = size;
    for (int64_t i = 0; i < size; ++i) descents[i] = Descent{};
    bool chosen[kGroup] = {};
    while (pending > 0) {
      for (int64_t i = 0; i < size; ++i) {
        if (chosen[i]) continue;
        chosen[i] = SelectStep(group + i, sim, descents[i]);
        pending -= chosen[i] ? 1 : 0;
      }
    }
  }
}

void StochasticSearch::Finish(int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    ExpandAndBackup(b);
    Finalize(b);
  }
}

void StochasticSearch::Run(model::Evaluator& decision, model::Evaluator& chance,
                           const std::function<void()>& poll) {
  const int threads = Pool().num_threads();
  decision_calls_ = chance_calls_ = 0;
  SimulationSteps steps;
  steps.advance = [this](int64_t begin, int64_t end, int sim) { Advance(begin, end, sim); };
  // Up to two model calls per simulation (the trees whose leaf hangs below a state, those whose
  // leaf hangs below an afterstate); a shard's rows are [begin, begin + size) of each batch.
  auto evaluate = [](model::Evaluator& evaluator, Batch& batch, int64_t begin, int64_t size,
                     int width, ThreadPool* helpers, std::atomic<int64_t>& calls) {
    if (size == 0) return;
    const model::LeafBatch leaves{size, batch.source_slots.data() + begin,
                                  batch.actions.data() + begin, batch.target_slots.data() + begin,
                                  helpers};
    const model::LeafOutputs outputs{batch.rewards.data() + begin, batch.discounts.data() + begin,
                                     batch.logits.data() + begin * width,
                                     batch.values.data() + begin};
    evaluator.Evaluate(leaves, outputs);
    calls.fetch_add(1, std::memory_order_relaxed);
  };
  steps.evaluate = [&](int64_t begin, int64_t end, ThreadPool* helpers) {
    const auto [decisions, chances] = Gather(begin, end);
    evaluate(decision, decision_batch_, begin, decisions, num_chance_, helpers, decision_calls_);
    evaluate(chance, chance_batch_, begin, chances, config_.num_actions, helpers, chance_calls_);
  };
  steps.finish = [this](int64_t begin, int64_t end) { Finish(begin, end); };
  // Sharded only when both functions take a call per thread.
  const bool sharded = threads > 1 && decision.max_concurrent_calls() >= threads &&
                       chance.max_concurrent_calls() >= threads;
  RunSimulations(pool_, tree_.batch_size, config_.num_simulations, sharded, steps, poll);
}

void StochasticSearch::CompleteForInspection() {
  tree_.CreateUnused();
  tree_.DeriveEdgeFields();
  const int E = tree_.num_actions;
  for (int64_t id = 0; id < tree_.batch_size * tree_.num_nodes; ++id) {
    if (tree_.node_visits(id) > 0) EnsureNodePriors(id);
    // Edges past the node's kind's width were never written.
    const int width = Width(id);
    std::fill(tree_.prior_logits(id) + width, tree_.prior_logits(id) + E, 0.0f);
    std::fill(tree_.priors(id) + width, tree_.priors(id) + E, 0.0f);
    if (tree_.node_visits(id) == 0) std::fill_n(tree_.priors(id), width, 0.0f);
  }
}

}  // namespace wmfast::mcts
