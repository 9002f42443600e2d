// Bindings of wmfast::tabular: conversion of numpy arrays, the GIL, and error translation.
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "bindings.h"
#include "wmfast/tabular/planning.h"
#include "wmfast/tabular/tabular_model.h"

namespace wmfast {
namespace {

using tabular::CompiledModel;
using tabular::TabularModel;

template <typename T>
using CArray = py::array_t<T, py::array::c_style>;

bool IsContiguous(const py::array& array, char kind, int itemsize) {
  return array.dtype().kind() == kind && array.itemsize() == itemsize &&
         (array.flags() & py::array::c_style);
}

// Index arrays of one dtype (int32 when all three already are: no copy for either width).
template <typename Index, typename Reward>
void UpdateWith(TabularModel& model, const py::array& states, const py::array& actions,
                const py::array& rewards, const py::array& next_states,
                const CArray<uint8_t>& terminated) {
  auto s = CArray<Index>::ensure(states), a = CArray<Index>::ensure(actions),
       n = CArray<Index>::ensure(next_states);
  auto r = CArray<Reward>::ensure(rewards);
  tabular::TransitionBatch<Index, Reward, uint8_t> batch{s.data(), a.data(), r.data(),
                                                         n.data(), terminated.data(), s.size()};
  py::gil_scoped_release release;
  model.Update(batch);
}

void Update(TabularModel& model, const py::array& states, const py::array& actions,
            const py::array& rewards, const py::array& next_states,
            const py::array& terminated) {
  CheckVector(states, "states");
  const int64_t n = states.shape(0);
  CheckVector(actions, "actions", n);
  CheckVector(rewards, "rewards", n);
  CheckVector(next_states, "next_states", n);
  CheckVector(terminated, "terminated", n);
  const char flag_kind = terminated.dtype().kind();
  if (flag_kind != 'b' && flag_kind != 'i' && flag_kind != 'u') {
    throw py::type_error("terminated must hold booleans (or 0/1 integers), got dtype " +
                         DtypeName(terminated));
  }
  CArray<uint8_t> flags =
      flag_kind == 'b' && (terminated.flags() & py::array::c_style)
          ? CArray<uint8_t>(py::array(py::dtype("uint8"), {n}, {1},
                                      terminated.data(), terminated))
          : CArray<uint8_t>::ensure(terminated.attr("astype")("bool").attr("view")("uint8"));

  const bool int32_indices = IsContiguous(states, 'i', 4) && IsContiguous(actions, 'i', 4) &&
                             IsContiguous(next_states, 'i', 4);
  py::array index_arrays[3] = {states, actions, next_states};
  if (!int32_indices) {
    const char* names[3] = {"states", "actions", "next_states"};
    for (int k = 0; k < 3; ++k) index_arrays[k] = AsIndexArray(index_arrays[k], names[k]);
  }
  py::array reward_array = rewards;
  const bool float32_rewards = IsContiguous(rewards, 'f', 4);
  if (!float32_rewards) reward_array = AsRealArray(rewards, "rewards");

  if (int32_indices && float32_rewards) {
    UpdateWith<int32_t, float>(model, index_arrays[0], index_arrays[1], reward_array,
                               index_arrays[2], flags);
  } else if (int32_indices) {
    UpdateWith<int32_t, double>(model, index_arrays[0], index_arrays[1], reward_array,
                                index_arrays[2], flags);
  } else if (float32_rewards) {
    UpdateWith<int64_t, float>(model, index_arrays[0], index_arrays[1], reward_array,
                               index_arrays[2], flags);
  } else {
    UpdateWith<int64_t, double>(model, index_arrays[0], index_arrays[1], reward_array,
                                index_arrays[2], flags);
  }
}

// The CSR view as numpy arrays (copies: the model may change after this returns).
py::dict CompiledArrays(const TabularModel& model) {
  std::shared_ptr<const CompiledModel> view;
  {
    py::gil_scoped_release release;
    view = model.Compiled();
  }
  py::dict out;
  out["pair_offsets"] = py::array_t<int64_t>(view->pair_offsets.size(), view->pair_offsets.data());
  out["next_state"] = py::array_t<int32_t>(view->next_state.size(), view->next_state.data());
  out["count"] = py::array_t<int64_t>(view->count.size(), view->count.data());
  out["terminal_count"] =
      py::array_t<int64_t>(view->terminal_count.size(), view->terminal_count.data());
  out["edge_reward_sum"] =
      py::array_t<double>(view->edge_reward_sum.size(), view->edge_reward_sum.data());
  out["visits"] = py::array_t<int64_t>(view->visits.size(), view->visits.data());
  out["reward_sum"] = py::array_t<double>(view->reward_sum.size(), view->reward_sum.data());
  out["mean_reward"] = py::array_t<double>(view->mean_reward.size(), view->mean_reward.data());
  return out;
}

tabular::Sweep ParseSweep(const std::string& sweep) {
  if (sweep == "gauss_seidel") return tabular::Sweep::kGaussSeidel;
  if (sweep == "jacobi") return tabular::Sweep::kJacobi;
  throw py::value_error("sweep must be 'gauss_seidel' or 'jacobi', got '" + sweep + "'");
}

py::dict Plan(const TabularModel& model, bool policy_iteration, double gamma, double tol,
              int64_t max_iters, int64_t min_visits, double unknown_value, double bonus,
              const std::string& sweep, int num_threads,
              const std::optional<py::array>& initial_values) {
  tabular::PlanningOptions options;
  options.gamma = gamma;
  options.tol = tol;
  options.max_iters = max_iters;
  options.min_visits = min_visits;
  options.unknown_value = unknown_value;
  options.bonus = bonus;
  options.sweep = ParseSweep(sweep);
  options.num_threads = num_threads;
  options.check_interrupt = InterruptChecker();
  py::array_t<double> initial;
  if (initial_values) {
    CheckVector(*initial_values, "initial_values");
    if (initial_values->shape(0) != model.num_states()) {
      throw py::value_error("initial_values has length " +
                            std::to_string(initial_values->shape(0)) + ": expected num_states = " +
                            std::to_string(model.num_states()));
    }
    initial = AsRealArray(*initial_values, "initial_values");
    options.initial_values = initial.data();
  }
  tabular::Solution solution;
  {
    py::gil_scoped_release release;
    auto view = model.Compiled();
    solution = policy_iteration ? tabular::PolicyIteration(*view, options)
                                : tabular::ValueIteration(*view, options);
  }
  py::dict out;
  const py::ssize_t S = model.num_states(), A = model.num_actions();
  out["values"] = ToArray(std::move(solution.values));
  out["q_values"] = ToArray(std::move(solution.q_values)).reshape({S, A});
  out["policy"] = ToArray(std::move(solution.policy));
  out["iterations"] = solution.iterations;
  out["evaluation_sweeps"] = solution.evaluation_sweeps;
  out["residual"] = solution.residual;
  out["converged"] = solution.converged;
  return out;
}

py::tuple Sample(const TabularModel& model, const py::array& states, const py::array& actions,
                 const py::array& uniform_next, const py::array& uniform_terminal) {
  CheckVector(states, "states");
  const int64_t n = states.shape(0);
  CheckVector(actions, "actions", n);
  auto s = AsIndexArray(states, "states"), a = AsIndexArray(actions, "actions");
  auto u_next = AsRealArray(uniform_next, "uniform_next"),
       u_terminal = AsRealArray(uniform_terminal, "uniform_terminal");
  CheckVector(u_next, "uniform_next", n);
  CheckVector(u_terminal, "uniform_terminal", n);
  std::vector<int64_t> next_states(n);
  std::vector<double> rewards(n);
  std::vector<uint8_t> terminated(n);
  {
    py::gil_scoped_release release;
    auto view = model.Compiled();
    tabular::SampleTransitions(*view, s.data(), a.data(), u_next.data(), u_terminal.data(), n,
                               next_states.data(), rewards.data(), terminated.data());
  }
  return py::make_tuple(ToArray(std::move(next_states)), ToArray(std::move(rewards)),
                        ToArray(std::move(terminated)).attr("view")("bool"));
}

py::dict Entries(const TabularModel& model) {
  tabular::CounterEntries entries;
  {
    py::gil_scoped_release release;
    entries = model.Entries();
  }
  py::dict out;
  out["pairs"] = ToArray(std::move(entries.pairs));
  out["next_states"] = ToArray(std::move(entries.next_states));
  out["terminated"] = ToArray(std::move(entries.terminated)).attr("view")("bool");
  out["counts"] = ToArray(std::move(entries.counts));
  out["reward_sums"] = ToArray(std::move(entries.reward_sums));
  return out;
}

void AddEntries(TabularModel& model, const py::array& pairs, const py::array& next_states,
                const py::array& terminated, const py::array& counts,
                const py::array& reward_sums) {
  CheckVector(pairs, "pairs");
  const int64_t size = pairs.shape(0);
  CheckVector(next_states, "next_states", size, "pairs");
  CheckVector(terminated, "terminated", size, "pairs");
  CheckVector(counts, "counts", size, "pairs");
  CheckVector(reward_sums, "reward_sums", size, "pairs");
  auto p = AsIndexArray(pairs, "pairs"), n = AsIndexArray(next_states, "next_states"),
       c = AsIndexArray(counts, "counts");
  auto r = AsRealArray(reward_sums, "reward_sums");
  if (terminated.dtype().kind() != 'b') {
    throw py::type_error("terminated must hold booleans, got dtype " + DtypeName(terminated));
  }
  auto t = CArray<uint8_t>::ensure(terminated.attr("view")("uint8"));
  py::gil_scoped_release release;
  model.AddEntries(p.data(), n.data(), t.data(), c.data(), r.data(), size);
}

}  // namespace

void InitTabular(py::module_& m) {
  py::class_<TabularModel>(m, "TabularModel", "Count-based tabular world model (C++ core).")
      .def(py::init<int64_t, int64_t, double, int>(), py::arg("num_states"),
           py::arg("num_actions"), py::arg("prior") = 0.0, py::arg("num_threads") = 1)
      .def_property_readonly("num_threads", &TabularModel::num_threads)
      .def_property_readonly("num_states", &TabularModel::num_states)
      .def_property_readonly("num_actions", &TabularModel::num_actions)
      .def_property_readonly("prior", &TabularModel::prior)
      .def_property_readonly("num_transitions", &TabularModel::num_transitions)
      .def("update", &Update, py::arg("states"), py::arg("actions"), py::arg("rewards"),
           py::arg("next_states"), py::arg("terminated"))
      .def("entries", &Entries)
      .def("add_entries", &AddEntries, py::arg("pairs"), py::arg("next_states"),
           py::arg("terminated"), py::arg("counts"), py::arg("reward_sums"))
      .def(
          "merge",
          [](TabularModel& model, const TabularModel& other) {
            py::gil_scoped_release release;
            model.Merge(other);
          },
          py::arg("other"))
      .def("compiled_arrays", &CompiledArrays)
      .def("plan", &Plan, py::arg("policy_iteration"), py::arg("gamma"), py::arg("tol"),
           py::arg("max_iters"), py::arg("min_visits"), py::arg("unknown_value"),
           py::arg("bonus"), py::arg("sweep"), py::arg("num_threads"), py::arg("initial_values") = py::none())
      .def("sample", &Sample, py::arg("states"), py::arg("actions"), py::arg("uniform_next"),
           py::arg("uniform_terminal"));
}

}  // namespace wmfast
