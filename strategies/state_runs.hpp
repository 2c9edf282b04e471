// The runs of a rank's persistent training state: its parameters, fp32 master weights and Adam
// moments, as the executor's checkpoint slices (executor/checkpoint_slices.cpp) and the
// simulator's switch traffic (switch_traffic.cpp) both walk them. For each bucket of the rank's
// program and each of its four state buffers: the whole bucket, or (ZeRO) the rank's part of it
// over the bucket's data-parallel group, cut where the member parameters' pieces (a tensor, or
// one expert of an expert tensor) begin and end.
//
// defines: kStateNames, StateRun, for_each_state_run()
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "strategies/program.hpp"

namespace strata::strategies {

// The four states in a bucket's order: BucketInfo::params, master, adam_m, adam_v.
inline constexpr const char* kStateNames[4] = {"param", "master", "adam_m", "adam_v"};

// One run: elements [piece_offset, piece_offset + count) of a parameter piece, which sit at
// buffer_offset in state buffer `buffer`.
struct StateRun {
  int state = 0;              // index into kStateNames
  std::int32_t buffer = -1;   // the rank's state buffer
  std::int32_t param = -1;    // the member parameter (index into Program::params)
  std::int64_t piece_offset = 0;
  std::int64_t count = 0;
  std::int64_t buffer_offset = 0;
};

// Calls visit(run, piece) for every run of `prog`'s persistent state buffers. `dp_of(bucket)`
// gives {size, index} of the rank in the bucket's dp group (asked only for a ZeRO part);
// `pieces_of(param)` the parameter's pieces, each with `first` (its first element in the
// parameter) and `info.elements`.
template <typename DpOf, typename PiecesOf, typename Visit>
void for_each_state_run(const Program& prog, DpOf&& dp_of, PiecesOf&& pieces_of, Visit&& visit) {
  for (const BucketInfo& b : prog.buckets) {
    const std::int32_t ids[4] = {b.params, b.master, b.adam_m, b.adam_v};
    for (int state = 0; state < 4; ++state) {
      const std::int32_t id = ids[state];
      if (id < 0 || prog.buffers[id].is_view() || !prog.buffers[id].persistent) continue;
      Part part{0, b.elements};
      if (prog.buffers[id].elements() != b.elements) {
        const std::pair<int, int> dp = dp_of(b);
        part = partition(b.elements, dp.first, dp.second);
      }
      for (std::int32_t m : b.members) {
        const ParamInfo& p = prog.params[m];
        for (const auto& piece : pieces_of(p)) {
          const std::int64_t first = p.bucket_offset + piece.first;
          const std::int64_t lo = std::max(first, part.offset);
          const std::int64_t hi = std::min(first + piece.info.elements, part.offset + part.count);
          if (lo >= hi) continue;
          visit(StateRun{state, id, m, lo - first, hi - lo, lo - part.offset}, piece);
        }
      }
    }
  }
}

}  // namespace strata::strategies
