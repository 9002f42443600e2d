#include "wmfast/mcts/search.h"

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

#include "wmfast/common/check.h"
#include "wmfast/common/thread_pool.h"
#include "wmfast/mcts/backup.h"
#include "wmfast/mcts/puct.h"
#include "wmfast/mcts/random.h"
#include "wmfast/mcts/root_results.h"
#include "wmfast/mcts/seq_halving.h"
#include "wmfast/mcts/simulation_loop.h"
#include "wmfast/model/float_rows.h"

namespace wmfast::mcts {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
// How many trees ahead Run prefetches.
constexpr int64_t kPrefetchDistance = 2;
// mctx masks illegal root logits with the most negative finite float (softmax stays NaN-free).
constexpr float kMaskedLogit = -FLT_MAX;

// out = softmax(logits) over n entries. Total: +inf entries share the mass, a row of -inf
// (or of equal infinities) is uniform, NaN entries get no mass (a row of NaN: uniform).
void Softmax(const float* logits, int n, float* out) {
  float max_logit = -kInf;
  for (int a = 0; a < n; ++a) {
    if (logits[a] > max_logit) max_logit = logits[a];
  }
  if (!std::isfinite(max_logit)) {
    // No finite maximum: the entries equal to it (all, if it is -inf or every entry is NaN)
    // share the mass.
    int count = 0;
    for (int a = 0; a < n; ++a) count += (logits[a] == max_logit || max_logit == -kInf) ? 1 : 0;
    if (count == 0) count = n;
    const float share = 1.0f / static_cast<float>(count);
    for (int a = 0; a < n; ++a) {
      out[a] = (max_logit == -kInf || logits[a] == max_logit) ? share : 0.0f;
    }
    return;
  }
  float sum = 0.0f;
  for (int a = 0; a < n; ++a) {
    const float e = std::exp(logits[a] - max_logit);
    out[a] = e == e ? e : 0.0f;  // NaN logits get no mass
    sum += out[a];
  }
  const float inv = 1.0f / sum;
  for (int a = 0; a < n; ++a) out[a] *= inv;
}

// Index of the first maximum (deterministic tie-breaking).
int Argmax(const float* x, int n) {
  int best = 0;
  for (int a = 1; a < n; ++a) {
    if (x[a] > x[best]) best = a;
  }
  return best;
}

}  // namespace

void SoftmaxRow(const float* logits, int n, float* out) { Softmax(logits, n, out); }

