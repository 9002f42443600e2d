// Text for error messages about tensors.
#ifndef WMFAST_MODEL_TORCH_TENSOR_TEXT_H_
#define WMFAST_MODEL_TORCH_TENSOR_TEXT_H_

#include <ATen/core/Tensor.h>

#include <sstream>
#include <string>

namespace wmfast::model {

// "[3, 64]"
inline std::string ShapeString(at::IntArrayRef sizes) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << "]";
  return out.str();
}

}  // namespace wmfast::model

#endif  // WMFAST_MODEL_TORCH_TENSOR_TEXT_H_
