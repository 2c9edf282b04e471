// CostModel: the seconds a compute task of a Plan takes on one device. The simulator asks it for
// every compute task it replays (DESIGN.md "Simulator", "Profiler"); implementations are the
// roofline (roofline.hpp) and, later, the measured look-up that interpolates a profile.json.
#pragma once

#include <string>

#include "strategies/plan.hpp"
#include "strategies/spec.hpp"

namespace strata::profiler {

class CostModel {
 public:
  virtual ~CostModel() = default;

  // Seconds that compute task `t` (t.kind == kCompute) takes on `device` when the strategy runs
  // at `precision`. Pure: the same arguments always give the same answer, and no state changes,
  // so one model may serve every rank of a simulation.
  virtual double compute_seconds(const strategies::Task& t, const strategies::DeviceSpec& device,
                                 strategies::Precision precision) const = 0;

  // A short identifier for reports and traces ("roofline").
  virtual std::string name() const = 0;
};

}  // namespace strata::profiler
