// Plan export: the full plan.json (every program, task, dependency and memory event) and the
// summary that `strata plan` prints (same content as text or JSON). trace.json is written by
// results/trace.hpp.
#pragma once

#include "common/json.hpp"
#include "strategies/plan.hpp"
#include "strategies/task_span.hpp"  // executor/ takes TaskSpan from here

namespace strata::strategies {

inline constexpr int kPlanSchemaVersion = 1;

// The whole Plan. Tasks are stored column-wise ("task_columns" names the fields of each row)
// to keep 10^5-10^6 tasks compact; deps are CSR (deps_begin, deps).
json::Json plan_to_json(const Plan& plan);

// Strata's version and the hashes of the three specs, as every output file carries them.
json::Json provenance_to_json(const Provenance& p);

// The summary: world, groups, tasks per kind, FLOPs, bytes per collective kind and purpose,
// memory per stage and whether it fits.
json::Json plan_summary(const Plan& plan);

}  // namespace strata::strategies
