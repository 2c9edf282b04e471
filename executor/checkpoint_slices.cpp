// A rank's state buffers as slices of the global tensors; see checkpoint_slices.hpp.
#include "executor/checkpoint_slices.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "executor/interpreter.hpp"
#include "executor/params.hpp"

namespace strata::exec {

using strategies::ParamInfo;
using strategies::Shard;

namespace {

// The shard description of a slice as params.hpp's shard_indices() takes it.
ParamInfo shard_info(const StateSlice& s) {
  ParamInfo p;
  p.rows = s.rows;
  p.cols = s.cols;
  p.shard = s.shard;
  p.shard_parts = s.parts;
  p.row_blocks = s.row_blocks;
  return p;
}

}  // namespace

std::vector<std::int64_t> StateSlice::indices() const {
  const std::vector<std::int64_t> all = shard_indices(shard_info(*this), index);
  STRATA_CHECK(begin >= 0 && begin + count <= static_cast<std::int64_t>(all.size()),
               "slice of " + tensor + " beyond its shard");
  return {all.begin() + begin, all.begin() + begin + count};
}

bool StateSlice::same_elements(const StateSlice& o) const {
  return tensor == o.tensor && state == o.state && rows == o.rows && cols == o.cols &&
         shard == o.shard && parts == o.parts && index == o.index &&
         row_blocks == o.row_blocks && begin == o.begin && count == o.count;
}

std::string source_state(const std::string& state,
                         const std::function<bool(const std::string&)>& held) {
  if (held(state)) return state;
  if (state == "master" && held("param")) return "param";
  return "";
}

std::vector<StateSlice> state_slices(const Interpreter& in, std::vector<std::string>* uncovered) {
  const strategies::Program& prog = in.program();
  std::vector<bool> covered(prog.buffers.size(), false);
  std::vector<StateSlice> out;
  for (const strategies::BucketInfo& b : prog.buckets) {
    const std::pair<const char*, std::int32_t> states[] = {
        {"param", b.params}, {"master", b.master}, {"adam_m", b.adam_m}, {"adam_v", b.adam_v}};
    for (const auto& [state, id] : states) {
      if (id < 0 || prog.buffers[id].is_view() || !prog.buffers[id].persistent) continue;
      covered[static_cast<std::size_t>(id)] = true;
      // The whole bucket, or (ZeRO) the rank's part of it, as initialise_parameters() writes.
      strategies::Part part{0, b.elements};
      if (prog.buffers[id].elements() != b.elements) {
        part = strategies::partition(
            b.elements, static_cast<int>(in.plan().group_ranks(in.rank(), b.dp_group).size()),
            in.group_index(b.dp_group));
      }
      for (std::int32_t m : b.members) {
        const ParamInfo& p = prog.params[m];
        const int index = in.group_index(p.shard_group);
        for (const ParamPiece& piece : param_pieces(p, expert_slice(in, p))) {
          const std::int64_t first = p.bucket_offset + piece.first;
          const std::int64_t lo = std::max(first, part.offset);
          const std::int64_t hi = std::min(first + piece.info.elements, part.offset + part.count);
          if (lo >= hi) continue;
          StateSlice s;
          s.tensor = piece.name;
          s.state = state;
          s.rows = piece.info.rows;
          s.cols = piece.info.cols;
          s.shard = piece.info.shard;
          s.parts = piece.info.shard == Shard::kReplicated ? 1 : piece.info.shard_parts;
          s.index = piece.info.shard == Shard::kReplicated ? 0 : index;
          s.row_blocks = piece.info.row_blocks;
          s.begin = lo - first;
          s.count = hi - lo;
          s.dtype = prog.buffers[id].dtype;
          s.buffer = id;
          s.buffer_offset = lo - part.offset;
          out.push_back(std::move(s));
        }
      }
    }
  }
  for (std::size_t i = 0; i < prog.buffers.size(); ++i) {
    const strategies::Buffer& b = prog.buffers[i];
    if (b.persistent && !b.is_view() && !covered[i] &&
        (b.role == strategies::Role::kParam || b.role == strategies::Role::kOptimizer)) {
      uncovered->push_back(prog.buffer_name(static_cast<std::int32_t>(i)));
    }
  }
  return out;
}

}  // namespace strata::exec
