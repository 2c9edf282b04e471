// Cluster specs: units, uniform and heterogeneous forms, fabric rules, rescaling, round trips and
// every bundled cluster.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "expect_config_error.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {
namespace {

using json::Json;

const std::string kRoot = STRATA_SOURCE_DIR;

using testing::expect_config_error;

Json gpu_json(const std::string& name = "G", double bf16 = 100) {
  return {{"name", name},
          {"peak_tflops", {{"bf16", bf16}, {"fp16", bf16}, {"fp32", bf16 / 10}}},
          {"memory_bytes", 1000},
          {"memory_bandwidth_GBps", 2000}};
}

Json intra_json(double gbps = 300) {
  return {{"fabric", "nvswitch"}, {"bandwidth_GBps", gbps}, {"latency_us", 1.5}};
}

Json inter_json() {
  return {{"topology", "fat-tree"},
          {"nics_per_node", 8},
          {"nic_bandwidth_Gbps", 200},
          {"latency_us", 2}};
}

Json uniform_json() {
  return {{"name", "c"},
          {"nodes", 4},
          {"gpus_per_node", 8},
          {"gpu", gpu_json()},
          {"intra_node", intra_json()},
          {"inter_node", inter_json()}};
}

Json hetero_json() {
  Json a = {{"name", "a"}, {"nodes", 2}, {"gpus_per_node", 8}, {"gpu", gpu_json("A", 100)}};
  Json b = {{"name", "b"},
            {"nodes", 1},
            {"gpus_per_node", 4},
            {"gpu", gpu_json("B", 300)},
            {"intra_node", intra_json(450)}};
  return {{"name", "h"},
          {"node_groups", Json::array({a, b})},
          {"intra_node", intra_json(300)},
          {"inter_node", inter_json()}};
}

TEST(ClusterSpec, ParsesUniformAndConvertsUnits) {
  const ClusterSpec c = parse_cluster(uniform_json());
  ASSERT_EQ(c.node_groups.size(), 1u);
  EXPECT_FALSE(c.heterogeneous());
  EXPECT_EQ(c.total_nodes(), 4);
  EXPECT_EQ(c.total_gpus(), 32);
  const NodeGroup& g = c.node_groups[0];
  EXPECT_EQ(g.gpu.kind, DeviceKind::kGpu);
  EXPECT_DOUBLE_EQ(g.gpu.peak_bf16_flops, 100e12);
  EXPECT_DOUBLE_EQ(g.gpu.peak_fp32_flops, 10e12);
  EXPECT_DOUBLE_EQ(g.gpu.memory_bytes, 1000);
  EXPECT_DOUBLE_EQ(g.gpu.memory_bandwidth_Bps, 2000e9);
  EXPECT_EQ(g.intra_node.kind, IntraFabric::kNvSwitch);
  EXPECT_DOUBLE_EQ(g.intra_node.bandwidth_Bps, 300e9);
  EXPECT_DOUBLE_EQ(g.intra_node.latency_s, 1.5e-6);
  EXPECT_EQ(c.inter_node.topology, InterTopology::kFatTree);
  EXPECT_DOUBLE_EQ(c.inter_node.oversubscription, 1.0);
  EXPECT_EQ(c.inter_node.nics_per_node, 8);
  EXPECT_DOUBLE_EQ(c.inter_node.nic_bandwidth_Bps, 25e9);  // 200 Gb/s = 25 GB/s
  EXPECT_DOUBLE_EQ(c.inter_node.latency_s, 2e-6);
  EXPECT_TRUE(c.comm_overlaps_compute);
  EXPECT_EQ(c.cores_per_node, 0);
}

TEST(ClusterSpec, GigabitsAndGigabytesAreTheSameBandwidth) {
  Json j = uniform_json();
  j["intra_node"].erase("bandwidth_GBps");
  j["intra_node"]["bandwidth_Gbps"] = 2400;
  j["gpu"].erase("memory_bandwidth_GBps");
  j["gpu"]["memory_bandwidth_Gbps"] = 16000;
  j["inter_node"].erase("nic_bandwidth_Gbps");
  j["inter_node"]["nic_bandwidth_GBps"] = 25;
  const ClusterSpec c = parse_cluster(j);
  const ClusterSpec ref = parse_cluster(uniform_json());
  EXPECT_DOUBLE_EQ(c.node_groups[0].intra_node.bandwidth_Bps,
                   ref.node_groups[0].intra_node.bandwidth_Bps);
  EXPECT_DOUBLE_EQ(c.node_groups[0].gpu.memory_bandwidth_Bps,
                   ref.node_groups[0].gpu.memory_bandwidth_Bps);
  EXPECT_DOUBLE_EQ(c.inter_node.nic_bandwidth_Bps, ref.inter_node.nic_bandwidth_Bps);
}

TEST(ClusterSpec, BandwidthNeedsExactlyOneUnit) {
  Json j = uniform_json();
  j["intra_node"]["bandwidth_Gbps"] = 2400;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.intra_node.bandwidth_Gbps = 2400", "not both"});
  j = uniform_json();
  j["inter_node"].erase("nic_bandwidth_Gbps");
  expect_config_error([&] { parse_cluster(j); }, {"cluster.inter_node.nic_bandwidth_GBps",
                                                  "required key is missing", "nic_bandwidth_Gbps"});
  j = uniform_json();
  j["gpu"]["memory_bandwidth_GBps"] = 0;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.gpu.memory_bandwidth_GBps = 0", "must be from 1e-06 to 1e+06 GB/s"});
}

TEST(ClusterSpec, DeviceRules) {
  Json j = uniform_json();
  j["gpu"]["peak_tflops"].erase("fp32");
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.gpu.peak_tflops.fp32", "required key is missing"});
  j = uniform_json();
  j["gpu"]["peak_tflops"]["fp4"] = 1979;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.gpu.peak_tflops.fp4", "unknown key", "bf16, fp16, fp32, fp8"});
  j = uniform_json();
  j["gpu"]["peak_tflops"]["fp8"] = 0;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.gpu.peak_tflops.fp8 = 0", "must be from 0.001 to 1e+05 TFLOP/s"});
  j = uniform_json();
  j["gpu"]["peak_tflops"]["bf16"] = -1;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.gpu.peak_tflops.bf16 = -1", "must be from 0.001 to 1e+05 TFLOP/s"});
  j = uniform_json();  // the SM count is optional (strategy tp_comm_overlap needs it)
  EXPECT_EQ(parse_cluster(j).node_groups[0].gpu.sms, 0);
  EXPECT_FALSE(to_json(parse_cluster(j))["gpu"].contains("sms"));
  j["gpu"]["sms"] = 132;
  EXPECT_EQ(parse_cluster(j).node_groups[0].gpu.sms, 132);
  EXPECT_EQ(to_json(parse_cluster(j))["gpu"]["sms"], 132);
  j["gpu"]["sms"] = 0;
  expect_config_error([&] { parse_cluster(j); }, {"cluster.gpu.sms = 0", "SM count"});
  j = uniform_json();
  j["gpu"]["memory_bytes"] = 0;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.gpu.memory_bytes = 0", "positive integer"});
  j = uniform_json();
  j["gpu"]["kind"] = "tpu";
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.gpu.kind = \"tpu\"", "\"gpu\", \"cpu\""});
  j = uniform_json();
  j["gpu"]["name"] = "";
  expect_config_error([&] { parse_cluster(j); }, {"cluster.gpu.name", "must not be empty"});
}

