// Shared helpers of the bindings: numpy conversion, argument checks that name the argument,
// and interrupt polling. Only the files in src/ include pybind11.
#ifndef WMFAST_SRC_BINDINGS_H_
#define WMFAST_SRC_BINDINGS_H_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace wmfast {

namespace py = pybind11;

void InitTabular(py::module_& m);

// A 1-D numpy array that owns the vector's buffer (no copy).
template <typename T>
py::array_t<T> ToArray(std::vector<T>&& values) {
  auto* owned = new std::vector<T>(std::move(values));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(static_cast<py::ssize_t>(owned->size()), owned->data(), free_when_done);
}

inline std::string DtypeName(const py::array& array) {
  return py::str(array.dtype()).cast<std::string>();
}

// Checks that `array` is 1-D (and, when length >= 0, as long as the array named `like`); names
// `name` otherwise.
void CheckVector(const py::array& array, const char* name, int64_t length = -1,
                 const char* like = "states");

// Integer index arrays: returned as contiguous int64 (a view when they already are).
// Floats, bools and other kinds raise TypeError naming `name`.
py::array_t<int64_t> AsIndexArray(const py::array& array, const char* name);

// Real arrays: returned as contiguous float64 (integers are converted; bool raises TypeError).
py::array_t<double> AsRealArray(const py::array& array, const char* name);

// Asks Python whether Ctrl-C was pressed; raises KeyboardInterrupt through the C++ stack if so.
// Callable from a thread that released the GIL.
std::function<void()> InterruptChecker();

}  // namespace wmfast

#endif  // WMFAST_SRC_BINDINGS_H_
