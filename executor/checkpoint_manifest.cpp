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

}  // namespace strata::exec
