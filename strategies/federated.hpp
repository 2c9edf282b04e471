// Federated training across sites (docs/federated.md): reading the strategy's "federated" block,
// checking it against a cluster's sites, and which sites take part in a round. Pure; the WAN
// aggregation is simulated in sim/federated.hpp.
#pragma once

#include <string>
#include <vector>

#include "common/json.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {

// strategy.federated (types and ranges only; validate_federated() checks it against a cluster).
FederatedSpec parse_federated(json::ObjectReader r);
json::Json federated_to_json(const FederatedSpec& f);

// The sites of `c` (ClusterSpec::sites() indices) that take part in every round: the sites not
// in dropout_sites, of which the first ceil(n x participation x (1 - dropout_probability))
// (at least one): the expected count, deterministic, so that a report is reproducible.
std::vector<int> participating_sites(const ClusterSpec& c, const FederatedSpec& f);

// The cluster of one site: its node groups only, without sites and WAN (its step is simulated on
// it).
ClusterSpec site_cluster(const ClusterSpec& c, const std::string& site);

// What a site of `site_gpus` GPUs runs when the strategy was written for `first_site_gpus` (the
// first site's): dp scaled by site_gpus / first_site_gpus, the global batch with it (every
// replica keeps its micro-batches), no federated block. validate_federated() checks that
// tp x pp x cp divides every site's GPU count.
StrategySpec site_strategy(const StrategySpec& s, int first_site_gpus, int site_gpus);

}  // namespace strata::strategies
