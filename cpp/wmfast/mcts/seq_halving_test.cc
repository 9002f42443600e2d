#include "wmfast/mcts/seq_halving.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace wmfast::mcts {
namespace {

// The expectations of mctx's seq_halving_test.py.
TEST(SeqHalvingTest, MinimalSimulations) {
  EXPECT_EQ(ConsideredVisitSequence(8, 24),
            (std::vector<int>{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6}));
}

TEST(SeqHalvingTest, ExtraSimulations) {
  EXPECT_EQ(ConsideredVisitSequence(8, 47),
            (std::vector<int>{0,  0,  0,  0,  0,  0,  0,  0,  1,  1,  1,  1,  2,  2,  2,  2,
                              3,  3,  3,  3,  4,  4,  5,  5,  6,  6,  7,  7,  8,  8,  9,  9,
                              10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 16, 16, 17}));
}

TEST(SeqHalvingTest, FewSimulations) {
  EXPECT_EQ(ConsideredVisitSequence(8, 2), (std::vector<int>{0, 0}));
  EXPECT_EQ(ConsideredVisitSequence(8, 13),
            (std::vector<int>{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2}));
}

TEST(SeqHalvingTest, NotPowerOfTwo) {
  EXPECT_EQ(ConsideredVisitSequence(7, 24),
            (std::vector<int>{0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8}));
}

TEST(SeqHalvingTest, ZeroOrOneConsideredAction) {
  std::vector<int> expected(16);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(ConsideredVisitSequence(0, 16), expected);
  EXPECT_EQ(ConsideredVisitSequence(1, 16), expected);
  const auto table = ConsideredVisitTable(3, 5);
  ASSERT_EQ(table.size(), 4u);
  EXPECT_EQ(table[3], ConsideredVisitSequence(3, 5));
}

}  // namespace
}  // namespace wmfast::mcts
