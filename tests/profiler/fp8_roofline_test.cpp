// FP8 GEMMs in the roofline (strategy fp8): the fp8_gemm efficiency class, optional per device
// class; an FP8 task priced op by op at the FP8 peak, by hand; and the published relation the
// numbers come from: FP8 against BF16 GEMM throughput on H100 (docs/cost-model.md "fp8_gemm").
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "profiler/roofline.hpp"
#include "strategies/plan.hpp"
#include "test_tables.hpp"
#include "tests/strategies/expect_config_error.hpp"

namespace strata::profiler {
namespace {

using json::Json;
using strategies::Block;
using strategies::DType;
using strategies::Op;
using strategies::OpKind;
using strategies::Phase;
using strategies::Precision;
using strategies::testing::expect_config_error;

const std::string kRoot = STRATA_SOURCE_DIR;

RooflineCostModel bundled_model() {
  return RooflineCostModel(load_efficiencies(default_efficiencies_path()));
}

strategies::DeviceSpec bundled_device(const std::string& cluster) {
  return strategies::load_cluster(kRoot + "/configs/clusters/" + cluster + ".json")
      .node_groups[0]
      .gpu;
}

// One GEMM of (M x K) by (K x N), FP8 inputs and a bf16 output, or all bf16.
Op gemm(double m, double k, double n, bool fp8) {
  Op op;
  op.kind = OpKind::kLinear;
  op.dtype = fp8 ? DType::kFp8 : DType::kBf16;
  op.dims = {static_cast<std::int64_t>(m),
             static_cast<std::int64_t>(k),
             static_cast<std::int64_t>(n),
             fp8 ? 2 : 0,
             0,
             0};
  return op;
}

TEST(Fp8Efficiency, OptionalPerDeviceClass) {
  const Efficiencies e = load_efficiencies(default_efficiencies_path());
  const DeviceClass& h100 = e.device_class(bundled_device("dgx-h100-128n"));
  const DeviceClass& a100 = e.device_class(bundled_device("dgx-a100-128n"));
  EXPECT_EQ(h100.name, "h100");
  ASSERT_TRUE(h100.has(OpClass::kFp8Gemm));
  EXPECT_DOUBLE_EQ(h100.op(OpClass::kFp8Gemm).flop_forward, 0.669);
  EXPECT_DOUBLE_EQ(h100.op(OpClass::kFp8Gemm).flop_backward, 0.669);
  EXPECT_DOUBLE_EQ(h100.op(OpClass::kFp8Gemm).half_efficiency_flops, 5.3e9);
  EXPECT_FALSE(a100.has(OpClass::kFp8Gemm));  // no FP8 tensor cores
  EXPECT_TRUE(a100.has(OpClass::kGemm));
  EXPECT_STREQ(op_class_name(OpClass::kFp8Gemm), "fp8_gemm");
  // The other classes stay required; fp8_gemm, when given, is read strictly.
  Json j = testing::table_json();
  j["devices"][0]["ops"]["fp8_gemm"] = {
      {"flop_efficiency", 1.5}, {"memory_efficiency", 0.8}, {"source", "x"}};
  expect_config_error([&] { parse_efficiencies(j); },
                      {"efficiencies.devices[0].ops.fp8_gemm.flop_efficiency = 1.5"});
  j = testing::table_json();
  j["devices"][0]["ops"]["fp8_gemm"] = {{"flop_efficiency", 0.6}, {"memory_efficiency", 0.8}};
  expect_config_error([&] { parse_efficiencies(j); },
                      {"efficiencies.devices[0].ops.fp8_gemm.source", "required"});
}

TEST(Fp8Roofline, OpClassAndPeak) {
  EXPECT_EQ(op_class(gemm(8, 8, 8, true)), OpClass::kFp8Gemm);
  EXPECT_EQ(op_class(gemm(8, 8, 8, false)), OpClass::kGemm);
  Op cast;
  cast.kind = OpKind::kFp8Cast;
  cast.dtype = DType::kBf16;
  EXPECT_EQ(op_class(cast), OpClass::kNorm);  // element-wise: the streaming rate
  const RooflineCostModel m = bundled_model();
  // An FP8 GEMM on a device without an FP8 peak, or whose class has no fp8_gemm entry.
  strategies::DeviceSpec h100 = bundled_device("dgx-h100-128n");
  h100.peak_fp8_flops = 0;
  expect_config_error([&] { m.op_seconds(gemm(4096, 4096, 4096, true), h100, Precision::kBf16); },
                      {"\"H100-SXM5-80GB\"", "peak_tflops.fp8 = 0", "fp8 linear op"});
  strategies::DeviceSpec a100 = bundled_device("dgx-a100-128n");
  a100.peak_fp8_flops = 1e15;
  expect_config_error([&] { m.op_seconds(gemm(4096, 4096, 4096, true), a100, Precision::kBf16); },
                      {"device class \"a100\"", "no \"fp8_gemm\" entry"});
}

TEST(Fp8Roofline, Gpt3AttnQkvOnH100ByHand) {
  // GPT-3 175B, tp 8, sequence parallelism, one 2048-token micro-batch on H100, strategy fp8.
  // The QKV forward of micro-batch 1 is one FP8 GEMM: f = 2 * 2048 * 12288 * 4608 = 2.32e11
  // FLOPs at 0.669 of 1979 TFLOP/s with the 5.3e9 fall-off: 179.2 us; its bytes (the FP8
  // gathered input 2048 x 12288 and weight 12288 x 4608, the bf16 output 2048 x 4608) 100.7 MB
  // stream in 34.1 us, hidden; one launch (4 us). The same task in bf16: 307.6 us.
  // Micro-batch 0 also casts the weight with its transpose: 56.6e6 x (2 + 2) bytes at the
  // streaming rate, 76.8 us, plus its own launch.
  const auto model = strategies::load_model(kRoot + "/configs/models/gpt3-175b.json");
  const auto cluster = strategies::load_cluster(kRoot + "/configs/clusters/dgx-h100-128n.json");
  auto strategy =
      strategies::load_strategy(kRoot + "/configs/strategies/gpt3-175b-tp8-pp8-dp16.json");
  const RooflineCostModel m = bundled_model();
  const strategies::DeviceSpec& h100 = cluster.node_groups[0].gpu;
  const double f = 2.0 * 2048 * 12288 * 4608, kn = 12288.0 * 4608;
  const double fwd_s = (f + 5.3e9) / (1979e12 * 0.669);
  const double bytes = 2048.0 * 12288 + kn + 2.0 * 2048 * 4608;
  const double cast_s = kn * 4 / (3350e9 * 0.88);
  std::vector<double> seconds(2, 0), bf16_seconds(2, 0);
  for (bool fp8 : {false, true}) {
    strategy.fp8 = fp8 ? strategies::Fp8Format::kHybrid : strategies::Fp8Format::kNone;
    const strategies::Plan plan = strategies::lower(model, cluster, strategy, 1024);
    const strategies::Program& p = plan.programs[0];
    for (const strategies::Task& t : p.tasks) {
      if (t.block != Block::kAttnQkv || t.layer != 0 || t.phase != Phase::kForward) continue;
      if (t.micro_batch > 1) continue;
      (fp8 ? seconds : bf16_seconds)[t.micro_batch] =
          m.compute_seconds(p, t, h100, Precision::kBf16);
      if (fp8 && t.micro_batch == 1) {
        ASSERT_EQ(t.op_count, 1u);
        EXPECT_DOUBLE_EQ(strategies::op_cost(p.ops_of(t)[0]).bytes, bytes);
      }
    }
  }
  EXPECT_NEAR(fwd_s, 179.2e-6, 0.1e-6);
  EXPECT_NEAR(seconds[1], fwd_s + 4e-6, 1e-9);
  EXPECT_NEAR(seconds[0], fwd_s + 4e-6 + cast_s + 4e-6, 1e-9);
  EXPECT_NEAR(cast_s, 76.8e-6, 0.1e-6);
  EXPECT_NEAR(bf16_seconds[1], (f + 2.4e9) / (989.4e12 * 0.78) + 4e-6, 1e-9);
  EXPECT_NEAR(bf16_seconds[1] / seconds[1], 1.68, 0.01);
}

TEST(Fp8Roofline, Fp8OverBf16GemmThroughputOnH100IsThePublishedRatio) {
  // The published relation behind the two entries: on H100 SXM, large FP8 GEMMs (cuBLASLt,
  // Azure ND H100 v5) reach 1323.6 TFLOP/s on average over the shapes with every dimension >=
  // 4096, bf16 ones (torch.matmul, zzc0721/torch-performance-test-data #79) 768.7: 1.72x, less
  // than the 2x of the peaks (1979 / 989.4) that NVIDIA's datasheet states and that an
  // end-to-end step never reaches (Megatron-LM issue #396: "fp8 is computationally 2x the
  // throughput of bf16 ... the actual end-to-end speedup will be less"). The cost model, timing
  // those shapes as GEMM ops, gives the same ratio within 2%, and 1011.3 TFLOP/s at 2048^3
  // (the point its fall-off comes from).
  const RooflineCostModel m = bundled_model();
  const strategies::DeviceSpec h100 = bundled_device("dgx-h100-128n");
  const std::vector<std::vector<double>> shapes = {{4096, 4096, 4096},
                                                   {8192, 8192, 8192},
                                                   {16384, 16384, 16384},
                                                   {32768, 32768, 32768},
                                                   {6144, 12288, 12288}};
  double fp8_rate = 0, bf16_rate = 0;
  for (const auto& s : shapes) {
    const double f = 2 * s[0] * s[1] * s[2];
    // The compute term alone: the launch overhead and any memory term aside, as measured.
    fp8_rate += f / m.op_terms(gemm(s[0], s[1], s[2], true), h100, Precision::kBf16).compute_s;
    bf16_rate += f / m.op_terms(gemm(s[0], s[1], s[2], false), h100, Precision::kBf16).compute_s;
  }
  fp8_rate /= shapes.size();
  bf16_rate /= shapes.size();
  const double published = 1323.58 / 768.65;
  EXPECT_NEAR(fp8_rate / bf16_rate, published, 0.02 * published);
  EXPECT_LT(fp8_rate / bf16_rate, 1979 / 989.4);
  EXPECT_NEAR(fp8_rate / 1e12, 1323.6, 0.02 * 1323.6);
  const double f2048 = 2.0 * 2048 * 2048 * 2048;
  const double at2048 =
      f2048 / m.op_terms(gemm(2048, 2048, 2048, true), h100, Precision::kBf16).compute_s;
  EXPECT_NEAR(at2048 / 1e12, 1011.3, 0.01 * 1011.3);
}

TEST(Fp8Roofline, HeldOutH200SweepWithinTheNoise) {
  // A published measurement not used to choose the fp8_gemm entry: the same guide's cuBLASLt FP8
  // sweep on Azure ND H200 v5 (H200 141GB, CUDA 12.6, github.com/Azure/AI-benchmarking-guide
  // Azure_Results/ND_H200_v5_results.md). H200 has H100's tensor cores (FP8 1,979 TFLOP/s dense,
  // NVIDIA H200 datasheet: 3,958 with sparsity) and more HBM (4.8 TB/s), and shares the h100
  // class. By hand, 0.669 * 1979 * f / (f + 5.3e9) TFLOP/s: 4096^3 1274.8 (measured 1249.1,
  // +2.1%), 8192^3 1317.6 (1300.6, +1.3%), 16384^3 1323.2 (1366.3, -3.2%), 32768^3 1323.9
  // (1349.5, -1.9%), 6144x12288x12288 1320.2 (1318.0, +0.2%); mean 1311.9 vs 1316.7 (-0.4%);
  // 2048^3 1011.3 vs 1013.4 (-0.2%).
  const RooflineCostModel m = bundled_model();
  strategies::DeviceSpec h200 = bundled_device("dgx-h100-128n");
  h200.name = "H200-SXM-141GB";
  h200.memory_bandwidth_Bps = 4.8e12;
  h200.memory_bytes = 141e9;
  struct Shape {
    double m, n, k, measured_tflops;
  };
  const std::vector<Shape> shapes = {{2048, 2048, 2048, 1013.4},    {4096, 4096, 4096, 1249.1},
                                     {8192, 8192, 8192, 1300.6},    {16384, 16384, 16384, 1366.3},
                                     {32768, 32768, 32768, 1349.5}, {6144, 12288, 12288, 1318.0}};
  double predicted_sum = 0, measured_sum = 0;
  for (const Shape& s : shapes) {
    const double f = 2 * s.m * s.n * s.k;
    const double predicted =
        f / m.op_terms(gemm(s.m, s.k, s.n, true), h200, Precision::kBf16).compute_s / 1e12;
    EXPECT_NEAR(predicted, s.measured_tflops, 0.04 * s.measured_tflops) << s.m << "x" << s.n;
    if (s.m >= 4096) {
      predicted_sum += predicted;
      measured_sum += s.measured_tflops;
    }
  }
  EXPECT_NEAR(predicted_sum / measured_sum, 1.0, 0.01);
}

}  // namespace
}  // namespace strata::profiler
