#include "wmfast/mcts/sampled_search.h"

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

#include "wmfast/cem/noise.h"
#include "wmfast/common/check.h"
#include "wmfast/mcts/backup.h"
#include "wmfast/mcts/puct.h"
#include "wmfast/mcts/random.h"
#include "wmfast/mcts/root_results.h"
#include "wmfast/mcts/simulation_loop.h"
#include "wmfast/model/float_rows.h"

namespace wmfast::mcts {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Random streams of one search: (seed, 3 * stream + kind, index).
enum StreamKind : uint64_t { kNodeSamples = 0, kRootNoise = 1, kFinalAction = 2 };

// out = softmax(logits) over n finite entries.
void Softmax(const float* logits, int n, float* out) {
  float max_logit = -kInf;
  for (int i = 0; i < n; ++i) max_logit = std::max(max_logit, logits[i]);
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) sum += out[i] = std::exp(logits[i] - max_logit);
  for (int i = 0; i < n; ++i) out[i] /= sum;
}

}  // namespace

void ValidateSampledConfig(const SampledConfig& c) {
  WMFAST_CHECK_ARG(c.num_samples >= 1, "num_samples must be >= 1, got ", c.num_samples);
  WMFAST_CHECK_ARG(c.num_simulations >= 1, "num_simulations must be >= 1, got ",
                   c.num_simulations);
  WMFAST_CHECK_ARG((c.num_actions > 0) != (c.action_dim > 0),
                   "give either num_actions (discrete actions) or action_dim (continuous "
                   "actions), got num_actions=", c.num_actions, " action_dim=", c.action_dim);
  WMFAST_CHECK_ARG(c.num_actions >= 0 && c.action_dim >= 0,
                   "num_actions and action_dim must be >= 0, got num_actions=", c.num_actions,
                   " action_dim=", c.action_dim);
  if (c.continuous()) {
    const int D = c.action_dim;
    WMFAST_CHECK_ARG(static_cast<int>(c.action_low.size()) == D,
                     "action_low must have action_dim=", D, " entries, got ", c.action_low.size());
    WMFAST_CHECK_ARG(static_cast<int>(c.action_high.size()) == D, "action_high must have action_dim=",
                     D, " entries, got ", c.action_high.size());
    for (int d = 0; d < D; ++d) {
      WMFAST_CHECK_ARG(std::isfinite(c.action_low[d]) && std::isfinite(c.action_high[d]) &&
                           c.action_low[d] < c.action_high[d],
                       "action bounds: action_low[", d, "] < action_high[", d,
                       "] must hold with both finite, got action_low[", d, "]=", c.action_low[d],
                       " action_high[", d, "]=", c.action_high[d]);
    }
  } else {
    WMFAST_CHECK_ARG(c.num_samples <= c.num_actions, "num_samples must be <= num_actions=",
                     c.num_actions, " (discrete actions are sampled without replacement), got ",
                     c.num_samples);
  }
  WMFAST_CHECK_ARG(std::isfinite(c.pb_c_init), "pb_c_init must be finite, got ", c.pb_c_init);
  WMFAST_CHECK_ARG(std::isfinite(c.pb_c_base) && c.pb_c_base > 0.0f,
                   "pb_c_base must be a finite number > 0, got ", c.pb_c_base);
  WMFAST_CHECK_ARG(c.discount >= 0.0f && c.discount <= 1.0f,
                   "discount must be in [0, 1] (a two-player game's sign flip is the model's "
                   "Step.discount = -1), got ", c.discount);
  WMFAST_CHECK_ARG(c.max_depth >= 0, "max_depth must be >= 0 (0: unlimited), got ", c.max_depth);
  WMFAST_CHECK_ARG(std::isfinite(c.epsilon) && c.epsilon >= kMinEpsilon,
                   "epsilon must be a finite number >= ", kMinEpsilon, ", got ", c.epsilon);
  WMFAST_CHECK_ARG(c.qtransform != QTransform::kCompletedByMixValue,
                   "qtransform: the completed-by-mix-value transform is for Gumbel MuZero");
  WMFAST_CHECK_ARG(c.qtransform != QTransform::kMinMax ||
                       (std::isfinite(c.min_value) && std::isfinite(c.max_value) &&
                        std::isfinite(c.max_value - c.min_value) &&
                        c.max_value - c.min_value >= kMinEpsilon),
                   "qtransform bounds: min_value and max_value must be finite with max_value - "
                   "min_value >= ", kMinEpsilon, ", got min_value=", c.min_value,
                   " max_value=", c.max_value);
  WMFAST_CHECK_ARG(c.dirichlet_fraction >= 0.0f && c.dirichlet_fraction <= 1.0f,
                   "dirichlet_fraction must be in [0, 1], got ", c.dirichlet_fraction);
  WMFAST_CHECK_ARG(c.dirichlet_fraction == 0.0f ||
                       (std::isfinite(c.dirichlet_alpha) && c.dirichlet_alpha > 0.0f),
                   "dirichlet_alpha must be a finite number > 0, got ", c.dirichlet_alpha);
  WMFAST_CHECK_ARG(std::isfinite(c.temperature) && c.temperature >= 0.0f,
                   "temperature must be a finite number >= 0, got ", c.temperature);
  WMFAST_CHECK_ARG(c.num_threads >= 1, "num_threads must be >= 1, got ", c.num_threads);
}

