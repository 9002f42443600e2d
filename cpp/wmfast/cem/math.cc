#include "wmfast/cem/math.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace wmfast::cem {

void AffineClip(const SampleDims& d, const float* mean, const float* std, const float* noise,
                const float* low, const float* high, float* out) {
  // Rows of the population repeat the per-dimension (mean, std, low, high) every A floats: tile
  // them kTile times so that the inner loop runs over kTile * A contiguous floats and vectorises.
  constexpr int64_t kTile = 8;
  const int64_t a_dim = d.action_dim, pop = d.population, width = kTile * a_dim;
  std::vector<float> tiles(4 * width);
  float* m_tile = tiles.data();
  float* s_tile = m_tile + width;
  float* lo_tile = s_tile + width;
  float* hi_tile = lo_tile + width;
  for (int64_t i = 0; i < width; ++i) {
    lo_tile[i] = low[i % a_dim];
    hi_tile[i] = high[i % a_dim];
  }
  for (int64_t hb = 0; hb < d.horizon * d.batch; ++hb) {
    const float* m = mean + hb * a_dim;
    const float* s = std + hb * a_dim;
    for (int64_t i = 0; i < width; ++i) {
      m_tile[i] = m[i % a_dim];
      s_tile[i] = s[i % a_dim];
    }
    const int64_t base = hb * pop * a_dim;
    int64_t p = 0;
    for (; p + kTile <= pop; p += kTile) {
      const float* z = noise + base + p * a_dim;
      float* o = out + base + p * a_dim;
      for (int64_t i = 0; i < width; ++i) {
        o[i] = std::min(std::max(m_tile[i] + s_tile[i] * z[i], lo_tile[i]), hi_tile[i]);
      }
    }
    for (; p < pop; ++p) {
      const float* z = noise + base + p * a_dim;
      float* o = out + base + p * a_dim;
      for (int64_t a = 0; a < a_dim; ++a) {
        o[a] = std::min(std::max(m[a] + s[a] * z[a], low[a]), high[a]);
      }
    }
  }
}

bool TopK(const float* returns, int64_t batch, int64_t n, int64_t k, int64_t* index,
          float* values) {
  std::vector<int64_t> order(n);
  for (int64_t b = 0; b < batch; ++b) {
    const float* r = returns + b * n;
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(r[i])) return false;
    }
    std::iota(order.begin(), order.end(), 0);
    auto better = [r](int64_t x, int64_t y) { return r[x] > r[y] || (r[x] == r[y] && x < y); };
    if (k < n) std::nth_element(order.begin(), order.begin() + k, order.end(), better);
    std::sort(order.begin(), order.begin() + k, better);
    for (int64_t j = 0; j < k; ++j) {
      index[b * k + j] = order[j];
      values[b * k + j] = r[order[j]];
    }
  }
  return true;
}

void GatherElites(const SampleDims& d, const float* samples, const int64_t* index, int64_t k,
                  float* elites) {
  const int64_t a_dim = d.action_dim, pop = d.population, b_len = d.batch;
  for (int64_t h = 0; h < d.horizon; ++h) {
    for (int64_t b = 0; b < b_len; ++b) {
      const float* src = samples + (h * b_len + b) * pop * a_dim;
      float* dst = elites + (h * b_len + b) * k * a_dim;
      for (int64_t j = 0; j < k; ++j) {
        std::copy_n(src + index[b * k + j] * a_dim, a_dim, dst + j * a_dim);
      }
    }
  }
}

void RefitGaussian(const SampleDims& d, const float* elites, int64_t k, const float* weights,
                   double alpha, double min_std, bool update_std, float* mean, float* std) {
  const int64_t a_dim = d.action_dim, b_len = d.batch;
  std::vector<double> mu(a_dim), var(a_dim);
  for (int64_t h = 0; h < d.horizon; ++h) {
    for (int64_t b = 0; b < b_len; ++b) {
      const float* e = elites + (h * b_len + b) * k * a_dim;
      const float* w = weights != nullptr ? weights + b * k : nullptr;
      std::fill(mu.begin(), mu.end(), 0.0);
      std::fill(var.begin(), var.end(), 0.0);
      for (int64_t j = 0; j < k; ++j) {
        const double wj = w != nullptr ? w[j] : 1.0 / static_cast<double>(k);
        for (int64_t a = 0; a < a_dim; ++a) mu[a] += wj * e[j * a_dim + a];
      }
      if (update_std) {
        for (int64_t j = 0; j < k; ++j) {
          const double wj = w != nullptr ? w[j] : 1.0 / static_cast<double>(k);
          for (int64_t a = 0; a < a_dim; ++a) {
            const double diff = e[j * a_dim + a] - mu[a];
            var[a] += wj * diff * diff;
          }
        }
      }
      float* m = mean + (h * b_len + b) * a_dim;
      float* s = std + (h * b_len + b) * a_dim;
      for (int64_t a = 0; a < a_dim; ++a) {
        m[a] = static_cast<float>(alpha * m[a] + (1.0 - alpha) * mu[a]);
        if (update_std) s[a] = static_cast<float>(alpha * s[a] + (1.0 - alpha) * std::sqrt(var[a]));
        if (s[a] < min_std) s[a] = static_cast<float>(min_std);
      }
    }
  }
}

void SoftmaxWeights(const float* values, int64_t batch, int64_t k, double temperature,
                    float* weights) {
  for (int64_t b = 0; b < batch; ++b) {
    const float* v = values + b * k;
    float* w = weights + b * k;
    const double top = *std::max_element(v, v + k);
    double total = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      // exp(-inf) = 0: -inf returns get no weight (all -inf: uniform, by the guard below).
      const double x = std::isinf(top) ? (v[j] == top ? 0.0 : -INFINITY) : (v[j] - top) / temperature;
      w[j] = static_cast<float>(std::exp(x));
      total += w[j];
    }
    for (int64_t j = 0; j < k; ++j) w[j] = static_cast<float>(w[j] / total);
  }
}

}  // namespace wmfast::cem
