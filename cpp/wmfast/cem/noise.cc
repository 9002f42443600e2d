#include "wmfast/cem/noise.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numbers>

#include "wmfast/common/check.h"

// Runtime dispatch to an AVX2 clone of the hot loop where the CPU has it (glibc ifunc); no
// -march flags, so the library stays portable. Not under ThreadSanitizer: GCC instruments the
// ifunc resolver, which the loader runs before TSan's runtime is up (a segfault at start-up).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(__SANITIZE_THREAD__)
#define WMFAST_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define WMFAST_SIMD_CLONES
#endif

namespace wmfast::cem {
namespace {

inline uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

inline uint32_t Rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

// One xoshiro128++ step in each lane, on state held in local arrays (kept in registers).
template <int kLanes>
inline void XoshiroStep(uint32_t* s0, uint32_t* s1, uint32_t* s2, uint32_t* s3, uint32_t* out) {
  for (int i = 0; i < kLanes; ++i) {
    out[i] = Rotl(s0[i] + s3[i], 7) + s0[i];
    const uint32_t t = s1[i] << 9;
    s2[i] ^= s0[i];
    s3[i] ^= s1[i];
    s1[i] ^= s2[i];
    s0[i] ^= s3[i];
    s2[i] ^= t;
    s3[i] = Rotl(s3[i], 11);
  }
}

// log(u) for u in (0, 1], from the float's exponent and an atanh series on the mantissa
// (|error| < 1e-7).
inline float FastLog(float u) {
  const int32_t bits = std::bit_cast<int32_t>(u);
  int32_t mbits = (bits & 0x007FFFFF) | 0x3F800000;  // mantissa m in [1, 2)
  // Integer arithmetic instead of branches, so that the loop vectorises: fold m into
  // [0.707, 1.414) by halving it (one less in the exponent field) when it is above sqrt(2).
  const int32_t big = ((0x3FB504F3 - mbits) >> 31) & 1;
  mbits -= big << 23;
  const float m = std::bit_cast<float>(mbits);
  const float e = static_cast<float>((bits >> 23) - 127 + big);
  const float z = (m - 1.0f) / (m + 1.0f);
  const float z2 = z * z;
  const float series =
      z * (2.0f + z2 * (2.0f / 3 + z2 * (2.0f / 5 + z2 * (2.0f / 7 + z2 * (2.0f / 9)))));
  return e * 0.69314718f + series;
}

}  // namespace

void NormalSampler::Seed(uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < kLanes; ++i) {
    const uint64_t a = SplitMix64(x), b = SplitMix64(x);
    s0_[i] = static_cast<uint32_t>(a);
    s1_[i] = static_cast<uint32_t>(a >> 32);
    s2_[i] = static_cast<uint32_t>(b);
    s3_[i] = static_cast<uint32_t>(b >> 32) | 1u;  // never the all-zero state
  }
}

void NormalSampler::NextBlock(uint32_t* out) { XoshiroStep<kLanes>(s0_, s1_, s2_, s3_, out); }

WMFAST_SIMD_CLONES
void NormalSampler::Fill(float* out, int64_t n) {
  constexpr int kBlock = 2 * kLanes;
  constexpr float kInv24 = 1.0f / 16777216.0f;
  constexpr float kHalfPi = static_cast<float>(std::numbers::pi / 2);
  constexpr float kSqrtHalf = 0.70710678f;
  alignas(64) uint32_t u[kLanes], v[kLanes];
  alignas(64) float block[kBlock];
  alignas(64) uint32_t s0[kLanes], s1[kLanes], s2[kLanes], s3[kLanes];
  std::memcpy(s0, s0_, sizeof(s0));
  std::memcpy(s1, s1_, sizeof(s1));
  std::memcpy(s2, s2_, sizeof(s2));
  std::memcpy(s3, s3_, sizeof(s3));
  for (int64_t start = 0; start < n; start += kBlock) {
    XoshiroStep<kLanes>(s0, s1, s2, s3, u);
    XoshiroStep<kLanes>(s0, s1, s2, s3, v);
    for (int i = 0; i < kLanes; ++i) {
      // Box-Muller: radius from u1 in (0, 1], angle 2*pi*u2 split into a quadrant and an offset
      // x in [-pi/4, pi/4) around its middle, where short Taylor series are exact to ~1e-9.
      // (Unsigned-to-float conversions go through int32: those vectorise.)
      const float u1 = static_cast<float>(static_cast<int32_t>((u[i] >> 8) + 1)) * kInv24;
      const float radius = std::sqrt(-2.0f * FastLog(u1));
      const float odd = static_cast<float>(static_cast<int32_t>((v[i] >> 30) & 1u));
      const float sign = 1.0f - 2.0f * static_cast<float>(static_cast<int32_t>(v[i] >> 31));
      const float frac =
          static_cast<float>(static_cast<int32_t>((v[i] >> 6) & 0x00FFFFFFu)) * kInv24;
      const float x = (frac - 0.5f) * kHalfPi;
      const float x2 = x * x;
      const float sx = x * (1.0f + x2 * (-1.0f / 6 + x2 * (1.0f / 120 + x2 * (-1.0f / 5040 +
                                                                               x2 / 362880))));
      const float cx =
          1.0f + x2 * (-0.5f + x2 * (1.0f / 24 + x2 * (-1.0f / 720 + x2 * (1.0f / 40320))));
      // The angle pi/4 + x, then turned by the quadrant (odd: a quarter turn; sign: a half).
      const float c = (cx - sx) * kSqrtHalf, s = (sx + cx) * kSqrtHalf;
      block[i] = radius * sign * (c + odd * (-s - c));
      block[i + kLanes] = radius * sign * (s + odd * (c - s));
    }
    const int64_t m = n - start < kBlock ? n - start : kBlock;
    std::memcpy(out + start, block, sizeof(float) * m);
  }
  std::memcpy(s0_, s0, sizeof(s0));
  std::memcpy(s1_, s1, sizeof(s1));
  std::memcpy(s2_, s2, sizeof(s2));
  std::memcpy(s3_, s3, sizeof(s3));
}

