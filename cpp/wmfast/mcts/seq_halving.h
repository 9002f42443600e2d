// Sequential Halving schedules for Gumbel MuZero's root (Karnin, Koren & Somekh, "Almost optimal
// exploration in multi-armed bandits", ICML 2013; Danihelka et al., "Policy improvement by
// planning with Gumbel", ICLR 2022). Same sequences as mctx's seq_halving.py.
#ifndef WMFAST_MCTS_SEQ_HALVING_H_
#define WMFAST_MCTS_SEQ_HALVING_H_

#include <vector>

namespace wmfast::mcts {

// The visit count a root action must have to be visited at each of the num_simulations
// simulations, when max_num_considered_actions actions are considered. Length num_simulations.
std::vector<int> ConsideredVisitSequence(int max_num_considered_actions, int num_simulations);

// ConsideredVisitSequence(m, num_simulations) for m = 0..max_num_considered_actions.
std::vector<std::vector<int>> ConsideredVisitTable(int max_num_considered_actions,
                                                   int num_simulations);

}  // namespace wmfast::mcts

#endif  // WMFAST_MCTS_SEQ_HALVING_H_
