// report.json: what one simulated training step predicted, as plain data. sim::simulate()
// fills a Report; report_to_json() writes it, report_from_json() reads it back, and
// render_report() is the table `strata simulate` prints.
//
// Contract of the file (kind "strata.report", schema_version 1):
//  - Simulated time only, in seconds; no wall-clock times, dates or host names, so the same
//    inputs give the same file byte for byte (DESIGN.md "Provenance").
//  - `ranks` has one row per rank of the world, in rank order; a rank that was folded into a
//    representative (docs/simulator.md "Scale") reports its representative's times.
//  - Counts (`simulated_ranks`, `simgrid_activities`, ranks, stages, sizes) are JSON integers;
//    times, rates, fractions and bytes are JSON numbers (floating point).
//  - An optional "failures" object (docs/failures.md "report.json") follows "ranks" when
//    `--failures` was given, and an optional "switching" object (docs/switching.md) when
//    `--switch` was, and an optional "federated" object (docs/federated.md) for a federated
//    strategy, and an optional "ps" object (docs/parameter-server.md) for a parameter-server
//    strategy (then the step is one worker's); reports without them are unchanged.
//  - The reader is strict: another kind or schema version, a missing key, a wrong type or an
//    unknown key is a ConfigError naming the file, the field and the value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "strategies/plan.hpp"
#include "strategies/task_span.hpp"

namespace strata::results {

inline constexpr int kReportSchemaVersion = 1;
inline constexpr const char* kReportKind = "strata.report";

// What one rank did during the step, in simulated seconds.
struct RankTimes {
  int stage = 0;               // pipeline stage of the rank
  double compute_s = 0;        // busy on the compute stream
  double communication_s = 0;  // some communication in flight (union over comm streams)
  double exposed_comm_s = 0;   // communication in flight while the compute stream is idle
  double idle_s = 0;           // neither computing nor communicating
  double peak_memory_bytes = 0;
  double capacity_bytes = 0;
  // Not in report.json (report_from_json leaves 0): when the rank's last task ended.
  double finish_s = 0;

  bool fits() const { return peak_memory_bytes <= capacity_bytes; }
  bool operator==(const RankTimes&) const = default;
};

// How the step was simulated: report.json's "simulation" block.
// Which entry of the cost model's table priced a device (CostModel::device_class).
struct DeviceClassUse {
  std::string device;  // DeviceSpec::name
  std::string efficiency_class;
  bool operator==(const DeviceClassUse&) const = default;
};

struct SimulationRecord {
  std::string cost_model;               // CostModel::name()
  int simulated_ranks = 0;              // ranks whose tasks ran (fewer when folded)
  std::int64_t simgrid_activities = 0;  // SimGrid activities started
  // The compact-simulation options as given (folds apply only where allowed).
  bool fold_data_parallel = true;
  bool fold_tensor_parallel = true;
  bool aggregate_ring_steps = true;
  std::vector<double> speed_factors;  // per rank (stragglers); empty = all 1
  std::vector<DeviceClassUse> device_classes;  // per distinct device of the cluster
  // With a measured cost model (strata simulate --profile/--links): how much of the simulated
  // work measurements priced and how much the roofline (counted over the simulated ranks' tasks
  // and collectives; folded ranks are not counted again). In report.json only when true.
  bool measured_costs = false;
  std::int64_t tasks_measured = 0, tasks_modelled = 0;
  double compute_s_measured = 0, compute_s_modelled = 0;
  std::int64_t collectives_measured = 0, collectives_modelled = 0;

  bool operator==(const SimulationRecord&) const = default;
};

struct Report {
  std::string model, cluster, strategy;  // the specs' names
  strategies::Provenance provenance;
  int world_size = 0;
  int global_batch_size = 0;  // sequences per step
  int seq_length = 0;         // tokens per sequence
  double step_time_s = 0;
  double tokens_per_s = 0;
  double tflops_per_gpu = 0;           // model FLOPs / step time / GPUs
  double hardware_tflops_per_gpu = 0;  // with recompute (Megatron's accounting)
  double mfu = 0;                      // model FLOP/s per GPU over the GPU's peak
  double bubble_fraction = 0;          // mean idle fraction of the compute stream not spent
                                       // in exposed communication
  bool fits = true;                    // every rank's peak memory within its capacity
  SimulationRecord simulation;
  std::vector<RankTimes> ranks;  // one per rank, in rank order
  // report.json's optional "failures" section: the goodput report of `strata simulate
  // --failures` (sim/failures.hpp, docs/failures.md); null when absent. Kept as JSON here (the
  // reader checks it is an object); sim::failure_report_to_json writes it.
  json::Json failures;
  // report.json's optional "switching" section: the phases and switches of `strata simulate
  // --switch` (cli/switching.hpp, docs/switching.md); null when absent. Kept as JSON here too.
  json::Json switching;
  // report.json's optional "federated" section: the round of a federated strategy
  // (sim/federated.hpp, docs/federated.md); null when absent.
  json::Json federated;
  // report.json's optional "ps" section: a parameter-server strategy's simulation
  // (sim/ps.hpp, docs/parameter-server.md); null when absent.
  json::Json ps;
  // Not in report.json (report_from_json leaves it empty): the traced ranks' tasks, when a
  // trace was asked for; results/trace.hpp writes them.
  std::vector<strategies::TaskSpan> spans;

  // The largest peak memory of any rank, and the largest device memory.
  double max_peak_memory_bytes() const;
  double max_capacity_bytes() const;
};

json::Json report_to_json(const Report& r);

// Reads report.json's content; `file` names it in errors ("out/report.json: report.mfu = ...").
Report report_from_json(const json::Json& j, const std::string& file = "report.json");
Report read_report(const std::string& path);

// The readable table: headline numbers, then one row per pipeline stage (its first rank).
std::string render_report(const Report& r);

}  // namespace strata::results
