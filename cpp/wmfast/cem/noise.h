// Noise for sampling-based trajectory optimisation, torch-free.
//
// CEM (Rubinstein 1999; PETS, Chua et al. 2018) and MPPI (Williams et al. 2017) draw a population
// of action sequences a = mean + std * eps with eps ~ N(0, I). On the CPU the number of draws per
// plan (population x horizon x action_dim x iterations) makes a general-purpose generator the
// bottleneck of small problems, so NormalSampler is a cheap dedicated one: xoshiro128++
// (Blackman & Vigna 2018) in independent SIMD lanes and the Box-Muller transform with polynomial
// log/sin/cos (absolute error below 1e-6, far under the float32 sampling resolution that matters
// here), written so that the compiler vectorises it.
//
// iCEM (Pinneri et al. 2020) replaces white noise with coloured noise whose power spectrum falls as
// 1/f^beta along the time axis, so that action sequences are temporally correlated. Pinneri et al.
// draw it by FFT (the `colorednoise` package: Gaussian Fourier coefficients scaled by f^(-beta/2),
// then an inverse real FFT). That process is a stationary Gaussian over the horizon H with a
// circulant covariance; ColoredNoiseFilter returns the Cholesky factor L of that covariance
// (normalised to unit variance), so coloured noise is L @ white noise: one small matmul, the same
// distribution, no FFT.
#ifndef WMFAST_CEM_NOISE_H_
#define WMFAST_CEM_NOISE_H_

#include <cstdint>
#include <vector>

namespace wmfast::cem {

// Standard normal float32 draws. Deterministic given the seed and the sequence of Fill calls.
// Not thread-safe: one sampler per thread.
class NormalSampler {
 public:
  static constexpr int kLanes = 16;  // independent xoshiro128++ streams, one per SIMD lane

  explicit NormalSampler(uint64_t seed = 0) { Seed(seed); }
  void Seed(uint64_t seed);

  // Writes n standard normal draws to out. Draws are produced in blocks of 2 * kLanes; a call
  // whose n is not a multiple of that discards the rest of its last block.
  void Fill(float* out, int64_t n);

  // Uniform integers in [0, bound) (bound >= 1), by Lemire's multiply-shift (bias < bound/2^32).
  void FillBelow(int64_t* out, int64_t n, uint32_t bound);

 private:
  void NextBlock(uint32_t* out);  // kLanes raw 32-bit outputs

  alignas(64) uint32_t s0_[kLanes];
  alignas(64) uint32_t s1_[kLanes];
  alignas(64) uint32_t s2_[kLanes];
  alignas(64) uint32_t s3_[kLanes];
};

// The lower-triangular [horizon, horizon] Cholesky factor (row-major) of the unit-variance
// covariance of 1/f^beta Gaussian noise over `horizon` steps (frequencies below 1/horizon are
// clipped to 1/horizon, as in `colorednoise`). beta = 0 gives the identity (white noise).
// Throws std::invalid_argument for horizon < 1 or a negative or non-finite beta.
std::vector<double> ColoredNoiseFilter(int64_t horizon, double beta);

}  // namespace wmfast::cem

#endif  // WMFAST_CEM_NOISE_H_
