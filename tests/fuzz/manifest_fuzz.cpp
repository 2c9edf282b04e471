// Fuzz target: a checkpoint's manifest.json, executor/checkpoint_manifest.cpp.
#include "executor/checkpoint_manifest.hpp"
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return strata::fuzz::run_one(data, size, [](const std::string& text) {
    strata::exec::parse_checkpoint_manifest(text, "manifest.json");
  });
}
