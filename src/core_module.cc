// wmfast._core: bindings of the torch-free C++ core. One Init function per capability, each in
// its own file; this file holds the shared helpers and lists them.
#include <pybind11/pybind11.h>

#include "bindings.h"

namespace wmfast {

void CheckVector(const py::array& array, const char* name, int64_t length, const char* like) {
  if (array.ndim() != 1) {
    throw py::value_error(std::string(name) + " must be 1-D, got an array of " +
                          std::to_string(array.ndim()) + " dimensions");
  }
  if (length >= 0 && array.shape(0) != length) {
    throw py::value_error(std::string(name) + " has length " + std::to_string(array.shape(0)) +
                          ": expected length " + std::to_string(length) + " (the length of " +
                          like + ")");
  }
}

py::array_t<int64_t> AsIndexArray(const py::array& array, const char* name) {
  const char kind = array.dtype().kind();
  if (kind != 'i' && kind != 'u') {
    throw py::type_error(std::string(name) + " must hold integer indices, got dtype " +
                         DtypeName(array));
  }
  return py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(array);
}

py::array_t<double> AsRealArray(const py::array& array, const char* name) {
  const char kind = array.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u') {
    throw py::type_error(std::string(name) + " must hold real numbers, got dtype " +
                         DtypeName(array));
  }
  return py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(array);
}

std::function<void()> InterruptChecker() {
  return [] {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  };
}

}  // namespace wmfast

PYBIND11_MODULE(_core, m) {
  m.doc() = "wmfast: the torch-free C++ core (tabular models, trees, planning math)";
  wmfast::InitTabular(m);  // TabularModel: counts, value/policy iteration, sampling
}
