// The checkpoint manifest reader: JSON through common/json (depth- and range-checked), then
// each field by type, so a corrupt manifest names its file and field instead of surfacing as a
// JSON library exception.
#include "executor/checkpoint_manifest.hpp"

#include "common/error.hpp"
#include "common/json.hpp"

namespace strata::exec {

CheckpointManifest parse_checkpoint_manifest(const std::string& text, const std::string& file) {
  const json::Json j = json::parse(text, file);
  try {
    json::ObjectReader r(j, "manifest");
    const std::string kind = r.get_string("kind");
    if (kind != "strata.checkpoint") {
      json::fail(r.field("kind"), kind, "must be \"strata.checkpoint\" (not a Strata checkpoint)");
    }
    CheckpointManifest m;
    const long long step = r.get_int("step");
    if (step < 0 || step > 999999) json::fail(r.field("step"), step, "must be from 0 to 999999");
    m.step = static_cast<int>(step);
    const long long world = r.get_int("world_size");
    if (world < 1 || world > (1 << 24)) {
      json::fail(r.field("world_size"), world, "must be from 1 to 16777216 ranks");
    }
    m.world_size = static_cast<int>(world);
    m.model_name = r.get_string("model");
    m.strategy_name = r.get_string("strategy");
    json::ObjectReader prov = r.get_object("provenance");
    m.model_hash = prov.get_string("model_hash");
    m.strategy_hash = prov.get_string("strategy_hash");
    const long long schema = r.get_int_or("schema_version", 1);
    if (schema < 1 || schema > 3) {
      json::fail(r.field("schema_version"), schema, "must be from 1 to 3");
    }
    m.schema_version = static_cast<int>(schema);
    const json::Json& ranks = r.get_raw("ranks");
    if (!ranks.is_array() || static_cast<long long>(ranks.size()) != world) {
      json::fail(r.field("ranks"), json::show(ranks), "must list world_size ranks");
    }
    m.ranks = ranks;
    if (r.has("seed")) {
      const json::Json& seed = r.get_raw("seed");
      if (!seed.is_number_unsigned() && !(seed.is_number_integer() && seed.get<long long>() >= 0)) {
        json::fail(r.field("seed"), json::show(seed), "must be a whole number >= 0");
      }
      m.seed = seed.get<std::uint64_t>();
    }
    if (r.has("files")) {
      const json::Json& files = r.get_raw("files");
      if (!files.is_array() || static_cast<long long>(files.size()) != world) {
        json::fail(r.field("files"), json::show(files), "must list one file per rank");
      }
      for (std::size_t i = 0; i < files.size(); ++i) {
        const std::string at = r.field("files") + "[" + std::to_string(i) + "]";
        if (!files[i].is_object()) json::fail(at, json::show(files[i]), "must be an object");
        json::ObjectReader f(files[i], at);
        CheckpointFile entry{f.get_string("name"), f.get_string("fnv1a64")};
        if (entry.fnv1a64.size() != 16 ||
            entry.fnv1a64.find_first_not_of("0123456789abcdef") != std::string::npos) {
          json::fail(f.field("fnv1a64"), entry.fnv1a64, "must be 16 lowercase hex digits");
        }
        m.files.push_back(std::move(entry));
      }
    }
    if (r.has("slices")) {
      const json::Json& slices = r.get_raw("slices");
      if (!slices.is_array()) json::fail(r.field("slices"), json::show(slices), "must be a list");
      for (std::size_t i = 0; i < slices.size(); ++i) {
        ListedSlice s =
            slice_from_json(slices[i], r.field("slices") + "[" + std::to_string(i) + "]");
        if (s.file >= world) {
          json::fail(r.field("slices") + "[" + std::to_string(i) + "].file", s.file,
                     "must be a rank below world_size");
        }
        m.slices.push_back(std::move(s));
      }
      m.has_slices = true;
    }
    if (r.has("unsliced")) {
      const json::Json& names = r.get_raw("unsliced");
      for (std::size_t i = 0; names.is_array() && i < names.size(); ++i) {
        if (names[i].is_string()) m.unsliced.push_back(names[i].get<std::string>());
      }
    }
    return m;
  } catch (const ConfigError& e) {
    throw ConfigError(file + ": " + e.what());
  }
}

// The manifest's slice entries (checkpoint_slices.hpp); here, beside the reader, so the manifest
// parses without the executor (tests/fuzz).
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
  if (s.shard == strategies::Shard::kBlockRows) {
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
  using strategies::Shard;
  for (Shard k : {Shard::kReplicated, Shard::kRows, Shard::kCols, Shard::kBlockRows}) {
    if (shard == strategies::shard_name(k)) s.shard = k, known = true;
  }
  if (!known) json::fail(r.field("shard"), shard, "is not a shard kind");
  const long long parts = r.get_int("parts"), index = r.get_int("index");
  const std::int64_t split = s.shard == strategies::Shard::kCols ? s.cols : s.rows;
  if (parts < 1 || parts > split || index < 0 || index >= parts || split % parts != 0) {
    json::fail(r.field("index"), index, "must be from 0 to parts - 1, parts dividing the rows");
  }
  s.parts = static_cast<int>(parts);
  s.index = static_cast<int>(index);
  if (s.shard == strategies::Shard::kBlockRows) {
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
