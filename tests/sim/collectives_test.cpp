// Collectives as flows: every algorithm against its alpha-beta formula, stepwise and aggregated,
// inside a node and across nodes; the algorithm choice; contention; and the cost model's link
// face against the simulated time. Every simulation runs in a forked child (one engine per
// process).
#include "sim/collectives.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "fixed_cost.hpp"
#include "profiler/link_model.hpp"
#include "profiler/roofline.hpp"
#include "sim/simulate.hpp"
#include "sim_test_util.hpp"
#include "tests/strategies/test_models.hpp"

namespace strata::sim {
namespace {

using strategies::CollectiveKind;
using testing::in_child;
using testing::kLineRate;

strategies::ClusterSpec node_of_8() { return strategies::testing::cluster(2, 8); }

TEST(Collectives, RingAlgorithmsMatchTheirAlphaBetaFormulas) {
  const auto c = node_of_8();
  const double alpha = c.node_groups[0].intra_node.latency_s;
  const double bw = c.node_groups[0].intra_node.bandwidth_Bps;
  const std::vector<CollectiveKind> kinds = {CollectiveKind::kAllReduce, CollectiveKind::kAllGather,
                                             CollectiveKind::kReduceScatter,
                                             CollectiveKind::kAllToAll, CollectiveKind::kBroadcast};
  for (const std::vector<int>& ranks :
       {std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}, std::vector<int>{2, 3, 4, 5}}) {
    for (double bytes : {1024.0, 64.0 * (1 << 20)}) {
      for (CollectiveKind kind : kinds) {
        const auto t = in_child([&] {
          return time_collectives(c, 16, {{kind, ranks, bytes}}, kLineRate);
        });
        ASSERT_EQ(t.size(), 1u);
        const double expected =
            alpha_beta_seconds(kind, static_cast<int>(ranks.size()), bytes, alpha, bw);
        EXPECT_NEAR(t[0] / expected, 1.0, 1e-6)
            << strategies::collective_name(kind) << " n=" << ranks.size() << " S=" << bytes;
      }
    }
  }
}

TEST(Collectives, AggregatedRingsMatchTheStepwiseOnesWithoutContention) {
  const auto c = node_of_8();
  for (const std::vector<int>& ranks : {std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7},
                                        std::vector<int>{0, 8}, std::vector<int>{3, 11}}) {
    for (CollectiveKind kind :
         {CollectiveKind::kAllReduce, CollectiveKind::kAllGather, CollectiveKind::kReduceScatter}) {
      const double bytes = 96.0 * (1 << 20);
      const auto stepwise = in_child([&] {
        return time_collectives(c, 16, {{kind, ranks, bytes}}, kLineRate, false);
      });
      const auto aggregated = in_child([&] {
        return time_collectives(c, 16, {{kind, ranks, bytes}}, kLineRate, true);
      });
      ASSERT_EQ(stepwise.size(), 1u);
      ASSERT_EQ(aggregated.size(), 1u);
      EXPECT_NEAR(aggregated[0] / stepwise[0], 1.0, 1e-9)
          << strategies::collective_name(kind) << " over " << ranks.size() << " ranks";
    }
  }
}

TEST(Collectives, RingAcrossNodesUsesTheNics) {
  // Ranks 0 and 8 sit on two nodes: each ring step crosses the network once per direction.
  const auto c = node_of_8();
  const double alpha = c.inter_node.latency_s;
  const double bw = c.inter_node.nic_bandwidth_Bps;
  const double bytes = 256.0 * (1 << 20);
  const auto t = in_child([&] {
    return time_collectives(c, 16, {{CollectiveKind::kAllReduce, {0, 8}, bytes}}, kLineRate);
  });
  ASSERT_EQ(t.size(), 1u);
  EXPECT_NEAR(t[0] / alpha_beta_seconds(CollectiveKind::kAllReduce, 2, bytes, alpha, bw), 1.0,
              1e-6);
}

// The choosing fabric of a test cluster at line rate (what time_collectives uses with kLineRate).
NodeMap node_map_of(const strategies::ClusterSpec& c) {
  NodeMap nodes;
  nodes.intra_latency_s = c.node_groups[0].intra_node.latency_s;
  nodes.intra_bandwidth_Bps = c.node_groups[0].intra_node.bandwidth_Bps;
  nodes.inter_latency_s = c.inter_node.latency_s;
  nodes.inter_bandwidth_Bps = c.inter_node.nic_bandwidth_Bps;
  return nodes;
}

