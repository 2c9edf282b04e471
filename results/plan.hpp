// plan.json read back into a strategies::Plan: the specs, the layouts and every program (tasks,
// deps, ops, buffers, parameters, buckets, memory), so a saved Plan can be simulated, run,
// profiled or drawn exactly as a freshly lowered one. The writer is strategies::plan_to_json
// (schema 2, docs/plan.md); plan_to_json(plan_from_json(j)) == j.
#pragma once

#include <string>

#include "common/json.hpp"
#include "strategies/plan.hpp"

namespace strata::results {

// ConfigError naming `file`, the field and the value for a file of another kind or schema, a
// malformed program (program_from_json), or a Plan whose parts disagree (a program per
// pipeline stage, layouts of the world's size).
strategies::Plan plan_from_json(const json::Json& j, const std::string& file = "plan.json");
strategies::Plan read_plan(const std::string& path);

}  // namespace strata::results
