// AdamW on the CPU: two steps against values computed by hand, agreement with a double-precision
// transcription of the update over random data, edge cases and argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "kernels/model_ops.hpp"
#include "tests/kernels/reference.hpp"

namespace strata::kernels {
namespace {

using testing::expect_close;
using testing::random_floats;

// beta1 = 0.5, beta2 = 0.75, lr = 0.1, weight_decay = 0.1, params start at 1, moments at 0.
// Step 1, g = 0.5 (both elements): m = 0.25, v = 0.0625, mhat = 0.25 / 0.5 = 0.5,
//   vhat = 0.0625 / 0.25 = 0.25, mhat / sqrt(vhat) = 1, p = 1 - 0.1 (1 + 0.1 * 1) = 0.89.
// Step 2, element 0 with g = -0.25: m = 0.125 - 0.125 = 0, v = 0.046875 + 0.015625 = 0.0625,
//   mhat = 0, so only weight decay acts: p = 0.89 - 0.1 (0.1 * 0.89) = 0.8811.
// Step 2, element 1 with g = 0.5: m = 0.375, v = 0.046875 + 0.0625 = 0.109375,
//   mhat = 0.375 / 0.75 = 0.5, vhat = 0.109375 / 0.4375 = 0.25, ratio 1,
//   p = 0.89 - 0.1 (1 + 0.089) = 0.7811.
// eps = 1e-8 shifts each ratio by about 2e-8, far inside the tolerance.
TEST(AdamWCpu, TwoStepsMatchHandComputedValues) {
  AdamWOptions options;
  options.lr = 0.1f;
  options.beta1 = 0.5f;
  options.beta2 = 0.75f;
  options.eps = 1e-8f;
  options.weight_decay = 0.1f;
  std::vector<float> params = {1.0f, 1.0f}, m(2, 0.0f), v(2, 0.0f);
  const Stream cpu = Stream::cpu();

  const std::vector<float> g1 = {0.5f, 0.5f};
  adamw_step(cpu, params.data(), m.data(), v.data(), g1.data(), 2, 1, options);
  expect_close(params, std::vector<double>{0.89, 0.89}, 1e-6, 1e-6, "step 1 params");
  expect_close(m, std::vector<double>{0.25, 0.25}, 1e-7, 0.0, "step 1 m");
  expect_close(v, std::vector<double>{0.0625, 0.0625}, 1e-7, 0.0, "step 1 v");

  const std::vector<float> g2 = {-0.25f, 0.5f};
  adamw_step(cpu, params.data(), m.data(), v.data(), g2.data(), 2, 2, options);
  expect_close(params, std::vector<double>{0.8811, 0.7811}, 1e-6, 1e-6, "step 2 params");
  expect_close(m, std::vector<double>{0.0, 0.375}, 1e-7, 0.0, "step 2 m");
  expect_close(v, std::vector<double>{0.0625, 0.109375}, 1e-7, 0.0, "step 2 v");
}

// The update transcribed in double over random parameters and gradients, default betas.
TEST(AdamWCpu, MatchesDoubleTranscriptionOverThreeSteps) {
  const std::int64_t n = 257;
  AdamWOptions options;
  options.lr = 3e-3f;
  options.weight_decay = 0.01f;
  auto params = random_floats(n, 1);
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  std::vector<double> pd(params.begin(), params.end()), md(n, 0.0), vd(n, 0.0);
  const double b1 = options.beta1, b2 = options.beta2;
  for (std::int64_t step = 1; step <= 3; ++step) {
    const auto g = random_floats(n, 10 + static_cast<std::uint32_t>(step));
    adamw_step(Stream::cpu(), params.data(), m.data(), v.data(), g.data(), n, step, options);
    for (std::int64_t i = 0; i < n; ++i) {
      md[i] = b1 * md[i] + (1 - b1) * g[i];
      vd[i] = b2 * vd[i] + (1 - b2) * g[i] * g[i];
      const double mhat = md[i] / (1 - std::pow(b1, step));
      const double vhat = vd[i] / (1 - std::pow(b2, step));
      pd[i] -= double{options.lr} *
               (mhat / (std::sqrt(vhat) + double{options.eps}) + options.weight_decay * pd[i]);
    }
  }
  // Updates are ~lr = 3e-3 per step; fp32 rounding of params ~1e-7.
  expect_close(params, pd, 1e-6, 1e-6, "params");
  expect_close(m, md, 1e-7, 1e-5, "m");
  expect_close(v, vd, 1e-8, 1e-5, "v");
}

TEST(AdamWCpu, EmptyIsANoOp) {
  EXPECT_NO_THROW(adamw_step(Stream::cpu(), nullptr, nullptr, nullptr, nullptr, 0, 1, {}));
}

TEST(AdamWCpu, BadArgumentsThrow) {
  std::vector<float> buf(4, 1.0f);
  float* p = buf.data();
  const Stream cpu = Stream::cpu();
  const AdamWOptions ok;
  EXPECT_THROW(adamw_step(cpu, p, p, p, p, -1, 1, ok), std::invalid_argument);
  EXPECT_THROW(adamw_step(cpu, p, p, p, p, 4, 0, ok), std::invalid_argument);
  EXPECT_THROW(adamw_step(cpu, p, nullptr, p, p, 4, 1, ok), std::invalid_argument);
  AdamWOptions bad = ok;
  bad.beta1 = 1.0f;
  EXPECT_THROW(adamw_step(cpu, p, p, p, p, 4, 1, bad), std::invalid_argument);
  bad = ok;
  bad.beta2 = -0.1f;
  EXPECT_THROW(adamw_step(cpu, p, p, p, p, 4, 1, bad), std::invalid_argument);
  bad = ok;
  bad.eps = 0.0f;
  EXPECT_THROW(adamw_step(cpu, p, p, p, p, 4, 1, bad), std::invalid_argument);
  bad = ok;
  bad.lr = NAN;
  EXPECT_THROW(adamw_step(cpu, p, p, p, p, 4, 1, bad), std::invalid_argument);
  bad = ok;
  bad.weight_decay = -1.0f;
  EXPECT_THROW(adamw_step(cpu, p, p, p, p, 4, 1, bad), std::invalid_argument);
}

}  // namespace
}  // namespace strata::kernels
