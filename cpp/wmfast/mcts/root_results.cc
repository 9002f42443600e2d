#include "wmfast/mcts/root_results.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace wmfast::mcts {

void VisitPolicy(const int32_t* visits, int n, float* policy) {
  int32_t total = 0;
  for (int k = 0; k < n; ++k) total += visits[k];
  for (int k = 0; k < n; ++k) {
    policy[k] = total > 0 ? static_cast<float>(visits[k]) / total : 1.0f / n;
  }
}

int ChooseByVisits(const int32_t* visits, int n, const uint8_t* skip, float temperature,
                   Rng rng) {
  int32_t max_visit = 0;
  for (int k = 0; k < n; ++k) max_visit = std::max(max_visit, visits[k]);
  if (temperature == 0.0f || max_visit == 0) {
    int best = -1;
    for (int k = 0; k < n; ++k) {
      if (skip != nullptr && skip[k]) continue;
      if (best < 0 || visits[k] > visits[best]) best = k;
    }
    return std::max(best, 0);
  }
  // Proportional to visits^(1/T), computed relative to the largest count (no overflow).
  std::vector<double> weights(n, 0.0);
  double sum = 0.0;
  for (int k = 0; k < n; ++k) {
    if (visits[k] == 0 || (skip != nullptr && skip[k])) continue;
    const double ratio = static_cast<double>(visits[k]) / max_visit;
    sum += weights[k] = temperature == 1.0f ? ratio : std::pow(ratio, 1.0 / temperature);
  }
  double u = rng.Uniform() * sum;
  int chosen = 0;
  for (int k = 0; k < n; ++k) {
    if (weights[k] == 0.0) continue;
    chosen = k;
    if (u < weights[k]) break;
    u -= weights[k];
  }
  return chosen;
}

}  // namespace wmfast::mcts
