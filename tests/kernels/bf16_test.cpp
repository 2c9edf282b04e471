// bf16 storage (kernels/dtype.hpp) and the CPU bf16 ops (kernels/bf16_ops.hpp): rounding to
// nearest even with its edge values, and each op against a double reference on the same
// bf16-rounded inputs, within one bf16 rounding of the stored outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/ops.hpp"
#include "tests/kernels/reference.hpp"

namespace strata::kernels {
namespace {

using testing::random_floats;

float from_bits(std::uint32_t u) {
  float f = 0;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

TEST(Bf16, RoundsToNearestEvenAndKeepsSpecialValues) {
  EXPECT_EQ(to_bf16(1.0f).bits, 0x3f80);
  // 1 + 2^-8 lies halfway between 1 (even mantissa) and 1 + 2^-7: ties go to the even one.
  EXPECT_EQ(to_bf16(1.0f + 0x1.0p-8f).bits, 0x3f80);
  // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
  EXPECT_EQ(to_bf16(1.0f + 3 * 0x1.0p-8f).bits, 0x3f82);
  // Just above the halfway point rounds up.
  EXPECT_EQ(to_bf16(1.0f + 0x1.0p-8f + 0x1.0p-20f).bits, 0x3f81);
  EXPECT_EQ(to_bf16(-2.5f).bits, 0xc020);
  EXPECT_EQ(to_bf16(-0.0f).bits, 0x8000);
  EXPECT_EQ(to_bf16(std::numeric_limits<float>::infinity()).bits, 0x7f80);
  // fp32's largest finite value is beyond bf16's (0x7f7f = 3.3895e38): it rounds to infinity.
  EXPECT_EQ(to_bf16(std::numeric_limits<float>::max()).bits, 0x7f80);
  EXPECT_EQ(to_float(bf16{0x7f7f}), from_bits(0x7f7f0000u));
  EXPECT_TRUE(std::isnan(to_float(to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits in the low half only must not round to infinity.
  EXPECT_TRUE(std::isnan(to_float(to_bf16(from_bits(0x7f800001u)))));
  EXPECT_TRUE(std::isnan(to_float(to_bf16(from_bits(0xff800001u)))));
  // Subnormals keep their top bits.
  EXPECT_EQ(to_bf16(from_bits(0x00400000u)).bits, 0x0040);
}

TEST(Bf16, EveryBf16ValueSurvivesTheRoundTrip) {
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const bf16 h{static_cast<std::uint16_t>(b)};
    const float f = to_float(h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(to_float(to_bf16(f)))) << b;
    } else {
      ASSERT_EQ(to_bf16(f).bits, h.bits) << b;
    }
  }
}

std::vector<bf16> rounded(const std::vector<float>& v) {
  std::vector<bf16> out(v.size());
  narrow(out.data(), v.data(), static_cast<std::int64_t>(v.size()));
  return out;
}

// |got - want| within one bf16 rounding of want (2^-8 relative) plus `atol`.
void expect_within_rounding(const std::vector<bf16>& got, const std::vector<double>& want,
                            double atol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(to_float(got[i]), want[i], std::abs(want[i]) * 0x1.0p-8 + atol)
        << what << "[" << i << "]";
  }
}

TEST(Bf16Cpu, LinearLayerComputesInFp32AndRoundsOnce) {
  const std::int64_t n = 9, in = 300, out = 17;
  const std::vector<bf16> x = rounded(random_floats(n * in, 1)),
                          w = rounded(random_floats(out * in, 2)),
                          bias = rounded(random_floats(out, 3)),
                          dy = rounded(random_floats(n * out, 4));
  const Stream cpu = Stream::cpu();
  std::vector<bf16> y(n * out), dx(n * in), dw(out * in), db(out);
  linear_forward(cpu, y.data(), x.data(), w.data(), bias.data(), n, in, out);
  linear_backward_data(cpu, dx.data(), dy.data(), w.data(), n, in, out);
  linear_backward_weight(cpu, dw.data(), db.data(), dy.data(), x.data(), n, in, out);
  std::vector<double> want_y(n * out), want_dx(n * in, 0.0), want_dw(out * in, 0.0), want_db(out);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t o = 0; o < out; ++o) {
      double acc = to_float(bias[o]);
      for (std::int64_t k = 0; k < in; ++k)
        acc += double(to_float(x[i * in + k])) * to_float(w[o * in + k]);
      want_y[i * out + o] = acc;
      const double g = to_float(dy[i * out + o]);
      want_db[o] += g;
      for (std::int64_t k = 0; k < in; ++k) {
        want_dx[i * in + k] += g * to_float(w[o * in + k]);
        want_dw[o * in + k] += g * to_float(x[i * in + k]);
      }
    }
  }
  // fp32 sums of up to 300 products of magnitude <= 1: far below 1e-4 absolute.
  expect_within_rounding(y, want_y, 1e-4, "y");
  expect_within_rounding(dx, want_dx, 1e-4, "dx");
  expect_within_rounding(dw, want_dw, 1e-4, "dW");
  expect_within_rounding(db, want_db, 1e-4, "dbias");
  // Accumulating adds the new sums to the old values in fp32 and rounds once.
  const std::vector<bf16> old = dw;
  linear_backward_weight(cpu, dw.data(), db.data(), dy.data(), x.data(), n, in, out, true);
  std::vector<double> twice(want_dw.size());
  for (std::size_t i = 0; i < twice.size(); ++i) twice[i] = to_float(old[i]) + want_dw[i];
  expect_within_rounding(dw, twice, 1e-4, "dW accumulated");
}

TEST(Bf16Cpu, GeluLayerNormAndAdditionMatchTheirReferences) {
  const std::int64_t n = 5, c = 70;
  const std::vector<bf16> x = rounded(random_floats(n * c, 5, 0.5f, 2.0f));
  const std::vector<bf16> gamma = rounded(random_floats(c, 6, 1.0f, 0.5f)),
                          beta = rounded(random_floats(c, 7));
  const Stream cpu = Stream::cpu();
  std::vector<bf16> g(n * c), y(n * c), sum = x;
  gelu_forward(cpu, g.data(), x.data(), n * c);
  std::vector<double> want_g(n * c), xd(n * c), gd(c), bd(c), want_sum(n * c);
  for (std::int64_t i = 0; i < n * c; ++i) {
    xd[i] = to_float(x[i]);
    want_g[i] = testing::gelu_reference(xd[i]);
    want_sum[i] = 2 * xd[i];
  }
  expect_within_rounding(g, want_g, 1e-6, "gelu");
  for (std::int64_t j = 0; j < c; ++j) {
    gd[j] = to_float(gamma[j]);
    bd[j] = to_float(beta[j]);
  }
  std::vector<float> mean(n), rstd(n);
  layer_norm_forward(cpu, y.data(), mean.data(), rstd.data(), x.data(), gamma.data(), beta.data(),
                     n, c);
  const testing::LayerNormReference ref = testing::layer_norm_reference(xd, gd, bd, n, c, 1e-5);
  expect_within_rounding(y, ref.y, 1e-5, "layer_norm y");
  for (std::int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(mean[i], ref.mean[i], 1e-6 * std::abs(ref.mean[i]) + 1e-7);  // fp32 statistics
    EXPECT_NEAR(rstd[i], ref.rstd[i], 1e-5 * ref.rstd[i]);
  }
  add_inplace(cpu, sum.data(), x.data(), n * c);
  expect_within_rounding(sum, want_sum, 0, "x + x");  // doubling is exact in bf16
  std::vector<float> back(n * c);
  convert(cpu, back.data(), x.data(), n * c);
  for (std::int64_t i = 0; i < n * c; ++i) EXPECT_EQ(back[i], xd[i]);
}

TEST(Bf16Cpu, BadArgumentsAreRefusedAsForFp32) {
  const Stream cpu = Stream::cpu();
  bf16 one{};
  EXPECT_THROW(gelu_forward(cpu, &one, static_cast<const bf16*>(nullptr), 1),
               std::invalid_argument);
  EXPECT_THROW(linear_forward(cpu, &one, &one, &one, nullptr, 1, 0, 1), std::invalid_argument);
  EXPECT_THROW(add_inplace(cpu, &one, &one, -1), std::invalid_argument);
}

}  // namespace
}  // namespace strata::kernels