// Absurd but finite values would become infinite or 1e300-second task times in the simulator
// (a peak of 1e-300 FLOP/s once deadlocked the replay): each numeric field has a physical range
// (docs/specs.md), and the error names the field, the value and the range.
TEST(ClusterSpec, AbsurdButFiniteValuesAreRefusedWithTheRange) {
  struct Case {
    std::vector<std::string> path;
    Json value;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {{"gpu", "peak_tflops", "bf16"}, 1e-300,
       {"cluster.gpu.peak_tflops.bf16 = 1e-300", "from 0.001 to 1e+05 TFLOP/s"}},
      {{"gpu", "peak_tflops", "fp32"}, 1e300, {"cluster.gpu.peak_tflops.fp32 = 1e+300", "TFLOP/s"}},
      {{"gpu", "memory_bandwidth_GBps"}, 1e-300,
       {"cluster.gpu.memory_bandwidth_GBps = 1e-300", "1 kB/s to 1 PB/s"}},
      {{"intra_node", "bandwidth_GBps"}, 1e300,
       {"cluster.intra_node.bandwidth_GBps = 1e+300", "1 kB/s to 1 PB/s"}},
      {{"inter_node", "nic_bandwidth_Gbps"}, 1e-300,
       {"cluster.inter_node.nic_bandwidth_Gbps = 1e-300", "from 8e-06 to 8e+06 Gb/s"}},
      {{"intra_node", "latency_us"}, 1e300,
       {"cluster.intra_node.latency_us = 1e+300", "from 0 to 1e+06 us (1 s)"}},
      {{"inter_node", "latency_us"}, 2e6, {"cluster.inter_node.latency_us = 2000000", "(1 s)"}},
      {{"inter_node", "oversubscription"}, 1e300,
       {"cluster.inter_node.oversubscription = 1e+300", "from 1 to 1000"}},
      {{"inter_node", "nics_per_node"}, 5000,
       {"cluster.inter_node.nics_per_node = 5000", "from 1 to 1024 NICs"}},
      {{"gpu", "memory_bytes"}, 1LL << 51,
       {"cluster.gpu.memory_bytes = 2251799813685248", "at most 1125899906842624 (1 PiB)"}},
      {{"nodes"}, 2000000, {"cluster.nodes = 2000000", "from 1 to 1000000 nodes"}},
      {{"gpus_per_node"}, 4096, {"cluster.gpus_per_node = 4096", "from 1 to 1024 devices"}},
  };
  for (const Case& c : cases) {
    Json j = uniform_json();
    Json* at = &j;
    for (const std::string& key : c.path) at = &(*at)[key];
    *at = c.value;
    expect_config_error([&] { parse_cluster(j); }, c.expected);
  }
  // The ends of each range are accepted.
  Json j = uniform_json();
  j["gpu"]["peak_tflops"]["fp32"] = 0.001;
  j["gpu"]["memory_bandwidth_GBps"] = 1e-6;
  j["intra_node"]["bandwidth_GBps"] = 1e6;
  j["intra_node"]["latency_us"] = 0;
  j["inter_node"]["latency_us"] = 1e6;
  j["inter_node"]["oversubscription"] = 1000;
  const ClusterSpec c = parse_cluster(j);
  EXPECT_DOUBLE_EQ(c.node_groups[0].gpu.peak_fp32_flops, 1e9);
  EXPECT_DOUBLE_EQ(c.node_groups[0].gpu.memory_bandwidth_Bps, 1e3);
  EXPECT_DOUBLE_EQ(c.node_groups[0].intra_node.bandwidth_Bps, 1e15);
  EXPECT_DOUBLE_EQ(c.inter_node.latency_s, 1.0);
  expect_config_error([&] { with_nodes(c, 1000001); }, {"cluster.nodes = 1000001", "at most"});
}

