// plan.json: a lowered Plan written and read back is the same Plan -- its JSON is byte for byte
// the original's, and it simulates and runs alike (same programs, buffers, ops, memory) -- and
// bad files are refused naming the file, field and value.
#include "results/plan.hpp"

#include <gtest/gtest.h>

#include <string>

#include "strategies/plan_json.hpp"
#include "tests/strategies/expect_config_error.hpp"

namespace strata::results {
namespace {

using strategies::testing::expect_config_error;

const std::string kConfigs = std::string(STRATA_SOURCE_DIR) + "/configs/";
const std::string kGolden = std::string(STRATA_SOURCE_DIR) + "/tests/golden/specs/";

strategies::Plan lowered(const std::string& model, const std::string& cluster,
                         const std::string& strategy, int gpus) {
  const auto s = strategies::load_strategy(strategy);
  return strategies::lower(strategies::load_model(model), strategies::load_cluster(cluster), s,
                           gpus > 0 ? gpus : s.world_size());
}

// Every feature of the Plan once: tp with sequence parallelism and pipeline stages, ZeRO-3's
// gathered copies, interleaving, scatter/gather views, a per-layer tp change (reshard views),
// hybrid sharding (shard and replica groups), tensor-parallel communication overlap (rotated
// views, copies, tp ring shifts).
TEST(PlanJson, WriteThenReadIsTheSamePlan) {
  std::vector<strategies::Plan> plans;
  for (const char* s : {"tiny-dp2-tp2-pp2-sp", "tiny-dp2-tp2-zero3", "tiny-pp2-interleaved",
                        "tiny-pp2-scatter-gather", "tiny-dp2-tp2-sp-zero2", "tiny-dp4-tp2-hsdp2",
                        "tiny-tp4-pp2-overlap-recompute"}) {
    plans.push_back(lowered(kConfigs + "models/gpt-tiny.json",
                            kConfigs + "clusters/local-cpu.json",
                            kConfigs + "strategies/" + s + ".json", 0));
  }
  plans.push_back(lowered(kGolden + "gpt-golden.json", kGolden + "dgx-a100-2n4g.json",
                          kGolden + "dp8-zero3.json", 8));
  auto override = strategies::load_strategy(kConfigs + "strategies/tiny-dp2-tp2.json");
  override.layer_overrides.push_back({1, 2, /*tp=*/1, -1});
  plans.push_back(strategies::lower(strategies::load_model(kConfigs + "models/gpt-tiny.json"),
                                    strategies::load_cluster(kConfigs + "clusters/local-cpu.json"),
                                    override, 4));
  // Mixture of experts: imbalanced routing (expert_shares), and expert_tp 1 under tp 2 (the
  // experts' gradient group spans tp).
  auto moe = strategies::load_strategy(kGolden + "dp4-ep4.json");
  moe.expert_routing.kind = strategies::ExpertRoutingKind::kZipf;
  moe.expert_routing.zipf_exponent = 1.2;
  const auto moe_model = strategies::load_model(kGolden + "moe-golden.json");
  const auto golden_cluster = strategies::load_cluster(kGolden + "dgx-a100-2n4g.json");
  plans.push_back(strategies::lower(moe_model, golden_cluster, moe, 4));
  moe.tp = 2;
  moe.dp = moe.ep = 2;
  moe.global_batch_size = 8;
  moe.expert_tp = 1;
  moe.sequence_parallel = true;
  plans.push_back(strategies::lower(moe_model, golden_cluster, moe, 4));
  // Shared experts: their parameters' names (ParamInfo::shared_expert) derived when read back.
  auto shared_model = moe_model;
  shared_model.moe.n_shared_experts = 1;
  shared_model.moe.shared_expert_intermediate_size = 512;
  plans.push_back(strategies::lower(shared_model, golden_cluster, moe, 4));
  const std::string shared_json = strategies::plan_to_json(plans.back()).dump();
  EXPECT_NE(shared_json.find("\"layers.0.shared_experts.fc1.w\""), std::string::npos);
  for (const strategies::Plan& p : plans) {
    SCOPED_TRACE(p.strategy.name);
    const json::Json j = strategies::plan_to_json(p);
    const strategies::Plan back = plan_from_json(j);
    EXPECT_EQ(strategies::plan_to_json(back), j);
    ASSERT_EQ(back.programs.size(), p.programs.size());
    for (std::size_t s = 0; s < p.programs.size(); ++s) {
      EXPECT_EQ(back.programs[s].memory.peak_bytes(), p.programs[s].memory.peak_bytes());
      EXPECT_EQ(back.programs[s].buffers.size(), p.programs[s].buffers.size());
    }
    EXPECT_TRUE(back.totals.flops.hardware == p.totals.flops.hardware);
    EXPECT_EQ(back.totals.tasks, p.totals.tasks);
    EXPECT_EQ(back.layouts.size(), p.layouts.size());
    EXPECT_EQ(back.zero_shard_group, p.zero_shard_group);
    EXPECT_EQ(back.expert_shares, p.expert_shares);
    EXPECT_EQ(back.experts_across_tp, p.experts_across_tp);
    for (std::size_t s = 0; s < p.programs.size(); ++s) {  // views, rotated ones included
      for (std::size_t b = 0; b < p.programs[s].buffers.size(); ++b) {
        EXPECT_EQ(back.programs[s].buffers[b].view_rotate, p.programs[s].buffers[b].view_rotate);
        EXPECT_EQ(back.programs[s].buffer_name(static_cast<std::int32_t>(b)),
                  p.programs[s].buffer_name(static_cast<std::int32_t>(b)));
      }
    }
    for (int r = 0; r < p.world_size; ++r) {  // the same groups, hybrid sharding's included
      for (const strategies::BucketInfo& b : p.program_of(r).buckets) {
        EXPECT_EQ(back.group_ranks(r, b.dp_group), p.group_ranks(r, b.dp_group));
      }
    }
  }
}

TEST(PlanJson, BadFilesAreRefusedNamingFileFieldAndValue) {
  const json::Json good = strategies::plan_to_json(
      lowered(kConfigs + "models/gpt-tiny.json", kConfigs + "clusters/local-cpu.json",
              kConfigs + "strategies/tiny-dp2-tp2.json", 0));
  json::Json j = good;
  j["kind"] = "strata.report";
  expect_config_error([&] { plan_from_json(j, "p.json"); },
                      {"p.json: plan.kind = \"strata.report\"", "strata.plan"});
  j = good;
  j["schema_version"] = 1;
  expect_config_error([&] { plan_from_json(j, "p.json"); }, {"plan.schema_version = 1"});
  j = good;
  j["programs"][0]["tasks"][3].erase(0);
  expect_config_error([&] { plan_from_json(j, "p.json"); },
                      {"p.json: plan.programs[0].tasks[3]", "must be an array of 19 values"});
  j = good;
  j["programs"][0]["ops"][0][0] = "convolution";
  expect_config_error([&] { plan_from_json(j, "p.json"); },
                      {"plan.programs[0].ops[0][0] = \"convolution\"", "expected one of"});
  j = good;
  j["programs"][0]["operands"][0] = 1 << 30;
  expect_config_error([&] { plan_from_json(j, "p.json"); }, {"operands", "out of range"});
  j = good;
  j["programs"].push_back(j["programs"][0]);
  expect_config_error([&] { plan_from_json(j, "p.json"); },
                      {"plan.programs", "one program per pipeline stage (1)"});
  j = good;
  j["surprise"] = 1;
  expect_config_error([&] { plan_from_json(j, "p.json"); }, {"surprise"});
  // Found by fuzz_plan (tests/fuzz): these escaped as the JSON library's type_error or
  // out_of_range, an internal error.
  j = good;
  j["programs"][0]["operands"][5] = nullptr;
  expect_config_error([&] { plan_from_json(j, "p.json"); },
                      {"plan.programs[0].operands[5] = null", "must be an integer from -1"});
  j = good;
  j["programs"][0].erase("deps");
  expect_config_error([&] { plan_from_json(j, "p.json"); },
                      {"plan.programs[0].deps: missing or not an array"});
  j = good;
  j["programs"][0]["deps_begin"][1] = -4;
  expect_config_error([&] { plan_from_json(j, "p.json"); },
                      {"plan.programs[0].deps_begin[1] = -4", "from 0 to 4294967295"});
  j = good;
  j["programs"][0]["deps_begin"][1] = 1 << 30;
  expect_config_error([&] { plan_from_json(j, "p.json"); },
                      {"plan.programs[0].deps_begin: must ascend from 0 to the length of deps"});
  j = good;
  j["programs"][0]["tasks"][0][17] = 1 << 30;  // op_begin
  expect_config_error([&] { plan_from_json(j, "p.json"); },
                      {"plan.programs[0].tasks[0]: ops 1073741824", "past the end of the op list"});
  j = good;
  j["programs"][0]["memory"]["peak_by_role"] = "none";
  expect_config_error([&] { plan_from_json(j, "p.json"); },
                      {"plan.programs[0].memory.peak_by_role.", "missing or not a number"});
  j = good;
  j["programs"][0]["memory"]["peak_task"] = -1;
  expect_config_error([&] { plan_from_json(j, "p.json"); },
                      {"plan.programs[0].memory.peak_task = -1", "must be a task index"});
}

}  // namespace
}  // namespace strata::results
