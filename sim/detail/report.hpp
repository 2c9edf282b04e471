// The Report of a replayed step (sim/simulate.hpp): per-rank compute, communication, exposed
// communication and idle seconds from the task spans, throughput, MFU and the traced spans.
// Internal to sim/: simulate() calls it once the engine has run.
#pragma once

#include <string>
#include <vector>

#include "profiler/cost_model.hpp"
#include "results/report.hpp"
#include "sim/simulate.hpp"
#include "strategies/plan.hpp"

namespace strata::sim {

// What the replay measured: each simulated rank's task start and end times (simulated seconds,
// indexed [rank][task]; only the representatives' rows are filled), the rank whose times stand
// for each rank (itself, or its folding representative), and the SimGrid activities it ran.
// What priced the simulated work (CostModel::measures, measures_collective).
struct CostUsage {
  std::int64_t tasks_measured = 0, tasks_modelled = 0;
  double compute_s_measured = 0, compute_s_modelled = 0;
  std::int64_t collectives_measured = 0, collectives_modelled = 0;
};

struct ReplayTimes {
  const std::vector<std::vector<double>>& starts;
  const std::vector<std::vector<double>>& ends;
  const std::vector<std::vector<double>>& issued;  // when each task was issued (<= its start)
  std::vector<int> representative;
  double activities = 0;
  CostUsage usage;
};

// `cost` names the cost model and the class that priced each device.
results::Report assemble_report(const strategies::Plan& plan, const ReplayTimes& times,
                                const SimOptions& options, const profiler::CostModel& cost);

}  // namespace strata::sim
