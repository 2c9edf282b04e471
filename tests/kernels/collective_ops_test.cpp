// combine_gathered_softmax_stats (kernels/collective_ops.hpp): the CPU path against its
// definition (a left fold of combine_softmax_stats in member order) and against the full row's
// statistics, and the CUDA path against the CPU at several shapes in the cross-backend style
// (skips without a CUDA device; STRATA_REQUIRE_CUDA=1 makes that a failure).
#include "kernels/collective_ops.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/parallel_ops.hpp"
#include "tests/kernels/reference.hpp"

namespace strata::kernels {
namespace {

using testing::expect_close;
using testing::random_floats;

// `members` blocks of `rows` triples: maxima, positive sums, target logits; every seventh
// member-row is the identity (-inf, 0, 0), as a shard that holds none of a row's target and
// whose logits were all -inf would send.
std::vector<float> gathered_triples(std::int64_t members, std::int64_t rows, std::uint32_t seed) {
  const auto n = static_cast<std::size_t>(members * rows);
  std::vector<float> m = random_floats(n, seed, 0.0f, 3.0f);
  std::vector<float> s = random_floats(n, seed + 1, 20.0f, 5.0f);
  std::vector<float> t = random_floats(n, seed + 2);
  std::vector<float> out(3 * n);
  for (std::size_t k = 0; k < n; ++k) {
    const bool identity = k % 7 == 3;
    out[3 * k] = identity ? -std::numeric_limits<float>::infinity() : m[k];
    out[3 * k + 1] = identity ? 0.0f : std::abs(s[k]) + 1.0f;
    out[3 * k + 2] = identity ? 0.0f : t[k];
  }
  return out;
}

std::vector<float> run(const Stream& stream, const std::vector<float>& gathered,
                       std::int64_t members, std::int64_t rows) {
  const std::size_t out_bytes = static_cast<std::size_t>(3 * rows) * sizeof(float);
  Buffer in(stream, gathered.size() * sizeof(float));
  Buffer out(stream, out_bytes);
  copy_to_buffer(stream, in, gathered.data(), gathered.size() * sizeof(float));
  combine_gathered_softmax_stats(stream, out.as<float>(), in.as<float>(), members, rows);
  std::vector<float> result(static_cast<std::size_t>(3 * rows));
  copy_from_buffer(stream, result.data(), out, out_bytes);
  stream.synchronize();
  return result;
}

TEST(CombineGatheredSoftmaxStats, CpuIsTheLeftFoldInMemberOrder) {
  const std::int64_t members = 5, rows = 11;
  const std::vector<float> gathered = gathered_triples(members, rows, 7);
  std::vector<float> want(gathered.begin(), gathered.begin() + 3 * rows);
  for (std::int64_t j = 1; j < members; ++j) {
    combine_softmax_stats(want.data(), gathered.data() + j * 3 * rows, rows);
  }
  EXPECT_EQ(run(Stream::cpu(), gathered, members, rows), want);
}

TEST(CombineGatheredSoftmaxStats, CpuGivesTheFullRowsStatistics) {
  // One row of 6 logits split over 3 shards of 2; the target (logit 4) lives in shard 1.
  const std::vector<double> logits = {0.5, -1.0, 2.0, 4.0, 1.5, -0.25};
  std::vector<float> gathered;
  for (int shard = 0; shard < 3; ++shard) {
    const double a = logits[2 * shard], b = logits[2 * shard + 1];
    const double m = std::max(a, b);
    gathered.push_back(static_cast<float>(m));
    gathered.push_back(static_cast<float>(std::exp(a - m) + std::exp(b - m)));
    gathered.push_back(shard == 1 ? static_cast<float>(b) : 0.0f);
  }
  const std::vector<float> got = run(Stream::cpu(), gathered, 3, 1);
  double sum = 0;
  for (double l : logits) sum += std::exp(l - 4.0);
  EXPECT_EQ(got[0], 4.0f);
  EXPECT_NEAR(got[1], sum, 1e-6 * sum);
  EXPECT_EQ(got[2], 4.0f);
}

TEST(CombineGatheredSoftmaxStats, OneMemberIsACopyAndNoRowsIsNothing) {
  const std::vector<float> gathered = gathered_triples(1, 9, 3);
  EXPECT_EQ(run(Stream::cpu(), gathered, 1, 9), gathered);
  EXPECT_TRUE(run(Stream::cpu(), {}, 4, 0).empty());
}

TEST(CombineGatheredSoftmaxStats, RejectsBadSizesNamingThem) {
  std::vector<float> buf(3);
  try {
    combine_gathered_softmax_stats(Stream::cpu(), buf.data(), buf.data(), 0, 1);
    FAIL() << "members = 0 was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("members = 0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(combine_gathered_softmax_stats(Stream::cpu(), buf.data(), buf.data(), 1, -1),
               std::invalid_argument);
  EXPECT_THROW(combine_gathered_softmax_stats(Stream::cpu(), nullptr, buf.data(), 1, 1),
               std::invalid_argument);
}

// (members, rows): one member, two, an odd group, a large one; one row, odd counts, more rows
// than one grid of the launcher covers at once (65536 blocks x 256 threads would need more; this
// crosses several blocks and leaves a partial one).
TEST(CombineGatheredSoftmaxStats, CudaMatchesCpu) {
  STRATA_SKIP_WITHOUT_CUDA();
  const std::int64_t shapes[][2] = {{1, 1}, {2, 7}, {3, 1000}, {8, 33}, {5, (1 << 16) + 3}};
  const Stream cuda = Stream::cuda(0);
  for (const auto& shape : shapes) {
    const std::vector<float> gathered = gathered_triples(shape[0], shape[1], 11);
    const std::string what =
        "members " + std::to_string(shape[0]) + ", rows " + std::to_string(shape[1]);
    // expf on the device vs std::exp on the host: a few ulp in each rescaled sum.
    expect_close(run(cuda, gathered, shape[0], shape[1]),
                 run(Stream::cpu(), gathered, shape[0], shape[1]), 1e-6, 1e-6, what);
  }
}

TEST(CombineGatheredSoftmaxStats, CudaIsDeterministic) {
  STRATA_SKIP_WITHOUT_CUDA();
  const Stream cuda = Stream::cuda(0);
  const std::vector<float> gathered = gathered_triples(4, 4097, 19);
  EXPECT_EQ(run(cuda, gathered, 4, 4097), run(cuda, gathered, 4, 4097));
}

}  // namespace
}  // namespace strata::kernels
