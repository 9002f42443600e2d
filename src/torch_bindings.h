// The Init functions of wmfast._torch, one per capability, each in its own file. These files
// include torch's pybind11 (torch/csrc/utils/pybind.h) for the tensor casters.
#ifndef WMFAST_SRC_TORCH_BINDINGS_H_
#define WMFAST_SRC_TORCH_BINDINGS_H_

#include <pybind11/pybind11.h>

namespace wmfast {

void InitCem(pybind11::module_& m);          // CEM, MPPI, ICEM
void InitImagine(pybind11::module_& m);      // sample_onehot, imagine_native (Dreamer)
void InitMcts(pybind11::module_& m);         // MCTS, GumbelMCTS
void InitStochasticMcts(pybind11::module_& m);  // StochasticMCTS (after InitMcts: its config)
void InitNativeModel(pybind11::module_& m);  // NativeModel
void InitSampled(pybind11::module_& m);      // SampledMCTS

}  // namespace wmfast

#endif  // WMFAST_SRC_TORCH_BINDINGS_H_
