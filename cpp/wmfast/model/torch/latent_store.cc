#include "wmfast/model/torch/latent_store.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "wmfast/common/block_cache.h"
#include "wmfast/common/check.h"
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

// An uninitialised tensor of `shape` like `options`; CPU memory comes from the block cache.
at::Tensor Uninitialised(const std::vector<int64_t>& shape, const at::TensorOptions& options) {
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
  std::vector<int64_t> shape(previous.storage_.sizes().begin(), previous.storage_.sizes().end());
  shape[0] = num_slots;
  storage_ = Uninitialised(shape, previous.storage_.options());
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

void LatentStore::Write(const int64_t* slots, int64_t n, const at::Tensor& latents) {
  if (n == 0) return;
  const int64_t first = FirstOfRun(slots, n);
  if (CpuFastPath(storage_) && CpuFastPath(latents)) {
    auto* dst = static_cast<char*>(storage_.data_ptr());
    const auto* src = static_cast<const char*>(latents.data_ptr());
    if (first >= 0) {
      std::memcpy(dst + first * row_bytes_, src, n * row_bytes_);
      return;
    }
    for (int64_t i = 0; i < n; ++i) {
      if (i + kRowsAhead < n) PrefetchRow<1>(dst + slots[i + kRowsAhead] * row_bytes_, row_bytes_);
      std::memcpy(dst + slots[i] * row_bytes_, src + i * row_bytes_, row_bytes_);
    }
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

at::Tensor LatentStore::Read(const int64_t* slots, int64_t n) const {
  // A copy, never a view of the store: the model may keep or modify its input.
  const int64_t first = n > 0 ? FirstOfRun(slots, n) : -1;
  if (CpuFastPath(storage_)) {
    std::vector<int64_t> shape(storage_.sizes().begin(), storage_.sizes().end());
    shape[0] = n;
    at::Tensor out = at::empty(shape, storage_.options());
    const auto* src = static_cast<const char*>(storage_.data_ptr());
    auto* dst = static_cast<char*>(out.data_ptr());
    if (first >= 0) {
      std::memcpy(dst, src + first * row_bytes_, n * row_bytes_);
      return out;
    }
    for (int64_t i = 0; i < n; ++i) {
      if (i + kRowsAhead < n) PrefetchRow<0>(src + slots[i + kRowsAhead] * row_bytes_, row_bytes_);
      std::memcpy(dst + i * row_bytes_, src + slots[i] * row_bytes_, row_bytes_);
    }
    return out;
  }
  if (first >= 0) return storage_.narrow(0, first, n).clone(at::MemoryFormat::Contiguous);
  return storage_.index_select(0, Indices(slots, n));
}

}  // namespace wmfast::model
