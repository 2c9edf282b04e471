// Two reports side by side: their figures (step time, tokens/s, TFLOP/s, MFU, bubble, world,
// batch, sequence) and, per pipeline stage (its first rank), compute, communication, exposed
// communication, idle and peak memory, with B - A and B / A - 1. What `strata compare A B`
// prints for two report.json files, and the GUI's Compare tab shows.
//
// defines: ReportComparison, compare_reports()
#pragma once

#include <string>

#include "common/json.hpp"
#include "results/report.hpp"

namespace strata::results {

struct ReportComparison {
  json::Json json;   // kind "strata.report_comparison": a, b, figures, stages
  std::string text;  // the table
};

// `a` and `b` as read from the files named `file_a` and `file_b` (shown in the table).
ReportComparison compare_reports(const Report& a, const Report& b, const std::string& file_a,
                                 const std::string& file_b);

}  // namespace strata::results
