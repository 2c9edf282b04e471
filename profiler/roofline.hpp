// RooflineCostModel: a compute task's seconds from its FLOPs and bytes and the device's peaks,
// scaled by the efficiencies of its block's op class (docs/cost-model.md):
//
//   seconds = max(flops / (peak(precision) * flop_efficiency),
//                 bytes / (memory_bandwidth * memory_efficiency))
//             + elementwise_bytes / (memory_bandwidth * streaming efficiency) + launch overheads
//
// The element-wise kernels of a block are separate kernels after its main one, so their time
// adds; they stream at the "norm" op class's memory efficiency.
//
// flop_efficiency falls off for small GEMMs when the op class gives half_efficiency_flops.
// The fallback of the CostModel where nothing was measured (DESIGN.md "Profiler").
#pragma once

#include <string>

#include "profiler/cost_model.hpp"
#include "profiler/efficiency.hpp"

namespace strata::profiler {

// The parts of one task's roofline time, in seconds.
struct RooflineTerms {
  double compute_s = 0;      // FLOPs at the achieved FLOP/s
  double memory_s = 0;       // bytes at the achieved bandwidth
  double elementwise_s = 0;  // the block's element-wise kernels, at the streaming bandwidth
  double overhead_s = 0;     // launch overhead of the device class, per kernel
  double total_s() const {
    return (compute_s > memory_s ? compute_s : memory_s) + elementwise_s + overhead_s;
  }
  bool memory_bound() const { return memory_s > compute_s; }
};

class RooflineCostModel final : public CostModel {
 public:
  explicit RooflineCostModel(Efficiencies efficiencies);

  // RooflineTerms::total_s() of terms(t, device, precision).
  double compute_seconds(const strategies::Task& t, const strategies::DeviceSpec& device,
                         strategies::Precision precision) const override;
  std::string name() const override { return "roofline"; }

  // Each term separately (reports, tests, the worked examples in docs/cost-model.md). Throws
  // ConfigError when the task needs a peak the device spec lacks (0 FLOP/s or 0 bytes/s).
  RooflineTerms terms(const strategies::Task& t, const strategies::DeviceSpec& device,
                      strategies::Precision precision) const;

  const Efficiencies& efficiencies() const { return efficiencies_; }

 private:
  Efficiencies efficiencies_;
};

}  // namespace strata::profiler
