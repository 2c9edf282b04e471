// Strategy fp8 simulated end to end: on a GEMM-bound one-rank H100 step the FP8 run is faster
// than bf16 by what the GEMM-rate ratio predicts once the work FP8 does not speed up and the
// casts it adds are counted, derived by hand below (docs/accounting.md "FP8",
// docs/cost-model.md "fp8_gemm"). Every simulation runs in a forked child.
#include <gtest/gtest.h>

#include <vector>

#include "profiler/roofline.hpp"
#include "results/report.hpp"
#include "sim/simulate.hpp"
#include "sim_test_util.hpp"
#include "tests/strategies/test_models.hpp"

namespace strata::sim {
namespace {

const std::string kRoot = STRATA_SOURCE_DIR;

// One GPT-3-sized layer (h 12288, 96 heads, s 2048, GELU, fused attention) with a 1024-entry
// vocabulary, on one H100 (dgx-h100-128n), bf16, 32 micro-batches of one sample.
//
// By hand, per step, with the bundled efficiencies (bf16 GEMMs 0.78 of 989.4 TFLOP/s = 771.7,
// FP8 GEMMs 0.669 of 1979 = 1323.9, streaming 0.88 of 3.35 TB/s = 2.948 TB/s):
// - GEMMs: 4 linear layers, 24 s h^2 = 7.42e12 FLOPs per pass and micro-batch, 3 passes (forward,
//   data and weight gradients) x 32 = 7.12e14 FLOPs: bf16 0.9232 s, FP8 0.5381 s, plus the
//   per-GEMM fall-off (384 GEMMs x 2.4e9 or 5.3e9 FLOPs: 1.2 ms, 1.5 ms). The GEMM-rate ratio
//   is 1323.9 / 771.7 = 1.716.
// - Everything else is the same in both: the fused attention core (2 s^2 h = 1.03e11 kernel
//   FLOPs forward, 2.5x backward, at 0.331 of 989.4: 35.5 ms), AdamW over 1.85e9 parameters x
//   28 bytes (17.6 ms), the three norms (9.0 ms), GELU and residual adds in the GEMM blocks
//   (18 ms), the head and the embedding (9.4 ms): the bf16 step is about 1.015 s, 91% GEMMs.
// - FP8 adds casts at the streaming rate: per micro-batch the out-projection and fc2 inputs and
//   the four output gradients, each read in bf16 and written twice in FP8 (4 bytes per element:
//   s (h + 4h + 3h + h + 4h + h) = 14 s h elements, 1409 MB, 478 us), the two norm outputs
//   transposed (2 bytes per element, 34 us), 8 launches (32 us); once per step the four weights
//   (12 h^2 elements x 4 bytes = 7.25 GB, 2.46 ms): 19.9 ms in all. The norms that feed the
//   FP8 GEMMs write 1 byte instead of 2: 0.5 ms less.
// So the step saves (0.9232 + 0.0012) - (0.5381 + 0.0015) - 0.0199 + 0.0005 = 0.3654 s (the
// FP8 tasks are priced op by op, one launch per op: up to 1.3 ms more, within the tolerance),
// and the speedup is 1.015 / (1.015 - 0.3654) = 1.562: less than the GEMM-rate ratio 1.716, as
// Amdahl's law with 9% unchanged work and the casts says.
TEST(Fp8Step, GemmBoundStepIsFasterByTheGemmRateRatioLessTheCasts) {
  const profiler::RooflineCostModel cost(
      profiler::load_efficiencies(profiler::default_efficiencies_path()));
  const auto cluster = strategies::load_cluster(kRoot + "/configs/clusters/dgx-h100-128n.json");
  const auto m = strategies::testing::gpt(1, 12288, 96, 1024, 2048);
  auto s = strategies::testing::strategy(1, 1, 1, 1, 32);
  s.precision = strategies::Precision::kBf16;
  s.attention = strategies::AttentionImpl::kFused;
  std::vector<double> step_s;
  for (auto f : {strategies::Fp8Format::kNone, strategies::Fp8Format::kHybrid}) {
    s.fp8 = f;
    const strategies::Plan plan = strategies::lower(m, cluster, s, 1);
    const auto r = testing::in_child([&] {
      const results::Report rep = simulate(plan, cost);
      return std::vector<double>{rep.step_time_s};
    });
    ASSERT_EQ(r.size(), 1u);
    step_s.push_back(r[0]);
  }
  const double bf16 = step_s[0], fp8 = step_s[1];
  EXPECT_NEAR(bf16, 1.015, 0.005);
  EXPECT_NEAR(bf16 - fp8, 0.3654, 0.0015);
  EXPECT_NEAR(bf16 / fp8, 1.562, 0.01);
  EXPECT_LT(bf16 / fp8, (0.669 * 1979) / (0.78 * 989.4));
}

}  // namespace
}  // namespace strata::sim
