// The plan summary as text: what `strata plan` prints. The summary itself (JSON) is
// strategies::plan_summary(); this renders exactly that content, so text and JSON never differ.
#pragma once

#include <string>

#include "common/json.hpp"

namespace strata::results {

// World and groups, schedule and options, parameters, FLOPs per step, tasks, communication per
// collective kind and purpose, and memory per pipeline stage against the device's capacity.
std::string render_plan_summary(const json::Json& summary);

}  // namespace strata::results
