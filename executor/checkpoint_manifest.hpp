// Reading a checkpoint's manifest.json (layout: checkpoint.hpp): the fields resume needs, each
// checked for its type and range, every error a ConfigError naming the file and the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "executor/checkpoint_slices.hpp"

namespace strata::exec {

// One rank's file of a checkpoint and its checksum (schema 2).
struct CheckpointFile {
  std::string name;
  std::string fnv1a64;  // 16 hex digits
};

struct CheckpointManifest {
  int schema_version = 1;
  int step = 0;
  int world_size = 0;
  std::string model_name, strategy_name;  // names, for messages
  std::string model_hash, strategy_hash;  // provenance, compared on resume
  std::optional<std::uint64_t> seed;      // the run's --seed (schema 2)
  std::vector<CheckpointFile> files;      // per rank (schema 2; empty before checksums)
  json::Json ranks;                       // per rank, its state buffers as written
  // Schema 3: every tensor slice the rank files hold, each replicated slice once, so that
  // another strategy can load it (checkpoint_slices.hpp). `has_slices` is false before schema 3
  // and when some state buffer is in no bucket (`unsliced` names them).
  bool has_slices = false;
  std::vector<ListedSlice> slices;
  std::vector<std::string> unsliced;
};

// Parses the text of `file` (its path, for messages). Keys it does not read are allowed, so
// that newer writers may add fields.
CheckpointManifest parse_checkpoint_manifest(const std::string& text, const std::string& file);

}  // namespace strata::exec