void ValidateConfig(const SearchConfig& c) {
  WMFAST_CHECK_ARG(c.num_actions >= 1, "num_actions must be >= 1, got ", c.num_actions);
  WMFAST_CHECK_ARG(c.num_simulations >= 1, "num_simulations must be >= 1, got ",
                   c.num_simulations);
  WMFAST_CHECK_ARG(c.pb_c_base > 0.0f, "pb_c_base must be > 0, got ", c.pb_c_base);
  WMFAST_CHECK_ARG(std::isfinite(c.pb_c_init), "pb_c_init must be finite, got ", c.pb_c_init);
  WMFAST_CHECK_ARG(c.discount >= 0.0f && c.discount <= 1.0f,
                   "discount must be in [0, 1] (a two-player game's sign flip is the model's "
                   "Step.discount = -1), got ", c.discount);
  WMFAST_CHECK_ARG(c.max_depth >= 0, "max_depth must be >= 0 (0: unlimited), got ", c.max_depth);
  WMFAST_CHECK_ARG(std::isfinite(c.epsilon) && c.epsilon >= kMinEpsilon,
                   "epsilon must be a finite number >= ", kMinEpsilon,
                   " (the smallest denominator of the Q normalisation), got ", c.epsilon);
  WMFAST_CHECK_ARG(std::isfinite(c.pb_c_base), "pb_c_base must be finite, got ", c.pb_c_base);
  WMFAST_CHECK_ARG(std::isfinite(c.dirichlet_alpha), "dirichlet_alpha must be finite, got ",
                   c.dirichlet_alpha);
  WMFAST_CHECK_ARG(std::isfinite(c.gumbel_scale), "gumbel_scale must be finite, got ",
                   c.gumbel_scale);
  WMFAST_CHECK_ARG(c.qtransform != QTransform::kMinMax ||
                       (std::isfinite(c.min_value) && std::isfinite(c.max_value) &&
                        std::isfinite(c.max_value - c.min_value) &&
                        c.max_value - c.min_value >= kMinEpsilon),
                   "qtransform bounds: min_value and max_value must be finite (float32) with "
                   "max_value - min_value in [", kMinEpsilon, ", 3.4e38], got min_value=",
                   c.min_value, " max_value=", c.max_value);
  // Gumbel's completed Q is scaled by (maxvisit_init + max visits) * value_scale and added to
  // logits: bounded so that the sum stays finite.
  WMFAST_CHECK_ARG(std::isfinite(c.maxvisit_init) && c.maxvisit_init >= 0.0f,
                   "maxvisit_init must be a finite number >= 0, got ", c.maxvisit_init);
  WMFAST_CHECK_ARG(std::isfinite(c.value_scale) && c.value_scale >= 0.0f,
                   "value_scale must be a finite number >= 0, got ", c.value_scale);
  WMFAST_CHECK_ARG(!c.gumbel || (static_cast<double>(c.maxvisit_init) + c.num_simulations) *
                                        c.value_scale <= 1e30,
                   "value_scale: (maxvisit_init + num_simulations) * value_scale must be <= 1e30 "
                   "(it scales the completed Q added to logits), got (", c.maxvisit_init, " + ",
                   c.num_simulations, ") * ", c.value_scale);
  WMFAST_CHECK_ARG(c.dirichlet_fraction >= 0.0f && c.dirichlet_fraction <= 1.0f,
                   "dirichlet_fraction must be in [0, 1], got ", c.dirichlet_fraction);
  WMFAST_CHECK_ARG(c.dirichlet_fraction == 0.0f || c.dirichlet_alpha > 0.0f,
                   "dirichlet_alpha must be > 0, got ", c.dirichlet_alpha);
  WMFAST_CHECK_ARG(c.temperature >= 0.0f && std::isfinite(c.temperature),
                   "temperature must be a finite number >= 0, got ", c.temperature);
  WMFAST_CHECK_ARG(c.qtransform != QTransform::kMinMax || c.max_value > c.min_value,
                   "qtransform bounds: max_value must exceed min_value, got min_value=",
                   c.min_value, " max_value=", c.max_value);
  WMFAST_CHECK_ARG(c.max_num_considered_actions >= 1, "max_num_considered_actions must be >= 1, got ",
                   c.max_num_considered_actions);
  WMFAST_CHECK_ARG(c.gumbel_scale >= 0.0f, "gumbel_scale must be >= 0, got ", c.gumbel_scale);
  WMFAST_CHECK_ARG(c.num_threads >= 1, "num_threads must be >= 1, got ", c.num_threads);
  WMFAST_CHECK_ARG(!c.gumbel || c.qtransform == QTransform::kCompletedByMixValue,
                   "qtransform: Gumbel MuZero uses the completed-by-mix-value transform");
  WMFAST_CHECK_ARG(c.gumbel || c.qtransform != QTransform::kCompletedByMixValue,
                   "qtransform: the completed-by-mix-value transform is for Gumbel MuZero");
}

Search::Search(const SearchConfig& config, int64_t batch_size, int64_t num_nodes,
               uint64_t stream)
    : Search(config, batch_size, num_nodes, stream, config.num_actions) {}

Search::Search(const SearchConfig& config, int64_t batch_size, int64_t num_nodes,
               uint64_t stream, int tree_width)
    : config_(config),
      tree_(batch_size, num_nodes, std::max(tree_width, config.num_actions)),
      stream_(stream),
      first_new_(batch_size, 1),
      num_considered_(batch_size, 0),
      gumbel_(config.gumbel ? batch_size * config.num_actions : 0, 0.0f),
      running_min_(batch_size, kInf),
      running_max_(batch_size, -kInf),
      root_score_offset_(batch_size * config.num_actions, 0.0f),
      interior_score_offset_(config.num_actions, 0.0f),
      leaf_parent_(batch_size),
      leaf_action_(batch_size),
      leaf_node_(batch_size),
      source_slots_(batch_size),
      actions_(batch_size),
      target_slots_(batch_size),
      out_rewards_(batch_size),
      out_discounts_(batch_size),
      out_values_(batch_size),
      out_logits_(batch_size * config.num_actions),
      action_(batch_size, 0),
      visit_counts_(batch_size * config.num_actions, 0),
      policy_(batch_size * config.num_actions, 0.0f),
      root_value_(batch_size, 0.0f),
      q_values_(batch_size * config.num_actions, 0.0f) {
  ValidateConfig(config_);
  WMFAST_CHECK_ARG(batch_size >= 1, "the batch must hold at least one root, got ", batch_size);
  if (config_.gumbel) {
    considered_table_ =
        ConsideredVisitTable(config_.max_num_considered_actions, config_.num_simulations);
  } else {
    // A log and a square root per selection step were ~7% of a small model's search.
    explore_.resize(num_nodes + 1);
    for (int32_t n = 0; n <= num_nodes; ++n) {
      explore_[n] = ExploreFactor(config_.pb_c_init, config_.pb_c_base, n);
    }
  }
}

