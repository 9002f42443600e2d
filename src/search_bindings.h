// Helpers shared by the bindings of the tree searches (mcts, stochastic and sampled bindings):
// root inputs as float32 memory, result tensors that own the search's buffers, the model
// functions (Python callbacks or NativeModels), and copies of the trees as tensors. Included only by files in src/ that include
// torch's pybind11.
#ifndef WMFAST_SRC_SEARCH_BINDINGS_H_
#define WMFAST_SRC_SEARCH_BINDINGS_H_

#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>
#include <pybind11/numpy.h>
#include <ATen/ops/all.h>
#include <ATen/ops/argmin.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/isfinite.h>

#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "bindings.h"
#include "wmfast/common/check.h"
#include "wmfast/mcts/tree.h"
#include "wmfast/model/float_rows.h"
#include "wmfast/model/torch/callback_evaluator.h"
#include "wmfast/model/torch/latent_store.h"
#include "wmfast/model/torch/native_model.h"

namespace wmfast {

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// A root input (shape and dtype kind checked by wmfast.mcts) as float32 C-contiguous CPU memory:
// a torch tensor converted by torch (nothing to do when it already is one), anything else by
// numpy; None gives no data.
struct FloatInput {
  FloatInput() = default;
  explicit FloatInput(const py::object& value) {
    if (value.is_none()) return;
    if (THPVariable_Check(value.ptr())) {
      tensor = THPVariable_Unpack(value.ptr()).detach().to(at::kCPU, at::kFloat).contiguous();
      data = tensor.data_ptr<float>();
    } else {
      array = CArray<float>::ensure(value);
      if (!array) throw py::error_already_set();
      data = array.data();
    }
  }
  at::Tensor tensor;
  CArray<float> array;
  const float* data = nullptr;
};

// A CPU tensor of `shape` that owns `values` (moved into it, no copy): its holder may write to
// it or keep it, and no search reads or reuses that memory. Freed without the GIL.
template <typename T>
inline at::Tensor OwningTensor(std::vector<T>&& values, at::IntArrayRef shape, at::ScalarType type) {
  auto* owned = new std::vector<T>(std::move(values));
  return at::from_blob(owned->data(), shape, [owned](void*) { delete owned; },
                       at::TensorOptions().dtype(type));
}

inline py::str Interned(const char* name) {
  return py::reinterpret_steal<py::str>(PyUnicode_InternFromString(name));
}

// `field` is an interned attribute name (made once: a name built from a C string per call
// was ~4% of a 16-tree search).
inline at::Tensor FieldTensor(const py::object& step, const py::str& field, const char* name,
                              bool optional,
                              const char* returns = "a wmfast.Step(latent, reward, logits, value, "
                                                    "discount=None)") {
  py::object value = py::getattr(step, field, py::none());
  if (value.is_none()) {
    if (optional) return at::Tensor();
    throw py::value_error(std::string(name) + " is missing (None): the model must return " +
                          returns);
  }
  if (!THPVariable_Check(value.ptr())) {
    throw py::type_error(std::string(name) + " must be a torch.Tensor, got " +
                         py::str(py::type::of(value).attr("__name__")).cast<std::string>());
  }
  return THPVariable_Unpack(value.ptr());
}

// Wraps the user's recurrent function (called with the GIL held): returning a wm.Step (kStep), or
// Stochastic MuZero's decision function returning a wm.Afterstate (kAfterstate; its
// chance_logits go to StepTensors::logits). Also polls Ctrl-C.
inline model::RecurrentFn PythonRecurrentFn(py::object fn,
                                            model::StepKind kind = model::StepKind::kStep) {
  // Made (and freed, by the search's runner) with the GIL held.
  struct Callback {
    py::object fn;
    model::StepKind kind;
    py::str latent = Interned("latent"), reward = Interned("reward"), logits = Interned("logits"),
            value = Interned("value"), discount = Interned("discount"),
            chance_logits = Interned("chance_logits");
  };
  auto callback = std::make_shared<Callback>(Callback{std::move(fn), kind});
  return [callback](const at::Tensor& latent, const at::Tensor& action,
                    const model::ConsumeStep& consume) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    const Callback& c = *callback;
    py::object step = c.fn(latent, action);
    model::StepTensors out;
    if (c.kind == model::StepKind::kAfterstate) {
      const char* returns = "a wmfast.Afterstate(latent, chance_logits, value)";
      out.latent = FieldTensor(step, c.latent, "Afterstate.latent", false, returns);
      out.logits = FieldTensor(step, c.chance_logits, "Afterstate.chance_logits", false, returns);
      out.value = FieldTensor(step, c.value, "Afterstate.value", false, returns);
    } else {
      out.latent = FieldTensor(step, c.latent, "Step.latent", false);
      out.reward = FieldTensor(step, c.reward, "Step.reward", false);
      out.logits = FieldTensor(step, c.logits, "Step.logits", false);
      out.value = FieldTensor(step, c.value, "Step.value", false);
      out.discount = FieldTensor(step, c.discount, "Step.discount", true);
    }
    consume(out);  // before `out` and `step` are dropped, with the GIL held
  };
}

