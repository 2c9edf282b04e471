// Federated rounds (federated.hpp): the WAN platform of the sites, the aggregation's flows phase
// by phase, and the round report.
#include "sim/federated.hpp"

#include <simgrid/s4u.hpp>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "sim/platform.hpp"
#include "strategies/federated.hpp"

namespace strata::sim {

namespace {

namespace sg4 = simgrid::s4u;
using strategies::FederatedAggregation;

// One message of a phase: `bytes` from site `from` to site `to`.
struct Message {
  int from = 0;
  int to = 0;
  double bytes = 0;
};
using Phase = std::vector<Message>;

// The ring all-reduce's 2 (p - 1) steps: participant j sends S / p to participant j + 1.
std::vector<Phase> ring_phases(const std::vector<int>& sites, double bytes) {
  const std::size_t p = sites.size();
  std::vector<Phase> phases(2 * (p - 1));
  for (Phase& phase : phases) {
    for (std::size_t j = 0; j < p; ++j) {
      phase.push_back({sites[j], sites[(j + 1) % p], bytes / static_cast<double>(p)});
    }
  }
  return phases;
}

// Gather to the first participant, then scatter of the average back.
std::vector<Phase> central_phases(const std::vector<int>& sites, double bytes) {
  Phase gather, scatter;
  for (std::size_t j = 1; j < sites.size(); ++j) {
    gather.push_back({sites[j], sites.front(), bytes});
    scatter.push_back({sites.front(), sites[j], bytes});
  }
  return {gather, scatter};
}

// Every ordered pair of participants exchanges `bytes` (a secure-aggregation round).
Phase all_pairs(const std::vector<int>& sites, double bytes) {
  Phase phase;
  for (int a : sites) {
    for (int b : sites) {
      if (a != b) phase.push_back({a, b, bytes});
    }
  }
  return phase;
}

// The one-way latency of site i's uplink (federated.hpp: half the WAN's, spread by jitter).
double uplink_latency_s(const strategies::WanSpec& wan, int site, int num_sites) {
  const double spread = num_sites > 1 ? 2.0 * site / (num_sites - 1) - 1.0 : 0.0;
  return wan.latency_s / 2 + wan.jitter_s / 4 * spread;
}

}  // namespace

WanAggregation simulate_wan_aggregation(const strategies::WanSpec& wan, int num_sites,
                                        const std::vector<int>& participants,
                                        FederatedAggregation aggregation, double update_bytes,
                                        bool secure_aggregation) {
  STRATA_CHECK(num_sites >= 1 && !participants.empty(), "an aggregation needs a site");
  STRATA_CHECK(wan.bandwidth_Bps > 0, "a WAN of positive bandwidth");
  WanAggregation out;
  out.sent_bytes.assign(num_sites, 0.0);
  out.received_bytes.assign(num_sites, 0.0);
  if (participants.size() < 2) return out;  // one site: nothing crosses the WAN

  std::vector<Phase> keys;  // Bonawitz et al.'s AdvertiseKeys and ShareKeys
  std::vector<Phase> phases = aggregation == FederatedAggregation::kCentral
                                  ? central_phases(participants, update_bytes)
                                  : ring_phases(participants, update_bytes);
  Phase unmask;
  if (secure_aggregation) {
    keys = {all_pairs(participants, 2 * kSecAggKeyBytes),
            all_pairs(participants, 2 * kSecAggShareBytes)};
    unmask = all_pairs(participants, kSecAggShareBytes);
  }

  sg4::Engine engine("strata-wan");
  configure_network_model();
  sg4::NetZone* zone = sg4::create_star_zone("wan");
  std::vector<sg4::Host*> hosts;
  for (int i = 0; i < num_sites; ++i) {
    const std::string name = "site" + std::to_string(i);
    sg4::Host* host = zone->create_host(name, Platform::kHostFlops);
    host->seal();
    sg4::SplitDuplexLink* link = zone->create_split_duplex_link(name + "-uplink",
                                                                wan.bandwidth_Bps);
    link->set_latency(uplink_latency_s(wan, i, num_sites));
    link->seal();
    zone->add_route(host->get_netpoint(), nullptr, nullptr, nullptr,
                    {{link, sg4::LinkInRoute::Direction::UP}}, true);
    hosts.push_back(host);
  }
  zone->seal();

  double keys_s = 0, unmask_s = 0;
  const auto run_phases = [&](const std::vector<Phase>& list) {
    const double start = sg4::Engine::get_clock();
    for (const Phase& phase : list) {
      std::vector<sg4::CommPtr> comms;
      for (const Message& m : phase) {
        comms.push_back(sg4::Comm::sendto_async(hosts[m.from], hosts[m.to],
                                                static_cast<std::uint64_t>(std::ceil(m.bytes))));
        out.sent_bytes[m.from] += m.bytes;
        out.received_bytes[m.to] += m.bytes;
      }
      sg4::Comm::wait_all(comms);
    }
    return sg4::Engine::get_clock() - start;
  };
  sg4::Actor::create("aggregation", hosts[participants.front()], [&] {
    keys_s = run_phases(keys);
    run_phases(phases);
    unmask_s = run_phases({unmask});
  });
  engine.run();
  out.seconds = sg4::Engine::get_clock();
  out.secure_aggregation_s = keys_s + unmask_s;
  return out;
}

double wan_aggregation_formula_s(const strategies::WanSpec& wan, int participants,
                                 FederatedAggregation aggregation, double update_bytes) {
  if (participants < 2) return 0;
  const double p = participants;
  if (aggregation == FederatedAggregation::kCentral) {
    return 2 * (wan.latency_s + (p - 1) * update_bytes / wan.bandwidth_Bps);
  }
  return 2 * (p - 1) * (wan.latency_s + update_bytes / (p * wan.bandwidth_Bps));
}

PaillierCosts paillier_costs(const strategies::HomomorphicSpec& h) {
  PaillierCosts c{h.key_bits, h.encrypt_s, h.add_s, h.decrypt_s};
  for (const PaillierCosts& m : kPaillierMeasured) {
    if (m.key_bits != h.key_bits) continue;
    if (c.encrypt_s <= 0) c.encrypt_s = m.encrypt_s;
    if (c.add_s <= 0) c.add_s = m.add_s;
    if (c.decrypt_s <= 0) c.decrypt_s = m.decrypt_s;
  }
  STRATA_CHECK(c.encrypt_s > 0 && c.add_s > 0 && c.decrypt_s > 0,
               "Paillier costs: a measured key size or all three costs (the spec reader checks)");
  return c;
}

HeAggregation he_aggregation(const strategies::HomomorphicSpec& h, double values,
                             int participants) {
  const PaillierCosts cost = paillier_costs(h);
  HeAggregation a;
  a.ciphertexts = std::ceil(values / h.values_per_ciphertext);
  a.ciphertext_bytes = a.ciphertexts * 2.0 * h.key_bits / 8.0;
  a.encrypt_s = a.ciphertexts * cost.encrypt_s / h.cores;
  a.add_s = std::max(participants - 1, 0) * a.ciphertexts * cost.add_s / h.cores;
  a.decrypt_s = a.ciphertexts * cost.decrypt_s / h.cores;
  return a;
}

double dp_noise_seconds(double values, double memory_bandwidth_Bps) {
  STRATA_CHECK(memory_bandwidth_Bps > 0, "a memory of positive bandwidth");
  return 3.0 * values * 4.0 / memory_bandwidth_Bps;
}

FederatedReport federated_round(const strategies::FederatedSpec& spec,
                                const std::vector<std::string>& sites,
                                const std::vector<int>& participants,
                                const std::vector<SiteStep>& site_steps, double update_bytes,
                                const std::string& update_dtype, const WanAggregation& wan,
                                int rounds, const std::optional<HeAggregation>& he,
                                double dp_noise_s) {
  STRATA_CHECK(site_steps.size() == sites.size(), "federated_round: a step per site");
  FederatedReport r;
  r.spec = spec;
  r.sites = sites;
  r.participants = participants;
  r.site_steps = site_steps;
  double batch = 0;
  for (int p : participants) {
    r.local_step_s = std::max(r.local_step_s, site_steps.at(p).step_s);
    batch += site_steps.at(p).batch;
  }
  r.local_compute_s = spec.local_steps * r.local_step_s;
  const bool every_step = spec.aggregation == FederatedAggregation::kSyncDp;
  r.he = he;
  r.dp_noise_s = dp_noise_s;
  r.aggregation_s = (every_step ? spec.local_steps : 1) *
                    (wan.seconds + (he ? he->seconds() : 0.0) + dp_noise_s);
  r.round_s = r.local_compute_s + r.aggregation_s;
  r.update_bytes = update_bytes;
  r.update_dtype = update_dtype;
  r.wan = wan;
  r.samples_per_round = batch * spec.local_steps;
  r.rounds = rounds;
  r.time_to_rounds_s = rounds * r.round_s;
  return r;
}

json::Json federated_report_to_json(const FederatedReport& r) {
  const bool every_step = r.spec.aggregation == FederatedAggregation::kSyncDp;
  const double aggregations = every_step ? r.spec.local_steps : 1;
  json::Json sites = json::Json::array();
  for (std::size_t i = 0; i < r.sites.size(); ++i) {
    sites.push_back({{"site", r.sites[i]},
                     {"gpus", r.site_steps[i].gpus},
                     {"local_step_s", r.site_steps[i].step_s},
                     {"batch", r.site_steps[i].batch},
                     {"sent_bytes_per_round", r.wan.sent_bytes[i] * aggregations},
                     {"received_bytes_per_round", r.wan.received_bytes[i] * aggregations}});
  }
  json::Json participants = json::Json::array();
  for (int p : r.participants) participants.push_back(r.sites[p]);
  json::Json he = nullptr;
  if (r.he) {
    const PaillierCosts c = paillier_costs(*r.spec.homomorphic_encryption);
    he = {{"ciphertexts", r.he->ciphertexts},
          {"ciphertext_bytes", r.he->ciphertext_bytes},
          {"inflation", r.update_bytes > 0 ? r.he->ciphertext_bytes / r.update_bytes : 0.0},
          {"encrypt_s", r.he->encrypt_s},
          {"add_s", r.he->add_s},
          {"decrypt_s", r.he->decrypt_s},
          {"per_operation_s", {{"encrypt", c.encrypt_s}, {"add", c.add_s},
                               {"decrypt", c.decrypt_s}}}};
  }
  return {{"spec", strategies::federated_to_json(r.spec)},
          {"participants", participants},
          {"site_gpus", r.site_steps.empty() ? 0 : r.site_steps.front().gpus},
          {"local_step_s", r.local_step_s},
          {"local_compute_s", r.local_compute_s},
          {"aggregation_s", r.aggregation_s},
          {"secure_aggregation_s", r.wan.secure_aggregation_s * aggregations},
          {"dp_noise_s", r.dp_noise_s * aggregations},
          {"round_s", r.round_s},
          {"update_bytes", r.update_bytes},
          {"update_dtype", r.update_dtype},
          {"homomorphic_encryption", he},
          {"sites", sites},
          {"samples_per_round", r.samples_per_round},
          {"samples_per_s", r.round_s > 0 ? r.samples_per_round / r.round_s : 0.0},
          {"rounds", r.rounds},
          {"time_to_rounds_s", r.time_to_rounds_s},
          {"note", "predicted time per round and per sample, not model quality"}};
}

std::string render_federated_report(const FederatedReport& r) {
  const bool every_step = r.spec.aggregation == FederatedAggregation::kSyncDp;
  const double aggregations = every_step ? r.spec.local_steps : 1;
  std::ostringstream o;
  o << std::fixed << std::setprecision(3);
  o << "\nFederated round (" << strategies::federated_aggregation_name(r.spec.aggregation)
    << ", K = " << r.spec.local_steps << ", " << r.participants.size() << " of "
    << r.sites.size() << " sites";
  if (r.spec.secure_aggregation) o << ", secure aggregation";
  if (r.spec.dp_sigma > 0) o << ", DP noise sigma " << r.spec.dp_sigma;
  o << "):\n";
  o << "  local compute     " << r.local_compute_s << " s (" << r.spec.local_steps << " x "
    << r.local_step_s << " s, the slowest participant's step)\n";
  o << "  aggregation       " << r.aggregation_s << " s: WAN " << r.wan.seconds * aggregations
    << " s";
  if (r.spec.secure_aggregation) {
    o << " (secure aggregation " << r.wan.secure_aggregation_s * aggregations << " s)";
  }
  if (r.he) o << ", HE " << r.he->seconds() * aggregations << " s";
  if (r.dp_noise_s > 0) o << ", DP noise " << r.dp_noise_s * aggregations << " s";
  if (r.he) {
    o << "\n  HE (Paillier " << r.spec.homomorphic_encryption->key_bits << ")  encrypt "
      << r.he->encrypt_s << " s, add " << r.he->add_s << " s, decrypt " << r.he->decrypt_s
      << " s; " << std::setprecision(1) << r.he->ciphertext_bytes / 1e6 << " MB of ciphertext ("
      << (r.update_bytes > 0 ? r.he->ciphertext_bytes / r.update_bytes : 0.0) << "x)"
      << std::setprecision(3);
  }
  o << "\n  round             " << r.round_s << " s\n";
  o << "  update            " << std::setprecision(1) << r.update_bytes / 1e6 << " MB ("
    << r.update_dtype << ")\n";
  for (std::size_t i = 0; i < r.sites.size(); ++i) {
    o << "  site " << std::left << std::setw(12) << r.sites[i] << std::right << std::setw(5)
      << r.site_steps[i].gpus << " GPUs, step " << std::setprecision(3)
      << r.site_steps[i].step_s << " s, " << std::setprecision(0) << r.site_steps[i].batch
      << " seq; sends " << std::setprecision(1) << std::setw(10)
      << r.wan.sent_bytes[i] * aggregations / 1e6 << " MB, receives "
      << std::setw(10) << r.wan.received_bytes[i] * aggregations / 1e6 << " MB per round\n";
  }
  o << std::setprecision(3) << "  samples/s         "
    << (r.round_s > 0 ? r.samples_per_round / r.round_s : 0.0) << "\n";
  o << "  " << r.rounds << " rounds        " << r.time_to_rounds_s << " s ("
    << r.time_to_rounds_s / 3600 << " h)\n";
  o << "  (predicted time per round and per sample, not model quality)\n";
  return o.str();
}

}  // namespace strata::sim
