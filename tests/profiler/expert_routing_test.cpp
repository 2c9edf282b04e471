// Uneven all-to-all inputs and the all-to-all link face: the byte matrix of an expert-parallel
// dispatch from each token distribution (uniform, Zipf, explicit) against hand-computed shares,
// bad inputs with the field named, and the all-to-all's alpha-beta times and algorithm choice
// (all pairs, pairwise, hierarchical) against the formulas written out by hand. tests/sim
// checks the same times against the simulated flows.
#include "profiler/expert_routing.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "profiler/link_model.hpp"
#include "profiler/roofline.hpp"
#include "test_tables.hpp"
#include "tests/strategies/test_models.hpp"

namespace strata::profiler {
namespace {

using strategies::CollectiveKind;

// Runs `f`, expects a ConfigError whose message contains every one of `parts`.
template <typename F>
void expect_config_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no ConfigError; expected one mentioning " << parts.front();
  } catch (const ConfigError& e) {
    for (const std::string& p : parts) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
    }
  }
}

TEST(ExpertRouting, UniformMatrixIsSizeOverMembers) {
  const ByteMatrix m = uniform_byte_matrix(4, 8e6);
  ASSERT_EQ(m.size(), 4u);
  for (const auto& row : m) {
    ASSERT_EQ(row.size(), 4u);
    for (double b : row) EXPECT_DOUBLE_EQ(b, 2e6);
  }
  EXPECT_EQ(transposed(m), m);
}

TEST(ExpertRouting, UniformDispatchSplitsEvenly) {
  // 4 ranks of 2 experts each; 1024 tokens of hidden 4096 in bf16 (8192 B), top-2: every rank
  // routes 1024 x 2 x 8192 = 16 MiB, a quarter to each rank (its own included).
  const ByteMatrix m = expert_dispatch_bytes(4, 8, 2, 1024, 4096 * 2, {});
  ASSERT_EQ(m.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) EXPECT_DOUBLE_EQ(m[i][j], 1024.0 * 2 * 8192 / 4);
  }
}

TEST(ExpertRouting, ZipfSharesAndTheirDispatch) {
  ExpertLoad zipf;
  zipf.distribution = TokenDistribution::kZipf;
  zipf.zipf_exponent = 1.0;
  // 4 experts, s = 1: 1, 1/2, 1/3, 1/4 over H = 25/12: 12/25, 6/25, 4/25, 3/25.
  const std::vector<double> shares = expert_token_shares(4, zipf);
  ASSERT_EQ(shares.size(), 4u);
  EXPECT_NEAR(shares[0], 12.0 / 25, 1e-15);
  EXPECT_NEAR(shares[1], 6.0 / 25, 1e-15);
  EXPECT_NEAR(shares[2], 4.0 / 25, 1e-15);
  EXPECT_NEAR(shares[3], 3.0 / 25, 1e-15);
  // s = 0 is uniform.
  zipf.zipf_exponent = 0;
  for (double s : expert_token_shares(4, zipf)) EXPECT_DOUBLE_EQ(s, 0.25);
  // ep 2 over those 4 experts (rank 0 holds experts 0-1: 18/25; rank 1 holds 2-3: 7/25), top-1,
  // 100 tokens of 10 B: every rank sends 1000 B, 720 to rank 0 and 280 to rank 1.
  zipf.zipf_exponent = 1.0;
  const ByteMatrix m = expert_dispatch_bytes(2, 4, 1, 100, 10, zipf);
  EXPECT_NEAR(m[0][0], 720, 1e-9);
  EXPECT_NEAR(m[0][1], 280, 1e-9);
  EXPECT_NEAR(m[1][0], 720, 1e-9);
  EXPECT_NEAR(m[1][1], 280, 1e-9);
  // The combine returns along the same routes.
  const ByteMatrix c = transposed(m);
  EXPECT_NEAR(c[0][1], 720, 1e-9);
  EXPECT_NEAR(c[1][0], 280, 1e-9);
}

TEST(ExpertRouting, ExplicitFractions) {
  ExpertLoad load;
  load.distribution = TokenDistribution::kExplicit;
  load.fractions = {0.1, 0.2, 0.3, 0.4};
  // ep 4, one expert each, top-2: 10 tokens of 100 B route 2000 B per rank.
  const ByteMatrix m = expert_dispatch_bytes(4, 4, 2, 10, 100, load);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(m[i][0], 200, 1e-9);
    EXPECT_NEAR(m[i][1], 400, 1e-9);
    EXPECT_NEAR(m[i][2], 600, 1e-9);
    EXPECT_NEAR(m[i][3], 800, 1e-9);
  }
}

