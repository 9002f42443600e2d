// Bindings of wmfast::imagine: the fused straight-through categorical sampler.
#include <torch/csrc/utils/pybind.h>

#include "torch_bindings.h"
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
}

}  // namespace wmfast
