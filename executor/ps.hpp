// Parameter servers on the CPU (issue 22; docs/executor.md "Parameter servers"): MPI ranks as
// workers and servers training the recommendation model (rec_model.hpp) for real. The last
// `servers` ranks of the world are servers, the others workers. Each server owns the parameters
// strategies/ps_partition.hpp places on it (the simulator places them the same way).
//
// Worker w's step t: pull from every server the rows of its batch that server owns (int64 ids
// out, fp32 rows back) and the dense (MLP) parameters it owns; forward and backward on its
// batch (rec_train.hpp's worker_batch); push to every server the gradients of those rows (ids
// and rows) and of its dense parameters. Every step sends one pull and one push to every server,
// empty or not: the push is the worker's clock tick c_w (steps pushed).
//
// Servers handle requests in arrival order (Comm::probe_any_source) and apply SGD (no momentum):
//   BSP:    step t's update once all W pushes of step t arrived, their sum / W (summed in worker
//           order); a pull for step t waits until min_w c_w >= t. Equals synchronous dp
//           (rec_train.hpp run_rec_dp) within float rounding.
//   SSP(s): each push applied on arrival, scaled 1 / W; a pull for step t waits until
//           min_w c_w >= t - s, so no worker is more than s steps ahead of the slowest.
//   ASP:    each push applied on arrival, scaled 1 / W; pulls never wait.
// A server's staleness at a pull for step t is t - min_w c_w (its clocks, when it answers).
#pragma once

#include <cstdint>
#include <vector>

#include "executor/comm.hpp"
#include "executor/rec_model.hpp"
#include "executor/rec_train.hpp"
#include "strategies/ps_partition.hpp"

namespace strata::exec {

// The consistency model and its names: strategies/ps_partition.hpp's, the spec's own enum.
using strategies::PsConsistency;
using strategies::ps_consistency_name;

struct PsRunOptions {
  int servers = 1;  // the last `servers` ranks of the world (>= 1, fewer than the world)
  PsConsistency consistency = PsConsistency::kBsp;
  int staleness = 0;  // SSP's bound s >= 0; must be 0 unless kSsp
  strategies::PsPartition partition = strategies::PsPartition::kRange;
  // Every tensor's: with kRow the table's rows and each MLP tensor's rows (a bias's elements)
  // are spread over the servers; with kTensor each tensor (the table too) lives on one server.
  strategies::PsGranularity granularity = strategies::PsGranularity::kRow;
  RecSgdOptions sgd;
  // Tests only: worker w sleeps worker_delay_s[w] seconds in each step's compute (a straggler).
  std::vector<double> worker_delay_s;
};

// Throws ConfigError naming the option and value: servers < 1 or no worker left in a world of
// `world_size` ranks, staleness < 0, staleness without SSP, and check_rec_sgd's.
void check_ps_options(const PsRunOptions& options, int world_size);

// Where every parameter lives, from strategies/ps_partition.hpp: the tensors in the order
// "embedding" (rows, dim), then rec_layout's dense tensors.
struct PsPlacement {
  int servers = 1;
  std::int64_t rows = 0;
  strategies::PsPartition partition = strategies::PsPartition::kRange;
  int table_server = -1;  // kTensor: the server of the whole table; -1: kRow
  // Per server: the indices into the flat dense vector (rec_layout) it owns, ascending.
  std::vector<std::vector<std::int64_t>> dense_elements;
  int row_owner(std::int64_t row) const;
};
PsPlacement ps_placement(const RecModelDims& dims, int servers, strategies::PsPartition partition,
                         strategies::PsGranularity granularity);

// Payload bytes, headers not counted (32 bytes per request, 8 per pull reply): a pull moves
// k ids (8 bytes each) out and k rows (4 dim bytes each) plus the server's dense parameters
// (4 bytes each) back; a push k ids and k row gradients plus the dense gradients.
struct PsWorkerStats {
  std::int64_t pushed_bytes = 0, pulled_bytes = 0;
  std::int64_t pushed_rows = 0, pulled_rows = 0;  // summed over steps and servers
  double wait_s = 0;      // blocked in pulls (request to last reply) and in completing pushes
  int max_staleness = 0;  // the largest t - min clock a server answered a pull of it with
};
struct PsServerStats {
  std::int64_t received_bytes = 0;   // payload of the pulls and pushes it received
  std::int64_t updates_applied = 0;  // BSP: one per step; SSP, ASP: one per push
  std::int64_t rows_held = 0;        // table rows it materialised (those ever pulled)
};

struct PsRunResult {
  std::vector<float> losses;                      // per step: the mean of the workers' losses
  std::vector<std::vector<float>> worker_losses;  // [worker][step]
  std::vector<PsWorkerStats> workers;
  std::vector<PsServerStats> servers;
  int max_staleness() const;  // over the workers
};

// Every rank of the world calls it; each returns the whole result (gathered at the end). The
// servers stop once every worker has sent its last push. Comm::set_timeout_s bounds every wait.
PsRunResult run_ps(Comm& comm, const RecModelDims& dims, const PsRunOptions& options);

}  // namespace strata::exec