SampledSearch::SampledSearch(const SampledConfig& config, int64_t batch_size, uint64_t stream,
                             int64_t num_nodes)
    : config_(config),
      tree_(batch_size, num_nodes > 0 ? num_nodes : config.num_simulations + 1,
            config.num_samples),
      stream_(stream),
      P_(config.policy_width()) {
  ValidateSampledConfig(config_);
  WMFAST_CHECK_ARG(batch_size >= 1, "the batch must hold at least one root, got ", batch_size);
  const int64_t B = batch_size, N = tree_.num_nodes, K = config_.num_samples;
  const int64_t D = config_.action_dim;
  explore_.resize(N + 1);
  for (int32_t n = 0; n <= N; ++n) {
    explore_[n] = ExploreFactor(config_.pb_c_init, config_.pb_c_base, n);
  }
  policy_.resize(B * N * P_);
  if (config_.continuous()) {
    samples_.resize(B * N * K * D);
  } else {
    sample_indices_.resize(B * N * K);
  }
  num_children_.assign(B * N, 0);
  first_new_.assign(B, 1);
  running_min_.assign(B, kInf);
  running_max_.assign(B, -kInf);
  leaf_parent_.resize(B);
  leaf_edge_.resize(B);
  leaf_node_.resize(B);
  source_slots_.resize(B);
  actions_.resize(B);
  target_slots_.resize(B);
  float_actions_.resize(B * D);
  out_rewards_.resize(B);
  out_discounts_.resize(B);
  out_values_.resize(B);
  out_policy_.resize(B * P_);
}

void SampledSearch::CheckRootInput(const SampledRootInput& root, bool need_policy) {
  const int64_t B = tree_.batch_size;
  const int A = config_.num_actions;
  WMFAST_CHECK_ARG(!need_policy || (root.policy != nullptr && root.values != nullptr),
                   "a search needs root logits and values");
  WMFAST_CHECK_ARG((root.policy == nullptr) == (root.values == nullptr),
                   "root logits and values go together");
  using model::NameBy;
  if (root.policy != nullptr) {
    // Continuous policies (mean, log_std) must be finite; discrete logits may be -inf.
    model::CheckFiniteRows(root.policy, B, P_, "root.logits",
                           /*allow_minus_inf=*/!config_.continuous(), NameBy::kEntry);
    model::CheckFiniteRows(root.values, B, 0, "root.value", false, NameBy::kEntry);
  }
  if (!config_.continuous()) {
    root_invalid_.assign(B * A, 0);
    if (root.invalid != nullptr) {
      std::copy_n(root.invalid, B * A, root_invalid_.begin());
      for (int64_t b = 0; b < B; ++b) {
        const uint8_t* invalid = root.invalid + b * A;
        WMFAST_CHECK_ARG(std::find(invalid, invalid + A, 0) != invalid + A,
                         "legal_actions: every action is illegal at the root of tree ", b,
                         " (batch index); at least one action must be legal");
      }
    }
    WMFAST_CHECK_ARG(root.actions == nullptr, "root_actions: discrete actions are indices");
  } else {
    WMFAST_CHECK_ARG(root.invalid == nullptr,
                     "legal_actions: continuous actions have no legal-action mask");
    WMFAST_CHECK_ARG(root.action_indices == nullptr,
                     "root_actions: continuous actions are [B, K, action_dim] floats");
  }
}

