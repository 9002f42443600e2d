// An Evaluator that calls a model through a C++ callback returning tensors (the Python bindings
// wrap a user's recurrent_inference in it). Per simulation it gathers the leaves' latents from
// the LatentStore, calls the model once for the whole batch, validates every output (shape,
// dtype, device, finite values; errors name the Step field) and copies the small outputs to
// the search's buffers on the CPU.
//
// Not thread-safe; the callback is invoked on the thread that calls Evaluate.
#ifndef WMFAST_MODEL_TORCH_CALLBACK_EVALUATOR_H_
#define WMFAST_MODEL_TORCH_CALLBACK_EVALUATOR_H_

#include <ATen/core/Tensor.h>

#include <functional>

#include "wmfast/model/evaluator.h"
#include "wmfast/model/torch/latent_store.h"

namespace wmfast::model {

// What a recurrent model returns for a batch of n leaves.
struct StepTensors {
  at::Tensor latent;    // [n, ...] next latent, same trailing shape/dtype/device as the store
  at::Tensor reward;    // [n] floating point
  at::Tensor logits;    // [n, A] floating point
  at::Tensor value;     // [n] floating point
  at::Tensor discount;  // [n] floating point, or undefined (then 1)
};

// latent [n, ...] and action [n] int64 on the store's device in; the step out.
using RecurrentFn = std::function<StepTensors(const at::Tensor& latent, const at::Tensor& action)>;

class CallbackEvaluator : public Evaluator {
 public:
  // Borrows `store`, which must outlive the evaluator.
  // `max_concurrent_calls` > 1 promises that `fn` may run concurrently that many times (a native
  // model with as many runners); the store's CPU rows are then read and written concurrently.
  CallbackEvaluator(LatentStore* store, int num_actions, RecurrentFn fn,
                    int max_concurrent_calls = 1);

  void Evaluate(const LeafBatch& leaves, const LeafOutputs& outputs) override;
  int max_concurrent_calls() const override { return max_concurrent_calls_; }

 private:
  LatentStore* store_;
  int num_actions_;
  RecurrentFn fn_;
  int max_concurrent_calls_;
  int intra_op_threads_;  // the creating thread's; other calling threads are set to match
  // The last call's inputs, reused when the model kept neither (one call at a time only).
  at::Tensor latent_input_, action_input_;
};

}  // namespace wmfast::model

#endif  // WMFAST_MODEL_TORCH_CALLBACK_EVALUATOR_H_
