// A rank's state buffers as slices of the global tensors; see checkpoint_slices.hpp.
#include "executor/checkpoint_slices.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "executor/interpreter.hpp"
#include "executor/params.hpp"
#include "strategies/state_runs.hpp"

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
  for (const strategies::BucketInfo& b : prog.buckets) {
    for (std::int32_t id : {b.params, b.master, b.adam_m, b.adam_v}) {
      if (id >= 0) covered[static_cast<std::size_t>(id)] = true;
    }
  }
  std::vector<StateSlice> out;
  // The whole bucket, or (ZeRO) the rank's part of it, as initialise_parameters() writes.
  const auto dp_of = [&](const strategies::BucketInfo& b) {
    return std::pair<int, int>(
        static_cast<int>(in.plan().group_ranks(in.rank(), b.dp_group).size()),
        in.group_index(b.dp_group));
  };
  const auto pieces_of = [&](const ParamInfo& p) { return param_pieces(p, expert_slice(in, p)); };
  strategies::for_each_state_run(
      prog, dp_of, pieces_of, [&](const strategies::StateRun& run, const ParamPiece& piece) {
        const ParamInfo& p = prog.params[run.param];
        StateSlice s;
        s.tensor = piece.name;
        s.state = strategies::kStateNames[run.state];
        s.rows = piece.info.rows;
        s.cols = piece.info.cols;
        s.shard = piece.info.shard;
        s.parts = piece.info.shard == Shard::kReplicated ? 1 : piece.info.shard_parts;
        s.index = piece.info.shard == Shard::kReplicated ? 0 : in.group_index(p.shard_group);
        s.row_blocks = piece.info.row_blocks;
        s.begin = run.piece_offset;
        s.count = run.count;
        s.dtype = prog.buffers[run.buffer].dtype;
        s.buffer = run.buffer;
        s.buffer_offset = run.buffer_offset;
        out.push_back(std::move(s));
      });
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
