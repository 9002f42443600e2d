#include "wmfast/cem/planner.h"

#include <ATen/Context.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/addcmul.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/randperm.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/var_mean.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <cmath>
#include <limits>
#include <utility>

#include "wmfast/cem/math.h"
#include "wmfast/common/check.h"

namespace wmfast::cem {
namespace {

std::string ShapeString(at::IntArrayRef shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

at::Tensor VectorTensor(const std::vector<double>& values, const at::TensorOptions& options) {
  return at::tensor(at::ArrayRef<double>(values), at::TensorOptions().dtype(at::kDouble))
      .to(options);
}

// A distance per row of the trailing dimensions: x [G, B, C, D], goal [1, B, 1, D] -> [G, B, C].
at::Tensor GoalDistance(const at::Tensor& x, const at::Tensor& goal, GoalMetric metric) {
  at::Tensor diff = x - goal;
  switch (metric) {
    case GoalMetric::kL2:
      return at::linalg_vector_norm(diff, 2, {-1});
    case GoalMetric::kSquaredL2:
      return diff.square().sum(-1);
    case GoalMetric::kL1:
      return diff.abs().sum(-1);
  }
  return diff;
}

void CheckNoNan(const at::Tensor& returns, const char* what) {
  if (returns.isnan().any().item<bool>()) {
    throw std::invalid_argument(StrCat(
        "the ", what, " produced NaN: a predicted return is NaN (the dynamics returned a NaN "
        "reward or state, or the value function a NaN value); check the model on the planner's "
        "inputs (actions within the bounds). Use -inf, not NaN, to mark a forbidden transition"));
  }
}

bool IsCpuFloat(const at::Tensor& t) {
  return t.is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous();
}

// returns += weight * values, without the dispatcher on the CPU float path.
void AddScaled(at::Tensor& returns, const at::Tensor& values, double weight) {
  // A step past a zero discount counts for nothing, even a -inf reward (0 * -inf would be NaN).
  if (weight == 0.0) return;
  if (IsCpuFloat(returns) && IsCpuFloat(values) && values.numel() == returns.numel()) {
    float* r = returns.data_ptr<float>();
    const float* v = values.const_data_ptr<float>();
    const float w = static_cast<float>(weight);
    for (int64_t i = 0, n = returns.numel(); i < n; ++i) r[i] += w * v[i];
  } else {
    returns.add_(values.reshape(returns.sizes()), weight);
  }
}

std::vector<float> ToFloat(const std::vector<double>& values) {
  return std::vector<float>(values.begin(), values.end());
}

}  // namespace

Planner::Planner(PlannerConfig config) : config_(std::move(config)) {
  const PlannerConfig& c = config_;
  const bool mppi = c.method == Method::kMppi;
  WMFAST_CHECK_ARG(c.horizon >= 1, "horizon must be >= 1, got ", c.horizon);
  WMFAST_CHECK_ARG(c.action_dim >= 1, "action_dim must be >= 1, got ", c.action_dim);
  WMFAST_CHECK_ARG(c.population >= 1, "population must be >= 1, got ", c.population);
  WMFAST_CHECK_ARG(c.iterations >= 1, "iterations must be >= 1, got ", c.iterations);
  if (mppi) {
    WMFAST_CHECK_ARG(c.elites >= 0 && c.elites <= c.population,
                     "elites must be in [0, population] (0: the whole population), got elites=",
                     c.elites, " with population=", c.population);
  } else {
    WMFAST_CHECK_ARG(c.elites >= 1, "elites must be >= 1, got ", c.elites);
    WMFAST_CHECK_ARG(c.elites <= c.population, "elites must be <= population, got elites=",
                     c.elites, " > population=", c.population);
  }
  const size_t a = static_cast<size_t>(c.action_dim);
  WMFAST_CHECK_ARG(c.action_low.size() == a && c.action_high.size() == a,
                   "action_low and action_high must have action_dim=", c.action_dim,
                   " entries, got ", c.action_low.size(), " and ", c.action_high.size());
  WMFAST_CHECK_ARG(c.init_std.size() == a, "init_std must have action_dim=", c.action_dim,
                   " entries, got ", c.init_std.size());
  for (size_t i = 0; i < a; ++i) {
    WMFAST_CHECK_ARG(!std::isnan(c.action_low[i]) && !std::isnan(c.action_high[i]),
                     "action bounds must not be NaN (dimension ", i, ")");
    WMFAST_CHECK_ARG(c.action_low[i] <= c.action_high[i],
                     "action_low must be <= action_high in every dimension, got action_low[", i,
                     "]=", c.action_low[i], " > action_high[", i, "]=", c.action_high[i]);
    WMFAST_CHECK_ARG(std::isfinite(c.init_std[i]) && c.init_std[i] >= 0,
                     "init_std must be finite and >= 0, got ", c.init_std[i], " in dimension ", i);
  }
  WMFAST_CHECK_ARG(c.min_std >= 0, "min_std must be >= 0, got ", c.min_std);
  WMFAST_CHECK_ARG(c.alpha >= 0 && c.alpha < 1, "alpha must be in [0, 1), got ", c.alpha);
  WMFAST_CHECK_ARG(c.discount >= 0 && c.discount <= 1, "discount must be in [0, 1], got ",
                   c.discount);
  WMFAST_CHECK_ARG(c.temperature > 0 && std::isfinite(c.temperature),
                   "temperature must be a finite number > 0, got ", c.temperature);
  WMFAST_CHECK_ARG(c.keep_elites >= 0 && c.keep_elites <= 1,
                   "keep_elites must be a fraction in [0, 1], got ", c.keep_elites);
  WMFAST_CHECK_ARG(c.particles >= 1, "particles must be >= 1, got ", c.particles);
  WMFAST_CHECK_ARG(c.policy_samples >= 0, "policy_samples must be >= 0, got ", c.policy_samples);
  WMFAST_CHECK_ARG(c.disagreement_penalty >= 0, "disagreement_penalty must be >= 0, got ",
                   c.disagreement_penalty);
  WMFAST_CHECK_ARG(c.goal_weight >= 0, "goal_weight must be >= 0, got ", c.goal_weight);
  const int64_t elite_count = c.elites == 0 ? c.population : c.elites;
  kept_elites_ = std::llround(c.keep_elites * static_cast<double>(elite_count));
  WMFAST_CHECK_ARG(kept_elites_ + c.policy_samples <= c.population,
                   "policy_samples + kept elites must be <= population, got ", c.policy_samples,
                   " + ", kept_elites_, " > ", c.population);
  if (c.propagation == Propagation::kNone) {
    WMFAST_CHECK_ARG(c.ensemble_size == 0, "ensemble_size=", c.ensemble_size,
                     " needs a propagation mode ('ts1', 'tsinf' or 'expectation')");
  } else {
    WMFAST_CHECK_ARG(c.ensemble_size >= 1, "propagation needs ensemble_size >= 1, got ",
                     c.ensemble_size);
  }
  if (c.propagation == Propagation::kTs1 || c.propagation == Propagation::kTsInf) {
    WMFAST_CHECK_ARG(c.population * c.particles % c.ensemble_size == 0,
                     "population * particles must be divisible by ensemble_size for trajectory "
                     "sampling, got ", c.population, " * ", c.particles, " and ensemble_size=",
                     c.ensemble_size);
    WMFAST_CHECK_ARG(c.policy_samples * c.particles % c.ensemble_size == 0,
                     "policy_samples * particles must be divisible by ensemble_size for trajectory "
                     "sampling, got ", c.policy_samples, " * ", c.particles, " and ensemble_size=",
                     c.ensemble_size);
  }
  WMFAST_CHECK_ARG(c.disagreement_penalty == 0 || c.propagation == Propagation::kExpectation,
                   "disagreement_penalty needs propagation='expectation' (the only mode that "
                   "runs every member on every particle)");
  filter_ = ColoredNoiseFilter(c.horizon, c.noise_beta);
  Seed(c.seed);
}

void Planner::Seed(uint64_t seed) {
  config_.seed = seed;
  sampler_.Seed(seed);
  device_generator_.reset();
  generator_draws_ = 0;
}

at::Generator& Planner::DeviceGenerator(const at::Device& device) {
  if (!device_generator_ || device_generator_->device() != device) {
    device_generator_ = at::globalContext().defaultGenerator(device).clone();
    device_generator_->set_current_seed(config_.seed);
  }
  return *device_generator_;
}

at::Tensor Planner::StandardNormal(at::IntArrayRef shape, const at::TensorOptions& options) {
  if (options.device().is_cpu()) {
    at::Tensor out = at::empty(shape, options.dtype(at::kFloat));
    sampler_.Fill(out.data_ptr<float>(), out.numel());
    return options.dtype() == at::kFloat ? out : out.to(options.dtype());
  }
  at::Generator& gen = DeviceGenerator(options.device());
  return at::randn(shape, gen, options);
}

at::Tensor Planner::Rollout(const Models& models, const at::Tensor& state, const at::Tensor& goal,
                            at::Tensor& actions, bool fill_from_policy) {
  const PlannerConfig& c = config_;
  const int64_t h_len = c.horizon, a_dim = c.action_dim;
  const int64_t b = state.size(0), n = actions.size(2), p = c.particles;
  const bool ts = c.propagation == Propagation::kTs1 || c.propagation == Propagation::kTsInf;
  const bool expectation = c.propagation == Propagation::kExpectation;
  const int64_t e = c.ensemble_size;
  const int64_t groups = ts ? e : 1;
  const int64_t total = b * n * p;
  const int64_t per_group = n * p / groups;  // C: particles of one problem in one member
  const int64_t per_member = total / groups;  // M
  const at::IntArrayRef obs_shape = state.sizes().slice(1);

  // Particles are laid out [G, B, C]: slot (g, b, j) holds particle q = g * C + j of problem b,
  // which is copy q / n of candidate q % n. Without ensembles or particles this is [B, n].
  std::vector<int64_t> group_shape = {groups, b, per_group};
  std::vector<int64_t> flat_shape = {total};
  for (int64_t d : obs_shape) flat_shape.push_back(d);
  std::vector<int64_t> expand_shape = group_shape, view_shape = {1, b, 1};
  for (int64_t d : obs_shape) {
    expand_shape.push_back(d);
    view_shape.push_back(d);
  }
  at::Tensor s = state.view(view_shape).expand(expand_shape).reshape(flat_shape);
  // The models get tensors of their own: never the caller's state (reshape may return a view)
  // nor the planner's candidate buffer. A model that writes to its inputs in place, or keeps
  // them, changes neither the plan nor the caller's state.
  if (s.is_alias_of(state)) s = s.clone();

  const bool identity_layout =
      (groups == 1 || b == 1) && p == 1;  // particle actions are the candidates' memory
  at::Tensor particle_actions;
  if (identity_layout) {
    particle_actions = actions.view({h_len, total, a_dim});
  } else if (fill_from_policy) {
    particle_actions = at::empty({h_len, total, a_dim}, actions.options());
  } else {
    particle_actions = actions.unsqueeze(2)
                           .expand({h_len, b, p, n, a_dim})
                           .reshape({h_len, b, groups, per_group, a_dim})
                           .permute({0, 2, 1, 3, 4})
                           .contiguous()
                           .view({h_len, total, a_dim});
  }

  at::Tensor goal_view;
  std::vector<int64_t> grouped_state_shape = group_shape;
  if (goal.defined()) {
    goal_view = goal.reshape({1, b, 1, -1});
    grouped_state_shape.push_back(-1);
  }
  auto goal_cost = [&](const at::Tensor& next) {
    return GoalDistance(next.reshape(grouped_state_shape), goal_view, c.goal_metric)
        .reshape({total})
        .mul_(c.goal_weight);
  };

  at::Tensor returns = at::zeros({total}, state.options());
  at::Tensor low, high;
  if (fill_from_policy) {
    low = VectorTensor(c.action_low, actions.options());
    high = VectorTensor(c.action_high, actions.options());
  }
  std::vector<int64_t> member_state_shape = {e, per_member}, member_action_shape = {e, per_member,
                                                                                    a_dim};
  for (int64_t d : obs_shape) member_state_shape.push_back(d);
  std::vector<int64_t> all_members_state = {e, total}, all_members_action = {e, total, a_dim};
  for (int64_t d : obs_shape) all_members_state.push_back(d);

  double weight = 1.0;
  for (int64_t t = 0; t < h_len; ++t) {
    at::Tensor a = particle_actions.select(0, t);
    if (fill_from_policy) {
      at::Tensor proposed = models.policy(s);
      WMFAST_CHECK_ARG(proposed.dim() == 2 && proposed.size(0) == total &&
                           proposed.size(1) == a_dim,
                       "policy returned actions of shape ", ShapeString(proposed.sizes()),
                       ", expected [", total, ", ", a_dim, "] for states of shape ",
                       ShapeString(s.sizes()));
      a.copy_(at::clamp(proposed, low, high));  // into the candidates' memory
    }
    a = a.clone();  // the dynamics' own copy (see above); a fresh tensor per step
    Step step;
    if (c.propagation == Propagation::kNone) {
      step = models.dynamics(s, a);
    } else if (c.propagation == Propagation::kTsInf) {
      step = models.dynamics(s.view(member_state_shape), a.view(member_action_shape));
    } else if (c.propagation == Propagation::kTs1) {
      // A fresh random member for every particle: permute the particles over the member blocks,
      // and put the predictions back in particle order.
      at::Tensor perm;
      if (s.is_cpu()) {
        // A uniformly random permutation from the planner's own stream: argsort of iid keys.
        at::Tensor keys = at::empty({total}, at::kFloat);
        sampler_.Fill(keys.data_ptr<float>(), total);
        perm = keys.argsort();
      } else {
        perm = at::randperm(total, DeviceGenerator(s.device()),
                            at::TensorOptions(at::kLong).device(s.device()));
      }
      Step shuffled = models.dynamics(s.index_select(0, perm).view(member_state_shape),
                                      a.index_select(0, perm).view(member_action_shape));
      WMFAST_CHECK_ARG(shuffled.next_state.defined() &&
                           shuffled.next_state.numel() == s.numel(),
                       "dynamics returned next_state of shape ",
                       shuffled.next_state.defined() ? ShapeString(shuffled.next_state.sizes())
                                                     : std::string("None"),
                       ", expected ", ShapeString(member_state_shape));
      step.next_state = at::empty_like(s).index_copy_(0, perm, shuffled.next_state.reshape(flat_shape));
      if (shuffled.reward.defined()) {
        WMFAST_CHECK_ARG(shuffled.reward.numel() == total, "dynamics returned reward of shape ",
                         ShapeString(shuffled.reward.sizes()), ", expected [", e, ", ",
                         per_member, "]");
        step.reward = at::empty({total}, shuffled.reward.options())
                          .index_copy_(0, perm, shuffled.reward.reshape({total}));
      }
    } else {  // expectation over members
      Step all = models.dynamics(s.unsqueeze(0).expand(all_members_state).contiguous(),
                                 a.unsqueeze(0).expand(all_members_action).contiguous());
      WMFAST_CHECK_ARG(all.next_state.defined() &&
                           all.next_state.sizes() == at::IntArrayRef(all_members_state),
                       "dynamics returned next_state of shape ",
                       all.next_state.defined() ? ShapeString(all.next_state.sizes())
                                                : std::string("None"),
                       ", expected ", ShapeString(all_members_state));
      step.next_state = all.next_state.mean(0);
      if (all.reward.defined()) {
        WMFAST_CHECK_ARG(all.reward.dim() == 2 && all.reward.size(0) == e &&
                             all.reward.size(1) == total,
                         "dynamics returned reward of shape ", ShapeString(all.reward.sizes()),
                         ", expected [", e, ", ", total, "]");
        step.reward = all.reward.mean(0);
      }
      if (c.disagreement_penalty > 0) {
        at::Tensor disagreement =
            all.next_state.reshape({e, total, -1}).std(at::IntArrayRef{0}, /*unbiased=*/false).mean(-1);
        step.reward = step.reward.defined()
                          ? step.reward - disagreement * c.disagreement_penalty
                          : disagreement * -c.disagreement_penalty;
      }
    }

    // Shapes: the next state must match the state; the reward must have one entry per particle.
    WMFAST_CHECK_ARG(step.next_state.defined(), "dynamics returned no next_state");
    if (step.next_state.numel() != s.numel() ||
        (c.propagation == Propagation::kNone && step.next_state.sizes() != s.sizes())) {
      throw std::invalid_argument(StrCat(
          "dynamics returned next_state of shape ", ShapeString(step.next_state.sizes()),
          ", expected ",
          ShapeString(c.propagation == Propagation::kTsInf ? at::IntArrayRef(member_state_shape)
                                                           : s.sizes()),
          " (the shape of the state it was given)"));
    }
    at::Tensor next = step.next_state.reshape(flat_shape);
    if (step.reward.defined()) {
      const int64_t expected_dims = c.propagation == Propagation::kTsInf ? 2 : 1;
      if (step.reward.numel() != total ||
          (c.propagation != Propagation::kTs1 && step.reward.dim() != expected_dims &&
           c.propagation != Propagation::kExpectation)) {
        throw std::invalid_argument(StrCat(
            "dynamics returned reward of shape ", ShapeString(step.reward.sizes()),
            ", expected ",
            c.propagation == Propagation::kTsInf ? StrCat("[", e, ", ", per_member, "]")
                                                 : StrCat("[", total, "]"),
            " (one reward per row of the state)"));
      }
      AddScaled(returns, step.reward, weight);
    } else {
      WMFAST_CHECK_ARG(goal.defined(),
                       "dynamics returned no reward (None) and no goal was given: return "
                       "(next_state, reward), or pass goal= for a goal-reaching cost");
    }
    if (goal.defined() && !c.goal_terminal_only) returns.sub_(goal_cost(next), weight);
    s = next;
    weight *= c.discount;
  }
  if (models.value) {
    at::Tensor v = models.value(s);
    WMFAST_CHECK_ARG(v.numel() == total && (v.dim() == 1 || (v.dim() == 2 && v.size(1) == 1)),
                     "value returned shape ", ShapeString(v.sizes()), ", expected [", total,
                     "] for states of shape ", ShapeString(s.sizes()));
    AddScaled(returns, v, weight);
  }
  if (goal.defined() && c.goal_terminal_only) returns.sub_(goal_cost(s));

  if (fill_from_policy && !identity_layout) {
    // Candidate c takes the actions of its first particle (q = c).
    actions.copy_(particle_actions.view({h_len, groups, b, per_group, a_dim})
                      .permute({0, 2, 1, 3, 4})
                      .reshape({h_len, b, p, n, a_dim})
                      .select(2, 0));
  }
  if (groups == 1 && p == 1) return returns.view({b, n});
  return returns.view({groups, b, per_group}).permute({1, 0, 2}).reshape({b, p, n}).mean(1);
}

at::Tensor Planner::Evaluate(const Models& models, const at::Tensor& state,
                             const at::Tensor& actions, const at::Tensor& goal) {
  at::NoGradGuard no_grad;
  const PlannerConfig& c = config_;
  WMFAST_CHECK_ARG(state.dim() >= 2, "state must be [B, ...] with a batch dimension, got shape ",
                   ShapeString(state.sizes()));
  const int64_t b = state.size(0);
  WMFAST_CHECK_ARG(actions.dim() == 4 && actions.size(0) == b && actions.size(2) == c.horizon &&
                       actions.size(3) == c.action_dim,
                   "actions must be [B, n, horizon, action_dim] = [", b, ", n, ", c.horizon, ", ",
                   c.action_dim, "], got ", ShapeString(actions.sizes()));
  const int64_t n = actions.size(1);
  const bool ts = c.propagation == Propagation::kTs1 || c.propagation == Propagation::kTsInf;
  WMFAST_CHECK_ARG(!ts || n * c.particles % c.ensemble_size == 0,
                   "the number of sequences times particles must be divisible by ensemble_size=",
                   c.ensemble_size, ", got ", n, " * ", c.particles);
  const auto options = state.options();
  at::Tensor low = VectorTensor(c.action_low, options), high = VectorTensor(c.action_high, options);
  at::Tensor time_major = at::clamp(actions.to(options).permute({2, 0, 1, 3}), low, high)
                              .contiguous();
  at::Tensor returns = Rollout(models, state, goal, time_major, false);
  return returns;
}

PlanResult Planner::Plan(const Models& models, const PlanInputs& in) {
  at::NoGradGuard no_grad;
  const PlannerConfig& c = config_;
  const at::Tensor& state = in.state;
  WMFAST_CHECK_ARG(state.defined() && state.dim() >= 2,
                   "state must be a tensor [B, ...] with a batch dimension, got shape ",
                   state.defined() ? ShapeString(state.sizes()) : std::string("None"));
  WMFAST_CHECK_ARG(at::isFloatingType(state.scalar_type()),
                   "state must be a floating-point tensor, got dtype ", state.scalar_type());
  const int64_t b = state.size(0), h_len = c.horizon, a_dim = c.action_dim, pop = c.population;
  WMFAST_CHECK_ARG(b >= 1, "state must hold at least one problem (B >= 1), got shape ",
                   ShapeString(state.sizes()));
  const auto options = state.options();
  const bool mppi = c.method == Method::kMppi;
  const int64_t k = c.elites == 0 ? pop : c.elites;
  if (in.goal.defined()) {
    WMFAST_CHECK_ARG(in.goal.sizes() == state.sizes(), "goal must have the shape of state ",
                     ShapeString(state.sizes()), ", got ", ShapeString(in.goal.sizes()));
    WMFAST_CHECK_ARG(in.goal.device() == state.device(), "goal is on ", in.goal.device(),
                     " but state is on ", state.device());
  }
  WMFAST_CHECK_ARG(!c.policy_samples || models.policy,
                   "policy_samples=", c.policy_samples, " needs a policy");
  at::Tensor goal = in.goal.defined() ? in.goal.to(options.dtype()) : at::Tensor();

  at::Tensor low = VectorTensor(c.action_low, options), high = VectorTensor(c.action_high, options);
  // A fresh plan starts at the bounds' centre (0, clipped into the bounds, where one is infinite).
  std::vector<double> center_values(a_dim);
  for (int64_t i = 0; i < a_dim; ++i) {
    const double lo = c.action_low[i], hi = c.action_high[i];
    center_values[i] = std::isfinite(lo) && std::isfinite(hi) ? 0.5 * (lo + hi)
                                                              : std::min(std::max(0.0, lo), hi);
  }
  at::Tensor center = VectorTensor(center_values, options);
  at::Tensor init_std = VectorTensor(c.init_std, options);

  // Mean and std are kept time-major, [H, B, A], like the samples [H, B, pop, A].
  at::Tensor mean;
  if (in.warm_mean.defined()) {
    WMFAST_CHECK_ARG(in.warm_mean.dim() == 3 && in.warm_mean.size(0) == b &&
                         in.warm_mean.size(1) == h_len && in.warm_mean.size(2) == a_dim,
                     "warm-start mean must be [B, horizon, action_dim] = [", b, ", ", h_len, ", ",
                     a_dim, "], got ", ShapeString(in.warm_mean.sizes()));
    WMFAST_CHECK_ARG(in.shift >= 0, "shift must be >= 0, got ", in.shift);
    mean = ShiftPlan(in.warm_mean.to(options), in.shift, center).transpose(0, 1).contiguous();
  } else {
    mean = center.expand({h_len, b, a_dim}).contiguous();
  }
  at::Tensor std = init_std.expand({h_len, b, a_dim}).contiguous();

  at::Tensor injected;
  if (in.noise.defined()) {
    const std::vector<int64_t> want = {c.iterations, h_len, b, pop, a_dim};
    WMFAST_CHECK_ARG(in.noise.sizes() == at::IntArrayRef(want),
                     "noise must be [iterations, horizon, B, population, action_dim] = ",
                     ShapeString(want), ", got ", ShapeString(in.noise.sizes()));
    injected = in.noise.to(options);
  }
  at::Tensor filter;
  if (c.noise_beta > 0) {
    filter = at::tensor(at::ArrayRef<double>(filter_), at::TensorOptions().dtype(at::kDouble))
                 .view({h_len, h_len})
                 .to(options);
  }

  const int64_t n_pi = c.policy_samples;
  const int64_t n_keep = kept_elites_;
  at::Tensor policy_actions;
  if (n_pi > 0) {
    policy_actions = at::empty({h_len, b, n_pi, a_dim}, options);
    Rollout(models, state, goal, policy_actions, /*fill_from_policy=*/true);
  }
  at::Tensor kept;  // [H, B, n_keep', A]
  if (in.warm_elites.defined() && n_keep > 0) {
    WMFAST_CHECK_ARG(in.warm_elites.dim() == 4 && in.warm_elites.size(0) == b &&
                         in.warm_elites.size(2) == h_len && in.warm_elites.size(3) == a_dim,
                     "warm-start elites must be [B, K, horizon, action_dim] = [", b, ", K, ",
                     h_len, ", ", a_dim, "], got ", ShapeString(in.warm_elites.sizes()));
    const int64_t use = std::min<int64_t>(n_keep, in.warm_elites.size(1));
    kept = ShiftPlan(in.warm_elites.narrow(1, 0, use).to(options), in.shift, center)
               .permute({2, 0, 1, 3})
               .contiguous();
  }

  const at::Tensor offsets =
      state.is_cpu() && options.dtype() == at::kFloat
          ? at::Tensor()
          : at::arange(b, at::TensorOptions(at::kLong).device(state.device())).mul_(pop).unsqueeze(1);
  at::Tensor samples = at::empty({h_len, b, pop, a_dim}, options);
  at::Tensor best_actions, best_returns, elite_actions, elite_returns, weights;
  // CPU float32: the update runs on raw buffers (math.h); elsewhere through ATen ops.
  const bool fast = state.is_cpu() && options.dtype() == at::kFloat;
  const std::vector<float> low_f = ToFloat(c.action_low), high_f = ToFloat(c.action_high);
  const SampleDims dims{h_len, b, pop, a_dim};
  if (injected.defined()) injected = injected.contiguous();
  at::Tensor colored;
  for (int64_t it = 0; it < c.iterations; ++it) {
    at::Tensor noise;
    if (injected.defined()) {
      noise = injected.select(0, it);
    } else if (fast) {
      sampler_.Fill(samples.data_ptr<float>(), samples.numel());  // in place, then transformed
      noise = samples;
    } else {
      noise = StandardNormal({h_len, b, pop, a_dim}, options);
    }
    if (filter.defined()) {
      // Coloured noise: one [H, H] x [H, B * pop * A] product into a buffer kept for the plan.
      if (!colored.defined()) colored = at::empty({h_len, b * pop * a_dim}, options);
      at::mm_out(colored, filter, noise.reshape({h_len, -1}));
      noise = colored.view(samples.sizes());
    }
    if (fast) {
      AffineClip(dims, mean.const_data_ptr<float>(), std.const_data_ptr<float>(),
                 noise.contiguous().const_data_ptr<float>(), low_f.data(), high_f.data(),
                 samples.data_ptr<float>());
    } else {
      at::addcmul_out(samples, mean.unsqueeze(2), std.unsqueeze(2), noise);
      samples.clamp_(low, high);
    }
    if (n_pi > 0) samples.narrow(2, 0, n_pi).copy_(policy_actions);
    if (kept.defined()) samples.narrow(2, n_pi, kept.size(2)).copy_(kept);

    at::Tensor returns = Rollout(models, state, goal, samples, false);  // [B, pop]

    if (fast) {
      returns = returns.to(at::kFloat).contiguous();
      at::Tensor index = at::empty({b, k}, at::kLong);
      elite_returns = at::empty({b, k}, options);
      if (!TopK(returns.const_data_ptr<float>(), b, pop, k, index.data_ptr<int64_t>(),
                elite_returns.data_ptr<float>())) {
        CheckNoNan(returns, "dynamics model");
      }
      elite_actions = at::empty({h_len, b, k, a_dim}, options);
      GatherElites(dims, samples.const_data_ptr<float>(), index.const_data_ptr<int64_t>(), k,
                   elite_actions.data_ptr<float>());
      const float* top = elite_returns.const_data_ptr<float>();
      const float* top_actions = elite_actions.const_data_ptr<float>();
      if (!best_returns.defined()) {
        best_returns = at::empty({b}, options);
        best_actions = at::empty({h_len, b, a_dim}, options);
      }
      float* best = best_returns.data_ptr<float>();
      float* best_a = best_actions.data_ptr<float>();
      for (int64_t i = 0; i < b; ++i) {
        if (it == 0 || top[i * k] > best[i]) {
          best[i] = top[i * k];
          for (int64_t t = 0; t < h_len; ++t) {
            std::copy_n(top_actions + ((t * b + i) * k) * a_dim, a_dim,
                        best_a + (t * b + i) * a_dim);
          }
        }
      }
      if (mppi) {
        weights = at::empty({b, k}, options);
        SoftmaxWeights(top, b, k, c.temperature, weights.data_ptr<float>());
      }
      RefitGaussian(dims, top_actions, k, mppi ? weights.const_data_ptr<float>() : nullptr,
                    c.alpha, c.min_std, !mppi || c.update_std, mean.data_ptr<float>(),
                    std.data_ptr<float>());
      if (n_keep > 0) kept = elite_actions.narrow(2, 0, n_keep).contiguous();
      continue;
    }

    CheckNoNan(returns, "dynamics model");
    // Elites, best first ([B, k]); MPPI without elites weighs the whole population.
    at::Tensor elite_index;
    if (k < pop || !mppi) {
      auto [values, index] = returns.topk(k, 1);
      elite_returns = values;
      elite_index = index;
    } else {
      auto [values, index] = returns.sort(1, /*descending=*/true);
      elite_returns = values;
      elite_index = index;
    }
    elite_actions = samples.view({h_len, b * pop, a_dim})
                        .index_select(1, (elite_index + offsets).view({-1}))
                        .view({h_len, b, k, a_dim});

    // The best sequence seen so far, per problem.
    at::Tensor iteration_best = elite_returns.select(1, 0);
    at::Tensor iteration_actions = elite_actions.select(2, 0);  // [H, B, A]
    if (!best_returns.defined()) {
      best_returns = iteration_best.clone();
      best_actions = iteration_actions.clone();
    } else {
      at::Tensor better = iteration_best > best_returns;
      best_returns = at::where(better, iteration_best, best_returns);
      best_actions = at::where(better.unsqueeze(1), iteration_actions, best_actions);
    }

    at::Tensor new_mean, new_std;
    if (mppi) {
      // Softmax weights over the elites' returns (max-subtracted inside softmax).
      // As SoftmaxWeights (math.cc): rows whose best return is infinite weigh the entries
      // equal to it (all -inf: uniform), so -inf rewards never make NaN actions.
      const at::Tensor top = std::get<0>(elite_returns.max(1, /*keepdim=*/true));
      const at::Tensor logits =
          at::where(top.isinf(),
                    at::where(elite_returns == top, at::zeros_like(elite_returns),
                              at::full_like(elite_returns, -INFINITY)),
                    (elite_returns - top).div(c.temperature));
      weights = logits.softmax(1);  // [B, k]
      at::Tensor w = weights.unsqueeze(0).unsqueeze(2);      // [1, B, 1, k]
      new_mean = w.matmul(elite_actions).squeeze(2);          // [H, B, A]
      if (c.update_std) {
        new_std = w.matmul((elite_actions - new_mean.unsqueeze(2)).square()).squeeze(2).sqrt_();
      } else {
        new_std = std;
      }
    } else {
      auto [var, m] = at::var_mean(elite_actions, {2}, /*correction=*/0);
      new_mean = m;
      new_std = var.sqrt_();
    }
    if (c.alpha > 0) {
      mean = mean.mul(c.alpha).add_(new_mean, 1 - c.alpha);
      std = std.mul(c.alpha).add_(new_std, 1 - c.alpha);
    } else {
      mean = new_mean;
      std = new_std;
    }
    if (c.min_std > 0) std = std.clamp_min(c.min_std);
    if (n_keep > 0) kept = elite_actions.narrow(2, 0, n_keep).clone();
  }

  PlanResult result;
  if (c.return_mean) {
    result.actions = at::clamp(mean, low, high).transpose(0, 1).contiguous();
    // -inf returns carry zero weight (0 * -inf would be NaN).
    result.returns =
        mppi ? at::where(weights > 0, weights * elite_returns, at::zeros_like(weights)).sum(1)
             : best_returns;
  } else {
    result.actions = best_actions.transpose(0, 1).contiguous();
    result.returns = best_returns;
  }
  result.mean = mean.transpose(0, 1).contiguous();
  result.std = std.transpose(0, 1).contiguous();
  result.elites = elite_actions.permute({1, 2, 0, 3}).contiguous();
  result.elite_returns = elite_returns;
  return result;
}

at::Tensor ShiftPlan(const at::Tensor& plan, int64_t steps, const at::Tensor& fill) {
  WMFAST_CHECK_ARG(plan.dim() >= 2, "a plan must be [..., H, A], got shape ",
                   ShapeString(plan.sizes()));
  WMFAST_CHECK_ARG(steps >= 0, "shift must be >= 0, got ", steps);
  const int64_t h_len = plan.size(-2);
  at::Tensor out = fill.to(plan.options()).expand(plan.sizes()).clone();
  const int64_t keep = h_len - std::min(steps, h_len);
  if (keep > 0) out.narrow(-2, 0, keep).copy_(plan.narrow(-2, steps, keep));
  return out;
}

}  // namespace wmfast::cem
