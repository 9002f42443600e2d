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

// Receives a model's step; its tensors may not be used after it returns.
using ConsumeStep = std::function<void(const StepTensors& step)>;

// Runs the model on latent [n, ...] and action [n] (int64; continuous: [n, action_dim] float32;
// on the store's device) and hands the step to `consume` before returning. The step's tensors
// are dropped inside the call: a Python model's outputs hold Python objects, and dropping them
// there, with the GIL still held, saves a GIL round trip per tensor.
using RecurrentFn = std::function<void(const at::Tensor& latent, const at::Tensor& action,
                                       const ConsumeStep& consume)>;

// What the callback's outputs are, for checking them and naming them in errors.
enum class StepKind {
  kStep,        // a wm.Step: latent, reward, logits [n, A], value, discount
  kAfterstate,  // a wm.Afterstate (Stochastic MuZero's decision function): latent,
                // chance_logits [n, C] (in StepTensors::logits), value; no reward or discount
                // (LeafOutputs::rewards and discounts are left as they are)
};

class CallbackEvaluator : public Evaluator {
 public:
  // Borrows `store`, which must outlive the evaluator. `num_actions` is the width of the logits
  // (C for kAfterstate).
  // `max_concurrent_calls` > 1 promises that `fn` may run concurrently that many times (a native
  // model with as many runners); the store's CPU rows are then read and written concurrently.
  CallbackEvaluator(LatentStore* store, int num_actions, RecurrentFn fn,
                    int max_concurrent_calls = 1, StepKind kind = StepKind::kStep);

  void Evaluate(const LeafBatch& leaves, const LeafOutputs& outputs) override;
  int max_concurrent_calls() const override { return max_concurrent_calls_; }

 private:
  // Checks the step's outputs, copies them to `outputs` and stores the next latents.
  void Consume(const StepTensors& step, const LeafBatch& leaves, const LeafOutputs& outputs) const;

  LatentStore* store_;
  int num_actions_;
  RecurrentFn fn_;
  int max_concurrent_calls_;
  StepKind kind_;
  int intra_op_threads_;  // the creating thread's; other calling threads are set to match
  // With one call at a time, the last call's inputs, used again when the model kept neither
  // them nor a view of them (inputs_free_): saves an allocation and a Python object per call.
  at::Tensor latent_input_, action_input_;
  bool inputs_free_ = false;
};

}  // namespace wmfast::model

#endif  // WMFAST_MODEL_TORCH_CALLBACK_EVALUATOR_H_
