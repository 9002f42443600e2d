// Planning on a learned tabular model: value iteration and policy iteration on the sparse
// estimate p̂, r̂, τ̂ of a CompiledModel (tabular_model.h), with R-MAX style optimism.
//
//   Q(s,a) = r̂(s,a) + gamma * sum_s' p̂(s'|s,a) (1 - τ̂(s,a,s')) V(s')    if N(s,a) >= min_visits
//   Q(s,a) = unknown_value                                              otherwise
//   V(s)   = max_a Q(s,a)
//
// With unknown_value = r_max / (1 - gamma) this is R-MAX (Brafman & Tennenholtz, 2002): pairs
// seen fewer than min_visits times look maximally rewarding, so a greedy agent goes to try them.
// A bonus adds bonus / sqrt(N(s,a)) to r̂(s,a) (MBIE-EB, Strehl & Littman, 2008), so an agent
// keeps refining the estimates it is least sure of.
// A prior > 0 adds its uniform pseudo-counts without materialising them: the mass on unseen
// successors is prior / (N + prior * S) times the sum of V, one number per sweep.
//
// Value iteration sweeps Gauss-Seidel (in place, fewest sweeps, one thread) or Jacobi (from a
// copy, splittable over threads, the textbook iteration), and stops once the largest change of V
// in a sweep is below tol (sup norm).
#ifndef WMFAST_TABULAR_PLANNING_H_
#define WMFAST_TABULAR_PLANNING_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "wmfast/tabular/tabular_model.h"

namespace wmfast::tabular {

enum class Sweep { kGaussSeidel, kJacobi };

struct PlanningOptions {
  double gamma = 0.99;
  double tol = 1e-8;             // stop once max_s |V_new(s) - V_old(s)| < tol
  int64_t max_iters = 100000;    // sweeps (value iteration) or improvements (policy iteration)
  int64_t min_visits = 1;        // pairs visited fewer times are unknown
  double unknown_value = 0.0;    // Q of unknown pairs
  double bonus = 0.0;            // MBIE-EB: adds bonus / sqrt(N(s,a)) to the reward of known pairs
  Sweep sweep = Sweep::kGaussSeidel;
  int num_threads = 1;           // used by Jacobi sweeps
  const double* initial_values = nullptr;  // [S] warm start; zeros when null
  // Called every few milliseconds of work; may throw (e.g. Interrupted) to stop early.
  std::function<void()> check_interrupt;
};

struct Solution {
  std::vector<double> values;     // [S] V
  std::vector<double> q_values;   // [S*A] Q, pair p = s * A + a
  std::vector<int64_t> policy;    // [S] greedy action (lowest index on ties)
  int64_t iterations = 0;         // sweeps (VI) or policy improvements (PI)
  int64_t evaluation_sweeps = 0;  // PI only: sweeps spent evaluating policies
  double residual = 0.0;          // last sweep's sup-norm change of V
  bool converged = false;
};

// Throws std::invalid_argument for gamma outside [0, 1], tol <= 0, max_iters < 1, min_visits < 0
// or a non-finite unknown_value.
Solution ValueIteration(const CompiledModel& model, const PlanningOptions& options);

// Policy iteration with iterative (Gauss-Seidel) policy evaluation to tol; stops when the greedy
// policy no longer changes.
Solution PolicyIteration(const CompiledModel& model, const PlanningOptions& options);

}  // namespace wmfast::tabular

#endif  // WMFAST_TABULAR_PLANNING_H_
