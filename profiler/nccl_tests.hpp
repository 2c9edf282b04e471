// Imports the standard output of NVIDIA's nccl-tests (all_reduce_perf, all_gather_perf,
// reduce_scatter_perf, alltoall_perf, broadcast_perf, sendrecv_perf) as a links.json profile
// (docs/profiles.md "Measuring and importing links"). Our own reader of the documented output
// format, which is:
//
//   # Collective test starting: all_reduce_perf           (newer versions only)
//   # nThread 1 nGpus 1 minBytes 8 maxBytes 134217728 step: 2(factor) warmup iters: 5 iters: 20 ...
//   # Using devices
//   #  Rank  0 Group  0 Pid  4242 on     node1 device  0 [0x1b] NVIDIA H100 80GB HBM3
//   #                          out-of-place                       in-place
//   #  size  count  type  redop  root  time  algbw  busbw #wrong  time  algbw  busbw #wrong
//   #   (B) (elements)                 (us) (GB/s) (GB/s)          (us) (GB/s) (GB/s)
//         8      2  float   sum    -1  35.21   0.00   0.00      0  33.67   0.00   0.00      0
//   # Avg bus bandwidth    : 12.345
//
// The column header names the columns (older versions have no `root`, and `error` for
// `#wrong`); the first `time` column, the out-of-place one, is the curve's time (microseconds);
// `size` is nccl-tests' size in bytes, which is links.json's `bytes`. Outputs of several runs
// may be concatenated (each starts with its "# Collective test starting" or "# nThread" line):
// each run becomes one curve. algbw and busbw are not read: links.json recomputes them.
//
// defines: NcclImportOptions, import_nccl_tests()
#pragma once

#include <string>

#include "profiler/profile.hpp"

namespace strata::profiler {

// What the output does not say, or what overrides it. Empty / 0 = take it from the output.
struct NcclImportOptions {
  // The fabric the groups span (an intra_node fabric name of a cluster spec, or "network").
  // Default: "network" when the rank lines name more than one host; required otherwise.
  std::string fabric;
  // MeasuredOn.device. Default: the GPU name of the rank lines ("NVIDIA H100 80GB HBM3").
  std::string device;
  // The collective, by links.json name (all_reduce) or binary name (all_reduce_perf), for
  // outputs that name none; an output naming another one is an error.
  std::string collective;
  // The group size, for outputs without rank lines; an output listing another count is an error.
  int ranks = 0;
};

// Parses nccl-tests output `text`; `file` names it in errors. Every curve is fitted
// (fit_curve), the backend is "nccl-tests", device_kind "gpu", the host rank 0's host in the
// rank lines, the date the time of the import (the output carries none). ConfigError naming
// file, line number, the line's text and the rule for a malformed data line, a collective
// links.json cannot hold (reduce_perf, gather_perf, scatter_perf, ...), or a run that leaves
// the fabric, the device, the collective or the group size unknown.
LinkProfile import_nccl_tests(const std::string& text, const std::string& file,
                              const NcclImportOptions& opts);

}  // namespace strata::profiler
