// The vocabulary-parallel softmax cross-entropy (parallel_ops.hpp) on the CPU: softmax_stats
// against the double reference per shard; the shards' statistics combined with
// combine_softmax_stats (commutative bit for bit, associative within rounding, against a double
// reference) and turned into lse and the loss by cross_entropy_from_stats against the full-row
// reference; both backward variants against central finite differences of the loss and against
// each other (bit-identical); large logits; edge cases and argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/ops.hpp"
#include "tests/kernels/model_reference.hpp"

namespace strata::kernels {
namespace {

using testing::central_differences;
using testing::cross_entropy_reference;
using testing::expect_close;
using testing::random_floats;
using testing::softmax_stats_reference;
using testing::to_double;

struct Case {
  std::int64_t n;
  std::vector<std::int64_t> shard_cols;  // the vocabulary split into consecutive shards
  float mean;                            // logits ~ normal(mean, stddev)
  float stddev;
  std::string name;
};

const Case kCases[] = {
    {1, {1}, 0.0f, 1.0f, "single"},
    {4, {11}, 0.0f, 1.0f, "one_shard"},
    {5, {4, 4, 4}, 0.0f, 2.0f, "three_shards"},
    {3, {7, 2, 9}, 80.0f, 5.0f, "large_logits_uneven"},  // exp(logits) alone would overflow
    {6, {128, 129}, 0.0f, 3.0f, "wide"},
};

std::int64_t vocab_of(const Case& c) {
  std::int64_t v = 0;
  for (std::int64_t cols : c.shard_cols) v += cols;
  return v;
}

std::vector<std::int32_t> random_targets(std::int64_t n, std::int64_t vocab, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(vocab - 1));
  std::vector<std::int32_t> targets(n);
  for (auto& target : targets) target = pick(rng);
  return targets;
}

// Columns first .. first + cols - 1 of every row of a (N, V) matrix: one shard's logits.
template <typename T>
std::vector<T> columns(const std::vector<T>& m, std::int64_t n, std::int64_t vocab,
                       std::int64_t first, std::int64_t cols) {
  std::vector<T> out(n * cols);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t v = 0; v < cols; ++v) out[i * cols + v] = m[i * vocab + first + v];
  }
  return out;
}

// Every shard's softmax_stats, combined left to right: what the all-reduce over tp delivers.
std::vector<float> combined_stats(const std::vector<float>& logits,
                                  const std::vector<std::int32_t>& targets, const Case& c) {
  const std::int64_t vocab = vocab_of(c);
  std::vector<float> total, part(3 * c.n);
  std::int64_t first = 0;
  for (std::int64_t cols : c.shard_cols) {
    const auto shard = columns(logits, c.n, vocab, first, cols);
    softmax_stats(Stream::cpu(), part.data(), shard.data(), targets.data(), first, cols, c.n);
    if (total.empty()) {
      total = part;
    } else {
      combine_softmax_stats(total.data(), part.data(), c.n);
    }
    first += cols;
  }
  return total;
}

class CrossEntropyShardCpu : public ::testing::TestWithParam<Case> {};

TEST_P(CrossEntropyShardCpu, SoftmaxStatsMatchTheDoubleReference) {
  const Case c = GetParam();
  const std::int64_t vocab = vocab_of(c);
  const auto logits = random_floats(c.n * vocab, 1, c.mean, c.stddev);
  const auto targets = random_targets(c.n, vocab, 2);
  std::int64_t first = 0;
  for (std::int64_t cols : c.shard_cols) {
    const auto shard = columns(logits, c.n, vocab, first, cols);
    std::vector<float> stats(3 * c.n, 9.0f);
    softmax_stats(Stream::cpu(), stats.data(), shard.data(), targets.data(), first, cols, c.n);
    // max and target logit are copies (exact); the sum is in double but each exponent
    // logit - max is an fp32 difference (|d| * 2^-24 relative per term): 1e-6 relative.
    expect_close(stats, softmax_stats_reference(to_double(shard), targets, first, cols, c.n), 1e-12,
                 1e-6, c.name + " shard from " + std::to_string(first));
    first += cols;
  }
}

