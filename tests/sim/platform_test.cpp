// The SimGrid platform: routes (links and latencies), transfer times against the closed-form
// latency + size / bandwidth, sharing at every shared link (GPU port, NIC, leaf uplink),
// heterogeneous groups, stragglers, partial worlds, input errors and the bundled clusters.
// Every simulation runs in a forked child (one SimGrid engine per process).
#include "sim/platform.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "profiler/efficiency.hpp"
#include "sim_test_util.hpp"
#include "strategies/spec.hpp"

namespace strata::sim {
namespace {

namespace sg4 = simgrid::s4u;
using strategies::ClusterSpec;
using strategies::InterTopology;
using testing::compute;
using testing::in_child;
using testing::in_child_text;
using testing::run_to_completion;
using testing::transfer;

const std::string kRoot = STRATA_SOURCE_DIR;

constexpr double kIntraBw = 300e9;  // bytes/s per direction
constexpr double kIntraLat = 1e-6;  // s, GPU to GPU
constexpr double kNicBw = 25e9;     // 200 Gb/s
constexpr double kInterLat = 2e-6;  // s, GPU to GPU across nodes
constexpr double kRelTol = 1e-9;

ClusterSpec make_cluster(int nodes, int gpus_per_node, InterTopology topology, int nics,
                         double oversubscription = 1.0) {
  ClusterSpec c;
  c.name = "test";
  strategies::NodeGroup g;
  g.name = "g";
  g.nodes = nodes;
  g.gpus_per_node = gpus_per_node;
  g.gpu.name = "TestGPU";
  g.gpu.peak_bf16_flops = g.gpu.peak_fp16_flops = g.gpu.peak_fp32_flops = 1e14;
  g.gpu.memory_bytes = 1e10;
  g.gpu.memory_bandwidth_Bps = 2e12;
  g.intra_node = {strategies::IntraFabric::kNvSwitch, kIntraBw, kIntraLat};
  c.node_groups.push_back(g);
  c.inter_node = {topology, oversubscription, nics, kNicBw, kInterLat};
  return c;
}

// Creates this process's engine, configured as the simulator does. Call once, in the child.
void start_engine() {
  static sg4::Engine engine("sim_tests");
  configure_network_model();
}

Platform start(const ClusterSpec& cluster, int world_size, const PlatformOptions& options = {}) {
  start_engine();
  return build_platform(cluster, world_size, options);
}

// "link link ... | latency" for the route from rank a to rank b.
std::string route(const Platform& p, int a, int b) {
  return testing::route_text(p.hosts.at(a), p.hosts.at(b));
}

struct Flow {
  int src, dst;
  double bytes;
};

// Runs `flows` concurrently and returns when each one finished.
std::vector<double> run_flows(const Platform& p, const std::vector<Flow>& flows) {
  std::vector<sg4::ActivityPtr> all;
  for (const Flow& f : flows)
    all.push_back(transfer(p.hosts.at(f.src), p.hosts.at(f.dst), f.bytes));
  return run_to_completion(all);
}

void expect_times(const std::vector<double>& actual, const std::vector<double>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], kRelTol * expected[i]) << "flow " << i;
  }
}

// ---------------------------------------------------------------------------------------------
// Routes

TEST(PlatformRoutes, FatTreeIntraNodeInterNodeCrossLeafAndLoopback) {
  const std::string routes = in_child_text([] {
    // 8 NICs per node: 4 nodes per leaf, so nodes 0-3 are under leaf 0 and 4-7 under leaf 1.
    const Platform p = start(make_cluster(8, 8, InterTopology::kFatTree, 8), 64);
    return route(p, 0, 1) + "\n" + route(p, 7, 2) + "\n" + route(p, 0, 9) + "\n" + route(p, 1, 37) +
           "\n" + route(p, 37, 1) + "\n" + route(p, 3, 3);
  });
  EXPECT_EQ(routes,
            "n0-nvl0_UP n0-nvl1_DOWN | 1e-06\n"
            "n0-nvl7_UP n0-nvl2_DOWN | 1e-06\n"
            "n0-nic0_UP n1-nic1_DOWN | 2e-06\n"
            "n0-nic1_UP leaf0-spine_UP leaf1-spine_DOWN n4-nic5_DOWN | 2e-06\n"
            "n4-nic5_UP leaf1-spine_UP leaf0-spine_DOWN n0-nic1_DOWN | 2e-06\n"
            "rank3-loopback | 0");
}

