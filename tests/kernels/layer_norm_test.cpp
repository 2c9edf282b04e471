// LayerNorm on the CPU: forward (y, mean, rstd) against the scalar double reference, backward
// (dx, dgamma, dbeta) against central finite differences of that reference, the accumulate
// option (dgamma, dbeta = old + new, bit for bit), edge cases and argument checks.
#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/ops.hpp"
#include "tests/kernels/reference.hpp"

namespace strata::kernels {
namespace {

using testing::central_differences;
using testing::expect_close;
using testing::layer_norm_reference;
using testing::random_floats;
using testing::to_double;

struct Shape {
  std::int64_t n;
  std::int64_t c;
  float row_mean;  // inputs ~ normal(row_mean, row_std)
  float row_std;
  double atol;  // forward tolerance; see the comment in ForwardMatchesScalarReference
  std::string name;
};

// Sizes around the CUDA warp width and a row offset much larger than its spread.
const Shape kShapes[] = {
    {1, 1, 0.0f, 1.0f, 1e-5, "single"},         {5, 7, 0.0f, 1.0f, 1e-5, "tiny"},
    {3, 64, 0.0f, 1.0f, 1e-5, "warp_multiple"}, {4, 129, 0.5f, 2.0f, 1e-5, "ragged"},
    {6, 96, 5.0f, 0.05f, 1e-4, "offset_rows"},
};

class LayerNormCpu : public ::testing::TestWithParam<Shape> {};

TEST_P(LayerNormCpu, ForwardMatchesScalarReference) {
  const Shape s = GetParam();
  const auto x = random_floats(s.n * s.c, 1, s.row_mean, s.row_std);
  const auto gamma = random_floats(s.c, 2, 1.0f, 0.5f);
  const auto beta = random_floats(s.c, 3);
  std::vector<float> y(x.size()), mean(s.n), rstd(s.n);
  layer_norm_forward(Stream::cpu(), y.data(), mean.data(), rstd.data(), x.data(), gamma.data(),
                     beta.data(), s.n, s.c);
  const auto want =
      layer_norm_reference(to_double(x), to_double(gamma), to_double(beta), s.n, s.c, 1e-5);
  // fp32 rounding of the mean (|mean| * 2^-24) is amplified by rstd in y: 1e-5 for unit rows,
  // 1e-4 for the offset rows (mean 5, std 0.05).
  expect_close(y, want.y, s.atol, 1e-5, s.name + " y");
  expect_close(mean, want.mean, 1e-6, 1e-6, s.name + " mean");
  expect_close(rstd, want.rstd, 1e-6, 1e-5, s.name + " rstd");
}

TEST_P(LayerNormCpu, BackwardMatchesCentralDifferences) {
  const Shape s = GetParam();
  const auto xf = random_floats(s.n * s.c, 4, s.row_mean, s.row_std);
  const auto gammaf = random_floats(s.c, 5, 1.0f, 0.5f);
  const auto betaf = random_floats(s.c, 6);
  const auto dyf = random_floats(s.n * s.c, 7);  // the upstream gradient: loss = sum(dy * y)

  std::vector<float> y(xf.size()), mean(s.n), rstd(s.n), dx(xf.size()), dgamma(s.c), dbeta(s.c);
  const Stream cpu = Stream::cpu();
  layer_norm_forward(cpu, y.data(), mean.data(), rstd.data(), xf.data(), gammaf.data(),
                     betaf.data(), s.n, s.c);
  layer_norm_backward(cpu, dx.data(), dgamma.data(), dbeta.data(), dyf.data(), xf.data(),
                      gammaf.data(), mean.data(), rstd.data(), s.n, s.c);

  std::vector<double> x = to_double(xf), gamma = to_double(gammaf), beta = to_double(betaf);
  const std::vector<double> dy = to_double(dyf);
  const auto loss = [&] {
    const auto out = layer_norm_reference(x, gamma, beta, s.n, s.c, 1e-5);
    double total = 0.0;
    for (std::size_t k = 0; k < dy.size(); ++k) total += dy[k] * out.y[k];
    return total;
  };
  // dx carries rstd (20 for the offset rows), so its tolerance scales with it; the parameter
  // gradients are sums over N rows of O(1) terms.
  const double dx_atol = 1e-4 / s.row_std;
  expect_close(dx, central_differences(x, loss), dx_atol, 1e-4, s.name + " dx");
  expect_close(dgamma, central_differences(gamma, loss), 1e-4, 1e-4, s.name + " dgamma");
  expect_close(dbeta, central_differences(beta, loss), 1e-4, 1e-4, s.name + " dbeta");
}

INSTANTIATE_TEST_SUITE_P(Shapes, LayerNormCpu, ::testing::ValuesIn(kShapes),
                         [](const ::testing::TestParamInfo<Shape>& param_info) {
                           return param_info.param.name;
                         });

TEST(LayerNormCpuEdges, ConstantRowNormalizesToBeta) {
  const std::int64_t c = 8;
  const std::vector<float> x(c, 3.25f), gamma(c, 2.0f), beta = random_floats(c, 9);
  std::vector<float> y(c), mean(1), rstd(1);
  layer_norm_forward(Stream::cpu(), y.data(), mean.data(), rstd.data(), x.data(), gamma.data(),
                     beta.data(), 1, c, 1e-5f);
  EXPECT_FLOAT_EQ(mean[0], 3.25f);
  EXPECT_NEAR(rstd[0], 1.0 / std::sqrt(1e-5), 1e-2);  // var = 0: rstd = 1/sqrt(eps)
  expect_close(y, beta, 0.0, 0.0, "constant row");
}

TEST(LayerNormCpuEdges, NoRowsGivesZeroParameterGradients) {
  const std::int64_t c = 5;
  std::vector<float> dgamma(c, 7.0f), dbeta(c, 7.0f);
  const std::vector<float> gamma(c, 1.0f);
  layer_norm_backward(Stream::cpu(), nullptr, dgamma.data(), dbeta.data(), nullptr, nullptr,
                      gamma.data(), nullptr, nullptr, 0, c);
  EXPECT_EQ(dgamma, std::vector<float>(c, 0.0f));
  EXPECT_EQ(dbeta, std::vector<float>(c, 0.0f));
}

TEST(LayerNormCpuEdges, BackwardIsDeterministic) {
  const std::int64_t n = 33, c = 70;
  const auto x = random_floats(n * c, 10), dy = random_floats(n * c, 11);
  const auto gamma = random_floats(c, 12), beta = random_floats(c, 13);
  std::vector<float> y(n * c), mean(n), rstd(n);
  const Stream cpu = Stream::cpu();
  layer_norm_forward(cpu, y.data(), mean.data(), rstd.data(), x.data(), gamma.data(), beta.data(),
                     n, c);
  std::vector<float> dx1(n * c), dg1(c), db1(c), dx2(n * c), dg2(c), db2(c);
  layer_norm_backward(cpu, dx1.data(), dg1.data(), db1.data(), dy.data(), x.data(), gamma.data(),
                      mean.data(), rstd.data(), n, c);
  layer_norm_backward(cpu, dx2.data(), dg2.data(), db2.data(), dy.data(), x.data(), gamma.data(),
                      mean.data(), rstd.data(), n, c);
  EXPECT_EQ(dx1, dx2);
  EXPECT_EQ(dg1, dg2);
  EXPECT_EQ(db1, db2);
}

TEST_P(LayerNormCpu, BackwardAccumulateAddsToTheOldParameterGradients) {
  const Shape s = GetParam();
  const auto x = random_floats(s.n * s.c, 14, s.row_mean, s.row_std);
  const auto gamma = random_floats(s.c, 15, 1.0f, 0.5f), beta = random_floats(s.c, 16);
  const auto dy = random_floats(s.n * s.c, 17);
  const auto old_dg = random_floats(s.c, 18), old_db = random_floats(s.c, 19);
  std::vector<float> y(x.size()), mean(s.n), rstd(s.n), dx(x.size()), dg(s.c), db(s.c);
  const Stream cpu = Stream::cpu();
  layer_norm_forward(cpu, y.data(), mean.data(), rstd.data(), x.data(), gamma.data(), beta.data(),
                     s.n, s.c);
  layer_norm_backward(cpu, dx.data(), dg.data(), db.data(), dy.data(), x.data(), gamma.data(),
                      mean.data(), rstd.data(), s.n, s.c);
  std::vector<float> dx_acc(x.size()), dg_acc = old_dg, db_acc = old_db;
  layer_norm_backward(cpu, dx_acc.data(), dg_acc.data(), db_acc.data(), dy.data(), x.data(),
                      gamma.data(), mean.data(), rstd.data(), s.n, s.c, true);
  std::vector<float> want_dg(s.c), want_db(s.c);
  for (std::int64_t j = 0; j < s.c; ++j) {
    want_dg[j] = old_dg[j] + dg[j];
    want_db[j] = old_db[j] + db[j];
  }
  EXPECT_EQ(dg_acc, want_dg) << s.name << ": old + the overwriting result, bit for bit";
  EXPECT_EQ(db_acc, want_db) << s.name << ": old + the overwriting result, bit for bit";
  EXPECT_EQ(dx_acc, dx) << s.name << ": dx is overwritten either way";
}

TEST(LayerNormCpuEdges, AccumulateWithNoRowsLeavesParameterGradients) {
  const std::vector<float> gamma(3, 1.0f);
  std::vector<float> dgamma = {1.0f, -2.0f, 3.0f}, dbeta = {0.5f, 0.25f, -0.125f};
  layer_norm_backward(Stream::cpu(), nullptr, dgamma.data(), dbeta.data(), nullptr, nullptr,
                      gamma.data(), nullptr, nullptr, 0, 3, true);
  EXPECT_EQ(dgamma, (std::vector<float>{1.0f, -2.0f, 3.0f}));
  EXPECT_EQ(dbeta, (std::vector<float>{0.5f, 0.25f, -0.125f}));
}

TEST(LayerNormCpuEdges, BadArgumentsThrow) {
  std::vector<float> buf(16, 1.0f);
  float* p = buf.data();
  const Stream cpu = Stream::cpu();
  EXPECT_THROW(layer_norm_forward(cpu, p, p, p, p, p, p, 2, 0), std::invalid_argument);
  EXPECT_THROW(layer_norm_forward(cpu, p, p, p, p, p, p, -1, 4), std::invalid_argument);
  EXPECT_THROW(layer_norm_forward(cpu, p, p, p, p, p, p, 2, 4, 0.0f), std::invalid_argument);
  EXPECT_THROW(layer_norm_forward(cpu, p, nullptr, p, p, p, p, 2, 4), std::invalid_argument);
  EXPECT_THROW(layer_norm_backward(cpu, p, nullptr, p, p, p, p, p, p, 0, 4), std::invalid_argument);
}

}  // namespace
}  // namespace strata::kernels
