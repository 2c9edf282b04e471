// strategy.federated: parsing, JSON, the checks against a cluster's sites (federated.hpp).
#include "strategies/federated.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace strata::strategies {

namespace {

const std::vector<std::string> kAggregations = {"central", "ring", "sync_dp"};

// A finite number in [lo, hi] (or (lo, hi] with open_low); `rule` says the range in words.
double read_in(json::ObjectReader& r, const std::string& key, double fallback, double lo,
               double hi, bool open_low, const std::string& rule) {
  const double v = r.get_number_or(key, fallback);
  const bool low_ok = open_low ? v > lo : v >= lo;
  if (!(low_ok && v <= hi)) json::fail(r.field(key), r.get_raw(key), rule);
  return v;
}

HomomorphicSpec parse_homomorphic(json::ObjectReader r) {
  r.finish({"scheme", "key_bits", "values_per_ciphertext", "cores", "encrypt_s", "add_s",
            "decrypt_s"});
  detail::read_choice(r, "scheme", {"paillier"}, 0);
  HomomorphicSpec h;
  h.encrypt_s = read_in(r, "encrypt_s", 0, 0, 1e3, false, "must be seconds per operation >= 0");
  h.add_s = read_in(r, "add_s", 0, 0, 1e3, false, "must be seconds per operation >= 0");
  h.decrypt_s = read_in(r, "decrypt_s", 0, 0, 1e3, false, "must be seconds per operation >= 0");
  const bool costs_given = h.encrypt_s > 0 && h.add_s > 0 && h.decrypt_s > 0;
  if (r.has("key_bits")) {
    const long long bits = r.get_int("key_bits");
    const bool measured = bits == 1024 || bits == 2048 || bits == 3072;
    if (!measured && !(costs_given && bits >= 1024 && bits <= 16384 && bits % 256 == 0)) {
      json::fail(r.field("key_bits"), bits,
                 "must be 1024, 2048 or 3072 (the sizes whose operation costs were measured, "
                 "sim/federated.hpp), or a multiple of 256 from 1024 to 16384 with encrypt_s, "
                 "add_s and decrypt_s all given");
    }
    h.key_bits = static_cast<int>(bits);
  }
  if (r.has("values_per_ciphertext")) {
    const long long v = r.get_int("values_per_ciphertext");
    if (v < 1 || v > h.key_bits / 16) {
      json::fail(r.field("values_per_ciphertext"), v,
                 "must be from 1 to key_bits / 16 = " + std::to_string(h.key_bits / 16) +
                     " (quantized values of at least 16 bits packed into one plaintext)");
    }
    h.values_per_ciphertext = static_cast<int>(v);
  }
  if (r.has("cores")) {
    const long long c = r.get_int("cores");
    if (c < 1 || c > 100000) json::fail(r.field("cores"), c, "must be from 1 to 100000");
    h.cores = static_cast<int>(c);
  }
  return h;
}

json::Json homomorphic_to_json(const HomomorphicSpec& h) {
  json::Json j = {{"scheme", "paillier"},
                  {"key_bits", h.key_bits},
                  {"values_per_ciphertext", h.values_per_ciphertext},
                  {"cores", h.cores}};
  if (h.encrypt_s > 0) j["encrypt_s"] = h.encrypt_s;
  if (h.add_s > 0) j["add_s"] = h.add_s;
  if (h.decrypt_s > 0) j["decrypt_s"] = h.decrypt_s;
  return j;
}

}  // namespace

const char* federated_aggregation_name(FederatedAggregation a) {
  return kAggregations[static_cast<int>(a)].c_str();
}

FederatedSpec parse_federated(json::ObjectReader r) {
  r.finish({"local_steps", "aggregation", "participation", "dropout", "secure_aggregation",
            "dp_noise", "homomorphic_encryption"});
  FederatedSpec f;
  if (r.has("local_steps")) {
    const long long k = r.get_int("local_steps");
    if (k < 1 || k > 1000000) {
      json::fail(r.field("local_steps"), k,
                 "must be from 1 to 1000000 (the local steps each site takes between "
                 "aggregations)");
    }
    f.local_steps = static_cast<int>(k);
  }
  f.aggregation = static_cast<FederatedAggregation>(
      detail::read_choice(r, "aggregation", kAggregations, 0));
  f.participation = read_in(r, "participation", 1.0, 0, 1, true,
                            "must be in (0, 1]: the share of the sites taking part in a round");
  if (r.has("dropout")) {
    const json::Json& d = r.get_raw("dropout");
    if (d.is_array()) {
      for (std::size_t i = 0; i < d.size(); ++i) {
        if (!d[i].is_string() || d[i].get<std::string>().empty()) {
          json::fail(r.field("dropout") + "[" + std::to_string(i) + "]", d[i],
                     "must be a site's name");
        }
        f.dropout_sites.push_back(d[i].get<std::string>());
      }
    } else {
      f.dropout_probability = read_in(r, "dropout", 0, 0, 1, false,
                                      "must be a list of site names or a probability in [0, 1)");
      if (f.dropout_probability >= 1) {
        json::fail(r.field("dropout"), d, "a probability must be below 1 (every site gone)");
      }
    }
  }
  f.secure_aggregation = r.get_bool_or("secure_aggregation", false);
  if (r.has("dp_noise")) {
    json::ObjectReader n = r.get_object("dp_noise");
    n.finish({"sigma", "clip"});
    f.dp_sigma = read_in(n, "sigma", 0, 0, 1e6, false, "must be a noise multiplier >= 0");
    f.dp_clip = read_in(n, "clip", 1.0, 0, 1e12, true, "must be a clipping norm > 0");
  }
  if (r.has("homomorphic_encryption")) {
    f.homomorphic_encryption = parse_homomorphic(r.get_object("homomorphic_encryption"));
    if (f.aggregation != FederatedAggregation::kCentral) {
      json::fail(r.field("aggregation"), federated_aggregation_name(f.aggregation),
                 "homomorphic_encryption needs aggregation \"central\" (an aggregator that adds "
                 "ciphertexts it cannot read)");
    }
    if (f.secure_aggregation) {
      json::fail(r.field("secure_aggregation"), true,
                 "choose one of secure_aggregation and homomorphic_encryption: both hide the "
                 "sites' updates from the aggregator");
    }
  }
  return f;
}

