// Linear layer y = x W^T + b on the CPU: forward against the scalar double reference (with and
// without bias), backward (dx, dW, db) against central finite differences of that reference,
// edge cases (no rows), determinism and argument checks; and the backward's two halves
// (linear_backward_data, linear_backward_weight): the same checks, bit-identity with
// linear_backward, and their accumulate option (result = old + new).
#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/model_ops.hpp"
#include "tests/kernels/model_reference.hpp"

namespace strata::kernels {
namespace {

using testing::central_differences;
using testing::expect_close;
using testing::linear_reference;
using testing::random_floats;
using testing::to_double;
using testing::weighted_sum;

struct Shape {
  std::int64_t n;
  std::int64_t in;
  std::int64_t out;
  bool bias;
  std::string name;
};

const Shape kShapes[] = {
    {1, 1, 1, true, "single"},
    {3, 5, 4, true, "small_bias"},
    {4, 7, 3, false, "small_no_bias"},
    {9, 33, 17, true, "ragged"},
};

class LinearCpu : public ::testing::TestWithParam<Shape> {};

TEST_P(LinearCpu, ForwardMatchesScalarReference) {
  const Shape s = GetParam();
  const auto x = random_floats(s.n * s.in, 1);
  const auto w = random_floats(s.out * s.in, 2);
  const auto bias = s.bias ? random_floats(s.out, 3) : std::vector<float>{};
  std::vector<float> y(s.n * s.out);
  linear_forward(Stream::cpu(), y.data(), x.data(), w.data(), s.bias ? bias.data() : nullptr, s.n,
                 s.in, s.out);
  // Sums of IN products of unit normals in fp32: error about sqrt(IN) * 2^-24 * |terms|.
  expect_close(y, linear_reference(to_double(x), to_double(w), to_double(bias), s.n, s.in, s.out),
               1e-5, 1e-5, s.name + " y");
}

TEST_P(LinearCpu, BackwardMatchesCentralDifferences) {
  const Shape s = GetParam();
  const auto xf = random_floats(s.n * s.in, 4);
  const auto wf = random_floats(s.out * s.in, 5);
  const auto bf = s.bias ? random_floats(s.out, 6) : std::vector<float>{};
  const auto dyf = random_floats(s.n * s.out, 7);
  std::vector<float> dx(xf.size()), dw(wf.size()), db(s.out, 99.0f);
  linear_backward(Stream::cpu(), dx.data(), dw.data(), s.bias ? db.data() : nullptr, dyf.data(),
                  xf.data(), wf.data(), s.n, s.in, s.out);

  std::vector<double> x = to_double(xf), w = to_double(wf), bias = to_double(bf);
  const std::vector<double> dy = to_double(dyf);
  const auto loss = [&] {
    return weighted_sum(dy, linear_reference(x, w, bias, s.n, s.in, s.out));
  };
  // Sums of at most 33 products of unit normals: 1e-5 absolute covers fp32 rounding.
  expect_close(dx, central_differences(x, loss), 1e-5, 1e-5, s.name + " dx");
  expect_close(dw, central_differences(w, loss), 1e-5, 1e-5, s.name + " dW");
  if (s.bias) {
    expect_close(db, central_differences(bias, loss), 1e-5, 1e-5, s.name + " db");
  } else {
    EXPECT_EQ(db, std::vector<float>(s.out, 99.0f)) << "dbias == nullptr: nothing written";
  }
}

TEST_P(LinearCpu, BackwardHalvesMatchCentralDifferences) {
  const Shape s = GetParam();
  const auto xf = random_floats(s.n * s.in, 11);
  const auto wf = random_floats(s.out * s.in, 12);
  const auto bf = s.bias ? random_floats(s.out, 13) : std::vector<float>{};
  const auto dyf = random_floats(s.n * s.out, 14);
  std::vector<float> dx(xf.size(), 99.0f), dw(wf.size(), 99.0f), db(s.out, 99.0f);
  const Stream cpu = Stream::cpu();
  linear_backward_data(cpu, dx.data(), dyf.data(), wf.data(), s.n, s.in, s.out);
  linear_backward_weight(cpu, dw.data(), s.bias ? db.data() : nullptr, dyf.data(), xf.data(), s.n,
                         s.in, s.out);
  std::vector<double> x = to_double(xf), w = to_double(wf), bias = to_double(bf);
  const std::vector<double> dy = to_double(dyf);
  const auto loss = [&] {
    return weighted_sum(dy, linear_reference(x, w, bias, s.n, s.in, s.out));
  };
  expect_close(dx, central_differences(x, loss), 1e-5, 1e-5, s.name + " dx");
  expect_close(dw, central_differences(w, loss), 1e-5, 1e-5, s.name + " dW");
  if (s.bias) expect_close(db, central_differences(bias, loss), 1e-5, 1e-5, s.name + " db");
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearCpu, ::testing::ValuesIn(kShapes),
                         [](const ::testing::TestParamInfo<Shape>& param_info) {
                           return param_info.param.name;
                         });

// linear_backward runs the two halves; called alone they give the same bits, including at
// shapes whose GEMMs Eigen splits into several blocks (n = 700 > its depth block).
TEST(LinearBackwardHalves, BitIdenticalToLinearBackward) {
  const Stream cpu = Stream::cpu();
  for (const auto& [n, in, out] : {std::tuple<std::int64_t, std::int64_t, std::int64_t>{1, 1, 1},
                                   {9, 33, 17},
                                   {37, 64, 48},
                                   {700, 96, 80}}) {
    const auto x = random_floats(n * in, 15), w = random_floats(out * in, 16);
    const auto dy = random_floats(n * out, 17);
    std::vector<float> dx1(n * in), dw1(out * in), db1(out), dx2(n * in), dw2(out * in), db2(out);
    linear_backward(cpu, dx1.data(), dw1.data(), db1.data(), dy.data(), x.data(), w.data(), n, in,
                    out);
    linear_backward_data(cpu, dx2.data(), dy.data(), w.data(), n, in, out);
    linear_backward_weight(cpu, dw2.data(), db2.data(), dy.data(), x.data(), n, in, out);
    EXPECT_EQ(dx1, dx2) << n << "x" << in << "x" << out;
    EXPECT_EQ(dw1, dw2) << n << "x" << in << "x" << out;
    EXPECT_EQ(db1, db2) << n << "x" << in << "x" << out;
  }
}

// accumulate: old + new. dbias is exactly old + (the overwriting result); dx and dW within fp32
// rounding (the GEMM adds its depth blocks into the output one by one).
TEST(LinearBackwardHalves, AccumulateAddsToTheOldValues) {
  const Stream cpu = Stream::cpu();
  for (const auto& [n, in, out] : {std::tuple<std::int64_t, std::int64_t, std::int64_t>{3, 5, 4},
                                   {37, 64, 48},
                                   {700, 96, 80}}) {
    const std::string name =
        std::to_string(n) + "x" + std::to_string(in) + "x" + std::to_string(out);
    const auto x = random_floats(n * in, 18), w = random_floats(out * in, 19);
    const auto dy = random_floats(n * out, 20);
    const auto old_dx = random_floats(n * in, 21), old_dw = random_floats(out * in, 22),
               old_db = random_floats(out, 23);
    std::vector<float> dx(n * in), dw(out * in), db(out);
    linear_backward_data(cpu, dx.data(), dy.data(), w.data(), n, in, out);
    linear_backward_weight(cpu, dw.data(), db.data(), dy.data(), x.data(), n, in, out);
    std::vector<float> acc_dx = old_dx, acc_dw = old_dw, acc_db = old_db;
    linear_backward_data(cpu, acc_dx.data(), dy.data(), w.data(), n, in, out, true);
    linear_backward_weight(cpu, acc_dw.data(), acc_db.data(), dy.data(), x.data(), n, in, out,
                           true);
    std::vector<double> want_dx(dx.size()), want_dw(dw.size());
    std::vector<float> want_db(db.size());
    for (std::size_t k = 0; k < dx.size(); ++k) want_dx[k] = double{old_dx[k]} + dx[k];
    for (std::size_t k = 0; k < dw.size(); ++k) want_dw[k] = double{old_dw[k]} + dw[k];
    for (std::size_t k = 0; k < db.size(); ++k) want_db[k] = old_db[k] + db[k];
    // Terms are sums of up to 700 products of unit normals (|dW| ~ 26): a few fp32 roundings.
    expect_close(acc_dx, want_dx, 1e-5, 1e-5, name + " dx");
    expect_close(acc_dw, want_dw, 1e-4, 1e-5, name + " dW");
    EXPECT_EQ(acc_db, want_db) << name;
  }
}

TEST(LinearBackwardHalves, NoRows) {
  const Stream cpu = Stream::cpu();
  std::vector<float> dw(6, 7.0f), db(2, 7.0f);
  linear_backward_data(cpu, nullptr, nullptr, nullptr, 0, 3, 2, true);
  linear_backward_weight(cpu, dw.data(), db.data(), nullptr, nullptr, 0, 3, 2, true);
  EXPECT_EQ(dw, std::vector<float>(6, 7.0f)) << "accumulate with no rows: unchanged";
  EXPECT_EQ(db, std::vector<float>(2, 7.0f)) << "accumulate with no rows: unchanged";
  linear_backward_weight(cpu, dw.data(), db.data(), nullptr, nullptr, 0, 3, 2);
  EXPECT_EQ(dw, std::vector<float>(6, 0.0f));
  EXPECT_EQ(db, std::vector<float>(2, 0.0f));
}

TEST(LinearBackwardHalves, BadArgumentsThrow) {
  std::vector<float> buf(64, 1.0f);
  float* p = buf.data();
  const Stream cpu = Stream::cpu();
  EXPECT_THROW(linear_backward_data(cpu, p, p, p, 2, 0, 4), std::invalid_argument);
  EXPECT_THROW(linear_backward_data(cpu, p, p, p, 2, 4, 0), std::invalid_argument);
  EXPECT_THROW(linear_backward_data(cpu, p, p, p, -1, 4, 4), std::invalid_argument);
  EXPECT_THROW(linear_backward_data(cpu, nullptr, p, p, 2, 4, 4), std::invalid_argument);
  EXPECT_THROW(linear_backward_data(cpu, p, p, nullptr, 2, 4, 4, true), std::invalid_argument);
  EXPECT_THROW(linear_backward_weight(cpu, p, p, p, p, 2, 0, 4), std::invalid_argument);
  EXPECT_THROW(linear_backward_weight(cpu, p, p, p, p, -1, 4, 4), std::invalid_argument);
  EXPECT_THROW(linear_backward_weight(cpu, nullptr, p, p, p, 0, 4, 4), std::invalid_argument);
  EXPECT_THROW(linear_backward_weight(cpu, p, p, p, nullptr, 2, 4, 4, true), std::invalid_argument);
  EXPECT_NO_THROW(linear_backward_weight(cpu, p, nullptr, p, p, 2, 4, 4));  // no bias
}

TEST(LinearCpuEdges, NoRowsGivesZeroParameterGradients) {
  std::vector<float> dw(6, 7.0f), db(2, 7.0f);
  const std::vector<float> w(6, 1.0f);
  linear_forward(Stream::cpu(), nullptr, nullptr, nullptr, nullptr, 0, 3, 2);
  linear_backward(Stream::cpu(), nullptr, dw.data(), db.data(), nullptr, nullptr, w.data(), 0, 3,
                  2);
  EXPECT_EQ(dw, std::vector<float>(6, 0.0f));
  EXPECT_EQ(db, std::vector<float>(2, 0.0f));
}

TEST(LinearCpuEdges, BackwardIsDeterministic) {
  const std::int64_t n = 37, in = 64, out = 48;
  const auto x = random_floats(n * in, 8), w = random_floats(out * in, 9);
  const auto dy = random_floats(n * out, 10);
  std::vector<float> dx1(n * in), dw1(out * in), db1(out), dx2(n * in), dw2(out * in), db2(out);
  const Stream cpu = Stream::cpu();
  linear_backward(cpu, dx1.data(), dw1.data(), db1.data(), dy.data(), x.data(), w.data(), n, in,
                  out);
  linear_backward(cpu, dx2.data(), dw2.data(), db2.data(), dy.data(), x.data(), w.data(), n, in,
                  out);
  EXPECT_EQ(dx1, dx2);
  EXPECT_EQ(dw1, dw2);
  EXPECT_EQ(db1, db2);
}

TEST(LinearCpuEdges, BadArgumentsThrow) {
  std::vector<float> buf(64, 1.0f);
  float* p = buf.data();
  const Stream cpu = Stream::cpu();
  EXPECT_THROW(linear_forward(cpu, p, p, p, p, 2, 0, 4), std::invalid_argument);
  EXPECT_THROW(linear_forward(cpu, p, p, p, p, 2, 4, 0), std::invalid_argument);
  EXPECT_THROW(linear_forward(cpu, p, p, p, p, -1, 4, 4), std::invalid_argument);
  EXPECT_THROW(linear_forward(cpu, p, p, nullptr, p, 2, 4, 4), std::invalid_argument);
  EXPECT_THROW(linear_backward(cpu, p, nullptr, p, p, p, p, 0, 4, 4), std::invalid_argument);
  EXPECT_THROW(linear_backward(cpu, nullptr, p, p, p, p, p, 2, 4, 4), std::invalid_argument);
}

}  // namespace
}  // namespace strata::kernels
