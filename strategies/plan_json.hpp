// Plan export: the full plan.json (every program: tasks, ops, buffers, memory) and the
// summary that `strata plan` prints (same content as text or JSON). trace.json is written by
// results/trace.hpp.
#pragma once

#include "common/json.hpp"
#include "strategies/plan.hpp"
#include "strategies/program_json.hpp"

namespace strata::strategies {

inline constexpr int kPlanSchemaVersion = 2;

// The whole Plan: the specs, layouts and one program per stage (program_json.hpp: tasks, deps in
// CSR form, ops, operands, buffers, parameters, buckets and memory, column-wise).
json::Json plan_to_json(const Plan& plan);


// The summary: world, groups, tasks per kind, FLOPs, bytes per collective kind and purpose,
// memory per stage and whether it fits.
json::Json plan_summary(const Plan& plan);

}  // namespace strata::strategies
