// Proposed layer splits of per-group strategies (docs/heterogeneous.md "Proposed splits"): the
// balance itself, a pipeline over H100 and A100 groups balanced by the roofline's per-layer
// times, and a split moved by memory.
#include "profiler/stage_split.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "profiler/efficiency.hpp"
#include "profiler/roofline.hpp"

namespace strata::profiler {
namespace {

namespace st = strata::strategies;

const std::string kRoot = STRATA_SOURCE_DIR;

RooflineCostModel bundled() {
  return RooflineCostModel(load_efficiencies(default_efficiencies_path()));
}

// llama2-7b, tp 8 x dp 2 x pp 4 with every stage's layers "auto": two stages on the H100s, two
// on the A100s of hetero-a100-h100.
st::StrategySpec auto_stages() {
  st::StrategySpec s;
  s.name = "auto";
  s.tp = 8;
  s.dp = 2;
  s.pp = 4;
  s.micro_batch_size = 1;
  s.global_batch_size = 64;
  s.recompute = st::Recompute::kSelective;
  for (const char* g : {"h100", "h100", "a100", "a100"}) s.stages.push_back({g, 0, 0});
  return s;
}

double slowest(const std::vector<StageSpeed>& speeds, const std::vector<int>& layers) {
  double worst = 0;
  for (std::size_t k = 0; k < speeds.size(); ++k) {
    worst = std::max(worst, layers[k] * speeds[k].layer_seconds + speeds[k].other_seconds);
  }
  return worst;
}

TEST(BalanceLayers, GivesEachLayerWhereItFinishesSoonest) {
  const std::vector<StageSpeed> speeds = {{1, 0}, {1, 0}, {3, 0}, {3, 0}};
  EXPECT_EQ(balance_layers(32, speeds, {0, 0, 0, 0}), (std::vector<int>{12, 12, 4, 4}));
  // The embedding's and head's work counts: the first stage takes fewer layers.
  EXPECT_EQ(balance_layers(8, {{1, 2}, {1, 0}}, {0, 0}), (std::vector<int>{3, 5}));
  // Limits move layers elsewhere; none left means no split.
  EXPECT_EQ(balance_layers(32, speeds, {10, 10, 0, 0}), (std::vector<int>{10, 10, 6, 6}));
  EXPECT_TRUE(balance_layers(32, speeds, {5, 5, 5, 5}).empty());
  EXPECT_TRUE(balance_layers(3, speeds, {0, 0, 0, 0}).empty());
  // Against every split of 12 layers over 3 stages, none is faster.
  const std::vector<StageSpeed> three = {{1.0, 0.5}, {2.0, 0}, {1.5, 1.0}};
  const std::vector<int> got = balance_layers(12, three, {0, 0, 0});
  for (int a = 1; a <= 10; ++a) {
    for (int b = 1; a + b <= 11; ++b) {
      EXPECT_LE(slowest(three, got), slowest(three, {a, b, 12 - a - b}) + 1e-12);
    }
  }
}

TEST(ProposeStageLayers, BalancesH100AndA100StagesByTheirSpeeds) {
  const st::ModelSpec m = st::load_model(kRoot + "/configs/models/llama2-7b.json");
  const st::ClusterSpec c = st::load_cluster(kRoot + "/configs/clusters/hetero-a100-h100.json");
  const RooflineCostModel cost = bundled();
  std::string why;
  const st::StrategySpec s = propose_stage_layers(m, c, auto_stages(), 64, cost, &why);
  std::vector<int> layers;
  for (const st::StageSpec& stage : s.stages) layers.push_back(stage.layers);
  EXPECT_EQ(layers[0] + layers[1] + layers[2] + layers[3], 32);
  EXPECT_GT(layers[0], 2 * layers[2]) << why;  // H100 bf16 peak is 3.2x the A100's
  EXPECT_GT(layers[1], 2 * layers[3]) << why;
  EXPECT_NE(why.find("layers per stage proposed from the node groups' speeds"), std::string::npos);
  // The proposal's slowest stage is faster than the even split's.
  st::StrategySpec even = s;
  for (st::StageSpec& stage : even.stages) stage.layers = 8;
  const auto proposed_speeds = stage_speeds(st::lower(m, c, s, 64), cost);
  const auto even_speeds = stage_speeds(st::lower(m, c, even, 64), cost);
  EXPECT_LT(slowest(proposed_speeds, layers), 0.75 * slowest(even_speeds, {8, 8, 8, 8}));
  // Given layers stay as given.
  EXPECT_EQ(st::to_json(propose_stage_layers(m, c, even, 64, cost)), st::to_json(even));
}

TEST(ProposeStageLayers, MovesLayersOffAStageThatDoesNotFit) {
  const st::ModelSpec m = st::load_model(kRoot + "/configs/models/llama2-7b.json");
  st::ClusterSpec c = st::load_cluster(kRoot + "/configs/clusters/hetero-a100-h100.json");
  const RooflineCostModel cost = bundled();
  const st::StrategySpec free = propose_stage_layers(m, c, auto_stages(), 64, cost);
  // H100s with 8 GiB: the time-balanced split does not fit on them.
  for (st::NodeGroup& g : c.node_groups) {
    if (g.name == "h100") g.gpu.memory_bytes = 8.0 * (1u << 30);
  }
  ASSERT_GE(st::first_rank_over_capacity(st::lower(m, c, free, 64)), 0);
  std::string why;
  const st::StrategySpec s = propose_stage_layers(m, c, auto_stages(), 64, cost, &why);
  EXPECT_EQ(st::first_rank_over_capacity(st::lower(m, c, s, 64)), -1) << why;
  EXPECT_LT(s.stages[0].layers, free.stages[0].layers) << why;
  EXPECT_NE(why.find("by memory"), std::string::npos) << why;
}

}  // namespace
}  // namespace strata::profiler
