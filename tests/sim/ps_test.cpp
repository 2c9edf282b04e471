// Parameter-server training in SimGrid (sim/ps.hpp): the simulated BSP step against its
// alpha-beta formula (one worker and one server; W workers NIC-bound on one server; S servers
// of equal shares), the server NIC shared by co-located workers, and SSP and ASP waiting less
// than BSP under compute jitter. Every simulation runs in a forked child.
#include "sim/ps.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "common/error.hpp"
#include "sim_test_util.hpp"

namespace strata::sim {
namespace {

using strategies::ClusterSpec;
using strategies::PsConsistency;
using strategies::PsSpec;
using strategies::PsTraffic;
using testing::in_child;

constexpr double kNicBw = 10e9;     // bytes/s per direction
constexpr double kInterLat = 1e-5;  // s, NIC to NIC
constexpr double kMemBw = 100e9;    // server memory

ClusterSpec cluster(int nodes, int gpus_per_node, int nics = 1) {
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
  g.intra_node = {strategies::IntraFabric::kNvSwitch, 100e9, 1e-6};
  c.node_groups.push_back(g);
  c.inter_node = {strategies::InterTopology::kFatTree, 1.0, nics, kNicBw, kInterLat};
  return c;
}

PsSpec spec(int servers, PsConsistency c = PsConsistency::kBsp, int staleness = 0) {
  PsSpec s;
  s.servers = servers;
  s.consistency = c;
  s.staleness = staleness;
  s.server_memory_bandwidth_Bps = kMemBw;
  return s;
}

// Every worker moves `bytes` to and from every server; updates stream `update` bytes.
PsTraffic traffic(int workers, int servers, double bytes, double update) {
  PsTraffic t;
  t.workers = workers;
  t.servers = servers;
  t.samples_per_step = 8.0 * workers;
  t.pull_bytes.assign(servers, bytes);
  t.push_bytes.assign(servers, bytes);
  t.push_update_bytes.assign(servers, update / workers);
  t.step_update_bytes.assign(servers, update);
  t.params.assign(servers, bytes / 4);
  return t;
}

std::vector<double> run(const ClusterSpec& c, const PsSpec& s, const PsTraffic& t,
                        std::vector<double> compute, int steps = 8) {
  return in_child([&] { return ps_report_to_numbers(simulate_ps(c, s, t, compute, steps)); });
}

TEST(PsSim, OneWorkerOneServerIsTheFormula) {
  const ClusterSpec c = cluster(1, 1);
  const PsTraffic t = traffic(1, 1, 1e8, 1e9);
  const auto v = run(c, spec(1), t, {0.05});
  ASSERT_FALSE(v.empty());
  const PsSimReport r = ps_report_from_numbers(v);
  // 0.05 compute + 2 x (10 us + 1e8 / 10 GB/s) + 1e9 / 100 GB/s = 0.08002 s.
  EXPECT_NEAR(r.mean_step_s, 0.08002, 1e-9);
  EXPECT_NEAR(r.mean_step_s, ps_bsp_step_formula_s(c, spec(1), t, 0.05), 1e-9);
  EXPECT_NEAR(r.samples_per_s, 8 / 0.08002, 1e-6);
  EXPECT_DOUBLE_EQ(r.server_bytes_in[0], 1e8);
  EXPECT_DOUBLE_EQ(r.server_bytes_out[0], 1e8);
  EXPECT_NEAR(r.server_busy_s[0], 0.01, 1e-12);
  // Waiting: from the end of its pushes to its compute: the update and the pull.
  EXPECT_NEAR(r.worker_wait_s[0], 0.01 + 1e-5 + 0.01, 1e-9);
  EXPECT_NEAR(r.worker_compute_s[0], 0.05, 1e-12);
  EXPECT_EQ(r.max_staleness, 0);
  EXPECT_EQ(r.warmup_steps, 2);
}

TEST(PsSim, WorkersShareTheServerNic) {
  // Four workers on four nodes, one server: its NIC carries 4 x bytes each way.
  const ClusterSpec c = cluster(4, 1);
  const PsTraffic t = traffic(4, 1, 1e8, 4e8);
  const PsSimReport r = ps_report_from_numbers(run(c, spec(1), t, {0.02}));
  // 0.02 + 2 x (10 us + 4 x 1e8 / 10 GB/s) + 4e8 / 100 GB/s = 0.10402 s.
  EXPECT_NEAR(r.mean_step_s, 0.10402, 1e-9);
  EXPECT_NEAR(r.mean_step_s, ps_bsp_step_formula_s(c, spec(1), t, 0.02), 1e-9);
  EXPECT_DOUBLE_EQ(r.server_bytes_in[0], 4e8);
  // Two servers with equal shares halve every server NIC's load.
  const PsTraffic half = traffic(4, 2, 0.5e8, 2e8);
  const PsSimReport two = ps_report_from_numbers(run(c, spec(2), half, {0.02}));
  EXPECT_NEAR(two.mean_step_s, 0.02 + 2 * (1e-5 + 0.02) + 0.002, 1e-9);
  EXPECT_NEAR(two.mean_step_s, ps_bsp_step_formula_s(c, spec(2), half, 0.02), 1e-9);
  // Four workers on one node sharing one NIC: that NIC is the bottleneck even with two servers.
  const ClusterSpec shared = cluster(1, 4);
  const PsSimReport one_nic = ps_report_from_numbers(run(shared, spec(2), half, {0.02}));
  EXPECT_NEAR(one_nic.mean_step_s, 0.02 + 2 * (1e-5 + 0.04) + 0.002, 1e-9);
  EXPECT_NEAR(one_nic.mean_step_s, ps_bsp_step_formula_s(shared, spec(2), half, 0.02), 1e-9);
}

TEST(PsSim, ColocatedServersUseTheNodeFabricLocally) {
  // One node, two workers, a co-located server: no network needed (nics 0), the node's link.
  const ClusterSpec c = cluster(1, 2, 0);
  PsSpec s = spec(1);
  s.placement = strategies::PsPlacement::kColocated;
  const PsTraffic t = traffic(2, 1, 1e8, 2e8);
  const PsSimReport r = ps_report_from_numbers(run(c, s, t, {0.01}));
  // 0.01 + 2 x (1 us + 2e8 / 100 GB/s) + 2e8 / 100 GB/s.
  EXPECT_NEAR(r.mean_step_s, 0.01 + 2 * (1e-6 + 0.002) + 0.002, 1e-9);
  EXPECT_NEAR(r.mean_step_s, ps_bsp_step_formula_s(c, s, t, 0.01), 1e-9);
  // Separate servers need a network.
  EXPECT_THROW(ps_hosts(c, spec(1), 2), ConfigError);
}

TEST(PsSim, StalenessLetsWorkersWaitLess) {
  const ClusterSpec c = cluster(4, 1);
  const PsTraffic t = traffic(4, 2, 1e7, 1e7);
  std::vector<PsSimReport> r;
  for (const PsSpec& base :
       {spec(2), spec(2, PsConsistency::kSsp, 2), spec(2, PsConsistency::kAsp)}) {
    PsSpec s = base;
    s.compute_jitter = 0.5;
    r.push_back(ps_report_from_numbers(run(c, s, t, {0.02}, 24)));
  }
  ASSERT_EQ(r.size(), 3u);
  const auto mean_wait = [](const PsSimReport& x) {
    double sum = 0;
    for (double w : x.worker_wait_s) sum += w;
    return sum / x.workers;
  };
  EXPECT_GT(mean_wait(r[0]), mean_wait(r[1]));
  EXPECT_GT(mean_wait(r[1]), mean_wait(r[2]));
  EXPECT_GE(r[1].samples_per_s, r[0].samples_per_s);
  EXPECT_GE(r[2].samples_per_s, r[1].samples_per_s);
  EXPECT_EQ(r[0].max_staleness, 0);
  EXPECT_LE(r[1].max_staleness, 2);
  EXPECT_GE(r[1].max_staleness, 1);
  // ASP: transfers only, no blocking; each step's wait is at least a pull.
  EXPECT_GE(mean_wait(r[2]), 1e-5 + 2 * 1e7 / kNicBw);
  // Without jitter BSP's step is its formula.
  const PsSimReport plain = ps_report_from_numbers(run(c, spec(2), t, {0.02}, 24));
  EXPECT_NEAR(plain.mean_step_s, ps_bsp_step_formula_s(c, spec(2), t, 0.02), 1e-9);
}

TEST(PsSim, JitterIsDeterministicAndBounded) {
  for (int w = 0; w < 8; ++w) {
    for (int t = 0; t < 50; ++t) {
      const double f = ps_jitter_factor(0.3, w, t);
      EXPECT_GE(f, 0.7);
      EXPECT_LE(f, 1.3);
      EXPECT_EQ(f, ps_jitter_factor(0.3, w, t));
    }
  }
  EXPECT_EQ(ps_jitter_factor(0, 3, 4), 1.0);
  EXPECT_NE(ps_jitter_factor(0.3, 0, 1), ps_jitter_factor(0.3, 1, 0));
}

}  // namespace
}  // namespace strata::sim
