#include "wmfast/cem/math.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace wmfast::cem {
namespace {

TEST(AffineClipTest, ScalesShiftsAndClips) {
  // H=2, B=1, P=9 (one full tile of 8 and a remainder), A=2.
  const SampleDims d{2, 1, 9, 2};
  const std::vector<float> mean = {0.5f, -1.0f, 0.0f, 0.0f};
  const std::vector<float> std = {2.0f, 1.0f, 1.0f, 0.5f};
  const std::vector<float> low = {-1.0f, -1.5f}, high = {1.0f, 0.0f};
  std::vector<float> noise(2 * 9 * 2), out(noise.size());
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = 0.1f * static_cast<float>(i) - 1.5f;
  AffineClip(d, mean.data(), std.data(), noise.data(), low.data(), high.data(), out.data());
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t p = 0; p < 9; ++p) {
      for (int64_t a = 0; a < 2; ++a) {
        const size_t i = (h * 9 + p) * 2 + a;
        const float want = std::min(std::max(mean[h * 2 + a] + std[h * 2 + a] * noise[i],
                                             low[a]), high[a]);
        EXPECT_FLOAT_EQ(out[i], want) << h << " " << p << " " << a;
      }
    }
  }
}

TEST(TopKTest, BestFirstPerRowAndNanDetected) {
  const std::vector<float> returns = {0.1f, 3.0f, -2.0f, 3.5f, /*row 2*/ 1.0f, 0.0f, 2.0f, -1.0f};
  std::vector<int64_t> index(4);
  std::vector<float> values(4);
  ASSERT_TRUE(TopK(returns.data(), 2, 4, 2, index.data(), values.data()));
  EXPECT_EQ(index, (std::vector<int64_t>{3, 1, 2, 0}));
  EXPECT_EQ(values, (std::vector<float>{3.5f, 3.0f, 2.0f, 1.0f}));
  std::vector<float> bad = returns;
  bad[5] = std::nanf("");
  EXPECT_FALSE(TopK(bad.data(), 2, 4, 2, index.data(), values.data()));
}

TEST(RefitGaussianTest, MeanStdSmoothingAndWeights) {
  // H=1, B=1, A=1, k=4 elites with values 1, 2, 3, 4.
  const SampleDims d{1, 1, 4, 1};
  const std::vector<float> elites = {1, 2, 3, 4};
  float mean = 10.0f, std = 10.0f;
  RefitGaussian(d, elites.data(), 4, nullptr, 0.0, 0.0, true, &mean, &std);
  EXPECT_FLOAT_EQ(mean, 2.5f);
  EXPECT_FLOAT_EQ(std, std::sqrt(1.25f));
  mean = 10.0f;
  std = 10.0f;
  RefitGaussian(d, elites.data(), 4, nullptr, 0.5, 0.0, true, &mean, &std);
  EXPECT_FLOAT_EQ(mean, 6.25f);
  const std::vector<float> weights = {0.0f, 0.0f, 0.5f, 0.5f};
  mean = 0.0f;
  std = 7.0f;
  RefitGaussian(d, elites.data(), 4, weights.data(), 0.0, 0.0, /*update_std=*/false, &mean,
                &std);
  EXPECT_FLOAT_EQ(mean, 3.5f);
  EXPECT_FLOAT_EQ(std, 7.0f);  // kept
  RefitGaussian(d, elites.data(), 4, weights.data(), 0.0, 2.0, true, &mean, &std);
  EXPECT_FLOAT_EQ(std, 2.0f);  // 0.5 floored at min_std
}

TEST(SoftmaxWeightsTest, NormalisedAndTemperatureScaled) {
  const std::vector<float> values = {0.0f, std::log(3.0f), -INFINITY};
  std::vector<float> w(3);
  SoftmaxWeights(values.data(), 1, 3, 1.0, w.data());
  EXPECT_NEAR(w[0], 0.25, 1e-6);
  EXPECT_NEAR(w[1], 0.75, 1e-6);
  EXPECT_EQ(w[2], 0.0f);
  SoftmaxWeights(values.data(), 1, 3, 1e-3, w.data());
  EXPECT_NEAR(w[1], 1.0, 1e-6);
}

}  // namespace
}  // namespace wmfast::cem