void Search::SetupRoot(int64_t b, const float* logits, float value, const uint8_t* invalid,
                       const float* gumbel) {
  const int A = config_.num_actions;
  const int64_t root = tree_.Node(b, kRootIndex);
  int num_legal = A;
  if (invalid != nullptr) {
    num_legal = 0;
    for (int a = 0; a < A; ++a) {
      tree_.root_invalid_actions[b * A + a] = invalid[a] ? 1 : 0;
      root_score_offset_[b * A + a] = invalid[a] ? -kInf : 0.0f;
      num_legal += invalid[a] ? 0 : 1;
    }
  }
  Rng rng(config_.seed, 2 * stream_, static_cast<uint64_t>(b));
  float* row = tree_.prior_logits(root);
  float* priors = tree_.priors(root);
  std::copy(logits, logits + A, row);
  if (!config_.gumbel && config_.dirichlet_fraction > 0.0f) {
    // AlphaZero root noise: (1 - f) * softmax(logits) + f * Dirichlet(alpha) over legal actions.
    Softmax(row, A, priors);
    double total = 0.0;
    std::vector<double> noise(A, 0.0);
    for (int a = 0; a < A; ++a) {
      if (invalid == nullptr || !invalid[a]) total += noise[a] = rng.Gamma(config_.dirichlet_alpha);
    }
    const float f = config_.dirichlet_fraction;
    for (int a = 0; a < A; ++a) {
      const float mixed =
          (1.0f - f) * priors[a] + f * static_cast<float>(total > 0.0 ? noise[a] / total : 0.0);
      row[a] = std::log(std::max(mixed, FLT_MIN));
    }
  }
  if (invalid != nullptr) {
    // Relative to the largest legal logit; legal actions whose logits are all -inf are taken as
    // equally likely (their masked neighbours must not get the prior mass).
    float max_logit = -kInf;
    for (int a = 0; a < A; ++a) {
      if (!invalid[a]) max_logit = std::max(max_logit, row[a]);
    }
    for (int a = 0; a < A; ++a) {
      row[a] = invalid[a] ? kMaskedLogit : max_logit == -kInf ? 0.0f : row[a] - max_logit;
    }
  }
  Softmax(row, A, priors);
  tree_.priors_ready(root) = 1;
  tree_.raw_value(root) = value;
  if (config_.gumbel) {
    for (int a = 0; a < A; ++a) {
      gumbel_[b * A + a] = gumbel != nullptr
                               ? gumbel[a]
                               : config_.gumbel_scale * static_cast<float>(rng.Gumbel());
    }
    num_considered_[b] = std::min(config_.max_num_considered_actions, num_legal);
  }
}

void Search::CheckRootInput(const RootInput& root) const {
  const int64_t B = tree_.batch_size, A = config_.num_actions;
  using model::NameBy;
  if (root.logits != nullptr) {
    model::CheckFiniteRows(root.logits, B, A, "root.logits", /*allow_minus_inf=*/true,
                           NameBy::kEntry);
  }
  if (root.values != nullptr) {
    model::CheckFiniteRows(root.values, B, 0, "root.value", false, NameBy::kEntry);
  }
  if (root.gumbel != nullptr) {
    model::CheckFiniteRows(root.gumbel, B, A, "gumbel", false, NameBy::kEntry);
  }
  if (root.invalid != nullptr) {
    // Checked here, in order, so the error names the first such tree whatever the threads do.
    for (int64_t b = 0; b < B; ++b) {
      const uint8_t* invalid = root.invalid + b * A;
      WMFAST_CHECK_ARG(std::find(invalid, invalid + A, 0) != invalid + A,
                       "legal_actions: every action is illegal at the root of tree ", b,
                       " (batch index); at least one action must be legal");
    }
  }
}

void Search::InitFromRoots(const RootInput& root) {
  const int A = config_.num_actions;
  WMFAST_CHECK_ARG(root.logits != nullptr && root.values != nullptr,
                   "a fresh search needs root logits and values");
  CheckRootInput(root);
  // Root noise costs microseconds per tree: the search's threads share the roots.
  Pool().ParallelFor(tree_.batch_size, [&](int, int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t node = tree_.Node(b, kRootIndex);
      tree_.Create(node);
      SetupRoot(b, root.logits + b * A, root.values[b],
                root.invalid != nullptr ? root.invalid + b * A : nullptr,
                root.gumbel != nullptr ? root.gumbel + b * A : nullptr);
      tree_.node_visits(node) = 1;
      tree_.node_value(node) = tree_.raw_value(node);
      first_new_[b] = 1;
    }
  });
}

