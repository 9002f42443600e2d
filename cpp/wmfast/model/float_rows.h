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

}  // namespace wmfast::model

#endif  // WMFAST_MODEL_FLOAT_ROWS_H_
