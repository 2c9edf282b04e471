// The in-place element-wise ops and the bias gradient (elementwise_ops.hpp) on the CPU: each
// against the double reference, in the evaluation order its header fixes (bit for bit), the bias
// gradient against central finite differences of y = x + bias and as an accumulation (old +
// new), and argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "kernels/elementwise_ops.hpp"
#include "kernels/ops.hpp"
#include "tests/kernels/model_reference.hpp"

namespace strata::kernels {
namespace {

using testing::central_differences;
using testing::expect_close;
using testing::random_floats;
using testing::to_double;
using testing::weighted_sum;

// One fp32 addition or product is correctly rounded, and so is double's rounded to fp32 (53 >=
// 2 * 24 + 2 bits): the double reference rounded once must match bit for bit.
TEST(ElementwiseCpu, AddInplaceIsTheRoundedSum) {
  const std::int64_t n = 1001;
  const auto x = random_floats(n, 1), y0 = random_floats(n, 2, 0.0f, 100.0f);
  std::vector<float> y = y0;
  add_inplace(Stream::cpu(), y.data(), x.data(), n);
  std::vector<float> want(n);
  for (std::int64_t i = 0; i < n; ++i) {
    want[i] = static_cast<float>(static_cast<double>(y0[i]) + x[i]);
  }
  EXPECT_EQ(y, want);
}

TEST(ElementwiseCpu, ScaleInplaceIsTheRoundedProduct) {
  const std::int64_t n = 1001;
  const auto y0 = random_floats(n, 3);
  for (const float alpha : {0.0f, -1.0f, 0.125f, 3.7f}) {
    std::vector<float> y = y0;
    scale_inplace(Stream::cpu(), y.data(), alpha, n);
    std::vector<float> want(n);
    for (std::int64_t i = 0; i < n; ++i) {
      want[i] = static_cast<float>(static_cast<double>(alpha) * y0[i]);
    }
    EXPECT_EQ(y, want) << "alpha " << alpha;
  }
}

TEST(ElementwiseCpu, AddResidualBiasFollowsItsStatedOrder) {
  const std::int64_t rows = 13, c = 37;
  const auto y0 = random_floats(rows * c, 4), residual = random_floats(rows * c, 5, 0.0f, 50.0f);
  const auto bias = random_floats(c, 6);
  std::vector<float> y = y0, y_no_bias = y0;
  const Stream cpu = Stream::cpu();
  add_residual_bias(cpu, y.data(), residual.data(), bias.data(), rows, c);
  add_residual_bias(cpu, y_no_bias.data(), residual.data(), nullptr, rows, c);
  std::vector<float> want(rows * c), want_no_bias(rows * c);
  std::vector<double> exact(rows * c);
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t j = 0; j < c; ++j) {
      const std::int64_t k = i * c + j;
      want_no_bias[k] = static_cast<float>(static_cast<double>(y0[k]) + residual[k]);
      want[k] = static_cast<float>(static_cast<double>(want_no_bias[k]) + bias[j]);
      exact[k] = static_cast<double>(y0[k]) + residual[k] + bias[j];
    }
  }
  EXPECT_EQ(y, want) << "(y + residual) + bias, each step rounded";
  EXPECT_EQ(y_no_bias, want_no_bias);
  // Two roundings of values up to ~150: within 2 ulps of the exact sum.
  expect_close(y, exact, 1e-6, 2.5e-7, "against the exact sum");
}

// bias_backward is the gradient of y = x + bias (broadcast over rows): loss = sum(dy * y).
TEST(ElementwiseCpu, BiasBackwardMatchesCentralDifferences) {
  const std::int64_t rows = 9, c = 17;
  const auto dyf = random_floats(rows * c, 7), xf = random_floats(rows * c, 8);
  const auto biasf = random_floats(c, 9);
  std::vector<float> dbias(c, 0.0f);
  bias_backward(Stream::cpu(), dbias.data(), dyf.data(), rows, c);
  std::vector<double> bias = to_double(biasf);
  const std::vector<double> dy = to_double(dyf), x = to_double(xf);
  const auto loss = [&] {
    std::vector<double> y(x);
    for (std::int64_t i = 0; i < rows; ++i) {
      for (std::int64_t j = 0; j < c; ++j) y[i * c + j] += bias[j];
    }
    return weighted_sum(dy, y);
  };
  // Sums of 9 unit normals.
  expect_close(dbias, central_differences(bias, loss), 1e-6, 1e-5, "dbias");
}