TEST(Collectives, HierarchicalCollectivesForGroupsSpanningNodes) {
  // 4 members on each of 2 nodes: reduce-scatter inside the nodes, all-reduce of S/4 between the
  // nodes' j-th members (each pair through its own NIC), all-gather inside the nodes.
  const auto c = node_of_8();
  const NodeMap nodes = node_map_of(c);
  const std::vector<int> group = {0, 1, 2, 3, 8, 9, 10, 11};
  for (CollectiveKind kind :
       {CollectiveKind::kAllReduce, CollectiveKind::kAllGather, CollectiveKind::kReduceScatter}) {
    for (double bytes : {4096.0, 256.0 * (1 << 20)}) {
      const double hierarchical = hierarchical_seconds(kind, 2, 4, bytes, nodes);
      const double flat =
          alpha_beta_seconds(kind, 8, bytes, nodes.inter_latency_s, nodes.inter_bandwidth_Bps);
      for (bool aggregate : {false, true}) {
        const auto t = in_child([&] {
          return time_collectives(c, 16, {{kind, group, bytes}}, kLineRate, aggregate);
        });
        ASSERT_EQ(t.size(), 1u);
        // The faster of the two by their formulas runs, and takes exactly its formula's time.
        EXPECT_NEAR(t[0] / std::min(hierarchical, flat), 1.0, 1e-6)
            << strategies::collective_name(kind) << " " << bytes;
      }
      if (bytes > 1e6) {
        EXPECT_LT(hierarchical, flat / 2);  // large messages: far less on the NICs
      }
    }
  }
}

TEST(Collectives, TreeAllReduceForLatencyBoundGroupsAcrossNodes) {
  // One GPU on each of 16 nodes: a 1 KiB all-reduce pays 8 network latencies as a tree (4 levels
  // up, 4 down) against the ring's 30; a 64 MiB one stays a ring (the tree moves S per hop).
  const auto c16 = strategies::testing::cluster(16, 1);
  const NodeMap n16 = node_map_of(c16);
  std::vector<int> all16;
  for (int r = 0; r < 16; ++r) all16.push_back(r);
  const double small = 1024;
  const double tree = tree_seconds(16, 1, small, n16);
  const double ring = alpha_beta_seconds(CollectiveKind::kAllReduce, 16, small, n16.inter_latency_s,
                                         n16.inter_bandwidth_Bps);
  EXPECT_NEAR(tree, 8 * n16.inter_latency_s + 14 * small / n16.inter_bandwidth_Bps, 1e-15);
  EXPECT_LT(tree, ring / 3);
  for (bool aggregate : {false, true}) {
    const auto t = in_child([&] {
      return time_collectives(c16, 16, {{CollectiveKind::kAllReduce, all16, small}}, kLineRate,
                              aggregate);
    });
    ASSERT_EQ(t.size(), 1u);
    EXPECT_NEAR(t[0] / tree, 1.0, 1e-6);
  }
  const double large = 64.0 * (1 << 20);
  const auto t_large = in_child([&] {
    return time_collectives(c16, 16, {{CollectiveKind::kAllReduce, all16, large}}, kLineRate);
  });
  ASSERT_EQ(t_large.size(), 1u);
  EXPECT_NEAR(t_large[0] / alpha_beta_seconds(CollectiveKind::kAllReduce, 16, large,
                                              n16.inter_latency_s, n16.inter_bandwidth_Bps),
              1.0, 1e-6);
  EXPECT_GT(tree_seconds(16, 1, large, n16), 5 * t_large[0]);

  // Two members on each of 4 nodes: a chain inside each node, then a tree of 2 levels across
  // the leaders (the root's two children, then one grandchild); faster than both the
  // hierarchical form and the flat ring for a small message.
  const auto c4 = strategies::testing::cluster(4, 2);
  const NodeMap n4 = node_map_of(c4);
  const std::vector<int> all8 = {0, 1, 2, 3, 4, 5, 6, 7};
  const double tree4 = tree_seconds(4, 2, small, n4);
  EXPECT_NEAR(tree4,
              2 * (n4.intra_latency_s + small / n4.intra_bandwidth_Bps) +
                  2 * (n4.inter_latency_s + 2 * small / n4.inter_bandwidth_Bps) +
                  2 * (n4.inter_latency_s + small / n4.inter_bandwidth_Bps),
              1e-15);
  EXPECT_LT(tree4, hierarchical_seconds(CollectiveKind::kAllReduce, 4, 2, small, n4));
  const auto t4 = in_child([&] {
    return time_collectives(c4, 8, {{CollectiveKind::kAllReduce, all8, small}}, kLineRate);
  });
  ASSERT_EQ(t4.size(), 1u);
  EXPECT_NEAR(t4[0] / tree4, 1.0, 1e-6);
  // All-gather and reduce-scatter have no tree: the same group keeps the hierarchical form.
  const auto ag = in_child([&] {
    return time_collectives(c4, 8, {{CollectiveKind::kAllGather, all8, small}}, kLineRate);
  });
  ASSERT_EQ(ag.size(), 1u);
  EXPECT_NEAR(ag[0] / std::min(hierarchical_seconds(CollectiveKind::kAllGather, 4, 2, small, n4),
                               alpha_beta_seconds(CollectiveKind::kAllGather, 8, small,
                                                  n4.inter_latency_s, n4.inter_bandwidth_Bps)),
              1.0, 1e-6);
}

