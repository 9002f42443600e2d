#include "wmfast/model/torch/callback_evaluator.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "wmfast/common/check.h"
#include "wmfast/model/float_rows.h"

namespace wmfast::model {

namespace {

// Copies a [n] or [n, width] (width > 0) floating-point output to `out` as float32, checking
// its shape and that every entry is finite (logits may be -inf where allow_minus_inf, as long as
// one entry per row is finite); errors name `name`.
void CopyChecked(const at::Tensor& tensor, const char* name, int64_t n, int64_t width, float* out,
                 bool allow_minus_inf) {
  WMFAST_CHECK_ARG(tensor.defined(), name, " is missing (None)");
  if (!at::isFloatingType(tensor.scalar_type())) {
    throw InvalidType(StrCat(name, " must be a floating-point tensor, got dtype ",
                             tensor.scalar_type()));
  }
  const bool ok = width > 0 ? tensor.dim() == 2 && tensor.size(0) == n && tensor.size(1) == width
                            : tensor.dim() == 1 && tensor.size(0) == n;
  if (!ok) {
    std::ostringstream got;
    got << tensor.sizes();
    throw std::invalid_argument(
        width > 0 ? StrCat(name, " must have shape [", n, ", ", width, "] (batch, num_actions), got ",
                           got.str())
                  : StrCat(name, " must have shape [", n, "] (one per tree), got ", got.str()));
  }
  // CPU float32 (the common case, often a strided view such as out[:, -1]) is read in place;
  // anything else is converted once.
  at::Tensor host = tensor;
  if (!host.device().is_cpu() || host.scalar_type() != at::kFloat) {
    host = host.to(at::kCPU, at::kFloat);
  }
  GatherRows(host.data_ptr<float>(), host.stride(0), width > 0 ? host.stride(1) : 0, n, width,
             out);
  CheckFiniteRows(out, n, width, name, allow_minus_inf, NameBy::kRow);
}

// Whether only `kept` holds its tensor and memory. A tensor that has been passed to Python
// keeps its Python object, which holds a second reference: the tensor is still free when that
// object is held by nothing else (the model kept neither its input nor a view of it).
bool OnlyOwner(const at::Tensor& kept) {
  const size_t owners = kept.use_count();
  const bool free = owners == 1 ||
                    (owners == 2 && kept.unsafeGetTensorImpl()->pyobj_slot()->has_unique_reference());
  return free && kept.storage().use_count() == 1;
}

// A tensor of `shape` for a model input: `kept` again when it is free (OnlyOwner) and unchanged,
// else a new one, which is then kept. Reuse saves an allocation and a Python object per call.
const at::Tensor& InputBuffer(at::Tensor& kept, at::IntArrayRef shape,
                              const at::TensorOptions& options) {
  const bool reusable = kept.defined() && OnlyOwner(kept) && !kept.requires_grad() &&
                        kept.sizes() == shape && kept.is_contiguous() &&
                        kept.scalar_type() == options.dtype() && kept.device() == options.device();
  if (!reusable) kept = at::empty(shape, options);
  return kept;
}

}  // namespace

CallbackEvaluator::CallbackEvaluator(LatentStore* store, int num_actions, RecurrentFn fn,
                                     int max_concurrent_calls)
    : store_(store), num_actions_(num_actions), fn_(std::move(fn)),
      max_concurrent_calls_(max_concurrent_calls), intra_op_threads_(at::get_num_threads()) {}

void CallbackEvaluator::Evaluate(const LeafBatch& leaves, const LeafOutputs& outputs) {
  // A search thread other than the caller's starts with OpenMP's default team size (all cores),
  // so the model's kernels there would oversubscribe the cores: give it the caller's setting.
  thread_local int configured_threads = 0;
  if (configured_threads != intra_op_threads_) {
    at::set_num_threads(intra_op_threads_);
    configured_threads = intra_op_threads_;
  }
  const int64_t n = leaves.size;
  const bool on_cpu = store_->tensor().device().is_cpu();
  at::Tensor latent, action;
  if (max_concurrent_calls_ == 1) {
    latent = InputBuffer(latent_input_, store_->BatchShape(n), store_->tensor().options());
    action = InputBuffer(action_input_, {n}, at::TensorOptions().dtype(at::kLong));
  } else {
    latent = at::empty(store_->BatchShape(n), store_->tensor().options());
    action = at::empty({n}, at::TensorOptions().dtype(at::kLong));
  }
  store_->ReadInto(leaves.source_slots, n, latent, leaves.helpers);
  std::copy(leaves.actions, leaves.actions + n, action.data_ptr<int64_t>());
  if (!on_cpu) action = action.to(store_->tensor().device());

  const StepTensors step = fn_(latent, action);
  store_->Check(step.latent, n, "Step.latent");
  CopyChecked(step.reward, "Step.reward", n, 0, outputs.rewards, false);
  CopyChecked(step.logits, "Step.logits", n, num_actions_, outputs.logits, true);
  CopyChecked(step.value, "Step.value", n, 0, outputs.values, false);
  if (step.discount.defined()) {
    CopyChecked(step.discount, "Step.discount", n, 0, outputs.discounts, false);
  } else {
    std::fill(outputs.discounts, outputs.discounts + n, 1.0f);
  }
  store_->Write(leaves.target_slots, n, step.latent, leaves.helpers);
}

}  // namespace wmfast::model
