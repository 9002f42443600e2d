// Root results shared by the tree searches (search.cc, sampled_search.cc): the visit
// distribution and the final action, over a root's n children (A actions, or K samples).
#ifndef WMFAST_MCTS_ROOT_RESULTS_H_
#define WMFAST_MCTS_ROOT_RESULTS_H_

#include <cstdint>

#include "wmfast/mcts/random.h"

namespace wmfast::mcts {

// policy[k] = visits[k] / (sum of visits) over n children; 1/n each when none was visited.
void VisitPolicy(const int32_t* visits, int n, float* policy);

// The final action among n children: the most visited (first maximum) when temperature is 0 or
// no child was visited, else sampled from `rng` with probability proportional to
// visits^(1/temperature). Children with skip[k] set (nullptr: none) are never chosen; at least
// one child must be allowed.
int ChooseByVisits(const int32_t* visits, int n, const uint8_t* skip, float temperature, Rng rng);

}  // namespace wmfast::mcts

#endif  // WMFAST_MCTS_ROOT_RESULTS_H_
