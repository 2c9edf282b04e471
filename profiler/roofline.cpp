// RooflineCostModel: the roofline formula of roofline.hpp, term by term.
#include "profiler/roofline.hpp"

#include <utility>

#include "common/error.hpp"

namespace strata::profiler {

using strategies::Phase;

RooflineCostModel::RooflineCostModel(Efficiencies efficiencies)
    : efficiencies_(std::move(efficiencies)) {}

double RooflineCostModel::compute_seconds(const strategies::Task& t,
                                          const strategies::DeviceSpec& device,
                                          strategies::Precision precision) const {
  return terms(t, device, precision).total_s();
}

RooflineTerms RooflineCostModel::terms(const strategies::Task& t,
                                       const strategies::DeviceSpec& device,
                                       strategies::Precision precision) const {
  STRATA_CHECK(t.kind == strategies::TaskKind::kCompute,
               "the cost model prices compute tasks; collectives and transfers are the network's");
  STRATA_CHECK(t.flops >= 0 && t.bytes >= 0, "a task with negative FLOPs or bytes");
  const DeviceClass& dc = efficiencies_.device_class(device);
  const OpEfficiency& op = dc.op(efficiencies_.op_class(t.block));
  const strategies::Precision p = dc.compute_precision.value_or(precision);

  RooflineTerms out;
  out.overhead_s = dc.launch_overhead_s;
  if (t.flops > 0) {
    const double peak = device.peak_flops(p);
    if (!(peak > 0)) {
      throw ConfigError("device \"" + device.name + "\": peak_tflops." +
                        strategies::precision_name(p) + " = 0: a " +
                        strategies::block_name(t.block) + " task needs it");
    }
    // A backward task is two GEMMs of half its FLOPs each (data and weight gradients); the
    // fall-off applies per GEMM: f / (eff * f / (f + h)) = (f + h) / eff.
    const double gemms = t.phase == Phase::kBackward ? 2.0 : 1.0;
    out.compute_s = (t.flops + gemms * op.half_efficiency_flops) / (peak * op.flop(t.phase));
  }
  if ((t.bytes > 0 || t.elementwise_bytes > 0) && !(device.memory_bandwidth_Bps > 0)) {
    throw ConfigError("device \"" + device.name + "\": memory_bandwidth = 0: a " +
                      strategies::block_name(t.block) + " task needs it");
  }
  if (t.bytes > 0) out.memory_s = t.bytes / (device.memory_bandwidth_Bps * op.memory(t.phase));
  if (t.elementwise_bytes > 0) {
    const OpEfficiency& streaming = dc.op(OpClass::kNorm);
    out.elementwise_s =
        t.elementwise_bytes / (device.memory_bandwidth_Bps * streaming.memory(t.phase));
    out.overhead_s += dc.launch_overhead_s;  // one more kernel
  }
  return out;
}

}  // namespace strata::profiler
