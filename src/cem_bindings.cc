// Bindings of wmfast::cem (CEM / MPPI / iCEM planners): Python callables become the planner's
// model functions (called with the GIL, released in between), tensors pass without copies, and
// std::invalid_argument becomes ValueError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>

#include <string>
#include <utility>

#include "bindings.h"
#include "torch_bindings.h"
#include "wmfast/cem/planner.h"
#include "wmfast/model/torch/native_model.h"

namespace wmfast {
namespace {

namespace cem = wmfast::cem;

std::string TypeName(const py::handle& value) {
  return py::str(py::type::of(value).attr("__name__")).cast<std::string>();
}

at::Tensor ToTensor(const py::handle& value, const char* what) {
  if (!THPVariable_Check(value.ptr())) {
    throw py::type_error(std::string(what) + " must be a torch.Tensor, got " + TypeName(value));
  }
  return THPVariable_Unpack(value.ptr());
}

cem::DynamicsFn WrapDynamics(py::object fn) {
  if (py::isinstance<model::NativeModel>(fn)) {
    // Runs in C++ without the GIL: (next_state) or (next_state, reward).
    auto native = fn.cast<std::shared_ptr<model::NativeModel>>();
    const size_t outputs = native->output_specs().size();
    if (outputs != 1 && outputs != 2) {
      throw py::value_error("a NativeModel used as dynamics must return next_state or "
                            "(next_state, reward), but '" + native->path() + "' returns " +
                            std::to_string(outputs) + " tensors");
    }
    return [native](const at::Tensor& state, const at::Tensor& action) {
      std::vector<at::Tensor> out = native->Run({state, action});
      cem::Step step;
      step.next_state = out[0];
      if (out.size() == 2) step.reward = out[1];
      return step;
    };
  }
  if (!PyCallable_Check(fn.ptr())) {
    throw py::type_error("dynamics must be callable (state, action) -> (next_state, reward), got " +
                         TypeName(fn));
  }
  return [fn = std::move(fn)](const at::Tensor& state, const at::Tensor& action) {
    py::gil_scoped_acquire gil;
    // A direct vectorcall with the wrapped tensors: this runs once per horizon step, and
    // pybind11's generic argument casting costs about as much as a small model's op.
    py::object args[2] = {py::reinterpret_steal<py::object>(THPVariable_Wrap(state)),
                          py::reinterpret_steal<py::object>(THPVariable_Wrap(action))};
    if (!args[0] || !args[1]) throw py::error_already_set();
    PyObject* raw[2] = {args[0].ptr(), args[1].ptr()};
    py::object out = py::reinterpret_steal<py::object>(PyObject_Vectorcall(fn.ptr(), raw, 2,
                                                                           nullptr));
    if (!out) throw py::error_already_set();
    cem::Step step;
    if (THPVariable_Check(out.ptr())) {
      step.next_state = THPVariable_Unpack(out.ptr());
      return step;
    }
    if (PyTuple_CheckExact(out.ptr()) && PyTuple_GET_SIZE(out.ptr()) == 2) {
      PyObject* first = PyTuple_GET_ITEM(out.ptr(), 0);
      PyObject* second = PyTuple_GET_ITEM(out.ptr(), 1);
      if (THPVariable_Check(first) && THPVariable_Check(second)) {
        step.next_state = THPVariable_Unpack(first);
        step.reward = THPVariable_Unpack(second);
        return step;
      }
    }
    if (!py::isinstance<py::tuple>(out) && !py::isinstance<py::list>(out)) {
      throw py::type_error("dynamics must return (next_state, reward) tensors, got " +
                           TypeName(out));
    }
    py::sequence seq = out;
    if (py::len(seq) != 2) {
      throw py::type_error("dynamics must return a pair (next_state, reward), got a sequence of " +
                           std::to_string(py::len(seq)));
    }
    step.next_state = ToTensor(seq[0], "dynamics' next_state");
    if (!seq[1].is_none()) step.reward = ToTensor(seq[1], "dynamics' reward");
    return step;
  };
}

cem::StateFn WrapStateFn(const py::object& fn, const char* name) {
  if (fn.is_none()) return {};
  if (!PyCallable_Check(fn.ptr())) {
    throw py::type_error(std::string(name) + " must be callable or None, got " + TypeName(fn));
  }
  return [fn, name](const at::Tensor& state) {
    py::gil_scoped_acquire gil;
    py::object out = fn(state);
    return ToTensor(out, name);
  };
}

at::Tensor OptionalTensor(const py::object& value, const char* name) {
  if (value.is_none()) return at::Tensor();
  return ToTensor(value, name);
}

cem::Models MakeModels(py::object dynamics, const py::object& value, const py::object& policy) {
  cem::Models models;
  models.dynamics = WrapDynamics(std::move(dynamics));
  models.value = WrapStateFn(value, "value");
  models.policy = WrapStateFn(policy, "policy");
  return models;
}

// The wrapped callables hold py::objects: drop them with the GIL held.
struct ModelsHolder {
  cem::Models models;
  ~ModelsHolder() {
    py::gil_scoped_acquire gil;
    models = cem::Models();
  }
};

}  // namespace

void InitCem(py::module_& m) {
  py::enum_<cem::Method>(m, "CemMethod")
      .value("CEM", cem::Method::kCem)
      .value("MPPI", cem::Method::kMppi);
  py::enum_<cem::Propagation>(m, "Propagation")
      .value("NONE", cem::Propagation::kNone)
      .value("TS1", cem::Propagation::kTs1)
      .value("TSINF", cem::Propagation::kTsInf)
      .value("EXPECTATION", cem::Propagation::kExpectation);
  py::enum_<cem::GoalMetric>(m, "GoalMetric")
      .value("L2", cem::GoalMetric::kL2)
      .value("SQUARED_L2", cem::GoalMetric::kSquaredL2)
      .value("L1", cem::GoalMetric::kL1);

  using Config = cem::PlannerConfig;
  py::class_<Config>(m, "PlannerConfig", "Configuration of a CEM/MPPI/iCEM planner.")
      .def(py::init<>())
      .def_readwrite("method", &Config::method)
      .def_readwrite("horizon", &Config::horizon)
      .def_readwrite("action_dim", &Config::action_dim)
      .def_readwrite("population", &Config::population)
      .def_readwrite("elites", &Config::elites)
      .def_readwrite("iterations", &Config::iterations)
      .def_readwrite("action_low", &Config::action_low)
      .def_readwrite("action_high", &Config::action_high)
      .def_readwrite("init_std", &Config::init_std)
      .def_readwrite("min_std", &Config::min_std)
      .def_readwrite("alpha", &Config::alpha)
      .def_readwrite("discount", &Config::discount)
      .def_readwrite("temperature", &Config::temperature)
      .def_readwrite("update_std", &Config::update_std)
      .def_readwrite("return_mean", &Config::return_mean)
      .def_readwrite("noise_beta", &Config::noise_beta)
      .def_readwrite("keep_elites", &Config::keep_elites)
      .def_readwrite("ensemble_size", &Config::ensemble_size)
      .def_readwrite("propagation", &Config::propagation)
      .def_readwrite("particles", &Config::particles)
      .def_readwrite("disagreement_penalty", &Config::disagreement_penalty)
      .def_readwrite("goal_metric", &Config::goal_metric)
      .def_readwrite("goal_weight", &Config::goal_weight)
      .def_readwrite("goal_terminal_only", &Config::goal_terminal_only)
      .def_readwrite("policy_samples", &Config::policy_samples)
      .def_readwrite("seed", &Config::seed);

  py::class_<cem::Planner>(m, "Planner", "The C++ CEM/MPPI/iCEM loop (see wmfast.cem).")
      .def(py::init<Config>(), py::arg("config"))
      .def_property_readonly("kept_elites", &cem::Planner::kept_elites)
      .def("seed", &cem::Planner::Seed, py::arg("seed"))
      .def("noise_filter", [](const cem::Planner& p) { return p.noise_filter(); })
      .def(
          "plan",
          [](cem::Planner& planner, py::object dynamics, const py::object& state,
             const py::object& goal, const py::object& warm_mean, const py::object& warm_elites,
             int64_t shift, const py::object& noise, const py::object& value,
             const py::object& policy) {
            // A NativeModel runs without Python: then the GIL is released for the whole plan.
            const bool native = py::isinstance<model::NativeModel>(dynamics);
            std::shared_ptr<model::NativeModel> native_model;
            if (native) native_model = dynamics.cast<std::shared_ptr<model::NativeModel>>();
            ModelsHolder holder{MakeModels(std::move(dynamics), value, policy)};
            cem::PlanInputs in;
            in.state = ToTensor(state, "state");
            in.goal = OptionalTensor(goal, "goal");
            in.warm_mean = OptionalTensor(warm_mean, "warm_mean");
            in.warm_elites = OptionalTensor(warm_elites, "warm_elites");
            in.shift = shift;
            in.noise = OptionalTensor(noise, "noise");
            // With a Python dynamics the GIL stays held: the loop calls back into Python once per
            // horizon step, and the C++ work between two calls is short, so handing the GIL over
            // each time would cost more than it lets other threads do.
            cem::PlanResult r;
            if (native) {
              py::gil_scoped_release release;
              // One set of weights for the whole plan (NativeModel.load_weights waits).
              auto weights = native_model->ReadWeights();
              r = planner.Plan(holder.models, in);
            } else {
              r = planner.Plan(holder.models, in);
            }
            return py::make_tuple(r.actions, r.returns, r.mean, r.std, r.elites,
                                  r.elite_returns);
          },
          py::arg("dynamics"), py::arg("state"), py::arg("goal") = py::none(),
          py::arg("warm_mean") = py::none(), py::arg("warm_elites") = py::none(),
          py::arg("shift") = 1, py::arg("noise") = py::none(), py::arg("value") = py::none(),
          py::arg("policy") = py::none(),
          "Plans for a batch of states; returns (actions, returns, mean, std, elites, "
          "elite_returns).")
      .def(
          "evaluate",
          [](cem::Planner& planner, py::object dynamics, const py::object& state,
             const py::object& actions, const py::object& goal, const py::object& value) {
            ModelsHolder holder{MakeModels(std::move(dynamics), value, py::none())};
            at::Tensor s = ToTensor(state, "state"), a = ToTensor(actions, "actions");
            at::Tensor g = OptionalTensor(goal, "goal");
            return planner.Evaluate(holder.models, s, a, g);
          },
          py::arg("dynamics"), py::arg("state"), py::arg("actions"),
          py::arg("goal") = py::none(), py::arg("value") = py::none());

  m.def(
      "shift_plan",
      [](const at::Tensor& plan, int64_t steps, const at::Tensor& fill) {
        return cem::ShiftPlan(plan, steps, fill);
      },
      py::arg("plan"), py::arg("steps"), py::arg("fill"),
      "Shifts a plan [..., H, A] left by `steps` steps, filling the end with `fill` [A].");
}

}  // namespace wmfast