void SampledSearch::InitFromRoots(const SampledRootInput& root) {
  const int64_t B = tree_.batch_size, K = config_.num_samples, D = config_.action_dim;
  const int A = config_.num_actions;
  CheckRootInput(root, /*need_policy=*/true);
  // Fixed root samples are checked before anything is written.
  if (root.actions != nullptr) {
    for (int64_t i = 0; i < B * K * D; ++i) {
      const int d = static_cast<int>(i % D);
      const float x = root.actions[i];
      WMFAST_CHECK_ARG(x >= config_.action_low[d] && x <= config_.action_high[d],
                       "root_actions[", i / (K * D), ", ", (i / D) % K, ", ", d, "] = ", x,
                       " is outside the action bounds [", config_.action_low[d], ", ",
                       config_.action_high[d], "] (or not finite)");
    }
  }
  if (root.action_indices != nullptr) {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t* row = root.action_indices + b * K;
      for (int64_t k = 0; k < K; ++k) {
        WMFAST_CHECK_ARG(row[k] >= 0 && row[k] < A, "root_actions[", b, ", ", k,
                         "] must be in [0, ", A, "), got ", row[k]);
        WMFAST_CHECK_ARG(!root_invalid_[b * A + row[k]], "root_actions[", b, ", ", k, "] = ",
                         row[k], " is illegal (legal_actions)");
        WMFAST_CHECK_ARG(std::find(row, row + k, row[k]) == row + k, "root_actions[", b,
                         "] holds action ", row[k], " twice; the K root samples must be distinct");
      }
    }
  }
  for (int64_t b = 0; b < B; ++b) {
    const int64_t id = tree_.Node(b, kRootIndex);
    tree_.Create(id);
    std::copy_n(root.policy + b * P_, P_, &policy_[id * P_]);
    tree_.raw_value(id) = root.values[b];
    tree_.node_value(id) = root.values[b];
    tree_.node_visits(id) = 1;
    if (root.actions != nullptr || root.action_indices != nullptr) {
      // Given samples: priors as for drawn ones (uniform, or the logits renormalised).
      float* logits = tree_.prior_logits(id);
      if (root.actions != nullptr) {
        std::copy_n(root.actions + b * K * D, K * D, &samples_[id * K * D]);
        std::fill_n(logits, K, 0.0f);
      } else {
        std::copy_n(root.action_indices + b * K, K, &sample_indices_[id * K]);
        const float* policy = &policy_[id * P_];
        float max_logit = -kInf;
        for (int64_t k = 0; k < K; ++k) max_logit = std::max(max_logit, policy[root.action_indices[b * K + k]]);
        for (int64_t k = 0; k < K; ++k) {
          const float x = policy[root.action_indices[b * K + k]];
          logits[k] = max_logit == -kInf ? 0.0f : x;  // all -inf: equally likely
        }
      }
      num_children_[id] = static_cast<int32_t>(K);
      // -inf logits among given samples get no prior mass (but stay selectable).
      float max_logit = -kInf;
      for (int64_t k = 0; k < K; ++k) max_logit = std::max(max_logit, logits[k]);
      float sum = 0.0f;
      for (int64_t k = 0; k < K; ++k) sum += tree_.priors(id)[k] = std::exp(logits[k] - max_logit);
      for (int64_t k = 0; k < K; ++k) tree_.priors(id)[k] /= sum;
      tree_.priors_ready(id) = 1;
    } else {
      EnsureSampled(b, kRootIndex);
    }
    if (config_.dirichlet_fraction > 0.0f) AddRootNoise(b);
  }
}

int64_t SampledSearch::NodesForReuse(const SampledSearch& previous, const int64_t* taken,
                                     int num_simulations) {
  const Tree& old = previous.tree_;
  std::vector<int32_t> new_roots(old.batch_size, kUnvisited);
  for (int64_t b = 0; b < old.batch_size; ++b) {
    const int64_t root = old.Node(b, kRootIndex);
    const int n = previous.num_children_[root];
    WMFAST_CHECK_ARG(taken[b] >= kStartAfresh && taken[b] < n, "action_taken[", b,
                     "] must be the index of a root sample of the previous search, in [0, ", n,
                     "), or ", kStartAfresh, " (start the tree afresh), got ", taken[b]);
    if (taken[b] != kStartAfresh) new_roots[b] = old.children(root)[taken[b]];
  }
  return SubtreeCapacity(old, new_roots, num_simulations);
}

