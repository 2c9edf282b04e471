// The compute face of the CostModel: op_seconds of each kind of op against a hand computation
// from the device spec and the efficiency table; the op key; the default task price (the sum of
// its ops); and, for every compute task of the golden plans, the roofline's task price against
// the documented formula recomputed here from the task's FLOPs and bytes (docs/cost-model.md).
#include "profiler/cost_model.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include "profiler/roofline.hpp"
#include "strategies/plan.hpp"
#include "test_tables.hpp"

namespace strata::profiler {
namespace {

using json::Json;
using strategies::DType;
using strategies::Op;
using strategies::OpKind;
using strategies::Phase;
using strategies::Precision;
using testing::table_json;
using testing::test_gpu;

constexpr double kOverhead = 2e-6;   // launch_overhead_us 2 in test_tables.hpp
constexpr double kPeak = 100e12;     // test_gpu(): bf16 FLOP/s
constexpr double kBandwidth = 1e12;  // test_gpu(): bytes/s

// The test table, "test_gpu" class: gemm forward (0.5 FLOP, 0.8 memory), backward (0.25, 0.5),
// half_efficiency_flops 1e9; norm memory 0.4 forward, 0.3 backward; embedding memory 0.7;
// optimizer memory 0.6; attention_core FLOP 0.1.
RooflineCostModel test_model() {
  Json j = table_json();
  Json& ops = j["devices"][0]["ops"];
  ops["gemm"]["backward_flop_efficiency"] = 0.25;
  ops["gemm"]["backward_memory_efficiency"] = 0.5;
  ops["gemm"]["half_efficiency_flops"] = 1e9;
  ops["norm"]["memory_efficiency"] = 0.4;
  ops["norm"]["backward_memory_efficiency"] = 0.3;
  ops["embedding"]["memory_efficiency"] = 0.7;
  ops["optimizer"]["memory_efficiency"] = 0.6;
  ops["attention_core"]["flop_efficiency"] = 0.1;
  return RooflineCostModel(parse_efficiencies(j));
}

Op op(OpKind kind, std::array<std::int64_t, 6> dims, DType dtype = DType::kBf16,
      std::uint8_t flags = 0) {
  Op o;
  o.kind = kind;
  o.dtype = dtype;
  o.flags = flags;
  o.dims = dims;
  return o;
}

double seconds(const Op& o) { return test_model().op_seconds(o, test_gpu(), Precision::kBf16); }

TEST(OpSeconds, LinearForwardIsOneGemmAtTheGemmClass) {
  // (M x K) . (K x N), bf16: 2 M K N FLOPs; the three matrices once each, 2 bytes an element.
  const double M = 2048, K = 4096, N = 1024;
  const double flops = 2 * M * K * N;                    // 1.72e10
  const double bytes = 2 * (M * K + K * N + M * N);      // 25.2 MB
  const double compute = (flops + 1e9) / (kPeak * 0.5);  // one GEMM's fall-off
  const double memory = bytes / (kBandwidth * 0.8);
  ASSERT_GT(compute, memory);
  EXPECT_DOUBLE_EQ(seconds(op(OpKind::kLinear, {2048, 4096, 1024, 0, 0, 0})), compute + kOverhead);
}

TEST(OpSeconds, LinearBackwardDataUsesTheBackwardEfficiencies) {
  const double M = 2048, K = 4096, N = 1024;
  const double compute = (2 * M * K * N + 1e9) / (kPeak * 0.25);
  EXPECT_DOUBLE_EQ(seconds(op(OpKind::kLinearBwdData, {2048, 4096, 1024, 0, 0, 0})),
                   compute + kOverhead);
  EXPECT_DOUBLE_EQ(seconds(op(OpKind::kLinearBwdWeight, {2048, 4096, 1024, 0, 0, 0})),
                   compute + kOverhead);
  // A skinny one is memory-bound: its bytes at the backward memory efficiency (0.5).
  const double m = 1 << 20, k = 64, n = 64;
  const double bytes = 2 * (m * k + k * n + m * n);
  ASSERT_GT(bytes / (kBandwidth * 0.5), (2 * m * k * n + 1e9) / (kPeak * 0.25));
  EXPECT_DOUBLE_EQ(seconds(op(OpKind::kLinearBwdData, {1 << 20, 64, 64, 0, 0, 0})),
                   bytes / (kBandwidth * 0.5) + kOverhead);
}

TEST(OpSeconds, NormStreamsAtTheNormClass) {
  // LayerNorm forward of R x C bf16: read x, write y; backward: read dy and x, write dx.
  const double R = 4096, C = 1024;
  EXPECT_DOUBLE_EQ(seconds(op(OpKind::kLayerNorm, {4096, 1024, 0, 0, 0, 0})),
                   2 * 2 * R * C / (kBandwidth * 0.4) + kOverhead);
  EXPECT_DOUBLE_EQ(seconds(op(OpKind::kRmsNormBwd, {4096, 1024, 0, 0, 0, 0})),
                   3 * 2 * R * C / (kBandwidth * 0.3) + kOverhead);
}

TEST(OpSeconds, ElementwiseOpsStreamAtTheNormRateWithOneLaunch) {
  // GELU over N x F bf16: read the input, write the output; one kernel, one launch.
  const double N = 4096, F = 4096;
  EXPECT_DOUBLE_EQ(seconds(op(OpKind::kGelu, {4096, 4096, 0, 0, 0, 0})),
                   2 * N * (F + F) / (kBandwidth * 0.4) + kOverhead);
  // Its backward reads dy and x, writes dx, in the backward pass.
  EXPECT_DOUBLE_EQ(seconds(op(OpKind::kGeluBwd, {4096, 4096, 0, 0, 0, 0})),
                   2 * N * (F + 2 * F) / (kBandwidth * 0.3) + kOverhead);
  // Bias-dropout-add: branch and residual read, sum written, and the 1-byte mask.
  EXPECT_DOUBLE_EQ(seconds(op(OpKind::kResidualAdd, {4096, 1024, 0, 0, 0, 0}, DType::kBf16,
                              strategies::kDropout)),
                   4096.0 * 1024 * (3 * 2 + 1) / (kBandwidth * 0.4) + kOverhead);
  // Gradient accumulation (a forward-pass kind): read the bf16 gradient, read and write fp32.
  Op acc = op(OpKind::kGradAccumulate, {1 << 20, 4, 0, 0, 0, 0});
  EXPECT_DOUBLE_EQ(seconds(acc), (1 << 20) * (2.0 + 2 * 4) / (kBandwidth * 0.4) + kOverhead);
}

TEST(OpSeconds, AdamWStreamsAtTheOptimizerClass) {
  // 1M elements partitioned over 4 ranks: 262144 elements, each reading and writing 12 bytes of
  // fp32 state (master and both moments), reading a 4-byte gradient, writing 2-byte weights.
  const Op adam =
      op(OpKind::kAdamW, {1 << 20, 4, 4, 12, 0, 0}, DType::kBf16, strategies::kPartitioned);
  const double bytes = 262144.0 * (2 * 12 + 4 + 2);
  EXPECT_DOUBLE_EQ(seconds(adam), bytes / (kBandwidth * 0.6) + kOverhead);
}

TEST(OpSeconds, OtherKindsTheirClasses) {
  // Embedding: rows gathered and written at the embedding class.
  EXPECT_DOUBLE_EQ(seconds(op(OpKind::kEmbedding, {4096, 1024, 50304, 1024, 0, 0})),
                   2 * 2 * 4096.0 * 1024 / (kBandwidth * 0.7) + kOverhead);
  // Softmax statistics: the fp32 logits at gemm's memory efficiency, as in the lm_head task.
  EXPECT_DOUBLE_EQ(seconds(op(OpKind::kSoftmaxStats, {4096, 50304, 0, 0, 0, 0}, DType::kFp32)),
                   4 * 4096.0 * 50304 / (kBandwidth * 0.8) + kOverhead);
  EXPECT_DOUBLE_EQ(seconds(op(OpKind::kCrossEntropyBwd, {4096, 50304, 0, 0, 0, 0}, DType::kFp32)),
                   4 * 4096.0 * 50304 / (kBandwidth * 0.5) + kOverhead);
  // Attention (B 4, T 2048, C 1024, 16 heads): 4 T s C FLOPs at the attention_core class.
  const double attention_flops = 4.0 * (4 * 2048) * 2048 * 1024;
  EXPECT_DOUBLE_EQ(seconds(op(OpKind::kAttention, {4, 2048, 1024, 16, 0, 0})),
                   attention_flops / (kPeak * 0.1) + kOverhead);
  // Loading the batch is host work: no device time.
  EXPECT_EQ(seconds(op(OpKind::kLoadBatch, {4, 2048, 0, 16, 0, 0}, DType::kInt32)), 0);
}

TEST(OpSeconds, KindsMapToTheirClassesAndPasses) {
  EXPECT_EQ(op_kind_class(OpKind::kLinearBwdWeight), OpClass::kGemm);
  EXPECT_EQ(op_kind_class(OpKind::kAttentionBwd), OpClass::kAttentionCore);
  EXPECT_EQ(op_kind_class(OpKind::kRmsNorm), OpClass::kNorm);
  EXPECT_EQ(op_kind_class(OpKind::kSwiglu), OpClass::kNorm);
  EXPECT_EQ(op_kind_class(OpKind::kEmbeddingBwd), OpClass::kEmbedding);
  EXPECT_EQ(op_kind_class(OpKind::kAdamW), OpClass::kOptimizer);
  EXPECT_EQ(op_kind_class(OpKind::kCrossEntropyBwd), OpClass::kGemm);
  EXPECT_EQ(op_kind_phase(OpKind::kLinearBwdData), Phase::kBackward);
  EXPECT_EQ(op_kind_phase(OpKind::kResidualAddBwd), Phase::kBackward);
  EXPECT_EQ(op_kind_phase(OpKind::kGradAccumulate), Phase::kForward);
  EXPECT_EQ(op_kind_phase(OpKind::kAdamW), Phase::kForward);
  EXPECT_DEATH(op_kind_class(OpKind::kAllReduce), "not a device kernel");
}

TEST(OpKey, HoldsWhatChangesTheWorkOnly) {
  Op a = op(OpKind::kLinear, {2048, 4096, 1024, 0, 0, 0});
  a.n_in = 2;
  a.n_out = 1;
  Op b = a;
  b.operands = 17;                            // other buffers
  b.group.kind = strategies::GroupKind::kTp;  // another group
  b.param = 1e-5f;
  EXPECT_EQ(op_key(a), op_key(b));
  EXPECT_EQ(OpKeyHash{}(op_key(a)), OpKeyHash{}(op_key(b)));
  std::unordered_set<OpKey, OpKeyHash> table = {op_key(a)};
  for (auto change : std::vector<void (*)(Op&)>{
           [](Op& o) { o.dims[2] = 2048; }, [](Op& o) { o.dtype = DType::kFp32; },
           [](Op& o) { o.flags = strategies::kDropout; }, [](Op& o) { o.n_in = 3; },
           [](Op& o) { o.kind = OpKind::kLinearBwdData; }}) {
    Op c = a;
    change(c);
    EXPECT_NE(op_key(c), op_key(a));
    EXPECT_EQ(table.count(op_key(c)), 0u);
  }
}

// A model that prices only ops: its tasks cost the sum of their ops (CostModel's default).
class PerOp final : public CostModel {
 public:
  double op_seconds(const Op& o, const strategies::DeviceSpec&, Precision) const override {
    return static_cast<double>(o.dims[0]) * 1e-6;
  }
  LinkEfficiencies link_efficiencies() const override { return {}; }
  double collective_seconds(strategies::CollectiveKind, const std::vector<int>&, double,
                            const strategies::ClusterSpec&) const override {
    return 0;
  }
  std::string name() const override { return "per-op"; }
};

TEST(CostModelDefault, ATaskCostsTheSumOfItsOps) {
  strategies::Program p;
  for (std::int64_t n : {5, 7, 11, 13}) p.ops.push_back(op(OpKind::kGelu, {n, 1, 0, 0, 0, 0}));
  strategies::Task t;
  t.op_begin = 1;
  t.op_count = 2;
  EXPECT_DOUBLE_EQ(PerOp().compute_seconds(p, t, test_gpu(), Precision::kBf16), 18e-6);
}

// ---- the roofline's task price on the golden plans -----------------------------------------

const std::string kGolden = std::string(STRATA_SOURCE_DIR) + "/tests/golden/specs/";

strategies::Plan golden_plan(const std::string& strategy, int gpus) {
  return strategies::lower(strategies::load_model(kGolden + "gpt-golden.json"),
                           strategies::load_cluster(kGolden + "dgx-a100-2n4g.json"),
                           strategies::load_strategy(kGolden + strategy + ".json"), gpus);
}

// docs/cost-model.md "The model", written out again from the table's numbers.
double documented_task_seconds(const Efficiencies& table, const strategies::Task& t,
                               const strategies::DeviceSpec& device, Precision precision) {
  const DeviceClass& dc = table.device_class(device);
  const OpEfficiency& e = dc.op(table.op_class(t.block));
  const bool backward = t.phase == Phase::kBackward;
  const double peak = device.peak_flops(dc.compute_precision.value_or(precision));
  const double bw = device.memory_bandwidth_Bps;
  const double compute_s = t.flops > 0 ? (t.flops + (backward ? 2 : 1) * e.half_efficiency_flops) /
                                             (peak * (backward ? e.flop_backward : e.flop_forward))
                                       : 0;
  const double memory_s = t.bytes / (bw * (backward ? e.memory_backward : e.memory_forward));
  const OpEfficiency& norm = dc.op(OpClass::kNorm);
  const double elementwise_s =
      t.elementwise_bytes / (bw * (backward ? norm.memory_backward : norm.memory_forward));
  const double launches = t.elementwise_bytes > 0 ? 2 : 1;
  return std::max(compute_s, memory_s) + elementwise_s + launches * dc.launch_overhead_s;
}

TEST(RooflineTaskPrice, GoldenPlansPriceEveryComputeTaskByTheDocumentedFormula) {
  const RooflineCostModel m(load_efficiencies(default_efficiencies_path()));
  int tasks = 0, one_kernel_tasks = 0;
  for (const auto& [strategy, gpus] :
       std::vector<std::pair<std::string, int>>{{"dp4", 4},
                                                {"tp4-sp", 4},
                                                {"tp2-pp2-gpipe", 4},
                                                {"pp4-interleaved", 4},
                                                {"dp8-zero3", 8},
                                                {"dp2-tp2-pp2-1f1b", 8}}) {
    const strategies::Plan plan = golden_plan(strategy, gpus);
    const Precision precision = plan.strategy.precision;
    for (const strategies::Program& p : plan.programs) {
      const strategies::DeviceSpec& device = plan.cluster.group_of_gpu(0).gpu;
      for (const strategies::Task& t : p.tasks) {
        if (t.kind != strategies::TaskKind::kCompute) continue;
        ++tasks;
        const double s = m.compute_seconds(p, t, device, precision);
        EXPECT_DOUBLE_EQ(s, documented_task_seconds(m.efficiencies(), t, device, precision))
            << strategy << " " << plan.task_name(t);
        // Where a forward task is one kernel of its block's class plus at most one element-wise
        // kernel, the two faces agree: the task is the sum of its ops.
        int kernels = 0, elementwise = 0;
        bool same_class = true;
        double sum = 0;
        for (std::uint32_t i = 0; i < t.op_count; ++i) {
          const Op& o = p.ops_of(t)[i];
          sum += m.op_seconds(o, device, precision);
          if (o.kind == OpKind::kLoadBatch) continue;
          const strategies::OpCost c = strategies::op_cost(o);
          if (c.elementwise_bytes > 0) {
            ++elementwise;
          } else {
            ++kernels;
            same_class = same_class && op_kind_class(o.kind) == m.efficiencies().op_class(t.block);
          }
        }
        if (t.phase != Phase::kBackward && kernels == 1 && elementwise <= 1 && same_class) {
          ++one_kernel_tasks;
          EXPECT_NEAR(sum / s, 1.0, 1e-12) << strategy << " " << plan.task_name(t);
        }
      }
    }
  }
  EXPECT_GT(tasks, 1000);
  EXPECT_GT(one_kernel_tasks, 100);
}

}  // namespace
}  // namespace strata::profiler
