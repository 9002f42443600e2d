// pUCT pieces shared by the tree searches (search.cc, sampled_search.cc): the exploration factor
// and the normalisation of Q values.
#ifndef WMFAST_MCTS_PUCT_H_
#define WMFAST_MCTS_PUCT_H_

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace wmfast::mcts {

// The smallest epsilon and fixed-bounds range the normalisations accept: 1 / epsilon and
// 1 / (max_value - min_value) stay far from float32's overflow.
inline constexpr float kMinEpsilon = 1e-30f;

// Normalisation of values v in [lo, hi] to (v - lo) * scale, computed as (v * k - lo * k) *
// scale so that neither the range nor a difference overflows float32 when the values span more
// than FLT_MAX (k = 1/2 then).
struct Normaliser {
  float k = 1.0f, lo_k = 0.0f, scale = 1.0f;
  Normaliser() = default;
  Normaliser(float lo, float hi, float epsilon) {
    if (!std::isfinite(hi - lo)) k = 0.5f;
    lo_k = lo * k;
    scale = 1.0f / std::max(hi * k - lo_k, epsilon * k);
  }
  float operator()(float v) const { return (v * k - lo_k) * scale; }
};

// pUCT's exploration factor sqrt(N(s)) * (c1 + log((N(s) + c2 + 1) / c2)) at N(s) node visits.
inline float ExploreFactor(float pb_c_init, float pb_c_base, int32_t node_visits) {
  const float n = static_cast<float>(node_visits);
  return std::sqrt(n) * (pb_c_init + std::log((n + pb_c_base + 1.0f) / pb_c_base));
}

}  // namespace wmfast::mcts

#endif  // WMFAST_MCTS_PUCT_H_
