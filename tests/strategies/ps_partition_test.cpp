// Parameter-server partitioning (strategies/ps_partition.hpp): every rule checked against its
// definition on small inputs, exhaustively where that is cheap.
#include "strategies/ps_partition.hpp"

#include <gtest/gtest.h>

#include <numeric>

namespace strata::strategies {
namespace {

TEST(PsPartition, RangeRowsAreContiguousBalancedBlocks) {
  for (int servers = 1; servers <= 7; ++servers) {
    for (std::int64_t rows = 1; rows <= 40; ++rows) {
      std::vector<std::int64_t> count(servers, 0);
      int last = 0;
      for (std::int64_t r = 0; r < rows; ++r) {
        const int s = ps_row_owner(r, rows, servers, PsPartition::kRange);
        ASSERT_EQ(s, static_cast<int>(r * servers / rows));
        ASSERT_GE(s, last) << "range blocks are contiguous and ascending";
        last = s;
        ++count[s];
      }
      for (int s = 0; s < servers; ++s) {
        ASSERT_EQ(count[s], ps_rows_owned(rows, s, servers, PsPartition::kRange))
            << rows << " rows over " << servers;
        // Block sizes differ by at most one row.
        ASSERT_LE(count[s], rows / servers + 1);
        ASSERT_GE(count[s], rows / servers);
      }
    }
  }
}

TEST(PsPartition, HashRowsSpreadTheHotLowIds) {
  // A Zipf access touches ids 0, 1, 2, ... most: hash must not give them all to server 0 as
  // range does.
  const std::int64_t rows = 1000000;
  const int servers = 4;
  std::vector<int> hot(servers, 0);
  for (std::int64_t r = 0; r < 400; ++r) ++hot[ps_row_owner(r, rows, servers, PsPartition::kHash)];
  for (int s = 0; s < servers; ++s) {
    EXPECT_GT(hot[s], 60) << "server " << s;
    EXPECT_EQ(ps_row_owner(0, rows, servers, PsPartition::kRange), 0);
  }
  std::int64_t total = 0;
  for (int s = 0; s < servers; ++s) total += ps_rows_owned(1000, s, servers, PsPartition::kHash);
  EXPECT_EQ(total, 1000);
}

TEST(PsPartition, TensorRangeBalancesElementsInOrder) {
  const std::vector<std::int64_t> elements = {100, 100, 100, 100, 400};
  const std::vector<std::string> names = {"a", "b", "c", "d", "e"};
  // Middles at 50, 150, 250, 350, 600 of 800: server floor(2 x middle / 800).
  EXPECT_EQ(ps_tensor_owners(elements, names, 2, PsPartition::kRange),
            (std::vector<int>{0, 0, 0, 0, 1}));
  EXPECT_EQ(ps_tensor_owners(elements, names, 1, PsPartition::kRange),
            (std::vector<int>(5, 0)));
  const auto four = ps_tensor_owners(elements, names, 4, PsPartition::kRange);
  EXPECT_EQ(four, (std::vector<int>{0, 0, 1, 1, 3}));
}

TEST(PsPartition, TensorHashDependsOnNameOnly) {
  const auto a = ps_tensor_owners({1, 2, 3}, {"wte", "layers.0.qkv.w", "lm_head"}, 3,
                                  PsPartition::kHash);
  const auto b = ps_tensor_owners({9, 9, 9}, {"wte", "layers.0.qkv.w", "lm_head"}, 3,
                                  PsPartition::kHash);
  EXPECT_EQ(a, b);
  for (int s : a) EXPECT_TRUE(s >= 0 && s < 3);
  EXPECT_STREQ(ps_partition_name(PsPartition::kHash), "hash");
  EXPECT_STREQ(ps_granularity_name(PsGranularity::kRow), "row");
}

}  // namespace
}  // namespace strata::strategies