TEST(PlatformRoutes, GpusShareNicsRoundRobin) {
  const std::string routes = in_child_text([] {
    const Platform p = start(make_cluster(2, 8, InterTopology::kFatTree, 2), 16);
    return route(p, 2, 10) + "\n" + route(p, 7, 8);
  });
  EXPECT_EQ(routes,
            "n0-nic0_UP n1-nic0_DOWN | 2e-06\n"
            "n0-nic1_UP n1-nic0_DOWN | 2e-06");
}

TEST(PlatformRoutes, RailOptimizedCrossesSpineOnlyBetweenRails) {
  const std::string routes = in_child_text([] {
    const Platform p = start(make_cluster(4, 8, InterTopology::kRailOptimized, 8), 32);
    return route(p, 0, 8) + "\n" + route(p, 1, 13) + "\n" + route(p, 3, 4);
  });
  EXPECT_EQ(routes,
            "n0-nic0_UP n1-nic0_DOWN | 2e-06\n"
            "n0-nic1_UP rail1-spine_UP rail5-spine_DOWN n1-nic5_DOWN | 2e-06\n"
            "n0-nvl3_UP n0-nvl4_DOWN | 1e-06");
}

// ---------------------------------------------------------------------------------------------
// One transfer: latency + size / bandwidth

TEST(PlatformTiming, IntraNodeTransferIsLatencyPlusSizeOverBandwidth) {
  // Disjoint GPU pairs share no link, so they run side by side undisturbed.
  const std::vector<double> sizes = {1, 1000, 1 << 20, 123456789, 1e9, 4e10};
  const std::vector<double> times = in_child([&] {
    const Platform p = start(make_cluster(2, 8, InterTopology::kFatTree, 8), 16);
    std::vector<Flow> flows;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      flows.push_back({static_cast<int>(2 * i), static_cast<int>(2 * i + 1), sizes[i]});
    }
    return run_flows(p, flows);
  });
  std::vector<double> expected;
  for (double s : sizes) expected.push_back(kIntraLat + s / kIntraBw);
  expect_times(times, expected);
}

TEST(PlatformTiming, InterNodeTransferIsLatencyPlusSizeOverNicBandwidth) {
  // Same leaf, across leaves, and three sizes; every flow on its own NICs.
  const std::vector<Flow> flows = {{0, 9, 1e9}, {1, 37, 3e8}, {2, 42, 12345}, {3, 11, 1}};
  const std::vector<double> times = in_child([&] {
    const Platform p = start(make_cluster(8, 8, InterTopology::kFatTree, 8), 64);
    return run_flows(p, flows);
  });
  std::vector<double> expected;
  for (const Flow& f : flows) expected.push_back(kInterLat + f.bytes / kNicBw);
  expect_times(times, expected);
}

TEST(PlatformTiming, LinkEfficienciesScaleTheLineRates) {
  // NCCL's share of the line rate: NVSwitch ports at 0.8, the network at 0.96; latency unchanged.
  const double bytes = 1e9;
  const std::vector<double> times = in_child([&] {
    PlatformOptions o;
    o.links.nvswitch = 0.8;
    o.links.network = 0.96;
    const Platform p = start(make_cluster(2, 8, InterTopology::kFatTree, 8), 16, o);
    return run_flows(p, {{0, 1, bytes}, {2, 10, bytes}});
  });
  expect_times(times, {kIntraLat + bytes / (0.8 * kIntraBw), kInterLat + bytes / (0.96 * kNicBw)});
}

