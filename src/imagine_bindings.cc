// Bindings of wmfast::imagine: the fused straight-through categorical sampler and the
// imagination loop over NativeModels.
#include <torch/csrc/utils/pybind.h>

#include <pybind11/stl.h>

#include "torch_bindings.h"
#include "wmfast/imagine/native_rollout.h"
#include "wmfast/imagine/onehot_sampler.h"

namespace wmfast {

void InitImagine(pybind11::module_& m) {
  namespace py = pybind11;
  m.def(
      "sample_onehot",
      [](const at::Tensor& logits, double unimix, std::optional<at::Generator> generator) {
        imagine::OneHotSample out;
        {
          py::gil_scoped_release release;
          out = imagine::SampleOneHot(logits, unimix, std::move(generator));
        }
        return py::make_tuple(out.sample, out.log_probs);
      },
      py::arg("logits"), py::arg("unimix"), py::arg("generator") = py::none(),
      "(one-hot sample, log p) of p = (1 - unimix) softmax(logits) + unimix / C, one draw per "
      "row from the generator (torch's default CPU generator when None).");
  m.def(
      "sample_onehot_backward",
      [](const at::Tensor& log_probs, const std::optional<at::Tensor>& grad_sample,
         const std::optional<at::Tensor>& grad_log_probs, double unimix) {
        return imagine::SampleOneHotBackward(log_probs, grad_sample.value_or(at::Tensor()),
                                             grad_log_probs.value_or(at::Tensor()), unimix);
      },
      py::arg("log_probs"),
        py::arg("grad_sample"), py::arg("grad_log_probs"), py::arg("unimix"),
        py::call_guard<py::gil_scoped_release>(),
        "dL/dlogits of sample_onehot from dL/dsample (straight-through: the gradient of p) and "
        "dL/dlog_probs; either gradient may be None.");

  using model::NativeModel;
  m.def(
      "check_native_imagination",
      [](const std::shared_ptr<NativeModel>& dynamics, const std::shared_ptr<NativeModel>& policy,
         const std::vector<at::Tensor>& start, const std::vector<std::string>& names) {
        imagine::CheckNativeImagination(dynamics.get(), policy.get(), start, names);
      },
      py::arg("dynamics"), py::arg("policy"), py::arg("start"), py::arg("names"),
      "Raises ValueError unless the NativeModels (None: a Python callable) fit the start "
      "leaves and each other.");
  m.def(
      "imagine_native",
      [](const std::shared_ptr<NativeModel>& dynamics, const std::shared_ptr<NativeModel>& policy,
         const std::vector<at::Tensor>& start, const std::vector<std::string>& names,
         int64_t horizon, std::optional<at::Generator> generator) {
        imagine::NativeRollout out;
        {
          py::gil_scoped_release release;
          // Ctrl-C between steps: the GIL only for the poll.
          auto poll = [] {
            py::gil_scoped_acquire gil;
            if (PyErr_CheckSignals() != 0) throw py::error_already_set();
          };
          out = imagine::ImagineNative(*dynamics, *policy, start, names, horizon,
                                       std::move(generator), poll);
        }
        return py::make_tuple(out.states, out.actions, out.policy_outputs);
      },
      py::arg("dynamics"), py::arg("policy"), py::arg("start"), py::arg("names"),
      py::arg("horizon"), py::arg("generator") = py::none(),
      "(states [H+1, N, ...] per leaf, actions [H, N, ...], other policy outputs [H, N, ...]) "
      "of the H-step rollout, run in C++ without the GIL.");
}

}  // namespace wmfast
