// Per-group strategies (docs/heterogeneous.md): `stages` parsed and written back, expanded into
// the stage partition and tp overrides that lowering reads, placed on the cluster's node groups,
// lowered with the resharding at group boundaries, and every bad spec refused naming its field.
#include <gtest/gtest.h>

#include <string>

#include "common/error.hpp"
#include "common/json.hpp"
#include "strategies/plan.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {
namespace {

const std::string kRoot = STRATA_SOURCE_DIR;

ModelSpec llama() { return load_model(kRoot + "/configs/models/llama2-7b.json"); }
ClusterSpec hetero() { return load_cluster(kRoot + "/configs/clusters/hetero-a100-h100.json"); }

// tp 8 x dp 2 x pp 4 on the 64 GPUs of hetero-a100-h100 (A100 GPUs 0-31, H100 32-63).
json::Json base(json::Json stages) {
  return {{"name", "per-group"}, {"tp", 8},           {"dp", 2},
          {"pp", 4},             {"micro_batch_size", 2}, {"global_batch_size", 64},
          {"stages", std::move(stages)}};
}
json::Json four(const char* g0, const char* g1, const char* g2, const char* g3,
                json::Json l = {8, 8, 8, 8}) {
  return json::Json::array({{{"node_group", g0}, {"layers", l[0]}},
                            {{"node_group", g1}, {"layers", l[1]}},
                            {{"node_group", g2}, {"layers", l[2]}},
                            {{"node_group", g3}, {"layers", l[3]}}});
}

// The message of the ConfigError `f` throws ("" if none).
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Stages, ParseAndWriteBack) {
  json::Json stages = four("h100", "h100", "a100", "a100", {"auto", "auto", "auto", "auto"});
  stages[0]["tp"] = 4;
  const StrategySpec s = parse_strategy(base(stages));
  ASSERT_EQ(s.stages.size(), 4u);
  EXPECT_EQ(s.stages[0].node_group, "h100");
  EXPECT_EQ(s.stages[0].layers, 0);
  EXPECT_EQ(s.stages[0].tp, 4);
  EXPECT_EQ(s.stages[1].tp, 0);
  EXPECT_TRUE(has_auto_stage_layers(s));
  const json::Json j = to_json(s);
  EXPECT_EQ(j["stages"][0]["layers"], "auto");
  EXPECT_EQ(to_json(parse_strategy(j)), j);
  // An expanded strategy writes what it was given: its derived overrides are not the user's.
  const StrategySpec fixed = parse_strategy(base(four("h100", "h100", "a100", "a100")));
  const StrategySpec expanded = expand_stages(llama(), fixed);
  EXPECT_EQ(to_json(expanded), to_json(fixed));
  EXPECT_EQ(expand_stages(llama(), expanded).stage_layers, expanded.stage_layers);
}

TEST(Stages, ExpandIntoPartitionAndDerivedTpOverrides) {
  json::Json stages = four("h100", "h100", "a100", "a100", {10, 10, 6, 6});
  stages[0]["tp"] = 4;
  stages[1]["tp"] = 4;
  stages[2]["tp"] = 8;  // the strategy's own: no override
  const StrategySpec s = expand_stages(llama(), parse_strategy(base(stages)));
  EXPECT_EQ(s.stage_layers, (std::vector<int>{10, 10, 6, 6}));
  ASSERT_EQ(s.layer_overrides.size(), 2u);
  EXPECT_EQ(s.layer_overrides[0].first, 0);
  EXPECT_EQ(s.layer_overrides[0].last, 9);
  EXPECT_EQ(s.layer_overrides[1].first, 10);
  EXPECT_EQ(s.layer_overrides[1].last, 19);
  EXPECT_EQ(s.layer_overrides[1].stage, 1);
  EXPECT_EQ(override_field(s, 1), "strategy.stages[1]");
  const LayerStrategy first = layer_strategy(s, 0), last = layer_strategy(s, 31);
  EXPECT_EQ(first.tp, 4);
  EXPECT_EQ(first.dp, 4);
  EXPECT_EQ(first.micro_batch_size, 1);
  EXPECT_EQ(last.tp, 8);
  EXPECT_EQ(last.dp, 2);
}

