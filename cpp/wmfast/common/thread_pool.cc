#include "wmfast/common/thread_pool.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>

namespace wmfast {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

template <typename Done>
bool ThreadPool::SpinUntil(const Done& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
  while (!done()) {
    for (int i = 0; i < 64; ++i) CpuRelax();
    if (std::chrono::steady_clock::now() > deadline) return done();
  }
  return true;
}

ThreadPool::ThreadPool(int num_threads) {
  for (int worker = 1; worker < std::max(num_threads, 1); ++worker) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  start_cv_.notify_all();
  for (auto& worker : workers_) worker.join();
}

void ThreadPool::ParallelFor(int64_t n,
                             const std::function<void(int, int64_t, int64_t)>& fn) {
  const int shards = num_threads();
  if (shards == 1 || n <= 1) {
    fn(0, 0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    task_ = &fn;
    task_size_ = n;
    next_shard_ = 1;
    pending_.store(shards - 1, std::memory_order_relaxed);
    error_ = nullptr;
    generation_.fetch_add(1, std::memory_order_release);
  }
  start_cv_.notify_all();
  std::exception_ptr local_error;
  try {
    auto [begin, end] = ShardRange(n, 0, shards);
    fn(0, begin, end);
  } catch (...) {
    local_error = std::current_exception();
  }
  // The shards no worker has claimed yet (all of them when the workers are still asleep).
  while (true) {
    int shard;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (next_shard_ >= shards) break;
      shard = next_shard_++;
    }
    try {
      auto [begin, end] = ShardRange(n, shard, shards);
      fn(shard, begin, end);
    } catch (...) {
      if (!local_error) local_error = std::current_exception();
    }
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
  auto done = [this] { return pending_.load(std::memory_order_acquire) == 0; };
  std::unique_lock<std::mutex> lock(mutex_);
  if (!done()) {
    lock.unlock();
    SpinUntil(done);
    lock.lock();
    done_cv_.wait(lock, done);
  }
  task_ = nullptr;
  if (local_error) std::rethrow_exception(local_error);
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::WorkerLoop() {
  uint64_t seen_generation = 0;
  while (true) {
    auto started = [&] { return generation_.load(std::memory_order_acquire) != seen_generation; };
    const std::function<void(int, int64_t, int64_t)>* task;
    int64_t n;
    int claimed;
    {
      SpinUntil(started);
      std::unique_lock<std::mutex> lock(mutex_);
      start_cv_.wait(lock, started);
      if (stopping_) return;
      // Reading the task and claiming a shard under one lock: a worker that woke late claims
      // from the task it read, never from a later one.
      seen_generation = generation_.load(std::memory_order_relaxed);
      task = task_;
      n = task_size_;
      if (task == nullptr || next_shard_ >= num_threads()) continue;  // the caller took them
      claimed = next_shard_++;
    }
    std::exception_ptr error;
    try {
      auto [begin, end] = ShardRange(n, claimed, num_threads());
      (*task)(claimed, begin, end);
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (error && !error_) error_ = error;
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) done_cv_.notify_all();
  }
}

namespace {

struct PoolCache {
  // Enough for a few searches running at once in one process; more idle pools are ended.
  static constexpr size_t kMaxIdle = 4;
  std::mutex mutex;
  pid_t pid = getpid();
  std::vector<ThreadPool*> idle;
};

PoolCache& Cache() {
  static PoolCache* cache = new PoolCache;  // never destroyed: idle threads sleep until exit
  return *cache;
}

}  // namespace

CachedPool AcquirePool(int num_threads) {
  if (num_threads <= 1) return CachedPool(new ThreadPool(1));  // no threads: nothing to cache
  PoolCache& cache = Cache();
  {
    std::lock_guard<std::mutex> lock(cache.mutex);
    if (cache.pid != getpid()) {
      // A forked child: the cached pools' threads are not in this process; abandon the pools
      // (their destructors would wait for those threads).
      cache.idle.clear();
      cache.pid = getpid();
    }
    for (auto it = cache.idle.begin(); it != cache.idle.end(); ++it) {
      if ((*it)->num_threads() == num_threads) {
        ThreadPool* pool = *it;
        cache.idle.erase(it);
        return CachedPool(pool);
      }
    }
  }
  return CachedPool(new ThreadPool(num_threads));
}

void ReturnToCache::operator()(ThreadPool* pool) const {
  PoolCache& cache = Cache();
  {
    std::lock_guard<std::mutex> lock(cache.mutex);
    if (pool->num_threads() > 1 && cache.pid == getpid() &&
        cache.idle.size() < PoolCache::kMaxIdle) {
      cache.idle.push_back(pool);
      return;
    }
  }
  delete pool;
}

}  // namespace wmfast
