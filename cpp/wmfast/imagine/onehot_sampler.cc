#include "wmfast/imagine/onehot_sampler.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <type_traits>
#include <vector>

#include "wmfast/common/check.h"

namespace wmfast::imagine {
namespace {

void CheckLogits(const at::Tensor& logits, const char* name) {
  WMFAST_CHECK_ARG(logits.defined(), name, " must be a tensor, got None");
  WMFAST_CHECK_ARG(logits.device().is_cpu(), name, " must be a CPU tensor, got device ",
                   logits.device());
  WMFAST_CHECK_ARG(logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kDouble,
                   name, " must be float32 or float64, got ", logits.scalar_type());
  WMFAST_CHECK_ARG(logits.dim() >= 1 && logits.size(-1) >= 1, name,
                   " must have shape [..., C] with C >= 1 classes, got ", logits.sizes());
}

void CheckUnimix(double unimix) {
  WMFAST_CHECK_ARG(std::isfinite(unimix) && unimix >= 0.0 && unimix < 1.0,
                   "unimix must be in [0, 1), got ", unimix);
}

// Rows are independent: a grain of rows per task keeps small batches on one thread.
constexpr int64_t kGrainRows = 256;

}  // namespace

OneHotSample SampleOneHot(const at::Tensor& logits_in, double unimix,
                          std::optional<at::Generator> generator) {
  CheckLogits(logits_in, "logits");
  CheckUnimix(unimix);
  const at::Tensor logits = logits_in.contiguous();
  const int64_t classes = logits.size(-1);
  const int64_t rows = logits.numel() / classes;
  at::Tensor sample = at::zeros_like(logits);
  at::Tensor log_probs = at::empty_like(logits);
  if (rows == 0) return {sample, log_probs};

  // One 53-bit uniform per row, drawn in row order before any parallel work (reproducible).
  std::vector<double> uniforms(static_cast<size_t>(rows));
  {
    auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(
        generator, at::detail::getDefaultCPUGenerator());
    std::lock_guard<std::mutex> lock(gen->mutex_);
    for (auto& u : uniforms) u = static_cast<double>(gen->random64() >> 11) * 0x1.0p-53;
  }

  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "wmfast_sample_onehot", [&] {
    const scalar_t* z = logits.const_data_ptr<scalar_t>();
    scalar_t* out = sample.mutable_data_ptr<scalar_t>();
    scalar_t* logp = log_probs.mutable_data_ptr<scalar_t>();
    // float32 rows are computed in float (expf/logf are ~3x faster than exp/log and torch's
    // softmax is no more precise); the inverse CDF accumulates in double.
    using math_t = std::conditional_t<std::is_same_v<scalar_t, float>, float, double>;
    const math_t mix = static_cast<math_t>(unimix / static_cast<double>(classes));
    const math_t keep = static_cast<math_t>(1.0 - unimix);
    at::parallel_for(0, rows, kGrainRows, [&](int64_t begin, int64_t end) {
      std::vector<math_t> p(static_cast<size_t>(classes));
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* zr = z + r * classes;
        math_t top = zr[0];
        for (int64_t c = 1; c < classes; ++c) top = std::max<math_t>(top, zr[c]);
        math_t total = 0;
        for (int64_t c = 0; c < classes; ++c) {
          p[c] = std::exp(static_cast<math_t>(zr[c]) - top);
          total += p[c];
        }
        const math_t scale = keep / total;
        double cumulative = 0.0;
        for (int64_t c = 0; c < classes; ++c) {
          p[c] = p[c] * scale + mix;
          cumulative += p[c];
        }
        // Inverse CDF against the row's own total (rounding may leave it just off 1).
        const double target = uniforms[r] * cumulative;
        int64_t index = classes - 1;
        double running = 0.0;
        for (int64_t c = 0; c < classes; ++c) {
          running += p[c];
          if (running > target) {
            index = c;
            break;
          }
        }
        scalar_t* lr = logp + r * classes;
        for (int64_t c = 0; c < classes; ++c) lr[c] = static_cast<scalar_t>(std::log(p[c]));
        out[r * classes + index] = scalar_t(1);
      }
    });
  });
  return {sample, log_probs};
}

at::Tensor SampleOneHotBackward(const at::Tensor& log_probs_in, const at::Tensor& grad_sample_in,
                                const at::Tensor& grad_log_probs_in, double unimix) {
  CheckLogits(log_probs_in, "log_probs");
  CheckUnimix(unimix);
  for (const auto* grad : {&grad_sample_in, &grad_log_probs_in}) {
    if (!grad->defined()) continue;
    WMFAST_CHECK_ARG(grad->sizes() == log_probs_in.sizes() &&
                         grad->scalar_type() == log_probs_in.scalar_type() &&
                         grad->device() == log_probs_in.device(),
                     "gradients must match log_probs (", log_probs_in.sizes(), " ",
                     log_probs_in.scalar_type(), "), got ", grad->sizes(), " ",
                     grad->scalar_type());
  }
  const at::Tensor log_probs = log_probs_in.contiguous();
  at::Tensor grad_logits = at::zeros_like(log_probs);
  if (!grad_sample_in.defined() && !grad_log_probs_in.defined()) return grad_logits;
  const at::Tensor grad_sample =
      grad_sample_in.defined() ? grad_sample_in.contiguous() : at::Tensor();
  const at::Tensor grad_log_probs =
      grad_log_probs_in.defined() ? grad_log_probs_in.contiguous() : at::Tensor();
  const int64_t classes = log_probs.size(-1);
  const int64_t rows = log_probs.numel() / classes;
  AT_DISPATCH_FLOATING_TYPES(log_probs.scalar_type(), "wmfast_sample_onehot_backward", [&] {
    const scalar_t* lp = log_probs.const_data_ptr<scalar_t>();
    const scalar_t* gs = grad_sample.defined() ? grad_sample.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* gl =
        grad_log_probs.defined() ? grad_log_probs.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* gz = grad_logits.mutable_data_ptr<scalar_t>();
    const double mix = unimix / static_cast<double>(classes);
    at::parallel_for(0, rows, kGrainRows, [&](int64_t begin, int64_t end) {
      std::vector<double> g(static_cast<size_t>(classes)), q(static_cast<size_t>(classes));
      for (int64_t r = begin; r < end; ++r) {
        const int64_t base = r * classes;
        // dL/dp_c = g_c + g^log_c / p_c; q = (1 - u) softmax(z) = p - u / C; then
        // dL/dz = q * (dL/dp - <dL/dp, softmax(z)>), the softmax Jacobian scaled by (1 - u).
        double dot = 0.0;
        for (int64_t c = 0; c < classes; ++c) {
          const double p = std::exp(static_cast<double>(lp[base + c]));
          double grad = gs ? static_cast<double>(gs[base + c]) : 0.0;
          if (gl) grad += static_cast<double>(gl[base + c]) / p;
          q[c] = std::max(p - mix, 0.0);
          g[c] = grad;
          dot += grad * q[c];
        }
        dot /= (1.0 - unimix);
        for (int64_t c = 0; c < classes; ++c) {
          gz[base + c] = static_cast<scalar_t>(q[c] * (g[c] - dot));
        }
      }
    });
  });
  return grad_logits;
}

}  // namespace wmfast::imagine
