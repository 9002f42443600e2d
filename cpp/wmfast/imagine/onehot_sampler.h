// A fused straight-through categorical sampler for Dreamer's discrete latents and actions.
//
// For logits z [..., C] and a uniform mixture u (DreamerV3: 0.01), one pass per row computes
//   p = (1 - u) softmax(z) + u / C,   log p,   one index i ~ p,   onehot(i),
// where an eager PyTorch port spends a softmax, a mix, a log, a second softmax and
// torch.multinomial (which draws C exponentials per row) on it. The draw is one uniform per row
// from a torch CPU generator (the default one unless given), inverted through the cumulative
// probabilities: the same seed gives the same samples, bit for bit, at any thread count.
//
// The straight-through estimator (Bengio et al. 2013) makes the sample's gradient that of p:
// SampleOneHotBackward returns dL/dz for dL/d(sample) and dL/d(log p), from log p alone (the
// only tensor the forward pass needs to keep for backward).
#ifndef WMFAST_IMAGINE_ONEHOT_SAMPLER_H_
#define WMFAST_IMAGINE_ONEHOT_SAMPLER_H_

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <optional>

namespace wmfast::imagine {

struct OneHotSample {
  at::Tensor sample;     // [..., C] one-hot rows, the dtype of the logits
  at::Tensor log_probs;  // [..., C] log p, p the mixed probabilities
};

// logits: a CPU float32/float64 tensor [..., C], C >= 1; unimix in [0, 1).
// Throws std::invalid_argument naming the argument otherwise.
OneHotSample SampleOneHot(const at::Tensor& logits, double unimix,
                          std::optional<at::Generator> generator);

// dL/dz of the straight-through sample (gradient of p) and of log p. Either gradient may be an
// undefined tensor (no gradient flowed into that output).
at::Tensor SampleOneHotBackward(const at::Tensor& log_probs, const at::Tensor& grad_sample,
                                const at::Tensor& grad_log_probs, double unimix);

}  // namespace wmfast::imagine

#endif  // WMFAST_IMAGINE_ONEHOT_SAMPLER_H_