TEST(Stages, PlacedOnTheirNodeGroupsInStageOrder) {
  // H100 first although the cluster lists the A100s first.
  const StrategySpec s = parse_strategy(base(four("h100", "h100", "a100", "a100")));
  const ClusterSpec placed = placed_cluster(hetero(), s, 64);
  ASSERT_EQ(placed.node_groups.size(), 2u);
  EXPECT_EQ(placed.node_groups[0].name, "h100");
  EXPECT_EQ(placed.total_gpus(), 64);
  const Plan plan = lower(llama(), hetero(), s, 64);
  EXPECT_EQ(plan.cluster.group_of_gpu(0).gpu.name, "H100-SXM5-80GB");
  EXPECT_EQ(plan.cluster.group_of_gpu(31).gpu.name, "H100-SXM5-80GB");
  EXPECT_EQ(plan.cluster.group_of_gpu(32).gpu.name, "A100-SXM4-80GB");
  // A group used twice, apart, is split in two runs of nodes.
  const StrategySpec split = parse_strategy(base(four("h100", "a100", "a100", "h100")));
  const ClusterSpec c = placed_cluster(hetero(), split, 64);
  ASSERT_EQ(c.node_groups.size(), 3u);
  EXPECT_EQ(c.node_groups[0].name, "h100");
  EXPECT_EQ(c.node_groups[0].nodes, 2);
  EXPECT_EQ(c.node_groups[1].name, "a100");
  EXPECT_EQ(c.node_groups[2].name, "h100 (2)");
  // Without node groups the cluster is as given.
  const StrategySpec unplaced = parse_strategy(base(json::Json::array(
      {{{"layers", 8}}, {{"layers", 8}}, {{"layers", 8}}, {{"layers", 8}}})));
  EXPECT_EQ(to_json(placed_cluster(hetero(), unplaced, 64)), to_json(hetero()));
}

TEST(Stages, LoweredWithAReshardAtTheGroupBoundary) {
  json::Json stages = four("h100", "h100", "a100", "a100", {12, 12, 4, 4});
  stages[0]["tp"] = 4;
  stages[1]["tp"] = 4;
  const Plan plan = lower(llama(), hetero(), parse_strategy(base(stages)), 64);
  EXPECT_EQ(plan.stage_first_layer, (std::vector<int>{0, 12, 24, 28, 32}));
  EXPECT_EQ(plan.layouts.size(), 2u);
  // Stage 2's first layer grows tp 4 -> 8: its received input is all-gathered over the reshard
  // group in each micro-batch's forward (its backward takes a slice). Stage 0's embedding runs
  // at the strategy's tp 8, so layer 0 slices its output (forward) and all-gathers its gradient
  // (backward). Stages 1 and 3 do not reshard.
  const int m = plan.num_micro_batches;
  std::vector<int> reshards(4, 0);
  for (int stage = 0; stage < 4; ++stage) {
    for (const Task& t : plan.programs[stage].tasks) {
      if (t.kind == TaskKind::kCollective && t.purpose == Purpose::kReshard) ++reshards[stage];
    }
  }
  EXPECT_EQ(reshards, (std::vector<int>{m, 0, m, 0}));
}

