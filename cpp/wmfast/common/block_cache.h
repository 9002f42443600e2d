// Large scratch blocks recycled across searches.
//
// A batched search works in a few MB of fresh memory (B=256 trees x 51 nodes x 18 actions is
// ~8 MB). Taken from the OS anew each time, every 4 KB page costs a fault and a kernel
// zero-fill, which took longer than the search itself; whether glibc hands back fresh pages
// depends on its mmap threshold, i.e. on the process's allocation history. So blocks freed by
// one search are kept (up to kMaxCachedBytes in all) and handed to the next that fits.
//
// Thread safety: all functions may be called from any thread.
#ifndef WMFAST_COMMON_BLOCK_CACHE_H_
#define WMFAST_COMMON_BLOCK_CACHE_H_

#include <cstddef>
#include <memory>

namespace wmfast {

// Idle blocks kept for reuse, in bytes; the oldest are freed beyond it.
inline constexpr size_t kMaxCachedBytes = size_t{512} << 20;

// A block of at least `bytes` bytes (uninitialised, 64-byte aligned); *capacity receives its
// actual size.
void* AcquireBlock(size_t bytes, size_t* capacity);
// Returns a block from AcquireBlock (with its capacity) for reuse.
void ReleaseBlock(void* block, size_t capacity);

// An owning handle: releases its block to the cache when destroyed.
class Block {
 public:
  Block() = default;
  explicit Block(size_t bytes) { data_ = AcquireBlock(bytes, &bytes_); }
  ~Block() { Reset(); }
  Block(Block&& other) noexcept : data_(other.data_), bytes_(other.bytes_) {
    other.data_ = nullptr;
    other.bytes_ = 0;
  }
  Block& operator=(Block&& other) noexcept {
    if (this != &other) {
      Reset();
      data_ = other.data_;
      bytes_ = other.bytes_;
      other.data_ = nullptr;
      other.bytes_ = 0;
    }
    return *this;
  }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }  // capacity, at least the bytes asked for

 private:
  void Reset() {
    if (data_ != nullptr) ReleaseBlock(data_, bytes_);
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace wmfast

#endif  // WMFAST_COMMON_BLOCK_CACHE_H_
