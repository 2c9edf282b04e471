// Causal multi-head self-attention on the CPU: forward (out and the saved probabilities) against
// the scalar double reference, backward d(qkv) against central finite differences of that
// reference, causality, edge cases (no rows), determinism and argument checks.
#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/model_ops.hpp"
#include "tests/kernels/model_reference.hpp"

namespace strata::kernels {
namespace {

using testing::attention_reference;
using testing::central_differences;
using testing::expect_close;
using testing::random_floats;
using testing::to_double;
using testing::weighted_sum;

using Shape = testing::AttentionShape;

const Shape kShapes[] = {
    {1, 1, 1, 1, "single"},
    {1, 4, 6, 1, "one_head"},
    {2, 5, 8, 2, "two_heads"},
    {2, 7, 12, 3, "three_heads"},
};

class AttentionCpu : public ::testing::TestWithParam<Shape> {};

TEST_P(AttentionCpu, ForwardMatchesScalarReference) {
  const Shape s = GetParam();
  const auto qkv = random_floats(s.b * s.t * 3 * s.c, 1);
  std::vector<float> out(s.b * s.t * s.c), att(s.b * s.h * s.t * s.t, -1.0f);
  attention_forward(Stream::cpu(), out.data(), att.data(), qkv.data(), s.b, s.t, s.c, s.h);
  const auto want = attention_reference(to_double(qkv), s.b, s.t, s.c, s.h);
  // Probabilities in [0, 1] and outputs that average unit normals: fp32 rounding is ~1e-7.
  expect_close(att, want.att, 1e-6, 1e-5, s.name + " att");
  expect_close(out, want.out, 1e-6, 1e-5, s.name + " out");
}

TEST_P(AttentionCpu, BackwardMatchesCentralDifferences) {
  const Shape s = GetParam();
  const auto qkvf = random_floats(s.b * s.t * 3 * s.c, 2);
  const auto doutf = random_floats(s.b * s.t * s.c, 3);
  std::vector<float> out(s.b * s.t * s.c), att(s.b * s.h * s.t * s.t), dqkv(qkvf.size());
  const Stream cpu = Stream::cpu();
  attention_forward(cpu, out.data(), att.data(), qkvf.data(), s.b, s.t, s.c, s.h);
  attention_backward(cpu, dqkv.data(), doutf.data(), qkvf.data(), att.data(), s.b, s.t, s.c, s.h);
  std::vector<double> qkv = to_double(qkvf);
  const std::vector<double> dout = to_double(doutf);
  const auto loss = [&] {
    return weighted_sum(dout, attention_reference(qkv, s.b, s.t, s.c, s.h).out);
  };
  // Gradients are O(1) sums of at most T * D products in fp32.
  expect_close(dqkv, central_differences(qkv, loss), 1e-5, 1e-4, s.name + " dqkv");
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionCpu, ::testing::ValuesIn(kShapes),
                         testing::attention_shape_name);

TEST(AttentionCpuEdges, FutureTokensDoNotChangeTheOutput) {
  const std::int64_t b = 1, t = 6, c = 8, h = 2;
  auto qkv = random_floats(b * t * 3 * c, 4);
  std::vector<float> out1(b * t * c), out2(b * t * c), att(b * h * t * t);
  const Stream cpu = Stream::cpu();
  attention_forward(cpu, out1.data(), att.data(), qkv.data(), b, t, c, h);
  for (std::int64_t j = 0; j < 3 * c; ++j) qkv[(t - 1) * 3 * c + j] += 5.0f;  // the last token
  attention_forward(cpu, out2.data(), att.data(), qkv.data(), b, t, c, h);
  const std::vector<float> head1(out1.begin(), out1.end() - c), head2(out2.begin(), out2.end() - c);
  EXPECT_EQ(head1, head2);
  EXPECT_NE(out1, out2);
  for (std::int64_t p = 0; p < t; ++p) {
    for (std::int64_t s = p + 1; s < t; ++s) EXPECT_EQ(att[p * t + s], 0.0f);
  }
}

TEST(AttentionCpuEdges, NoRowsIsANoOp) {
  EXPECT_NO_THROW(attention_forward(Stream::cpu(), nullptr, nullptr, nullptr, 0, 4, 8, 2));
  EXPECT_NO_THROW(
      attention_backward(Stream::cpu(), nullptr, nullptr, nullptr, nullptr, 3, 0, 8, 2));
}

TEST(AttentionCpuEdges, BackwardIsDeterministic) {
  const std::int64_t b = 2, t = 9, c = 16, h = 4;
  const auto qkv = random_floats(b * t * 3 * c, 5), dout = random_floats(b * t * c, 6);
  std::vector<float> out(b * t * c), att(b * h * t * t), d1(qkv.size()), d2(qkv.size());
  const Stream cpu = Stream::cpu();
  attention_forward(cpu, out.data(), att.data(), qkv.data(), b, t, c, h);
  attention_backward(cpu, d1.data(), dout.data(), qkv.data(), att.data(), b, t, c, h);
  attention_backward(cpu, d2.data(), dout.data(), qkv.data(), att.data(), b, t, c, h);
  EXPECT_EQ(d1, d2);
}

TEST(AttentionCpuEdges, BadArgumentsThrow) {
  std::vector<float> buf(512, 1.0f);
  float* p = buf.data();
  const Stream cpu = Stream::cpu();
  EXPECT_THROW(attention_forward(cpu, p, p, p, 1, 2, 6, 4), std::invalid_argument);  // 6 % 4
  EXPECT_THROW(attention_forward(cpu, p, p, p, 1, 2, 8, 0), std::invalid_argument);
  EXPECT_THROW(attention_forward(cpu, p, p, p, 1, 2, 0, 1), std::invalid_argument);
  EXPECT_THROW(attention_forward(cpu, p, p, p, -1, 2, 8, 2), std::invalid_argument);
  EXPECT_THROW(attention_forward(cpu, p, nullptr, p, 1, 2, 8, 2), std::invalid_argument);
  EXPECT_THROW(attention_backward(cpu, p, p, p, nullptr, 1, 2, 8, 2), std::invalid_argument);
}

}  // namespace
}  // namespace strata::kernels
