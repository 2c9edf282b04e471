// Fuzz target: plan.json, results/plan.cpp (and the programs it holds, strategies/program_json).
#include "common/json.hpp"
#include "results/plan.hpp"
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return strata::fuzz::run_one(data, size, [](const std::string& text) {
    strata::results::plan_from_json(strata::json::parse(text, "plan.json"));
  });
}
