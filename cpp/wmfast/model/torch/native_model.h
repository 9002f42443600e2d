// NativeModel: a torch model compiled ahead of time with AOTInductor (torch.export +
// aoti_compile_and_package) and run from C++ through libtorch, with no Python in the loop.
//
// wmfast exports models with a dynamic batch dimension and writes the per-example shapes and
// dtypes of the inputs and outputs into the package's metadata. AOTInductor itself does not check
// a call's shapes (a static-shape package silently accepts a wrong batch), so Run does.
//
// Thread safety: Run may be called concurrently by up to `num_runners` threads (the package is
// loaded with that many model instances). LoadWeights may be called while other threads run the
// model: it writes the new weights into AOTInductor's second (inactive) constant buffer and then
// swaps the buffers, which waits for the calls in flight; each call sees either the old or the new
// weights. A caller that needs one set of weights across many calls (a tree search) holds
// ReadWeights() for their duration; LoadWeights then waits for it.
#ifndef WMFAST_MODEL_TORCH_NATIVE_MODEL_H_
#define WMFAST_MODEL_TORCH_NATIVE_MODEL_H_

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "wmfast/model/torch/callback_evaluator.h"

namespace torch::inductor {
class AOTIModelPackageLoader;
}

namespace wmfast::model {

// The shape of one example (the batch dimension left out) and the dtype of an input or output.
struct TensorSpec {
  std::vector<int64_t> shape;
  c10::ScalarType dtype;
  std::string ToString() const;  // e.g. "float32[64]"
};

// One weight of a compiled model (an AOTInductor constant: a parameter or buffer of the exported
// module), named by its fully qualified name in that module, e.g. "inner.dynamics.0.weight".
struct ConstantSpec {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // the layout the compiled kernels read
  c10::ScalarType dtype;
};

// "float32", "int64", ...: the dtype names of the specs.
std::string DtypeName(c10::ScalarType type);

// Parses "float32:64;int64:" (the metadata format written by wmfast.native) into specs.
std::vector<TensorSpec> ParseSpecs(const std::string& text);

class NativeModel {
 public:
  // Loads a package written by wmfast.NativeModel.export. Throws std::invalid_argument if it is
  // not one (no wmfast metadata) and std::runtime_error if libtorch cannot load it.
  explicit NativeModel(const std::string& path, int num_runners = 1);
  ~NativeModel();
  NativeModel(const NativeModel&) = delete;
  NativeModel& operator=(const NativeModel&) = delete;

  // Runs one batch: inputs [B, *input_specs[i].shape] of the specs' dtypes on device(); throws
  // std::invalid_argument naming the input and what was expected otherwise. Outputs are checked
  // against output_specs (a mismatch means a broken package: std::runtime_error).
  std::vector<at::Tensor> Run(const std::vector<at::Tensor>& inputs) const;

  const std::string& path() const { return path_; }
  int num_runners() const { return num_runners_; }
  c10::Device device() const { return device_; }
  const std::vector<TensorSpec>& input_specs() const { return input_specs_; }
  const std::vector<TensorSpec>& output_specs() const { return output_specs_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The compiled model's weights (AOTInductor constants, constant-folded ones left out), sorted by
  // name.
  const std::vector<ConstantSpec>& constants() const { return constants_; }

  // Replaces weights in place, without recompiling, in every runner: `weights` maps names of
  // constants() to tensors of the same shape and dtype (any device and layout: they are copied
  // into the model's layout on device()). Constants not named keep their values. Throws
  // std::invalid_argument naming the first unknown name, wrong shape or wrong dtype, before
  // anything is changed. Waits for the holders of ReadWeights().
  void LoadWeights(const std::unordered_map<std::string, at::Tensor>& weights);

  // A shared lock on the weights: LoadWeights waits while one is held. Take it without holding
  // a lock that LoadWeights' caller may hold (e.g. Python's GIL) to avoid a deadlock.
  std::shared_lock<std::shared_mutex> ReadWeights() const {
    return std::shared_lock<std::shared_mutex>(weights_mutex_);
  }

  // How many times LoadWeights replaced the weights.
  int64_t weights_version() const { return weights_version_.load(); }

 private:
  std::string path_;
  int num_runners_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  c10::Device device_ = c10::Device(c10::kCPU);
  std::vector<TensorSpec> input_specs_, output_specs_;
  std::map<std::string, std::string> metadata_;
  std::vector<ConstantSpec> constants_;
  mutable std::shared_mutex weights_mutex_;
  std::atomic<int64_t> weights_version_{0};
};

// A compiled CPU model takes other kernels for small batches: rows of a batch of under 4 rows
// (one intra-op thread) or under 12 (two) differed in the last bits from the same rows in larger
// batches (measured, torch 2.13, small MLPs). From this many rows on, a row's outputs did not
// depend on the batch it came in.
inline constexpr int64_t kRowIndependentBatch = 16;

// The recurrent function of a NativeModel exported from a function returning wmfast.Step (or,
// with StepKind::kAfterstate, wmfast.Afterstate: Stochastic MuZero's decision function): runs
// the package (no Python, no GIL) and maps its outputs to the fields by the names in its
// metadata. `check_interrupt` runs before each call (it may throw to stop a search). A CPU call
// of under `min_rows` rows is padded to min_rows by repeating its last row (the extra outputs
// are dropped): a search whose calls vary in size with how its trees are split over threads
// passes kRowIndependentBatch, so that its results do not depend on the split. Throws
// std::invalid_argument if the model does not return that dataclass.
RecurrentFn NativeRecurrentFn(std::shared_ptr<const NativeModel> model,
                              std::function<void()> check_interrupt,
                              StepKind kind = StepKind::kStep, int64_t min_rows = 1);

}  // namespace wmfast::model

#endif  // WMFAST_MODEL_TORCH_NATIVE_MODEL_H_
