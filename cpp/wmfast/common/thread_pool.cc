#include "wmfast/common/thread_pool.h"

#include <algorithm>

namespace wmfast {

ThreadPool::ThreadPool(int num_threads) {
  for (int shard = 1; shard < std::max(num_threads, 1); ++shard) {
    workers_.emplace_back([this, shard] { WorkerLoop(shard); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
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
    pending_ = shards - 1;
    error_ = nullptr;
    ++generation_;
  }
  start_cv_.notify_all();
  std::exception_ptr local_error;
  try {
    auto [begin, end] = ShardRange(n, 0, shards);
    fn(0, begin, end);
  } catch (...) {
    local_error = std::current_exception();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  done_cv_.wait(lock, [this] { return pending_ == 0; });
  task_ = nullptr;
  if (local_error) std::rethrow_exception(local_error);
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::WorkerLoop(int shard) {
  uint64_t seen_generation = 0;
  while (true) {
    const std::function<void(int, int64_t, int64_t)>* task;
    int64_t n;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      start_cv_.wait(lock, [&] { return stopping_ || generation_ != seen_generation; });
      if (stopping_) return;
      seen_generation = generation_;
      task = task_;
      n = task_size_;
    }
    std::exception_ptr error;
    try {
      auto [begin, end] = ShardRange(n, shard, num_threads());
      (*task)(shard, begin, end);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (error && !error_) error_ = error;
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }
}

}  // namespace wmfast