TEST_P(CrossEntropyShardCpu, CombinedStatsGiveTheFullRowLoss) {
  const Case c = GetParam();
  const std::int64_t vocab = vocab_of(c);
  const auto logits = random_floats(c.n * vocab, 3, c.mean, c.stddev);
  const auto targets = random_targets(c.n, vocab, 4);
  const auto stats = combined_stats(logits, targets, c);
  std::vector<float> lse(c.n), loss_sum = {123.0f};
  cross_entropy_from_stats(Stream::cpu(), lse.data(), loss_sum.data(), stats.data(), c.n);
  const auto want = cross_entropy_reference(to_double(logits), targets, c.n, vocab);
  // The combined sum carries one fp32 rounding per shard and per rescaling exp: a few 1e-7
  // relative in lse (|lse| up to ~100 for the large logits).
  expect_close(lse, want.lse, 1e-6, 1e-6, c.name + " lse");
  expect_close(loss_sum, std::vector<double>{want.loss * static_cast<double>(c.n)}, 1e-5, 1e-5,
               c.name + " loss_sum (overwritten)");
  std::vector<float> no_lse_sum = {0.0f};
  cross_entropy_from_stats(Stream::cpu(), nullptr, no_lse_sum.data(), stats.data(), c.n);
  EXPECT_EQ(no_lse_sum, loss_sum) << "lse == nullptr gives the same loss";
}

// loss = dloss * mean over rows; each shard's dlogits from its own logits with scale dloss / N.
TEST_P(CrossEntropyShardCpu, BackwardMatchesCentralDifferences) {
  const Case c = GetParam();
  const std::int64_t vocab = vocab_of(c);
  const auto logitsf = random_floats(c.n * vocab, 5, c.mean, c.stddev);
  const auto targets = random_targets(c.n, vocab, 6);
  const float dloss = 0.75f;
  const float scale = dloss / static_cast<float>(c.n);
  const auto stats = combined_stats(logitsf, targets, c);
  std::vector<float> lse(c.n), loss_sum(1);
  const Stream cpu = Stream::cpu();
  cross_entropy_from_stats(cpu, lse.data(), loss_sum.data(), stats.data(), c.n);
  std::vector<float> dlogits(c.n * vocab), dlogits_stats(c.n * vocab);
  std::int64_t first = 0;
  for (std::int64_t cols : c.shard_cols) {
    const auto shard = columns(logitsf, c.n, vocab, first, cols);
    std::vector<float> d(shard.size()), d_stats(shard.size());
    cross_entropy_shard_backward(cpu, d.data(), shard.data(), lse.data(), targets.data(), first,
                                 cols, c.n, scale);
    cross_entropy_shard_backward_from_stats(cpu, d_stats.data(), shard.data(), stats.data(),
                                            targets.data(), first, cols, c.n, scale);
    EXPECT_EQ(d, d_stats) << c.name << ": the variants agree bit for bit";
    for (std::int64_t i = 0; i < c.n; ++i) {
      for (std::int64_t v = 0; v < cols; ++v) {
        dlogits[i * vocab + first + v] = d[i * cols + v];
        dlogits_stats[i * vocab + first + v] = d_stats[i * cols + v];
      }
    }
    first += cols;
  }
  std::vector<double> logits = to_double(logitsf);
  const auto f = [&] { return dloss * cross_entropy_reference(logits, targets, c.n, vocab).loss; };
  // As for cross_entropy_backward: |dlogits| <= dloss / N; exp(logit - lse) in fp32 loses a few
  // ulps of |logit| ~ 100 in the large-logits case.
  const auto want = central_differences(logits, f);
  expect_close(dlogits, want, 1e-6, 1e-4, c.name + " dlogits (lse)");
  expect_close(dlogits_stats, want, 1e-6, 1e-4, c.name + " dlogits (stats)");
}