int64_t Search::NodesForReuse(const Search& previous, const int64_t* actions_taken,
                              int num_simulations) {
  const Tree& old = previous.tree_;
  std::vector<int32_t> new_roots(old.batch_size);
  for (int64_t b = 0; b < old.batch_size; ++b) {
    const int64_t a = actions_taken[b];
    WMFAST_CHECK_ARG(a >= kStartAfresh && a < previous.config_.num_actions, "action_taken[", b,
                     "] must be in [0, ", previous.config_.num_actions, ") or ", kStartAfresh,
                     " (start the tree afresh), got ", a);
    new_roots[b] = a == kStartAfresh ? kUnvisited : old.children(old.Node(b, kRootIndex))[a];
  }
  return SubtreeCapacity(old, new_roots, num_simulations);
}

void Search::InitFromPrevious(const Search& previous, const int64_t* actions_taken,
                              const RootInput& root, std::vector<int64_t>* slot_map) {
  const Tree& old = previous.tree_;
  WMFAST_CHECK_ARG(previous.config_.num_actions == config_.num_actions,
                   "reuse: the previous search had ", previous.config_.num_actions,
                   " actions, this one has ", config_.num_actions);
  WMFAST_CHECK_ARG(old.batch_size == tree_.batch_size, "reuse: the previous search had ",
                   old.batch_size, " trees, this one has ", tree_.batch_size);
  std::vector<int32_t> new_roots(tree_.batch_size);
  for (int64_t b = 0; b < tree_.batch_size; ++b) {
    const int64_t a = actions_taken[b];
    new_roots[b] = a == kStartAfresh ? kUnvisited : old.children(old.Node(b, kRootIndex))[a];
  }
  InitFromNodes(previous, new_roots, root, slot_map, [&](int64_t b) {
    if (actions_taken[b] == kStartAfresh) {
      return StrCat("action_taken[", b, "] is ", kStartAfresh,
                    " (start afresh), which needs a root to start from");
    }
    return StrCat("action_taken: action ", actions_taken[b],
                  " was never expanded at the root of tree ", b,
                  " in the previous search, so there is no subtree to continue from; "
                  "pass a root to start that tree afresh");
  });
}

void Search::InitFromNodes(const Search& previous, const std::vector<int32_t>& new_roots,
                           const RootInput& root, std::vector<int64_t>* slot_map,
                           const std::function<std::string(int64_t)>& unexpanded) {
  const bool has_root = root.logits != nullptr;
  const Tree& old = previous.tree_;
  const int A = config_.num_actions;
  const int E = tree_.num_actions;  // edges per record (A, or max(A, C) with chance nodes)
  CheckRootInput(root);
  WMFAST_CHECK_ARG(old.num_actions == E && old.batch_size == tree_.batch_size,
                   "reuse: the previous search's trees differ from this one's");
  slot_map->assign(tree_.batch_size * tree_.num_nodes, -1);
  std::vector<int32_t> old_to_new;  // NumberSubtree sizes it
  std::vector<float> root_logits(A);
  for (int64_t b = 0; b < tree_.batch_size; ++b) {
    const int32_t child = new_roots[b];
    const uint8_t* invalid = root.invalid != nullptr ? root.invalid + b * A : nullptr;
    const float* gumbel = root.gumbel != nullptr ? root.gumbel + b * A : nullptr;
    if (child == kUnvisited) {
      if (!has_root) throw std::invalid_argument(unexpanded(b));
      const int64_t node = tree_.Node(b, kRootIndex);
      tree_.Create(node);
      SetupRoot(b, root.logits + b * A, root.values[b], invalid, gumbel);
      tree_.node_visits(node) = 1;
      tree_.node_value(node) = tree_.raw_value(node);
      first_new_[b] = 1;
      continue;
    }
    // The subtree of an action that is now illegal is dropped.
    const int32_t next = NumberSubtree(
        old, b, child, [&](int32_t a) { return invalid != nullptr && invalid[a]; }, &old_to_new);
    for (int64_t n = child; n < old.num_nodes; ++n) {
      const int32_t k = old_to_new[n];
      if (k < 0) continue;
      const int64_t dst = tree_.Node(b, k);
      tree_.CopyNode(dst, old, old.Node(b, n));
      tree_.parent(dst) = k == 0 ? kNoParent : old_to_new[tree_.parent(dst)];
      if (k == 0) tree_.action_from_parent(dst) = kNoParent;
      int32_t* children = tree_.children(dst);
      for (int a = 0; a < E; ++a) {
        if (children[a] == kUnvisited || old_to_new[children[a]] >= 0) {
          if (children[a] != kUnvisited) children[a] = old_to_new[children[a]];
          continue;
        }
        // A dropped subtree: the edge becomes unexpanded (its prior stays).
        children[a] = kUnvisited;
        tree_.visits(dst)[a] = 0;
        tree_.q(dst)[a] = 0.0f;
      }
      (*slot_map)[Slot(b, k)] = previous.Slot(b, n);
    }
    first_new_[b] = next;
    const int64_t new_root = tree_.Node(b, kRootIndex);
    std::copy_n(tree_.prior_logits(new_root), A, root_logits.begin());
    if (has_root) {
      SetupRoot(b, root.logits + b * A, root.values[b], invalid, gumbel);
    } else {
      SetupRoot(b, root_logits.data(), old.raw_value(old.Node(b, child)), invalid, gumbel);
    }
    RecomputeRoot(b);
    if (config_.qtransform == QTransform::kRunningMinMax) {
      for (int64_t n = 0; n < next; ++n) {
        const int64_t id = tree_.Node(b, n);
        for (int a = 0; a < E; ++a) {
          if (tree_.visits(id)[a] == 0) continue;
          running_min_[b] = std::min(running_min_[b], tree_.q(id)[a]);
          running_max_[b] = std::max(running_max_[b], tree_.q(id)[a]);
        }
      }
    }
  }
}