void SampledSearch::InitFromPrevious(const SampledSearch& previous, const int64_t* taken,
                                     const SampledRootInput& root,
                                     std::vector<int64_t>* slot_map) {
  const Tree& old = previous.tree_;
  const SampledConfig& pc = previous.config_;
  const int64_t B = tree_.batch_size, K = config_.num_samples, D = config_.action_dim;
  const int A = config_.num_actions;
  WMFAST_CHECK_ARG(pc.num_samples == K && pc.action_dim == D && pc.num_actions == A,
                   "reuse: the previous search had num_samples=", pc.num_samples,
                   " action_dim=", pc.action_dim, " num_actions=", pc.num_actions,
                   ", this one has num_samples=", K, " action_dim=", D, " num_actions=", A);
  WMFAST_CHECK_ARG(old.batch_size == B, "reuse: the previous search had ", old.batch_size,
                   " trees, this one has ", B);
  WMFAST_CHECK_ARG(root.actions == nullptr && root.action_indices == nullptr,
                   "root_actions cannot be combined with reuse (the kept roots have samples)");
  CheckRootInput(root, /*need_policy=*/false);
  const bool has_root = root.policy != nullptr;
  // Every tree is checked before any is built (a rejected call builds nothing).
  std::vector<int32_t> new_roots(B);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t old_root = old.Node(b, kRootIndex);
    WMFAST_CHECK_ARG(taken[b] >= kStartAfresh && taken[b] < previous.num_children_[old_root],
                     "action_taken[", b, "] must be in [0, ", previous.num_children_[old_root],
                     ") or ", kStartAfresh, ", got ", taken[b]);
    new_roots[b] = taken[b] == kStartAfresh ? kUnvisited : old.children(old_root)[taken[b]];
    if (new_roots[b] != kUnvisited || has_root) continue;
    if (taken[b] == kStartAfresh) {
      throw std::invalid_argument(StrCat("action_taken[", b, "] is ", kStartAfresh,
                                         " (start afresh), which needs a root to start from"));
    }
    throw std::invalid_argument(StrCat(
        "action_taken: root sample ", taken[b], " was never expanded in tree ", b,
        " of the previous search, so there is no subtree to continue from; pass a root to "
        "start that tree afresh"));
  }
  slot_map->assign(B * tree_.num_nodes, -1);
  std::vector<int32_t> old_to_new;  // NumberSubtree sizes it
  std::vector<int32_t> edge_map(K);
  for (int64_t b = 0; b < B; ++b) {
    const int32_t child = new_roots[b];
    const int64_t new_root = tree_.Node(b, kRootIndex);
    if (child == kUnvisited) {
      tree_.Create(new_root);
      std::copy_n(root.policy + b * P_, P_, &policy_[new_root * P_]);
      tree_.raw_value(new_root) = root.values[b];
      tree_.node_value(new_root) = root.values[b];
      tree_.node_visits(new_root) = 1;
      EnsureSampled(b, kRootIndex);
      if (config_.dirichlet_fraction > 0.0f) AddRootNoise(b);
      continue;
    }
    // The kept root samples (a sample now illegal is dropped with its subtree).
    const int64_t old_child = old.Node(b, child);
    const int n_old = previous.num_children_[old_child];
    int n_kept = 0;
    for (int k = 0; k < n_old; ++k) {
      const bool illegal = !config_.continuous() && root.invalid != nullptr &&
                           root.invalid[b * A + previous.sample_indices_[old_child * K + k]];
      edge_map[k] = illegal ? -1 : n_kept++;
    }
    const int32_t next = NumberSubtree(
        old, b, child, [&](int32_t k) { return edge_map[k] < 0; }, &old_to_new);
    for (int64_t n = child; n < old.num_nodes; ++n) {
      const int32_t k = old_to_new[n];
      if (k < 0) continue;
      const int64_t src = old.Node(b, n), dst = tree_.Node(b, k);
      tree_.CopyNode(dst, old, src);
      std::copy_n(&previous.policy_[src * P_], P_, &policy_[dst * P_]);
      num_children_[dst] = previous.num_children_[src];
      if (config_.continuous()) {
        std::copy_n(&previous.samples_[src * K * D], K * D, &samples_[dst * K * D]);
      } else {
        std::copy_n(&previous.sample_indices_[src * K], K, &sample_indices_[dst * K]);
      }
      if (k == 0) {
        tree_.parent(dst) = kNoParent;
        tree_.action_from_parent(dst) = kNoParent;
      } else {
        const int32_t old_parent = tree_.parent(dst);
        tree_.parent(dst) = old_to_new[old_parent];
        if (old_parent == child) {
          tree_.action_from_parent(dst) = edge_map[tree_.action_from_parent(dst)];
        }
      }
      int32_t* children = tree_.children(dst);
      for (int e = 0; e < K; ++e) {
        if (children[e] != kUnvisited) children[e] = old_to_new[children[e]];
      }
      (*slot_map)[Slot(b, k)] = previous.Slot(b, n);
    }
    first_new_[b] = next;
    if (n_kept < n_old) {
      // Compacts the root's edges to the kept samples.
      float* q = tree_.q(new_root);
      int32_t* visits = tree_.visits(new_root);
      int32_t* children = tree_.children(new_root);
      int64_t* indices = &sample_indices_[new_root * K];
      for (int k = 0; k < n_old; ++k) {
        const int j = edge_map[k];
        if (j < 0) continue;
        q[j] = q[k];
        visits[j] = visits[k];
        children[j] = children[k];
        indices[j] = indices[k];
      }
      for (int j = n_kept; j < K; ++j) {
        q[j] = 0.0f;
        visits[j] = 0;
        children[j] = kUnvisited;
      }
      num_children_[new_root] = n_kept;
    }
    if (has_root) {
      std::copy_n(root.policy + b * P_, P_, &policy_[new_root * P_]);
      tree_.raw_value(new_root) = root.values[b];
    }
    if (num_children_[new_root] == 0) {
      tree_.priors_ready(new_root) = 0;  // never descended from, or all dropped: draws anew
      EnsureSampled(b, kRootIndex);
    } else {
      SetSamplePriors(new_root, num_children_[new_root]);
    }
    if (config_.dirichlet_fraction > 0.0f) AddRootNoise(b);
    // The root's visits and value from its kept children (its raw value may have changed).
    int32_t visits = 1;
    double sum = tree_.raw_value(new_root);
    for (int k = 0; k < num_children_[new_root]; ++k) {
      const int32_t v = tree_.visits(new_root)[k];
      if (v == 0) continue;
      visits += v;
      sum += v * static_cast<double>(tree_.q(new_root)[k]);
    }
    tree_.node_visits(new_root) = visits;
    tree_.node_value(new_root) = static_cast<float>(sum / visits);
    if (config_.qtransform == QTransform::kRunningMinMax) {
      for (int64_t n = 0; n < next; ++n) {
        const int64_t id = tree_.Node(b, n);
        for (int k = 0; k < num_children_[id]; ++k) {
          if (tree_.visits(id)[k] == 0) continue;
          running_min_[b] = std::min(running_min_[b], tree_.q(id)[k]);
          running_max_[b] = std::max(running_max_[b], tree_.q(id)[k]);
        }
      }
    }
  }
}

