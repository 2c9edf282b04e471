// Plan replay on a SimGrid platform: the prediction half of "does reality agree?".
//
// simulate() creates the process's one SimGrid engine, builds the cluster's platform, and
// replays every rank's program: compute tasks become Execs whose duration comes from the
// CostModel; collectives become the flows of a ring algorithm over the group's hosts (so links
// are shared and contended by SimGrid's flow model, not by a formula); pipeline sends become
// flows between the two hosts. A task starts when its deps are done; a collective starts when
// every member has reached it. Simulated time only: the same inputs give the same report.
//
// One SimGrid engine per process: call simulate() at most once per process (the CLI runs one
// simulation per `strata simulate`; tests fork).
#pragma once

#include <string>
#include <vector>

#include "profiler/cost_model.hpp"
#include "profiler/efficiency.hpp"
#include "strategies/plan.hpp"
#include "strategies/plan_json.hpp"

namespace strata::sim {

struct SimOptions {
  // Ranks whose tasks go into the trace; empty = one representative rank per pipeline stage.
  std::vector<int> trace_ranks;
  bool record_trace = false;
  // Per-rank speed factors (stragglers); empty = all 1.
  std::vector<double> speed_factors;
  // Fractions of the line rate that collectives reach, per fabric (the cost model's table);
  // default: line rate.
  profiler::LinkEfficiencies links{};
  // Compact simulation (docs/simulator.md "Scale"). Folding: data-parallel replicas run the
  // same program with the same timing, so only replica 0 (dp coordinate 0) runs its tasks; its
  // collectives still move every member's flows over the real links, and the other replicas'
  // ranks report their representative's times. Needs one layout (no per-layer tp) and equal
  // speed factors; otherwise every rank runs.
  bool fold_data_parallel = true;
  // Tensor-parallel folding: peers of a tp group run the same program too, so only tp rank 0
  // runs its tasks; the tp collectives still run every member's flows, and the folded peers'
  // pipeline transfers and other collectives (their data-parallel rings) are started alongside
  // their representative's, so every link carries the traffic it would. Same conditions.
  bool fold_tensor_parallel = true;
  // Ring collectives as one flow per member plus the folded steps' latency (FlowDetail).
  bool aggregate_ring_steps = true;
};

// What one rank did during the step, in simulated seconds.
struct RankTimes {
  double compute_s = 0;        // busy on the compute stream
  double communication_s = 0;  // some communication in flight (union over comm streams)
  double exposed_comm_s = 0;   // communication in flight while the compute stream is idle
  double idle_s = 0;           // neither computing nor communicating
  double finish_s = 0;         // when the rank's last task ended
  double peak_memory_bytes = 0;
  double capacity_bytes = 0;
};

// One task of one rank as simulated (for the trace).
using TaskSpan = strategies::TaskSpan;

struct Report {
  std::string model, cluster, strategy;
  strategies::Provenance provenance;
  int world_size = 0;
  double step_time_s = 0;
  double tokens_per_s = 0;
  double tflops_per_gpu = 0;           // model FLOPs / step time / GPUs
  double hardware_tflops_per_gpu = 0;  // with recompute (Megatron's accounting)
  double mfu = 0;                      // model FLOP/s per GPU over the GPU's peak
  double bubble_fraction = 0;          // mean idle fraction of the compute stream not spent in
                                       // exposed communication
  std::vector<RankTimes> ranks;
  bool fits = true;
  double events = 0;                   // SimGrid activities started
  int simulated_ranks = 0;             // ranks whose tasks ran (fewer when folded)
  std::string cost_model;              // CostModel::name()
  SimOptions options;                  // as given (folds apply only where allowed)
  std::vector<TaskSpan> spans;         // traced ranks only, when requested
};

Report simulate(const strategies::Plan& plan, const profiler::CostModel& cost,
                const SimOptions& options = {});

// Runs only collectives, all started at time 0 on the platform of the first `world_size` GPUs
// of `cluster`, and returns when each finished (simulated seconds). For collective tests and
// bus-bandwidth benchmarks. Uses the process's one SimGrid engine, like simulate().
struct CollectiveRequest {
  strategies::CollectiveKind kind = strategies::CollectiveKind::kAllReduce;
  std::vector<int> ranks;  // ascending
  double bytes = 0;        // nccl-tests "size"
};
std::vector<double> time_collectives(const strategies::ClusterSpec& cluster, int world_size,
                                     const std::vector<CollectiveRequest>& requests,
                                     bool aggregate_ring_steps = false);

}  // namespace strata::sim
