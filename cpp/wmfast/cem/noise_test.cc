#include "wmfast/cem/noise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <stdexcept>
#include <vector>

namespace wmfast::cem {
namespace {

TEST(NormalSamplerTest, MomentsOfAStandardNormal) {
  NormalSampler sampler(42);
  std::vector<float> x(1 << 20);
  sampler.Fill(x.data(), static_cast<int64_t>(x.size()));
  double m1 = 0, m2 = 0, m4 = 0;
  int64_t beyond3 = 0;
  for (float v : x) {
    m1 += v;
    m2 += v * v;
    m4 += static_cast<double>(v) * v * v * v;
    beyond3 += std::abs(v) > 3.0f;
  }
  const double n = static_cast<double>(x.size());
  EXPECT_NEAR(m1 / n, 0.0, 0.005);
  EXPECT_NEAR(m2 / n, 1.0, 0.005);
  EXPECT_NEAR(m4 / n, 3.0, 0.05);
  // P(|Z| > 3) = 0.0027.
  EXPECT_NEAR(beyond3 / n, 0.0027, 0.0004);
}

TEST(NormalSamplerTest, SeedsReproduceAndDiffer) {
  NormalSampler a(7), b(7), c(8);
  std::vector<float> xa(1000), xb(1000), xc(1000);
  a.Fill(xa.data(), 1000);
  b.Fill(xb.data(), 1000);
  c.Fill(xc.data(), 1000);
  EXPECT_EQ(xa, xb);
  EXPECT_NE(xa, xc);
  a.Seed(7);
  std::vector<float> again(1000);
  a.Fill(again.data(), 1000);
  EXPECT_EQ(again, xa);
}

TEST(NormalSamplerTest, PartialBlocksAreFilled) {
  NormalSampler sampler(1);
  for (int64_t n : {1, 31, 32, 33, 100}) {
    std::vector<float> x(n + 1, 12345.0f);
    sampler.Fill(x.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_LT(std::abs(x[i]), 10.0f);
    EXPECT_EQ(x[n], 12345.0f);  // nothing written past the end
  }
}

TEST(ColoredNoiseFilterTest, WhiteNoiseIsTheIdentity) {
  const std::vector<double> l = ColoredNoiseFilter(5, 0.0);
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 5; ++j) EXPECT_EQ(l[i * 5 + j], i == j ? 1.0 : 0.0);
  }
}

TEST(ColoredNoiseFilterTest, UnitVarianceAndPositiveCorrelation) {
  const int64_t h = 16;
  const std::vector<double> l = ColoredNoiseFilter(h, 2.0);
  for (int64_t i = 0; i < h; ++i) {
    double var = 0.0, cov_next = 0.0;
    for (int64_t k = 0; k < h; ++k) var += l[i * h + k] * l[i * h + k];
    EXPECT_NEAR(var, 1.0, 1e-12);
    if (i + 1 < h) {
      for (int64_t k = 0; k < h; ++k) cov_next += l[i * h + k] * l[(i + 1) * h + k];
      EXPECT_GT(cov_next, 0.5);  // neighbouring steps are strongly correlated
    }
    for (int64_t j = i + 1; j < h; ++j) EXPECT_EQ(l[i * h + j], 0.0);  // lower triangular
  }
}

TEST(ColoredNoiseFilterTest, RejectsBadArguments) {
  EXPECT_THROW(ColoredNoiseFilter(0, 1.0), std::invalid_argument);
  EXPECT_THROW(ColoredNoiseFilter(4, -1.0), std::invalid_argument);
  EXPECT_THROW(ColoredNoiseFilter(4, std::nan("")), std::invalid_argument);
}

}  // namespace
}  // namespace wmfast::cem
