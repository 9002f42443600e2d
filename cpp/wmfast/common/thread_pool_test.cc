#include "wmfast/common/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace wmfast {
namespace {

TEST(ThreadPoolTest, ParallelForRunsEveryShardOnce) {
  ThreadPool pool(3);
  for (int64_t n : {0, 1, 2, 3, 10, 1000}) {
    std::vector<std::atomic<int>> hits(n);
    std::atomic<int> calls{0};
    pool.ParallelFor(n, [&](int shard, int64_t begin, int64_t end) {
      if (n > 1) EXPECT_EQ(ShardRange(n, shard, 3), std::make_pair(begin, end));
      for (int64_t i = begin; i < end; ++i) hits[i] += 1;
      calls += 1;
    });
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i], 1) << "n=" << n << " i=" << i;
    EXPECT_EQ(calls, n <= 1 ? 1 : 3);
  }
}

TEST(ThreadPoolTest, WorkersRunTasksAfterSleeping) {
  // No task for longer than the workers spin: they sleep, and the next task wakes them.
  ThreadPool pool(2);
  for (int round = 0; round < 5; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::atomic<int> calls{0};
    pool.ParallelFor(2, [&](int, int64_t, int64_t) { calls += 1; });
    ASSERT_EQ(calls, 2);
  }
}

TEST(ThreadPoolTest, ExceptionsReachTheCaller) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.ParallelFor(10,
                                [](int shard, int64_t, int64_t) {
                                  if (shard == 1) throw std::invalid_argument("shard 1");
                                }),
               std::invalid_argument);
  // The pool still works afterwards.
  std::atomic<int64_t> sum{0};
  pool.ParallelFor(10, [&](int, int64_t begin, int64_t end) { sum += end - begin; });
  EXPECT_EQ(sum, 10);
}

}  // namespace
}  // namespace wmfast
