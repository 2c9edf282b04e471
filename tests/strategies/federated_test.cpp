// Federated training across sites (strategies/federated.hpp): cluster sites and WAN, the
// strategy's federated block, their errors, participation, and the unchanged hashes of the
// bundled clusters without sites.
#include "strategies/federated.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/hash.hpp"
#include "expect_config_error.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {
namespace {

using json::Json;
using testing::expect_config_error;

const std::string kRoot = STRATA_SOURCE_DIR;

Json group(const std::string& name, const std::string& site, int gpus = 8) {
  Json g = {{"name", name},
            {"nodes", 1},
            {"gpus_per_node", gpus},
            {"gpu",
             {{"name", "G"},
              {"peak_tflops", {{"bf16", 100}, {"fp16", 100}, {"fp32", 10}}},
              {"memory_bytes", 1000},
              {"memory_bandwidth_GBps", 2000}}}};
  if (!site.empty()) g["site"] = site;
  return g;
}

// Four sites of one node each, a 1 Gb/s WAN of 20 ms.
Json sites_json() {
  return {{"name", "s"},
          {"node_groups",
           Json::array({group("a", "org-a"), group("b", "org-b"), group("c", "org-c"),
                        group("d", "org-d")})},
          {"intra_node", {{"fabric", "nvswitch"}, {"bandwidth_GBps", 300}, {"latency_us", 1}}},
          {"inter_node",
           {{"topology", "fat-tree"},
            {"nics_per_node", 8},
            {"nic_bandwidth_Gbps", 200},
            {"latency_us", 2}}},
          {"wan", {{"bandwidth_Gbps", 1}, {"latency_ms", 20}, {"jitter_ms", 0}}}};
}

StrategySpec strategy(const Json& federated) {
  return parse_strategy({{"name", "f"},
                         {"dp", 8},
                         {"micro_batch_size", 1},
                         {"global_batch_size", 8},
                         {"federated", federated}});
}

TEST(Federated, ClusterSitesAndWanParseAndRoundTrip) {
  const ClusterSpec c = parse_cluster(sites_json());
  EXPECT_EQ(c.sites(), (std::vector<std::string>{"org-a", "org-b", "org-c", "org-d"}));
  EXPECT_EQ(c.site_gpus("org-c"), 8);
  ASSERT_TRUE(c.wan.has_value());
  EXPECT_DOUBLE_EQ(c.wan->bandwidth_Bps, 1e9 / 8);  // 1 Gb/s = 125 MB/s
  EXPECT_DOUBLE_EQ(c.wan->latency_s, 0.020);
  const Json once = to_json(c);
  EXPECT_EQ(once["node_groups"][1]["site"], "org-b");
  EXPECT_DOUBLE_EQ(once["wan"]["bandwidth_GBps"].get<double>(), 0.125);
  EXPECT_FALSE(once["wan"].contains("jitter_ms"));  // 0: not written
  EXPECT_EQ(to_json(parse_cluster(once)), once);
  // A site of two consecutive groups.
  Json two = sites_json();
  two["node_groups"][1]["site"] = "org-a";
  EXPECT_EQ(parse_cluster(two).sites().size(), 3u);
  EXPECT_EQ(parse_cluster(two).site_gpus("org-a"), 16);
}

TEST(Federated, ClusterErrorsNameFieldValueAndRule) {
  Json j = sites_json();
  j["wan"]["bandwidth_Gbps"] = 0;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.wan.bandwidth_Gbps", "0", "bandwidth must be > 0"});
  j = sites_json();
  j["wan"]["latency_ms"] = -1;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.wan.latency_ms", "-1", "must be from 0"});
  j = sites_json();
  j["wan"]["jitter_ms"] = 50;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.wan.jitter_ms", "50", "at most twice latency_ms"});
  j = sites_json();
  j["node_groups"][2].erase("site");
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.node_groups[2].site", "every node group names its site"});
  j = sites_json();
  j["node_groups"][2]["site"] = "org-a";
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.node_groups[2].site", "org-a", "must be consecutive"});
  j = sites_json();
  j.erase("wan");
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.wan", "required key is missing", "4 sites"});
  // A site without nodes: its group has nodes 0.
  j = sites_json();
  j["node_groups"][3]["nodes"] = 0;
  expect_config_error([&] { parse_cluster(j); }, {"cluster.node_groups[3].nodes", "0"});
  // A wan with one site.
  j = sites_json();
  for (auto& g : j["node_groups"]) g.erase("site");
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.wan", "this cluster has one", "remove wan"});
}

TEST(Federated, BundledClustersWithoutSitesKeepTheirHashes) {
  // The hashes of the bundled clusters before sites existed (strata plan's cluster_hash).
  const std::vector<std::pair<std::string, std::string>> hashes = {
      {"dgx-a100-128n", "2a1010ae37d408bc"},   {"dgx-h100-128n", "aa6157f044b9d947"},
      {"hetero-a100-h100", "e39a5520e4a5e3c2"}, {"local-cpu", "dedecf2610a5f905"},
      {"local-cpu-2groups", "112ff66e85926b12"}};
  for (const auto& [name, hash] : hashes) {
    const ClusterSpec c = load_cluster(kRoot + "/configs/clusters/" + name + ".json");
    EXPECT_EQ(fnv1a64_hex(to_json(c).dump()), hash) << name;
    EXPECT_EQ(c.sites().size(), 1u) << name;
  }
  const ClusterSpec four = load_cluster(kRoot + "/configs/clusters/four-sites-a100.json");
  EXPECT_EQ(four.sites().size(), 4u);
  EXPECT_EQ(four.site_gpus("org-d"), 8);
}

TEST(Federated, StrategyBlockParsesAndRoundTrips) {
  const StrategySpec s = strategy({{"local_steps", 10},
                                   {"aggregation", "ring"},
                                   {"participation", 0.5},
                                   {"dropout", {"org-c"}},
                                   {"secure_aggregation", true},
                                   {"dp_noise", {{"sigma", 0.8}, {"clip", 2.0}}}});
  ASSERT_TRUE(s.federated.has_value());
  EXPECT_EQ(s.federated->local_steps, 10);
  EXPECT_EQ(s.federated->aggregation, FederatedAggregation::kRing);
  EXPECT_EQ(s.federated->dropout_sites, std::vector<std::string>{"org-c"});
  EXPECT_TRUE(s.federated->secure_aggregation);
  EXPECT_DOUBLE_EQ(s.federated->dp_sigma, 0.8);
  EXPECT_EQ(to_json(parse_strategy(to_json(s))), to_json(s));
  EXPECT_DOUBLE_EQ(strategy({{"dropout", 0.25}}).federated->dropout_probability, 0.25);
  // Defaults: K 1, central, everyone.
  const FederatedSpec d = *strategy(Json::object()).federated;
  EXPECT_EQ(d.local_steps, 1);
  EXPECT_EQ(d.aggregation, FederatedAggregation::kCentral);
  // Strategies without the block write nothing new.
  Json plain = to_json(strategy(Json::object()));
  plain.erase("federated");
  EXPECT_FALSE(to_json(parse_strategy(plain)).contains("federated"));
}

TEST(Federated, StrategyErrors) {
  expect_config_error([] { strategy({{"local_steps", 0}}); },
                      {"strategy.federated.local_steps = 0", "must be from 1"});
  expect_config_error([] { strategy({{"participation", 0}}); },
                      {"strategy.federated.participation", "must be in (0, 1]"});
  expect_config_error([] { strategy({{"participation", 1.5}}); },
                      {"strategy.federated.participation", "1.5"});
  expect_config_error([] { strategy({{"aggregation", "star"}}); },
                      {"strategy.federated.aggregation", "star"});
  expect_config_error([] { strategy({{"dropout", 1.0}}); },
                      {"strategy.federated.dropout", "below 1"});
  expect_config_error([] { strategy({{"dp_noise", {{"clip", 0}}}}); },
                      {"strategy.federated.dp_noise.clip", "must be a clipping norm > 0"});
  const ClusterSpec sites = parse_cluster(sites_json());
  expect_config_error([&] { validate_federated(sites, strategy({{"dropout", {"org-x"}}})); },
                      {"strategy.federated.dropout[0]", "org-x", "not a site",
                       "org-a, org-b, org-c, org-d"});
  const ClusterSpec one = load_cluster(kRoot + "/configs/clusters/dgx-a100-128n.json");
  expect_config_error([&] { validate_federated(one, strategy(Json::object())); },
                      {"strategy.federated", "two or more sites", "dgx-a100-128n"});
  Json uneven = sites_json();
  uneven["node_groups"][1]["gpus_per_node"] = 4;
  EXPECT_NO_THROW(validate_federated(parse_cluster(uneven), strategy(Json::object())));
  StrategySpec tp8 = strategy(Json::object());
  tp8.tp = 8;
  expect_config_error([&] { validate_federated(parse_cluster(uneven), tp8); },
                      {"cluster.node_groups[1].site = \"org-b\"", "has 4 GPUs",
                       "not a multiple of the strategy's tp x pp x cp = 8"});
  EXPECT_NO_THROW(validate_federated(sites, strategy({{"dropout", {"org-c"}}})));
}

TEST(Federated, HomomorphicEncryptionParsesAndRoundTrips) {
  const StrategySpec s = strategy(
      {{"homomorphic_encryption",
        {{"scheme", "paillier"}, {"key_bits", 3072}, {"values_per_ciphertext", 32},
         {"cores", 16}}}});
  ASSERT_TRUE(s.federated->homomorphic_encryption.has_value());
  const HomomorphicSpec& h = *s.federated->homomorphic_encryption;
  EXPECT_EQ(h.key_bits, 3072);
  EXPECT_EQ(h.values_per_ciphertext, 32);
  EXPECT_EQ(h.cores, 16);
  EXPECT_EQ(h.encrypt_s, 0);  // the measured cost
  EXPECT_EQ(to_json(parse_strategy(to_json(s))), to_json(s));
  // Any multiple of 256 when the three costs are given.
  const StrategySpec own = strategy(
      {{"homomorphic_encryption",
        {{"key_bits", 4096}, {"encrypt_s", 0.05}, {"add_s", 1e-5}, {"decrypt_s", 0.02}}}});
  EXPECT_EQ(own.federated->homomorphic_encryption->key_bits, 4096);
  EXPECT_EQ(to_json(parse_strategy(to_json(own))), to_json(own));
  // Defaults: Paillier 2048, no packing, one core.
  const HomomorphicSpec d =
      *strategy({{"homomorphic_encryption", Json::object()}}).federated->homomorphic_encryption;
  EXPECT_EQ(d.key_bits, 2048);
  EXPECT_EQ(d.values_per_ciphertext, 1);
  EXPECT_EQ(d.cores, 1);
}

TEST(Federated, HomomorphicEncryptionErrors) {
  const auto he = [](Json block) { return Json{{"homomorphic_encryption", block}}; };
  expect_config_error([&] { strategy(he({{"key_bits", 4096}})); },
                      {"strategy.federated.homomorphic_encryption.key_bits = 4096",
                       "1024, 2048 or 3072", "encrypt_s, add_s and decrypt_s all given"});
  expect_config_error([&] { strategy(he({{"scheme", "ckks"}})); },
                      {"homomorphic_encryption.scheme", "ckks"});
  expect_config_error([&] { strategy(he({{"values_per_ciphertext", 129}})); },
                      {"values_per_ciphertext = 129", "key_bits / 16 = 128"});
  expect_config_error([&] { strategy(he({{"cores", 0}})); },
                      {"homomorphic_encryption.cores = 0", "from 1"});
  expect_config_error([&] { strategy(he({{"encrypt_s", -1}})); },
                      {"homomorphic_encryption.encrypt_s = -1", ">= 0"});
  Json ring = he(Json::object());
  ring["aggregation"] = "ring";
  expect_config_error([&] { strategy(ring); },
                      {"strategy.federated.aggregation = \"ring\"", "needs aggregation",
                       "central"});
  Json both = he(Json::object());
  both["secure_aggregation"] = true;
  expect_config_error([&] { strategy(both); },
                      {"strategy.federated.secure_aggregation = true", "choose one"});
}

TEST(Federated, SiteClusterAndSiteStrategy) {
  Json j = sites_json();
  j["node_groups"][1]["nodes"] = 2;
  const ClusterSpec c = parse_cluster(j);
  const ClusterSpec b = site_cluster(c, "org-b");
  EXPECT_EQ(b.total_gpus(), c.site_gpus("org-b"));
  EXPECT_EQ(b.sites(), std::vector<std::string>{""});
  EXPECT_FALSE(b.wan.has_value());
  StrategySpec s = strategy(Json::object());
  s.dp = 4;
  s.tp = 2;
  s.global_batch_size = 32;
  const StrategySpec big = site_strategy(s, 8, c.site_gpus("org-b"));
  EXPECT_EQ(big.dp, c.site_gpus("org-b") / 2);
  EXPECT_EQ(big.global_batch_size, 32 / 4 * big.dp);  // each replica keeps its batch
  EXPECT_EQ(big.tp, 2);
  EXPECT_FALSE(big.federated.has_value());
}

TEST(Federated, ParticipatingSites) {
  const ClusterSpec c = parse_cluster(sites_json());
  EXPECT_EQ(participating_sites(c, *strategy(Json::object()).federated),
            (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(participating_sites(c, *strategy({{"dropout", {"org-b"}}}).federated),
            (std::vector<int>{0, 2, 3}));
  EXPECT_EQ(participating_sites(c, *strategy({{"participation", 0.5}}).federated),
            (std::vector<int>{0, 1}));
  // 4 x (1 - 0.3) = 2.8 sites expected: 3.
  EXPECT_EQ(participating_sites(c, *strategy({{"dropout", 0.3}}).federated).size(), 3u);
  // Never fewer than one.
  EXPECT_EQ(participating_sites(c, *strategy({{"participation", 0.01}}).federated).size(), 1u);
}

}  // namespace
}  // namespace strata::strategies
