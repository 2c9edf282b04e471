// GELU on the CPU: forward against the scalar double reference, backward against central finite
// differences of that reference, and the argument checks every backend shares.
#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include "kernels/ops.hpp"
#include "tests/kernels/reference.hpp"

namespace strata::kernels {
namespace {

using testing::expect_close;
using testing::gelu_reference;
using testing::random_floats;

// Inputs that cover the interesting range: the normal bulk, large |x| where tanh saturates,
// exact zero, and a length that is not a multiple of the CPU path's 4096-element chunks.
std::vector<float> gelu_inputs() {
  std::vector<float> x = random_floats(2 * 4096 + 37, 7, 0.0f, 2.0f);
  for (float v : {0.0f, -0.0f, 1e-6f, -1e-6f, -0.75f, 3.0f, -3.0f, -4.5f, 6.0f, -6.0f, 10.0f,
                  -10.0f, 30.0f, -30.0f, 1e4f, -1e4f}) {
    x.push_back(v);
  }
  return x;
}

TEST(GeluCpu, ForwardMatchesScalarReference) {
  const std::vector<float> x = gelu_inputs();
  std::vector<float> y(x.size());
  gelu_forward(Stream::cpu(), y.data(), x.data(), static_cast<std::int64_t>(x.size()));
  std::vector<double> want(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) want[i] = gelu_reference(x[i]);
  // fp32 against double: a few ulps relative, also for negative x where the output is tiny (the
  // op avoids 1 + tanh cancellation); measured worst over [-30, 30] is 4% of this tolerance.
  expect_close(y, want, 1e-7, 1e-5, "gelu_forward");
}

TEST(GeluCpu, BackwardMatchesCentralDifferences) {
  const std::vector<float> x = gelu_inputs();
  const std::vector<float> dy = random_floats(x.size(), 8);
  std::vector<float> dx(x.size());
  gelu_backward(Stream::cpu(), dx.data(), dy.data(), x.data(), static_cast<std::int64_t>(x.size()));
  std::vector<double> want(x.size());
  const double h = 1e-6;
  for (std::size_t i = 0; i < x.size(); ++i) {  // elementwise: one scalar difference per element
    const double slope = (gelu_reference(x[i] + h) - gelu_reference(x[i] - h)) / (2.0 * h);
    want[i] = dy[i] * slope;
  }
  // The double difference is exact to ~1e-9. gelu' crosses zero near x = -0.75, where only an
  // absolute bound makes sense: 1e-6 abs + 1e-5 rel (measured worst: 4% of it).
  expect_close(dx, want, 1e-6, 1e-5, "gelu_backward");
}

TEST(GeluCpu, EmptyInputIsANoOp) {
  float* none = nullptr;  // typed: the op is overloaded on fp32 and bf16 tensors
  const Event done = gelu_forward(Stream::cpu(), none, none, 0);
  EXPECT_TRUE(done.is_complete());
  EXPECT_NO_THROW(gelu_backward(Stream::cpu(), none, none, none, 0));
}

TEST(GeluCpu, BadArgumentsThrow) {
  std::vector<float> x(4, 1.0f);
  std::vector<float> y(4);
  EXPECT_THROW(gelu_forward(Stream::cpu(), y.data(), x.data(), -1), std::invalid_argument);
  EXPECT_THROW(gelu_forward(Stream::cpu(), nullptr, x.data(), 4), std::invalid_argument);
  EXPECT_THROW(gelu_backward(Stream::cpu(), y.data(), nullptr, x.data(), 4), std::invalid_argument);
}

}  // namespace
}  // namespace strata::kernels