// One model function of a search (MCTS's recurrent function, Stochastic MuZero's decision or
// chance function, Sampled MuZero's): a NativeModel runs in C++ without the GIL (taking it only
// to poll Ctrl-C), on the CPU with one runner per search thread, so each thread can search its
// own shard of trees with its own model calls. Anything else is called back in Python, once per
// simulation for all trees: a Python model's fixed cost per call (tens of microseconds per torch
// op) would double with two half-batch calls, more than the threads win back.
struct ModelFunction {
  // `python` wraps a Python callable (default: PythonRecurrentFn of `kind`); `min_rows` pads a
  // native model's small CPU calls (NativeRecurrentFn).
  ModelFunction(py::object fn, model::StepKind kind = model::StepKind::kStep,
                const std::function<model::RecurrentFn(py::object)>& python = nullptr,
                int64_t min_rows = 1) {
    if (py::isinstance<model::NativeModel>(fn)) {
      native = fn.cast<std::shared_ptr<model::NativeModel>>();
      concurrent_calls = native->device().is_cpu() ? native->num_runners() : 1;
      auto poll = [] {
        py::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      };
      recurrent = model::NativeRecurrentFn(native, poll, kind, min_rows);
    } else {
      recurrent = python ? python(std::move(fn)) : PythonRecurrentFn(std::move(fn), kind);
    }
  }

  // The function's evaluator over `store`, whose outputs are `width` wide (A, or C for an
  // afterstate's chance logits); moves the function into it (call once).
  model::CallbackEvaluator Evaluator(model::LatentStore* store, int width,
                                     model::StepKind kind = model::StepKind::kStep) {
    return model::CallbackEvaluator(store, width, std::move(recurrent), concurrent_calls, kind);
  }

  // One set of weights for a whole search: NativeModel.load_weights waits while this is held.
  // Take it without the GIL (the search's interrupt polls need it); empty for a Python model.
  std::shared_lock<std::shared_mutex> ReadWeights() const {
    return native ? native->ReadWeights() : std::shared_lock<std::shared_mutex>();
  }

  std::shared_ptr<model::NativeModel> native;  // null for a Python callback
  model::RecurrentFn recurrent;
  int concurrent_calls = 1;
};

// A NaN or infinite root latent is named here, not as the model's output it turns into.
inline void CheckFiniteLatent(const at::Tensor& latent, int64_t B) {
  if (!at::isFloatingType(latent.scalar_type()) || B == 0) return;
  if (latent.is_cpu() && latent.scalar_type() == at::kFloat && latent.is_contiguous()) {
    model::CheckFiniteRows(latent.const_data_ptr<float>(), B, latent.numel() / B, "root.latent",
                           false, model::NameBy::kEntry);  // vectorised: nanoseconds per entry
    return;
  }
  const at::Tensor finite = at::isfinite(latent.detach()).reshape({B, -1}).all(1);
  if (finite.all().item<bool>()) return;
  const int64_t b = at::argmin(finite.to(at::kInt)).item<int64_t>();
  throw std::invalid_argument(StrCat("root.latent holds a NaN or infinite value in row ", b,
                                     " (batch index): expected finite latents"));
}

// A finished search (mcts::Search or a class derived from it, or mcts::SampledSearch: anything
// with tree(), Slot() and batch_size()): the trees, the latents of their nodes and the results.
template <typename SearchT>
struct SearchStateOf {
  std::unique_ptr<SearchT> search;
  std::unique_ptr<model::LatentStore> latents;
  bool unwritten_latents_cleared = false;

  // The store, its slots of nodes never evaluated zeroed (they are left unwritten during the
  // search).
  const at::Tensor& InspectableLatents() {
    if (!unwritten_latents_cleared) {
      const mcts::Tree& t = search->tree();
      std::vector<int64_t> unwritten;
      for (int64_t b = 0; b < t.batch_size; ++b) {
        for (int64_t n = 0; n < t.num_nodes; ++n) {
          const int64_t id = t.Node(b, n);
          if (!t.created(id) || t.node_visits(id) == 0) unwritten.push_back(search->Slot(b, n));
        }
      }
      latents->Clear(unwritten);
      unwritten_latents_cleared = true;
    }
    return latents->tensor();
  }

  // [B, num_nodes, ...] latent of every node: a copy (the store is read again when a later
  // search reuses these trees).
  at::Tensor LatentsCopy() {
    const at::Tensor& t = InspectableLatents();
    // The store is node-major (mcts::Search::Slot): [num_nodes * B, ...].
    std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
    shape[0] = search->batch_size();
    shape.insert(shape.begin(), search->tree().num_nodes);
    return t.view(shape).transpose(0, 1).clone(at::MemoryFormat::Contiguous);
  }
};

// Copies of the trees' fields (mctx's Tree names) as CPU tensors: [B, N] or [B, N, E] with E the
// tree's edge width.
inline py::dict TreeFieldArrays(const mcts::Tree& t) {
  const int64_t B = t.batch_size, N = t.num_nodes, E = t.num_actions;
  py::dict d;
  for (const mcts::TreeField& field : t.Fields()) {
    // The field is strided through the node records ([B, N] or [B, N, E]); copied, since a later
    // search reusing these trees reads the records.
    const int64_t node = field.node_bytes / 4;
    std::vector<int64_t> shape = {B, N}, strides = {N * node, node};
    if (field.per_edge) {
      shape.push_back(E);
      strides.push_back(1);
    }
    const at::TensorOptions options =
        at::TensorOptions().dtype(field.is_float ? at::kFloat : at::kInt);
    const at::Tensor view = at::from_blob(const_cast<void*>(field.data), shape, strides, options);
    d[field.name] = at::empty(shape, options).copy_(view);
  }
  return d;
}

// TreeFieldArrays and root_invalid_actions [B, A] (A = num_actions <= E).
inline py::dict TreeArrays(const mcts::Tree& t, int64_t num_actions) {
  py::dict d = TreeFieldArrays(t);
  d["root_invalid_actions"] =
      at::from_blob(const_cast<uint8_t*>(t.root_invalid_actions.data()), {t.batch_size, num_actions},
                    at::TensorOptions().dtype(at::kByte))
          .to(at::kBool);
  return d;
}

}  // namespace wmfast

#endif  // WMFAST_SRC_SEARCH_BINDINGS_H_