INSTANTIATE_TEST_SUITE_P(Cases, CrossEntropyShardCpu, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& param_info) {
                           return param_info.param.name;
                         });

// --- combine_softmax_stats -------------------------------------------------------------------

// n random triples as one shard's statistics: (max, sum_exp >= 1, target logit or 0).
std::vector<float> random_stats(std::int64_t n, std::uint32_t seed, float spread) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  std::uniform_real_distribution<float> sum(1.0f, 500.0f);
  std::vector<float> s(3 * n);
  for (std::int64_t i = 0; i < n; ++i) {
    s[3 * i] = normal(rng);
    s[3 * i + 1] = sum(rng);
    s[3 * i + 2] = i % 3 == 0 ? normal(rng) : 0.0f;
  }
  return s;
}

std::vector<float> combine(std::vector<float> a, const std::vector<float>& b) {
  combine_softmax_stats(a.data(), b.data(), static_cast<std::int64_t>(a.size() / 3));
  return a;
}

TEST(CombineSoftmaxStats, MatchesTheDoubleReference) {
  const std::int64_t n = 64;
  const std::vector<std::vector<float>> shards = {
      random_stats(n, 1, 3.0f), random_stats(n, 2, 3.0f), random_stats(n, 3, 30.0f),
      random_stats(n, 4, 3.0f)};
  std::vector<float> got = shards[0];
  for (std::size_t k = 1; k < shards.size(); ++k) got = combine(got, shards[k]);
  std::vector<double> want(3 * n);
  for (std::int64_t i = 0; i < n; ++i) {
    double m = -INFINITY, t = 0.0;
    for (const auto& s : shards) m = std::max(m, double{s[3 * i]});
    double sum = 0.0;
    for (const auto& s : shards) {
      sum += s[3 * i + 1] * std::exp(s[3 * i] - m);
      t += s[3 * i + 2];
    }
    want[3 * i] = m;
    want[3 * i + 1] = sum;
    want[3 * i + 2] = t;
  }
  // Each combine rounds the rescaled sum once and exp(d) for |d| up to ~100 in fp32 carries
  // about |d| * 2^-24 relative: 1e-5 relative.
  expect_close(got, want, 1e-6, 1e-5, "four shards");
}

TEST(CombineSoftmaxStats, CommutativeBitForBit) {
  const std::int64_t n = 200;
  const auto a = random_stats(n, 5, 4.0f), b = random_stats(n, 6, 4.0f);
  EXPECT_EQ(combine(a, b), combine(b, a));
}

TEST(CombineSoftmaxStats, AssociativeWithinRounding) {
  const std::int64_t n = 200;
  const auto a = random_stats(n, 7, 4.0f), b = random_stats(n, 8, 4.0f),
             c = random_stats(n, 9, 4.0f);
  const auto left = combine(combine(a, b), c);
  const auto right = combine(a, combine(b, c));
  expect_close(left, std::vector<double>(right.begin(), right.end()), 0.0, 1e-5,
               "(a b) c vs a (b c)");
  for (std::int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(left[3 * i], right[3 * i]) << "the max is exact";
  }
}

TEST(CombineSoftmaxStats, IdentityAndEmpty) {
  const auto a = random_stats(5, 10, 2.0f);
  std::vector<float> identity;
  for (int i = 0; i < 5; ++i) {
    identity.insert(identity.end(), {-std::numeric_limits<float>::infinity(), 0.0f, 0.0f});
  }
  EXPECT_EQ(combine(identity, a), a);
  EXPECT_EQ(combine(a, identity), a);
  EXPECT_NO_THROW(combine_softmax_stats(nullptr, nullptr, 0));
  float x = 1.0f;
  EXPECT_THROW(combine_softmax_stats(&x, &x, -1), std::invalid_argument);
  EXPECT_THROW(combine_softmax_stats(nullptr, &x, 1), std::invalid_argument);
}

// --- Edges -----------------------------------------------------------------------------------

