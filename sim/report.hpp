// The simulation's outputs: report.json, its readable table, and a Chrome-trace/Perfetto
// trace.json (one process per rank, one thread per stream; task ids and names in args).
// Simulated quantities only: no wall-clock times, dates or host names.
#pragma once

#include <string>

#include "common/json.hpp"
#include "sim/simulate.hpp"

namespace strata::sim {

inline constexpr int kReportSchemaVersion = 1;

json::Json report_to_json(const Report& r, const strategies::Plan& plan);
std::string render_report(const Report& r, const strategies::Plan& plan);
// Chrome trace event format ("traceEvents"), timestamps in microseconds of simulated time.
json::Json trace_to_json(const Report& r, const strategies::Plan& plan);

}  // namespace strata::sim
