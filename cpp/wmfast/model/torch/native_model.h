// NativeModel: a torch model compiled ahead of time with AOTInductor (torch.export +
// aoti_compile_and_package) and run from C++ through libtorch, with no Python in the loop.
//
// wmfast exports models with a dynamic batch dimension and writes the per-example shapes and
// dtypes of the inputs and outputs into the package's metadata. AOTInductor itself does not check
// a call's shapes (a static-shape package silently accepts a wrong batch), so Run does.
//
// Thread safety: Run may be called concurrently by up to `num_runners` threads (the package is
// loaded with that many model instances).
#ifndef WMFAST_MODEL_TORCH_NATIVE_MODEL_H_
#define WMFAST_MODEL_TORCH_NATIVE_MODEL_H_

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
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

 private:
  std::string path_;
  int num_runners_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  c10::Device device_ = c10::Device(c10::kCPU);
  std::vector<TensorSpec> input_specs_, output_specs_;
  std::map<std::string, std::string> metadata_;
};

// The recurrent function of a NativeModel exported from a function returning wmfast.Step:
// runs the package (no Python, no GIL) and maps its outputs to the Step fields by the names in
// its metadata. `check_interrupt` runs before each call (it may throw to stop a search). Throws
// std::invalid_argument if the model does not return a Step.
RecurrentFn NativeRecurrentFn(std::shared_ptr<const NativeModel> model,
                              std::function<void()> check_interrupt);

}  // namespace wmfast::model

#endif  // WMFAST_MODEL_TORCH_NATIVE_MODEL_H_
