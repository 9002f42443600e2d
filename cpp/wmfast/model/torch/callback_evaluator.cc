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
                 bool allow_minus_inf, const char* width_name = "num_actions") {
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
        width > 0 ? StrCat(name, " must have shape [", n, ", ", width, "] (batch, ", width_name,
                           "), got ", got.str())
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

// Whether nothing but the evaluator holds `input` or its memory after a model call. An input
// passed to Python keeps its Python object, which holds a second reference; that object must be
// held by nothing else.
bool HeldOnlyByEvaluator(const at::Tensor& input) {
  const size_t holders = input.use_count();
  const bool unshared =
      holders == 1 ||
      (holders == 2 && input.unsafeGetTensorImpl()->pyobj_slot()->has_unique_reference());
  return unshared && input.storage().use_count() == 1 && !input.requires_grad();
}

// Leaves `input` as it is when `reuse` and it still has `shape` and `options`, else makes it a
// new tensor.
void PrepareInput(at::Tensor& input, bool reuse, at::IntArrayRef shape,
                  const at::TensorOptions& options) {
  if (reuse && input.defined() && input.sizes() == shape && input.is_contiguous() &&
      input.scalar_type() == options.dtype() && input.device() == options.device()) {
    return;
  }
  input = at::empty(shape, options);
}

}  // namespace

CallbackEvaluator::CallbackEvaluator(LatentStore* store, int num_actions, RecurrentFn fn,
                                     int max_concurrent_calls, StepKind kind)
    : store_(store), num_actions_(num_actions), fn_(std::move(fn)),
      max_concurrent_calls_(max_concurrent_calls), kind_(kind),
      intra_op_threads_(at::get_num_threads()) {}

void CallbackEvaluator::Evaluate(const LeafBatch& leaves, const LeafOutputs& outputs) {
  // A search thread other than the caller's starts with OpenMP's default team size (all cores),
  // so the model's kernels there would oversubscribe the cores: give it the caller's setting.
  thread_local int configured_threads = 0;
  if (configured_threads != intra_op_threads_) {
    at::set_num_threads(intra_op_threads_);
    configured_threads = intra_op_threads_;
  }
  const int64_t n = leaves.size;
  const bool one_call_at_a_time = max_concurrent_calls_ == 1;
  at::Tensor fresh_latent, fresh_action;
  at::Tensor& latent = one_call_at_a_time ? latent_input_ : fresh_latent;
  at::Tensor& action = one_call_at_a_time ? action_input_ : fresh_action;
  const bool reuse = one_call_at_a_time && inputs_free_;
  PrepareInput(latent, reuse, store_->BatchShape(n), store_->tensor().options());
  const bool continuous = leaves.continuous_actions != nullptr;
  if (continuous) {
    PrepareInput(action, reuse, {n, leaves.action_dim}, at::TensorOptions().dtype(at::kFloat));
  } else {
    PrepareInput(action, reuse, {n}, at::TensorOptions().dtype(at::kLong));
  }
  store_->ReadInto(leaves.source_slots, n, latent, leaves.helpers);
  if (continuous) {
    std::copy_n(leaves.continuous_actions, n * leaves.action_dim, action.data_ptr<float>());
  } else {
    std::copy(leaves.actions, leaves.actions + n, action.data_ptr<int64_t>());
  }
  at::Tensor device_action;
  if (!store_->tensor().device().is_cpu()) device_action = action.to(store_->tensor().device());
  const at::Tensor& model_action = device_action.defined() ? device_action : action;

  if (one_call_at_a_time) inputs_free_ = false;
  fn_(latent, model_action, [&](const StepTensors& step) {
    Consume(step, leaves, outputs);
    // Here a Python model's GIL is still held (the check reads a Python reference count).
    if (one_call_at_a_time) {
      inputs_free_ = HeldOnlyByEvaluator(latent) && HeldOnlyByEvaluator(action);
    }
  });
}

void CallbackEvaluator::Consume(const StepTensors& step, const LeafBatch& leaves,
                                const LeafOutputs& outputs) const {
  const int64_t n = leaves.size;
  if (kind_ == StepKind::kAfterstate) {
    store_->Check(step.latent, n, "Afterstate.latent");
    CopyChecked(step.logits, "Afterstate.chance_logits", n, num_actions_, outputs.logits, true,
                "num_chance_outcomes");
    CopyChecked(step.value, "Afterstate.value", n, 0, outputs.values, false);
    store_->Write(leaves.target_slots, n, step.latent, leaves.helpers);
    return;
  }
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