void Search::RecomputeRoot(int64_t b) {
  const int A = config_.num_actions;
  const int64_t node = tree_.Node(b, kRootIndex);
  int32_t visits = 1;
  double sum = tree_.raw_value(node);
  for (int a = 0; a < A; ++a) {
    const int32_t n = tree_.visits(node)[a];
    if (n == 0) continue;
    visits += n;
    sum += n * static_cast<double>(tree_.q(node)[a]);
  }
  tree_.node_visits(node) = visits;
  tree_.node_value(node) = static_cast<float>(sum / visits);
}

int Search::SelectPuct(int64_t b, int64_t node, bool at_root) const {
  const int A = config_.num_actions;
  const int64_t id = tree_.Node(b, node);
  const int32_t* visits = tree_.visits(id);
  const float* priors = tree_.priors(id);
  const float* qs = tree_.q(id);
  const int32_t node_visits = tree_.node_visits(id);
  const float explore = node_visits < static_cast<int64_t>(explore_.size())
                            ? explore_[node_visits]
                            : ExploreFactor(config_.pb_c_init, config_.pb_c_base, node_visits);

  // Q normalisation: value_score = (q - lo) * scale for visited actions, 0 for the others
  // (the running min-max transform leaves Q as it is until two distinct values were seen).
  float lo = 0.0f;
  Normaliser norm;
  switch (config_.qtransform) {
    case QTransform::kParentAndSiblings: {
      const float node_value = tree_.node_value(id);
      float hi = node_value;
      lo = node_value;
#pragma omp simd reduction(min : lo) reduction(max : hi)
      for (int a = 0; a < A; ++a) {
        const int32_t visits_a = visits[a];  // plain loads, then a select: vectorised
        const float q_a = qs[a];
        const float q = visits_a > 0 ? q_a : node_value;  // unvisited: no effect
        lo = std::min(lo, q);
        hi = std::max(hi, q);
      }
      norm = Normaliser(lo, hi, config_.epsilon);
      break;
    }
    case QTransform::kMinMax:
      norm = Normaliser(config_.min_value, config_.max_value, config_.epsilon);
      break;
    case QTransform::kRunningMinMax:
      if (running_max_[b] > running_min_[b]) {
        norm = Normaliser(running_min_[b], running_max_[b], config_.epsilon);
      }
      break;
    case QTransform::kCompletedByMixValue:
      break;  // rejected by ValidateConfig
  }
  // Illegal root actions score -inf (every score of a legal action is finite): an offset added
  // inside the vectorised loop, not a scalar masking pass after it.
  const float* offset = at_root ? &root_score_offset_[b * A] : interior_score_offset_.data();
  // Scores of a chunk of actions and their maximum in a vectorised loop, then the first action
  // reaching it.
  const float k = norm.k, lo_k = norm.lo_k, scale = norm.scale;
  const float unvisited = lo_k;  // an unvisited action's value scores 0
  constexpr int kChunk = 64;
  float score[kChunk];
  int best = -1;
  float best_score = -kInf;
  for (int begin = 0; begin < A; begin += kChunk) {
    const int n = std::min(kChunk, A - begin);
    const int32_t* v = visits + begin;
    const float* q = qs + begin;
    const float* p = priors + begin;
    const float* o = offset + begin;
    float chunk_max = -kInf;
#pragma omp simd reduction(max : chunk_max)
    for (int a = 0; a < n; ++a) {
      // Unvisited actions score (lo - lo) * scale = 0 for their value: a select of loads, which
      // the compiler vectorises, where a conditional product stayed a branch.
      const int32_t visits_a = v[a];
      const float q_a = q[a];
      const float value_score = ((visits_a > 0 ? q_a * k : unvisited) - lo_k) * scale;
      score[a] = value_score + explore * p[a] / static_cast<float>(visits_a + 1) + o[a];
      chunk_max = std::max(chunk_max, score[a]);
    }
    if (chunk_max == -kInf || (best >= 0 && !(chunk_max > best_score))) continue;
    for (int a = 0; a < n; ++a) {
      if (score[a] == chunk_max) {
        best = begin + a;
        best_score = chunk_max;
        break;
      }
    }
  }
  if (best < 0) {
    // No score above -inf (only NaN: every input is checked finite, so this is a safeguard):
    // selection stays total, taking the first legal action.
    best = 0;
    while (best < A - 1 && offset[best] != 0.0f) ++best;
  }
  return best;
}

