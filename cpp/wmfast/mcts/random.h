// A small, portable random number generator for the search's own noise (root Dirichlet noise,
// Gumbel noise, sampling the final action). The standard library's distributions differ between
// implementations, so the samplers are written out here: the same seed gives bit-identical
// results on every platform and for every thread count.
//
// Generator: xoshiro256** (Blackman & Vigna, "Scrambled linear pseudorandom number generators",
// 2021) seeded through splitmix64. Gamma: Marsaglia & Tsang, "A simple method for generating
// gamma variables" (2000), with the alpha < 1 boost U^(1/alpha).
#ifndef WMFAST_MCTS_RANDOM_H_
#define WMFAST_MCTS_RANDOM_H_

#include <cmath>
#include <cstdint>

namespace wmfast::mcts {

class Rng {
 public:
  // The stream of (seed, stream, index): independent generators for each search and tree.
  Rng(uint64_t seed, uint64_t stream, uint64_t index) {
    uint64_t x = seed ^ (0x9E3779B97F4A7C15ULL * (stream + 1)) ^ (0xD1B54A32D192ED03ULL * (index + 1));
    for (auto& word : state_) word = SplitMix(x);
  }

  uint64_t Next() {
    const uint64_t result = Rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = Rotl(state_[3], 45);
    return result;
  }

  // Uniform in the open interval (0, 1).
  double Uniform() { return (static_cast<double>(Next() >> 11) + 0.5) * 0x1.0p-53; }

  double Normal() {
    // Box-Muller; the second variate is dropped to keep the stream simple.
    const double u1 = Uniform(), u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  double Gamma(double alpha) {
    if (alpha < 1.0) return Gamma(alpha + 1.0) * std::pow(Uniform(), 1.0 / alpha);
    const double d = alpha - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    while (true) {
      double x, v;
      do {
        x = Normal();
        v = 1.0 + c * x;
      } while (v <= 0.0);
      v = v * v * v;
      const double u = Uniform();
      if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
      if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
    }
  }

  // Standard Gumbel(0, 1).
  double Gumbel() { return -std::log(-std::log(Uniform())); }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t SplitMix(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  uint64_t state_[4];
};

}  // namespace wmfast::mcts

#endif  // WMFAST_MCTS_RANDOM_H_
