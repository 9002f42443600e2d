// Bindings of wmfast::mcts (registered in wmfast._torch): the search state as a Python object,
// its results as torch tensors that own the search's result buffers (moved, no copy), copies of
// its trees as torch tensors, and the Python model callback. This is where
// the GIL is released around tree work and re-acquired to call the model, where Ctrl-C is polled
// between simulations, and where C++ errors become Python exceptions.
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>
#include <pybind11/numpy.h>
#include <ATen/ops/all.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/argmin.h>
#include <ATen/ops/isfinite.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "search_bindings.h"
#include "torch_bindings.h"
#include "wmfast/common/check.h"
#include "wmfast/mcts/search.h"
#include "wmfast/model/float_rows.h"
#include "wmfast/model/torch/callback_evaluator.h"
#include "wmfast/model/torch/latent_store.h"
#include "wmfast/model/torch/native_model.h"

namespace wmfast {
namespace {

using mcts::QTransform;
using mcts::Search;
using mcts::SearchConfig;

using SearchState = SearchStateOf<Search>;

std::unique_ptr<SearchState> RunSearch(
    const SearchConfig& config, py::object model_fn, const at::Tensor& root_latent,
    const float* root_logits, const float* root_value,
    const std::optional<CArray<uint8_t>>& invalid, const float* gumbel,
    const SearchState* reuse, const std::optional<CArray<int64_t>>& actions_taken,
    uint64_t stream, bool has_root) {
  const int A = config.num_actions;
  int64_t B = 0;
  if (has_root) {
    B = root_latent.size(0);
  } else {
    WMFAST_CHECK_ARG(reuse != nullptr, "root is required unless reuse is given");
    B = reuse->search->batch_size();
  }
  mcts::RootInput root;
  if (has_root) {
    root.logits = root_logits;
    root.values = root_value;
  }
  if (invalid) root.invalid = invalid->data();
  root.gumbel = gumbel;

  auto state = std::make_unique<SearchState>();
  std::vector<int64_t> slot_map;
  if (reuse == nullptr) {
    state->search = std::make_unique<Search>(config, B, config.num_simulations + 1, stream);
    state->search->InitFromRoots(root);
    state->latents = std::make_unique<model::LatentStore>(B * (config.num_simulations + 1),
                                                          root_latent);
  } else {
    WMFAST_CHECK_ARG(reuse->search->batch_size() == B, "reuse: the previous search had ",
                     reuse->search->batch_size(), " trees, the root has ", B);
    const int64_t* taken = actions_taken->data();
    const int64_t num_nodes =
        Search::NodesForReuse(*reuse->search, taken, config.num_simulations);
    state->search = std::make_unique<Search>(config, B, num_nodes, stream);
    state->search->InitFromPrevious(*reuse->search, taken, root, &slot_map);
    state->latents =
        std::make_unique<model::LatentStore>(B * num_nodes, *reuse->latents, slot_map);
  }
  if (has_root) {
    state->latents->Check(root_latent, B, "root.latent");
    CheckFiniteLatent(root_latent, B);
    std::vector<int64_t> root_slots(B);
    for (int64_t b = 0; b < B; ++b) root_slots[b] = state->search->Slot(b, mcts::kRootIndex);
    state->latents->Write(root_slots.data(), B, root_latent.contiguous());
  }
  ModelFunction function(std::move(model_fn));
  model::CallbackEvaluator evaluator = function.Evaluator(state->latents.get(), A);
  {
    py::gil_scoped_release release;
    const auto weights = function.ReadWeights();
    state->search->Run(evaluator, nullptr);
  }
  return state;
}

}  // namespace

void InitMcts(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const model::InvalidType& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const Interrupted&) {
      PyErr_SetNone(PyExc_KeyboardInterrupt);
    }
  });

  py::enum_<QTransform>(m, "QTransform")
      .value("PARENT_AND_SIBLINGS", QTransform::kParentAndSiblings)
      .value("MIN_MAX", QTransform::kMinMax)
      .value("RUNNING_MIN_MAX", QTransform::kRunningMinMax)
      .value("COMPLETED_BY_MIX_VALUE", QTransform::kCompletedByMixValue);

  py::class_<SearchConfig>(m, "MctsConfig", "Settings of a batched MuZero / Gumbel MuZero search.")
      .def(py::init<>())
      .def_readwrite("num_actions", &SearchConfig::num_actions)
      .def_readwrite("num_simulations", &SearchConfig::num_simulations)
      .def_readwrite("max_depth", &SearchConfig::max_depth)
      .def_readwrite("discount", &SearchConfig::discount)
      .def_readwrite("gumbel", &SearchConfig::gumbel)
      .def_readwrite("pb_c_init", &SearchConfig::pb_c_init)
      .def_readwrite("pb_c_base", &SearchConfig::pb_c_base)
      .def_readwrite("qtransform", &SearchConfig::qtransform)
      .def_readwrite("min_value", &SearchConfig::min_value)
      .def_readwrite("max_value", &SearchConfig::max_value)
      .def_readwrite("epsilon", &SearchConfig::epsilon)
      .def_readwrite("dirichlet_alpha", &SearchConfig::dirichlet_alpha)
      .def_readwrite("dirichlet_fraction", &SearchConfig::dirichlet_fraction)
      .def_readwrite("temperature", &SearchConfig::temperature)
      .def_readwrite("max_num_considered_actions", &SearchConfig::max_num_considered_actions)
      .def_readwrite("gumbel_scale", &SearchConfig::gumbel_scale)
      .def_readwrite("value_scale", &SearchConfig::value_scale)
      .def_readwrite("maxvisit_init", &SearchConfig::maxvisit_init)
      .def_readwrite("rescale_values", &SearchConfig::rescale_values)
      .def_readwrite("use_mixed_value", &SearchConfig::use_mixed_value)
      .def_readwrite("seed", &SearchConfig::seed)
      .def_readwrite("num_threads", &SearchConfig::num_threads)
      .def("validate", [](const SearchConfig& c) { mcts::ValidateConfig(c); },
           "Raises ValueError naming the first inconsistent setting.");

  py::class_<SearchState>(m, "MctsSearchState",
                          "A finished batched search: trees, node latents and results.")
      .def_property_readonly("batch_size", [](const SearchState& s) { return s.search->batch_size(); })
      .def_property_readonly("num_nodes", [](const SearchState& s) { return s.search->tree().num_nodes; })
      .def_property_readonly("latent_device", [](const SearchState& s) {
        return s.latents->tensor().device();
      }, "The device of the node latents")
      .def_property_readonly("latents", [](SearchState& s) {
        return s.LatentsCopy();
      }, "[B, num_nodes, ...] latent of every node (a copy of the store, on its device)")
      .def("tree_arrays", [](SearchState& s) {
        s.search->CompleteForInspection();
        return TreeArrays(s.search->tree(), s.search->config().num_actions);
      }, "Copies of the trees as CPU tensors, by mctx's Tree field names.")
      .def("take_results", [](SearchState& s) {
        const int64_t B = s.search->batch_size(), A = s.search->config().num_actions;
        const bool gumbel = s.search->config().gumbel;
        mcts::Search::Results r = s.search->TakeResults();
        py::object gumbel_noise = py::none();
        if (gumbel) gumbel_noise = py::cast(OwningTensor(std::move(r.gumbel), {B, A}, at::kFloat));
        return py::make_tuple(
            OwningTensor(std::move(r.action), {B}, at::kLong),
            OwningTensor(std::move(r.visit_counts), {B, A}, at::kInt),
            OwningTensor(std::move(r.policy), {B, A}, at::kFloat),
            OwningTensor(std::move(r.root_value), {B}, at::kFloat),
            OwningTensor(std::move(r.q_values), {B, A}, at::kFloat),
            gumbel_noise);
      }, "(action, visit_counts, policy, root_value, q_values, gumbel or None) as CPU tensors that "
         "own the results, moved out of the search (call once).");

  m.def(
      "mcts_search",
      [](const SearchConfig& config, py::object model_fn, py::object root_latent,
         py::object root_logits, py::object root_value, std::optional<CArray<uint8_t>> invalid,
         py::object gumbel, py::object reuse, std::optional<CArray<int64_t>> actions_taken,
         uint64_t stream) {
        // `reuse` as an object: pybind11 probes other modules' types (an AttributeError made
        // and dropped, ~1 µs) before it takes None for a null SearchState*.
        const SearchState* previous = reuse.is_none() ? nullptr : reuse.cast<const SearchState*>();
        const bool has_root = !root_latent.is_none();
        at::Tensor latent;
        FloatInput logits, value;
        if (has_root) {
          latent = THPVariable_Unpack(root_latent.ptr());
          logits = FloatInput(root_logits);
          value = FloatInput(root_value);
        }
        const FloatInput gumbel_noise(gumbel);
        return RunSearch(config, std::move(model_fn), latent, logits.data, value.data, invalid,
                         gumbel_noise.data, previous, actions_taken, stream, has_root);
      },
      py::arg("config"), py::arg("model_fn"), py::arg("root_latent"), py::arg("root_logits"),
      py::arg("root_value"), py::arg("invalid"), py::arg("gumbel"), py::arg("reuse"),
      py::arg("actions_taken"), py::arg("stream"),
      "Runs a batched search (inputs validated by wmfast.mcts); returns an MctsSearchState.");
}

}  // namespace wmfast