TEST(Collectives, ForcedAlgorithmsAndTheirPreconditions) {
  const auto c = strategies::testing::cluster(4, 2);
  const NodeMap nodes = [&] {
    NodeMap n = node_map_of(c);
    n.node_of_rank = {0, 0, 1, 1, 2, 2, 3, 3};
    return n;
  }();
  FlowDetail detail;
  detail.nodes = &nodes;
  detail.algorithm = Algorithm::kTree;
  // 4 nodes of 2: one chain hop per node up and one down (8), 3 tree edges up and 3 down.
  EXPECT_EQ(
      plan_collective(CollectiveKind::kAllReduce, {0, 1, 2, 3, 4, 5, 6, 7}, 1e9, detail).size(),
      8 + 6);
  detail.algorithm = Algorithm::kRing;  // 2(n-1) steps of n flows
  EXPECT_EQ(
      plan_collective(CollectiveKind::kAllReduce, {0, 1, 2, 3, 4, 5, 6, 7}, 1e3, detail).size(),
      14 * 8);
  detail.algorithm = Algorithm::kTree;
  // Forcing an algorithm where it does not apply is a programming error (STRATA_CHECK aborts).
  EXPECT_DEATH(plan_collective(CollectiveKind::kAllGather, {0, 1, 2, 3}, 1e3, detail),
               "a tree collective is an all-reduce");
  EXPECT_DEATH(plan_collective(CollectiveKind::kAllReduce, {0, 1, 2}, 1e3, detail),
               "a tree collective");  // 2 members on one node, 1 on another
  detail.algorithm = Algorithm::kHierarchical;
  EXPECT_DEATH(plan_collective(CollectiveKind::kAllReduce, {0, 2, 4}, 1e3, detail),
               "a hierarchical collective");  // one member per node
}

