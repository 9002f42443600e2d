#include "wmfast/model/torch/native_model.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/empty_strided.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <algorithm>
#include <array>
#include <sstream>
#include <stdexcept>

#include "wmfast/common/check.h"
#include "wmfast/model/torch/tensor_text.h"

namespace wmfast::model {
namespace {

struct DtypeName {
  const char* name;
  c10::ScalarType type;
};
constexpr DtypeName kDtypes[] = {
    {"float32", c10::kFloat}, {"float64", c10::kDouble}, {"float16", c10::kHalf},
    {"bfloat16", c10::kBFloat16}, {"int64", c10::kLong}, {"int32", c10::kInt},
    {"int16", c10::kShort}, {"int8", c10::kChar}, {"uint8", c10::kByte}, {"bool", c10::kBool},
};

c10::ScalarType DtypeFromName(const std::string& name) {
  for (const auto& entry : kDtypes) {
    if (name == entry.name) return entry.type;
  }
  throw std::invalid_argument(StrCat("unsupported dtype '", name, "' in a native model's specs"));
}

std::string NameOf(c10::ScalarType type) {
  for (const auto& entry : kDtypes) {
    if (type == entry.type) return entry.name;
  }
  return c10::toString(type);
}

}  // namespace

std::string DtypeName(c10::ScalarType type) { return NameOf(type); }

std::string TensorSpec::ToString() const {
  std::ostringstream out;
  out << NameOf(dtype) << "[B";
  for (int64_t d : shape) out << ", " << d;
  out << "]";
  return out.str();
}

std::vector<TensorSpec> ParseSpecs(const std::string& text) {
  std::vector<TensorSpec> specs;
  std::stringstream entries(text);
  std::string entry;
  while (std::getline(entries, entry, ';')) {
    const size_t colon = entry.find(':');
    WMFAST_CHECK_ARG(colon != std::string::npos, "malformed tensor spec '", entry, "'");
    TensorSpec spec{{}, DtypeFromName(entry.substr(0, colon))};
    std::stringstream dims(entry.substr(colon + 1));
    std::string dim;
    while (std::getline(dims, dim, ',')) {
      if (!dim.empty()) spec.shape.push_back(std::stoll(dim));
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

NativeModel::NativeModel(const std::string& path, int num_runners)
    : path_(path), num_runners_(num_runners) {
  WMFAST_CHECK_ARG(num_runners >= 1, "num_runners must be >= 1, got ", num_runners);
  for (const auto& [key, value] :
       torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, "model")) {
    metadata_[key] = value;
  }
  auto inputs = metadata_.find("wmfast_inputs"), outputs = metadata_.find("wmfast_outputs");
  WMFAST_CHECK_ARG(inputs != metadata_.end() && outputs != metadata_.end(), "'", path,
                   "' is an AOTInductor package without wmfast's metadata: export it with "
                   "wmfast.NativeModel.export");
  input_specs_ = ParseSpecs(inputs->second);
  output_specs_ = ParseSpecs(outputs->second);
  auto device = metadata_.find("wmfast_device");
  if (device != metadata_.end()) device_ = c10::Device(device->second);
  loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
      path, "model", /*run_single_threaded=*/false, static_cast<size_t>(num_runners),
      device_.has_index() ? device_.index() : c10::DeviceIndex(-1));
  for (const auto& [name, tensor] : loader_->get_runner()->extract_constants_map(
           /*use_inactive=*/false)) {
    constants_.push_back(ConstantSpec{name, tensor.sizes().vec(), tensor.strides().vec(),
                                      tensor.scalar_type()});
  }
  std::sort(constants_.begin(), constants_.end(),
            [](const ConstantSpec& a, const ConstantSpec& b) { return a.name < b.name; });
}

NativeModel::~NativeModel() = default;

std::vector<at::Tensor> NativeModel::Run(const std::vector<at::Tensor>& inputs) const {
  WMFAST_CHECK_ARG(inputs.size() == input_specs_.size(), "the native model takes ",
                   input_specs_.size(), " inputs, got ", inputs.size());
  const int64_t batch = inputs.empty() ? 0 : inputs[0].size(0);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorSpec& spec = input_specs_[i];
    const at::Tensor& x = inputs[i];
    const bool shape_ok = x.dim() == static_cast<int64_t>(spec.shape.size()) + 1 &&
                          x.size(0) == batch &&
                          std::equal(spec.shape.begin(), spec.shape.end(), x.sizes().begin() + 1);
    WMFAST_CHECK_ARG(shape_ok, "native model input ", i, " has shape ", ShapeString(x.sizes()),
                     ": expected ", spec.ToString(), " with B = ", batch);
    WMFAST_CHECK_ARG(x.scalar_type() == spec.dtype, "native model input ", i, " has dtype ",
                     NameOf(x.scalar_type()), ": expected ", NameOf(spec.dtype));
    WMFAST_CHECK_ARG(x.device() == device_ || (x.device().type() == device_.type() &&
                                               !device_.has_index()),
                     "native model input ", i, " is on ", x.device().str(),
                     ": the model was exported for ", device_.str());
  }
  std::vector<at::Tensor> contiguous;
  contiguous.reserve(inputs.size());
  for (const at::Tensor& x : inputs) contiguous.push_back(x.contiguous());
  std::vector<at::Tensor> outputs = loader_->run(contiguous);
  if (outputs.size() != output_specs_.size()) {
    throw std::runtime_error(StrCat("native model '", path_, "' returned ", outputs.size(),
                                    " outputs: its metadata promises ", output_specs_.size()));
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const TensorSpec& spec = output_specs_[i];
    const bool ok = outputs[i].dim() == static_cast<int64_t>(spec.shape.size()) + 1 &&
                    outputs[i].size(0) == batch && outputs[i].scalar_type() == spec.dtype;
    if (!ok) {
      throw std::runtime_error(StrCat("native model output ", i, " has shape ",
                                      ShapeString(outputs[i].sizes()), ": expected ",
                                      spec.ToString(), " with B = ", batch));
    }
  }
  return outputs;
}

void NativeModel::LoadWeights(const std::unordered_map<std::string, at::Tensor>& weights) {
  // Everything is checked before anything changes: AOTInductor copies each constant's whole
  // storage into its slot of the constant buffer, trusting its size.
  for (const auto& [name, tensor] : weights) {
    const auto spec = std::find_if(constants_.begin(), constants_.end(),
                                   [&](const ConstantSpec& c) { return c.name == name; });
    if (spec == constants_.end()) {
      std::string known;
      for (size_t i = 0; i < constants_.size() && i < 8; ++i) {
        known += (i ? ", '" : "'") + constants_[i].name + "'";
      }
      if (constants_.size() > 8) known += ", ...";
      throw std::invalid_argument(StrCat("weight '", name, "': the native model '", path_,
                                         "' has no such weight (it has ", constants_.size(), ": ",
                                         known, ")"));
    }
    WMFAST_CHECK_ARG(tensor.defined(), "weight '", name, "' is an undefined tensor");
    WMFAST_CHECK_ARG(tensor.sizes().equals(spec->shape), "weight '", name, "' has shape ",
                     ShapeString(tensor.sizes()), ": the native model expects ",
                     ShapeString(spec->shape));
    WMFAST_CHECK_ARG(tensor.scalar_type() == spec->dtype, "weight '", name, "' has dtype ",
                     NameOf(tensor.scalar_type()), ": the native model expects ",
                     NameOf(spec->dtype));
  }
  std::unique_lock<std::shared_mutex> lock(weights_mutex_);
  torch::inductor::AOTIModelContainerRunner* runner = loader_->get_runner();
  // The whole set goes into the inactive buffer (AOTInductor would leave a parameter that is not
  // named there stale), each in a fresh tensor with the compiled layout and a storage of exactly
  // its size.
  const std::unordered_map<std::string, at::Tensor> current =
      runner->extract_constants_map(/*use_inactive=*/false);
  std::unordered_map<std::string, at::Tensor> update;
  for (const ConstantSpec& spec : constants_) {
    auto given = weights.find(spec.name);
    const at::Tensor* source = nullptr;
    if (given != weights.end()) {
      source = &given->second;
    } else {
      auto it = current.find(spec.name);
      if (it == current.end()) continue;
      source = &it->second;
    }
    at::Tensor slot = at::empty_strided(spec.shape, spec.strides,
                                        at::TensorOptions().dtype(spec.dtype).device(device_));
    slot.copy_(*source);
    update.emplace(spec.name, std::move(slot));
  }
  loader_->load_constants(update, /*use_inactive=*/true, /*check_full_update=*/false);
  runner->swap_constant_buffer();  // waits for the calls in flight
  weights_version_.fetch_add(1);
}

RecurrentFn NativeRecurrentFn(std::shared_ptr<const NativeModel> model,
                              std::function<void()> check_interrupt, StepKind kind,
                              int64_t min_rows) {
  auto field_list = [&](const char* key) {
    std::vector<std::string> names;
    auto it = model->metadata().find(key);
    if (it == model->metadata().end()) return names;
    std::stringstream text(it->second);
    std::string name;
    while (std::getline(text, name, ',')) names.push_back(name);
    return names;
  };
  const bool afterstate = kind == StepKind::kAfterstate;
  const char* dataclass = afterstate ? "Afterstate" : "Step";
  const auto type = model->metadata().find("wmfast_output_type");
  const std::string type_name = type == model->metadata().end() ? "tuple" : type->second;
  WMFAST_CHECK_ARG(type_name.ends_with(StrCat(":", dataclass)),
                   afterstate ? "a NativeModel used as Stochastic MuZero's decision function "
                                "must be exported from a function returning wmfast.Afterstate"
                              : "a NativeModel used for tree search must be exported from a "
                                "function returning wmfast.Step",
                   ", but '", model->path(), "' returns ", type_name);
  const std::vector<std::string> fields = field_list("wmfast_output_fields"),
                                 absent = field_list("wmfast_output_none");
  // index[k]: which output holds field k (Step: latent, reward, logits, value, discount;
  // Afterstate: latent, -, chance_logits, value, -), or -1.
  const std::array<const char*, 5> names =
      afterstate ? std::array<const char*, 5>{"latent", "", "chance_logits", "value", ""}
                 : std::array<const char*, 5>{"latent", "reward", "logits", "value", "discount"};
  std::array<int, 5> index;
  index.fill(-1);
  int output = 0;
  for (const std::string& field : fields) {
    if (std::find(absent.begin(), absent.end(), field) != absent.end()) continue;
    for (int k = 0; k < 5; ++k) {
      if (field == names[k]) index[k] = output;
    }
    ++output;
  }
  for (int k = 0; k < 4; ++k) {
    if (names[k][0] == '\0') continue;
    WMFAST_CHECK_ARG(index[k] >= 0, "the NativeModel '", model->path(), "' returns no ",
                     dataclass, ".", names[k]);
  }
  return [model = std::move(model), check_interrupt = std::move(check_interrupt), index,
          min_rows](const at::Tensor& latent, const at::Tensor& action,
                    const ConsumeStep& consume) {
    if (check_interrupt) check_interrupt();
    // A smaller CPU batch is padded by repeating its last row (kRowIndependentBatch says why).
    const int64_t n = latent.size(0);
    const bool pad = latent.is_cpu() && n > 0 && n < min_rows;
    auto padded = [&](const at::Tensor& x) {
      std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
      shape[0] = min_rows - n;
      return at::cat({x, x.narrow(0, n - 1, 1).expand(shape)});
    };
    std::vector<at::Tensor> outputs =
        pad ? model->Run({padded(latent), padded(action)}) : model->Run({latent, action});
    if (pad) {
      for (at::Tensor& output : outputs) output = output.narrow(0, 0, n);
    }
    StepTensors step;
    step.latent = outputs[index[0]];
    if (index[1] >= 0) step.reward = outputs[index[1]];
    step.logits = outputs[index[2]];
    step.value = outputs[index[3]];
    if (index[4] >= 0) step.discount = outputs[index[4]];
    consume(step);
  };
}

}  // namespace wmfast::model
