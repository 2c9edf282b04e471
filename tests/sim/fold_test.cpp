// Folding by symmetry (docs/simulator.md "Scale"): the bundle hosts' routes (each copy's
// representative links, counted once per copy), the fabrics that get none, a bundle's rate
// against its copies' on shared links, and whole replays with bundles against the same replays
// with the tensor-parallel peers' copies as separate shadow flows. Every simulation runs in a
// forked child (one SimGrid engine per process).
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "profiler/roofline.hpp"
#include "results/report.hpp"
#include "sim/platform.hpp"
#include "sim/simulate.hpp"
#include "sim_test_util.hpp"
#include "tests/strategies/test_models.hpp"

namespace strata::sim {
namespace {

namespace sg4 = simgrid::s4u;
using strategies::ClusterSpec;
using strategies::InterTopology;
using testing::in_child;
using testing::in_child_text;
using testing::run_to_completion;
using testing::transfer;

ClusterSpec fabric(int nodes, int gpus_per_node, InterTopology topology, int nics,
                   double oversubscription = 1.0) {
  ClusterSpec c = strategies::testing::cluster(nodes, gpus_per_node);
  c.node_groups[0].intra_node.latency_s = 1e-6;
  c.inter_node = {topology, oversubscription, nics, 25e9, 2e-6};
  return c;
}

// Consecutive ranks in orbits of `k` (the tensor-parallel groups of a tp-first rank order).
std::vector<std::vector<int>> orbits_of(int world, int k) {
  std::vector<std::vector<int>> orbits;
  for (int r = 0; r < world; ++r) {
    if (r % k == 0) orbits.emplace_back();
    orbits.back().push_back(r);
  }
  return orbits;
}

Platform start(const ClusterSpec& cluster, int world, std::vector<std::vector<int>> orbits) {
  static sg4::Engine engine("fold_tests");
  configure_network_model();
  PlatformOptions o;
  o.orbits = std::move(orbits);
  return build_platform(cluster, world, o);
}

// "link link ... | latency" for the route from rank a's bundle host to rank b.
std::string bundle_route(const Platform& p, int a, int b) {
  return testing::route_text(p.bundle_hosts.at(a), p.hosts.at(b));
}

TEST(FoldBySymmetry, BundleRoutesCountEachCopyOnItsRepresentativeLinks) {
  const std::string routes = in_child_text([] {
    // 8 NICs per node: nodes 0-3 under leaf 0, 4-7 under leaf 1. Orbits: whole nodes.
    const Platform p = start(fabric(8, 8, InterTopology::kFatTree, 8), 64, orbits_of(64, 8));
    return std::to_string(p.bundle_hosts.size()) + " " + (p.bundle_hosts[1] ? "x" : "-") + "\n" +
           bundle_route(p, 0, 1) + "\n" + bundle_route(p, 0, 0) + "\n" + bundle_route(p, 0, 8) +
           "\n" + bundle_route(p, 0, 33);
  });
  std::string leaves;
  for (int c = 0; c < 8; ++c) leaves += "leaf0-spine_UP leaf1-spine_DOWN ";
  EXPECT_EQ(routes,
            "64 -\n"
            // the tensor-parallel ring's flows c -> c+1: GPU 0's two ports, once each
            "n0-nvl0_UP n0-nvl0_DOWN | 1e-06\n"
            "rank0-loopback | 0\n"
            // each copy has its own NIC: node 0's NIC 0 and node 1's, once each
            "n0-nic0_UP n1-nic0_DOWN | 2e-06\n"
            // copy c: n0-nic<c> -> leaf 0 -> leaf 1 -> n4-nic<c+1>: every copy on both
            // uplinks, copy 0 on NIC 0 of node 0, copy 7 on NIC 0 of node 4
            "n0-nic0_UP " +
                leaves + "n4-nic0_DOWN | 2e-06");
}

TEST(FoldBySymmetry, SharedNicsAndRailsCountTheCopiesThatCrossThem) {
  const std::string routes = in_child_text([] {
    // 4 NICs for 8 GPUs: GPUs c and c + 4 share NIC c, so the bundle crosses NIC 0 twice.
    const Platform p = start(fabric(2, 8, InterTopology::kFatTree, 4), 16, orbits_of(16, 8));
    return bundle_route(p, 0, 8);
  });
  EXPECT_EQ(routes, "n0-nic0_UP n1-nic0_DOWN n0-nic0_UP n1-nic0_DOWN | 2e-06");
  const std::string rails = in_child_text([] {
    // Copy c runs c -> 8 + (c + 1) % 8, rail c to rail c + 1: rail 0's uplink carries copy 0
    // up and copy 7 down.
    const Platform p = start(fabric(2, 8, InterTopology::kRailOptimized, 8), 16, orbits_of(16, 8));
    return bundle_route(p, 0, 9) + "\n" + bundle_route(p, 0, 8);
  });
  EXPECT_EQ(rails,
            "n0-nic0_UP rail0-spine_UP rail0-spine_DOWN n1-nic0_DOWN | 2e-06\n"
            "n0-nic0_UP n1-nic0_DOWN | 2e-06");
  const std::string halves = in_child_text([] {
    // Orbits of 4 in 8-GPU nodes: ranks 4-7 are an orbit of their own, with NIC 4 its
    // representative.
    const Platform p = start(fabric(2, 8, InterTopology::kFatTree, 8), 16, orbits_of(16, 4));
    return bundle_route(p, 4, 12);
  });
  EXPECT_EQ(halves, "n0-nic4_UP n1-nic4_DOWN | 2e-06");
}

TEST(FoldBySymmetry, AsymmetricFabricsGetNoBundleHosts) {
  const auto hosts = [](ClusterSpec c, int world, std::vector<std::vector<int>> orbits) {
    return in_child([&] {
      return std::vector<double>{
          static_cast<double>(start(c, world, std::move(orbits)).bundle_hosts.size())};
    });
  };
  // Orbits across nodes.
  EXPECT_EQ(hosts(fabric(2, 4, InterTopology::kFatTree, 4), 8, orbits_of(8, 8)),
            std::vector<double>{0});
  // 3 NICs for 6 GPUs and orbits of 2: NIC 0 serves GPUs 0 and 3, whose images 1 and 2 have
  // different NICs.
  EXPECT_EQ(hosts(fabric(2, 6, InterTopology::kFatTree, 3), 12, orbits_of(12, 2)),
            std::vector<double>{0});
  // Rails whose representatives differ between nodes: node 0's orbit starts on rail 0, node
  // 1's on rail 1, so rail 0's and rail 1's uplinks would both stand for the same orbit.
  EXPECT_EQ(hosts(fabric(2, 2, InterTopology::kRailOptimized, 2), 4, {{0, 1}, {3, 2}}),
            std::vector<double>{0});
  // Orbits that miss a rank, or of different sizes.
  EXPECT_EQ(hosts(fabric(1, 4, InterTopology::kFatTree, 4), 4, {{0, 1}, {2}}),
            std::vector<double>{0});
  EXPECT_EQ(hosts(fabric(1, 4, InterTopology::kFatTree, 4), 4, {{0, 1}}), std::vector<double>{0});
  // The same fabric with symmetric orbits gets them.
  EXPECT_EQ(hosts(fabric(2, 2, InterTopology::kRailOptimized, 2), 4, {{0, 1}, {2, 3}}),
            std::vector<double>{4});
}

TEST(FoldBySymmetry, ABundleTakesWhatEachOfItsCopiesTakes) {
  // Leaf uplinks oversubscribed 8:1 (32 NICs x 25 GB/s / 8 = 100 GB/s): eight copies crossing
  // leaves get 12.5 GB/s each, and so does their bundle; with 4 NICs per node two copies share
  // each NIC (12.5 GB/s each as well). 1 GB: 2 us + 0.08 s.
  for (int nics : {8, 4}) {
    const auto separate = in_child([&] {
      const Platform p = start(fabric(8, 8, InterTopology::kFatTree, nics, 8), 64, {});
      std::vector<sg4::ActivityPtr> all;
      for (int c = 0; c < 8; ++c) all.push_back(transfer(p.hosts[c], p.hosts[32 + c], 1e9));
      return run_to_completion(all);
    });
    const auto bundled = in_child([&] {
      const Platform p =
          start(fabric(8, 8, InterTopology::kFatTree, nics, 8), 64, orbits_of(64, 8));
      return run_to_completion({transfer(p.bundle_hosts[0], p.hosts[32], 1e9)});
    });
    ASSERT_EQ(separate.size(), 8u);
    ASSERT_EQ(bundled.size(), 1u);
    const double expected = 2e-6 + 1e9 / 12.5e9;
    for (double t : separate) EXPECT_NEAR(t, expected, 1e-9 * expected) << nics << " NICs";
    EXPECT_NEAR(bundled[0], expected, 1e-9 * expected) << nics << " NICs";
  }
}

// Whole steps: with bundles, every rank's figures equal those of the same replay with the
// tensor-parallel peers' copies as separate shadow flows, with fewer activities.
TEST(FoldBySymmetry, BundledReplayEqualsTheShadowFlows) {
  const profiler::RooflineCostModel cost(
      profiler::load_efficiencies(profiler::default_efficiencies_path()));
  const auto m = strategies::testing::gpt(4, 1024, 16, 4096, 512);
  struct Case {
    const char* name;
    strategies::StrategySpec s;
    ClusterSpec cluster;
    bool bundles;  // whether the fabric allows them
  };
  std::vector<Case> cases;
  {
    auto s = strategies::testing::strategy(4, 2, 2, 1, 16);
    s.zero_stage = 1;
    s.sequence_parallel = true;
    cases.push_back({"dp4-tp2-pp2 zero1 sp", s, fabric(2, 8, InterTopology::kFatTree, 8), true});
    s.collectives.grad_bucket_bytes = 1 << 20;  // buckets overlap the tp collectives
    cases.push_back({"the same, 1 MiB buckets", s, fabric(2, 8, InterTopology::kFatTree, 8), true});
    cases.push_back(
        {"the same, 2 NICs per node", s, fabric(2, 8, InterTopology::kFatTree, 2), true});
    cases.push_back({"the same, rails", s, fabric(2, 8, InterTopology::kRailOptimized, 8), true});
  }
  {
    auto s = strategies::testing::strategy(2, 4, 2, 1, 8);  // dp across 4 nodes of 4 GPUs
    s.order = {strategies::Dim::kTp, strategies::Dim::kCp, strategies::Dim::kEp,
               strategies::Dim::kPp, strategies::Dim::kDp};
    s.zero_stage = 3;
    cases.push_back({"dp2-tp4-pp2 zero3, rails, oversubscribed", s,
                     fabric(4, 4, InterTopology::kRailOptimized, 4, 4), true});
  }
  {
    auto s = strategies::testing::strategy(6, 2, 1, 1, 12);
    s.recompute = strategies::Recompute::kFull;
    cases.push_back({"dp6-tp2, 3 NICs for 6 GPUs (asymmetric: shadow flows)", s,
                     fabric(2, 6, InterTopology::kFatTree, 3), false});
  }
  for (const Case& k : cases) {
    const int world = k.s.dp * k.s.tp * k.s.pp;
    const strategies::Plan plan = strategies::lower(m, k.cluster, k.s, world);
    auto run = [&](bool bundle) {
      return in_child([&] {
        SimOptions o;
        o.bundle_symmetric_flows = bundle;
        const results::Report rep = simulate(plan, cost, o);
        std::vector<double> v = {static_cast<double>(rep.simulation.simgrid_activities),
                                 rep.step_time_s};
        for (const auto& t : rep.ranks) {
          v.insert(v.end(), {t.finish_s, t.compute_s, t.communication_s, t.exposed_comm_s});
        }
        return v;
      });
    };
    const auto shadow = run(false), bundled = run(true);
    ASSERT_EQ(shadow.size(), 2u + 4 * world) << k.name;
    ASSERT_EQ(bundled.size(), shadow.size()) << k.name;
    for (std::size_t i = 1; i < shadow.size(); ++i) {
      EXPECT_NEAR(bundled[i], shadow[i], 1e-9 * shadow[i]) << k.name << " value " << i;
    }
    if (k.bundles) {
      EXPECT_LT(bundled[0], shadow[0]) << k.name;
    } else {
      EXPECT_EQ(bundled[0], shadow[0]) << k.name;
    }
    std::printf("  %s: step %.9f s, %.0f activities with bundles, %.0f with shadow flows\n", k.name,
                bundled[1], bundled[0], shadow[0]);
  }
}

}  // namespace
}  // namespace strata::sim
