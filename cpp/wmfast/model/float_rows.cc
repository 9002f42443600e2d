#include "wmfast/model/float_rows.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "wmfast/common/check.h"

namespace wmfast::model {

void GatherRows(const float* base, int64_t row_stride, int64_t col_stride, int64_t n,
                int64_t width, float* out) {
  if (width == 0) {
    if (row_stride == 1) {
      std::memcpy(out, base, n * sizeof(float));
      return;
    }
    for (int64_t i = 0; i < n; ++i) out[i] = base[i * row_stride];
    return;
  }
  if (col_stride == 1 && row_stride == width) {
    std::memcpy(out, base, n * width * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* row = base + i * row_stride;
    float* dst = out + i * width;
    if (col_stride == 1) {
      std::memcpy(dst, row, width * sizeof(float));
    } else {
      for (int64_t j = 0; j < width; ++j) dst[j] = row[j * col_stride];
    }
  }
}

int64_t FirstNonFinite(const float* data, int64_t count, bool allow_minus_inf) {
  // x - x is 0 for a finite x and NaN otherwise: a branch-free test the compiler vectorises.
  const float minus_inf = -std::numeric_limits<float>::infinity();
  int bad = 0;
#pragma omp simd reduction(| : bad)
  for (int64_t i = 0; i < count; ++i) {
    const float x = data[i];
    bad |= !(x - x == 0.0f) & !(allow_minus_inf & (x == minus_inf));
  }
  if (!bad) return -1;
  for (int64_t i = 0; i < count; ++i) {
    const float x = data[i];
    if (!std::isfinite(x) && !(allow_minus_inf && x == minus_inf)) return i;
  }
  return -1;
}

int64_t FirstRowWithoutFinite(const float* data, int64_t n, int64_t width) {
  for (int64_t row = 0; row < n; ++row) {
    bool any = false;
    for (int64_t j = 0; j < width && !any; ++j) any = std::isfinite(data[row * width + j]);
    if (!any) return row;
  }
  return -1;
}

void CheckFiniteRows(const float* data, int64_t n, int64_t width, const char* name,
                     bool allow_minus_inf, NameBy name_by) {
  const int64_t row_width = std::max<int64_t>(width, 1);
  const int64_t bad = FirstNonFinite(data, n * row_width, allow_minus_inf);
  if (bad >= 0) {
    const std::string place =
        name_by == NameBy::kRow ? StrCat("at batch index ", bad / row_width)
        : width > 0             ? StrCat("at index [", bad / width, ", ", bad % width, "]")
                                : StrCat("at index [", bad, "]");
    throw std::invalid_argument(
        StrCat(name, " holds a non-finite value (", data[bad], ") ", place));
  }
  if (allow_minus_inf && width > 0) {
    const int64_t row = FirstRowWithoutFinite(data, n, width);
    WMFAST_CHECK_ARG(row < 0, name, " is -inf for every action at batch index ", row);
  }
}

}  // namespace wmfast::model