// The cost model's link face against the simulation: with the bundled efficiencies (NVSwitch
// 0.8, network 0.96) on the links, a collective alone takes exactly the roofline's
// collective_seconds, whichever algorithm the simulator chooses: a ring inside a node, the
// hierarchical form or the flat ring across nodes, the tree, a ring over an uneven group,
// all-to-all and broadcast; stepwise and aggregated.
TEST(CostModelLinkFace, CollectiveSecondsIsTheSimulatedTimeAlone) {
  const profiler::RooflineCostModel cost(
      profiler::load_efficiencies(profiler::default_efficiencies_path()));
  ASSERT_LT(cost.link_efficiencies().nvswitch, 1.0);
  ASSERT_LT(cost.link_efficiencies().network, 1.0);
  struct Case {
    strategies::ClusterSpec cluster;
    CollectiveKind kind;
    std::vector<int> ranks;
    double bytes;
  };
  const auto c2 = strategies::testing::cluster(2, 8);
  const auto c16 = strategies::testing::cluster(16, 1);
  std::vector<int> all16(16);
  std::iota(all16.begin(), all16.end(), 0);
  const double MiB = 1 << 20;
  const std::vector<Case> cases = {
      {c2, CollectiveKind::kAllReduce, {0, 1, 2, 3, 4, 5, 6, 7}, 64 * MiB},
      {c2, CollectiveKind::kReduceScatter, {2, 3, 4, 5}, 1 * MiB},
      {c2, CollectiveKind::kAllReduce, {0, 1, 2, 3, 8, 9, 10, 11}, 256 * MiB},
      {c2, CollectiveKind::kAllGather, {0, 1, 2, 3, 8, 9, 10, 11}, 4096},
      {c2, CollectiveKind::kAllReduce, {0, 8}, 256 * MiB},
      {c2, CollectiveKind::kAllGather, {0, 1, 2, 8}, 16 * MiB},
      {c2, CollectiveKind::kAllToAll, {0, 1, 2, 3, 4, 5, 6, 7}, 8 * MiB},
      {c2, CollectiveKind::kBroadcast, {0, 8}, 1 * MiB},
      {c16, CollectiveKind::kAllReduce, all16, 1024},
      {c16, CollectiveKind::kAllReduce, all16, 64 * MiB},
  };
  for (const Case& k : cases) {
    const double expected = cost.collective_seconds(k.kind, k.ranks, k.bytes, k.cluster);
    ASSERT_GT(expected, 0);
    for (bool aggregate : {false, true}) {
      const auto t = in_child([&] {
        return time_collectives(k.cluster, k.cluster.total_gpus(), {{k.kind, k.ranks, k.bytes}},
                                cost, aggregate);
      });
      ASSERT_EQ(t.size(), 1u);
      EXPECT_NEAR(t[0] / expected, 1.0, 1e-6)
          << strategies::collective_name(k.kind) << " over " << k.ranks.size() << " ranks, "
          << k.bytes << " B, aggregate " << aggregate;
    }
  }
}

TEST(Collectives, BusBandwidthApproachesTheLinkForLargeMessages) {
  const auto c = node_of_8();
  const double bytes = 1024.0 * (1 << 20);
  const auto t = in_child([&] {
    return time_collectives(c, 8, {{CollectiveKind::kAllReduce, {0, 1, 2, 3, 4, 5, 6, 7}, bytes}},
                            kLineRate);
  });
  ASSERT_EQ(t.size(), 1u);
  const double busbw = bytes / t[0] * bus_bandwidth_factor(CollectiveKind::kAllReduce, 8);
  const double link = c.node_groups[0].intra_node.bandwidth_Bps;
  EXPECT_LT(busbw, link);
  EXPECT_GT(busbw, 0.99 * link);
}

TEST(Collectives, SharedLinksSlowBothDisjointOnesDoNot) {
  const auto c = node_of_8();
  const double bytes = 256.0 * (1 << 20);
  const std::vector<int> all = {0, 1, 2, 3, 4, 5, 6, 7};
  const auto alone = in_child([&] {
    return time_collectives(c, 8, {{CollectiveKind::kAllReduce, all, bytes}}, kLineRate);
  });
  const auto both = in_child([&] {
    return time_collectives(
        c, 8, {{CollectiveKind::kAllReduce, all, bytes}, {CollectiveKind::kAllReduce, all, bytes}},
        kLineRate);
  });
  ASSERT_EQ(alone.size(), 1u);
  ASSERT_EQ(both.size(), 2u);
  // Two all-reduces over the same ports share every link: the bandwidth term doubles.
  EXPECT_GT(both[0], 1.9 * alone[0]);
  EXPECT_GT(both[1], 1.9 * alone[0]);
  // Two halves of the node use disjoint ports: each takes what it takes alone.
  const auto halves = in_child([&] {
    return time_collectives(c, 8,
                            {{CollectiveKind::kAllReduce, {0, 1, 2, 3}, bytes},
                             {CollectiveKind::kAllReduce, {4, 5, 6, 7}, bytes}},
                            kLineRate);
  });
  const auto half_alone = in_child([&] {
    return time_collectives(c, 8, {{CollectiveKind::kAllReduce, {0, 1, 2, 3}, bytes}}, kLineRate);
  });
  ASSERT_EQ(halves.size(), 2u);
  EXPECT_NEAR(halves[0], half_alone[0], 1e-12);
  EXPECT_NEAR(halves[1], half_alone[0], 1e-12);
}

}  // namespace
}  // namespace strata::sim
