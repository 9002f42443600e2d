#include "wmfast/tabular/planning.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "wmfast/common/check.h"
#include "wmfast/common/thread_pool.h"

namespace wmfast::tabular {
namespace {

// The Bellman backup with everything that does not depend on V folded in:
//   Q(p) = base[p] + scale[p] * (prior * sum(V) + sum_e count[e] * V[next[e]])
// with scale = gamma / (N + prior * S) and count the edge's continuing (non-terminal) count.
// Counts are stored as uint32 when they fit (8 bytes an edge with the int32 successor: sweeps
// over big models are memory-bound), as double otherwise. Unknown pairs keep only
// base = unknown_value; edges that always terminate are dropped.
template <typename Count>
struct Backup {
  int64_t num_states, num_actions;
  double prior;
  std::vector<int64_t> offsets;  // [S*A+1]
  std::vector<int32_t> next;     // [E']
  std::vector<Count> count;      // [E']
  std::vector<double> base;      // [S*A]
  std::vector<double> scale;     // [S*A]
  int64_t edges = 0;

  Backup(const CompiledModel& model, const PlanningOptions& options)
      : num_states(model.num_states), num_actions(model.num_actions), prior(model.prior) {
    const int64_t num_pairs = model.num_pairs();
    const double S = static_cast<double>(model.num_states);
    offsets.assign(num_pairs + 1, 0);
    base.assign(num_pairs, options.unknown_value);
    scale.assign(num_pairs, 0.0);
    next.reserve(model.num_edges());
    count.reserve(model.num_edges());
    for (int64_t p = 0; p < num_pairs; ++p) {
      if (model.visits[p] >= options.min_visits) {
        const double visits = static_cast<double>(model.visits[p]);
        base[p] = model.mean_reward[p] + options.bonus / std::sqrt(std::max(visits, 1.0));
        if (visits + model.prior * S > 0) scale[p] = options.gamma / (visits + model.prior * S);
        for (int64_t e = model.pair_offsets[p]; e < model.pair_offsets[p + 1]; ++e) {
          const int64_t continuing = model.count[e] - model.terminal_count[e];
          if (continuing == 0) continue;
          next.push_back(model.next_state[e]);
          count.push_back(static_cast<Count>(continuing));
        }
      }
      offsets[p + 1] = static_cast<int64_t>(next.size());
    }
    edges = static_cast<int64_t>(next.size());
  }

  double Q(int64_t p, const double* values, double value_sum) const {
    double expected = prior * value_sum;
    for (int64_t e = offsets[p]; e < offsets[p + 1]; ++e) {
      expected += static_cast<double>(count[e]) * values[next[e]];
    }
    return base[p] + scale[p] * expected;
  }

  double MaxQ(int64_t s, const double* values, double value_sum) const {
    double best = -std::numeric_limits<double>::infinity();
    for (int64_t p = s * num_actions; p < (s + 1) * num_actions; ++p) {
      best = std::max(best, Q(p, values, value_sum));
    }
    return best;
  }

