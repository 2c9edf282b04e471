// Measures links.json curves through the executor's communication layer (docs/profiles.md
// "Measuring and importing links"), the way nccl-tests measures NCCL: for each collective the
// layer has -- all-reduce, all-gather, reduce-scatter, all-to-all and broadcast (from group rank
// 0, as nccl-tests' default root) over groups of 2, 4, 8, ... ranks and the whole world, and
// send/recv between ranks 0 and 1 -- and each message size from 8 bytes up by a factor (2, as
// nccl-tests' -f 2: a transport's behaviour can change between two sizes 4x apart, as this
// machine's shared-memory all-reduce does between 8 and 32 MiB) to the largest, every member makes `warmup` untimed calls, then `iters` timed ones; a point's time is
// the slowest member's mean time per call. After the timed calls, one more call on rank-dependent
// inputs is checked against its exact result (small integers in floats), and a wrong value on any
// rank fails the whole run. A curve whose times do not grow with its sizes is left out with a
// warning.
//
// measure_links() is collective: every rank of the world calls it with the same options, and
// every rank returns the same profile (rank 0 writes it). Groups are the first g world ranks.
// A communicator on device buffers (Comm::device_buffers(), the NCCL backend) gets its buffers
// on `stream`'s device: inputs are written and outputs checked on the host and copied across
// outside the timed calls. The profile's backend is "nccl" for the NCCL backend, else "mpi".
//
// defines: LinkBenchOptions, LinkBenchError, link_bench_groups(), link_bench_sizes(),
//          measure_links()
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "executor/comm.hpp"
#include "kernels/backend.hpp"
#include "profiler/profile.hpp"

namespace strata::profiler {

struct LinkBenchOptions {
  std::int64_t max_bytes = 16 << 20;  // the largest message, bytes (nccl-tests' "size")
  int size_factor = 2;                // each size this many times the one before (>= 2)
  int warmup = 5;                     // untimed calls per point
  int iters = 20;                     // timed calls per point
  std::string device;                 // MeasuredOn.device: the cluster spec's gpu.name
  std::string device_kind;            // "cpu" or "gpu"
  // The fabric of a group whose ranks share one host: the cluster's intra_node fabric name
  // ("shared" for local-cpu). A group spanning hosts is on "network".
  std::string intra_fabric;
  // The stream of a device-buffer communicator (its device and, for NCCL, the stream it runs
  // on): the buffers are allocated and filled there. Unused for host backends.
  const kernels::Stream* stream = nullptr;
  // Called on rank 0 before each point: "all_reduce 2 ranks, 4096 bytes (3 of 40)".
  std::function<void(const std::string&)> progress;
  // Called on rank 0 for a curve left out because its times do not grow with its sizes (timing
  // noise over small messages): its fit would have no bandwidth, which links.json cannot hold.
  std::function<void(const std::string&)> warning;
};

// A failure every rank sees alike (a wrong result on some rank, no curve that could be
// fitted), thrown by every rank: one of them reports it.
class LinkBenchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The group sizes measured in a world of `world` ranks: 2, 4, 8, ... below `world`, and `world`.
std::vector<int> link_bench_groups(int world);

// The message sizes of `c` over `ranks`: 8 bytes, then `factor` times each, and `max_bytes`
// itself. Buffers are floats: an all-gather's, reduce-scatter's or all-to-all's size is rounded
// down to a whole number of floats per member, and sizes smaller than one float per member are
// left out.
std::vector<std::int64_t> link_bench_sizes(LinkCollective c, int ranks, std::int64_t max_bytes,
                                           int factor = 2);

// Measures every curve (collective over all ranks). ConfigError, on every rank alike and before
// any communication, for options that cannot make a curve (fewer than 2 ranks, --max-bytes too
// small for two sizes or above 1 GiB, iterations < 1); LinkBenchError for a wrong result, or
// when every curve was left out (see `warning`).
LinkProfile measure_links(exec::Comm& comm, const LinkBenchOptions& opts);

}  // namespace strata::profiler
