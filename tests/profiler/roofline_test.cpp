// RooflineCostModel: exact arithmetic on hand-made tasks and tables (the larger term wins, phases,
// precisions, small-GEMM fall-off, launch overhead), then the bundled table on sizes computed by
// hand: a GPT-3 175B attn_qkv forward on A100 and a LayerNorm on H100.
#include "profiler/roofline.hpp"

#include <gtest/gtest.h>

#include <map>

#include <cmath>
#include <memory>
#include <string>

#include "common/error.hpp"
#include "strategies/plan.hpp"
#include "test_tables.hpp"
#include "tests/strategies/expect_config_error.hpp"

namespace strata::profiler {
namespace {

using json::Json;
using strategies::Block;
using strategies::Phase;
using strategies::Precision;
using strategies::Task;
using testing::table_json;
using testing::test_gpu;

const std::string kRoot = STRATA_SOURCE_DIR;
constexpr double kOverhead = 2e-6;  // launch_overhead_us 2 in test_tables.hpp
// The roofline prices a task from its FLOP and byte sums: the program (its ops) is not read.
const strategies::Program kNoProgram;

Task task(Block block, Phase phase, double flops, double bytes) {
  Task t;
  t.block = block;
  t.phase = phase;
  t.flops = flops;
  t.bytes = bytes;
  return t;
}

// The test table with the GEMM class of "test_gpu" at forward (0.5 FLOP, 0.8 memory) and
// backward (0.25, 0.5), the norm class at memory 0.4.
RooflineCostModel test_model(double half_efficiency_flops = 0) {
  Json j = table_json();
  Json& gemm = j["devices"][0]["ops"]["gemm"];
  gemm["backward_flop_efficiency"] = 0.25;
  gemm["backward_memory_efficiency"] = 0.5;
  gemm["half_efficiency_flops"] = half_efficiency_flops;
  j["devices"][0]["ops"]["norm"]["memory_efficiency"] = 0.4;
  return RooflineCostModel(parse_efficiencies(j));
}

TEST(Roofline, ComputeTermWinsWhenLarger) {
  const RooflineCostModel m = test_model();
  const Task t = task(Block::kMlpFc1, Phase::kForward, 1e12, 1e9);
  const RooflineTerms terms = m.terms(t, test_gpu(), Precision::kBf16);
  EXPECT_DOUBLE_EQ(terms.compute_s, 1e12 / (100e12 * 0.5));  // 20 ms
  EXPECT_DOUBLE_EQ(terms.memory_s, 1e9 / (1e12 * 0.8));      // 1.25 ms
  EXPECT_DOUBLE_EQ(terms.overhead_s, kOverhead);
  EXPECT_FALSE(terms.memory_bound());
  EXPECT_DOUBLE_EQ(m.compute_seconds(kNoProgram, t, test_gpu(), Precision::kBf16),
                   0.02 + kOverhead);
}

TEST(Roofline, MemoryTermWinsWhenLarger) {
  const RooflineCostModel m = test_model();
  const Task t = task(Block::kMlpFc2, Phase::kForward, 1e12, 1e11);
  const RooflineTerms terms = m.terms(t, test_gpu(), Precision::kBf16);
  EXPECT_TRUE(terms.memory_bound());
  EXPECT_DOUBLE_EQ(m.compute_seconds(kNoProgram, t, test_gpu(), Precision::kBf16),
                   1e11 / (1e12 * 0.8) + kOverhead);  // 125 ms, not 20 ms
}

TEST(Roofline, ElementwiseKernelsAddAfterTheMainKernel) {
  // A GEMM block with a bias-activation kernel after it: the GEMM's roofline time, plus the
  // element-wise bytes at the norm class's streaming efficiency, plus a second launch.
  const RooflineCostModel m = test_model();
  Task t = task(Block::kMlpFc1, Phase::kForward, 1e12, 1e9);
  t.elementwise_bytes = 2e9;
  const RooflineTerms terms = m.terms(t, test_gpu(), Precision::kBf16);
  EXPECT_DOUBLE_EQ(terms.compute_s, 1e12 / (100e12 * 0.5));
  EXPECT_DOUBLE_EQ(terms.elementwise_s, 2e9 / (1e12 * 0.4));  // 5 ms, not hidden under 20 ms
  EXPECT_DOUBLE_EQ(terms.overhead_s, 2 * kOverhead);
  EXPECT_DOUBLE_EQ(m.compute_seconds(kNoProgram, t, test_gpu(), Precision::kBf16),
                   0.02 + 0.005 + 2 * kOverhead);
}

TEST(Roofline, BackwardUsesBackwardEfficiencies) {
  const RooflineCostModel m = test_model();
  const Task compute = task(Block::kAttnQkv, Phase::kBackward, 2e12, 1e9);
  EXPECT_DOUBLE_EQ(m.compute_seconds(kNoProgram, compute, test_gpu(), Precision::kBf16),
                   2e12 / (100e12 * 0.25) + kOverhead);
  const Task memory = task(Block::kAttnQkv, Phase::kBackward, 1e9, 1e11);
  EXPECT_DOUBLE_EQ(m.compute_seconds(kNoProgram, memory, test_gpu(), Precision::kBf16),
                   1e11 / (1e12 * 0.5) + kOverhead);
}

TEST(Roofline, RecomputeAndStepUseForwardEfficiencies) {
  const RooflineCostModel m = test_model();
  for (Phase p : {Phase::kForward, Phase::kRecompute, Phase::kStep, Phase::kNone}) {
    EXPECT_DOUBLE_EQ(m.compute_seconds(kNoProgram, task(Block::kLmHead, p, 1e12, 0), test_gpu(),
                                       Precision::kBf16),
                     0.02 + kOverhead)
        << strategies::phase_name(p);
  }
}

TEST(Roofline, BlockSelectsItsOpClass) {
  const RooflineCostModel m = test_model();
  // Same bytes: the norm class (0.4) takes twice the GEMM class (0.8).
  const double gemm =
      m.terms(task(Block::kAttnOut, Phase::kForward, 0, 1e9), test_gpu(), Precision::kBf16)
          .memory_s;
  const double norm =
      m.terms(task(Block::kFinalNorm, Phase::kForward, 0, 1e9), test_gpu(), Precision::kBf16)
          .memory_s;
  EXPECT_DOUBLE_EQ(gemm, 1e9 / (1e12 * 0.8));
  EXPECT_DOUBLE_EQ(norm, 1e9 / (1e12 * 0.4));
}

TEST(Roofline, PrecisionSelectsThePeak) {
  const RooflineCostModel m = test_model();
  const Task t = task(Block::kMlpFc1, Phase::kForward, 1e12, 0);
  EXPECT_DOUBLE_EQ(m.compute_seconds(kNoProgram, t, test_gpu(), Precision::kFp32),
                   1e12 / (10e12 * 0.5) + kOverhead);
  EXPECT_DOUBLE_EQ(m.compute_seconds(kNoProgram, t, test_gpu(), Precision::kFp16),
                   1e12 / (100e12 * 0.5) + kOverhead);
}

TEST(Roofline, ComputePrecisionOfTheDeviceClassOverridesTheStrategys) {
  Json j = table_json();
  j["devices"][2]["compute_precision"] = "fp32";
  const RooflineCostModel m(parse_efficiencies(j));
  strategies::DeviceSpec cpu = test_gpu("a CPU core");
  cpu.kind = strategies::DeviceKind::kCpu;
  const Task t = task(Block::kMlpFc1, Phase::kForward, 1e12, 0);
  EXPECT_DOUBLE_EQ(m.compute_seconds(kNoProgram, t, cpu, Precision::kBf16),
                   1e12 / (10e12 * 0.5) + kOverhead);
}

TEST(Roofline, SmallGemmFallOff) {
  const RooflineCostModel m = test_model(/*half_efficiency_flops=*/1e9);
  // A 1 GFLOP forward GEMM runs at half the efficiency: 1e9 / (100e12 * 0.5 * 0.5).
  EXPECT_DOUBLE_EQ(
      m.terms(task(Block::kMlpFc1, Phase::kForward, 1e9, 0), test_gpu(), Precision::kBf16)
          .compute_s,
      2e9 / (100e12 * 0.5));
  // A 2 GFLOP backward task is two 1 GFLOP GEMMs, each at half the backward efficiency.
  EXPECT_DOUBLE_EQ(
      m.terms(task(Block::kMlpFc1, Phase::kBackward, 2e9, 0), test_gpu(), Precision::kBf16)
          .compute_s,
      4e9 / (100e12 * 0.25));
  // Large GEMMs are unaffected to within 1e-6.
  const double large =
      m.terms(task(Block::kMlpFc1, Phase::kForward, 1e15, 0), test_gpu(), Precision::kBf16)
          .compute_s;
  EXPECT_NEAR(large / (1e15 / (100e12 * 0.5)), 1.0, 1e-6);
}

TEST(Roofline, FallOffIsAFixedTimePerGemmWhateverThePrecision) {
  // The fall-off was measured on 16-bit tensor-core GEMMs: h / (bf16 peak x eff) per GEMM. An
  // fp32 task on the same GPU pays that same time, not h at the 10x slower fp32 peak (which made
  // fp32 plans on GPUs absurdly slow: tiny-dp2 on an A100 at 0.07% MFU).
  const RooflineCostModel m = test_model(/*half_efficiency_flops=*/1e9);
  const double falloff_s = 1e9 / (100e12 * 0.5);
  EXPECT_DOUBLE_EQ(
      m.terms(task(Block::kMlpFc1, Phase::kForward, 1e9, 0), test_gpu(), Precision::kFp32)
          .compute_s,
      1e9 / (10e12 * 0.5) + falloff_s);
  EXPECT_DOUBLE_EQ(
      m.terms(task(Block::kMlpFc1, Phase::kForward, 1e9, 0), test_gpu(), Precision::kBf16)
          .compute_s,
      1e9 / (100e12 * 0.5) + falloff_s);
}

TEST(Roofline, EmptyTaskCostsTheLaunchOverhead) {
  const RooflineCostModel m = test_model();
  EXPECT_DOUBLE_EQ(m.compute_seconds(kNoProgram, task(Block::kOptimizer, Phase::kStep, 0, 0),
                                     test_gpu(), Precision::kBf16),
                   kOverhead);
}

TEST(Roofline, MissingPeakIsAConfigError) {
  const RooflineCostModel m = test_model();
  strategies::DeviceSpec d = test_gpu();
  d.memory_bandwidth_Bps = 0;
  strategies::testing::expect_config_error(
      [&] {
        m.compute_seconds(kNoProgram, task(Block::kAttnNorm, Phase::kForward, 0, 1e6), d,
                          Precision::kBf16);
      },
      {"device \"TestGPU-80GB\"", "memory_bandwidth = 0", "attn_norm"});
  d = test_gpu();
  d.peak_fp32_flops = 0;
  strategies::testing::expect_config_error(
      [&] {
        m.compute_seconds(kNoProgram, task(Block::kMlpFc1, Phase::kForward, 1e9, 0), d,
                          Precision::kFp32);
      },
      {"peak_tflops.fp32 = 0", "mlp_fc1"});
}

// A program of one compute task holding `ops` (a backward task unless `forward`), its sums
// from op_cost as the lowering sets them.
struct OneTask {
  strategies::Program program;
  Task task;
};
OneTask one_task(const std::vector<strategies::Op>& ops, bool forward) {
  OneTask o;
  o.task.block = Block::kMlpFc1;
  o.task.phase = forward ? Phase::kForward : Phase::kBackward;
  o.task.op_count = static_cast<std::uint32_t>(ops.size());
  for (const strategies::Op& op : ops) {
    const strategies::OpCost c = strategies::op_cost(op);
    o.task.flops += c.flops;
    o.task.bytes += c.bytes;
    o.task.elementwise_bytes += c.elementwise_bytes;
    o.program.ops.push_back(op);
  }
  return o;
}
strategies::Op linear(strategies::OpKind kind, float comm_sms = 0) {
  strategies::Op op;
  op.kind = kind;
  op.dtype = strategies::DType::kBf16;
  op.dims = {1024, 1024, 1024, 0, 0, 0};
  op.param = comm_sms;
  return op;
}

TEST(Roofline, TpCommOverlapStretchesAGemmBySmShare) {
  // tp_comm_overlap: a GEMM beside communication kernels that hold 16 of 132 SMs runs on 116;
  // its FLOP term is 132/116 of the GEMM alone, with and without the fall-off.
  const RooflineCostModel m = test_model(/*half_efficiency_flops=*/1e9);
  strategies::DeviceSpec d = test_gpu();
  d.sms = 132;
  const auto alone = one_task({linear(strategies::OpKind::kLinear)}, true);
  const auto beside = one_task({linear(strategies::OpKind::kLinear, 16)}, true);
  const double f = 2.0 * 1024 * 1024 * 1024;
  const double gemm_s = (f + 1e9) / (100e12 * 0.5);
  EXPECT_DOUBLE_EQ(m.compute_seconds(alone.program, alone.task, d, Precision::kBf16),
                   gemm_s + kOverhead);
  EXPECT_DOUBLE_EQ(m.compute_seconds(beside.program, beside.task, d, Precision::kBf16),
                   gemm_s * 132.0 / 116.0 + kOverhead);
  EXPECT_DOUBLE_EQ(m.op_terms(beside.program.ops[0], d, Precision::kBf16).compute_s,
                   gemm_s * 132.0 / 116.0);
  // A CPU has no SMs to share.
  strategies::DeviceSpec cpu = d;
  cpu.kind = strategies::DeviceKind::kCpu;
  cpu.name = "TestCPU";
  EXPECT_DOUBLE_EQ(m.op_terms(beside.program.ops[0], cpu, Precision::kBf16).compute_s,
                   m.op_terms(alone.program.ops[0], cpu, Precision::kBf16).compute_s);
  // Without the device's SM count, or with no SM left, the price is refused.
  d.sms = 0;
  strategies::testing::expect_config_error(
      [&] { m.compute_seconds(beside.program, beside.task, d, Precision::kBf16); },
      {"device \"TestGPU-80GB\"", "sms is not given", "tp_comm_overlap"});
  d.sms = 16;
  strategies::testing::expect_config_error(
      [&] { m.compute_seconds(beside.program, beside.task, d, Precision::kBf16); },
      {"strategy.tp_comm_overlap_sms = 16", "16 SMs"});
}

TEST(Roofline, FallOffCountsTheGemmsATaskHolds) {
  // A backward task with both GEMMs of a linear layer pays two fall-offs (the default for a
  // backward block); a ring chunk of tp_comm_overlap with only the data gradient pays one.
  const RooflineCostModel m = test_model(/*half_efficiency_flops=*/1e9);
  const double f = 2.0 * 1024 * 1024 * 1024;
  const auto both = one_task({linear(strategies::OpKind::kLinearBwdData),
                              linear(strategies::OpKind::kLinearBwdWeight)}, false);
  const auto data = one_task({linear(strategies::OpKind::kLinearBwdData)}, false);
  EXPECT_DOUBLE_EQ(m.compute_seconds(both.program, both.task, test_gpu(), Precision::kBf16),
                   (2 * f + 2e9) / (100e12 * 0.25) + kOverhead);
  EXPECT_DOUBLE_EQ(m.compute_seconds(data.program, data.task, test_gpu(), Precision::kBf16),
                   (f + 1e9) / (100e12 * 0.25) + kOverhead);
}

TEST(Roofline, IsACostModel) {
  const std::unique_ptr<CostModel> m = std::make_unique<RooflineCostModel>(test_model());
  EXPECT_EQ(m->name(), "roofline");
  EXPECT_DOUBLE_EQ(m->compute_seconds(kNoProgram, task(Block::kMlpFc1, Phase::kForward, 1e12, 1e9),
                                      test_gpu(), Precision::kBf16),
                   0.02 + kOverhead);
}

// ---- the bundled table on sizes computed by hand ----------------------------------------------

RooflineCostModel bundled_model() {
  return RooflineCostModel(load_efficiencies(default_efficiencies_path()));
}

strategies::DeviceSpec bundled_device(const std::string& cluster) {
  return strategies::load_cluster(kRoot + "/configs/clusters/" + cluster + ".json")
      .node_groups[0]
      .gpu;
}

TEST(RooflineBundled, Gpt3AttnQkvForwardOnA100) {
  // GPT-3 175B (h = 12288), tp = 8, one micro-batch of 1 x 2048 tokens, bf16:
  // Y (T x 3h/8) = X (T x h) . W (h x 3h/8).
  const double T = 2048, h = 12288, n = 3 * h / 8;
  const double flops = 2 * T * h * n;                // 2.32e11
  const double bytes = 2 * (T * h + h * n + T * n);  // 182 MB
  const Task t = task(Block::kAttnQkv, Phase::kForward, flops, bytes);
  const strategies::DeviceSpec a100 = bundled_device("dgx-a100-128n");
  const RooflineCostModel m = bundled_model();
  const RooflineTerms terms = m.terms(t, a100, Precision::kBf16);
  // Arithmetic intensity 1271 FLOP/B, far above A100's ridge (312e12 / 2.039e12 = 153).
  EXPECT_FALSE(terms.memory_bound());
  // At 100% of 312 TFLOP/s it would take 0.743 ms; large bf16 cuBLAS GEMMs on A100 reach
  // 60-90% of peak, so between 0.83 and 1.24 ms.
  const double ideal_s = flops / 312e12;
  const double s = m.compute_seconds(kNoProgram, t, a100, Precision::kBf16);
  EXPECT_GT(s, ideal_s / 0.9);
  EXPECT_LT(s, ideal_s / 0.6);
  EXPECT_NEAR(ideal_s, 0.743e-3, 0.001e-3);
}

TEST(RooflineBundled, Gpt3AttnQkvMatchesThePlansTask) {
  // The hand-made task above is the Plan's: same FLOPs for the first attn_qkv forward.
  const auto model = strategies::load_model(kRoot + "/configs/models/gpt3-175b.json");
  const auto cluster = strategies::load_cluster(kRoot + "/configs/clusters/dgx-a100-128n.json");
  const auto strategy =
      strategies::load_strategy(kRoot + "/configs/strategies/gpt3-175b-tp8-pp8-dp16.json");
  const strategies::Plan plan = strategies::lower(model, cluster, strategy, 1024);
  ASSERT_EQ(strategy.micro_batch_size, 1);
  const RooflineCostModel m = bundled_model();
  bool found = false;
  for (const strategies::Task& t : plan.programs[0].tasks) {
    if (t.kind != strategies::TaskKind::kCompute) continue;
    const double s = m.compute_seconds(plan.programs[0], t, plan.cluster.node_groups[0].gpu,
                                       Precision::kBf16);
    EXPECT_TRUE(std::isfinite(s) && s > 0) << plan.task_name(t);
    if (!found && t.block == Block::kAttnQkv && t.phase == Phase::kForward) {
      EXPECT_NEAR(t.flops / (2.0 * 2048 * 12288 * 4608), 1.0, 1e-12);
      found = true;
    }
  }
  EXPECT_TRUE(found);
}

TEST(RooflineBundled, FusedAttentionIsTimedWithFlashAttentionsFlopCount) {
  // GPT-3 175B, tp 8 (12 heads of 128 per rank), one 2048-token sequence, fused attention on
  // H100: the forward kernel executes the causal half of 4 s^2 d per head, 2 * 2048^2 * 1536 =
  // 1.29e10 FLOPs, at the fused_attention efficiency measured in that same count (FlashAttention-2,
  // 327.9 of 989.4 TFLOP/s): 39.3 us plus one launch; the backward 2.5x the FLOPs. The unfused
  // core runs the whole square at the attention_core efficiency: several times slower.
  const auto model = strategies::load_model(kRoot + "/configs/models/gpt3-175b.json");
  const auto cluster = strategies::load_cluster(kRoot + "/configs/clusters/dgx-h100-128n.json");
  auto strategy =
      strategies::load_strategy(kRoot + "/configs/strategies/gpt3-175b-tp8-pp8-dp16.json");
  strategy.recompute = strategies::Recompute::kNone;
  const RooflineCostModel m = bundled_model();
  const strategies::DeviceSpec& h100 = cluster.node_groups[0].gpu;
  std::map<std::pair<bool, Phase>, double> seconds;
  const auto at = [&](bool fused, Phase ph) { return seconds[std::make_pair(fused, ph)]; };
  for (bool fused : {false, true}) {
    strategy.attention = fused ? strategies::AttentionImpl::kFused : strategies::AttentionImpl::kUnfused;
    const strategies::Plan plan = strategies::lower(model, cluster, strategy, 1024);
    const strategies::Program& p = plan.programs[0];
    for (const strategies::Task& t : p.tasks) {
      if (t.block != Block::kAttnCore || t.layer != 0 || t.micro_batch != 0) continue;
      seconds[std::make_pair(fused, t.phase)] = m.compute_seconds(p, t, h100, Precision::kBf16);
      if (!fused) continue;
      ASSERT_EQ(t.op_count, 1u);
      const strategies::Op& op = p.ops_of(t)[0];
      const double fwd_kernel = 2.0 * 2048 * 2048 * 1536;
      const double kernel = t.phase == Phase::kBackward ? 2.5 * fwd_kernel : fwd_kernel;
      EXPECT_DOUBLE_EQ(strategies::op_cost(op).kernel_flops, kernel);
      EXPECT_NEAR(at(fused, t.phase), kernel / (989.4e12 * 0.331) + 4e-6, 1e-9)
          << strategies::op_kind_name(op.kind);
    }
  }
  ASSERT_EQ(seconds.size(), 4u);  // forward and backward (recompute: none), both ways
  EXPECT_NEAR(at(true, Phase::kForward), 43.3e-6, 0.1e-6);
  for (Phase ph : {Phase::kForward, Phase::kBackward}) {
    EXPECT_GT(at(false, ph) / at(true, ph), 2.0) << strategies::phase_name(ph);
  }
}

TEST(RooflineBundled, LayerNormOnH100IsBandwidthBound) {
  // Forward LayerNorm of 2048 tokens x 12288 (GPT-3), bf16: read x, write y = 2 * 2 * T * h bytes
  // = 100.7 MB and no matmul FLOPs.
  const double bytes = 2.0 * 2 * 2048 * 12288;
  const strategies::DeviceSpec h100 = bundled_device("dgx-h100-128n");
  const RooflineCostModel m = bundled_model();
  const Task t = task(Block::kAttnNorm, Phase::kForward, 0, bytes);
  const RooflineTerms terms = m.terms(t, h100, Precision::kBf16);
  EXPECT_TRUE(terms.memory_bound());
  EXPECT_EQ(terms.compute_s, 0);
  // 30.0 us at the full 3.35 TB/s; a streaming kernel reaches 80-95% of it.
  const double ideal_s = bytes / 3.35e12;
  EXPECT_GT(terms.memory_s, ideal_s / 0.95);
  EXPECT_LT(terms.memory_s, ideal_s / 0.8);
  EXPECT_DOUBLE_EQ(m.compute_seconds(kNoProgram, t, h100, Precision::kBf16),
                   terms.memory_s + terms.overhead_s);
  // Still bandwidth-bound if its element-wise work (about 8 FLOPs per element) were counted.
  const Task with_flops = task(Block::kAttnNorm, Phase::kForward, 8.0 * 2048 * 12288, bytes);
  EXPECT_TRUE(m.terms(with_flops, h100, Precision::kBf16).memory_bound());
}

}  // namespace
}  // namespace strata::profiler
