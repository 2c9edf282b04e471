// The link face of the CostModel: collective_seconds of the roofline is the alpha-beta time of
// the algorithm the simulator chooses (choose_algorithm, which sim/collectives runs), at the line
// rates of the cluster spec scaled by the table's link efficiencies, for groups inside a node,
// across nodes (hierarchical, tree, flat ring over an uneven group) and on a heterogeneous
// cluster. tests/sim checks the same answers against the simulated flows.
#include "profiler/link_model.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "profiler/roofline.hpp"
#include "test_tables.hpp"
#include "tests/strategies/test_models.hpp"

namespace strata::profiler {
namespace {

using strategies::CollectiveKind;

constexpr double kNvSwitch = 0.5;  // test link efficiencies
constexpr double kPcie = 0.75;
constexpr double kNetwork = 0.8;
constexpr double kMiB = 1 << 20;

RooflineCostModel model() {
  Efficiencies e = parse_efficiencies(testing::table_json());
  LinkEfficiencies links;
  links.nvswitch = kNvSwitch;
  links.pcie = kPcie;
  links.network = kNetwork;
  e.set_links(links);
  return RooflineCostModel(e);
}

// Test cluster (tests/strategies/test_models.hpp): 300 GB/s and 2 us inside a node, 8 NICs of
// 25 GB/s and 5 us between nodes.
NodeMap choosing_map(const strategies::ClusterSpec& c) {
  NodeMap n;
  n.intra_latency_s = 2e-6;
  n.intra_bandwidth_Bps = 300e9 * kNvSwitch;
  n.inter_latency_s = 5e-6;
  n.inter_bandwidth_Bps = 25e9 * kNetwork;
  for (int r = 0; r < c.total_gpus(); ++r)
    n.node_of_rank.push_back(r / c.node_groups[0].gpus_per_node);
  return n;
}

TEST(LinkFace, LinkEfficienciesAreTheTablesLinks) {
  const LinkEfficiencies l = model().link_efficiencies();
  EXPECT_EQ(l.nvswitch, kNvSwitch);
  EXPECT_EQ(l.pcie, kPcie);
  EXPECT_EQ(l.network, kNetwork);
  EXPECT_EQ(l.shared, 1.0);
}

TEST(LinkFace, InsideANodeTheRingAtTheScaledPortBandwidth) {
  const auto c = strategies::testing::cluster(2, 8);
  const std::vector<int> node1 = {8, 9, 10, 11, 12, 13, 14, 15};
  for (CollectiveKind kind :
       {CollectiveKind::kAllReduce, CollectiveKind::kAllGather, CollectiveKind::kReduceScatter,
        CollectiveKind::kAllToAll, CollectiveKind::kBroadcast}) {
    EXPECT_EQ(choose_algorithm(kind, node1, 64 * kMiB, nullptr),
              kind == CollectiveKind::kAllToAll ? Algorithm::kAllPairs : Algorithm::kRing);
    EXPECT_DOUBLE_EQ(model().collective_seconds(kind, node1, 64 * kMiB, c),
                     alpha_beta_seconds(kind, 8, 64 * kMiB, 2e-6, 300e9 * kNvSwitch))
        << strategies::collective_name(kind);
  }
  EXPECT_EQ(model().collective_seconds(CollectiveKind::kAllReduce, {3}, 64 * kMiB, c), 0);
}

TEST(LinkFace, AcrossNodesTheChosenAlgorithmsTime) {
  const auto c = strategies::testing::cluster(2, 8);
  const NodeMap nodes = choosing_map(c);
  const std::vector<int> group = {0, 1, 2, 3, 8, 9, 10, 11};  // 2 nodes of 4
  // Large: hierarchical, far below the flat ring over the network.
  const double large = 256 * kMiB;
  const double h = hierarchical_seconds(CollectiveKind::kAllReduce, 2, 4, large, nodes);
  EXPECT_LT(h, alpha_beta_seconds(CollectiveKind::kAllReduce, 8, large, 5e-6, 25e9 * kNetwork));
  EXPECT_EQ(choose_algorithm(CollectiveKind::kAllReduce, group, large, &nodes),
            Algorithm::kHierarchical);
  EXPECT_DOUBLE_EQ(model().collective_seconds(CollectiveKind::kAllReduce, group, large, c), h);
  EXPECT_DOUBLE_EQ(model().collective_seconds(CollectiveKind::kReduceScatter, group, large, c),
                   hierarchical_seconds(CollectiveKind::kReduceScatter, 2, 4, large, nodes));
  // An uneven group (3 members on node 0, 1 on node 1): the flat ring over the network.
  const std::vector<int> uneven = {0, 1, 2, 8};
  EXPECT_EQ(choose_algorithm(CollectiveKind::kAllGather, uneven, large, &nodes), Algorithm::kRing);
  EXPECT_DOUBLE_EQ(model().collective_seconds(CollectiveKind::kAllGather, uneven, large, c),
                   alpha_beta_seconds(CollectiveKind::kAllGather, 4, large, 5e-6, 25e9 * kNetwork));
  // Broadcast has no hierarchical form: a chain, over the network (all-to-all: AllToAll below).
  EXPECT_DOUBLE_EQ(model().collective_seconds(CollectiveKind::kBroadcast, group, large, c),
                   alpha_beta_seconds(CollectiveKind::kBroadcast, 8, large, 5e-6, 25e9 * kNetwork));
}

TEST(LinkFace, SmallAllReduceOverManyNodesIsTheTree) {
  const auto c = strategies::testing::cluster(16, 1);
  const NodeMap nodes = choosing_map(c);
  std::vector<int> all(16);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(choose_algorithm(CollectiveKind::kAllReduce, all, 1024, &nodes), Algorithm::kTree);
  EXPECT_DOUBLE_EQ(model().collective_seconds(CollectiveKind::kAllReduce, all, 1024, c),
                   tree_seconds(16, 1, 1024, nodes));
  // 8 network latencies (4 levels up, 4 down) against the ring's 30.
  EXPECT_NEAR(tree_seconds(16, 1, 1024, nodes), 8 * 5e-6 + 14 * 1024 / (25e9 * kNetwork), 1e-15);
  // Bandwidth-bound: the ring.
  EXPECT_EQ(choose_algorithm(CollectiveKind::kAllReduce, all, 64 * kMiB, &nodes), Algorithm::kRing);
  EXPECT_DOUBLE_EQ(
      model().collective_seconds(CollectiveKind::kAllReduce, all, 64 * kMiB, c),
      alpha_beta_seconds(CollectiveKind::kAllReduce, 16, 64 * kMiB, 5e-6, 25e9 * kNetwork));
}

TEST(LinkFace, HeterogeneousClusterRingsUseTheirNodesFabric) {
  // Node group 1 (ranks 16-23) is a PCIe box of 64 GB/s and 3 us.
  auto c = strategies::testing::cluster(2, 8);
  strategies::NodeGroup pcie = c.node_groups[0];
  pcie.name = "pcie";
  pcie.nodes = 1;
  pcie.intra_node = {strategies::IntraFabric::kPcie, 64e9, 3e-6};
  c.node_groups.push_back(pcie);
  const NodeMap map = node_map(c, c.total_gpus(), model().link_efficiencies());
  EXPECT_EQ(map.node_of_rank[15], 1);
  EXPECT_EQ(map.node_of_rank[16], 2);
  EXPECT_EQ(map.intra_bandwidth_Bps, 300e9 * kNvSwitch);  // the first group's fabric chooses
  const std::vector<int> box = {16, 17, 18, 19};
  EXPECT_DOUBLE_EQ(model().collective_seconds(CollectiveKind::kAllReduce, box, 8 * kMiB, c),
                   alpha_beta_seconds(CollectiveKind::kAllReduce, 4, 8 * kMiB, 3e-6, 64e9 * kPcie));
  EXPECT_EQ(ring_hop_latency(c, map.node_of_rank, box), 3e-6);
  EXPECT_EQ(ring_hop_latency(c, map.node_of_rank, {7, 16}), 5e-6);
}

// NCCL's software latency (tuning.cc of NCCL 2.7-2.8, cited in profiler/efficiencies.json), by
// hand: a ring step costs 3.4 us over NVLink and 9.6 us across nodes with the Simple protocol,
// 0.47 and 2.7 us with LL, plus 8.4 us (Simple) or 3.6 us (LL) per call.
TEST(LinkFace, NcclCostIsItsTuningModel) {
  NodeMap nodes;
  nodes.nccl = true;
  nodes.intra_nvlink = true;
  const CollectiveKind ar = CollectiveKind::kAllReduce, ag = CollectiveKind::kAllGather;
  // 8 ranks in one node, 1 GiB at 5 ms of bandwidth: Simple, 8.4 + 14 x 3.4 = 56 us.
  NcclCost c = nccl_cost(ar, Algorithm::kRing, 8, 1, 8, 1024 * kMiB, 5e-3, nodes);
  EXPECT_FALSE(c.ll);
  EXPECT_NEAR(c.latency_s, 56.0e-6, 1e-12);
  EXPECT_NEAR(c.seconds, 56.0e-6 + 5e-3, 1e-12);
  // 1 KiB (5 ns of bandwidth): LL, 3.6 + 14 x 0.47 = 10.18 us, the bytes at a quarter.
  c = nccl_cost(ar, Algorithm::kRing, 8, 1, 8, 1024, 5e-9, nodes);
  EXPECT_TRUE(c.ll);
  EXPECT_NEAR(c.seconds, 10.18e-6 + 4 * 5e-9, 1e-12);
  // 16 nodes of one rank, 64 MiB: 30 network steps, x1.9 (the ring's plateau on large
  // multi-node all-reduces): (8.4 + 30 x 9.6) x 1.9 = 563.16 us.
  c = nccl_cost(ar, Algorithm::kRing, 16, 16, 1, 64 * kMiB, 1e-3, nodes);
  EXPECT_FALSE(c.ll);
  EXPECT_NEAR(c.latency_s, 563.16e-6, 1e-12);
  // The tree over the same 16 nodes, 1 KiB: LL, 4.4 + 2 x 4 levels x 5.0 = 44.4 us; Simple
  // would be 2 x 4 x 50 = 400 us.
  c = nccl_cost(ar, Algorithm::kTree, 16, 16, 1, 1024, 1e-8, nodes);
  EXPECT_TRUE(c.ll);
  EXPECT_NEAR(c.seconds, 44.4e-6 + 3.8 * 1e-8, 1e-12);
  // An all-gather over 4 nodes of 8 (31 steps, 3 across nodes), 256 MiB: Simple, no plateau,
  // 8.4 + 28 x 3.4 + 3 x 9.6 = 132.4 us.
  c = nccl_cost(ag, Algorithm::kRing, 32, 4, 8, 256 * kMiB, 2e-3, nodes);
  EXPECT_FALSE(c.ll);
  EXPECT_NEAR(c.latency_s, 132.4e-6, 1e-12);
  // PCIe hops: 8.4 + 14 x 5.7 = 88.2 us.
  nodes.intra_nvlink = false;
  EXPECT_NEAR(nccl_cost(ar, Algorithm::kRing, 8, 1, 8, 1024 * kMiB, 5e-3, nodes).latency_s,
              88.2e-6, 1e-12);
}

// The link face adds what NCCL's estimate exceeds the flows' alpha-beta time by, only with the
// table's software_latency model on and only for NCCL's collectives on GPUs.
TEST(LinkFace, CollectiveSecondsAddNcclsSoftwareLatency) {
  const auto c = strategies::testing::cluster(2, 8);  // 2 us per intra-node hop
  LinkEfficiencies links;
  const std::vector<int> node0 = {0, 1, 2, 3, 4, 5, 6, 7};
  const double bytes = 1024 * kMiB;
  const double ab = collective_alpha_beta_seconds(CollectiveKind::kAllReduce, node0, bytes, c, links);
  EXPECT_DOUBLE_EQ(collective_seconds(CollectiveKind::kAllReduce, node0, bytes, c, links), ab);
  links.nccl_latency = true;
  // 56 us of NCCL latency against the flows' 14 x 2 us.
  EXPECT_NEAR(collective_seconds(CollectiveKind::kAllReduce, node0, bytes, c, links) - ab,
              56e-6 - 28e-6, 1e-12);
  // Point-to-point collectives and CPU clusters: none.
  EXPECT_DOUBLE_EQ(collective_seconds(CollectiveKind::kRingShift, node0, bytes, c, links),
                   collective_alpha_beta_seconds(CollectiveKind::kRingShift, node0, bytes, c, links));
  auto cpu = c;
  cpu.node_groups[0].gpu.kind = strategies::DeviceKind::kCpu;
  EXPECT_DOUBLE_EQ(collective_seconds(CollectiveKind::kAllReduce, node0, bytes, cpu, links),
                   collective_alpha_beta_seconds(CollectiveKind::kAllReduce, node0, bytes, cpu,
                                                 links));
  // The bundled table turns it on.
  EXPECT_TRUE(load_efficiencies(default_efficiencies_path()).links().nccl_latency);
}

}  // namespace
}  // namespace strata::profiler
