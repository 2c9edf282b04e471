// SwiGLU (silu(gate) * up) on the CPU: forward against the scalar double reference, backward
// against central finite differences of that reference, large gates, edge cases and argument
// checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "kernels/model_ops.hpp"
#include "tests/kernels/model_reference.hpp"

namespace strata::kernels {
namespace {

using testing::central_differences;
using testing::expect_close;
using testing::random_floats;
using testing::swiglu_reference;
using testing::to_double;
using testing::weighted_sum;

TEST(SwigluCpu, ForwardMatchesScalarReference) {
  const std::int64_t n = 7, f = 13;
  const auto x = random_floats(n * 2 * f, 1, 0.0f, 3.0f);
  std::vector<float> out(n * f);
  swiglu_forward(Stream::cpu(), out.data(), x.data(), n, f);
  // A few fp32 roundings of outputs up to ~50: 1e-6 relative.
  expect_close(out, swiglu_reference(to_double(x), n, f), 1e-6, 1e-6, "out");
}

TEST(SwigluCpu, BackwardMatchesCentralDifferences) {
  const std::int64_t n = 4, f = 9;
  const auto xf = random_floats(n * 2 * f, 2, 0.0f, 3.0f);
  const auto doutf = random_floats(n * f, 3);
  std::vector<float> dx(xf.size());
  swiglu_backward(Stream::cpu(), dx.data(), doutf.data(), xf.data(), n, f);
  std::vector<double> x = to_double(xf);
  const std::vector<double> dout = to_double(doutf);
  const auto loss = [&] { return weighted_sum(dout, swiglu_reference(x, n, f)); };
  expect_close(dx, central_differences(x, loss), 1e-6, 1e-5, "dx");
}

TEST(SwigluCpuEdges, LargeGatesStayFinite) {
  const std::vector<float> x = {-200.0f, 200.0f, -50.0f, 3.0f, 2.0f, 0.5f};  // gate | up, F = 3
  const std::vector<float> dout = {1.0f, 1.0f, 1.0f};
  std::vector<float> out(3), dx(6);
  swiglu_forward(Stream::cpu(), out.data(), x.data(), 1, 3);
  swiglu_backward(Stream::cpu(), dx.data(), dout.data(), x.data(), 1, 3);
  const std::vector<double> x64 = to_double(x);
  expect_close(out, swiglu_reference(x64, 1, 3), 1e-30, 1e-6, "out");
  EXPECT_EQ(dx[0], 0.0f);          // d/dgate at -200: sigmoid underflows to 0
  EXPECT_FLOAT_EQ(dx[1], 2.0f);    // d/dgate at 200: up * 1
  EXPECT_EQ(dx[3], 0.0f);          // d/dup = silu(-200) = 0
  EXPECT_FLOAT_EQ(dx[4], 200.0f);  // d/dup = silu(200)
  for (float d : dx) EXPECT_TRUE(std::isfinite(d));
}

TEST(SwigluCpuEdges, NoRowsIsANoOp) {
  EXPECT_NO_THROW(swiglu_forward(Stream::cpu(), nullptr, nullptr, 0, 4));
  EXPECT_NO_THROW(swiglu_backward(Stream::cpu(), nullptr, nullptr, nullptr, 0, 4));
}

TEST(SwigluCpuEdges, BadArgumentsThrow) {
  std::vector<float> buf(16, 1.0f);
  float* p = buf.data();
  const Stream cpu = Stream::cpu();
  EXPECT_THROW(swiglu_forward(cpu, p, p, 2, 0), std::invalid_argument);
  EXPECT_THROW(swiglu_forward(cpu, p, p, -1, 2), std::invalid_argument);
  EXPECT_THROW(swiglu_forward(cpu, nullptr, p, 2, 2), std::invalid_argument);
  EXPECT_THROW(swiglu_backward(cpu, p, nullptr, p, 2, 2), std::invalid_argument);
}

}  // namespace
}  // namespace strata::kernels