void Search::CompletedQ(int64_t b, int64_t node, float* out) const {
  const int A = config_.num_actions;
  const int64_t id = tree_.Node(b, node);
  const int32_t* visits = tree_.visits(id);
  const float* qs = tree_.q(id);
  const float* priors = tree_.priors(id);
  float value = tree_.raw_value(id);
  int32_t max_visit = 0;
  if (config_.use_mixed_value) {
    // Appendix D of the Gumbel MuZero paper: mix the raw value with the prior-weighted Q.
    float sum_visits = 0.0f, sum_probs = 0.0f;
    for (int a = 0; a < A; ++a) {
      if (visits[a] > 0) {
        sum_visits += static_cast<float>(visits[a]);
        sum_probs += std::max(FLT_MIN, priors[a]);
      }
    }
    float weighted_q = 0.0f;
    for (int a = 0; a < A; ++a) {
      if (visits[a] > 0) {
        weighted_q +=
            std::max(FLT_MIN, priors[a]) * qs[a] / sum_probs;
      }
    }
    const float mixed = (value + sum_visits * weighted_q) / (sum_visits + 1.0f);
    if (std::isfinite(mixed)) {
      value = mixed;
    } else {
      // Values near float32's limit overflow the float sums: the same mix in double (a mean of
      // finite values, so finite again).
      double sum_p = 0.0, weighted = 0.0;
      for (int a = 0; a < A; ++a) {
        if (visits[a] > 0) sum_p += std::max(FLT_MIN, priors[a]);
      }
      for (int a = 0; a < A; ++a) {
        if (visits[a] > 0) weighted += std::max(FLT_MIN, priors[a]) / sum_p * qs[a];
      }
      value = static_cast<float>((tree_.raw_value(id) + sum_visits * weighted) /
                                 (static_cast<double>(sum_visits) + 1.0));
    }
  }
  float lo = kInf, hi = -kInf;
  for (int a = 0; a < A; ++a) {
    out[a] = visits[a] > 0 ? qs[a] : value;
    lo = std::min(lo, out[a]);
    hi = std::max(hi, out[a]);
    max_visit = std::max(max_visit, visits[a]);
  }
  const float visit_scale =
      (config_.maxvisit_init + static_cast<float>(max_visit)) * config_.value_scale;
  if (config_.rescale_values) {
    const Normaliser norm(lo, hi, config_.epsilon);
    for (int a = 0; a < A; ++a) out[a] = visit_scale * norm(out[a]);
  } else {
    // Unscaled Q near float32's limit: clamped, so that adding logits never makes NaN.
    for (int a = 0; a < A; ++a) out[a] = std::clamp(visit_scale * out[a], -FLT_MAX, FLT_MAX);
  }
}

// score_considered of mctx's seq_halving.py, masked by the root's legal actions.
static int ArgmaxConsidered(const float* gumbel, const float* logits, const float* completed_q,
                            const int32_t* visits, int considered_visit, const uint8_t* invalid,
                            int A) {
  float max_logit = logits[0];
  for (int a = 1; a < A; ++a) max_logit = std::max(max_logit, logits[a]);
  // Total: a legal action always comes back (NaN scores count as -1e9; if no legal action has
  // the considered visit count, the first legal one with the best score).
  int best = -1;
  float best_score = -kInf;
  for (int a = 0; a < A; ++a) {
    if (invalid[a]) continue;
    float score = std::max(-1e9f, gumbel[a] + (logits[a] - max_logit) + completed_q[a]);
    if (visits[a] != considered_visit) score = -kInf;
    if (best < 0 || score > best_score) {
      best = a;
      best_score = score;
    }
  }
  return best < 0 ? 0 : best;
}