TEST(ClusterSpec, FabricAndTopologyEnums) {
  Json j = uniform_json();
  j["intra_node"]["fabric"] = "nvlink";
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.intra_node.fabric = \"nvlink\"", "\"nvswitch\", \"pcie\""});
  j = uniform_json();
  j["inter_node"]["topology"] = "torus";
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.inter_node.topology = \"torus\"", "\"rail-optimized\""});
  j = uniform_json();
  j["inter_node"]["oversubscription"] = 0.5;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.inter_node.oversubscription = 0.5", "must be from 1 to 1000"});
  j = uniform_json();
  j["intra_node"]["latency_us"] = -1;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.intra_node.latency_us = -1", "must be from 0 to 1e+06 us"});
  j = uniform_json();
  j["inter_node"]["topology"] = "rail-optimized";
  j["inter_node"]["oversubscription"] = 2;
  const ClusterSpec c = parse_cluster(j);
  EXPECT_EQ(c.inter_node.topology, InterTopology::kRailOptimized);
  EXPECT_DOUBLE_EQ(c.inter_node.oversubscription, 2.0);
}

TEST(ClusterSpec, InterNodeRequiredForSeveralNodes) {
  Json j = uniform_json();
  j.erase("inter_node");
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.inter_node", "required key is missing", "4 nodes"});
  j["inter_node"] = {{"topology", "none"}};
  expect_config_error([&] { parse_cluster(j); }, {"cluster.inter_node.topology = \"none\"",
                                                  "only valid for a single node", "4 nodes"});
  j["nodes"] = 1;
  EXPECT_EQ(parse_cluster(j).inter_node.topology, InterTopology::kNone);
  j.erase("inter_node");
  EXPECT_EQ(parse_cluster(j).inter_node.topology, InterTopology::kNone);
  j["inter_node"] = {{"topology", "none"}, {"nics_per_node", 8}};
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.inter_node.nics_per_node = 8", "topology \"none\""});
}

