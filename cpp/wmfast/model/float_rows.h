// Copying and checking the small per-leaf model outputs (rewards, values, logits) on raw float
// buffers: the torch-free part of an evaluator's work, vectorised in the core.
#ifndef WMFAST_MODEL_FLOAT_ROWS_H_
#define WMFAST_MODEL_FLOAT_ROWS_H_

#include <cstdint>

namespace wmfast::model {

// Copies a strided [n, width] matrix (width 0: a strided [n] vector) into the dense `out`.
void GatherRows(const float* base, int64_t row_stride, int64_t col_stride, int64_t n,
                int64_t width, float* out);

// Index of the first of `count` entries that is NaN or infinite (-inf is allowed where
// allow_minus_inf), or -1.
int64_t FirstNonFinite(const float* data, int64_t count, bool allow_minus_inf);

// The first of n rows of `width` entries none of which is finite, or -1.
int64_t FirstRowWithoutFinite(const float* data, int64_t n, int64_t width);

// How a non-finite entry's place is named: its row ("at batch index 3", for model outputs) or
// the entry itself ("at index [3, 1]", for arrays a user passes).
enum class NameBy { kRow, kEntry };

// Throws std::invalid_argument naming `name`, the value and its place if the n rows (width 0: n
// values) hold a NaN or an infinity; where allow_minus_inf, -inf is accepted as long as each row
// keeps a finite entry.
void CheckFiniteRows(const float* data, int64_t n, int64_t width, const char* name,
                     bool allow_minus_inf, NameBy name_by);

}  // namespace wmfast::model

#endif  // WMFAST_MODEL_FLOAT_ROWS_H_
