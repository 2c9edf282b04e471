// ProfiledCostModel: exact look-up, log-log interpolation in one dim (never extrapolation), the
// roofline for whatever was not measured (a task is measured only when all its ops are), the SM
// share of tp_comm_overlap's GEMMs, profiles of another device refused, and the link face from
// measured curves (efficiency, latency beyond the links', interpolated times; every collective
// kind from its own curve).
#include "profiler/profiled_cost_model.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "profiler/link_model.hpp"
#include "test_tables.hpp"
#include "tests/strategies/expect_config_error.hpp"
#include "tests/strategies/test_models.hpp"

namespace strata::profiler {
namespace {

using strategies::Op;
using strategies::OpKind;
using strategies::Precision;
using strategies::testing::expect_config_error;

constexpr const char* kDevice = "A100-SXM4-80GB";  // the test cluster's (test_models.hpp)

RooflineCostModel roofline() {
  return RooflineCostModel(load_efficiencies(default_efficiencies_path()));
}

Op gemm(std::int64_t m, std::int64_t k, std::int64_t n, float comm_sms = 0) {
  Op op;
  op.kind = OpKind::kLinear;
  op.dtype = strategies::DType::kBf16;
  op.n_in = 2;
  op.n_out = 1;
  op.dims = {m, k, n, 0, 0, 0};
  op.param = comm_sms;
  return op;
}

OpProfile profile_of(const std::vector<std::pair<Op, double>>& ops, const std::string& device) {
  OpProfile p;
  p.on.device = device;
  p.on.device_kind = "gpu";
  p.warmup = 1;
  p.repetitions = 3;
  for (const auto& [op, s] : ops) p.ops.push_back({op_key(op), s, s, s, 3});
  return p;
}

ProfiledCostModel model(const std::vector<OpProfile>& ops, const std::vector<LinkProfile>& links = {},
                        const strategies::ClusterSpec& c = strategies::testing::cluster(2, 8)) {
  std::vector<std::string> op_files(ops.size(), "p.json"), link_files(links.size(), "l.json");
  return ProfiledCostModel(roofline(), c, ops, op_files, links, link_files);
}

strategies::DeviceSpec device() { return strategies::testing::cluster(2, 8).node_groups[0].gpu; }

TEST(ProfiledCostModel, ExactAndInterpolatedOps) {
  const auto m = model({profile_of({{gemm(1024, 4096, 4096), 1e-3}, {gemm(4096, 4096, 4096), 3e-3}},
                                   kDevice)});
  EXPECT_EQ(m.measured(gemm(1024, 4096, 4096), device()), 1e-3);
  // 2048 rows: log-log between (1024, 1 ms) and (4096, 3 ms): 1 ms x 2^(log 3 / log 4).
  EXPECT_NEAR(*m.measured(gemm(2048, 4096, 4096), device()),
              1e-3 * std::pow(2.0, std::log(3.0) / std::log(4.0)), 1e-15);
  // Outside the measured sizes, or differing in two dims: not measured, the roofline prices it.
  EXPECT_FALSE(m.measured(gemm(8192, 4096, 4096), device()));
  EXPECT_FALSE(m.measured(gemm(2048, 2048, 4096), device()));
  EXPECT_DOUBLE_EQ(m.op_seconds(gemm(8192, 4096, 4096), device(), Precision::kBf16),
                   roofline().op_seconds(gemm(8192, 4096, 4096), device(), Precision::kBf16));
  // Another device of the same kind has no measurements.
  strategies::DeviceSpec other = device();
  other.name = "A100-SXM4-40GB";
  EXPECT_FALSE(m.measured(gemm(1024, 4096, 4096), other));
}

TEST(ProfiledCostModel, ATaskIsMeasuredOnlyWhenAllItsOpsAre) {
  const auto m = model({profile_of({{gemm(1024, 4096, 4096), 1e-3}}, kDevice)});
  strategies::Program p;
  p.ops = {gemm(1024, 4096, 4096), gemm(1024, 4096, 4096)};
  strategies::Task both;
  both.block = strategies::Block::kMlpFc1;
  both.phase = strategies::Phase::kForward;
  both.op_count = 2;
  EXPECT_TRUE(m.measures(p, both, device()));
  EXPECT_DOUBLE_EQ(m.compute_seconds(p, both, device(), Precision::kBf16), 2e-3);
  p.ops[1] = gemm(1024, 4096, 8192);  // not measured: the whole task from the roofline
  const strategies::OpCost c0 = strategies::op_cost(p.ops[0]), c1 = strategies::op_cost(p.ops[1]);
  both.flops = c0.flops + c1.flops;
  both.bytes = c0.bytes + c1.bytes;
  EXPECT_FALSE(m.measures(p, both, device()));
  EXPECT_DOUBLE_EQ(m.compute_seconds(p, both, device(), Precision::kBf16),
                   roofline().compute_seconds(p, both, device(), Precision::kBf16));
}

TEST(ProfiledCostModel, OverlappedGemmsPayTheSmShareOnTopOfTheirMeasurement) {
  const auto m = model({profile_of({{gemm(1024, 4096, 4096), 1e-3}}, kDevice)});
  // tp_comm_overlap_sms 12 of the A100's 108 SMs.
  EXPECT_DOUBLE_EQ(m.op_seconds(gemm(1024, 4096, 4096, 12), device(), Precision::kBf16),
                   1e-3 * 108.0 / 96.0);
}

TEST(ProfiledCostModel, AProfileOfAnotherDeviceIsRefused) {
  expect_config_error([&] { model({profile_of({}, "H100-SXM5-80GB")}); },
                      {"p.json: profile.measured_on.device = \"H100-SXM5-80GB\"",
                       "no device of cluster 'test-cluster'", "\"A100-SXM4-80GB\""});
}

LinkCurve link_curve(LinkCollective collective, int ranks, const std::string& fabric,
                     double latency, double busbw) {
  LinkCurve c;
  c.collective = collective;
  c.ranks = ranks;
  c.fabric = fabric;
  for (double b : {1e3, 1e6, 1e8}) {
    c.points.push_back({b, latency + b * busbw_factor(c.collective, ranks) / busbw});
  }
  c.fit = fit_curve(c);
  return c;
}

LinkCurve all_reduce_curve(int ranks, const std::string& fabric, double latency, double busbw) {
  return link_curve(LinkCollective::kAllReduce, ranks, fabric, latency, busbw);
}

// A links.json of the test cluster's GPU with no curve yet, measured by `backend`.
LinkProfile gpu_links(const std::string& backend) {
  LinkProfile l;
  l.on.device = kDevice;
  l.on.device_kind = "gpu";
  l.backend = backend;
  return l;
}

TEST(ProfiledCostModel, LinkFaceFromMeasuredCurves) {
  const auto cluster = strategies::testing::cluster(2, 8);  // NVSwitch 300 GB/s, 2 nodes
  LinkProfile l = gpu_links("nccl-tests");
  l.curves.push_back(all_reduce_curve(8, "nvswitch", 30e-6, 240e9));
  const auto m = model({}, {l}, cluster);
  // The fabric's efficiency is the highest measured bus bandwidth (latency taken off: for this
  // curve of one latency and bandwidth, that bandwidth) over its line rate; others unchanged.
  EXPECT_NEAR(m.link_efficiencies().nvswitch, 240e9 / 300e9, 1e-9);
  EXPECT_EQ(m.link_efficiencies().network, roofline().link_efficiencies().network);
  // Measured, it holds for every GPU, whatever share the table gives its class (A100: 0.767).
  strategies::DeviceSpec a100 = cluster.node_groups[0].gpu;
  a100.name = "A100-SXM4-80GB";
  EXPECT_DOUBLE_EQ(roofline().link_efficiencies().intra(strategies::IntraFabric::kNvSwitch, a100),
                   0.767);
  EXPECT_NEAR(m.link_efficiencies().intra(strategies::IntraFabric::kNvSwitch, a100),
              240e9 / 300e9, 1e-9);
  const std::vector<int> node0 = {0, 1, 2, 3, 4, 5, 6, 7}, across = {0, 8};
  EXPECT_TRUE(m.measures_collective(strategies::CollectiveKind::kAllReduce, node0, cluster));
  EXPECT_FALSE(m.measures_collective(strategies::CollectiveKind::kAllReduce, across, cluster));
  EXPECT_FALSE(m.measures_collective(strategies::CollectiveKind::kAllGather, node0, cluster));
  // The latency beyond the links': the measured time at the size less the links' own for it.
  // This curve is one latency and bandwidth, so that is the measured 30 us less the links'
  // latency (a ring of 14 hops of 2 us: 28 us) at every size.
  const auto ar = strategies::CollectiveKind::kAllReduce;
  const double links =
      collective_alpha_beta_seconds(ar, node0, 1.0, cluster, m.link_efficiencies());
  EXPECT_NEAR(links, 28e-6, 1e-9);
  EXPECT_NEAR(l.curves[0].fit.latency_s, 30e-6, 1e-12);
  for (double bytes : {1e3, 1e6, 1e8}) {
    const double alone = m.collective_seconds(ar, node0, bytes, cluster);
    const double extra = m.collective_extra_latency_s(ar, node0, bytes, cluster, 7e-6);
    EXPECT_NEAR(extra, 2e-6, 1e-11) << bytes;
    EXPECT_NEAR(
        alone,
        extra + collective_alpha_beta_seconds(ar, node0, bytes, cluster, m.link_efficiencies()),
        1e-12 * alone)
        << bytes;
  }
  EXPECT_DOUBLE_EQ(m.collective_extra_latency_s(strategies::CollectiveKind::kAllReduce, across,
                                                1e6, cluster, 7e-6),
                   7e-6);  // no curve: the model's
  // Alone: the measured times, interpolated log-log between sizes.
  const double t3 = l.curves[0].points[0].time_s, t6 = l.curves[0].points[1].time_s;
  EXPECT_DOUBLE_EQ(m.collective_seconds(strategies::CollectiveKind::kAllReduce, node0, 1e6, cluster), t6);
  EXPECT_NEAR(m.collective_seconds(strategies::CollectiveKind::kAllReduce, node0, 1e4, cluster),
              t3 * std::exp(std::log(t6 / t3) / 3.0), 1e-15);
  // A curve on a fabric the cluster does not have.
  l.curves[0].fabric = "pcie";
  expect_config_error([&] { model({}, {l}, cluster); },
                      {"l.json: links.curves[0].fabric = \"pcie\"", "no such fabric"});
}

// A curve that bends away from one latency and bandwidth (a shared-memory transport slows once
// messages outgrow the caches): a lone collective still takes the measured time at its size,
// the links their share and the latency the rest, which grows with the size.
TEST(ProfiledCostModel, ACollectiveAloneTakesItsCurvesTimeWhereverTheCurveBends) {
  const auto cluster = strategies::testing::cluster(2, 8);
  LinkProfile l = gpu_links("mpi");
  LinkCurve c = all_reduce_curve(8, "nvswitch", 30e-6, 240e9);
  c.points.push_back({1e9, 4 * c.points.back().time_s * 10});  // 10x the bytes, 40x the time
  c.fit = fit_curve(c);
  l.curves.push_back(c);
  const auto m = model({}, {l}, cluster);
  const auto ar = strategies::CollectiveKind::kAllReduce;
  const std::vector<int> node0 = {0, 1, 2, 3, 4, 5, 6, 7};
  // The links run at the best bus bandwidth measured (1e8 bytes' point), not the fit's, which the
  // slow point drags down.
  EXPECT_GT(m.link_efficiencies().nvswitch, c.fit.busbw_Bps / 300e9);
  for (const LinkPoint& p : c.points) {
    const double links =
        collective_alpha_beta_seconds(ar, node0, p.bytes, cluster, m.link_efficiencies());
    const double extra = m.collective_extra_latency_s(ar, node0, p.bytes, cluster, 0);
    EXPECT_GE(extra, 0) << p.bytes;
    // Alone it takes the measured time, or the links' where they are slower (their latency).
    EXPECT_NEAR(std::max(p.time_s, links), links + extra, 1e-12 * p.time_s) << p.bytes;
    EXPECT_LT(links, p.time_s + 28e-6) << p.bytes;
  }
  // Most of the slow point is beyond the links.
  EXPECT_GT(m.collective_extra_latency_s(ar, node0, 1e9, cluster, 0), 0.5 * c.points.back().time_s);
}

// `strata profile links` measures every collective kind: an all-to-all or a broadcast of the
// Plan is priced from its own curve (never from another kind's); the fabric's efficiency is
// still the best bus bandwidth measured on it (the all-reduce's, here).
TEST(ProfiledCostModel, AllToAllAndBroadcastUseTheirOwnCurves) {
  const auto cluster = strategies::testing::cluster(2, 8);
  LinkProfile l = gpu_links("mpi");
  l.curves.push_back(link_curve(LinkCollective::kAllToAll, 4, "nvswitch", 20e-6, 100e9));
  l.curves.push_back(link_curve(LinkCollective::kBroadcast, 4, "nvswitch", 10e-6, 200e9));
  l.curves.push_back(all_reduce_curve(8, "nvswitch", 30e-6, 240e9));
  const auto m = model({}, {l}, cluster);
  EXPECT_NEAR(m.link_efficiencies().nvswitch, 240e9 / 300e9, 1e-9);  // the best curve's
  const std::vector<int> four = {0, 1, 2, 3};
  using strategies::CollectiveKind;
  EXPECT_TRUE(m.measures_collective(CollectiveKind::kAllToAll, four, cluster));
  EXPECT_TRUE(m.measures_collective(CollectiveKind::kBroadcast, four, cluster));
  EXPECT_FALSE(m.measures_collective(CollectiveKind::kAllGather, four, cluster));
  EXPECT_FALSE(
      m.measures_collective(CollectiveKind::kAllToAll, {0, 1}, cluster));  // no 2-rank curve
  EXPECT_DOUBLE_EQ(m.collective_seconds(CollectiveKind::kAllToAll, four, 1e6, cluster),
                   l.curves[0].points[1].time_s);
  EXPECT_DOUBLE_EQ(m.collective_seconds(CollectiveKind::kBroadcast, four, 1e6, cluster),
                   l.curves[1].points[1].time_s);
  EXPECT_NE(l.curves[0].points[1].time_s, l.curves[1].points[1].time_s);
  // The latency beyond the links' comes from the curve too: its time less the links'.
  EXPECT_DOUBLE_EQ(
      m.collective_extra_latency_s(CollectiveKind::kBroadcast, four, 1e6, cluster, 7e-6),
      std::max(0.0, l.curves[1].points[1].time_s -
                        collective_alpha_beta_seconds(CollectiveKind::kBroadcast, four, 1e6,
                                                      cluster, m.link_efficiencies())));
}

TEST(ProfiledCostModel, GroupFabric) {
  const auto c = strategies::testing::cluster(2, 8);
  EXPECT_EQ(group_fabric(c, {0, 1}), "nvswitch");
  EXPECT_EQ(group_fabric(c, {7, 8}), "network");
}

}  // namespace
}  // namespace strata::profiler
