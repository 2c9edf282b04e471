// Reading a checkpoint's manifest.json (layout: checkpoint.hpp): the fields resume needs, each
// checked for its type and range, every error a ConfigError naming the file and the field.
#pragma once

#include <string>

namespace strata::exec {

struct CheckpointManifest {
  int step = 0;
  int world_size = 0;
  std::string model_name, strategy_name;  // names, for messages
  std::string model_hash, strategy_hash;  // provenance, compared on resume
};

// Parses the text of `file` (its path, for messages). Keys it does not read are allowed, so
// that newer writers may add fields.
CheckpointManifest parse_checkpoint_manifest(const std::string& text, const std::string& file);

}  // namespace strata::exec
