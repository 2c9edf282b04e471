// Linear layer y = x W^T + b on the CPU: forward against the scalar double reference (with and
// without bias), backward (dx, dW, db) against central finite differences of that reference,
// edge cases (no rows), determinism and argument checks.
#include <gtest/gtest.h>

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

INSTANTIATE_TEST_SUITE_P(Shapes, LinearCpu, ::testing::ValuesIn(kShapes),
                         [](const ::testing::TestParamInfo<Shape>& param_info) {
                           return param_info.param.name;
                         });

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
