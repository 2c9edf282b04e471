// Fuzz target: profile.json (op costs), profiler/profile.cpp.
#include "common/json.hpp"
#include "profiler/profile.hpp"
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return strata::fuzz::run_one(data, size, [](const std::string& text) {
    strata::profiler::op_profile_from_json(strata::json::parse(text, "profile.json"),
                                           "profile.json");
  });
}