TEST(ClusterSpec, ParsesNodeGroups) {
  const ClusterSpec c = parse_cluster(hetero_json());
  ASSERT_EQ(c.node_groups.size(), 2u);
  EXPECT_TRUE(c.heterogeneous());
  EXPECT_EQ(c.total_nodes(), 3);
  EXPECT_EQ(c.total_gpus(), 20);
  EXPECT_DOUBLE_EQ(c.node_groups[0].intra_node.bandwidth_Bps, 300e9);  // top-level default
  EXPECT_DOUBLE_EQ(c.node_groups[1].intra_node.bandwidth_Bps, 450e9);  // its own
  EXPECT_EQ(c.group_of_gpu(0).name, "a");
  EXPECT_EQ(c.group_of_gpu(15).name, "a");
  EXPECT_EQ(c.group_of_gpu(16).name, "b");
  EXPECT_EQ(c.group_of_gpu(19).name, "b");
  EXPECT_DOUBLE_EQ(c.group_of_gpu(19).gpu.peak_flops(Precision::kBf16), 300e12);
}

TEST(ClusterSpecDeathTest, GroupOfGpuBeyondTheClusterIsAnInvariant) {
  const ClusterSpec c = parse_cluster(hetero_json());
  EXPECT_DEATH(c.group_of_gpu(20), "beyond the cluster");
}

TEST(ClusterSpec, NodeGroupRules) {
  Json j = hetero_json();
  j["nodes"] = 2;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.nodes = 2", "either uniform", "or heterogeneous", "not both"});
  j = hetero_json();
  j["gpu"] = gpu_json();
  expect_config_error([&] { parse_cluster(j); }, {"cluster.gpu", "not both"});
  j = hetero_json();
  j.erase("intra_node");
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.node_groups[0].intra_node", "required key is missing"});
  j = hetero_json();
  j["node_groups"][1]["name"] = "a";
  expect_config_error([&] { parse_cluster(j); }, {"cluster.node_groups[1].name = \"a\"", "unique"});
  j = hetero_json();
  j["node_groups"] = Json::array();
  expect_config_error([&] { parse_cluster(j); }, {"cluster.node_groups = []", "non-empty"});
  j = hetero_json();
  j["node_groups"][0]["gpus_per_node"] = 0;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.node_groups[0].gpus_per_node = 0", "positive integer"});
  j = hetero_json();
  j["node_groups"][0]["inter_node"] = inter_json();
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.node_groups[0].inter_node", "unknown key"});
}

TEST(ClusterSpec, CpuDevicesShareTheHostMemorySystem) {
  Json j = uniform_json();
  j["nodes"] = 1;
  j["gpu"]["kind"] = "cpu";
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.intra_node.fabric = \"nvswitch\"", "needs fabric \"shared\""});
  j["intra_node"]["fabric"] = "shared";
  j["cores_per_node"] = 2;
  j["comm_overlaps_compute"] = false;
  const ClusterSpec c = parse_cluster(j);
  EXPECT_EQ(c.cores_per_node, 2);
  EXPECT_FALSE(c.comm_overlaps_compute);
  j["gpu"]["kind"] = "gpu";
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.intra_node.fabric = \"shared\"", "for CPU devices"});
  j = uniform_json();
  j["cores_per_node"] = 2;
  expect_config_error([&] { parse_cluster(j); },
                      {"cluster.cores_per_node = 2", "CPU clusters", "cluster.gpu.kind"});
}

TEST(ClusterSpec, WithNodesRescalesUniformClustersOnly) {
  const ClusterSpec c = parse_cluster(uniform_json());
  const ClusterSpec big = with_nodes(c, 128);
  EXPECT_EQ(big.total_nodes(), 128);
  EXPECT_EQ(big.total_gpus(), 1024);
  EXPECT_EQ(big.name, c.name + " (rescaled to 128 nodes)");
  EXPECT_EQ(with_nodes(c, c.total_nodes()).name, c.name);
  expect_config_error([&] { with_nodes(c, 0); }, {"cluster.nodes = 0", "positive integer"});
  expect_config_error([&] { with_nodes(parse_cluster(hetero_json()), 4); },
                      {"cluster.nodes = 4", "heterogeneous", "node_groups"});
  Json single = uniform_json();
  single["nodes"] = 1;
  single["inter_node"] = {{"topology", "none"}};
  expect_config_error([&] { with_nodes(parse_cluster(single), 2); },
                      {"cluster.nodes = 2", "no inter-node network"});
  EXPECT_EQ(with_nodes(parse_cluster(single), 1).total_gpus(), 8);
}

