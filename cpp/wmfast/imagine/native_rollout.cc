#include "wmfast/imagine/native_rollout.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/rand.h>

#include <algorithm>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>

#include "wmfast/common/check.h"
#include "wmfast/model/torch/tensor_text.h"

namespace wmfast::imagine {
namespace {

using model::NativeModel;
using model::ShapeString;
using model::TensorSpec;

// "float32[N, 32, 32]": a tensor described as the specs are.
std::string Describe(const at::Tensor& x) {
  return StrCat(model::DtypeName(x.scalar_type()), ShapeString(x.sizes()));
}

bool Fits(const at::Tensor& x, const TensorSpec& spec) {
  return x.dim() == static_cast<int64_t>(spec.shape.size()) + 1 &&
         x.scalar_type() == spec.dtype &&
         std::equal(spec.shape.begin(), spec.shape.end(), x.sizes().begin() + 1);
}

bool SameSpec(const TensorSpec& a, const TensorSpec& b) {
  return a.dtype == b.dtype && a.shape == b.shape;
}

bool OnDevice(const at::Tensor& x, c10::Device device) {
  return x.device() == device || (x.device().type() == device.type() && !device.has_index());
}

void CheckStateInputs(const NativeModel& model, const char* role,
                      const std::vector<at::Tensor>& start,
                      const std::vector<std::string>& names, size_t extra) {
  const size_t leaves = start.size();
  const auto& inputs = model.input_specs();
  WMFAST_CHECK_ARG(inputs.size() >= leaves + extra, role, " (a NativeModel) takes ",
                   inputs.size(), " inputs: it must take the ", leaves, " leaves of start",
                   extra ? " and the action" : "", ", then uniform noise inputs");
  for (size_t i = 0; i < leaves; ++i) {
    WMFAST_CHECK_ARG(Fits(start[i], inputs[i]), "start", names[i], " is ", Describe(start[i]),
                     ": the ", role, " NativeModel's input ", i, " takes ",
                     inputs[i].ToString());
    WMFAST_CHECK_ARG(OnDevice(start[i], model.device()), "start", names[i], " is on ",
                     start[i].device().str(), ": the ", role, " NativeModel runs on ",
                     model.device().str());
  }
  for (size_t i = leaves + extra; i < inputs.size(); ++i) {
    WMFAST_CHECK_ARG(c10::isFloatingType(inputs[i].dtype), "the ", role,
                     " NativeModel's input ", i, " (after the state", extra ? " and action" : "",
                     ") must be a floating tensor to take uniform noise, got ",
                     inputs[i].ToString());
  }
}

// Uniform [0, 1) noise for the model's inputs from `first` on: [N, *spec] each.
void AppendNoise(const NativeModel& model, size_t first, int64_t batch,
                 std::optional<at::Generator>& generator, std::vector<at::Tensor>& inputs) {
  const auto& specs = model.input_specs();
  for (size_t i = first; i < specs.size(); ++i) {
    std::vector<int64_t> shape{batch};
    shape.insert(shape.end(), specs[i].shape.begin(), specs[i].shape.end());
    inputs.push_back(at::rand(shape, generator,
                              at::TensorOptions().dtype(specs[i].dtype).device(model.device())));
  }
}

}  // namespace

void CheckNativeImagination(const NativeModel* dynamics, const NativeModel* policy,
                            const std::vector<at::Tensor>& start,
                            const std::vector<std::string>& names) {
  WMFAST_CHECK_ARG(!start.empty(), "start must contain at least one tensor");
  WMFAST_CHECK_ARG(names.size() == start.size(), "names must name the ", start.size(),
                   " start leaves, got ", names.size());
  for (size_t i = 0; i < start.size(); ++i) {
    WMFAST_CHECK_ARG(start[i].defined() && start[i].dim() >= 1, "start", names[i],
                     " must have a batch dimension [N, ...]");
    WMFAST_CHECK_ARG(start[i].size(0) == start[0].size(0),
                     "every start leaf must have the same batch size N = ", start[0].size(0),
                     " (dim 0), start", names[i], " has shape ", ShapeString(start[i].sizes()));
  }
  WMFAST_CHECK_ARG(start[0].size(0) >= 1, "start must hold N >= 1 states, got N = 0");
  const size_t leaves = start.size();
  if (dynamics != nullptr) {
    // The dynamics' outputs fix the state's structure: checked first, then the leaves.
    const auto& outputs = dynamics->output_specs();
    WMFAST_CHECK_ARG(outputs.size() == leaves, "dynamics must return a state with the structure "
                     "of start (", leaves, " leaves), got a NativeModel with ", outputs.size(),
                     " outputs at step 0");
    CheckStateInputs(*dynamics, "dynamics", start, names, 1);
    for (size_t i = 0; i < leaves; ++i) {
      WMFAST_CHECK_ARG(Fits(start[i], outputs[i]), "dynamics must return state", names[i],
                       " with the shape and dtype of start (", Describe(start[i]),
                       "), its NativeModel's output ", i, " is ", outputs[i].ToString(),
                       " at step 0");
    }
  }
  if (policy != nullptr) {
    CheckStateInputs(*policy, "policy", start, names, 0);
    WMFAST_CHECK_ARG(!policy->output_specs().empty(),
                     "policy (a NativeModel) must return the action as its first output, "
                     "it returns nothing");
  }
  if (dynamics == nullptr) return;
  if (policy != nullptr) {
    const TensorSpec& action = policy->output_specs()[0];
    const TensorSpec& takes = dynamics->input_specs()[leaves];
    WMFAST_CHECK_ARG(SameSpec(action, takes), "policy must return actions that dynamics takes "
                     "(its input ", leaves, ": ", takes.ToString(), "), got ",
                     action.ToString(), " at step 0");
    WMFAST_CHECK_ARG(policy->device() == dynamics->device(), "policy runs on ",
                     policy->device().str(), " and dynamics on ", dynamics->device().str(),
                     ": export both for one device");
  }
}

NativeRollout ImagineNative(const NativeModel& dynamics, const NativeModel& policy,
                            const std::vector<at::Tensor>& start,
                            const std::vector<std::string>& names, int64_t horizon,
                            std::optional<at::Generator> generator,
                            const std::function<void()>& check_interrupt) {
  WMFAST_CHECK_ARG(horizon >= 1, "horizon must be an int >= 1, got ", horizon);
  CheckNativeImagination(&dynamics, &policy, start, names);
  // No autograd: a start leaf that requires grad must not make the buffers record copies.
  at::NoGradGuard no_grad;
  const size_t leaves = start.size();
  const int64_t batch = start[0].size(0);

  // One set of weights for the whole rollout (NativeModel::LoadWeights waits); one lock when
  // both are the same model (a shared_mutex must not be locked twice by one thread).
  std::shared_lock<std::shared_mutex> dynamics_weights = dynamics.ReadWeights();
  std::shared_lock<std::shared_mutex> policy_weights;
  if (&policy != &dynamics) policy_weights = policy.ReadWeights();

  NativeRollout out;
  for (const at::Tensor& leaf : start) {
    std::vector<int64_t> shape{horizon + 1};
    shape.insert(shape.end(), leaf.sizes().begin(), leaf.sizes().end());
    out.states.push_back(at::empty(shape, leaf.options()));
    out.states.back()[0].copy_(leaf);
  }
  const auto buffer = [&](const TensorSpec& spec) {
    std::vector<int64_t> shape{horizon, batch};
    shape.insert(shape.end(), spec.shape.begin(), spec.shape.end());
    return at::empty(shape, at::TensorOptions().dtype(spec.dtype).device(policy.device()));
  };
  const auto& policy_outputs = policy.output_specs();
  out.actions = buffer(policy_outputs[0]);
  for (size_t k = 1; k < policy_outputs.size(); ++k) {
    out.policy_outputs.push_back(buffer(policy_outputs[k]));
  }

  std::vector<at::Tensor> inputs;
  for (int64_t t = 0; t < horizon; ++t) {
    if (check_interrupt) check_interrupt();
    inputs.clear();
    for (size_t i = 0; i < leaves; ++i) inputs.push_back(out.states[i][t]);
    AppendNoise(policy, leaves, batch, generator, inputs);
    std::vector<at::Tensor> acted = policy.Run(inputs);
    out.actions[t].copy_(acted[0]);
    for (size_t k = 1; k < acted.size(); ++k) out.policy_outputs[k - 1][t].copy_(acted[k]);

    inputs.resize(leaves);
    inputs.push_back(out.actions[t]);
    AppendNoise(dynamics, leaves + 1, batch, generator, inputs);
    std::vector<at::Tensor> next = dynamics.Run(inputs);
    for (size_t i = 0; i < leaves; ++i) out.states[i][t + 1].copy_(next[i]);
  }
  return out;
}

}  // namespace wmfast::imagine
