#include "wmfast/mcts/simulation_loop.h"

#include <algorithm>
#include <atomic>
#include <thread>

namespace wmfast::mcts {

ThreadPool& SearchPool(CachedPool& pool, int64_t batch_size, int num_threads) {
  if (pool == nullptr) {
    // A shard below ~kMinTreesPerThread trees makes model calls too small to be worth a thread.
    constexpr int64_t kMinTreesPerThread = 32;
    const int64_t threads =
        std::clamp<int64_t>(batch_size / kMinTreesPerThread, 1, std::max(num_threads, 1));
    pool = AcquirePool(static_cast<int>(threads));
  }
  return *pool;
}

void RunSimulations(CachedPool& pool, int64_t batch_size, int num_simulations, bool sharded,
                    const SimulationSteps& steps, const std::function<void()>& poll) {
  ThreadPool& threads = *pool;
  struct ReleasePool {
    CachedPool& pool;
    ~ReleasePool() { pool.reset(); }
  } release{pool};
  if (sharded && threads.num_threads() > 1) {
    std::atomic<bool> failed{false};
    // Whichever shards the calling thread runs poll (a shard is not tied to a thread: see
    // ThreadPool), so Ctrl-C is seen even when the caller runs every shard itself.
    const std::thread::id caller = std::this_thread::get_id();
    threads.ParallelFor(batch_size, [&](int, int64_t begin, int64_t end) {
      try {
        for (int sim = 0; sim < num_simulations; ++sim) {
          steps.advance(begin, end, sim);
          if (poll && std::this_thread::get_id() == caller) poll();
          if (failed.load(std::memory_order_relaxed)) return;
          steps.evaluate(begin, end, nullptr);
        }
        steps.finish(begin, end);
      } catch (...) {
        failed.store(true, std::memory_order_relaxed);
        throw;
      }
    });
    return;
  }
  ThreadPool* helpers = threads.num_threads() > 1 ? &threads : nullptr;
  for (int sim = 0; sim < num_simulations; ++sim) {
    threads.ParallelFor(batch_size,
                        [&](int, int64_t begin, int64_t end) { steps.advance(begin, end, sim); });
    if (poll) poll();
    steps.evaluate(0, batch_size, helpers);
  }
  threads.ParallelFor(batch_size, [&](int, int64_t begin, int64_t end) { steps.finish(begin, end); });
}

}  // namespace wmfast::mcts
