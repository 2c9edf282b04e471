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

#include <optional>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "strategies/spec.hpp"

namespace strata::sim {

inline constexpr double kSecAggKeyBytes = 32;    // a_K: a public key (Curve25519, 256 bits)
inline constexpr double kSecAggShareBytes = 32;  // a_S: a Shamir share (a 256-bit field element)

// Homomorphic encryption (strategies::HomomorphicSpec, docs/federated.md): Paillier costs per
// operation on one core, measured by bench/paillier_bench (textbook Paillier with g = n + 1 and
// CRT decryption on GMP 6.2.1, one core of a 2-core AMD EPYC VM, median of 5 batches of 20,
// 2026-12-07): encryption is one |n|-bit modular exponentiation modulo n^2, addition one
// multiplication modulo n^2, decryption two half-size exponentiations (CRT).
struct PaillierCosts {
  int key_bits = 0;
  double encrypt_s = 0, add_s = 0, decrypt_s = 0;
};
inline constexpr PaillierCosts kPaillierMeasured[] = {
    {1024, 1.24e-3, 1.60e-6, 3.33e-4},
    {2048, 9.49e-3, 4.70e-6, 2.54e-3},
    {3072, 2.37e-2, 8.94e-6, 8.24e-3}};
// The spec's costs where it gives them, else the measured ones of its key size.
PaillierCosts paillier_costs(const strategies::HomomorphicSpec& h);

// One HE aggregation of an update of `values` numbers among p participants (central): every
// site encrypts c = ceil(values / values_per_ciphertext) ciphertexts, sends them (c x 2 key_bits
// / 8 bytes: the WAN flows carry these instead of the plain update), the aggregator adds the
// p - 1 others into the first, returns the sum, every site decrypts c ciphertexts. Sites work in
// parallel, each with `cores` cores; the phases follow one another.
struct HeAggregation {
  double ciphertexts = 0;        // c, per site
  double ciphertext_bytes = 0;   // c x 2 key_bits / 8: one site's encrypted update
  double encrypt_s = 0;          // c x encrypt_s / cores
  double add_s = 0;              // (p - 1) c x add_s / cores, at the aggregator
  double decrypt_s = 0;          // c x decrypt_s / cores
  double seconds() const { return encrypt_s + add_s + decrypt_s; }
};
HeAggregation he_aggregation(const strategies::HomomorphicSpec& h, double values,
                             int participants);

// Differential privacy's compute per aggregation (the Gaussian mechanism on a site's update):
// clipping reads the update once (its norm) and the noise reads and writes it (generate and add):
// three passes of `values` fp32 numbers at the site's memory bandwidth.
double dp_noise_seconds(double values, double memory_bandwidth_Bps);

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

// One site's local step: its GPUs, its simulated step time and the sequences it trains per
// step (the strategy's dp scaled to the site, strategies::site_strategy).
struct SiteStep {
  int gpus = 0;
  double step_s = 0;
  double batch = 0;
};

// A round (docs/federated.md "Report"): K local steps then one aggregation; sync_dp: K steps
// each followed by its all-reduce. The aggregation waits for the slowest participant.
struct FederatedReport {
  strategies::FederatedSpec spec;
  std::vector<std::string> sites;
  std::vector<int> participants;
  std::vector<SiteStep> site_steps;  // per site (sites order)
  double local_step_s = 0;      // the slowest participating site's step
  double local_compute_s = 0;   // K x local_step_s
  double aggregation_s = 0;     // per round (sync_dp: K all-reduces)
  double round_s = 0;
  double update_bytes = 0;      // the model (or gradient) one site sends in an aggregation
  std::string update_dtype;     // "fp32", or the gradient's dtype for sync_dp
  WanAggregation wan;           // one aggregation
  std::optional<HeAggregation> he;  // with homomorphic_encryption: its compute per aggregation
  double dp_noise_s = 0;        // with dp_noise: its compute per aggregation
  double samples_per_round = 0;  // K x the participants' batches
  int rounds = 100;
  double time_to_rounds_s = 0;
};

// A round from its simulated parts: local compute (the slowest participant's step of
// `site_steps`), round, samples per round and the time to `rounds` rounds derived from the local
// steps and the aggregation given (its WAN flows, plus the HE and DP compute when given).
FederatedReport federated_round(const strategies::FederatedSpec& spec,
                                const std::vector<std::string>& sites,
                                const std::vector<int>& participants,
                                const std::vector<SiteStep>& site_steps, double update_bytes,
                                const std::string& update_dtype, const WanAggregation& wan,
                                int rounds,
                                const std::optional<HeAggregation>& he = std::nullopt,
                                double dp_noise_s = 0);

json::Json federated_report_to_json(const FederatedReport& r);
std::string render_federated_report(const FederatedReport& r);

}  // namespace strata::sim
