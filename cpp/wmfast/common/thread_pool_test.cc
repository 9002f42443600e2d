#include "wmfast/common/thread_pool.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
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

TEST(ThreadPoolTest, ShardsAreClaimedOnceAcrossManyQuickTasks) {
  // Workers that wake late find the caller has taken their shards, or claim shards of a later
  // task: every shard of every task still runs exactly once, shard 0 on the calling thread.
  for (int threads : {2, 4}) {
    ThreadPool pool(threads);
    const std::thread::id caller = std::this_thread::get_id();
    int caller_took_others = 0;  // tasks where the caller ran a worker's shard (scheduling decides)
    for (int task = 0; task < 20000; ++task) {
      std::vector<std::atomic<int>> runs(threads);
      std::atomic<bool> shard0_on_caller{false};
      std::atomic<int> on_caller{0};
      pool.ParallelFor(threads * 3, [&](int shard, int64_t begin, int64_t end) {
        EXPECT_EQ(ShardRange(threads * 3, shard, threads), std::make_pair(begin, end));
        const bool here = std::this_thread::get_id() == caller;
        if (shard == 0) shard0_on_caller = here;
        on_caller += here;
        runs[shard] += 1;
      });
      for (int shard = 0; shard < threads; ++shard) {
        ASSERT_EQ(runs[shard], 1) << "threads=" << threads << " task=" << task;
      }
      ASSERT_TRUE(shard0_on_caller);
      caller_took_others += on_caller > 1;
    }
    RecordProperty("caller_took_other_shards_" + std::to_string(threads), caller_took_others);
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

TEST(ThreadPoolTest, CachedPoolsAreReused) {
  ThreadPool* first = nullptr;
  {
    CachedPool pool = AcquirePool(2);
    first = pool.get();
    std::atomic<int> calls{0};
    pool->ParallelFor(2, [&](int, int64_t, int64_t) { calls += 1; });
    EXPECT_EQ(calls, 2);
  }
  CachedPool again = AcquirePool(2);
  EXPECT_EQ(again.get(), first);
  CachedPool other = AcquirePool(2);  // the cached one is taken: a new pool
  EXPECT_NE(other.get(), first);
  EXPECT_EQ(other->num_threads(), 2);
  EXPECT_EQ(AcquirePool(3)->num_threads(), 3);
}

TEST(ThreadPoolTest, ForkedChildStartsNewPools) {
  { CachedPool warm = AcquirePool(2); }  // an idle cached pool whose thread the child lacks
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    CachedPool pool = AcquirePool(2);
    std::atomic<int> calls{0};
    pool->ParallelFor(2, [&](int, int64_t, int64_t) { calls += 1; });
    _exit(calls == 2 ? 0 : 1);
  }
  // The child would hang on a pool without threads: wait for it at most 10 s.
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 1000 && done == 0; ++i) {
    done = waitpid(child, &status, WNOHANG);
    if (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (done == 0) kill(child, SIGKILL), waitpid(child, &status, 0);
  ASSERT_NE(done, 0) << "the forked child hung on a cached pool";
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace wmfast
