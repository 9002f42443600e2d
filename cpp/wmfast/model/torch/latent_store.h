// Latent states of the nodes of a batch of search trees, kept in one torch tensor on the model's
// device and addressed by slot (see model/evaluator.h). Only the small index arrays cross
// devices; latents never leave the model's device. On the CPU, rows are copied directly and the
// store's memory comes from the block cache (see common/block_cache.h).
//
// Slots are not cleared when the store is made: a slot holds a latent once written (Clear zeroes
// the slots that never were, before the store is shown to a user).
//
// Threads: on the CPU, reads and writes of disjoint slots may run concurrently (the shards of a
// sharded search); anything else, and the store's other methods, from one thread at a time.
#ifndef WMFAST_MODEL_TORCH_LATENT_STORE_H_
#define WMFAST_MODEL_TORCH_LATENT_STORE_H_

#include <ATen/core/DimVector.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace wmfast {
class ThreadPool;
}  // namespace wmfast

namespace wmfast::model {

class LatentStore {
 public:
  // `num_slots` latents shaped like one row of `example` ([batch, ...]), on its device and dtype.
  LatentStore(int64_t num_slots, const at::Tensor& example);

  // A store of num_slots slots where slot i holds `previous`'s slot source[i] (when >= 0).
  LatentStore(int64_t num_slots, const LatentStore& previous, const std::vector<int64_t>& source);

  // Stores latents[i] ([n, ...], same trailing shape, dtype and device) at slots[i]. A CPU
  // store's rows are copied by the threads of `pool` (nullptr: by the caller).
  void Write(const int64_t* slots, int64_t n, const at::Tensor& latents,
             ThreadPool* pool = nullptr);

  // Zeroes the latents at `slots`.
  void Clear(const std::vector<int64_t>& slots);

  // A new tensor [n, ...] holding the latents at `slots` (copied as by Write).
  at::Tensor Read(const int64_t* slots, int64_t n, ThreadPool* pool = nullptr) const;

  // Copies the latents at `slots` into `out`, a contiguous [n, ...] tensor of the store's
  // dtype and device.
  void ReadInto(const int64_t* slots, int64_t n, at::Tensor& out, ThreadPool* pool = nullptr) const;

  // The shape of a batch of n latents.
  at::DimVector BatchShape(int64_t n) const;

  // Throws std::invalid_argument (InvalidType for a dtype) naming `name` unless `latents` is a
  // [n, ...] tensor this store can hold.
  void Check(const at::Tensor& latents, int64_t n, const char* name) const;

  const at::Tensor& tensor() const { return storage_; }  // [num_slots, ...]
  int64_t num_slots() const { return storage_.size(0); }

 private:
  at::Tensor Indices(const int64_t* slots, int64_t n) const;

  at::Tensor storage_;
  int64_t row_bytes_ = 0;  // bytes of one latent (CPU fast path)
};

}  // namespace wmfast::model

#endif  // WMFAST_MODEL_TORCH_LATENT_STORE_H_