TEST(ExpertRouting, BadInputsNameTheField) {
  ExpertLoad zipf;
  zipf.distribution = TokenDistribution::kZipf;
  zipf.zipf_exponent = -0.5;
  expect_config_error([&] { expert_token_shares(4, zipf); },
                      {"expert_load.zipf_exponent = -0.5", ">= 0"});
  ExpertLoad expl;
  expl.distribution = TokenDistribution::kExplicit;
  expl.fractions = {0.5, 0.5};
  expect_config_error([&] { expert_token_shares(4, expl); },
                      {"expert_load.fractions has 2 entries", "one per expert (4)"});
  expl.fractions = {0.5, 0.6, -0.1, 0.0};
  expect_config_error([&] { expert_token_shares(4, expl); },
                      {"expert_load.fractions[2] = -0.1", ">= 0"});
  expl.fractions = {0.5, 0.5, 0.5, 0.0};
  expect_config_error([&] { expert_token_shares(4, expl); },
                      {"expert_load.fractions sum to 1.5", "must sum to 1"});
  expect_config_error([&] { expert_dispatch_bytes(3, 8, 2, 10, 100, {}); },
                      {"num_experts = 8", "multiple of ep (3)"});
  expect_config_error([&] { expert_dispatch_bytes(0, 8, 2, 10, 100, {}); }, {"ep = 0"});
  expect_config_error([&] { expert_dispatch_bytes(4, 8, 9, 10, 100, {}); },
                      {"top_k = 9", "[1, num_experts = 8]"});
  expect_config_error([&] { expert_dispatch_bytes(4, 8, 2, -1, 100, {}); },
                      {"tokens_per_rank = -1"});
  expect_config_error([&] { expert_dispatch_bytes(4, 8, 2, 10, 0, {}); },
                      {"bytes_per_token = 0", "> 0"});
  // Zipf s = 1 over 4 experts gives expert 0 12/25 = 0.48 of the copies: fine for top-1, more
  // than a top-4 router can send it (each token picks 4 distinct experts: at most 1/4).
  zipf.zipf_exponent = 1.0;
  EXPECT_NO_THROW(expert_dispatch_bytes(4, 4, 1, 10, 100, zipf));
  expect_config_error([&] { expert_dispatch_bytes(4, 4, 4, 10, 100, zipf); },
                      {"expert 0 would receive 0.48", "1/top_k = 0.25"});
  // Byte matrices.
  expect_config_error(
      [&] {
        check_byte_matrix({{0, 1}, {1, 0}}, 3);
      },
      {"all_to_all.bytes has 2 rows", "(3)"});
  expect_config_error(
      [&] {
        check_byte_matrix({{0, 1}, {1}}, 2);
      },
      {"all_to_all.bytes[1] has 1 entries"});
  expect_config_error(
      [&] {
        check_byte_matrix({{0, 1}, {NAN, 0}}, 2);
      },
      {"all_to_all.bytes[1][0] = nan", "finite and >= 0"});
  expect_config_error(
      [&] {
        check_byte_matrix({{0, -2}, {1, 0}}, 2);
      },
      {"all_to_all.bytes[0][1] = -2"});
  expect_config_error([&] { uniform_byte_matrix(0, 1); }, {"members = 0"});
}

// The all-to-all's link face. Test cluster at line rate: 300 GB/s and 2 us inside a node, a
// 25 GB/s NIC per GPU and 5 us between nodes.
NodeMap line_rate(const strategies::ClusterSpec& c) {
  NodeMap n;
  n.intra_latency_s = 2e-6;
  n.intra_bandwidth_Bps = 300e9;
  n.inter_latency_s = 5e-6;
  n.inter_bandwidth_Bps = 25e9;
  for (int r = 0; r < c.total_gpus(); ++r)
    n.node_of_rank.push_back(r / c.node_groups[0].gpus_per_node);
  return n;
}