void NormalSampler::FillBelow(int64_t* out, int64_t n, uint32_t bound) {
  alignas(64) uint32_t u[kLanes];
  for (int64_t start = 0; start < n; start += kLanes) {
    NextBlock(u);
    const int64_t m = n - start < kLanes ? n - start : kLanes;
    for (int64_t i = 0; i < m; ++i) {
      out[start + i] = static_cast<int64_t>((static_cast<uint64_t>(u[i]) * bound) >> 32);
    }
  }
}

std::vector<double> ColoredNoiseFilter(int64_t horizon, double beta) {
  WMFAST_CHECK_ARG(horizon >= 1, "horizon must be >= 1, got ", horizon);
  WMFAST_CHECK_ARG(std::isfinite(beta) && beta >= 0.0,
                   "noise_beta must be a finite number >= 0, got ", beta);
  const int64_t h = horizon;
  if (beta == 0.0) {  // white noise, exactly
    std::vector<double> identity(h * h, 0.0);
    for (int64_t i = 0; i < h; ++i) identity[i * h + i] = 1.0;
    return identity;
  }
  // Power spectrum S_k = f_k^-beta at f_k = min(k, h - k) / h, clipped below at 1/h; the
  // covariance of the stationary process is its inverse DFT (a real, even sequence).
  std::vector<double> spectrum(h);
  for (int64_t k = 0; k < h; ++k) {
    const double f = std::max<double>(std::min(k, h - k), 1.0) / static_cast<double>(h);
    spectrum[k] = std::pow(f, -beta);
  }
  std::vector<double> autocov(h);
  for (int64_t d = 0; d < h; ++d) {
    double sum = 0.0;
    for (int64_t k = 0; k < h; ++k) {
      sum += spectrum[k] * std::cos(2.0 * std::numbers::pi * static_cast<double>(k * d % h) /
                                    static_cast<double>(h));
    }
    autocov[d] = sum;
  }
  const double variance = autocov[0];
  // Cholesky of the Toeplitz matrix C[t][u] = autocov[|t - u|] / variance. It is positive
  // definite: its eigenvalues are the (positive) spectrum.
  std::vector<double> lower(h * h, 0.0);
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      double sum = autocov[i - j] / variance;
      for (int64_t k = 0; k < j; ++k) sum -= lower[i * h + k] * lower[j * h + k];
      if (i == j) {
        lower[i * h + i] = std::sqrt(std::max(sum, 1e-300));
      } else {
        lower[i * h + j] = sum / lower[j * h + j];
      }
    }
  }
  // A large beta overflows the spectrum (f^-beta) or loses the factorisation to rounding: such a
  // filter would colour the noise with NaN, which later looks like the dynamics' fault.
  for (double x : lower) {
    WMFAST_CHECK_ARG(std::isfinite(x), "noise_beta=", beta, " gives a non-finite noise filter at "
                     "horizon ", horizon, " (its 1/f^beta spectrum overflows): use a smaller "
                     "noise_beta (iCEM uses 0 to 5)");
  }
  return lower;
}

}  // namespace wmfast::cem
