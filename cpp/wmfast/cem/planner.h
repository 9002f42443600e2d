// Sampling-based trajectory optimisation for model-predictive control with learned dynamics.
//
// The cross-entropy method (CEM; Rubinstein 1999, as used for MPC with learned models by PETS,
// Chua et al. 2018) keeps a Gaussian over action sequences, one mean and standard deviation per
// time step and action dimension. Each iteration draws a population of sequences, clips them to
// the action bounds, rolls every sequence through the dynamics model to predict its (discounted)
// return, and refits the Gaussian to the `elites` best, smoothed by `alpha`. MPPI (Williams et al.
// 2017) replaces the hard elite set by softmax(return / temperature) weights over the population
// (or, as in TD-MPC2, Hansen et al. 2024, over its elites). iCEM (Pinneri et al. 2020) adds
// temporally coloured noise (power spectrum 1/f^beta), carries a fraction of the elites into the
// next iteration and, shifted by one step, into the next plan.
//
// Models. The dynamics are a batched function (state, action) -> (next_state, reward); the planner
// makes exactly one call per horizon step for all B problems x population (x particles) at once.
// With an ensemble of E members the dynamics take an ensemble dimension first, [E, M, ...], and
// the candidates are propagated as in PETS: TS1 (a random member for each particle at each step),
// TS-infinity (a fixed member per particle) or the expectation over members (every particle goes
// through every member; the next state and reward are the member means, and the members'
// disagreement, the mean standard deviation of their next states, can be charged as a cost).
// Optional: a terminal value function V(s_H), a goal-conditioned latent cost (distance between the
// predicted state and a goal, for goal reaching in a learned latent space), and policy-prior
// samples (TD-MPC2): a policy rolled out through the dynamics seeds a share of the population.
//
// Everything runs on the device and dtype of the state tensor, through ATen ops; the CPU draws its
// noise with the cheap NormalSampler (noise.h), other devices with the device's own generator.
// The dynamics, value and policy are std::functions (the bindings wrap Python callables; a native
// libtorch backend can be another implementation). Not thread-safe: one Planner per thread.
#ifndef WMFAST_CEM_PLANNER_H_
#define WMFAST_CEM_PLANNER_H_

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "wmfast/cem/noise.h"

namespace wmfast::cem {

enum class Method { kCem, kMppi };
enum class Propagation { kNone, kTs1, kTsInf, kExpectation };
enum class GoalMetric { kL2, kSquaredL2, kL1 };

// One batched model step. `reward` may be undefined when a goal supplies the cost.
struct Step {
  at::Tensor next_state;
  at::Tensor reward;
};
using DynamicsFn = std::function<Step(const at::Tensor& state, const at::Tensor& action)>;
using StateFn = std::function<at::Tensor(const at::Tensor& state)>;

struct Models {
  DynamicsFn dynamics;  // required
  StateFn value;        // optional terminal value V(s_H): [N, ...] -> [N]
  StateFn policy;       // optional policy prior pi(s): [N, ...] -> [N, action_dim]
};

struct PlannerConfig {
  Method method = Method::kCem;
  int64_t horizon = 0;
  int64_t action_dim = 0;
  int64_t population = 0;
  int64_t elites = 0;         // CEM: refit set size; MPPI: 0 weighs the whole population
  int64_t iterations = 1;
  std::vector<double> action_low;   // [action_dim]
  std::vector<double> action_high;  // [action_dim]
  std::vector<double> init_std;     // [action_dim]: the std of a fresh plan
  double min_std = 0.0;             // floor of the refitted std
  double alpha = 0.0;               // smoothing: new = alpha * old + (1 - alpha) * refit
  double discount = 1.0;
  double temperature = 1.0;         // MPPI
  bool update_std = true;           // MPPI: refit the std from the weights (else keep init_std)
  bool return_mean = false;         // return the final mean instead of the best sequence seen
  double noise_beta = 0.0;          // iCEM coloured-noise exponent (0: white)
  double keep_elites = 0.0;         // iCEM: fraction of the elites carried to the next iteration
  int64_t ensemble_size = 0;        // E; 0 = not an ensemble
  Propagation propagation = Propagation::kNone;
  int64_t particles = 1;            // rollouts per candidate (their returns are averaged)
  double disagreement_penalty = 0.0;  // expectation only: cost per unit of member disagreement
  GoalMetric goal_metric = GoalMetric::kL2;
  double goal_weight = 1.0;
  bool goal_terminal_only = true;   // goal cost on s_H only (else on every step, discounted)
  int64_t policy_samples = 0;       // population slots seeded by the policy prior
  uint64_t seed = 0;
};

struct PlanInputs {
  at::Tensor state;        // [B, ...]
  at::Tensor goal;         // [B, ...] (same trailing shape as the state) or undefined
  at::Tensor warm_mean;    // [B, H, A] the previous plan's mean, shifted by `shift`, or undefined
  at::Tensor warm_elites;  // [B, K, H, A] the previous plan's elites, shifted too, or undefined
  int64_t shift = 1;
  at::Tensor noise;        // injected N(0, 1) noise [iterations, H, B, population, A] or undefined
};

struct PlanResult {
  at::Tensor actions;        // [B, H, A] the plan (best sequence seen, or the final mean)
  at::Tensor returns;        // [B] its predicted return (MPPI mean: the weighted population return)
  at::Tensor mean;           // [B, H, A] final mean
  at::Tensor std;            // [B, H, A] final standard deviation
  at::Tensor elites;         // [B, K, H, A] the last iteration's elites, best first
  at::Tensor elite_returns;  // [B, K]
};

class Planner {
 public:
  // Validates the configuration; throws std::invalid_argument naming the offending argument.
  explicit Planner(PlannerConfig config);

  const PlannerConfig& config() const { return config_; }
  int64_t kept_elites() const { return kept_elites_; }

  // Restarts the noise streams (the next plans repeat those after construction with this seed).
  void Seed(uint64_t seed);

  PlanResult Plan(const Models& models, const PlanInputs& inputs);

  // Predicted returns [B, n] of given action sequences [B, n, H, A] (clipped to the bounds),
  // propagated like the planner's candidates.
  at::Tensor Evaluate(const Models& models, const at::Tensor& state, const at::Tensor& actions,
                      const at::Tensor& goal);

  // The coloured-noise filter in use ([H, H] lower triangular; identity for white noise).
  const std::vector<double>& noise_filter() const { return filter_; }

 private:
  // Rolls `n` candidates per problem through the model. actions: [H, B, n, A] contiguous. With
  // fill_from_policy the policy picks the actions, which are written into `actions`.
  at::Tensor Rollout(const Models& models, const at::Tensor& state, const at::Tensor& goal,
                     at::Tensor& actions, bool fill_from_policy);
  at::Tensor StandardNormal(at::IntArrayRef shape, const at::TensorOptions& options);
  at::Generator& DeviceGenerator(const at::Device& device);

  PlannerConfig config_;
  int64_t kept_elites_ = 0;
  std::vector<double> filter_;
  NormalSampler sampler_;
  std::optional<at::Generator> device_generator_;
  uint64_t generator_draws_ = 0;
};

// Shifts a plan [B, ..., H, A] left by `steps` along the time dimension (dim -2), filling the last
// `steps` steps with `fill` ([A]). steps >= H gives all fill.
at::Tensor ShiftPlan(const at::Tensor& plan, int64_t steps, const at::Tensor& fill);

}  // namespace wmfast::cem

#endif  // WMFAST_CEM_PLANNER_H_
