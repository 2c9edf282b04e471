// Plan export: the full plan.json (every program, task, dependency and memory event), the
// summary that `strata plan` prints (same content as text or JSON), and trace.json of a Plan's
// tasks as simulated or measured.
#pragma once

#include <cstdint>
#include <vector>

#include "common/json.hpp"
#include "strategies/plan.hpp"

namespace strata::strategies {

inline constexpr int kPlanSchemaVersion = 1;

// The whole Plan. Tasks are stored column-wise ("task_columns" names the fields of each row)
// to keep 10^5-10^6 tasks compact; deps are CSR (deps_begin, deps).
json::Json plan_to_json(const Plan& plan);

// Strata's version and the hashes of the three specs, as every output file carries them.
json::Json provenance_to_json(const Provenance& p);

// One task of one rank as it ran (executor) or as it was simulated (sim/), seconds from the
// start of the step.
struct TaskSpan {
  int rank = 0;
  std::uint32_t task = 0;
  double start_s = 0;
  double end_s = 0;
};

// trace.json in Chrome's trace event format ("traceEvents", timestamps in microseconds), which
// Perfetto opens: one process per rank, one thread per stream, each task's id, kind, phase,
// block, layer, micro-batch, chunk, FLOPs and bytes (and group or peer) in its args. The
// simulator and the executor both write it, so predicted and measured traces line up task by
// task. `other_data` becomes "otherData" (schema, kind, source, provenance, ...).
json::Json trace_to_json(const Plan& plan, const std::vector<TaskSpan>& spans,
                         json::Json other_data);

// The summary: world, groups, tasks per kind, FLOPs, bytes per collective kind and purpose,
// memory per stage and whether it fits.
json::Json plan_summary(const Plan& plan);

}  // namespace strata::strategies
