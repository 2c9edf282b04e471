// RooflineCostModel: the roofline formula of roofline.hpp, term by term, for a task and for one
// op; the link face from link_model.hpp.
#include "profiler/roofline.hpp"

#include <algorithm>
#include <utility>

#include "common/error.hpp"
#include "profiler/link_model.hpp"

namespace strata::profiler {

using strategies::OpKind;
using strategies::Phase;

namespace {

// The FLOP, memory and element-wise terms of `cost` (overhead_s left 0) for work of op class
// `op` in pass `phase` that holds `gemms` GEMMs. `what` names the work in error messages. FP8
// GEMMs (`fp8`) run at the device's FP8 peak, whatever the strategy's precision.
RooflineTerms price(const DeviceClass& dc, const OpEfficiency& op, Phase phase, double gemms,
                    const strategies::OpCost& cost, const strategies::DeviceSpec& device,
                    strategies::Precision precision, const std::string& what, bool fp8 = false) {
  const strategies::Precision p = dc.compute_precision.value_or(precision);
  RooflineTerms out;
  if (cost.flops > 0) {
    const double peak = fp8 ? device.peak_fp8_flops : device.peak_flops(p);
    if (!(peak > 0)) {
      throw ConfigError("device \"" + device.name + "\": peak_tflops." +
                        (fp8 ? std::string("fp8") : std::string(strategies::precision_name(p))) +
                        " = 0: a " + what + " needs it");
    }
    // The fall-off applies per GEMM: f / (eff * f / (f + h)) = (f + h) / eff. h was measured
    // at the device class's precision (16-bit tensor-core GEMMs on GPUs, fp32 on the CPU; FP8
    // GEMMs at FP8): it is a fixed time per GEMM, h / (peak there * eff), whatever precision the
    // strategy computes in (an fp32 GEMM on a GPU does not wait 16 times longer to fill it).
    const double falloff_peak =
        fp8 ? peak : device.peak_flops(dc.compute_precision.value_or(strategies::Precision::kBf16));
    // (f + g h (peak / falloff_peak)) / (peak eff): the same arithmetic as before where the
    // peaks agree (every 16-bit strategy on a GPU, every strategy on the CPU).
    const double falloff = gemms * op.half_efficiency_flops *
                           (falloff_peak == peak ? 1.0 : peak / falloff_peak);
    out.compute_s = (cost.flops + falloff) / (peak * op.flop(phase));
  }
  if ((cost.bytes > 0 || cost.elementwise_bytes > 0) && !(device.memory_bandwidth_Bps > 0)) {
    throw ConfigError("device \"" + device.name + "\": memory_bandwidth = 0: a " + what +
                      " needs it");
  }
  if (cost.bytes > 0) out.memory_s = cost.bytes / (device.memory_bandwidth_Bps * op.memory(phase));
  if (cost.elementwise_bytes > 0) {
    const OpEfficiency& streaming = dc.op(OpClass::kNorm);
    out.elementwise_s =
        cost.elementwise_bytes / (device.memory_bandwidth_Bps * streaming.memory(phase));
  }
  return out;
}

// A GEMM kernel: a linear layer's, or an MoE layer's grouped GEMM over its experts (one kernel
// for all of them, as Megatron-Core's grouped GEMM runs).
bool is_linear(OpKind k) {
  return k == OpKind::kLinear || k == OpKind::kLinearBwdData || k == OpKind::kLinearBwdWeight ||
         k == OpKind::kGroupedLinear || k == OpKind::kGroupedLinearBwdData ||
         k == OpKind::kGroupedLinearBwdWeight;
}

}  // namespace

// Strategy tp_comm_overlap: a GEMM that runs beside communication kernels holding Op::param of
// the GPU's streaming multiprocessors gets the rest, so its FLOP term stretches by
// sms / (sms - param). A CPU device has no SMs to share: 1.
double overlap_slowdown(const strategies::Op& op, const strategies::DeviceSpec& device) {
  if (!(op.param > 0) || !is_linear(op.kind) || device.kind != strategies::DeviceKind::kGpu) {
    return 1.0;
  }
  if (device.sms <= 0) {
    throw ConfigError("device \"" + device.name +
                      "\": sms is not given: strategy tp_comm_overlap prices a GEMM that overlaps "
                      "communication from the share of the streaming multiprocessors it keeps "
                      "(give the device's SM count, e.g. \"sms\": 132 for an H100 SXM)");
  }
  if (op.param >= static_cast<float>(device.sms)) {
    throw ConfigError("strategy.tp_comm_overlap_sms = " + std::to_string(static_cast<int>(op.param)) +
                      ": must be fewer than device \"" + device.name + "\"'s " +
                      std::to_string(device.sms) + " SMs");
  }
  return device.sms / (device.sms - static_cast<double>(op.param));
}


OpClass op_kind_class(OpKind k) {
  switch (k) {
    case OpKind::kLinear:
    case OpKind::kLinearBwdData:
    case OpKind::kLinearBwdWeight:
    case OpKind::kSoftmaxStats:
    case OpKind::kCrossEntropyBwd:
    case OpKind::kGroupedLinear:
    case OpKind::kGroupedLinearBwdData:
    case OpKind::kGroupedLinearBwdWeight:
      return OpClass::kGemm;
    case OpKind::kAttention:
    case OpKind::kAttentionBwd:
      return OpClass::kAttentionCore;
    case OpKind::kFlashAttention:
    case OpKind::kFlashAttentionBwd:
    case OpKind::kCpAttention:
    case OpKind::kCpAttentionBwd:
      return OpClass::kFusedAttention;
    case OpKind::kLayerNorm:
    case OpKind::kLayerNormBwd:
    case OpKind::kRmsNorm:
    case OpKind::kRmsNormBwd:
    case OpKind::kGelu:
    case OpKind::kGeluBwd:
    case OpKind::kSwiglu:
    case OpKind::kSwigluBwd:
    case OpKind::kResidualAdd:
    case OpKind::kResidualAddBwd:
    case OpKind::kGradAccumulate:
    case OpKind::kKvPack:
    case OpKind::kKvUnpack:
    case OpKind::kFp8Cast:
    case OpKind::kCopy:
    case OpKind::kMoeRoute:
    case OpKind::kMoeRouteBwd:
    case OpKind::kMoePermute:
    case OpKind::kMoePermuteBwd:
    case OpKind::kMoeUnpermute:
    case OpKind::kMoeUnpermuteBwd:
      return OpClass::kNorm;
    case OpKind::kEmbedding:
    case OpKind::kEmbeddingBwd:
      return OpClass::kEmbedding;
    case OpKind::kAdamW:
      return OpClass::kOptimizer;
    case OpKind::kLoadBatch:
    case OpKind::kAllReduce:
    case OpKind::kAllGather:
    case OpKind::kReduceScatter:
    case OpKind::kSend:
    case OpKind::kRecv:
    case OpKind::kRingShift:
    case OpKind::kAllToAll:
      break;
  }
  STRATA_CHECK(false, std::string("op kind ") + strategies::op_kind_name(k) +
                          " is not a device kernel: it has no op class");
  return OpClass::kGemm;
}

OpClass op_class(const strategies::Op& op) {
  const bool linear = op.kind == OpKind::kLinear || op.kind == OpKind::kLinearBwdData ||
                      op.kind == OpKind::kLinearBwdWeight;
  if (linear && op.dtype == strategies::DType::kFp8) return OpClass::kFp8Gemm;
  return op_kind_class(op.kind);
}

Phase op_kind_phase(OpKind k) {
  switch (k) {
    case OpKind::kEmbeddingBwd:
    case OpKind::kLayerNormBwd:
    case OpKind::kRmsNormBwd:
    case OpKind::kLinearBwdData:
    case OpKind::kLinearBwdWeight:
    case OpKind::kAttentionBwd:
    case OpKind::kFlashAttentionBwd:
    case OpKind::kCpAttentionBwd:
    case OpKind::kKvUnpack:
    case OpKind::kGeluBwd:
    case OpKind::kSwigluBwd:
    case OpKind::kResidualAddBwd:
    case OpKind::kCrossEntropyBwd:
    case OpKind::kMoeRouteBwd:
    case OpKind::kMoePermuteBwd:
    case OpKind::kMoeUnpermuteBwd:
    case OpKind::kGroupedLinearBwdData:
    case OpKind::kGroupedLinearBwdWeight:
      return Phase::kBackward;
    default:
      return Phase::kForward;
  }
}

RooflineCostModel::RooflineCostModel(Efficiencies efficiencies)
    : efficiencies_(std::move(efficiencies)) {}

double RooflineCostModel::op_seconds(const strategies::Op& op, const strategies::DeviceSpec& device,
                                     strategies::Precision precision) const {
  if (op.kind == OpKind::kLoadBatch) return 0;
  return op_terms(op, device, precision).total_s();
}

double RooflineCostModel::compute_seconds(const strategies::Program& program,
                                          const strategies::Task& t,
                                          const strategies::DeviceSpec& device,
                                          strategies::Precision precision) const {
  // A fused attention kernel has its own op class and FLOP convention (strategies::OpCost
  // kernel_flops), and FP8 GEMMs their own class and peak beside their casts: price such a task
  // op by op, one kernel each.
  STRATA_CHECK(static_cast<std::size_t>(t.op_begin) + t.op_count <= program.ops.size(),
               "compute_seconds: the task's ops are not in the program given");
  bool by_op = false;
  double gemms = 0, slowdown = 1;
  for (std::uint32_t i = 0; i < t.op_count; ++i) {
    const strategies::Op& op = program.ops[t.op_begin + i];
    const OpKind k = op.kind;
    by_op = by_op || k == OpKind::kFlashAttention || k == OpKind::kFlashAttentionBwd ||
            k == OpKind::kCpAttention || k == OpKind::kCpAttentionBwd ||
            k == OpKind::kFp8Cast || op.dtype == strategies::DType::kFp8;
    if (is_linear(k)) {
      gemms += 1;
      slowdown = std::max(slowdown, overlap_slowdown(op, device));
    }
  }
  if (!by_op) {
    // The fall-off per GEMM the task holds (a block's: one forward, two backward; a ring chunk
    // of tp_comm_overlap's: one), and an overlapped GEMM's share of the SMs.
    RooflineTerms out = terms(t, device, precision, gemms);
    out.compute_s *= slowdown;
    return out.total_s();
  }
  double seconds = 0;
  for (std::uint32_t i = 0; i < t.op_count; ++i) {
    seconds += op_seconds(program.ops[t.op_begin + i], device, precision);
  }
  return seconds;
}

double RooflineCostModel::collective_seconds(strategies::CollectiveKind kind,
                                             const std::vector<int>& ranks, double bytes,
                                             const strategies::ClusterSpec& cluster) const {
  return profiler::collective_seconds(kind, ranks, bytes, cluster, efficiencies_.links());
}

RooflineTerms RooflineCostModel::terms(const strategies::Task& t,
                                       const strategies::DeviceSpec& device,
                                       strategies::Precision precision, double gemms) const {
  STRATA_CHECK(t.kind == strategies::TaskKind::kCompute,
               "the cost model prices compute tasks; collectives and transfers are the network's");
  STRATA_CHECK(t.flops >= 0 && t.bytes >= 0, "a task with negative FLOPs or bytes");
  const DeviceClass& dc = efficiencies_.device_class(device);
  const OpEfficiency& op = dc.op(efficiencies_.op_class(t.block));
  // A backward task is two GEMMs of half its FLOPs each (data and weight gradients).
  if (!(gemms > 0)) gemms = t.phase == Phase::kBackward ? 2.0 : 1.0;
  RooflineTerms out = price(dc, op, t.phase, gemms, {t.flops, t.bytes, t.elementwise_bytes}, device,
                            precision, std::string(strategies::block_name(t.block)) + " task");
  out.overhead_s = dc.launch_overhead_s;
  if (t.elementwise_bytes > 0) out.overhead_s += dc.launch_overhead_s;  // one more kernel
  return out;
}

RooflineTerms RooflineCostModel::op_terms(const strategies::Op& op,
                                          const strategies::DeviceSpec& device,
                                          strategies::Precision precision) const {
  const DeviceClass& dc = efficiencies_.device_class(device);
  const OpClass c = op_class(op);
  const std::string what = std::string(op.dtype == strategies::DType::kFp8 ? "fp8 " : "") +
                           strategies::op_kind_name(op.kind) + " op";
  if (!dc.has(c)) {
    throw ConfigError("efficiencies: device class \"" + dc.name + "\" (device \"" + device.name +
                      "\") has no \"" + op_class_name(c) + "\" entry: a " + what +
                      " needs one (a device with FP8 tensor cores and a sourced FP8 GEMM "
                      "efficiency)");
  }
  const OpEfficiency& eff = dc.op(c);
  strategies::OpCost cost = strategies::op_cost(op);
  if (cost.kernel_flops > 0) cost.flops = cost.kernel_flops;  // the efficiency's convention
  RooflineTerms out = price(dc, eff, op_kind_phase(op.kind), 1.0, cost, device, precision, what,
                            c == OpClass::kFp8Gemm);
  out.compute_s *= overlap_slowdown(op, device);
  out.overhead_s = dc.launch_overhead_s;  // one kernel
  return out;
}

}  // namespace strata::profiler