TEST(ElementwiseCpu, BiasBackwardAccumulatesRowByRow) {
  const std::int64_t rows = 33, c = 300;  // more columns than one tile of linear's dbias
  const auto dy = random_floats(rows * c, 10), old = random_floats(c, 11);
  std::vector<float> dbias = old;
  bias_backward(Stream::cpu(), dbias.data(), dy.data(), rows, c);
  std::vector<float> running = old;
  std::vector<double> exact = to_double(old);
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t j = 0; j < c; ++j) {
      running[j] += dy[i * c + j];
      exact[j] += dy[i * c + j];
    }
  }
  EXPECT_EQ(dbias, running) << "the running sum from the old value, rows in order";
  expect_close(dbias, exact, 1e-5, 1e-6, "old + sum over rows");
  // From zero it equals linear_backward_weight's dbias (the same sums in the same order).
  std::vector<float> from_zero(c, 0.0f), linear_db(c), dw(c * 1);
  const std::vector<float> x(rows, 0.0f);
  bias_backward(Stream::cpu(), from_zero.data(), dy.data(), rows, c);
  linear_backward_weight(Stream::cpu(), dw.data(), linear_db.data(), dy.data(), x.data(), rows, 1,
                         c);
  EXPECT_EQ(from_zero, linear_db);
}

TEST(ElementwiseCpu, CopyColumnsMovesABlockBetweenWidths) {
  // The k and v columns (2..5) of a (3, 6) qkv-like tensor into a packed (3, 4) one and back,
  // added the second time: every other element stays.
  std::vector<float> qkv(18), packed(12, -1.0f);
  for (int i = 0; i < 18; ++i) qkv[i] = static_cast<float>(i);
  copy_columns(Stream::cpu(), packed.data(), 4, qkv.data() + 2, 6, 3, 4);
  EXPECT_EQ(packed, (std::vector<float>{2, 3, 4, 5, 8, 9, 10, 11, 14, 15, 16, 17}));
  std::vector<float> back = qkv;
  copy_columns(Stream::cpu(), back.data() + 2, 6, packed.data(), 4, 3, 4, /*accumulate=*/true);
  for (int i = 0; i < 18; ++i) {
    EXPECT_EQ(back[i], (i % 6) >= 2 ? 2.0f * i : static_cast<float>(i)) << i;
  }
  copy_columns(Stream::cpu(), nullptr, 4, nullptr, 6, 0, 4);  // no rows: nothing to do
  EXPECT_THROW(copy_columns(Stream::cpu(), packed.data(), 4, qkv.data(), 6, 3, 5),
               std::invalid_argument);  // wider than the packed tensor
  EXPECT_THROW(copy_columns(Stream::cpu(), packed.data(), 4, qkv.data(), 6, 3, 0),
               std::invalid_argument);
}

TEST(ElementwiseCpuEdges, EmptyChangesNothing) {
  std::vector<float> y = {1.0f, 2.0f};
  const Stream cpu = Stream::cpu();
  add_inplace(cpu, static_cast<float*>(nullptr), nullptr, 0);  // fp32 (also overloaded on bf16)
  scale_inplace(cpu, nullptr, 2.0f, 0);
  add_residual_bias(cpu, nullptr, nullptr, nullptr, 0, 4);
  bias_backward(cpu, y.data(), nullptr, 0, 2);
  EXPECT_EQ(y, (std::vector<float>{1.0f, 2.0f}));
}

TEST(ElementwiseCpuEdges, BadArgumentsThrow) {
  std::vector<float> buf(64, 1.0f);
  float* p = buf.data();
  const Stream cpu = Stream::cpu();
  EXPECT_THROW(add_inplace(cpu, p, p, -1), std::invalid_argument);
  EXPECT_THROW(add_inplace(cpu, p, nullptr, 4), std::invalid_argument);
  EXPECT_THROW(scale_inplace(cpu, p, INFINITY, 4), std::invalid_argument);
  EXPECT_THROW(scale_inplace(cpu, nullptr, 1.0f, 4), std::invalid_argument);
  EXPECT_THROW(scale_inplace(cpu, p, 1.0f, -4), std::invalid_argument);
  EXPECT_THROW(add_residual_bias(cpu, p, p, p, 2, 0), std::invalid_argument);
  EXPECT_THROW(add_residual_bias(cpu, p, p, p, -2, 4), std::invalid_argument);
  EXPECT_THROW(add_residual_bias(cpu, p, nullptr, p, 2, 4), std::invalid_argument);
  EXPECT_THROW(bias_backward(cpu, p, p, 2, 0), std::invalid_argument);
  EXPECT_THROW(bias_backward(cpu, nullptr, p, 2, 4), std::invalid_argument);
  EXPECT_THROW(bias_backward(cpu, p, p, -1, 4), std::invalid_argument);
}

}  // namespace
}  // namespace strata::kernels