TEST(PlatformTiming, InterNodeTransferIsCappedByAThinLeafUplink) {
  // 32 NICs per node: one node per leaf, uplink 32 x 25 GB/s / 64 = 12.5 GB/s < one NIC.
  const double bytes = 1e9;
  const std::vector<double> times = in_child([&] {
    const Platform p = start(make_cluster(2, 8, InterTopology::kFatTree, 32, 64.0), 16);
    return run_flows(p, {{0, 8, bytes}});
  });
  expect_times(times, {kInterLat + bytes / std::min(kNicBw, 32 * kNicBw / 64.0)});
}

TEST(PlatformTiming, RailOptimizedSameRailAndCrossRail) {
  // 4 nodes: a rail uplink carries 4 NICs' worth / 8 = 12.5 GB/s, half a NIC.
  const double bytes = 5e8;
  const std::vector<double> times = in_child([&] {
    const Platform p = start(make_cluster(4, 8, InterTopology::kRailOptimized, 8, 8.0), 32);
    return run_flows(p, {{0, 8, bytes}, {1, 13, bytes}});
  });
  expect_times(times, {kInterLat + bytes / kNicBw, kInterLat + bytes / (4 * kNicBw / 8.0)});
}

TEST(PlatformTiming, NoTcpWindowCapAndNoCrossTraffic) {
  // 100 us of latency: SimGrid's default TCP window would cap a flow at 4194304 B / 200 us =
  // 21 GB/s, far below 300 GB/s; with cross-traffic on, 1 -> 0 would load 0 -> 1's links.
  ClusterSpec cluster = make_cluster(1, 8, InterTopology::kNone, 0);
  cluster.node_groups[0].intra_node.latency_s = 1e-4;
  const double bytes = 1e9;
  const std::vector<double> times = in_child([&] {
    const Platform p = start(cluster, 8);
    return run_flows(p, {{0, 1, bytes}, {1, 0, bytes}});
  });
  expect_times(times, {1e-4 + bytes / kIntraBw, 1e-4 + bytes / kIntraBw});
}

// ---------------------------------------------------------------------------------------------
// Contention

TEST(PlatformContention, FlowsLeavingOrEnteringOneGpuShareItsPort) {
  const double bytes = 1e9;
  const std::vector<double> times = in_child([&] {
    const Platform p = start(make_cluster(1, 8, InterTopology::kNone, 0), 8);
    // 0 -> 1 and 0 -> 2 share 0's up link; 3 -> 5 and 4 -> 5 share 5's down link; 6 -> 7 alone.
    return run_flows(p,
                     {{0, 1, bytes}, {0, 2, bytes}, {3, 5, bytes}, {4, 5, bytes}, {6, 7, bytes}});
  });
  const double shared = kIntraLat + 2 * bytes / kIntraBw;
  expect_times(times, {shared, shared, shared, shared, kIntraLat + bytes / kIntraBw});
}

TEST(PlatformContention, GpusOfOneNicShareIt) {
  // 2 NICs for 8 GPUs: GPUs 0 and 2 both leave node 0 through NIC 0 (to different NICs of
  // node 1); GPU 1 leaves through NIC 1 alone.
  const double bytes = 1e9;
  const std::vector<double> times = in_child([&] {
    const Platform p = start(make_cluster(2, 8, InterTopology::kFatTree, 2), 16);
    return run_flows(p, {{0, 8, bytes}, {2, 9, bytes}});
  });
  const double shared = kInterLat + 2 * bytes / kNicBw;
  expect_times(times, {shared, shared});
  const std::vector<double> alone = in_child([&] {
    const Platform p = start(make_cluster(2, 8, InterTopology::kFatTree, 2), 16);
    return run_flows(p, {{0, 8, bytes}, {1, 9, bytes}});
  });
  expect_times(alone, {kInterLat + bytes / kNicBw, kInterLat + bytes / kNicBw});
}

