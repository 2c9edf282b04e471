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
    return m;
  } catch (const ConfigError& e) {
    throw ConfigError(file + ": " + e.what());
  }
}

}  // namespace strata::exec
