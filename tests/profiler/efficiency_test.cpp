// Efficiencies: the bundled table (every block, every bundled cluster's devices), device-class
// look-up, and bad documents rejected with errors that name the field, the value and the rule.
#include "profiler/efficiency.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "test_tables.hpp"
#include "tests/strategies/expect_config_error.hpp"

namespace strata::profiler {
namespace {

using json::Json;
using strategies::Block;
using strategies::testing::expect_config_error;
using testing::table_json;
using testing::test_gpu;

const std::string kRoot = STRATA_SOURCE_DIR;

Efficiencies bundled() { return load_efficiencies(default_efficiencies_path()); }

TEST(Efficiencies, DefaultPathIsTheBundledFile) {
  EXPECT_EQ(std::filesystem::weakly_canonical(default_efficiencies_path()),
            std::filesystem::weakly_canonical(kRoot + "/profiler/efficiencies.json"));
}

TEST(Efficiencies, BundledTableGivesEveryBlockAnOpClass) {
  const Efficiencies e = bundled();
  for (Block b :
       {Block::kAttnQkv, Block::kAttnOut, Block::kMlpFc1, Block::kMlpFc2, Block::kLmHead}) {
    EXPECT_EQ(e.op_class(b), OpClass::kGemm) << strategies::block_name(b);
  }
  EXPECT_EQ(e.op_class(Block::kAttnCore), OpClass::kAttentionCore);
  for (Block b : {Block::kAttnNorm, Block::kMlpNorm, Block::kFinalNorm}) {
    EXPECT_EQ(e.op_class(b), OpClass::kNorm) << strategies::block_name(b);
  }
  EXPECT_EQ(e.op_class(Block::kEmbedding), OpClass::kEmbedding);
  EXPECT_EQ(e.op_class(Block::kOptimizer), OpClass::kOptimizer);
  EXPECT_FALSE(e.source().empty());
}

TEST(Efficiencies, BundledTableIsDocumentedAndInRange) {
  const Efficiencies e = bundled();
  std::vector<std::string> names;
  for (const DeviceClass& d : e.device_classes()) {
    names.push_back(d.name);
    EXPECT_FALSE(d.source.empty()) << d.name;
    EXPECT_GT(d.launch_overhead_s, 0) << d.name;
    EXPECT_LT(d.launch_overhead_s, 20e-6) << d.name << ": a launch is microseconds";
    for (int c = 0; c < kNumOpClasses; ++c) {
      const OpEfficiency& op = d.ops[c];
      const std::string what = d.name + "." + op_class_name(static_cast<OpClass>(c));
      // fp8_gemm is optional: only classes of devices with FP8 tensor cores state it.
      if (!d.has(static_cast<OpClass>(c))) {
        EXPECT_EQ(static_cast<OpClass>(c), OpClass::kFp8Gemm) << what;
        continue;
      }
      EXPECT_FALSE(op.source.empty()) << what;
      for (double v : {op.flop_forward, op.flop_backward, op.memory_forward, op.memory_backward}) {
        EXPECT_GT(v, 0) << what;
        EXPECT_LE(v, 1) << what;
      }
    }
  }
  EXPECT_EQ(names, (std::vector<std::string>{"a100", "h100", "gpu", "cpu"}));
  EXPECT_TRUE(e.device_classes()[1].has(OpClass::kFp8Gemm));  // h100 only
}

TEST(Efficiencies, LargeGemmsBeatTheAttentionCoreOnEveryGpu) {
  // A sanity ordering that any sourced table must keep: tensor-core GEMMs reach a larger share of
  // the peak than the memory-bound non-fused attention chain.
  const Efficiencies e = bundled();
  for (const DeviceClass& d : e.device_classes()) {
    EXPECT_GT(d.op(OpClass::kGemm).flop_forward, d.op(OpClass::kAttentionCore).flop_forward)
        << d.name;
  }
}

TEST(Efficiencies, DeviceClassByNameKindAndFallback) {
  const Efficiencies e = bundled();
  EXPECT_EQ(e.device_class(test_gpu("A100-SXM4-80GB")).name, "a100");
  EXPECT_EQ(e.device_class(test_gpu("NVIDIA A100 80GB PCIe")).name, "a100");
  EXPECT_EQ(e.device_class(test_gpu("H100-SXM5-80GB")).name, "h100");
  EXPECT_EQ(e.device_class(test_gpu("nvidia h200")).name, "h100") << "case-insensitive";
  EXPECT_EQ(e.device_class(test_gpu("GeForce RTX 4090")).name, "gpu");
  strategies::DeviceSpec cpu = test_gpu("A100 (a CPU rank named like a GPU)");
  cpu.kind = strategies::DeviceKind::kCpu;
  EXPECT_EQ(e.device_class(cpu).name, "cpu") << "the kind must match too";
}

TEST(Efficiencies, EveryBundledClusterDeviceHasItsClass) {
  const Efficiencies e = bundled();
  const std::vector<std::pair<std::string, std::vector<std::string>>> expected = {
      {"dgx-a100-128n", {"a100"}},
      {"dgx-h100-128n", {"h100"}},
      {"hetero-a100-h100", {"a100", "h100"}},
      {"local-cpu", {"cpu"}}};
  for (const auto& [name, classes] : expected) {
    const auto c = strategies::load_cluster(kRoot + "/configs/clusters/" + name + ".json");
    ASSERT_EQ(c.node_groups.size(), classes.size()) << name;
    for (std::size_t g = 0; g < classes.size(); ++g) {
      EXPECT_EQ(e.device_class(c.node_groups[g].gpu).name, classes[g]) << name;
    }
  }
}

TEST(Efficiencies, BackwardDefaultsToForwardAndFallOffToNone) {
  const Efficiencies e = parse_efficiencies(table_json());
  const OpEfficiency& op = e.device_class(test_gpu()).op(OpClass::kGemm);
  EXPECT_EQ(op.flop_backward, op.flop_forward);
  EXPECT_EQ(op.memory_backward, op.memory_forward);
  EXPECT_EQ(op.half_efficiency_flops, 0);
  EXPECT_FALSE(e.device_class(test_gpu()).compute_precision.has_value());
  EXPECT_DOUBLE_EQ(e.device_class(test_gpu()).launch_overhead_s, 2e-6);
}

TEST(Efficiencies, FirstMatchingClassWins) {
  Json j = table_json();
  Json second = testing::device_class_json("second", "gpu", {"testgpu"});
  second["launch_overhead_us"] = 7;
  j["devices"].insert(j["devices"].begin() + 1, second);
  const Efficiencies e = parse_efficiencies(j);
  EXPECT_EQ(e.device_class(test_gpu()).name, "test_gpu");
  EXPECT_EQ(e.device_class(test_gpu("other")).name, "any_gpu");
}

// ---- bad documents ----------------------------------------------------------------------------

// parse_efficiencies(table_json() changed by `edit`) must fail naming every one of `parts`.
template <typename Edit>
void expect_rejected(Edit edit, const std::vector<std::string>& parts) {
  Json j = table_json();
  edit(j);
  expect_config_error([&] { parse_efficiencies(j); }, parts);
}

TEST(Efficiencies, LinkEfficienciesBundledAndDefault) {
  const Efficiencies e = bundled();
  const LinkEfficiencies& l = e.links();
  EXPECT_DOUBLE_EQ(l.nvswitch, 0.80);
  EXPECT_DOUBLE_EQ(l.network, 0.96);
  EXPECT_DOUBLE_EQ(l.pcie, 1.0);  // no measurement: line rate
  // NVSwitch by GPU generation: A100's own 230 of 300 GB/s, the table's 0.80 (H100's) for the
  // rest; the other fabrics do not depend on the GPU.
  using strategies::IntraFabric;
  EXPECT_DOUBLE_EQ(l.intra(IntraFabric::kNvSwitch, test_gpu("A100-SXM4-80GB")), 0.767);
  EXPECT_DOUBLE_EQ(l.intra(IntraFabric::kNvSwitch, test_gpu("H100-SXM5-80GB")), 0.80);
  EXPECT_DOUBLE_EQ(l.intra(IntraFabric::kNvSwitch, test_gpu("GeForce RTX 4090")), 0.80);
  EXPECT_DOUBLE_EQ(l.intra(IntraFabric::kPcie, test_gpu("A100-SXM4-80GB")), 1.0);
  // A table without "links" runs collectives at line rate.
  const Efficiencies plain = parse_efficiencies(table_json());
  EXPECT_DOUBLE_EQ(plain.links().nvswitch, 1.0);
  EXPECT_DOUBLE_EQ(plain.links().network, 1.0);
  // NCCL's software latency: on in the bundled table, off where a table says nothing.
  EXPECT_TRUE(l.nccl_latency);
  EXPECT_FALSE(plain.links().nccl_latency);
  // The SMs a collective holds: NCCL's 16 on a DGX (nccl issue #689); none without the entry.
  EXPECT_EQ(l.nccl_sms, 16);
  EXPECT_EQ(plain.links().nccl_sms, 0);
}

// A device class's own links.nvswitch replaces the table's for the GPUs it matches, and only
// for them (the fallback's own for every GPU no class matches).
TEST(Efficiencies, DeviceClassLinksOverrideTheTablesNvSwitch) {
  Json j = table_json();
  j["links"] = {{"nvswitch", {{"bandwidth_efficiency", 0.8}, {"source", "x"}}}};
  j["devices"][0]["links"] = {{"nvswitch", {{"bandwidth_efficiency", 0.7}, {"source", "y"}}}};
  const Efficiencies e = parse_efficiencies(j);
  EXPECT_EQ(e.device_class(test_gpu()).nvswitch_efficiency, 0.7);
  EXPECT_EQ(e.device_class(test_gpu("Other")).nvswitch_efficiency, std::nullopt);
  const auto nvswitch = strategies::IntraFabric::kNvSwitch;
  EXPECT_DOUBLE_EQ(e.links().intra(nvswitch, test_gpu()), 0.7);
  EXPECT_DOUBLE_EQ(e.links().intra(nvswitch, test_gpu("Other")), 0.8);
  j["devices"][1]["links"] = {{"nvswitch", {{"bandwidth_efficiency", 0.6}, {"source", "z"}}}};
  const Efficiencies f = parse_efficiencies(j);
  EXPECT_DOUBLE_EQ(f.links().intra(nvswitch, test_gpu()), 0.7);
  EXPECT_DOUBLE_EQ(f.links().intra(nvswitch, test_gpu("Other")), 0.6);
  strategies::DeviceSpec cpu = test_gpu("Other");
  cpu.kind = strategies::DeviceKind::kCpu;
  EXPECT_DOUBLE_EQ(f.links().intra(nvswitch, cpu), 0.8) << "the cpu fallback states none";
}

TEST(EfficienciesErrors, DeviceClassLinks) {
  expect_rejected(
      [](Json& j) {
        j["devices"][0]["links"] = {
            {"nvswitch", {{"bandwidth_efficiency", 0}, {"source", "x"}}}};
      },
      {"efficiencies.devices[0].links.nvswitch.bandwidth_efficiency = 0", "must be in (0, 1]"});
  expect_rejected(
      [](Json& j) {
        j["devices"][0]["links"] = {{"nvswitch", {{"bandwidth_efficiency", 0.7}}}};
      },
      {"efficiencies.devices[0].links.nvswitch.source", "required key is missing"});
  expect_rejected(
      [](Json& j) {
        j["devices"][0]["links"] = {{"network", {{"bandwidth_efficiency", 0.7}, {"source", "x"}}}};
      },
      {"efficiencies.devices[0].links.network", "unknown key"});
}

TEST(EfficienciesErrors, Links) {
  expect_rejected(
      [](Json& j) { j["links"] = {{"nvswitch", {{"bandwidth_efficiency", 1.2}, {"source", "x"}}}}; },
      {"efficiencies.links.nvswitch.bandwidth_efficiency = 1.2", "must be in (0, 1]"});
  expect_rejected([](Json& j) { j["links"] = {{"nvswitch", {{"bandwidth_efficiency", 0.8}}}}; },
                  {"efficiencies.links.nvswitch.source", "required key is missing"});
  expect_rejected(
      [](Json& j) { j["links"] = {{"nvlink", {{"bandwidth_efficiency", 0.8}, {"source", "x"}}}}; },
      {"efficiencies.links.nvlink", "unknown key"});
  expect_rejected(
      [](Json& j) { j["links"] = {{"software_latency", {{"model", "fast"}, {"source", "x"}}}}; },
      {"efficiencies.links.software_latency.model = \"fast\"", "must be \"nccl\" or \"none\""});
  expect_rejected([](Json& j) { j["links"] = {{"software_latency", {{"model", "nccl"}}}}; },
                  {"efficiencies.links.software_latency.source", "required key is missing"});
  expect_rejected([](Json& j) { j["links"] = {{"nccl_sms", {{"sms", 0}, {"source", "x"}}}}; },
                  {"efficiencies.links.nccl_sms.sms = 0", "must be an SM count from 1 to 4096"});
  expect_rejected([](Json& j) { j["links"] = {{"nccl_sms", {{"sms", 16}}}}; },
                  {"efficiencies.links.nccl_sms.source", "required key is missing"});
}

TEST(EfficienciesErrors, SchemaVersion) {
  expect_rejected([](Json& j) { j.erase("schema_version"); },
                  {"efficiencies.schema_version", "required key is missing"});
  expect_rejected([](Json& j) { j["schema_version"] = 2; },
                  {"efficiencies.schema_version = 2", "unsupported"});
  expect_rejected([](Json& j) { j["schema_vesion"] = 1; },
                  {"efficiencies.schema_vesion", "unknown key"});
}

TEST(EfficienciesErrors, Blocks) {
  expect_rejected([](Json& j) { j["blocks"].erase("lm_head"); },
                  {"efficiencies.blocks.lm_head", "required key is missing"});
  expect_rejected([](Json& j) { j["blocks"]["attn_softmax"] = "norm"; },
                  {"efficiencies.blocks.attn_softmax", "unknown key", "attn_qkv"});
  expect_rejected([](Json& j) { j["blocks"]["attn_qkv"] = "matmul"; },
                  {"efficiencies.blocks.attn_qkv = \"matmul\"", "must be one of", "\"gemm\""});
  expect_rejected([](Json& j) { j["blocks"]["none"] = "gemm"; },
                  {"efficiencies.blocks.none", "unknown key"});
  expect_rejected([](Json& j) { j["blocks"] = Json::array(); },
                  {"efficiencies.blocks = []", "must be a JSON object"});
}

TEST(EfficienciesErrors, EfficiencyOutsideZeroOne) {
  const std::string at = "efficiencies.devices[0].ops.gemm.";
  expect_rejected([](Json& j) { j["devices"][0]["ops"]["gemm"]["flop_efficiency"] = 0; },
                  {at + "flop_efficiency = 0", "must be in (0, 1]"});
  expect_rejected([](Json& j) { j["devices"][0]["ops"]["gemm"]["flop_efficiency"] = 1.5; },
                  {at + "flop_efficiency = 1.5", "must be in (0, 1]"});
  expect_rejected(
      [](Json& j) { j["devices"][0]["ops"]["gemm"]["backward_memory_efficiency"] = -0.1; },
      {at + "backward_memory_efficiency = -0.1", "must be in (0, 1]"});
  expect_rejected([](Json& j) { j["devices"][0]["ops"]["gemm"]["memory_efficiency"] = "0.8"; },
                  {at + "memory_efficiency = \"0.8\"", "must be a number"});
  expect_rejected([](Json& j) { j["devices"][0]["ops"]["gemm"]["half_efficiency_flops"] = -1; },
                  {at + "half_efficiency_flops = -1", "must be >= 0"});
}

TEST(EfficienciesErrors, MissingOrUnknownKeysInOps) {
  const std::string at = "efficiencies.devices[2].ops";
  expect_rejected([](Json& j) { j["devices"][2]["ops"].erase("optimizer"); },
                  {at + ".optimizer", "required key is missing"});
  expect_rejected([](Json& j) { j["devices"][2]["ops"]["softmax"] = testing::op_json(1, 1); },
                  {at + ".softmax", "unknown key", "attention_core"});
  expect_rejected([](Json& j) { j["devices"][2]["ops"]["norm"].erase("memory_efficiency"); },
                  {at + ".norm.memory_efficiency", "required key is missing"});
  expect_rejected([](Json& j) { j["devices"][2]["ops"]["norm"]["flops_efficiency"] = 0.5; },
                  {at + ".norm.flops_efficiency", "unknown key"});
  expect_rejected([](Json& j) { j["devices"][2]["ops"]["norm"].erase("source"); },
                  {at + ".norm.source", "required key is missing", "where its numbers come from"});
  expect_rejected([](Json& j) { j["devices"][2]["ops"]["norm"]["source"] = ""; },
                  {at + ".norm.source = \"\"", "must not be empty"});
}

TEST(EfficienciesErrors, DeviceClassFields) {
  const std::string at = "efficiencies.devices[0].";
  expect_rejected([](Json& j) { j["devices"][0]["kind"] = "tpu"; },
                  {at + "kind = \"tpu\"", "must be one of", "\"gpu\", \"cpu\""});
  expect_rejected([](Json& j) { j["devices"][0]["match"] = "TestGPU"; },
                  {at + "match = \"TestGPU\"", "must be a list"});
  expect_rejected(
      [](Json& j) {
        j["devices"][0]["match"] = Json::array({"A", ""});
      },
      {at + "match[1] = \"\"", "must be a non-empty string"});
  expect_rejected([](Json& j) { j["devices"][0]["launch_overhead_us"] = -3; },
                  {at + "launch_overhead_us = -3", "must be >= 0"});
  expect_rejected([](Json& j) { j["devices"][0].erase("launch_overhead_us"); },
                  {at + "launch_overhead_us", "required key is missing"});
  expect_rejected([](Json& j) { j["devices"][0]["compute_precision"] = "fp8"; },
                  {at + "compute_precision = \"fp8\"", "must be one of", "\"fp32\""});
  expect_rejected([](Json& j) { j["devices"][0].erase("source"); },
                  {at + "source", "required key is missing"});
  expect_rejected([](Json& j) { j["devices"][0]["name"] = ""; },
                  {at + "name = \"\"", "must not be empty"});
}

TEST(EfficienciesErrors, DeviceClassList) {
  expect_rejected([](Json& j) { j["devices"] = Json::array(); },
                  {"efficiencies.devices = []", "non-empty list"});
  expect_rejected([](Json& j) { j["devices"][1]["name"] = "test_gpu"; },
                  {"efficiencies.devices[1].name = \"test_gpu\"", "duplicate"});
  expect_rejected(
      [](Json& j) { j["devices"].push_back(testing::device_class_json("another", "gpu")); },
      {"efficiencies.devices[3].match = []", "second fallback", "\"gpu\"", "any_gpu"});
  expect_rejected([](Json& j) { j["devices"].erase(2); },
                  {"efficiencies.devices", "no fallback class", "\"cpu\""});
}

// ---- files --------------------------------------------------------------------------------------

std::string write_temp(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path) << text;
  return path.string();
}

TEST(EfficienciesFiles, ErrorsNameTheFile) {
  Json j = table_json();
  j["devices"][1]["ops"]["gemm"]["flop_efficiency"] = 2;
  const std::string path = write_temp("strata_profiler_bad_value.json", j.dump(2));
  expect_config_error([&] { load_efficiencies(path); },
                      {path + ": efficiencies.devices[1].ops.gemm.flop_efficiency = 2"});
  std::filesystem::remove(path);
}

TEST(EfficienciesFiles, SyntaxErrorAndMissingFile) {
  const std::string path = write_temp("strata_profiler_syntax.json", "{\n  \"blocks\": {,\n}\n");
  expect_config_error([&] { load_efficiencies(path); }, {path, "JSON syntax error at line 2"});
  std::filesystem::remove(path);
  expect_config_error([] { load_efficiencies("/nonexistent/efficiencies.json"); },
                      {"/nonexistent/efficiencies.json", "cannot open"});
}

}  // namespace
}  // namespace strata::profiler
