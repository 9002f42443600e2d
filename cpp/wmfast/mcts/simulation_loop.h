// The simulation loop shared by the tree searches (Search, StochasticSearch, SampledSearch): how
// a search's simulations and model calls are spread over its threads.
//
// A search over B independent trees alternates tree work (back up the last simulation, select
// the next leaves) and model calls on those leaves. Two schedules:
//  - one model call per simulation for all trees, the tree work between calls split over the
//    threads (the only choice with a model that takes one call at a time, such as a Python
//    callback);
//  - sharded: each thread searches its own contiguous shard of trees from start to end with its
//    own model calls (a CPU native model with a runner per thread), with no barrier between
//    simulations, so one shard's tree work overlaps another's model call.
// Trees are independent, so both give the same trees, provided the model computes each row of a
// batch independently of the others.
#ifndef WMFAST_MCTS_SIMULATION_LOOP_H_
#define WMFAST_MCTS_SIMULATION_LOOP_H_

#include <cstdint>
#include <functional>

#include "wmfast/common/thread_pool.h"

namespace wmfast::mcts {

// The threads of a search over `batch_size` trees (at most num_threads, counting the caller;
// fewer for small batches), taken from the process's cache of pools when `pool` is empty.
ThreadPool& SearchPool(CachedPool& pool, int64_t batch_size, int num_threads);

// A search's steps, each over the trees [begin, end).
struct SimulationSteps {
  // Backs up simulation sim - 1 (when sim > 0) and selects the leaves of simulation sim.
  std::function<void(int64_t begin, int64_t end, int sim)> advance;
  // Runs the model on the trees' leaves (one or more calls); `helpers` are threads idle during
  // the call that the evaluator may use (model::LeafBatch::helpers), or nullptr.
  std::function<void(int64_t begin, int64_t end, ThreadPool* helpers)> evaluate;
  // Backs up the last simulation and computes the trees' results.
  std::function<void(int64_t begin, int64_t end)> finish;
};

// Runs num_simulations simulations of `steps` over the trees [0, batch_size) on the threads of
// `pool` (SearchPool), sharded when `sharded` (the evaluators take pool.num_threads() concurrent
// calls), then returns the threads to the cache: a finished search may be kept for a long time,
// and its successor reuses them. `poll` (may be empty) runs between simulations on the calling
// thread and may throw to stop the search; a failing shard makes the others stop at their next
// simulation.
void RunSimulations(CachedPool& pool, int64_t batch_size, int num_simulations, bool sharded,
                    const SimulationSteps& steps, const std::function<void()>& poll);

}  // namespace wmfast::mcts

#endif  // WMFAST_MCTS_SIMULATION_LOOP_H_
