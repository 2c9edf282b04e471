// Per-group strategies end to end (docs/heterogeneous.md): `strata plan` shows each stage's
// layers, tp and node group; `strata simulate` of stages whose layers are "auto" runs the split
// proposed from the groups' speeds, faster than the even split; a stage on a group the cluster
// lacks is refused with nothing written.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/json.hpp"
#include "tests/cli/strata_test.hpp"

namespace {

using strata::testing::Result;

// llama2-7b with tp 8 x dp 2 x pp 4: two stages on the H100 nodes, then two on the A100 nodes.
std::string stages_spec(const std::string& layers, const std::string& last_group = "a100") {
  return R"({"name": "h100-then-a100", "tp": 8, "dp": 2, "pp": 4, "micro_batch_size": 1,
    "global_batch_size": 64, "recompute": "selective",
    "stages": [{"node_group": "h100", "layers": )" + layers + R"(},
               {"node_group": "h100", "layers": )" + layers + R"(},
               {"node_group": "a100", "layers": )" + layers + R"(},
               {"node_group": ")" + last_group + R"(", "layers": )" + layers + R"(}]})";
}

class HeterogeneousCli : public strata::testing::StrataTest {
 protected:
  Result simulate(const std::string& spec, const std::string& json) {
    return run("simulate --quiet --model llama2-7b --cluster hetero-a100-h100 --strategy " +
               spec + " --json " + json);
  }
};

TEST_F(HeterogeneousCli, TheProposedSplitBeatsTheEvenOne) {
  const std::string proposed = write("auto.json", stages_spec("\"auto\""));
  const std::string even = write("even.json", stages_spec("8"));
  const Result plan = run("plan --model llama2-7b --cluster hetero-a100-h100 --strategy " +
                          proposed);
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  EXPECT_NE(plan.out.find("stage 0: 12 layers, tp 8 x dp 2, on h100 (H100-SXM5-80GB)"),
            std::string::npos)
      << plan.out;
  EXPECT_NE(plan.out.find("stage 3: 4 layers, tp 8 x dp 2, on a100 (A100-SXM4-80GB)"),
            std::string::npos)
      << plan.out;
  const std::string a = (dir_ / "auto-report.json").string();
  const std::string b = (dir_ / "even-report.json").string();
  ASSERT_EQ(simulate(proposed, a).exit_code, 0);
  ASSERT_EQ(simulate(even, b).exit_code, 0);
  const double t_auto = strata::json::parse_file(a).at("step_time_s").get<double>();
  const double t_even = strata::json::parse_file(b).at("step_time_s").get<double>();
  // With 8 layers each the A100 stages hold the pipeline back: 3.2x slower per layer.
  EXPECT_LT(t_auto, 0.8 * t_even) << t_auto << " s vs " << t_even << " s";
}

TEST_F(HeterogeneousCli, AStageOnAMissingGroupIsRefusedWithNothingWritten) {
  const std::string spec = write("bad.json", stages_spec("8", "v100"));
  const std::string json = (dir_ / "report.json").string();
  const Result r = simulate(spec, json);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("strategy.stages[3].node_group = \"v100\": the cluster "
                       "'hetero-a100-h100' has no such node group (it has: a100, h100)"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(json));
}

}  // namespace
