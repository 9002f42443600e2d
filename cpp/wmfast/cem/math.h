// The CEM / MPPI update on raw float buffers, torch-free: the CPU fast path of the planner
// (planner.h), where a dozen small ATen ops per iteration would cost more than the arithmetic.
// Layouts are time-major like the planner's tensors: samples [H, B, P, A], mean/std [H, B, A],
// returns [B, P]. All functions are single-threaded and allocation-free except TopK's scratch.
#ifndef WMFAST_CEM_MATH_H_
#define WMFAST_CEM_MATH_H_

#include <cstdint>

namespace wmfast::cem {

struct SampleDims {
  int64_t horizon;     // H
  int64_t batch;       // B
  int64_t population;  // P
  int64_t action_dim;  // A
};

// out[h, b, p, a] = clamp(mean[h, b, a] + std[h, b, a] * noise[h, b, p, a], low[a], high[a]).
// noise may alias out.
void AffineClip(const SampleDims& d, const float* mean, const float* std, const float* noise,
                const float* low, const float* high, float* out);

// The k largest entries of each row of returns [B, n], best first: index [B, k], values [B, k].
// Returns false (and leaves the outputs unspecified) if a row holds a NaN.
bool TopK(const float* returns, int64_t batch, int64_t n, int64_t k, int64_t* index,
          float* values);

// elites[h, b, j, a] = samples[h, b, index[b, j], a] for j < k.
void GatherElites(const SampleDims& d, const float* samples, const int64_t* index, int64_t k,
                  float* elites);

// Refits mean/std [H, B, A] in place to elites [H, B, k, A]: with weights [B, k] (summing to 1)
// the weighted mean and std, else the plain mean and population std; then
// x = alpha * x_old + (1 - alpha) * x_fit, std floored at min_std. update_std false keeps std.
void RefitGaussian(const SampleDims& d, const float* elites, int64_t k, const float* weights,
                   double alpha, double min_std, bool update_std, float* mean, float* std);

// Softmax of values [B, k] / temperature along k into weights [B, k].
void SoftmaxWeights(const float* values, int64_t batch, int64_t k, double temperature,
                    float* weights);

}  // namespace wmfast::cem

#endif  // WMFAST_CEM_MATH_H_
