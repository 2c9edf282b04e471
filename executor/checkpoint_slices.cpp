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

json::Json slice_to_json(const StateSlice& s, int file, std::int64_t offset_bytes) {
  json::Json j = {{"tensor", s.tensor},
                  {"state", s.state},
                  {"shape", {s.rows, s.cols}},
                  {"shard", strategies::shard_name(s.shard)},
                  {"parts", s.parts},
                  {"index", s.index},
                  {"begin", s.begin},
                  {"count", s.count},
                  {"dtype", strategies::dtype_name(s.dtype)},
                  {"file", file},
                  {"offset_bytes", offset_bytes}};
  if (s.shard == Shard::kBlockRows) {
    j["row_blocks"] = {s.row_blocks[0], s.row_blocks[1], s.row_blocks[2]};
  }
  return j;
}

ListedSlice slice_from_json(const json::Json& j, const std::string& at) {
  if (!j.is_object()) json::fail(at, json::show(j), "must be an object");
  json::ObjectReader r(j, at);
  ListedSlice out;
  StateSlice& s = out.slice;
  s.tensor = r.get_string("tensor");
  s.state = r.get_string("state");
  const json::Json& shape = r.get_raw("shape");
  if (!shape.is_array() || shape.size() != 2 || !shape[0].is_number_integer() ||
      !shape[1].is_number_integer() || shape[0].get<long long>() < 1 ||
      shape[1].get<long long>() < 1) {
    json::fail(r.field("shape"), json::show(shape), "must be [rows, cols], each >= 1");
  }
  s.rows = shape[0].get<std::int64_t>();
  s.cols = shape[1].get<std::int64_t>();
  constexpr std::int64_t kMaxElements = std::int64_t{1} << 36;
  if (s.rows > kMaxElements || s.cols > kMaxElements / s.rows) {
    json::fail(r.field("shape"), json::show(shape), "must hold at most 2^36 elements");
  }
  const std::string shard = r.get_string("shard");
  bool known = false;
  for (Shard k : {Shard::kReplicated, Shard::kRows, Shard::kCols, Shard::kBlockRows}) {
    if (shard == strategies::shard_name(k)) s.shard = k, known = true;
  }
  if (!known) json::fail(r.field("shard"), shard, "is not a shard kind");
  const long long parts = r.get_int("parts"), index = r.get_int("index");
  const std::int64_t split = s.shard == Shard::kCols ? s.cols : s.rows;
  if (parts < 1 || parts > split || index < 0 || index >= parts || split % parts != 0) {
    json::fail(r.field("index"), index, "must be from 0 to parts - 1, parts dividing the rows");
  }
  s.parts = static_cast<int>(parts);
  s.index = static_cast<int>(index);
  if (s.shard == Shard::kBlockRows) {
    const json::Json& blocks = r.get_raw("row_blocks");
    std::int64_t sum = 0;
    for (std::size_t i = 0; blocks.is_array() && i < blocks.size() && i < 3; ++i) {
      s.row_blocks[i] = blocks[i].is_number_integer() ? blocks[i].get<std::int64_t>() : -1;
      const bool fits = s.row_blocks[i] >= 0 && s.row_blocks[i] <= s.rows;
      sum += fits && s.row_blocks[i] % parts == 0 ? s.row_blocks[i] : s.rows + 1;
    }
    if (!blocks.is_array() || blocks.size() != 3 || sum != s.rows) {
      json::fail(r.field("row_blocks"), json::show(blocks),
                 "must be 3 row counts divisible by parts, adding up to the rows");
    }
  }
  const std::int64_t shard_elements = s.rows * s.cols / s.parts;
  s.begin = r.get_int("begin");
  s.count = r.get_int("count");
  if (s.begin < 0 || s.count < 1 || s.begin > shard_elements ||
      s.count > shard_elements - s.begin) {
    json::fail(r.field("count"), s.count, "begin and count must lie within the shard");
  }
  const std::string dtype = r.get_string("dtype");
  if (dtype == strategies::dtype_name(strategies::DType::kFp32)) {
    s.dtype = strategies::DType::kFp32;
  } else if (dtype == strategies::dtype_name(strategies::DType::kBf16)) {
    s.dtype = strategies::DType::kBf16;
  } else {
    json::fail(r.field("dtype"), dtype, "must be fp32 or bf16");
  }
  const long long file = r.get_int("file"), offset = r.get_int("offset_bytes");
  if (file < 0 || offset < 0) json::fail(r.field("file"), file, "file and offset must be >= 0");
  out.file = static_cast<int>(file);
  out.offset_bytes = offset;
  return out;
}

}  // namespace strata::exec