json::Json federated_to_json(const FederatedSpec& f) {
  json::Json j = {{"local_steps", f.local_steps},
                  {"aggregation", federated_aggregation_name(f.aggregation)},
                  {"participation", f.participation},
                  {"secure_aggregation", f.secure_aggregation},
                  {"dp_noise", {{"sigma", f.dp_sigma}, {"clip", f.dp_clip}}}};
  if (f.homomorphic_encryption) {
    j["homomorphic_encryption"] = homomorphic_to_json(*f.homomorphic_encryption);
  }
  if (!f.dropout_sites.empty()) {
    j["dropout"] = f.dropout_sites;
  } else if (f.dropout_probability > 0) {
    j["dropout"] = f.dropout_probability;
  }
  return j;
}

void validate_federated(const ClusterSpec& c, const StrategySpec& s) {
  if (!s.federated) return;
  const FederatedSpec& f = *s.federated;
  const std::vector<std::string> sites = c.sites();
  if (sites.size() < 2) {
    json::fail("strategy.federated", federated_to_json(f),
               "federated training needs a cluster with two or more sites; cluster '" + c.name +
                   "' has one (name each node group's \"site\" and give cluster.wan)");
  }
  // Each site runs the strategy's model-parallel grid; its data-parallel degree follows its GPUs.
  const int grid = s.tp * s.pp * s.cp;
  for (std::size_t i = 0; i < c.node_groups.size(); ++i) {
    const std::string& site = c.node_groups[i].site;
    if (c.site_gpus(site) % grid != 0) {
      json::fail("cluster.node_groups[" + std::to_string(i) + "].site", site,
                 "has " + std::to_string(c.site_gpus(site)) +
                     " GPUs, not a multiple of the strategy's tp x pp x cp = " +
                     std::to_string(grid) +
                     " (each site runs the strategy with dp = its GPUs / (tp x pp x cp))");
    }
  }
  for (std::size_t i = 0; i < f.dropout_sites.size(); ++i) {
    const std::string& d = f.dropout_sites[i];
    if (std::find(sites.begin(), sites.end(), d) == sites.end()) {
      std::string known;
      for (const std::string& site : sites) known += (known.empty() ? "" : ", ") + site;
      json::fail("strategy.federated.dropout[" + std::to_string(i) + "]", d,
                 "is not a site of cluster '" + c.name + "' (its sites: " + known + ")");
    }
  }
  if (f.dropout_sites.size() >= sites.size()) {
    json::fail("strategy.federated.dropout", f.dropout_sites,
               "every site would drop out; at least one must take part");
  }
}

std::vector<int> participating_sites(const ClusterSpec& c, const FederatedSpec& f) {
  const std::vector<std::string> sites = c.sites();
  std::vector<int> available;
  for (std::size_t i = 0; i < sites.size(); ++i) {
    const auto& d = f.dropout_sites;
    if (std::find(d.begin(), d.end(), sites[i]) == d.end()) {
      available.push_back(static_cast<int>(i));
    }
  }
  const double expected =
      static_cast<double>(available.size()) * f.participation * (1 - f.dropout_probability);
  const auto count = std::clamp<std::size_t>(
      static_cast<std::size_t>(std::ceil(expected - 1e-9)), 1, available.size());
  available.resize(count);
  return available;
}

ClusterSpec site_cluster(const ClusterSpec& c, const std::string& site) {
  ClusterSpec out = c;
  out.name = c.name + "/" + site;
  out.wan.reset();
  out.node_groups.clear();
  for (const NodeGroup& g : c.node_groups) {
    if (g.site != site) continue;
    out.node_groups.push_back(g);
    out.node_groups.back().site.clear();
  }
  STRATA_CHECK(!out.node_groups.empty(), "site_cluster: a site of the cluster");
  return out;
}

StrategySpec site_strategy(const StrategySpec& s, int first_site_gpus, int site_gpus) {
  STRATA_CHECK(first_site_gpus > 0 && site_gpus % (s.tp * s.pp * s.cp) == 0,
               "site_strategy: validate_federated() checked the site sizes");
  StrategySpec out = s;
  out.federated.reset();
  out.dp = site_gpus / (s.tp * s.pp * s.cp);
  out.global_batch_size = s.global_batch_size / s.dp * out.dp;
  return out;
}

}  // namespace strata::strategies
