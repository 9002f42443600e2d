// Bindings of wmfast::model::NativeModel: loading an AOTInductor package and running it.
#include <torch/csrc/utils/pybind.h>

#include <pybind11/stl.h>

#include "torch_bindings.h"
#include "wmfast/model/torch/native_model.h"

namespace wmfast {
namespace {

std::vector<std::string> SpecStrings(const std::vector<model::TensorSpec>& specs) {
  std::vector<std::string> text;
  for (const auto& spec : specs) text.push_back(spec.ToString());
  return text;
}

}  // namespace

void InitNativeModel(pybind11::module_& m) {
  namespace py = pybind11;
  using model::NativeModel;
  py::class_<NativeModel, std::shared_ptr<NativeModel>>(m, "NativeModel", "An AOTInductor package run from C++.")
      .def(py::init<const std::string&, int>(), py::arg("path"), py::arg("num_runners") = 1,
           py::call_guard<py::gil_scoped_release>())
      .def("run", &NativeModel::Run, py::arg("inputs"),
           py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("path", &NativeModel::path)
      .def_property_readonly("num_runners", &NativeModel::num_runners)
      .def_property_readonly("device", [](const NativeModel& model) { return model.device().str(); })
      .def_property_readonly("input_specs",
                             [](const NativeModel& model) { return SpecStrings(model.input_specs()); })
      .def_property_readonly("output_specs",
                             [](const NativeModel& model) { return SpecStrings(model.output_specs()); })
      .def_property_readonly("metadata", &NativeModel::metadata)
      .def_property_readonly("constants", [](const NativeModel& model) {
        py::list out;
        for (const auto& c : model.constants()) {
          out.append(py::make_tuple(c.name, c.shape, model::DtypeName(c.dtype)));
        }
        return out;
      }, "[(name, shape, dtype name)] of the compiled weights")
      .def("load_weights", &NativeModel::LoadWeights, py::arg("weights"),
           py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("weights_version", &NativeModel::weights_version);
}

}  // namespace wmfast
