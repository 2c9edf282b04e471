// `strata simulate --failures FILE` end to end: the goodput report printed and in report.json,
// a shrink's step re-simulated at the smaller dp, and bad specs refused (exit 1, the file, the
// field, the value and the rule) with nothing written.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/json.hpp"
#include "tests/cli/strata_test.hpp"

namespace {

using strata::testing::Result;

class FailuresCli : public strata::testing::StrataTest {
 protected:
  Result simulate(const std::string& spec_text, const std::string& json) {
    const std::string spec = write("failures.json", spec_text);
    return run(
        "simulate --quiet --model gpt-tiny --cluster local-cpu --strategy tiny-dp2 "
        "--gpus 2 --failures " +
        spec + " --json " + json);
  }
};

TEST_F(FailuresCli, ReportsGoodputWithOneFailure) {
  const std::string json = (dir_ / "report.json").string();
  const Result r = simulate(R"({"span": {"steps": 1000}, "events": [{"time_h": 0, "gpu": 1}],
      "detection_s": 1, "restart_s": 2, "checkpoint": {"interval": 10, "cost_s": 0.5},
      "trials": 1})",
                            json);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Failures (restart, 1 trials from seed 1, 1000 steps, 2 GPUs, dp 2)"),
            std::string::npos)
      << r.out;
  const strata::json::Json report = strata::json::parse_file(json);
  const strata::json::Json& f = report.at("failures");
  EXPECT_EQ(f.at("reaction"), "restart");
  const double step = report.at("step_time_s").get<double>();
  EXPECT_DOUBLE_EQ(f.at("step_time_s").get<double>(), step);
  const strata::json::Json& row = f.at("rows").at(0);
  EXPECT_EQ(row.at("failures").at("mean"), 1.0);
  EXPECT_EQ(row.at("interval_steps"), 10);
  // The failure at 0 s loses nothing; 3 s down; 1000 steps and 100 checkpoints.
  EXPECT_NEAR(row.at("wall_s").at("mean").get<double>(), 3 + 1000 * step + 100 * 0.5, 1e-6);
  // The reader takes the report back with its failures section.
  EXPECT_EQ(run("compare " + json + " " + json).exit_code, 0);
}

TEST_F(FailuresCli, ShrinkSimulatesTheStepAtTheSmallerDp) {
  const std::string json = (dir_ / "report.json").string();
  const Result r = simulate(R"({"span": {"steps": 100}, "events": [{"time_h": 0, "gpu": 0}],
      "reaction": "shrink", "checkpoint": {"interval": 50, "cost_s": 0}, "trials": 1})",
                            json);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const strata::json::Json f = strata::json::parse_file(json).at("failures");
  ASSERT_EQ(f.at("step_time_at_dp").size(), 1u);
  EXPECT_EQ(f.at("step_time_at_dp").at(0).at("dp"), 1);
  EXPECT_GT(f.at("step_time_at_dp").at(0).at("step_time_s").get<double>(), 0);
  EXPECT_NE(r.out.find("step at dp 1"), std::string::npos) << r.out;
}

TEST_F(FailuresCli, BadSpecsAreRefusedWithNothingWritten) {
  const std::string json = (dir_ / "report.json").string();
  const struct {
    const char* spec;
    const char* message;
  } cases[] = {
      {R"({"span": {"hours": 1}, "events": [{"time_h": 3, "gpu": 0}]})",
       "failures.events[0].time_h = 3: must be before the end of the span"},
      {R"({"span": {"steps": 10}, "events": [{"time_h": 100, "gpu": 0}]})",
       "must be before the end of the span (span.steps = 10 steps of"},
      {R"({"span": {"hours": 1}, "events": [{"time_h": 0.1, "gpu": 2}]})",
       "failures.events[0].gpu = 2: must be below the job's 2 GPUs"},
      {R"({"span": {"hours": 1}, "events": [{"time_h": 0.1, "node": 1}]})",
       "failures.events[0].node = 1: must be below the job's 1 nodes"},
      {R"({"span": {"hours": 1}, "rate_per_gpu_hour": -0.5})",
       "failures.rate_per_gpu_hour = -0.5: must be a number >= 0"},
      {R"({"span": {"hours": 1}, "reaction": "reboot"})",
       "failures.reaction = \"reboot\": must be \"restart\" or \"shrink\""},
  };
  for (const auto& c : cases) {
    const Result r = simulate(c.spec, json);
    EXPECT_EQ(r.exit_code, 1) << c.spec << "\n" << r.err;
    EXPECT_NE(r.err.find("failures.json: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(json)) << c.spec;
  }
}

TEST_F(FailuresCli, HelpNamesTheFlag) {
  const Result r = run("simulate --help");
  EXPECT_NE(r.out.find("--failures FILE"), std::string::npos);
  EXPECT_NE(r.out.find("docs/failures.md"), std::string::npos);
}

}  // namespace
