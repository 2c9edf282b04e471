// RMSNorm on the CPU: forward (y, rstd) against the scalar double reference, backward (dx,
// dweight) against central finite differences of that reference, the accumulate option (dweight
// = old + new, bit for bit), edge cases, determinism and argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/model_ops.hpp"
#include "tests/kernels/model_reference.hpp"

namespace strata::kernels {
namespace {

using testing::central_differences;
using testing::expect_close;
using testing::random_floats;
using testing::rms_norm_reference;
using testing::to_double;
using testing::weighted_sum;

struct Shape {
  std::int64_t n;
  std::int64_t c;
  float row_std;  // inputs ~ normal(0.5, row_std)
  std::string name;
};

const Shape kShapes[] = {
    {1, 1, 1.0f, "single"},
    {5, 7, 1.0f, "tiny"},
    {4, 129, 2.0f, "ragged"},
    {3, 16, 0.1f, "narrow"},
};

class RmsNormCpu : public ::testing::TestWithParam<Shape> {};

TEST_P(RmsNormCpu, ForwardMatchesScalarReference) {
  const Shape s = GetParam();
  const auto x = random_floats(s.n * s.c, 1, 0.5f, s.row_std);
  const auto w = random_floats(s.c, 2, 1.0f, 0.5f);
  std::vector<float> y(x.size()), rstd(s.n);
  rms_norm_forward(Stream::cpu(), y.data(), rstd.data(), x.data(), w.data(), s.n, s.c);
  const auto want = rms_norm_reference(to_double(x), to_double(w), s.n, s.c, 1e-5);
  // Sum of squares in double, then two fp32 products: a few ulps of O(1) outputs.
  expect_close(y, want.y, 1e-6, 1e-5, s.name + " y");
  expect_close(rstd, want.rstd, 1e-6, 1e-6, s.name + " rstd");
}

TEST_P(RmsNormCpu, BackwardMatchesCentralDifferences) {
  const Shape s = GetParam();
  const auto xf = random_floats(s.n * s.c, 3, 0.5f, s.row_std);
  const auto wf = random_floats(s.c, 4, 1.0f, 0.5f);
  const auto dyf = random_floats(s.n * s.c, 5);
  std::vector<float> y(xf.size()), rstd(s.n), dx(xf.size()), dw(s.c);
  const Stream cpu = Stream::cpu();
  rms_norm_forward(cpu, y.data(), rstd.data(), xf.data(), wf.data(), s.n, s.c);
  rms_norm_backward(cpu, dx.data(), dw.data(), dyf.data(), xf.data(), wf.data(), rstd.data(), s.n,
                    s.c);
  std::vector<double> x = to_double(xf), w = to_double(wf);
  const std::vector<double> dy = to_double(dyf);
  const auto loss = [&] { return weighted_sum(dy, rms_norm_reference(x, w, s.n, s.c, 1e-5).y); };
  // dx carries rstd (up to ~2 for the narrow rows); dweight sums N terms of O(1).
  expect_close(dx, central_differences(x, loss), 1e-4, 1e-4, s.name + " dx");
  expect_close(dw, central_differences(w, loss), 1e-4, 1e-4, s.name + " dweight");
}

INSTANTIATE_TEST_SUITE_P(Shapes, RmsNormCpu, ::testing::ValuesIn(kShapes),
                         [](const ::testing::TestParamInfo<Shape>& param_info) {
                           return param_info.param.name;
                         });

TEST(RmsNormCpuEdges, ZeroRowGivesZeroOutput) {
  const std::int64_t c = 8;
  const std::vector<float> x(c, 0.0f), w(c, 2.0f);
  std::vector<float> y(c, 5.0f), rstd(1);
  rms_norm_forward(Stream::cpu(), y.data(), rstd.data(), x.data(), w.data(), 1, c);
  EXPECT_EQ(y, std::vector<float>(c, 0.0f));
  EXPECT_NEAR(rstd[0], 1.0 / std::sqrt(1e-5), 1e-2);  // mean square 0: rstd = 1/sqrt(eps)
}

TEST(RmsNormCpuEdges, NoRowsGivesZeroWeightGradient) {
  std::vector<float> dw(5, 7.0f);
  rms_norm_backward(Stream::cpu(), nullptr, dw.data(), nullptr, nullptr, nullptr, nullptr, 0, 5);
  EXPECT_EQ(dw, std::vector<float>(5, 0.0f));
}

TEST(RmsNormCpuEdges, BackwardIsDeterministic) {
  const std::int64_t n = 17, c = 40;
  const auto x = random_floats(n * c, 6), w = random_floats(c, 7), dy = random_floats(n * c, 8);
  std::vector<float> y(n * c), rstd(n), dx1(n * c), dw1(c), dx2(n * c), dw2(c);
  const Stream cpu = Stream::cpu();
  rms_norm_forward(cpu, y.data(), rstd.data(), x.data(), w.data(), n, c);
  rms_norm_backward(cpu, dx1.data(), dw1.data(), dy.data(), x.data(), w.data(), rstd.data(), n, c);
  rms_norm_backward(cpu, dx2.data(), dw2.data(), dy.data(), x.data(), w.data(), rstd.data(), n, c);
  EXPECT_EQ(dx1, dx2);
  EXPECT_EQ(dw1, dw2);
}

TEST_P(RmsNormCpu, BackwardAccumulateAddsToTheOldWeightGradient) {
  const Shape s = GetParam();
  const auto x = random_floats(s.n * s.c, 6, 0.5f, s.row_std);
  const auto w = random_floats(s.c, 7, 1.0f, 0.5f);
  const auto dy = random_floats(s.n * s.c, 8);
  const auto old = random_floats(s.c, 9);
  std::vector<float> y(x.size()), rstd(s.n), dx(x.size()), dw(s.c), dx_acc(x.size()), dw_acc = old;
  const Stream cpu = Stream::cpu();
  rms_norm_forward(cpu, y.data(), rstd.data(), x.data(), w.data(), s.n, s.c);
  rms_norm_backward(cpu, dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), s.n,
                    s.c);
  rms_norm_backward(cpu, dx_acc.data(), dw_acc.data(), dy.data(), x.data(), w.data(), rstd.data(),
                    s.n, s.c, true);
  std::vector<float> want(s.c);
  for (std::int64_t j = 0; j < s.c; ++j) want[j] = old[j] + dw[j];
  EXPECT_EQ(dw_acc, want) << s.name << ": old + the overwriting result, bit for bit";
  EXPECT_EQ(dx_acc, dx) << s.name << ": dx is overwritten either way";
}

TEST(RmsNormCpuEdges, AccumulateWithNoRowsLeavesTheWeightGradient) {
  std::vector<float> dw = {1.5f, -2.0f, 0.25f};
  const std::vector<float> w(3, 1.0f);
  rms_norm_backward(Stream::cpu(), nullptr, dw.data(), nullptr, nullptr, w.data(), nullptr, 0, 3,
                    true);
  EXPECT_EQ(dw, (std::vector<float>{1.5f, -2.0f, 0.25f}));
}

TEST(RmsNormCpuEdges, BadArgumentsThrow) {
  std::vector<float> buf(16, 1.0f);
  float* p = buf.data();
  const Stream cpu = Stream::cpu();
  EXPECT_THROW(rms_norm_forward(cpu, p, p, p, p, 2, 0), std::invalid_argument);
  EXPECT_THROW(rms_norm_forward(cpu, p, p, p, p, -1, 4), std::invalid_argument);
  EXPECT_THROW(rms_norm_forward(cpu, p, p, p, p, 2, 4, 0.0f), std::invalid_argument);
  EXPECT_THROW(rms_norm_forward(cpu, p, nullptr, p, p, 2, 4), std::invalid_argument);
  EXPECT_THROW(rms_norm_backward(cpu, p, nullptr, p, p, p, p, 0, 4), std::invalid_argument);
}

}  // namespace
}  // namespace strata::kernels