TEST(Stages, BadSpecsNameTheirField) {
  const ModelSpec m = llama();
  auto lowering = [&](const json::Json& j, int world = 64) {
    return error_of([&] { lower(m, hetero(), parse_strategy(j), world); });
  };
  EXPECT_NE(lowering(base(four("h100", "h100", "a100", "v100")))
                .find("strategy.stages[3].node_group = \"v100\": the cluster 'hetero-a100-h100' "
                      "has no such node group (it has: a100, h100)"),
            std::string::npos);
  EXPECT_NE(lowering(base(four("h100", "h100", "a100", "a100", {8, 8, 8, 7})))
                .find("layers add up to 31; the model has 32"),
            std::string::npos);
  json::Json three = base(four("h100", "h100", "a100", "a100"));
  three["stages"].erase(3);
  EXPECT_NE(lowering(three).find("has 3 entries; needs one per pipeline stage (pp = 4)"),
            std::string::npos);
  // Three stages of 16 GPUs on the 32 H100s.
  EXPECT_NE(lowering(base(four("h100", "h100", "h100", "a100")))
                .find("strategy.stages[0].node_group = \"h100\": stages 0..2 need 48 GPUs (16 "
                      "each) but node group 'h100' has 32"),
            std::string::npos);
  json::Json partial = base(four("h100", "h100", "a100", "a100"));
  partial["stages"][2].erase("node_group");
  EXPECT_NE(lowering(partial).find("names no node_group while other stages do"),
            std::string::npos);
  json::Json autos = base(four("h100", "h100", "a100", "a100", {"auto", 8, 8, 8}));
  EXPECT_NE(lowering(autos).find("strategy.stages[1].layers = 8: some stages' layers are "
                                 "\"auto\""),
            std::string::npos);
  json::Json all_auto =
      base(four("h100", "h100", "a100", "a100", {"auto", "auto", "auto", "auto"}));
  EXPECT_NE(lowering(all_auto).find("the layer split is proposed from the node groups' speeds"),
            std::string::npos);
  json::Json both = base(four("h100", "h100", "a100", "a100"));
  both["stage_layers"] = {8, 8, 8, 8};  // the same layers: accepted
  EXPECT_EQ(lowering(both), "");
  both["stage_layers"] = {10, 6, 8, 8};
  EXPECT_NE(lowering(both).find("is given with strategy.stages"), std::string::npos);
  json::Json tp3 = base(four("h100", "h100", "a100", "a100"));
  tp3["stages"][1]["tp"] = 3;
  EXPECT_NE(lowering(tp3).find("strategy.stages[1].tp = 3: must divide tp*dp = 8*2 = 16"),
            std::string::npos);
  json::Json clash = base(four("h100", "h100", "a100", "a100"));
  clash["stages"][0]["tp"] = 4;
  clash["layer_overrides"] = json::Json::array({{{"layers", {2, 3}}, {"recompute", "full"}}});
  EXPECT_NE(lowering(clash).find("give a stage's tp, or override its layers, not both"),
            std::string::npos);
  json::Json sp = base(four("h100", "h100", "a100", "a100"));
  sp["sequence_parallel"] = true;
  sp["stages"][0]["tp"] = 4;
  EXPECT_NE(lowering(sp).find("strategy.stages[0].tp = 4: a per-layer tp change with "
                              "sequence_parallel"),
            std::string::npos);
  json::Json order = base(four("h100", "h100", "a100", "a100"));
  order["order"] = "tp-pp-dp";
  EXPECT_NE(lowering(order).find("need pp last (outermost)"), std::string::npos);
  json::Json word = base(four("h100", "h100", "a100", "a100", {"many", 8, 8, 8}));
  EXPECT_NE(error_of([&] { parse_strategy(word); })
                .find("strategy.stages[0].layers = \"many\": must be a positive number of "
                      "layers or \"auto\""),
            std::string::npos);
  // 4-GPU stages on 8-GPU nodes: a group change inside a node.
  json::Json narrow = {{"name", "narrow"}, {"tp", 4}, {"pp", 4}, {"micro_batch_size", 1},
                       {"global_batch_size", 8},
                       {"stages", four("h100", "a100", "a100", "a100")}};
  EXPECT_NE(lowering(narrow, 16).find("a change of node group must fall on a node boundary"),
            std::string::npos);
}

}  // namespace
}  // namespace strata::strategies