void SampledSearch::DrawContinuous(int64_t b, int64_t node, float* out) const {
  const int K = config_.num_samples, D = config_.action_dim;
  const float* policy = &policy_[tree_.Node(b, node) * P_];
  // CEM's vectorised normal sampler, seeded from the node's stream: 32 draws cost about what
  // one libm Box-Muller draw in double did (those were half of a free model's search).
  Rng rng(config_.seed, 3 * stream_ + kNodeSamples, static_cast<uint64_t>(tree_.Node(b, node)));
  cem::NormalSampler sampler(rng.Next());
  thread_local std::vector<float> eps, stddev;
  eps.resize(static_cast<size_t>(K) * D);
  stddev.resize(D);
  sampler.Fill(eps.data(), static_cast<int64_t>(K) * D);
  for (int d = 0; d < D; ++d) stddev[d] = std::exp(policy[D + d]);  // may be +inf: clipped below
  for (int k = 0; k < K; ++k) {
    for (int d = 0; d < D; ++d) {
      const float e = eps[k * D + d];
      // An infinite std times a zero draw would be NaN: the draw's sign decides the bound.
      const float x = std::isinf(stddev[d]) ? (e >= 0.0f ? kInf : -kInf)
                                            : policy[d] + stddev[d] * e;
      out[k * D + d] = std::clamp(x, config_.action_low[d], config_.action_high[d]);
    }
  }
}