// Every GPU of leaf 0 (nodes 0-3) sends to its peer under leaf 1 (nodes 4-7): `flows` flows.
std::vector<double> cross_leaf(double oversubscription, int flows, double bytes) {
  return in_child([=] {
    const Platform p = start(make_cluster(8, 8, InterTopology::kFatTree, 8, oversubscription), 64);
    std::vector<Flow> all;
    for (int r = 0; r < flows; ++r) all.push_back({r, r + 32, bytes});
    return run_flows(p, all);
  });
}

TEST(PlatformContention, OversubscribedLeafUplinkBecomesTheBottleneck) {
  const double bytes = 1e9;
  // Oversubscription 2: leaf uplink = 32 NICs x 25 GB/s / 2 = 400 GB/s.
  const double uplink = 32 * kNicBw / 2;
  // 32 flows: 400 / 32 = 12.5 GB/s each, below a NIC's 25.
  expect_times(cross_leaf(2.0, 32, bytes),
               std::vector<double>(32, kInterLat + bytes / (uplink / 32)));
  // 16 flows: 400 / 16 = 25 GB/s each, exactly the NIC rate.
  expect_times(cross_leaf(2.0, 16, bytes), std::vector<double>(16, kInterLat + bytes / kNicBw));
  // Full bisection: 32 flows run at NIC rate.
  expect_times(cross_leaf(1.0, 32, bytes), std::vector<double>(32, kInterLat + bytes / kNicBw));
}

// ---------------------------------------------------------------------------------------------
// Heterogeneous groups, stragglers, partial worlds

TEST(PlatformHosts, HeterogeneousClusterHostsCarryTheirGroup) {
  const ClusterSpec cluster =
      strategies::load_cluster(kRoot + "/configs/clusters/hetero-a100-h100.json");
  const double bytes = 9e8;
  const std::vector<double> values = in_child([&] {
    const Platform p = start(cluster, 64);
    std::vector<double> v = {static_cast<double>(p.hosts.size()),
                             static_cast<double>(p.num_nodes())};
    for (int r : {0, 31, 32, 63}) {
      v.push_back(p.hosts[r]->get_speed());
      v.push_back(std::string(p.hosts[r]->get_property("device")) ==
                  cluster.group_of_gpu(r).gpu.name);
      v.push_back(std::string(p.hosts[r]->get_property("group")) == cluster.group_of_gpu(r).name);
      v.push_back(std::stoi(p.hosts[r]->get_property("node")) == p.node_of_rank[r]);
    }
    // a100 node, h100 node, a100 -> h100 (leaf 0 -> leaf 1).
    for (double t : run_flows(p, {{0, 1, bytes}, {32, 33, bytes}, {2, 40, bytes}})) {
      v.push_back(t);
    }
    return v;
  });
  ASSERT_EQ(values.size(), 2u + 4 * 4 + 3);
  EXPECT_EQ(values[0], 64);
  EXPECT_EQ(values[1], 8);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(values[2 + 4 * i], Platform::kHostFlops);
    EXPECT_EQ(values[3 + 4 * i], 1.0) << "device property of host " << i;
    EXPECT_EQ(values[4 + 4 * i], 1.0) << "group property of host " << i;
    EXPECT_EQ(values[5 + 4 * i], 1.0) << "node property of host " << i;
  }
  expect_times({values.begin() + 18, values.end()},
               {1e-6 + bytes / 300e9, 1e-6 + bytes / 450e9, 2e-6 + bytes / 25e9});
}

// The bundled table's links: each node group's NVSwitch ports at its own GPU's share (the a100
// class's 0.767, H100 the table's 0.80), the network at 0.96 whatever the GPUs.
TEST(PlatformHosts, EachGroupsNvSwitchRunsAtItsGpusShare) {
  const ClusterSpec cluster =
      strategies::load_cluster(kRoot + "/configs/clusters/hetero-a100-h100.json");
  const double bytes = 9e8;
  const std::vector<double> times = in_child([&] {
    PlatformOptions o;
    o.links = profiler::load_efficiencies(profiler::default_efficiencies_path()).links();
    const Platform p = start(cluster, 64, o);
    return run_flows(p, {{0, 1, bytes}, {32, 33, bytes}, {2, 40, bytes}});
  });
  expect_times(times, {1e-6 + bytes / (0.767 * 300e9), 1e-6 + bytes / (0.80 * 450e9),
                       2e-6 + bytes / (0.96 * 25e9)});
}