int Search::SelectGumbelRoot(int64_t b, int sim_index) const {
  // Scratch lives on the stack for common action counts.
  const int A = config_.num_actions;
  std::vector<float> heap;
  float stack[256];
  float* completed = A <= 256 ? stack : (heap.resize(A), heap.data());
  CompletedQ(b, kRootIndex, completed);
  const int64_t root = tree_.Node(b, kRootIndex);
  const auto& row = considered_table_[num_considered_[b]];
  const int considered_visit = row[std::min<int64_t>(sim_index, row.size() - 1)];
  return ArgmaxConsidered(&gumbel_[b * A], tree_.prior_logits(root), completed,
                          tree_.visits(root), considered_visit,
                          &tree_.root_invalid_actions[b * A], A);
}

int Search::SelectGumbelInterior(int64_t b, int64_t node) const {
  const int A = config_.num_actions;
  std::vector<float> heap;
  float stack[512];
  float* scratch = A <= 256 ? stack : (heap.resize(2 * A), heap.data());
  float* completed = scratch;
  float* probs = scratch + A;
  CompletedQ(b, node, completed);
  const int64_t id = tree_.Node(b, node);
  const float* logits = tree_.prior_logits(id);
  const int32_t* visits = tree_.visits(id);
  int32_t total = 0;
  for (int a = 0; a < A; ++a) {
    completed[a] += logits[a];
    total += visits[a];
  }
  Softmax(completed, A, probs);
  // Section 5 of the paper: visit frequencies approach the improved policy.
  const float denom = 1.0f + static_cast<float>(total);
  for (int a = 0; a < A; ++a) probs[a] -= static_cast<float>(visits[a]) / denom;
  return Argmax(probs, A);
}

void Search::EnsurePriors(int64_t b, int64_t node) {
  const int64_t id = tree_.Node(b, node);
  if (tree_.priors_ready(id)) return;
  Softmax(tree_.prior_logits(id), config_.num_actions, tree_.priors(id));
  tree_.priors_ready(id) = 1;
}

Search::Results Search::TakeResults() {
  Results r;
  r.action = std::move(action_);
  r.visit_counts = std::move(visit_counts_);
  r.policy = std::move(policy_);
  r.root_value = std::move(root_value_);
  r.q_values = std::move(q_values_);
  r.gumbel = std::move(gumbel_);
  action_.clear();
  visit_counts_.clear();
  policy_.clear();
  root_value_.clear();
  q_values_.clear();
  gumbel_.clear();
  return r;
}

void Search::CompleteForInspection() {
  tree_.CreateUnused();
  tree_.DeriveEdgeFields();
  for (int64_t b = 0; b < tree_.batch_size; ++b) {
    for (int64_t n = 0; n < tree_.num_nodes; ++n) {
      if (tree_.node_visits(tree_.Node(b, n)) > 0) EnsurePriors(b, n);
    }
  }
}

bool Search::SelectStep(int64_t b, int sim, Descent& d) {
  EnsurePriors(b, d.node);
  int action;
  if (d.depth == 0) {
    int32_t sim_index = 0;
    if (config_.gumbel) {
      const int32_t* visits = tree_.visits(tree_.Node(b, kRootIndex));
      for (int a = 0; a < config_.num_actions; ++a) sim_index += visits[a];
    }
    action = config_.gumbel ? SelectGumbelRoot(b, sim_index) : SelectPuct(b, d.node, true);
  } else {
    action = config_.gumbel ? SelectGumbelInterior(b, d.node) : SelectPuct(b, d.node, false);
  }
  const int32_t child = tree_.children(tree_.Node(b, d.node))[action];
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
  source_slots_[b] = Slot(b, d.node);
  actions_[b] = action;
  target_slots_[b] = Slot(b, leaf_node_[b]);
  return true;
}

void Search::ExpandAndBackup(int64_t b) {
  const int A = config_.num_actions;
  const int32_t parent = leaf_parent_[b], action = leaf_action_[b], leaf = leaf_node_[b];
  const int64_t node = tree_.Node(b, leaf);
  // A leaf at max_depth already exists: mctx re-evaluates it in place.
  if (!tree_.created(node)) tree_.Create(node);
  std::copy_n(&out_logits_[b * A], A, tree_.prior_logits(node));
  tree_.priors_ready(node) = 0;  // the softmax waits until the search descends from here
  tree_.raw_value(node) = out_values_[b];
  tree_.node_value(node) = out_values_[b];
  tree_.node_visits(node) += 1;
  tree_.parent(node) = parent;
  tree_.action_from_parent(node) = action;
  tree_.reward(node) = out_rewards_[b];
  tree_.discount(node) = out_discounts_[b] * config_.discount;
  tree_.children(tree_.Node(b, parent))[action] = leaf;
  Backup(b, node);
}

void Search::Backup(int64_t b, int64_t node) {
  const bool running = config_.qtransform == QTransform::kRunningMinMax;
  BackUp(tree_, b, node, running ? &running_min_[b] : nullptr,
         running ? &running_max_[b] : nullptr);
}

