// Fuzz target: strategy specs, strategies/strategy_spec.cpp.
#include "common/json.hpp"
#include "strategies/spec.hpp"
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return strata::fuzz::run_one(data, size, [](const std::string& text) {
    strata::strategies::parse_strategy(strata::json::parse(text, "strategy.json"));
  });
}