TEST(PlatformHosts, StragglerFactorStretchesCompute) {
  const std::vector<double> factors = {1.0, 0.5, 1.0, 0.25, 2.0, 1.0, 1.0, 1.0};
  const std::vector<double> times = in_child([&] {
    const Platform p = start(make_cluster(1, 8, InterTopology::kNone, 0), 8, {factors});
    std::vector<sg4::ActivityPtr> all;
    // One second of work at full speed on each of ranks 0, 1, 3, 4.
    for (int r : {0, 1, 3, 4}) all.push_back(compute(p.hosts[r], Platform::kHostFlops));
    return run_to_completion(all);
  });
  expect_times(times, {1.0, 2.0, 4.0, 0.5});
}

TEST(PlatformHosts, PartialWorldFillsNodesInOrder) {
  const std::vector<double> values = in_child([] {
    const Platform p = start(make_cluster(4, 8, InterTopology::kFatTree, 8), 12);
    std::vector<double> v = {
        static_cast<double>(p.hosts.size()),
        static_cast<double>(p.num_nodes()),
        static_cast<double>(p.gpus_per_node(0)),
        static_cast<double>(p.gpus_per_node(1)),
        static_cast<double>(p.first_rank_of_node[1]),
        static_cast<double>(p.node_of_rank[7]),
        static_cast<double>(p.node_of_rank[8]),
        static_cast<double>(p.hosts[11]->get_name() == "rank11"),
        static_cast<double>(std::stoi(p.hosts[11]->get_property("local_rank"))),
        static_cast<double>(sg4::Engine::get_instance()->get_host_count())};
    v.push_back(run_flows(p, {{11, 0, 1e6}}).at(0));
    return v;
  });
  ASSERT_EQ(values.size(), 11u);
  EXPECT_EQ(std::vector<double>(values.begin(), values.end() - 1),
            (std::vector<double>{12, 2, 8, 4, 8, 0, 1, 1, 3, 13}));  // 12 ranks + the timer
  expect_times({values.back()}, {kInterLat + 1e6 / kNicBw});
}

// ---------------------------------------------------------------------------------------------
// Input errors

