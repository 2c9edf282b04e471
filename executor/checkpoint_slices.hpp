// Where a rank's checkpointed state sits in the model's global tensors, so that a checkpoint
// written under one strategy loads under another (another dp, tp, pp, ZeRO stage, world size).
//
// Every element of a rank's state buffers (a bucket's flat parameters or its ZeRO part, and the
// fp32 master weights and Adam moments that follow the same layout) belongs to one parameter
// piece (params.hpp param_pieces: a tensor, or one expert of it) with a global name
// ("layers.3.mlp.fc1.w") and an unsharded shape (rows, cols). A StateSlice describes a run of
// those elements compactly: the piece's shard (kind, parts, the rank's index: params.hpp
// shard_indices() lists the unsharded indices it holds, in its order) and the range
// [begin, begin + count) of that list the rank holds (ZeRO cuts a shard anywhere), with where
// the run lies in the rank's buffer. Saving lists every rank's slices in the manifest, each
// replicated slice once; loading assembles, per tensor and state, the unsharded tensor from
// the listed slices and copies out the elements its own slices need (checkpoint.cpp).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "strategies/program.hpp"

namespace strata::exec {

class Interpreter;

struct StateSlice {
  std::string tensor;  // the global name of the parameter piece
  std::string state;   // "param", "master", "adam_m" or "adam_v"
  std::int64_t rows = 0, cols = 1;  // the piece's unsharded shape
  strategies::Shard shard = strategies::Shard::kReplicated;
  int parts = 1, index = 0;  // the shard's tp parts and index (0 when replicated)
  std::array<std::int64_t, 3> row_blocks{};  // kBlockRows
  std::int64_t begin = 0, count = 0;          // the run within the shard's element list
  strategies::DType dtype = strategies::DType::kFp32;
  std::int32_t buffer = -1;        // the rank's state buffer (not written to the manifest)
  std::int64_t buffer_offset = 0;  // the run's first element in that buffer
  // The unsharded row-major indices of the run's elements, in its order.
  std::vector<std::int64_t> indices() const;
  // Two slices hold the same elements of the same tensor and state (replicas).
  bool same_elements(const StateSlice& o) const;
};

// The state that `state` is loaded from when the state moves to another strategy (a resharded
// resume, a hot switch), given which states the source holds of the tensor: the same state, or
// the parameters for master weights the source has none of (fp32 without ZeRO); "" when
// neither is held.
std::string source_state(const std::string& state,
                         const std::function<bool(const std::string&)>& held);

// Every slice of the interpreter's rank's state buffers. `uncovered` receives the names of the
// state buffers (persistent parameters and optimizer states) that no bucket describes, whose
// checkpoint then cannot be resharded.
std::vector<StateSlice> state_slices(const Interpreter& in, std::vector<std::string>* uncovered);

// A slice as the manifest lists it, `offset_bytes` being its first byte in rank file `file`.
json::Json slice_to_json(const StateSlice& s, int file, std::int64_t offset_bytes);

// A listed slice read back; ConfigError naming `at` (the manifest field) for a bad one.
struct ListedSlice {
  StateSlice slice;
  int file = 0;
  std::int64_t offset_bytes = 0;
};
ListedSlice slice_from_json(const json::Json& j, const std::string& at);

}  // namespace strata::exec
