// Fuzz target: cluster specs, strategies/cluster_spec.cpp (and with_nodes, as --nodes uses it).
#include "common/json.hpp"
#include "strategies/spec.hpp"
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return strata::fuzz::run_one(data, size, [size](const std::string& text) {
    const auto cluster =
        strata::strategies::parse_cluster(strata::json::parse(text, "cluster.json"));
    strata::strategies::with_nodes(cluster, static_cast<int>(size % 5));
  });
}
