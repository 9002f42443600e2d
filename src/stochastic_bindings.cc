// Bindings of wmfast::mcts::StochasticSearch (registered in wmfast._torch): Stochastic MuZero's
// search state as a Python object, its results as tensors that own the search's buffers, copies
// of its trees, and the two Python model callbacks (decision -> wm.Afterstate, chance ->
// wm.Step). The GIL is released around the tree work and re-acquired for each model call, which
// also polls Ctrl-C; C++ errors become Python exceptions (the translator of InitMcts).
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>
#include <pybind11/numpy.h>

#include <memory>
#include <optional>
#include <shared_mutex>
#include <vector>

#include "bindings.h"
#include "search_bindings.h"
#include "torch_bindings.h"
#include "wmfast/common/check.h"
#include "wmfast/mcts/stochastic_search.h"
#include "wmfast/model/torch/callback_evaluator.h"
#include "wmfast/model/torch/latent_store.h"
#include "wmfast/model/torch/native_model.h"

namespace wmfast {
namespace {

using mcts::SearchConfig;
using mcts::StochasticSearch;
using StochasticState = SearchStateOf<StochasticSearch>;

std::unique_ptr<StochasticState> RunStochasticSearch(
    const SearchConfig& config, int num_chance_outcomes, py::object decision_fn,
    py::object chance_fn, const at::Tensor& root_latent, const float* root_logits,
    const float* root_value, const std::optional<CArray<uint8_t>>& invalid,
    const StochasticState* reuse, const std::optional<CArray<int64_t>>& actions_taken,
    const std::optional<CArray<int64_t>>& outcomes_taken, uint64_t stream, bool has_root) {
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

  auto state = std::make_unique<StochasticState>();
  if (reuse == nullptr) {
    const int64_t num_nodes = config.num_simulations + 1;
    state->search =
        std::make_unique<StochasticSearch>(config, num_chance_outcomes, B, num_nodes, stream);
    state->search->InitFromRoots(root);
    // States and afterstates share the store: an afterstate must look like a state.
    state->latents = std::make_unique<model::LatentStore>(B * num_nodes, root_latent);
  } else {
    WMFAST_CHECK_ARG(reuse->search->batch_size() == B, "reuse: the previous search had ",
                     reuse->search->batch_size(), " trees, the root has ", B);
    WMFAST_CHECK_ARG(actions_taken && outcomes_taken,
                     "action_taken and outcome_taken are required with reuse");
    const int64_t num_nodes = StochasticSearch::NodesForReuse(
        *reuse->search, actions_taken->data(), outcomes_taken->data(), config.num_simulations);
    state->search =
        std::make_unique<StochasticSearch>(config, num_chance_outcomes, B, num_nodes, stream);
    std::vector<int64_t> slot_map;
    state->search->InitFromPrevious(*reuse->search, actions_taken->data(),
                                    outcomes_taken->data(), root, &slot_map);
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

  // Each function runs as wm.MCTS's model does (search_bindings.h): with two CPU NativeModels
  // (runners for every thread) each search thread calls both for its own shard of trees. The
  // calls' sizes depend on the split (a shard's trees needing each function, as few as one), so
  // small native calls are padded: the results then do not depend on the threads. (MCTS's and
  // Sampled MuZero's calls hold a whole shard, 32 trees or more.)
  ModelFunction decision_function(std::move(decision_fn), model::StepKind::kAfterstate, nullptr,
                                  model::kRowIndependentBatch);
  ModelFunction chance_function(std::move(chance_fn), model::StepKind::kStep, nullptr,
                                model::kRowIndependentBatch);
  model::CallbackEvaluator decision = decision_function.Evaluator(
      state->latents.get(), num_chance_outcomes, model::StepKind::kAfterstate);
  model::CallbackEvaluator chance = chance_function.Evaluator(state->latents.get(), A);
  {
    py::gil_scoped_release release;
    const auto decision_weights = decision_function.ReadWeights();
    const auto chance_weights = chance_function.ReadWeights();
    state->search->Run(decision, chance, nullptr);
  }
  return state;
}

}  // namespace

void InitStochasticMcts(py::module_& m) {
  py::class_<StochasticState>(
      m, "StochasticSearchState",
      "A finished Stochastic MuZero search: trees, node latents and results.")
      .def_property_readonly("batch_size",
                             [](const StochasticState& s) { return s.search->batch_size(); })
      .def_property_readonly("num_nodes",
                             [](const StochasticState& s) { return s.search->tree().num_nodes; })
      .def_property_readonly(
          "latent_device", [](const StochasticState& s) { return s.latents->tensor().device(); },
          "The device of the node latents")
      .def_property_readonly(
          "latents", [](StochasticState& s) { return s.LatentsCopy(); },
          "[B, num_nodes, ...] latent (state or afterstate) of every node (a copy of the store, "
          "on its device)")
      .def_property_readonly(
          "model_calls",
          [](const StochasticState& s) {
            return py::make_tuple(s.search->decision_calls(), s.search->chance_calls());
          },
          "(decision calls, chance calls) made by the search")
      .def(
          "tree_arrays",
          [](StochasticState& s) {
            StochasticSearch& search = *s.search;
            search.CompleteForInspection();
            const mcts::Tree& t = search.tree();
            py::dict d = TreeArrays(t, search.config().num_actions);
            std::vector<uint8_t> flags = search.chance_flags();
            d["is_chance"] =
                OwningTensor(std::move(flags), {t.batch_size, t.num_nodes}, at::kByte)
                    .to(at::kBool);
            return d;
          },
          "Copies of the trees as CPU tensors: mctx's Tree field names with edges [B, N, "
          "max(A, C)] (a decision node's first A, a chance node's first C), and is_chance "
          "[B, N].")
      .def(
          "take_results",
          [](StochasticState& s) {
            const int64_t B = s.search->batch_size(), A = s.search->config().num_actions;
            mcts::Search::Results r = s.search->TakeResults();
            return py::make_tuple(OwningTensor(std::move(r.action), {B}, at::kLong),
                                  OwningTensor(std::move(r.visit_counts), {B, A}, at::kInt),
                                  OwningTensor(std::move(r.policy), {B, A}, at::kFloat),
                                  OwningTensor(std::move(r.root_value), {B}, at::kFloat),
                                  OwningTensor(std::move(r.q_values), {B, A}, at::kFloat),
                                  py::none());
          },
          "(action, visit_counts, policy, root_value, q_values, None) as CPU tensors that own "
          "the results, moved out of the search (call once).");

  m.def(
      "stochastic_search",
      [](const SearchConfig& config, int num_chance_outcomes, py::object decision_fn,
         py::object chance_fn, py::object root_latent, py::object root_logits,
         py::object root_value, std::optional<CArray<uint8_t>> invalid, py::object reuse,
         std::optional<CArray<int64_t>> actions_taken,
         std::optional<CArray<int64_t>> outcomes_taken, uint64_t stream) {
        const StochasticState* previous =
            reuse.is_none() ? nullptr : reuse.cast<const StochasticState*>();
        const bool has_root = !root_latent.is_none();
        at::Tensor latent;
        FloatInput logits, value;
        if (has_root) {
          latent = THPVariable_Unpack(root_latent.ptr());
          logits = FloatInput(root_logits);
          value = FloatInput(root_value);
        }
        return RunStochasticSearch(config, num_chance_outcomes, std::move(decision_fn),
                                   std::move(chance_fn), latent, logits.data, value.data,
                                   invalid, previous, actions_taken, outcomes_taken, stream,
                                   has_root);
      },
      py::arg("config"), py::arg("num_chance_outcomes"), py::arg("decision_fn"),
      py::arg("chance_fn"), py::arg("root_latent"), py::arg("root_logits"),
      py::arg("root_value"), py::arg("invalid"), py::arg("reuse"), py::arg("actions_taken"),
      py::arg("outcomes_taken"), py::arg("stream"),
      "Runs a batched Stochastic MuZero search (inputs validated by wmfast.stochastic_mcts); "
      "returns a StochasticSearchState.");
}

}  // namespace wmfast
