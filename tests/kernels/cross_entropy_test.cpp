// Softmax cross-entropy (the LM-head loss) on the CPU: forward (mean loss, saved log-sum-exp)
// against the scalar double reference, backward dlogits against central finite differences of
// that reference, large logits, edge cases (no rows, bad targets) and argument checks.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/model_ops.hpp"
#include "tests/kernels/model_reference.hpp"

namespace strata::kernels {
namespace {

using testing::central_differences;
using testing::cross_entropy_reference;
using testing::expect_close;
using testing::random_floats;
using testing::to_double;

struct Shape {
  std::int64_t n;
  std::int64_t vocab;
  float mean;  // logits ~ normal(mean, stddev)
  float stddev;
  std::string name;
};

const Shape kShapes[] = {
    {1, 1, 0.0f, 1.0f, "single"},
    {4, 11, 0.0f, 1.0f, "small"},
    {3, 50, 80.0f, 5.0f, "large_logits"},  // exp(logits) alone would overflow fp32
    {5, 257, 0.0f, 3.0f, "wide"},
};

std::vector<std::int32_t> random_targets(std::int64_t n, std::int64_t vocab, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(vocab - 1));
  std::vector<std::int32_t> targets(n);
  for (auto& target : targets) target = pick(rng);
  return targets;
}

class CrossEntropyCpu : public ::testing::TestWithParam<Shape> {};

TEST_P(CrossEntropyCpu, ForwardMatchesScalarReference) {
  const Shape s = GetParam();
  const auto logits = random_floats(s.n * s.vocab, 1, s.mean, s.stddev);
  const auto targets = random_targets(s.n, s.vocab, 2);
  std::vector<float> loss(1), lse(s.n);
  cross_entropy_forward(Stream::cpu(), loss.data(), lse.data(), logits.data(), targets.data(), s.n,
                        s.vocab);
  const auto want = cross_entropy_reference(to_double(logits), targets, s.n, s.vocab);
  // Sums in double, one fp32 rounding of lse (|lse| up to ~100): 1e-5 relative is generous.
  expect_close(lse, want.lse, 1e-6, 1e-6, s.name + " lse");
  expect_close(loss, std::vector<double>{want.loss}, 1e-5, 1e-5, s.name + " loss");
}

TEST_P(CrossEntropyCpu, BackwardMatchesCentralDifferences) {
  const Shape s = GetParam();
  const auto logitsf = random_floats(s.n * s.vocab, 3, s.mean, s.stddev);
  const auto targets = random_targets(s.n, s.vocab, 4);
  const float dloss = 0.75f;
  std::vector<float> loss(1), lse(s.n), dlogits(logitsf.size());
  const Stream cpu = Stream::cpu();
  cross_entropy_forward(cpu, loss.data(), lse.data(), logitsf.data(), targets.data(), s.n, s.vocab);
  cross_entropy_backward(cpu, dlogits.data(), logitsf.data(), lse.data(), targets.data(), s.n,
                         s.vocab, dloss);
  std::vector<double> logits = to_double(logitsf);
  const auto f = [&] {
    return dloss * cross_entropy_reference(logits, targets, s.n, s.vocab).loss;
  };
  // |dlogits| <= dloss / N; exp(logit - lse) in fp32 loses a few ulps of |logit| ~ 100 in the
  // large-logits case (about 1e-5 relative there).
  expect_close(dlogits, central_differences(logits, f), 1e-6, 1e-4, s.name + " dlogits");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CrossEntropyCpu, ::testing::ValuesIn(kShapes),
                         [](const ::testing::TestParamInfo<Shape>& param_info) {
                           return param_info.param.name;
                         });

TEST(CrossEntropyCpuEdges, UniformLogitsGiveLogVocab) {
  const std::int64_t n = 3, vocab = 8;
  const std::vector<float> logits(n * vocab, 2.5f);
  const std::vector<std::int32_t> targets = {0, 7, 3};
  std::vector<float> loss(1), lse(n);
  cross_entropy_forward(Stream::cpu(), loss.data(), lse.data(), logits.data(), targets.data(), n,
                        vocab);
  EXPECT_NEAR(loss[0], std::log(8.0), 1e-6);
}

TEST(CrossEntropyCpuEdges, NoRowsGiveZeroLoss) {
  float loss = 7.0f;
  cross_entropy_forward(Stream::cpu(), &loss, nullptr, nullptr, nullptr, 0, 5);
  EXPECT_EQ(loss, 0.0f);
  EXPECT_NO_THROW(cross_entropy_backward(Stream::cpu(), nullptr, nullptr, nullptr, nullptr, 0, 5));
}

TEST(CrossEntropyCpuEdges, BackwardIsDeterministic) {
  const std::int64_t n = 6, vocab = 301;
  const auto logits = random_floats(n * vocab, 5);
  const auto targets = random_targets(n, vocab, 6);
  std::vector<float> loss1(1), loss2(1), lse(n), d1(logits.size()), d2(logits.size());
  const Stream cpu = Stream::cpu();
  cross_entropy_forward(cpu, loss1.data(), lse.data(), logits.data(), targets.data(), n, vocab);
  cross_entropy_forward(cpu, loss2.data(), lse.data(), logits.data(), targets.data(), n, vocab);
  cross_entropy_backward(cpu, d1.data(), logits.data(), lse.data(), targets.data(), n, vocab);
  cross_entropy_backward(cpu, d2.data(), logits.data(), lse.data(), targets.data(), n, vocab);
  EXPECT_EQ(loss1, loss2);
  EXPECT_EQ(d1, d2);
}

TEST(CrossEntropyCpuEdges, BadArgumentsThrow) {
  std::vector<float> buf(64, 1.0f);
  float* p = buf.data();
  const std::vector<std::int32_t> good = {0, 3}, negative = {0, -1}, too_big = {4, 0};
  const Stream cpu = Stream::cpu();
  EXPECT_THROW(cross_entropy_forward(cpu, p, p, p, good.data(), 2, 0), std::invalid_argument);
  EXPECT_THROW(cross_entropy_forward(cpu, p, p, p, good.data(), -1, 4), std::invalid_argument);
  EXPECT_THROW(cross_entropy_forward(cpu, nullptr, p, p, good.data(), 2, 4), std::invalid_argument);
  EXPECT_THROW(cross_entropy_forward(cpu, p, p, p, negative.data(), 2, 4), std::out_of_range);
  EXPECT_THROW(cross_entropy_forward(cpu, p, p, p, too_big.data(), 2, 4), std::out_of_range);
  EXPECT_THROW(cross_entropy_backward(cpu, p, p, p, too_big.data(), 2, 4), std::out_of_range);
  EXPECT_THROW(cross_entropy_backward(cpu, p, p, p, good.data(), 2, 4, INFINITY),
               std::invalid_argument);
  try {
    cross_entropy_forward(cpu, p, p, p, too_big.data(), 2, 4);
  } catch (const std::out_of_range& e) {
    EXPECT_NE(std::string(e.what()).find("targets[0] = 4"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace strata::kernels
