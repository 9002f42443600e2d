// Bindings of wmfast::mcts::SampledSearch (registered in wmfast._torch): its settings, a finished
// search as a Python object with its results and trees as torch tensors, and the model callback.
// The GIL is released around the search and taken back to call a Python model (which polls
// Ctrl-C), as in mcts_bindings.cc; C++ errors become Python exceptions there too.
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cmath>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "bindings.h"
#include "search_bindings.h"
#include "torch_bindings.h"
#include "wmfast/common/check.h"
#include "wmfast/mcts/sampled_search.h"
#include "wmfast/model/float_rows.h"
#include "wmfast/model/torch/callback_evaluator.h"
#include "wmfast/model/torch/latent_store.h"
#include "wmfast/model/torch/native_model.h"

namespace wmfast {
namespace {

using mcts::SampledConfig;
using mcts::SampledSearch;

using SampledState = SearchStateOf<SampledSearch>;

// The user's recurrent function (search_bindings.h's callback), with Step.logits checked
// against the policy's width: `policy_name` says what it holds (the evaluator's own message
// speaks of num_actions).
model::RecurrentFn SampledRecurrentFn(py::object fn, int64_t policy_width,
                                      std::string policy_name) {
  model::RecurrentFn step = PythonRecurrentFn(std::move(fn));
  return [step = std::move(step), policy_width, policy_name = std::move(policy_name)](
             const at::Tensor& latent, const at::Tensor& action,
             const model::ConsumeStep& consume) {
    step(latent, action, [&](const model::StepTensors& out) {
      const int64_t n = latent.size(0);
      if (out.logits.dim() != 2 || out.logits.size(0) != n || out.logits.size(1) != policy_width) {
        std::ostringstream got;
        got << out.logits.sizes();
        throw std::invalid_argument(StrCat("Step.logits must have shape [", n, ", ",
                                           policy_width, "] (", policy_name, "), got ",
                                           got.str()));
      }
      consume(out);
    });
  };
}

std::unique_ptr<SampledState> RunSampled(const SampledConfig& config, py::object model_fn,
                                         const at::Tensor* root_latent,
                                         const std::optional<CArray<float>>& root_logits,
                                         const std::optional<CArray<float>>& root_value,
                                         const std::optional<CArray<uint8_t>>& invalid,
                                         const std::optional<CArray<float>>& root_actions,
                                         const std::optional<CArray<int64_t>>& root_indices,
                                         const SampledState* reuse,
                                         const std::optional<CArray<int64_t>>& taken,
                                         uint64_t stream) {
  const bool has_root = root_latent != nullptr;
  WMFAST_CHECK_ARG(has_root || reuse != nullptr, "root is required unless reuse is given");
  const int64_t B = has_root ? root_latent->size(0) : reuse->search->batch_size();
  mcts::SampledRootInput root;
  if (has_root) {
    root.policy = root_logits->data();
    root.values = root_value->data();
  }
  if (invalid) root.invalid = invalid->data();
  if (root_actions) root.actions = root_actions->data();
  if (root_indices) root.action_indices = root_indices->data();
  auto state = std::make_unique<SampledState>();
  if (reuse == nullptr) {
    state->search = std::make_unique<SampledSearch>(config, B, stream);
    state->search->InitFromRoots(root);
    state->latents = std::make_unique<model::LatentStore>(B * state->search->tree().num_nodes,
                                                          *root_latent);
  } else {
    WMFAST_CHECK_ARG(reuse->search->batch_size() == B, "reuse: the previous search had ",
                     reuse->search->batch_size(), " trees, the root has ", B);
    WMFAST_CHECK_ARG(taken.has_value(), "action_taken is required with reuse");
    const int64_t num_nodes =
        SampledSearch::NodesForReuse(*reuse->search, taken->data(), config.num_simulations);
    state->search = std::make_unique<SampledSearch>(config, B, stream, num_nodes);
    std::vector<int64_t> slot_map;
    state->search->InitFromPrevious(*reuse->search, taken->data(), root, &slot_map);
    state->latents =
        std::make_unique<model::LatentStore>(B * num_nodes, *reuse->latents, slot_map);
  }
  if (has_root) {
    state->latents->Check(*root_latent, B, "root.latent");
    CheckFiniteLatent(*root_latent, B);
    std::vector<int64_t> root_slots(B);
    for (int64_t b = 0; b < B; ++b) root_slots[b] = state->search->Slot(b, mcts::kRootIndex);
    state->latents->Write(root_slots.data(), B, root_latent->contiguous());
  }

  const int width = config.policy_width();
  const std::string policy_name =
      config.continuous() ? StrCat("batch, 2 * action_dim: the Gaussian policy's mean, then log_std")
                          : std::string("batch, num_actions: the policy logits");
  // A CPU NativeModel with runners for every thread: each search thread calls it for its own
  // shard of trees (search_bindings.h).
  ModelFunction function(std::move(model_fn), model::StepKind::kStep, [&](py::object fn) {
    return SampledRecurrentFn(std::move(fn), width, policy_name);
  });
  model::CallbackEvaluator evaluator = function.Evaluator(state->latents.get(), width);
  {
    py::gil_scoped_release release;
    const auto weights = function.ReadWeights();
    state->search->Run(evaluator, nullptr);
  }
  return state;
}

}  // namespace

void InitSampled(py::module_& m) {
  py::class_<SampledConfig>(m, "SampledConfig", "Settings of a batched Sampled MuZero search.")
      .def(py::init<>())
      .def_readwrite("num_samples", &SampledConfig::num_samples)
      .def_readwrite("num_simulations", &SampledConfig::num_simulations)
      .def_readwrite("num_actions", &SampledConfig::num_actions)
      .def_readwrite("action_dim", &SampledConfig::action_dim)
      .def_readwrite("action_low", &SampledConfig::action_low)
      .def_readwrite("action_high", &SampledConfig::action_high)
      .def_readwrite("max_depth", &SampledConfig::max_depth)
      .def_readwrite("discount", &SampledConfig::discount)
      .def_readwrite("pb_c_init", &SampledConfig::pb_c_init)
      .def_readwrite("pb_c_base", &SampledConfig::pb_c_base)
      .def_readwrite("qtransform", &SampledConfig::qtransform)
      .def_readwrite("min_value", &SampledConfig::min_value)
      .def_readwrite("max_value", &SampledConfig::max_value)
      .def_readwrite("epsilon", &SampledConfig::epsilon)
      .def_readwrite("dirichlet_alpha", &SampledConfig::dirichlet_alpha)
      .def_readwrite("dirichlet_fraction", &SampledConfig::dirichlet_fraction)
      .def_readwrite("temperature", &SampledConfig::temperature)
      .def_readwrite("unvisited_parent_value", &SampledConfig::unvisited_parent_value)
      .def_readwrite("seed", &SampledConfig::seed)
      .def_readwrite("num_threads", &SampledConfig::num_threads)
      .def("validate", [](const SampledConfig& c) { mcts::ValidateSampledConfig(c); },
           "Raises ValueError naming the first inconsistent setting.");

  py::class_<SampledState>(m, "SampledSearchState",
                           "A finished Sampled MuZero search: trees, node latents and results.")
      .def_property_readonly("latent_device", [](const SampledState& s) {
        return s.latents->tensor().device();
      }, "The device of the node latents")
      .def_property_readonly("latents", [](SampledState& s) {
        return s.LatentsCopy();
      }, "[B, num_nodes, ...] latent of every node (a copy; zero for nodes never evaluated)")
      .def("tree_arrays", [](SampledState& s) {
        s.search->CompleteForInspection();
        const SampledSearch& search = *s.search;
        const mcts::Tree& t = search.tree();
        const SampledConfig& c = search.config();
        const int64_t B = t.batch_size, N = t.num_nodes, K = t.num_actions, D = c.action_dim;
        py::dict d = TreeFieldArrays(t);
        // The sampled action of every edge (NaN / -1 where a node has no such child).
        std::vector<int32_t> num_children(B * N);
        for (int64_t id = 0; id < B * N; ++id) num_children[id] = search.num_children(id);
        if (c.continuous()) {
          std::vector<float> actions(B * N * K * D, std::nanf(""));
          for (int64_t id = 0; id < B * N; ++id) {
            std::copy_n(search.samples(id), num_children[id] * D, &actions[id * K * D]);
          }
          d["children_actions"] = OwningTensor(std::move(actions), {B, N, K, D}, at::kFloat);
        } else {
          std::vector<int64_t> actions(B * N * K, -1);
          for (int64_t id = 0; id < B * N; ++id) {
            std::copy_n(search.sample_indices(id), num_children[id], &actions[id * K]);
          }
          d["children_actions"] = OwningTensor(std::move(actions), {B, N, K}, at::kLong);
        }
        d["num_children"] = OwningTensor(std::move(num_children), {B, N}, at::kInt);
        return d;
      }, "Copies of the trees as CPU tensors: mctx's Tree fields over the K sampled children, "
         "children_actions and num_children.")
      .def("take_results", [](SampledState& s) {
        const SampledConfig& c = s.search->config();
        const int64_t B = s.search->batch_size(), K = c.num_samples, D = c.action_dim;
        SampledSearch::Results r = s.search->TakeResults();
        py::dict d;
        d["index"] = OwningTensor(std::move(r.index), {B}, at::kLong);
        if (c.continuous()) {
          d["action"] = OwningTensor(std::move(r.action), {B, D}, at::kFloat);
          d["actions"] = OwningTensor(std::move(r.actions), {B, K, D}, at::kFloat);
        } else {
          d["action"] = OwningTensor(std::move(r.action_index), {B}, at::kLong);
          d["actions"] = OwningTensor(std::move(r.action_indices), {B, K}, at::kLong);
        }
        d["visit_counts"] = OwningTensor(std::move(r.visit_counts), {B, K}, at::kInt);
        d["policy"] = OwningTensor(std::move(r.policy), {B, K}, at::kFloat);
        d["priors"] = OwningTensor(std::move(r.priors), {B, K}, at::kFloat);
        d["q_values"] = OwningTensor(std::move(r.q_values), {B, K}, at::kFloat);
        d["root_value"] = OwningTensor(std::move(r.root_value), {B}, at::kFloat);
        return d;
      }, "The results as CPU tensors that own them, moved out of the search (call once).");

  m.def(
      "sampled_search",
      [](const SampledConfig& config, py::object model_fn, py::object root_latent,
         std::optional<CArray<float>> root_logits, std::optional<CArray<float>> root_value,
         std::optional<CArray<uint8_t>> invalid, std::optional<CArray<float>> root_actions,
         std::optional<CArray<int64_t>> root_indices, py::object reuse,
         std::optional<CArray<int64_t>> actions_taken, uint64_t stream) {
        at::Tensor latent;
        if (!root_latent.is_none()) latent = THPVariable_Unpack(root_latent.ptr());
        // `reuse` as an object, as in mcts_bindings.cc (no probing of other modules' types).
        const SampledState* previous = reuse.is_none() ? nullptr : reuse.cast<const SampledState*>();
        return RunSampled(config, std::move(model_fn), root_latent.is_none() ? nullptr : &latent,
                          root_logits, root_value, invalid, root_actions, root_indices, previous,
                          actions_taken, stream);
      },
      py::arg("config"), py::arg("model_fn"), py::arg("root_latent"), py::arg("root_logits"),
      py::arg("root_value"), py::arg("invalid"), py::arg("root_actions"),
      py::arg("root_indices"), py::arg("reuse"), py::arg("actions_taken"), py::arg("stream"),
      "Runs a batched Sampled MuZero search (inputs validated by wmfast.sampled); returns a "
      "SampledSearchState.");
}

}  // namespace wmfast