TEST(CrossEntropyShardCpuEdges, TargetsOutsideTheShard) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, 4.0f};  // two rows of a shard [10, 12)
  const std::vector<std::int32_t> targets = {11, 3};
  std::vector<float> stats(6);
  softmax_stats(Stream::cpu(), stats.data(), logits.data(), targets.data(), 10, 2, 2);
  EXPECT_EQ(stats[2], 2.0f);  // target 11 is column 1
  EXPECT_EQ(stats[5], 0.0f);  // target 3 is in another shard
  const std::vector<float> lse = {3.0f, 5.0f};
  std::vector<float> d(4);
  cross_entropy_shard_backward(Stream::cpu(), d.data(), logits.data(), lse.data(), targets.data(),
                               10, 2, 2, 1.0f);
  EXPECT_FLOAT_EQ(d[1], std::exp(-1.0f) - 1.0f);  // the target's column
  EXPECT_FLOAT_EQ(d[3], std::exp(-1.0f));         // no target in this shard
}

TEST(CrossEntropyShardCpuEdges, NoRows) {
  float loss_sum = 7.0f;
  const Stream cpu = Stream::cpu();
  cross_entropy_from_stats(cpu, nullptr, &loss_sum, nullptr, 0);
  EXPECT_EQ(loss_sum, 0.0f);
  EXPECT_NO_THROW(softmax_stats(cpu, nullptr, nullptr, nullptr, 0, 4, 0));
  EXPECT_NO_THROW(
      cross_entropy_shard_backward(cpu, nullptr, nullptr, nullptr, nullptr, 0, 4, 0, 1.0f));
  EXPECT_NO_THROW(cross_entropy_shard_backward_from_stats(cpu, nullptr, nullptr, nullptr, nullptr,
                                                          0, 4, 0, 1.0f));
}

TEST(CrossEntropyShardCpuEdges, BadArgumentsThrow) {
  std::vector<float> buf(64, 1.0f);
  float* p = buf.data();
  const std::vector<std::int32_t> good = {0, 3}, negative = {0, -1};
  const std::int32_t* t = good.data();
  const Stream cpu = Stream::cpu();
  EXPECT_THROW(softmax_stats(cpu, p, p, t, 0, 0, 2), std::invalid_argument);
  EXPECT_THROW(softmax_stats(cpu, p, p, t, -4, 4, 2), std::invalid_argument);
  EXPECT_THROW(softmax_stats(cpu, p, p, t, 0, 4, -1), std::invalid_argument);
  EXPECT_THROW(softmax_stats(cpu, p, p, nullptr, 0, 4, 2), std::invalid_argument);
  EXPECT_THROW(softmax_stats(cpu, p, p, negative.data(), 0, 4, 2), std::out_of_range);
  EXPECT_THROW(cross_entropy_from_stats(cpu, p, nullptr, p, 2), std::invalid_argument);
  EXPECT_THROW(cross_entropy_from_stats(cpu, p, p, nullptr, 2), std::invalid_argument);
  EXPECT_THROW(cross_entropy_from_stats(cpu, p, p, p, -1), std::invalid_argument);
  EXPECT_THROW(cross_entropy_shard_backward(cpu, p, p, p, t, 0, 4, 2, INFINITY),
               std::invalid_argument);
  EXPECT_THROW(cross_entropy_shard_backward(cpu, p, p, nullptr, t, 0, 4, 2, 1.0f),
               std::invalid_argument);
  EXPECT_THROW(cross_entropy_shard_backward(cpu, p, p, p, negative.data(), 0, 4, 2, 1.0f),
               std::out_of_range);
  EXPECT_THROW(cross_entropy_shard_backward_from_stats(cpu, p, p, p, t, 0, 0, 2, 1.0f),
               std::invalid_argument);
  EXPECT_THROW(cross_entropy_shard_backward_from_stats(cpu, p, p, nullptr, t, 0, 4, 2, 1.0f),
               std::invalid_argument);
  EXPECT_THROW(cross_entropy_shard_backward_from_stats(cpu, p, p, p, t, 0, 4, 2, NAN),
               std::invalid_argument);
}

}  // namespace
}  // namespace strata::kernels
