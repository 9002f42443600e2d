#include "wmfast/common/block_cache.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <new>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace wmfast {
namespace {

// Blocks of 2 MB and more are 2 MB-aligned multiples of it, so transparent huge pages can back
// them (fewer TLB misses while a search walks its trees).
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kLineBytes = 64;

struct IdleBlock {
  void* data;
  size_t capacity;
};

struct Cache {
  std::mutex mutex;
  std::deque<IdleBlock> idle;  // oldest first
  size_t idle_bytes = 0;
};

Cache& TheCache() {
  static Cache* cache = new Cache();  // never destroyed: blocks may be released at exit
  return *cache;
}

size_t RoundUp(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }

}  // namespace

void* AcquireBlock(size_t bytes, size_t* capacity) {
  bytes = std::max<size_t>(bytes, kLineBytes);
  {
    // The smallest idle block that fits without wasting more than half of it.
    Cache& cache = TheCache();
    std::lock_guard<std::mutex> lock(cache.mutex);
    auto best = cache.idle.end();
    for (auto it = cache.idle.begin(); it != cache.idle.end(); ++it) {
      if (it->capacity >= bytes && it->capacity <= 2 * bytes &&
          (best == cache.idle.end() || it->capacity < best->capacity)) {
        best = it;
      }
    }
    if (best != cache.idle.end()) {
      void* data = best->data;
      *capacity = best->capacity;
      cache.idle_bytes -= best->capacity;
      cache.idle.erase(best);
      return data;
    }
  }
  const size_t alignment = bytes >= kHugePage ? kHugePage : kLineBytes;
  *capacity = RoundUp(bytes, alignment);
  void* data = std::aligned_alloc(alignment, *capacity);
  if (data == nullptr) throw std::bad_alloc();
#ifdef __linux__
  // Where transparent huge pages are opt-in ("madvise", a common default), opt in: a search
  // touches its trees and latents at random, and with 4 KB pages nearly every such access
  // missed the TLB. Advice only: failure changes nothing.
  if (alignment == kHugePage) madvise(data, *capacity, MADV_HUGEPAGE);
#endif
  return data;
}

void ReleaseBlock(void* block, size_t capacity) {
  if (block == nullptr) return;
  if (capacity > kMaxCachedBytes) {
    std::free(block);
    return;
  }
  Cache& cache = TheCache();
  std::deque<IdleBlock> evicted;
  {
    std::lock_guard<std::mutex> lock(cache.mutex);
    cache.idle.push_back({block, capacity});
    cache.idle_bytes += capacity;
    while (cache.idle_bytes > kMaxCachedBytes) {
      evicted.push_back(cache.idle.front());
      cache.idle_bytes -= cache.idle.front().capacity;
      cache.idle.pop_front();
    }
  }
  for (const IdleBlock& b : evicted) std::free(b.data);
}

}  // namespace wmfast
