// Prediction against measurement, task by task: two traces of the same Plan (`strata simulate
// --trace`, `strata run --trace`) joined on (rank, task id), which both carry from the Plan
// (docs/validate.md). Per task: predicted and measured duration; per category of task (compute by
// block and pass, each collective by kind and purpose, transfers) their sums; per rank the idle
// time of its compute stream; the step (each trace's span); the tasks only one side has.
//
// defines: TaskComparison, CategoryComparison, TraceComparison, compare_traces(),
//          comparison_to_json(), comparison_csv(), render_comparison()
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/json.hpp"
#include "results/trace.hpp"

namespace strata::results {

struct TaskComparison {
  int rank = 0;
  std::uint32_t task = 0;
  std::string name;      // Plan::task_name, as the traces write it
  std::string category;  // "compute mlp_fc1 forward", "all_reduce dp", "send pp", ...
  double predicted_s = 0;
  double measured_s = 0;
};

struct CategoryComparison {
  std::string category;
  int tasks = 0;  // joined tasks in it, over every joined rank
  double predicted_s = 0;
  double measured_s = 0;
};

struct TraceComparison {
  std::string predicted_file, measured_file;
  std::vector<int> ranks;                 // in both traces, ascending
  double predicted_step_s = 0;            // each trace's span over those ranks
  double measured_step_s = 0;
  double predicted_idle_s = 0;            // mean over the ranks of the compute stream's idle
  double measured_idle_s = 0;             //   time within the step
  std::vector<CategoryComparison> categories;  // by measured seconds, descending
  std::vector<TaskComparison> tasks;           // joined, by rank then task id
  std::vector<std::pair<int, std::uint32_t>> only_predicted, only_measured;  // (rank, task)
};

// The category a task is compared in.
std::string task_category(const TraceEvent& e);

// Joins `predicted` and `measured` (their files name them in errors). Traces of different models
// or strategies (otherData provenance hashes), or with no rank in common, are a ConfigError.
TraceComparison compare_traces(const Trace& predicted, const Trace& measured,
                               const std::string& predicted_file, const std::string& measured_file);

json::Json comparison_to_json(const TraceComparison& c, int worst);
// One row per joined task: rank, task, name, category, predicted_s, measured_s, error
// (predicted / measured - 1).
std::string comparison_csv(const TraceComparison& c);
// The table: step, idle, each category with its relative error, the `worst` tasks by absolute
// difference, and what only one side has.
std::string render_comparison(const TraceComparison& c, int worst);

}  // namespace strata::results