TEST(ClusterSpec, UnknownKeysAndNames) {
  Json j = uniform_json();
  j["gpus"] = 8;
  expect_config_error([&] { parse_cluster(j); }, {"cluster.gpus", "unknown key"});
  j = uniform_json();
  j["name"] = "";
  expect_config_error([&] { parse_cluster(j); }, {"cluster.name", "must not be empty"});
  j = uniform_json();
  j["source"] = "datasheet";
  j["notes"] = Json::array({"a", "b"});
  EXPECT_EQ(parse_cluster(j).source, "datasheet");
}

TEST(Precision, NamesBytesAndPeaks) {
  EXPECT_STREQ(precision_name(Precision::kBf16), "bf16");
  EXPECT_STREQ(precision_name(Precision::kFp16), "fp16");
  EXPECT_STREQ(precision_name(Precision::kFp32), "fp32");
  EXPECT_EQ(precision_bytes(Precision::kBf16), 2);
  EXPECT_EQ(precision_bytes(Precision::kFp16), 2);
  EXPECT_EQ(precision_bytes(Precision::kFp32), 4);
  const DeviceSpec d = parse_cluster(uniform_json()).node_groups[0].gpu;
  EXPECT_DOUBLE_EQ(d.peak_flops(Precision::kFp16), 100e12);
  EXPECT_DOUBLE_EQ(d.peak_flops(Precision::kFp32), 10e12);
}

void expect_same(const ClusterSpec& a, const ClusterSpec& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.total_gpus(), b.total_gpus());
  ASSERT_EQ(a.node_groups.size(), b.node_groups.size());
  for (std::size_t i = 0; i < a.node_groups.size(); ++i) {
    const NodeGroup& x = a.node_groups[i];
    const NodeGroup& y = b.node_groups[i];
    EXPECT_EQ(x.nodes, y.nodes);
    EXPECT_EQ(x.gpus_per_node, y.gpus_per_node);
    EXPECT_EQ(x.gpu.name, y.gpu.name);
    EXPECT_DOUBLE_EQ(x.gpu.peak_bf16_flops, y.gpu.peak_bf16_flops);
    EXPECT_DOUBLE_EQ(x.gpu.peak_fp8_flops, y.gpu.peak_fp8_flops);
    EXPECT_DOUBLE_EQ(x.gpu.memory_bytes, y.gpu.memory_bytes);
    EXPECT_DOUBLE_EQ(x.gpu.memory_bandwidth_Bps, y.gpu.memory_bandwidth_Bps);
    EXPECT_EQ(x.intra_node.kind, y.intra_node.kind);
    EXPECT_DOUBLE_EQ(x.intra_node.bandwidth_Bps, y.intra_node.bandwidth_Bps);
    EXPECT_DOUBLE_EQ(x.intra_node.latency_s, y.intra_node.latency_s);
  }
  EXPECT_EQ(a.inter_node.topology, b.inter_node.topology);
  EXPECT_DOUBLE_EQ(a.inter_node.nic_bandwidth_Bps, b.inter_node.nic_bandwidth_Bps);
  EXPECT_DOUBLE_EQ(a.inter_node.latency_s, b.inter_node.latency_s);
  EXPECT_EQ(a.cores_per_node, b.cores_per_node);
  EXPECT_EQ(a.comm_overlaps_compute, b.comm_overlaps_compute);
  EXPECT_EQ(a.source, b.source);
}