  // How many sweeps make a few milliseconds of work, between interrupt checks.
  int64_t SweepsPerCheck() const {
    return std::max<int64_t>(1, 2'000'000 / (edges + num_states * num_actions + 1));
  }
};

bool CountsFitUint32(const CompiledModel& model) {
  for (int64_t c : model.count) {
    if (c > std::numeric_limits<uint32_t>::max()) return false;
  }
  return true;
}

void CheckOptions(const PlanningOptions& options) {
  WMFAST_CHECK_ARG(options.gamma >= 0.0 && options.gamma <= 1.0,
                   "gamma must be in [0, 1], got ", options.gamma);
  WMFAST_CHECK_ARG(options.tol > 0.0, "tol must be positive, got ", options.tol);
  WMFAST_CHECK_ARG(options.max_iters >= 1, "max_iters must be >= 1, got ", options.max_iters);
  WMFAST_CHECK_ARG(options.min_visits >= 0, "min_visits must be >= 0, got ", options.min_visits);
  WMFAST_CHECK_ARG(std::isfinite(options.unknown_value),
                   "the value of unknown pairs must be finite, got ", options.unknown_value);
  WMFAST_CHECK_ARG(std::isfinite(options.bonus) && options.bonus >= 0.0,
                   "bonus must be finite and >= 0, got ", options.bonus);
  WMFAST_CHECK_ARG(options.num_threads >= 1, "num_threads must be >= 1, got ",
                   options.num_threads);
}

std::vector<double> InitialValues(const CompiledModel& model, const PlanningOptions& options) {
  if (options.initial_values == nullptr) return std::vector<double>(model.num_states, 0.0);
  std::vector<double> values(options.initial_values, options.initial_values + model.num_states);
  for (int64_t s = 0; s < model.num_states; ++s) {
    WMFAST_CHECK_ARG(std::isfinite(values[s]), "initial_values[", s, "] = ", values[s],
                     " is not finite");
  }
  return values;
}

double Sum(const std::vector<double>& values) {
  double sum = 0.0;
  for (double v : values) sum += v;
  return sum;
}

// Fills q_values and the greedy policy from the final values.
template <typename Backup>
void Finish(const Backup& backup, Solution& solution) {
  const int64_t S = backup.num_states, A = backup.num_actions;
  const double value_sum = backup.prior > 0 ? Sum(solution.values) : 0.0;
  solution.q_values.resize(S * A);
  solution.policy.resize(S);
  for (int64_t s = 0; s < S; ++s) {
    int64_t best = 0;
    for (int64_t a = 0; a < A; ++a) {
      const double q = backup.Q(s * A + a, solution.values.data(), value_sum);
      solution.q_values[s * A + a] = q;
      if (q > solution.q_values[s * A + best]) best = a;
    }
    solution.policy[s] = best;
  }
}

// One in-place sweep over all states; returns the sup-norm change.
template <typename Backup>
double GaussSeidelSweep(const Backup& backup, std::vector<double>& values, double& value_sum) {
  double residual = 0.0;
  for (int64_t s = 0; s < backup.num_states; ++s) {
    const double updated = backup.MaxQ(s, values.data(), value_sum);
    const double change = updated - values[s];
    residual = std::max(residual, std::abs(change));
    value_sum += change;
    values[s] = updated;
  }
  return residual;
}

template <typename Count>
Solution RunValueIteration(const CompiledModel& model, const PlanningOptions& options) {
  const Backup<Count> backup(model, options);
  Solution solution;
  solution.values = InitialValues(model, options);
  const int64_t sweeps_per_check = backup.SweepsPerCheck();
  const bool jacobi = options.sweep == Sweep::kJacobi;
  const int num_threads = jacobi ? options.num_threads : 1;
  std::unique_ptr<ThreadPool> pool =
      num_threads > 1 ? std::make_unique<ThreadPool>(num_threads) : nullptr;
  std::vector<double> next_values(jacobi ? model.num_states : 0);
  std::vector<double> shard_residual(num_threads);
  double value_sum = Sum(solution.values);

  for (int64_t sweep = 1; sweep <= options.max_iters; ++sweep) {
    double residual = 0.0;
    if (!jacobi) {
      residual = GaussSeidelSweep(backup, solution.values, value_sum);
    } else {
      auto sweep_shard = [&](int shard, int64_t begin, int64_t end) {
        double shard_max = 0.0;
        for (int64_t s = begin; s < end; ++s) {
          next_values[s] = backup.MaxQ(s, solution.values.data(), value_sum);
          shard_max = std::max(shard_max, std::abs(next_values[s] - solution.values[s]));
        }
        shard_residual[shard] = shard_max;
      };
      if (pool) {
        pool->ParallelFor(model.num_states, sweep_shard);
      } else {
        sweep_shard(0, 0, model.num_states);
      }
      residual = *std::max_element(shard_residual.begin(), shard_residual.end());
      solution.values.swap(next_values);
      if (backup.prior > 0) value_sum = Sum(solution.values);
    }
    solution.iterations = sweep;
    solution.residual = residual;
    if (residual < options.tol) {
      solution.converged = true;
      break;
    }
    if (options.check_interrupt && sweep % sweeps_per_check == 0) options.check_interrupt();
  }
  Finish(backup, solution);
  return solution;
}

template <typename Count>
Solution RunPolicyIteration(const CompiledModel& model, const PlanningOptions& options) {
  const Backup<Count> backup(model, options);
  const int64_t S = model.num_states, A = model.num_actions;
  Solution solution;
  solution.values = InitialValues(model, options);
  Finish(backup, solution);  // the greedy policy of the initial values
  std::vector<int64_t> policy = solution.policy;
  const int64_t sweeps_per_check = backup.SweepsPerCheck();
  int64_t sweeps_since_check = 0;

  for (int64_t improvement = 1; improvement <= options.max_iters; ++improvement) {
    // Evaluate the policy: Gauss-Seidel sweeps of V(s) = Q(s, policy(s)).
    double value_sum = Sum(solution.values);
    for (int64_t sweep = 0; sweep < options.max_iters; ++sweep) {
      double residual = 0.0;
      for (int64_t s = 0; s < S; ++s) {
        const double updated = backup.Q(s * A + policy[s], solution.values.data(), value_sum);
        residual = std::max(residual, std::abs(updated - solution.values[s]));
        value_sum += updated - solution.values[s];
        solution.values[s] = updated;
      }
      ++solution.evaluation_sweeps;
      if (options.check_interrupt && ++sweeps_since_check >= sweeps_per_check) {
        options.check_interrupt();
        sweeps_since_check = 0;
      }
      if (residual < options.tol) break;
    }
    // Improve greedily; an action changes only when it is better by more than rounding, so ties
    // cannot make the policy cycle.
    bool changed = false;
    double bellman_residual = 0.0;
    for (int64_t s = 0; s < S; ++s) {
      double current = backup.Q(s * A + policy[s], solution.values.data(), value_sum);
      int64_t best_action = policy[s];
      double best = current;
      for (int64_t a = 0; a < A; ++a) {
        const double q = backup.Q(s * A + a, solution.values.data(), value_sum);
        if (q > best + 1e-12 * (1.0 + std::abs(best))) {
          best = q;
          best_action = a;
        }
      }
      bellman_residual = std::max(bellman_residual, std::abs(best - solution.values[s]));
      changed |= best_action != policy[s];
      policy[s] = best_action;
    }
    solution.iterations = improvement;
    solution.residual = bellman_residual;
    if (!changed) {
      solution.converged = true;
      break;
    }
  }
  Finish(backup, solution);  // reports the lowest-index greedy action, as value iteration does
  return solution;
}

// A solution is returned only when every value and Q-value is finite: rewards near float64's
// limit (or an unbounded undiscounted return) overflow, and NaN residuals would otherwise pass
// for convergence.
Solution Checked(Solution solution, const CompiledModel& model, const PlanningOptions& options,
                 const char* method) {
  double bad = solution.residual;
  const char* where = "the residual";
  for (double v : solution.q_values) {
    if (!std::isfinite(v)) bad = v, where = "Q";
  }
  for (double v : solution.values) {
    if (!std::isfinite(v)) bad = v, where = "V";
  }
  if (std::isfinite(bad)) return solution;
  double largest = 0.0;
  for (double r : model.mean_reward) largest = std::max(largest, std::abs(r));
  throw std::invalid_argument(StrCat(
      method, " overflowed: the values are not finite (", where, " = ", bad, ") with gamma=", options.gamma, " and mean rewards up to |r| = ", largest,
      "; values up to |r| / (1 - gamma) must stay within float64 (rescale the rewards or lower "
      "gamma)"));
}

}  // namespace

Solution ValueIteration(const CompiledModel& model, const PlanningOptions& options) {
  CheckOptions(options);
  return Checked(CountsFitUint32(model) ? RunValueIteration<uint32_t>(model, options)
                                        : RunValueIteration<double>(model, options),
                 model, options, "value iteration");
}

Solution PolicyIteration(const CompiledModel& model, const PlanningOptions& options) {
  CheckOptions(options);
  return Checked(CountsFitUint32(model) ? RunPolicyIteration<uint32_t>(model, options)
                                        : RunPolicyIteration<double>(model, options),
                 model, options, "policy iteration");
}

}  // namespace wmfast::tabular
