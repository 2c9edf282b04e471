// Plan replay on a SimGrid platform: the prediction half of "does reality agree?".
//
// simulate() creates the process's one SimGrid engine, builds the cluster's platform, and
// replays every rank's program. Everything it knows about costs comes from the one CostModel it
// is handed: compute tasks become Execs whose duration is the compute face's
// (CostModel::compute_seconds); the platform's links run at the line rates of the cluster spec
// times the link face's efficiencies (CostModel::link_efficiencies), and collectives become the
// flows of the algorithm the link model chooses (ring, hierarchical, tree) over the group's hosts,
// so links are shared and contended by SimGrid's flow model, not by a formula; pipeline sends
// become flows between the two hosts. A task starts when its deps are done; a collective starts
// when every member has reached it. Simulated time only: the same inputs give the same report.
//
// One SimGrid engine per process: call simulate() at most once per process (the CLI runs one
// simulation per `strata simulate`; tests fork).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "profiler/cost_model.hpp"
#include "profiler/expert_routing.hpp"
#include "profiler/link_model.hpp"
#include "results/report.hpp"
#include "strategies/plan.hpp"

namespace strata::sim {

struct SimOptions {
  // Ranks whose tasks go into the trace; empty = one representative rank per pipeline stage.
  std::vector<int> trace_ranks;
  bool record_trace = false;
  // Per-rank speed factors (stragglers); empty = all 1.
  std::vector<double> speed_factors;
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
  // Folding by symmetry, with tensor-parallel folding and aggregated ring steps: when the
  // fabric and the traffic are symmetric under "tp coordinate + 1" (docs/simulator.md "Scale"),
  // each folded flow and its peers' copies run as one SimGrid flow that loads each shared link
  // once per copy, instead of k separate flows; the same max-min shares, k times fewer
  // activities. Off: the peers' copies run as separate "shadow" flows.
  bool bundle_symmetric_flows = true;
  // Ring collectives as one flow per member plus the folded steps' latency (FlowDetail).
  bool aggregate_ring_steps = true;
  // The algorithm of every all-to-all (all_pairs, pairwise, hierarchical; sim/collectives.hpp);
  // kAuto: profiler::choose_algorithm's (hierarchical over k > 1 nodes of the same m > 1
  // members, else all pairs). A forced hierarchical one over a group that is not such is a
  // programming error.
  profiler::Algorithm all_to_all_algorithm = profiler::Algorithm::kAuto;
  // Called as tasks finish (every 4096, and at the last) with how many of the simulated ranks'
  // tasks have finished and how many there are: progress for people. Changes nothing else.
  std::function<void(std::uint64_t done, std::uint64_t total)> progress;
};

// The Report (results/report.hpp) of one step: report.json's content, each rank's finish time
// and, with record_trace, the spans of the traced ranks. Its `simulation` block records the
// options as given (folds apply only where allowed).
results::Report simulate(const strategies::Plan& plan, const profiler::CostModel& cost,
                         const SimOptions& options = {});

// Runs only collectives, all started at time 0 on the platform of the first `world_size` GPUs
// of `cluster` with the links of `cost`'s link face, and returns when each finished (simulated
// seconds). For collective tests and bus-bandwidth benchmarks: alone on its links, a collective
// takes cost.collective_seconds() when `cost` is the roofline. Uses the process's one SimGrid
// engine, like simulate().
// An all-to-all may carry its own byte matrix (an uneven all-to-all, sim::plan_all_to_all; empty:
// the uniform one of `bytes`), and any request may force its algorithm (kAuto: the simulator's
// choice, profiler::choose_collective).
struct CollectiveRequest {
  strategies::CollectiveKind kind = strategies::CollectiveKind::kAllReduce;
  std::vector<int> ranks;  // ascending
  double bytes = 0;        // nccl-tests "size"
  profiler::ByteMatrix matrix{};
  profiler::Algorithm algorithm = profiler::Algorithm::kAuto;
};
std::vector<double> time_collectives(const strategies::ClusterSpec& cluster, int world_size,
                                     const std::vector<CollectiveRequest>& requests,
                                     const profiler::CostModel& cost,
                                     bool aggregate_ring_steps = false);

}  // namespace strata::sim
