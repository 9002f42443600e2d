// A small fixed pool of worker threads for data-parallel loops over independent items (trees,
// states). The core never uses OpenMP: torch ships its own libgomp, and two runtimes in one
// process fight over the cores.
//
// A search calls ParallelFor once per simulation, between model calls; waking a sleeping thread
// takes tens of microseconds, as long as the tree work it shares. So waiting threads first spin
// for kSpinMicros (a free model's calls are shorter than that), then sleep (a real model's calls
// are long, and a spinning thread would take a core from the model).
//
// Shards are claimed, not assigned: the caller runs shard 0, then any shard no worker has
// claimed yet. When other processes keep the cores busy, a sleeping worker can take
// milliseconds to be scheduled; with fixed shards every ParallelFor waited that long (a search
// with two threads then ran 2-6x slower than with one on a loaded 2-core machine), now the
// caller does the work itself and waits only for shards a worker has started.
//
// Thread safety: ParallelFor may be called from one thread at a time per pool.
#ifndef WMFAST_COMMON_THREAD_POOL_H_
#define WMFAST_COMMON_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace wmfast {

class ThreadPool {
 public:
  // num_threads counts the calling thread: a pool of 1 runs everything inline.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Splits [0, n) into num_threads() contiguous shards and runs fn(shard, begin, end) on each,
  // the calling thread taking shard 0 (and any shard no worker has claimed when it is done; a
  // shard runs exactly once, on one thread, but not necessarily on the same thread each time).
  // Returns when all are done; rethrows the first exception.
  void ParallelFor(int64_t n, const std::function<void(int shard, int64_t begin, int64_t end)>& fn);

 private:
  void WorkerLoop();
  // Spins until done() or kSpinMicros pass; returns done().
  template <typename Done>
  static bool SpinUntil(const Done& done);

  static constexpr int kSpinMicros = 50;

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(int, int64_t, int64_t)>* task_ = nullptr;
  int64_t task_size_ = 0;
  int next_shard_ = 0;                   // the next unclaimed shard of the task (under mutex_)
  std::atomic<uint64_t> generation_{0};  // bumped (under mutex_) for each task
  std::atomic<int> pending_{0};          // shards 1.. not finished yet
  bool stopping_ = false;
  std::exception_ptr error_;
};

// A pool from a process-wide cache of idle pools, returned to it when the handle goes: code that
// runs many short parallel jobs (a search per environment step) reuses its threads, and their
// thread-local state (torch's intra-op settings, BLAS buffers), instead of starting new ones each
// time. Idle pools' threads sleep. A process forked from one holding cached pools starts afresh
// (the child has the pools but not their threads).
struct ReturnToCache {
  void operator()(ThreadPool* pool) const;
};
using CachedPool = std::unique_ptr<ThreadPool, ReturnToCache>;
CachedPool AcquirePool(int num_threads);

// The shard [begin, end) of [0, n) that ParallelFor gives to shard `shard` of `num_shards`.
inline std::pair<int64_t, int64_t> ShardRange(int64_t n, int shard, int num_shards) {
  return {n * shard / num_shards, n * (shard + 1) / num_shards};
}

}  // namespace wmfast

#endif  // WMFAST_COMMON_THREAD_POOL_H_