TEST(AllToAllLinkFace, FormulasByHand) {
  const auto c = strategies::testing::cluster(2, 2);
  const NodeMap nodes = line_rate(c);
  const double S = 4.0 * (1 << 20);  // b = S/4 = 1 MiB per pair over 4 members
  const double b = S / 4;
  // One node of 4: all pairs share each port 3 ways; pairwise runs 3 rounds of one block.
  EXPECT_DOUBLE_EQ(all_to_all_seconds(Algorithm::kAllPairs, {4}, S, nodes), 2e-6 + 3 * b / 300e9);
  EXPECT_DOUBLE_EQ(all_to_all_seconds(Algorithm::kPairwise, {4}, S, nodes), 3 * (2e-6 + b / 300e9));
  // 2 nodes of 2: all pairs: 2 blocks through each NIC, 1 through each port, in parallel.
  EXPECT_DOUBLE_EQ(all_to_all_seconds(Algorithm::kAllPairs, {2, 2}, S, nodes), 5e-6 + 2 * b / 25e9);
  EXPECT_DOUBLE_EQ(all_to_all_seconds(Algorithm::kPairwise, {2, 2}, S, nodes),
                   3 * (5e-6 + b / 25e9));
  // Hierarchical: phase 1 one flow of 2 blocks per port, phase 2 one flow of 2 blocks per NIC.
  EXPECT_DOUBLE_EQ(all_to_all_seconds(Algorithm::kHierarchical, {2, 2}, S, nodes),
                   2e-6 + 2 * b / 300e9 + 5e-6 + 2 * b / 25e9);
  // An uneven group (3 on one node, 1 on the other): the lone member's NIC carries 3 blocks.
  EXPECT_DOUBLE_EQ(all_to_all_seconds(Algorithm::kAllPairs, {3, 1}, S, nodes), 5e-6 + 3 * b / 25e9);
  EXPECT_DEATH(all_to_all_seconds(Algorithm::kHierarchical, {3, 1}, S, nodes),
               "a hierarchical all-to-all needs");
  EXPECT_DEATH(all_to_all_seconds(Algorithm::kRing, {4}, S, nodes), "an all-to-all runs as");
}

TEST(AllToAllLinkFace, ChoiceAndCollectiveSeconds) {
  const auto c = strategies::testing::cluster(2, 8);
  const RooflineCostModel cost(parse_efficiencies(testing::table_json()));  // links at 1
  NodeMap nodes = line_rate(c);
  const double S = 64.0 * (1 << 20);
  const std::vector<int> two_by_four = {0, 1, 2, 3, 8, 9, 10, 11};
  const std::vector<int> one_per_node = {3, 11};
  const std::vector<int> uneven = {0, 1, 2, 8};
  const std::vector<int> inside = {8, 9, 10, 11};
  const CollectiveKind a2a = CollectiveKind::kAllToAll;
  EXPECT_EQ(choose_algorithm(a2a, two_by_four, S, &nodes), Algorithm::kHierarchical);
  EXPECT_EQ(choose_algorithm(a2a, one_per_node, S, &nodes), Algorithm::kAllPairs);
  EXPECT_EQ(choose_algorithm(a2a, uneven, S, &nodes), Algorithm::kAllPairs);
  EXPECT_EQ(choose_algorithm(a2a, inside, S, nullptr), Algorithm::kAllPairs);
  EXPECT_EQ(members_per_node(uneven, nodes), (std::vector<int>{3, 1}));
  EXPECT_DOUBLE_EQ(cost.collective_seconds(a2a, two_by_four, S, c),
                   all_to_all_seconds(Algorithm::kHierarchical, {4, 4}, S, nodes));
  EXPECT_DOUBLE_EQ(cost.collective_seconds(a2a, uneven, S, c),
                   all_to_all_seconds(Algorithm::kAllPairs, {3, 1}, S, nodes));
  EXPECT_DOUBLE_EQ(cost.collective_seconds(a2a, inside, S, c),
                   alpha_beta_seconds(a2a, 4, S, 2e-6, 300e9));
  // Forced: choose_collective takes it, and adds no NCCL software latency (all-to-all is
  // point-to-point in NCCL, outside its tuning model).
  nodes.nccl = true;
  const CollectiveChoice forced =
      choose_collective(a2a, two_by_four, S, c, {}, nodes, &nodes, Algorithm::kPairwise);
  EXPECT_EQ(forced.algorithm, Algorithm::kPairwise);
  EXPECT_EQ(forced.software_latency_s, 0);
}

TEST(AllToAllLinkFace, AlgorithmNames) {
  for (Algorithm a : {Algorithm::kAuto, Algorithm::kRing, Algorithm::kHierarchical,
                      Algorithm::kTree, Algorithm::kAllPairs, Algorithm::kPairwise}) {
    EXPECT_EQ(parse_algorithm(algorithm_name(a), "x"), a);
  }
  expect_config_error([] { parse_algorithm("alltoall", "sim.all_to_all_algorithm"); },
                      {"sim.all_to_all_algorithm = \"alltoall\"", "all_pairs, pairwise"});
}

}  // namespace
}  // namespace strata::profiler
