#include "wmfast/model/torch/latent_store.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/index_select.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "wmfast/common/block_cache.h"
#include "wmfast/common/check.h"
#include "wmfast/common/thread_pool.h"
#include "wmfast/model/evaluator.h"
#include "wmfast/model/torch/tensor_text.h"

namespace wmfast::model {
namespace {

bool CpuFastPath(const at::Tensor& t) { return t.device().is_cpu() && t.is_contiguous(); }

// Rows are scattered over a store larger than the caches: the copies of rows [i, n) ask for the
// lines of row i + kRowsAhead first (the start of it; the hardware prefetcher follows a long row).
constexpr int64_t kRowsAhead = 8;
constexpr int64_t kPrefetchBytes = 512;

template <int kForWrite>
void PrefetchRow(const char* row, int64_t row_bytes) {
  const int64_t bytes = std::min(row_bytes, kPrefetchBytes);
  for (int64_t offset = 0; offset < bytes; offset += 64) {
    __builtin_prefetch(row + offset, kForWrite);
  }
}

// The first slot of `slots` when they are consecutive (a simulation's new latents usually are),
// else -1.
int64_t FirstOfRun(const int64_t* slots, int64_t n) {
  for (int64_t i = 1; i < n; ++i) {
    if (slots[i] != slots[0] + i) return -1;
  }
  return slots[0];
}

// Copies n rows of row_bytes: row i from src row src_slots[i] (nullptr: i) to dst row
// dst_slots[i] (nullptr: i). `run_start` >= 0 says the slotted side is the consecutive run from
// it (one memcpy). Rows are shared among the threads of `pool` when there is one.
void CopyRows(const char* src, const int64_t* src_slots, char* dst, const int64_t* dst_slots,
              int64_t run_start, int64_t n, int64_t row_bytes, ThreadPool* pool) {
  auto copy = [&](int, int64_t begin, int64_t end) {
    if (run_start >= 0) {
      const int64_t src_row = src_slots != nullptr ? run_start + begin : begin;
      const int64_t dst_row = dst_slots != nullptr ? run_start + begin : begin;
      std::memcpy(dst + dst_row * row_bytes, src + src_row * row_bytes, (end - begin) * row_bytes);
      return;
    }
    for (int64_t i = begin; i < end; ++i) {
      if (i + kRowsAhead < end && src_slots != nullptr) {
        PrefetchRow<0>(src + src_slots[i + kRowsAhead] * row_bytes, row_bytes);
      }
      if (i + kRowsAhead < end && dst_slots != nullptr) {
        PrefetchRow<1>(dst + dst_slots[i + kRowsAhead] * row_bytes, row_bytes);
      }
      const int64_t src_row = src_slots != nullptr ? src_slots[i] : i;
      const int64_t dst_row = dst_slots != nullptr ? dst_slots[i] : i;
      std::memcpy(dst + dst_row * row_bytes, src + src_row * row_bytes, row_bytes);
    }
  };
  // Below a few KB the threads' hand-off costs more than the copy.
  constexpr int64_t kMinParallelBytes = 16 << 10;
  if (pool != nullptr && pool->num_threads() > 1 && n * row_bytes >= kMinParallelBytes) {
    pool->ParallelFor(n, copy);
  } else {
    copy(0, 0, n);
  }
}

// An uninitialised tensor of `shape` like `options`; CPU memory comes from the block cache.
at::Tensor Uninitialised(at::IntArrayRef shape, const at::TensorOptions& options) {
  if (!options.device().is_cpu()) return at::empty(shape, options);
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  size_t capacity = 0;
  void* data = AcquireBlock(static_cast<size_t>(numel) * options.dtype().itemsize(), &capacity);
  return at::from_blob(
      data, shape, [capacity](void* p) { ReleaseBlock(p, capacity); }, options);
}

}  // namespace

LatentStore::LatentStore(int64_t num_slots, const at::Tensor& example) {
  WMFAST_CHECK_ARG(example.defined() && example.dim() >= 1,
                   "root.latent must be a tensor with a leading batch dimension");
  std::vector<int64_t> shape(example.sizes().begin(), example.sizes().end());
  shape[0] = num_slots;
  storage_ = Uninitialised(shape, example.options());
  row_bytes_ = static_cast<int64_t>(storage_.numel() / std::max<int64_t>(num_slots, 1) *
                                    storage_.element_size());
}

LatentStore::LatentStore(int64_t num_slots, const LatentStore& previous,
                         const std::vector<int64_t>& source) {
  storage_ = Uninitialised(previous.BatchShape(num_slots), previous.storage_.options());
  row_bytes_ = previous.row_bytes_;
  std::vector<int64_t> to, from;
  for (int64_t i = 0; i < num_slots; ++i) {
    if (source[i] >= 0) {
      to.push_back(i);
      from.push_back(source[i]);
    }
  }
  if (!to.empty()) Write(to.data(), static_cast<int64_t>(to.size()), previous.Read(from.data(), static_cast<int64_t>(from.size())));
}

void LatentStore::Check(const at::Tensor& latents, int64_t n, const char* name) const {
  WMFAST_CHECK_ARG(latents.defined(), name, " is missing (None)");
  if (latents.scalar_type() != storage_.scalar_type()) {
    throw InvalidType(StrCat(name, " must have dtype ", storage_.scalar_type(),
                             " (the dtype of root.latent), got ", latents.scalar_type()));
  }
  WMFAST_CHECK_ARG(latents.device() == storage_.device(), name, " must be on device ",
                   storage_.device(), " (the device of root.latent), got ", latents.device());
  bool ok = latents.dim() == storage_.dim() && latents.size(0) == n;
  for (int64_t d = 1; ok && d < storage_.dim(); ++d) ok = latents.size(d) == storage_.size(d);
  if (!ok) {
    std::vector<int64_t> expected(storage_.sizes().begin(), storage_.sizes().end());
    expected[0] = n;
    throw std::invalid_argument(StrCat(name, " must have shape ", ShapeString(expected),
                                       ", got ", ShapeString(latents.sizes())));
  }
}

at::Tensor LatentStore::Indices(const int64_t* slots, int64_t n) const {
  at::Tensor host = at::from_blob(const_cast<int64_t*>(slots), {n}, at::kLong);
  return storage_.device().is_cpu() ? host : host.to(storage_.device());
}

void LatentStore::Write(const int64_t* slots, int64_t n, const at::Tensor& latents,
                        ThreadPool* pool) {
  if (n == 0) return;
  const int64_t first = FirstOfRun(slots, n);
  if (CpuFastPath(storage_) && CpuFastPath(latents)) {
    CopyRows(static_cast<const char*>(latents.data_ptr()), nullptr,
             static_cast<char*>(storage_.data_ptr()), slots, first, n, row_bytes_, pool);
    return;
  }
  if (first >= 0) {
    storage_.narrow(0, first, n).copy_(latents);
  } else {
    storage_.index_copy_(0, Indices(slots, n), latents);
  }
}

void LatentStore::Clear(const std::vector<int64_t>& slots) {
  if (slots.empty()) return;
  storage_.index_fill_(0, Indices(slots.data(), static_cast<int64_t>(slots.size())), 0);
}

at::DimVector LatentStore::BatchShape(int64_t n) const {
  at::DimVector shape(storage_.sizes().begin(), storage_.sizes().end());
  shape[0] = n;
  return shape;
}

at::Tensor LatentStore::Read(const int64_t* slots, int64_t n, ThreadPool* pool) const {
  // A copy, never a view of the store.
  at::Tensor out = at::empty(BatchShape(n), storage_.options());
  ReadInto(slots, n, out, pool);
  return out;
}

void LatentStore::ReadInto(const int64_t* slots, int64_t n, at::Tensor& out,
                           ThreadPool* pool) const {
  if (n == 0) return;
  const int64_t first = FirstOfRun(slots, n);
  if (CpuFastPath(storage_)) {
    CopyRows(static_cast<const char*>(storage_.data_ptr()), slots,
             static_cast<char*>(out.data_ptr()), nullptr, first, n, row_bytes_, pool);
  } else if (first >= 0) {
    out.copy_(storage_.narrow(0, first, n));
  } else {
    at::index_select_out(out, storage_, 0, Indices(slots, n));
  }
}

}  // namespace wmfast::model
