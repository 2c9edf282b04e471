// The checkpoint manifest reader: a corrupt manifest names its file and the field (it used to
// surface as a JSON library exception, an internal error).
#include "executor/checkpoint_manifest.hpp"

#include <gtest/gtest.h>

#include <string>

#include "common/error.hpp"
#include "common/json.hpp"

namespace strata::exec {
namespace {

const char* kManifest = R"({"schema_version": 1, "kind": "strata.checkpoint", "step": 4,
  "model": "gpt-tiny", "strategy": "tiny-dp2", "world_size": 2,
  "provenance": {"strata_version": "0.1.0", "model_hash": "m1", "cluster_hash": "c1",
                 "strategy_hash": "s1"},
  "ranks": [[], []], "a_later_field": true})";

std::string error_of(const std::string& text) {
  try {
    parse_checkpoint_manifest(text, "ck/step-000004/manifest.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// `kManifest` with `key` (a top-level key, or provenance's) set to the JSON text `value`.
std::string with(const std::string& key, const std::string& value, bool provenance = false) {
  json::Json j = json::parse(kManifest, "m");
  (provenance ? j["provenance"][key] : j[key]) = json::parse(value, "v");
  return j.dump();
}

TEST(CheckpointManifest, ReadsTheFieldsResumeNeeds) {
  const CheckpointManifest m = parse_checkpoint_manifest(kManifest, "m.json");
  EXPECT_EQ(m.step, 4);
  EXPECT_EQ(m.world_size, 2);
  EXPECT_EQ(m.model_name, "gpt-tiny");
  EXPECT_EQ(m.strategy_name, "tiny-dp2");
  EXPECT_EQ(m.model_hash, "m1");
  EXPECT_EQ(m.strategy_hash, "s1");
}

TEST(CheckpointManifest, CorruptManifestNamesFileAndField) {
  const std::string file = "ck/step-000004/manifest.json: ";
  EXPECT_EQ(error_of(with("world_size", "\"two\"")),
            file + "manifest.world_size = \"two\": must be an integer");
  EXPECT_EQ(error_of(with("world_size", "0")),
            file + "manifest.world_size = 0: must be from 1 to 16777216 ranks");
  EXPECT_EQ(error_of(with("step", "-3")), file + "manifest.step = -3: must be from 0 to 999999");
  EXPECT_EQ(error_of(with("step", "1.5")), file + "manifest.step = 1.5: must be an integer");
  EXPECT_EQ(error_of(with("model", "null")), file + "manifest.model: required key is missing");
  EXPECT_EQ(error_of(with("kind", "\"strata.plan\"")),
            file +
                "manifest.kind = \"strata.plan\": must be \"strata.checkpoint\" (not a Strata "
                "checkpoint)");
  EXPECT_EQ(error_of(with("model_hash", "7", true)),
            file + "manifest.provenance.model_hash = 7: must be a string");
  EXPECT_EQ(error_of(with("provenance", "[]")),
            file + "manifest.provenance = []: must be a JSON object");
  // Not JSON at all, truncated, or overflowing: still the file, and where.
  EXPECT_NE(error_of("").find("ck/step-000004/manifest.json: JSON syntax error at line 1"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(kManifest).substr(0, 60)).find("JSON syntax error"),
            std::string::npos);
  EXPECT_NE(
      error_of(with("step", "1").replace(with("step", "1").find("\"step\":1"), 8, "\"step\":1e999"))
          .find("step = 1e999"),
      std::string::npos);
}

// Schema 3 lists the tensor slices of the rank files: read back with their shard, and a bad one
// names its field.
TEST(CheckpointManifest, ReadsTheTensorSlices) {
  const std::string slice = R"({"tensor": "layers.0.fc1.w", "state": "adam_m", "shape": [256, 64],
      "shard": "rows", "parts": 2, "index": 1, "begin": 64, "count": 128, "dtype": "fp32",
      "file": 1, "offset_bytes": 4096})";
  const CheckpointManifest m =
      parse_checkpoint_manifest(with("slices", "[" + slice + "]"), "m.json");
  ASSERT_TRUE(m.has_slices);
  ASSERT_EQ(m.slices.size(), 1u);
  const StateSlice& s = m.slices[0].slice;
  EXPECT_EQ(s.tensor, "layers.0.fc1.w");
  EXPECT_EQ(s.state, "adam_m");
  EXPECT_EQ(s.shard, strategies::Shard::kRows);
  EXPECT_EQ(m.slices[0].file, 1);
  EXPECT_EQ(m.slices[0].offset_bytes, 4096);
  // Rows 128-255 are shard 1; elements 64-191 of it start at row 129 (64 columns).
  const std::vector<std::int64_t> idx = s.indices();
  ASSERT_EQ(idx.size(), 128u);
  EXPECT_EQ(idx.front(), 129 * 64);
  EXPECT_EQ(idx.back(), 131 * 64 - 1);
  EXPECT_FALSE(parse_checkpoint_manifest(kManifest, "m.json").has_slices);

  const std::string file = "ck/step-000004/manifest.json: ";
  json::Json bad = json::parse(slice, "s");
  bad["count"] = 100000;
  EXPECT_EQ(error_of(with("slices", "[" + bad.dump() + "]")),
            file + "manifest.slices[0].count = 100000: begin and count must lie within the shard");
  bad = json::parse(slice, "s");
  bad["file"] = 2;
  EXPECT_EQ(error_of(with("slices", "[" + bad.dump() + "]")),
            file + "manifest.slices[0].file = 2: must be a rank below world_size");
}

}  // namespace
}  // namespace strata::exec