int SampledSearch::DrawDiscrete(int64_t b, int64_t node, const uint8_t* invalid,
                                int64_t* out) const {
  const int K = config_.num_samples, A = config_.num_actions;
  const float* logits = &policy_[tree_.Node(b, node) * P_];
  // Candidates: legal actions with a logit above -inf (all legal ones if none has).
  thread_local std::vector<std::pair<double, int>> keys;
  keys.clear();
  for (int a = 0; a < A; ++a) {
    if ((invalid == nullptr || !invalid[a]) && logits[a] > -kInf) keys.emplace_back(0.0, a);
  }
  if (keys.empty()) {
    for (int a = 0; a < A; ++a) {
      if (invalid == nullptr || !invalid[a]) keys.emplace_back(0.0, a);
    }
  }
  const int n = std::min<int>(K, static_cast<int>(keys.size()));
  if (static_cast<int>(keys.size()) > K) {
    // Gumbel-top-k: the K largest logit + Gumbel are a sample without replacement.
    Rng rng(config_.seed, 3 * stream_ + kNodeSamples, static_cast<uint64_t>(tree_.Node(b, node)));
    for (auto& key : keys) {
      key.first = (logits[key.second] > -kInf ? logits[key.second] : 0.0) + rng.Gumbel();
    }
    std::partial_sort(keys.begin(), keys.begin() + n, keys.end(),
                      [](const auto& x, const auto& y) {
                        return x.first > y.first || (x.first == y.first && x.second < y.second);
                      });
    // Ascending action order: at K = A the children are wm.MCTS's actions in its order.
    std::sort(keys.begin(), keys.begin() + n,
              [](const auto& x, const auto& y) { return x.second < y.second; });
  }
  for (int k = 0; k < n; ++k) out[k] = keys[k].second;
  return n;
}

void SampledSearch::EnsureSampled(int64_t b, int64_t node) {
  const int64_t id = tree_.Node(b, node);
  if (tree_.priors_ready(id)) return;
  const int K = config_.num_samples;
  int n = K;
  if (config_.continuous()) {
    DrawContinuous(b, node, &samples_[id * K * config_.action_dim]);
  } else {
    const uint8_t* invalid =
        node == kRootIndex ? &root_invalid_[b * config_.num_actions] : nullptr;
    n = DrawDiscrete(b, node, invalid, &sample_indices_[id * K]);
  }
  SetSamplePriors(id, n);
}

void SampledSearch::SetSamplePriors(int64_t id, int n) {
  const int K = config_.num_samples;
  float* logits = tree_.prior_logits(id);
  if (config_.continuous()) {
    std::fill_n(logits, n, 0.0f);  // beta-hat of K draws from pi: 1/K each
  } else {
    int64_t* chosen = &sample_indices_[id * K];
    const float* policy = &policy_[id * P_];
    bool any_finite = false;
    for (int k = 0; k < n; ++k) any_finite |= policy[chosen[k]] > -kInf;
    // pi restricted to the sample and renormalised (all -inf: equally likely).
    for (int k = 0; k < n; ++k) logits[k] = any_finite ? policy[chosen[k]] : 0.0f;
    for (int k = n; k < K; ++k) chosen[k] = -1;
  }
  for (int k = n; k < K; ++k) logits[k] = -kInf;
  Softmax(logits, n, tree_.priors(id));
  for (int k = n; k < K; ++k) tree_.priors(id)[k] = 0.0f;
  num_children_[id] = n;
  tree_.priors_ready(id) = 1;
}

void SampledSearch::AddRootNoise(int64_t b) {
  const int64_t id = tree_.Node(b, kRootIndex);
  const int n = num_children_[id];
  Rng rng(config_.seed, 3 * stream_ + kRootNoise, static_cast<uint64_t>(b));
  std::vector<double> noise(n);
  double total = 0.0;
  for (int k = 0; k < n; ++k) total += noise[k] = rng.Gamma(config_.dirichlet_alpha);
  const float f = config_.dirichlet_fraction;
  float* priors = tree_.priors(id);
  for (int k = 0; k < n; ++k) {
    priors[k] = (1.0f - f) * priors[k] + f * static_cast<float>(total > 0.0 ? noise[k] / total : 0.0);
    tree_.prior_logits(id)[k] = std::log(std::max(priors[k], FLT_MIN));
  }
}

