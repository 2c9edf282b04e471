// Federated training across sites (docs/federated.md): one round's aggregation over the WAN,
// simulated as SimGrid flows between the sites, and the round report.
//
// The WAN platform: one host per site, each with a split-duplex uplink of the WAN bandwidth
// (per direction) to a backbone that is never the bottleneck (a SimGrid star zone); a site's
// uplink has half the one-way latency, so a message between two sites takes latency_s (jitter
// spreads the uplinks' latencies deterministically: site i of n gets latency_s / 2 +
// jitter_s / 4 x (2i / (n - 1) - 1), so a pair's latency lies in latency_s +/- jitter_s / 2).
// Inside a site the update is assumed already reduced to the site's gateway (the local step's
// own data-parallel all-reduce leaves every replica with it).
//
// Algorithms over p participating sites, update of S bytes, bandwidth B, latency L (no jitter):
//   central: every site sends S to the aggregator (the first participant), which returns the
//            average: 2 x (L + (p - 1) S / B) -- its uplink carries p - 1 updates each way.
//   ring:    ring all-reduce, 2 (p - 1) steps of S / p bytes: 2 (p - 1) (L + S / (p B)).
//   sync_dp: the same ring over the gradient, once per step.
// Secure aggregation (Bonawitz et al., CCS 2017, Sec. 4: AdvertiseKeys, ShareKeys,
// MaskedInputCollection, Unmasking) adds three message rounds between every pair of sites, sent
// directly: two public keys (2 a_K), an encrypted pair of Shamir shares (2 a_S) and one share
// for unmasking (a_S) per pair, with a_K = a_S = 32 bytes; masked inputs are 32-bit fixed-point
// vectors, the size of the fp32 update.
//
// One SimGrid engine per process: simulate_wan_aggregation() creates it; call it once per
// process (the CLI runs it in a child, cli/child_process.hpp).
#pragma once

#include <string>
#include <vector>

#include "common/json.hpp"
#include "strategies/spec.hpp"

namespace strata::sim {

inline constexpr double kSecAggKeyBytes = 32;    // a_K: a public key (Curve25519, 256 bits)
inline constexpr double kSecAggShareBytes = 32;  // a_S: a Shamir share (a 256-bit field element)

struct WanAggregation {
  double seconds = 0;                 // simulated: the aggregation's flows, phase after phase
  double secure_aggregation_s = 0;    // of which the key and share rounds
  std::vector<double> sent_bytes;     // per site (ClusterSpec::sites() order), counted flows
  std::vector<double> received_bytes;
};

// One aggregation of `update_bytes` among the `participants` (site indices, ascending) of a
// cluster with `num_sites` sites over `wan`, by `aggregation`.
WanAggregation simulate_wan_aggregation(const strategies::WanSpec& wan, int num_sites,
                                        const std::vector<int>& participants,
                                        strategies::FederatedAggregation aggregation,
                                        double update_bytes, bool secure_aggregation);

// The alpha-beta time of the formulas above (no jitter, no secure aggregation).
double wan_aggregation_formula_s(const strategies::WanSpec& wan, int participants,
                                 strategies::FederatedAggregation aggregation,
                                 double update_bytes);

// A round (docs/federated.md "Report"): K local steps then one aggregation; sync_dp: K steps
// each followed by its all-reduce.
struct FederatedReport {
  strategies::FederatedSpec spec;
  std::vector<std::string> sites;
  std::vector<int> participants;
  int site_gpus = 0;
  double local_step_s = 0;      // one step on one site's GPUs (the simulated Plan)
  double local_compute_s = 0;   // K x local_step_s
  double aggregation_s = 0;     // per round (sync_dp: K all-reduces)
  double round_s = 0;
  double update_bytes = 0;      // the model (or gradient) one site sends in an aggregation
  std::string update_dtype;     // "fp32", or the gradient's dtype for sync_dp
  WanAggregation wan;           // one aggregation
  double samples_per_round = 0;  // global batch x participants x K
  int rounds = 100;
  double time_to_rounds_s = 0;
};

// A round from its simulated parts: local compute, round, samples per round and the time to
// `rounds` rounds derived from the local step and the aggregation given.
FederatedReport federated_round(const strategies::FederatedSpec& spec,
                                const std::vector<std::string>& sites,
                                const std::vector<int>& participants, int site_gpus,
                                double local_step_s, double update_bytes,
                                const std::string& update_dtype, const WanAggregation& wan,
                                double global_batch_size, int rounds);

json::Json federated_report_to_json(const FederatedReport& r);
std::string render_federated_report(const FederatedReport& r);

}  // namespace strata::sim