TEST(ClusterSpec, ToJsonRoundTrips) {
  for (const Json& j : {uniform_json(), hetero_json()}) {
    const ClusterSpec c = parse_cluster(j);
    expect_same(parse_cluster(to_json(c)), c);
  }
  Json fp8 = uniform_json();
  fp8["gpu"]["peak_tflops"]["fp8"] = 200;
  const ClusterSpec with_fp8 = parse_cluster(fp8);
  EXPECT_DOUBLE_EQ(with_fp8.node_groups[0].gpu.peak_fp8_flops, 200e12);
  expect_same(parse_cluster(to_json(with_fp8)), with_fp8);
  // Optional and written only when given: devices without FP8 keep their canonical form.
  EXPECT_DOUBLE_EQ(parse_cluster(uniform_json()).node_groups[0].gpu.peak_fp8_flops, 0);
  EXPECT_FALSE(to_json(parse_cluster(uniform_json()))["gpu"]["peak_tflops"].contains("fp8"));
  EXPECT_TRUE(to_json(parse_cluster(hetero_json())).contains("node_groups"));
  EXPECT_FALSE(to_json(parse_cluster(uniform_json())).contains("node_groups"));
}

TEST(ClusterSpec, LoadsEveryBundledCluster) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kRoot + "/configs/clusters")) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    const ClusterSpec c = load_cluster(entry.path().string());
    EXPECT_EQ(c.name, entry.path().stem().string());
    EXPECT_FALSE(c.source.empty());
    expect_same(parse_cluster(to_json(c)), c);
    ++count;
  }
  EXPECT_GE(count, 4);
}

TEST(ClusterSpec, BundledClusterFacts) {
  const ClusterSpec a100 = load_cluster(kRoot + "/configs/clusters/dgx-a100-128n.json");
  EXPECT_EQ(a100.total_gpus(), 1024);
  EXPECT_DOUBLE_EQ(a100.node_groups[0].gpu.memory_bytes, 85899345920.0);  // 80 GiB
  EXPECT_DOUBLE_EQ(a100.node_groups[0].gpu.peak_bf16_flops, 312e12);
  EXPECT_DOUBLE_EQ(a100.node_groups[0].intra_node.bandwidth_Bps, 300e9);
  EXPECT_DOUBLE_EQ(a100.inter_node.nic_bandwidth_Bps, 25e9);
  const ClusterSpec h100 = load_cluster(kRoot + "/configs/clusters/dgx-h100-128n.json");
  EXPECT_DOUBLE_EQ(h100.node_groups[0].gpu.peak_bf16_flops, 989.4e12);
  // Dense FP8 (NVIDIA H100 SXM datasheet: 3,958 TFLOP/s with sparsity); A100 has no FP8.
  EXPECT_DOUBLE_EQ(h100.node_groups[0].gpu.peak_fp8_flops, 1979e12);
  EXPECT_DOUBLE_EQ(a100.node_groups[0].gpu.peak_fp8_flops, 0);
  EXPECT_DOUBLE_EQ(h100.inter_node.nic_bandwidth_Bps, 50e9);
  const ClusterSpec hetero = load_cluster(kRoot + "/configs/clusters/hetero-a100-h100.json");
  EXPECT_EQ(hetero.total_gpus(), 64);
  EXPECT_EQ(hetero.group_of_gpu(31).gpu.name, "A100-SXM4-80GB");
  EXPECT_EQ(hetero.group_of_gpu(32).gpu.name, "H100-SXM5-80GB");
  EXPECT_DOUBLE_EQ(hetero.group_of_gpu(32).intra_node.bandwidth_Bps, 450e9);
  EXPECT_DOUBLE_EQ(hetero.group_of_gpu(31).gpu.peak_fp8_flops, 0);
  EXPECT_DOUBLE_EQ(hetero.group_of_gpu(32).gpu.peak_fp8_flops, 1979e12);
  const ClusterSpec cpu = load_cluster(kRoot + "/configs/clusters/local-cpu.json");
  EXPECT_EQ(cpu.total_gpus(), 8);
  EXPECT_EQ(cpu.cores_per_node, 2);
  EXPECT_FALSE(cpu.comm_overlaps_compute);
  EXPECT_EQ(cpu.node_groups[0].gpu.kind, DeviceKind::kCpu);
  EXPECT_EQ(cpu.node_groups[0].intra_node.kind, IntraFabric::kShared);
  EXPECT_EQ(cpu.inter_node.topology, InterTopology::kNone);
  EXPECT_LE(8 * cpu.node_groups[0].gpu.memory_bytes, 24.0 * 1024 * 1024 * 1024);
}

TEST(ClusterSpec, LoadErrorsNameTheFile) {
  expect_config_error([&] { load_cluster(kRoot + "/configs/models/gpt-tiny.json"); },
                      {"gpt-tiny.json: cluster.", "unknown key"});
}

}  // namespace
}  // namespace strata::strategies