int SampledSearch::SelectPuct(int64_t b, int64_t node) const {
  const int64_t id = tree_.Node(b, node);
  const int n = num_children_[id];
  const int32_t* visits = tree_.visits(id);
  const float* priors = tree_.priors(id);
  const float* qs = tree_.q(id);
  const int32_t node_visits = tree_.node_visits(id);
  const float explore = node_visits < static_cast<int64_t>(explore_.size())
                            ? explore_[node_visits]
                            : ExploreFactor(config_.pb_c_init, config_.pb_c_base, node_visits);
  Normaliser norm;
  switch (config_.qtransform) {
    case QTransform::kParentAndSiblings: {
      const float node_value = tree_.node_value(id);
      float lo = node_value, hi = node_value;
#pragma omp simd reduction(min : lo) reduction(max : hi)
      for (int k = 0; k < n; ++k) {
        const int32_t visits_k = visits[k];  // plain loads, then a select: vectorised
        const float q_k = qs[k];
        const float q = visits_k > 0 ? q_k : node_value;
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
      break;  // rejected by ValidateSampledConfig
  }
  // Unvisited children score 0 for their value (mctx completes them with the minimum), or the
  // parent's normalised value. Scores of a chunk in a vectorised loop (as Search::SelectPuct:
  // a scalar loop's division per child was most of a selection step), then the first child
  // reaching their maximum (ties go to the lowest index).
  const float k_scale = norm.k, lo_k = norm.lo_k, scale = norm.scale;
  const float unvisited =
      config_.unvisited_parent_value ? (tree_.node_value(id) * k_scale - lo_k) * scale : 0.0f;
  constexpr int kChunk = 64;
  float score[kChunk];
  int best = 0;
  float best_score = -kInf;
  for (int begin = 0; begin < n; begin += kChunk) {
    const int m = std::min(kChunk, n - begin);
    const int32_t* v = visits + begin;
    const float* q = qs + begin;
    const float* p = priors + begin;
    float chunk_max = -kInf;
#pragma omp simd reduction(max : chunk_max)
    for (int k = 0; k < m; ++k) {
      const int32_t visits_k = v[k];
      const float q_k = q[k];
      const float value_score = visits_k > 0 ? (q_k * k_scale - lo_k) * scale : unvisited;
      score[k] = value_score + explore * p[k] / static_cast<float>(visits_k + 1);
      chunk_max = std::max(chunk_max, score[k]);
    }
    if (!(chunk_max > best_score)) continue;
    for (int k = 0; k < m; ++k) {
      if (score[k] == chunk_max) {
        best = begin + k;
        best_score = chunk_max;
        break;
      }
    }
  }
  return best;
}

void SampledSearch::Select(int64_t b, int sim) {
  const int max_depth = config_.max_depth > 0 ? config_.max_depth : INT_MAX;
  const int K = config_.num_samples, D = config_.action_dim;
  int32_t node = kRootIndex;
  int depth = 0;
  while (true) {
    EnsureSampled(b, node);
    const int k = SelectPuct(b, node);
    const int64_t id = tree_.Node(b, node);
    const int32_t child = tree_.children(id)[k];
    ++depth;
    if (child != kUnvisited && depth < max_depth) {
      node = child;
      continue;
    }
    leaf_parent_[b] = node;
    leaf_edge_[b] = k;
    leaf_node_[b] = child == kUnvisited ? first_new_[b] + sim : child;
    source_slots_[b] = Slot(b, node);
    target_slots_[b] = Slot(b, leaf_node_[b]);
    if (config_.continuous()) {
      std::copy_n(&samples_[(id * K + k) * D], D, &float_actions_[b * D]);
      actions_[b] = k;
    } else {
      actions_[b] = sample_indices_[id * K + k];
    }
    return;
  }
}

void SampledSearch::ExpandAndBackup(int64_t b) {
  const int32_t parent = leaf_parent_[b], edge = leaf_edge_[b], leaf = leaf_node_[b];
  const int64_t node = tree_.Node(b, leaf);
  // A leaf at max_depth already exists: it is re-evaluated in place (as mctx does); it was never
  // descended from, so it has no samples yet.
  if (!tree_.created(node)) tree_.Create(node);
  std::copy_n(&out_policy_[b * P_], P_, &policy_[node * P_]);
  tree_.priors_ready(node) = 0;  // samples are drawn when the search first descends from here
  tree_.raw_value(node) = out_values_[b];
  tree_.node_value(node) = out_values_[b];
  tree_.node_visits(node) += 1;
  tree_.parent(node) = parent;
  tree_.action_from_parent(node) = edge;
  tree_.reward(node) = out_rewards_[b];
  tree_.discount(node) = out_discounts_[b] * config_.discount;
  tree_.children(tree_.Node(b, parent))[edge] = leaf;

  const bool running = config_.qtransform == QTransform::kRunningMinMax;
  BackUp(tree_, b, node, running ? &running_min_[b] : nullptr,
         running ? &running_max_[b] : nullptr);
}

void SampledSearch::Finalize(int64_t b) {
  const int K = config_.num_samples, D = config_.action_dim;
  const int64_t root = tree_.Node(b, kRootIndex);
  const int n = num_children_[root];
  Results& r = results_;
  int32_t* visits = &r.visit_counts[b * K];
  for (int k = 0; k < K; ++k) {
    visits[k] = k < n ? tree_.visits(root)[k] : 0;
    r.q_values[b * K + k] = k < n ? tree_.q(root)[k] : 0.0f;
    r.priors[b * K + k] = k < n ? tree_.priors(root)[k] : 0.0f;
  }
  VisitPolicy(visits, n, &r.policy[b * K]);
  std::fill(&r.policy[b * K] + n, &r.policy[b * K] + K, 0.0f);
  r.root_value[b] = tree_.node_value(root);
  const int chosen =
      ChooseByVisits(visits, n, nullptr, config_.temperature,
                     Rng(config_.seed, 3 * stream_ + kFinalAction, static_cast<uint64_t>(b)));
  r.index[b] = chosen;
  if (config_.continuous()) {
    std::copy_n(samples(root), K * D, &r.actions[b * K * D]);
    std::copy_n(samples(root) + chosen * D, D, &r.action[b * D]);
  } else {
    for (int k = 0; k < K; ++k) r.action_indices[b * K + k] = k < n ? sample_indices(root)[k] : -1;
    r.action_index[b] = sample_indices(root)[chosen];
  }
}

ThreadPool& SampledSearch::Pool() {
  return SearchPool(pool_, tree_.batch_size, config_.num_threads);
}

void SampledSearch::Run(model::Evaluator& evaluator, const std::function<void()>& poll) {
  const int64_t B = tree_.batch_size, K = config_.num_samples, D = config_.action_dim;
  const int threads = Pool().num_threads();
  results_ = Results{};
  Results& r = results_;
  r.index.resize(B);
  if (config_.continuous()) {
    r.action.resize(B * D);
    r.actions.resize(B * K * D);
  } else {
    r.action_index.resize(B);
    r.action_indices.resize(B * K);
  }
  r.visit_counts.resize(B * K);
  r.policy.resize(B * K);
  r.priors.resize(B * K);
  r.q_values.resize(B * K);
  r.root_value.resize(B);
  SimulationSteps steps;
  steps.advance = [this](int64_t begin, int64_t end, int sim) {
    for (int64_t b = begin; b < end; ++b) {
      if (sim > 0) ExpandAndBackup(b);
      Select(b, sim);
    }
  };
  steps.evaluate = [&](int64_t begin, int64_t end, ThreadPool* helpers) {
    const int64_t n = end - begin;
    model::LeafBatch leaves{n, source_slots_.data() + begin, actions_.data() + begin,
                            target_slots_.data() + begin, helpers};
    if (config_.continuous()) {
      leaves.continuous_actions = float_actions_.data() + begin * D;
      leaves.action_dim = D;
    }
    float* policy = out_policy_.data() + begin * P_;
    const model::LeafOutputs outputs{out_rewards_.data() + begin, out_discounts_.data() + begin,
                                     policy, out_values_.data() + begin};
    evaluator.Evaluate(leaves, outputs);
    if (config_.continuous()) {
      // The evaluator lets -inf logits through (discrete masks); a Gaussian needs finite ones.
      const int64_t bad = model::FirstNonFinite(policy, n * P_, false);
      WMFAST_CHECK_ARG(bad < 0, "Step.logits (the Gaussian policy: mean, then log_std) must be "
                       "finite for continuous actions, got ", policy[bad < 0 ? 0 : bad],
                       " at batch index ", begin + bad / P_, ", column ", bad % P_);
    }
  };
  steps.finish = [this](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      ExpandAndBackup(b);
      Finalize(b);
    }
  };
  RunSimulations(pool_, B, config_.num_simulations,
                 threads > 1 && evaluator.max_concurrent_calls() >= threads, steps, poll);
}

void SampledSearch::CompleteForInspection() {
  tree_.CreateUnused();
  tree_.DeriveEdgeFields();
}

}  // namespace wmfast::mcts
