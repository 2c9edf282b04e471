// The resharding traffic of a strategy switch (docs/switching.md): the bytes each rank sends to
// each other rank to move the training state from one Plan's layout to another's, computed from
// the two Plans alone (no executor), at the scale of GPT-3 175B on 1024 GPUs.
//
// defines: Rect, StateKind, state_kind_name(), StateHolding, state_holdings(),
//          ByteEntry, SwitchTraffic, switch_traffic()
//
// The state is what a checkpoint keeps (executor/checkpoint_slices.hpp): per parameter piece (a
// tensor by its global name, or one expert of an expert tensor, "layers.3.experts.5.fc1.w"),
// the persistent parameters, the fp32 master weights and the two Adam moments of the buckets
// that hold it. A rank holds, of each piece and state, its tp shard (kRows, kCols, kBlockRows of
// the shard group's size and the rank's index in it) or, under ZeRO, the part of that shard's
// row-major element list that its bucket's partition over the bucket's dp group gives it. Each
// holding is a few rectangles of the piece's unsharded (rows x cols) matrix: a shard is one
// rectangle (kBlockRows: one per block), and a contiguous range of a shard's element list is at
// most three (a partial first row, whole rows, a partial last row) per block.
//
// The source rule (the executor's `strata run --switch` moves the real state by the same rule,
// so that measured and simulated bytes agree): each element that receiver r holds under B comes
// from the holder h of the same piece and state under A with the smallest (h - r) mod world, so
// from r itself when r holds it under A (no traffic). Where A has no master weights for a piece
// (fp32 parameters, which are their own master), B's master comes from A's parameters. An element
// moves in the receiver's dtype (dtype_bytes of B's buffer).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "strategies/plan.hpp"

namespace strata::strategies {

// Rows [r0, r1) x columns [c0, c1) of a piece's unsharded matrix (vectors: one column).
struct Rect {
  std::int64_t r0 = 0, r1 = 0, c0 = 0, c1 = 0;
  std::int64_t elements() const { return (r1 - r0) * (c1 - c0); }
  bool empty() const { return r0 >= r1 || c0 >= c1; }
  bool operator==(const Rect&) const = default;
};

enum class StateKind : std::uint8_t { kParam, kMaster, kAdamM, kAdamV };
inline constexpr int kNumStateKinds = 4;
// "param", "master", "adam_m", "adam_v" (the checkpoint manifest's names).
const char* state_kind_name(StateKind s);

// What one rank holds of one piece's state.
struct StateHolding {
  std::string tensor;  // the piece's global name ("layers.3.qkv.w", "wte")
  StateKind state = StateKind::kParam;
  std::int64_t rows = 0, cols = 1;  // the piece's unsharded shape
  DType dtype = DType::kFp32;       // of the rank's buffer
  std::vector<Rect> rects;          // disjoint, non-empty, in the order of the rank's buffer
};

// Every holding of `rank`'s state buffers under `plan` (persistent, non-view parameter,
// master and Adam buffers of its program's buckets).
std::vector<StateHolding> state_holdings(const Plan& plan, int rank);

struct ByteEntry {
  int src = 0, dst = 0;
  double bytes = 0;
};

struct SwitchTraffic {
  int world_size = 0;
  std::vector<ByteEntry> entries;            // src != dst, bytes > 0, sorted by (src, dst)
  std::vector<double> send_bytes;            // per rank: what it sends
  std::vector<double> recv_bytes;            // per rank: what it receives
  double total_bytes = 0;                    // the sum over the entries
  int max_send_rank = 0, max_recv_rank = 0;  // the first rank with the largest send / receive
  double max_send_bytes() const { return send_bytes.empty() ? 0 : send_bytes[max_send_rank]; }
  double max_recv_bytes() const { return recv_bytes.empty() ? 0 : recv_bytes[max_recv_rank]; }
  // The dense world x world matrix, [src][dst] (profiler::ByteMatrix's layout).
  std::vector<std::vector<double>> matrix() const;
};

// The traffic of switching from Plan `a` to Plan `b` by the source rule above. ConfigError when
// the worlds differ, or when a piece of `b` is absent from `a` or has another shape there
// (naming the piece and both strategies).
SwitchTraffic switch_traffic(const Plan& a, const Plan& b);

}  // namespace strata::strategies
