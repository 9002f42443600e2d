// wmfast._torch: the bindings that pass tensors. The only translation unit that includes
// <torch/extension.h> (it takes ~30 s to compile); the others include ATen headers only.
#include <torch/extension.h>

#include <thread>

#include "torch_bindings.h"

namespace wmfast {
namespace {

void InitInfo(pybind11::module_& m) {
  m.attr("TORCH_VERSION") = WMFAST_TORCH_VERSION;
#ifdef WMFAST_TORCH_CUDA
  m.attr("BUILT_WITH_CUDA") = true;
#else
  m.attr("BUILT_WITH_CUDA") = false;
#endif
  m.def("hardware_threads", [] { return std::thread::hardware_concurrency(); },
        "Number of hardware threads the C++ thread pools may use.");
}

}  // namespace
}  // namespace wmfast

PYBIND11_MODULE(_torch, m) {
  m.doc() = "wmfast: model execution through libtorch";
  wmfast::InitInfo(m);
  wmfast::InitNativeModel(m);  // NativeModel: AOTInductor packages run from C++
  wmfast::InitMcts(m);  // MCTS / GumbelMCTS: batched tree search over a Python model
  wmfast::InitStochasticMcts(m);  // StochasticMCTS: chance nodes (Stochastic MuZero)
  wmfast::InitSampled(m);  // SampledMCTS: Sampled MuZero search over K sampled actions
  wmfast::InitCem(m);  // Planner: CEM / MPPI / iCEM trajectory optimisation
  wmfast::InitImagine(m);  // sample_onehot, imagine_native: Dreamer imagination
}
