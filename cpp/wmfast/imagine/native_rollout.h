// Dreamer's imagination loop over two NativeModels, with no Python in it.
//
// From N start states (a list of L tensors, the leaves of the state), H steps of
//   policy(*state_t, *noise) -> (action_t, *policy_outputs_t)
//   dynamics(*state_t, action_t, *noise) -> state_{t+1} (L tensors)
// written into preallocated [H+1, N, ...] state and [H, N, ...] action/output buffers: the
// no-grad rollout of REINFORCE-style actor-critic training (the official DreamerV3's choice),
// where the rollout needs no autograd graph and Python's per-step overhead is pure cost.
//
// Randomness: an exported model cannot draw from torch's generators (AOTInductor compiles its
// own), so a model's inputs beyond the state (and, for the dynamics, the action) are uniform
// [0, 1) noise, drawn here with at::rand from one generator, in a fixed order: at each step
// the policy's noise inputs, then the dynamics'. wmfast.imagine's Python loop draws the same
// numbers in the same order (torch.rand is at::rand), so both loops give the same rollout.
//
// Threads: one rollout runs on the calling thread; each model call uses the threads compiled
// into its package. Both models' weights are held (ReadWeights) for the whole rollout.
#ifndef WMFAST_IMAGINE_NATIVE_ROLLOUT_H_
#define WMFAST_IMAGINE_NATIVE_ROLLOUT_H_

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "wmfast/model/torch/native_model.h"

namespace wmfast::imagine {

struct NativeRollout {
  std::vector<at::Tensor> states;          // the L leaves, each [H+1, N, ...]; states[i][0] = start
  at::Tensor actions;                      // [H, N, ...]: the policy's first output
  std::vector<at::Tensor> policy_outputs;  // the policy's other outputs, each [H, N, ...]
};

// Checks that `dynamics` and `policy` (either may be null: a Python callable, not checked) fit
// `start` (leaves named `names` in messages, e.g. "start['deter']") and each other:
// - policy: its first L inputs take the leaves' shapes and dtypes, the rest are floating noise;
//   its first output is the action;
// - dynamics: its first L inputs take the leaves, input L the policy's action (same shape and
//   dtype), the rest are floating noise; it returns L outputs shaped and typed as the leaves;
// - the leaves share a batch size N >= 1 and are on the models' device.
// Throws std::invalid_argument naming the model, the input or output and both specs.
void CheckNativeImagination(const model::NativeModel* dynamics, const model::NativeModel* policy,
                            const std::vector<at::Tensor>& start,
                            const std::vector<std::string>& names);

// Runs the H-step rollout (CheckNativeImagination first; horizon >= 1). `generator` draws the
// noise (the default generator of the models' device when empty); `check_interrupt` runs before
// each step and may throw to stop the rollout.
NativeRollout ImagineNative(const model::NativeModel& dynamics, const model::NativeModel& policy,
                            const std::vector<at::Tensor>& start,
                            const std::vector<std::string>& names, int64_t horizon,
                            std::optional<at::Generator> generator,
                            const std::function<void()>& check_interrupt);

}  // namespace wmfast::imagine

#endif  // WMFAST_IMAGINE_NATIVE_ROLLOUT_H_
