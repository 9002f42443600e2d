#include "wmfast/model/float_rows.h"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <limits>
#include <vector>

namespace wmfast::model {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(GatherRowsTest, CopiesStridedRowsAndColumns) {
  // A [3, 2] matrix viewed column-major inside a [2, 3] buffer: row stride 1, column stride 3.
  const std::vector<float> buffer = {0, 1, 2, 10, 11, 12};
  std::vector<float> out(6, -1.0f);
  GatherRows(buffer.data(), 1, 3, 3, 2, out.data());
  EXPECT_EQ(out, (std::vector<float>{0, 10, 1, 11, 2, 12}));
  // Rows with a gap between them (a column slice of a wider output).
  std::vector<float> sliced(4);
  GatherRows(buffer.data() + 1, 3, 1, 2, 2, sliced.data());
  EXPECT_EQ(sliced, (std::vector<float>{1, 2, 11, 12}));
  // A strided vector (width 0), a dense vector and a dense matrix.
  std::vector<float> column(2);
  GatherRows(buffer.data() + 2, 3, 0, 2, 0, column.data());
  EXPECT_EQ(column, (std::vector<float>{2, 12}));
  std::vector<float> vector(3);
  GatherRows(buffer.data() + 3, 1, 0, 3, 0, vector.data());
  EXPECT_EQ(vector, (std::vector<float>{10, 11, 12}));
  std::vector<float> dense(6);
  GatherRows(buffer.data(), 3, 1, 2, 3, dense.data());
  EXPECT_EQ(dense, buffer);
}

TEST(FirstNonFiniteTest, FindsTheFirstNaNOrInfinity) {
  std::vector<float> x(37, 1.5f);
  EXPECT_EQ(FirstNonFinite(x.data(), 37, false), -1);
  x[30] = std::nanf("");
  x[33] = kInf;
  EXPECT_EQ(FirstNonFinite(x.data(), 37, false), 30);
  EXPECT_EQ(FirstNonFinite(x.data(), 30, false), -1);
  x[5] = -kInf;
  EXPECT_EQ(FirstNonFinite(x.data(), 37, false), 5);
  EXPECT_EQ(FirstNonFinite(x.data(), 37, true), 30);  // -inf allowed, NaN is not
  x[30] = 0.0f;
  EXPECT_EQ(FirstNonFinite(x.data(), 37, true), 33);  // +inf never is
}

TEST(FirstRowWithoutFiniteTest, FindsAFullyMaskedRow) {
  const std::vector<float> logits = {0, -kInf, -kInf, -kInf, -kInf, 2};
  EXPECT_EQ(FirstRowWithoutFinite(logits.data(), 2, 3), -1);
  const std::vector<float> masked = {0, 1, 2, -kInf, -kInf, -kInf};
  EXPECT_EQ(FirstRowWithoutFinite(masked.data(), 2, 3), 1);
}

// The message CheckFiniteRows throws, or "" if it accepts the rows.
std::string CheckMessage(const std::vector<float>& data, int64_t n, int64_t width,
                         bool allow_minus_inf, NameBy name_by) {
  try {
    CheckFiniteRows(data.data(), n, width, "x", allow_minus_inf, name_by);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(CheckFiniteRowsTest, NamesTheRowOrTheEntry) {
  const std::vector<float> matrix = {0, 1, 2, 3, std::nanf(""), 5};
  EXPECT_EQ(CheckMessage(matrix, 2, 3, false, NameBy::kRow),
            "x holds a non-finite value (nan) at batch index 1");
  EXPECT_EQ(CheckMessage(matrix, 2, 3, false, NameBy::kEntry),
            "x holds a non-finite value (nan) at index [1, 1]");
  const std::vector<float> vector = {0, 1, kInf};
  EXPECT_EQ(CheckMessage(vector, 3, 0, false, NameBy::kEntry),
            "x holds a non-finite value (inf) at index [2]");
  EXPECT_EQ(CheckMessage(vector, 2, 0, false, NameBy::kEntry), "");
  const std::vector<float> masked = {0, -kInf, -kInf, -kInf};
  EXPECT_EQ(CheckMessage(masked, 2, 2, true, NameBy::kEntry),
            "x is -inf for every action at batch index 1");
  EXPECT_EQ(CheckMessage(masked, 1, 2, true, NameBy::kRow), "");
  EXPECT_EQ(CheckMessage(masked, 1, 2, false, NameBy::kRow),
            "x holds a non-finite value (-inf) at batch index 0");
}

}  // namespace
}  // namespace wmfast::model