void Search::Finalize(int64_t b) {
  const int A = config_.num_actions;
  const int64_t root = tree_.Node(b, kRootIndex);
  const uint8_t* invalid = &tree_.root_invalid_actions[b * A];
  int32_t max_visit = 0;
  for (int a = 0; a < A; ++a) {
    const int32_t n = tree_.visits(root)[a];
    visit_counts_[b * A + a] = n;
    q_values_[b * A + a] = tree_.q(root)[a];
    max_visit = std::max(max_visit, n);
  }
  root_value_[b] = tree_.node_value(root);
  float* policy = &policy_[b * A];
  if (config_.gumbel) {
    // The completed-Q improved policy softmax(logits + sigma(completed Q)) and the action with
    // the best Gumbel score among the most visited ones.
    std::vector<float> completed(A);
    CompletedQ(b, kRootIndex, completed.data());
    const float* logits = tree_.prior_logits(root);
    action_[b] = ArgmaxConsidered(&gumbel_[b * A], logits, completed.data(), tree_.visits(root),
                                  max_visit, invalid, A);
    // Softmax over the legal actions only (illegal ones get exactly 0; legal ones all at -inf
    // share the mass equally).
    std::vector<float> legal_logits;
    legal_logits.reserve(A);
    for (int a = 0; a < A; ++a) {
      if (!invalid[a]) legal_logits.push_back(completed[a] + logits[a]);
    }
    std::vector<float> legal_policy(legal_logits.size());
    Softmax(legal_logits.data(), static_cast<int>(legal_logits.size()), legal_policy.data());
    for (int a = 0, i = 0; a < A; ++a) policy[a] = invalid[a] ? 0.0f : legal_policy[i++];
    return;
  }
  const int32_t* visits = &visit_counts_[b * A];
  VisitPolicy(visits, A, policy);
  action_[b] = ChooseByVisits(visits, A, invalid, config_.temperature,
                              Rng(config_.seed, 2 * stream_ + 1, static_cast<uint64_t>(b)));
}

void Search::Prefetch(int64_t b, bool backup) const {
  // Trees are far apart in memory and the model call in between evicts them from the caches:
  // ask for the lines the next trees will certainly touch (their root's statistics, Q, priors
  // and visits; the parent edge being backed up and the new leaf's record) while this tree is
  // worked on.
  const int A = config_.num_actions;
  tree_.PrefetchSelection(tree_.Node(b, kRootIndex));
  if (backup) {
    const int64_t parent = tree_.Node(b, leaf_parent_[b]);
    const int action = leaf_action_[b];
    tree_.PrefetchStatistics(parent);
    __builtin_prefetch(tree_.q(parent) + action, 1);
    __builtin_prefetch(tree_.visits(parent) + action, 1);
    __builtin_prefetch(tree_.children(parent) + action, 1);
    const int64_t leaf = tree_.Node(b, leaf_node_[b]);
    tree_.PrefetchStatistics(leaf);
    tree_.Prefetch(leaf, Tree::kPriorLogits, A);
  }
}

ThreadPool& Search::Pool() { return SearchPool(pool_, tree_.batch_size, config_.num_threads); }

void Search::Run(model::Evaluator& evaluator, const std::function<void()>& poll) {
  const int64_t A = config_.num_actions;
  const int threads = Pool().num_threads();
  SimulationSteps steps;
  steps.advance = [this](int64_t begin, int64_t end, int sim) { Advance(begin, end, sim); };
  steps.evaluate = [&](int64_t begin, int64_t end, ThreadPool* helpers) {
    const model::LeafBatch leaves{end - begin, source_slots_.data() + begin,
                                  actions_.data() + begin, target_slots_.data() + begin, helpers};
    const model::LeafOutputs outputs{out_rewards_.data() + begin, out_discounts_.data() + begin,
                                     out_logits_.data() + begin * A, out_values_.data() + begin};
    evaluator.Evaluate(leaves, outputs);
  };
  steps.finish = [this](int64_t begin, int64_t end) { Finish(begin, end); };
  RunSimulations(pool_, tree_.batch_size, config_.num_simulations,
                 threads > 1 && evaluator.max_concurrent_calls() >= threads, steps, poll);
}

void Search::Advance(int64_t begin, int64_t end, int sim) {
  // Backing up simulation sim - 1 and selecting for sim share one pass over the trees, a group
  // at a time. The trees of a group descend in rounds, one level each per round: each level is
  // a dependent load (a likely cache miss in a large batch), so while one tree's next node is
  // fetched the others are worked on.
  constexpr int64_t kGroup = 8;
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

void Search::Finish(int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    ExpandAndBackup(b);
    Finalize(b);
  }
}

}  // namespace wmfast::mcts
