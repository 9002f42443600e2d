#include "wmfast/mcts/seq_halving.h"

#include <algorithm>
#include <cmath>

namespace wmfast::mcts {

std::vector<int> ConsideredVisitSequence(int max_num_considered_actions, int num_simulations) {
  std::vector<int> sequence;
  if (max_num_considered_actions <= 1) {
    for (int i = 0; i < num_simulations; ++i) sequence.push_back(i);
    return sequence;
  }
  const int log2max = static_cast<int>(std::ceil(std::log2(max_num_considered_actions)));
  std::vector<int> visits(max_num_considered_actions, 0);
  int num_considered = max_num_considered_actions;
  while (static_cast<int>(sequence.size()) < num_simulations) {
    const int num_extra_visits = std::max(
        1, static_cast<int>(num_simulations / static_cast<double>(log2max * num_considered)));
    for (int extra = 0; extra < num_extra_visits; ++extra) {
      sequence.insert(sequence.end(), visits.begin(), visits.begin() + num_considered);
      for (int i = 0; i < num_considered; ++i) ++visits[i];
    }
    num_considered = std::max(2, num_considered / 2);
  }
  sequence.resize(num_simulations);
  return sequence;
}

std::vector<std::vector<int>> ConsideredVisitTable(int max_num_considered_actions,
                                                   int num_simulations) {
  std::vector<std::vector<int>> table;
  for (int m = 0; m <= max_num_considered_actions; ++m) {
    table.push_back(ConsideredVisitSequence(m, num_simulations));
  }
  return table;
}

}  // namespace wmfast::mcts