// The ConfigError message build_platform throws, or "no error".
std::string build_error(const ClusterSpec& cluster, int world_size,
                        const PlatformOptions& options = {}) {
  return in_child_text([&] {
    try {
      start(cluster, world_size, options);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  });
}

TEST(PlatformErrors, BadWorldSizesAndSpeedFactorsNameFieldValueAndRule) {
  const ClusterSpec c = make_cluster(2, 8, InterTopology::kFatTree, 8);
  EXPECT_EQ(build_error(c, 17), "world_size = 17: exceeds the 16 GPUs of cluster 'test'");
  EXPECT_EQ(build_error(c, 0), "world_size = 0: must be >= 1");
  EXPECT_EQ(build_error(c, 4, {{1.0, 1.0}}),
            "speed_factors has 2 entries: must be empty or one per rank (world_size = 4)");
  EXPECT_EQ(build_error(c, 2, {{1.0, 0.0}}), "speed_factors[1] = 0: must be a finite number > 0");
  EXPECT_EQ(build_error(make_cluster(2, 8, InterTopology::kNone, 0), 9),
            "cluster.inter_node.topology = none: world_size = 9 spans several nodes, which "
            "needs an inter-node network");
  EXPECT_EQ(build_error(make_cluster(2, 8, InterTopology::kFatTree, 8, 0.5), 16),
            "cluster.inter_node.oversubscription = 0.5: must be >= 1 (1 = full bisection "
            "bandwidth)");
}

// ---------------------------------------------------------------------------------------------
// Bundled clusters, full size

TEST(PlatformBundled, DgxA100FatTree1024Gpus) {
  const ClusterSpec cluster =
      strategies::load_cluster(kRoot + "/configs/clusters/dgx-a100-128n.json");
  const double bytes = 1e9;
  const std::string text = in_child_text([&] {
    const Platform p = start(cluster, cluster.total_gpus());
    const std::vector<double> t = run_flows(p, {{0, 1023, bytes}, {1, 2, bytes}});
    char line[160];
    std::snprintf(line, sizeof line, "%zu %d %zu %.12g %.12g\n", p.hosts.size(), p.num_nodes(),
                  sg4::Engine::get_instance()->get_link_count(), t[0], t[1]);
    return line + route(p, 0, 1023);
  });
  double t_inter = 0, t_intra = 0;
  std::size_t hosts = 0, links = 0;
  int nodes = 0;
  char rest[512] = {};
  ASSERT_EQ(std::sscanf(text.c_str(), "%zu %d %zu %lf %lf\n%511[^\n]", &hosts, &nodes, &links,
                        &t_inter, &t_intra, rest),
            6)
      << text;
  EXPECT_EQ(hosts, 1024u);
  EXPECT_EQ(nodes, 128);
  // Per GPU: NVSwitch port (2 directions) + loopback; per node: 8 NICs (2 each); 32 leaf
  // uplinks (2 each); and SimGrid's own loopback link.
  EXPECT_EQ(links, 1024u * 3 + 128 * 8 * 2 + 32 * 2 + 1);
  EXPECT_EQ(std::string(rest),
            "n0-nic0_UP leaf0-spine_UP leaf31-spine_DOWN n127-nic7_DOWN | 2e-06");
  EXPECT_NEAR(t_inter, 2e-6 + bytes / 25e9, kRelTol * t_inter);
  EXPECT_NEAR(t_intra, 1e-6 + bytes / 300e9, kRelTol * t_intra);
}

TEST(PlatformBundled, DgxH100RailOptimized1024Gpus) {
  const ClusterSpec cluster =
      strategies::load_cluster(kRoot + "/configs/clusters/dgx-h100-128n.json");
  const double bytes = 1e9;
  const std::string text = in_child_text([&] {
    const Platform p = start(cluster, cluster.total_gpus());
    const std::vector<double> t = run_flows(p, {{0, 1023, bytes}, {8, 1016, bytes}});
    char line[128];
    std::snprintf(line, sizeof line, "%zu %.12g %.12g\n", p.hosts.size(), t[0], t[1]);
    return line + route(p, 0, 1023) + "\n" + route(p, 8, 1016);
  });
  std::size_t hosts = 0;
  double t_cross = 0, t_same = 0;
  ASSERT_EQ(std::sscanf(text.c_str(), "%zu %lf %lf", &hosts, &t_cross, &t_same), 3) << text;
  EXPECT_EQ(hosts, 1024u);
  EXPECT_NE(text.find("\nn0-nic0_UP rail0-spine_UP rail7-spine_DOWN n127-nic7_DOWN | 2e-06\n"
                      "n1-nic0_UP n127-nic0_DOWN | 2e-06"),
            std::string::npos)
      << text;
  EXPECT_NEAR(t_cross, 2e-6 + bytes / 50e9, kRelTol * t_cross);
  EXPECT_NEAR(t_same, 2e-6 + bytes / 50e9, kRelTol * t_same);
}

TEST(PlatformBundled, LocalCpuSingleNodeWithoutNetwork) {
  const ClusterSpec cluster = strategies::load_cluster(kRoot + "/configs/clusters/local-cpu.json");
  const double bytes = 6e8;
  const std::vector<double> values = in_child([&] {
    const Platform p = start(cluster, cluster.total_gpus());
    std::vector<double> v = {static_cast<double>(p.hosts.size())};
    v.push_back(run_flows(p, {{0, 7, bytes}}).at(0));
    return v;
  });
  ASSERT_EQ(values.size(), 2u);
  EXPECT_EQ(values[0], 8);
  EXPECT_NEAR(values[1], 0.25e-6 + bytes / 6e9, kRelTol * values[1]);
}

}  // namespace
}  // namespace strata::sim
