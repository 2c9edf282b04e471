// `strata simulate --switch FILE` end to end (docs/switching.md): each phase's step equals plain
// `strata simulate` of its strategy, a switch to the same strategy costs nothing, tp2 -> dp2
// moves the hand-counted bytes no faster than the link allows, and bad schedules and flag
// combinations are refused naming the field.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/json.hpp"
#include "tests/cli/strata_test.hpp"

namespace {

using strata::testing::Result;

constexpr const char* kTiny = "simulate --quiet --model gpt-tiny --cluster local-cpu --gpus 2 ";

class SwitchCli : public strata::testing::StrataTest {
 protected:
  double plain_step_s(const std::string& strategy) {
    const std::string json = path(strategy + ".json");
    const Result r = run(std::string(kTiny) + "--strategy " + strategy + " --json " + json);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return strata::json::parse_file(json).at("step_time_s").get<double>();
  }
};

TEST_F(SwitchCli, PhasesStepAsAloneAndSwitchesMoveTheState) {
  const std::string schedule = write("s.json", R"({"name": "s", "phases": [
      {"strategy": "tiny-tp2", "steps": 3}, {"strategy": "tiny-dp2", "steps": 2},
      {"strategy": "tiny-dp2", "steps": 1}]})");
  const std::string json = path("report.json");
  const Result r = run(std::string(kTiny) + "--switch " + schedule + " --json " + json);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const strata::json::Json report = strata::json::parse_file(json);
  const strata::json::Json& s = report.at("switching");
  EXPECT_EQ(s.at("schedule"), "s");
  EXPECT_EQ(s.at("world_size"), 2);
  EXPECT_EQ(s.at("steps"), 6);
  const strata::json::Json& phases = s.at("phases");
  ASSERT_EQ(phases.size(), 3u);
  const double tp2 = plain_step_s("tiny-tp2"), dp2 = plain_step_s("tiny-dp2");
  EXPECT_DOUBLE_EQ(phases.at(0).at("step_time_s").get<double>(), tp2);
  EXPECT_DOUBLE_EQ(phases.at(1).at("step_time_s").get<double>(), dp2);
  EXPECT_DOUBLE_EQ(phases.at(2).at("step_time_s").get<double>(), dp2);
  EXPECT_DOUBLE_EQ(report.at("step_time_s").get<double>(), tp2);  // the first phase's report
  EXPECT_EQ(phases.at(1).at("first_step"), 4);
  // 8 sequences of 32 tokens per step.
  EXPECT_DOUBLE_EQ(phases.at(0).at("tokens_per_s").get<double>(), 256 / tp2);
  const strata::json::Json& switches = s.at("switches");
  ASSERT_EQ(switches.size(), 2u);
  // tp2 -> dp2: each rank receives the other half of gpt-tiny's 214,784 sharded elements, each
  // an fp32 parameter (the tiny strategies train in fp32: no master weights) and two fp32 Adam
  // moments (tests/strategies/switch_traffic_test.cpp counts them by tensor).
  const strata::json::Json& move = switches.at(0);
  EXPECT_EQ(move.at("from"), "tiny-tp2");
  EXPECT_EQ(move.at("after_step"), 3);
  EXPECT_EQ(move.at("bytes").get<double>(), 214784.0 * 12);
  EXPECT_EQ(move.at("max_send_bytes").get<double>(), 107392.0 * 12);
  EXPECT_EQ(move.at("transfers"), 2);
  // No faster than the largest send over local-cpu's 6 GB/s between ranks.
  EXPECT_GE(move.at("time_s").get<double>(), 107392.0 * 12 / 6e9);
  EXPECT_LT(move.at("time_s").get<double>(), 1.0);
  EXPECT_EQ(switches.at(1).at("bytes").get<double>(), 0);
  EXPECT_EQ(switches.at(1).at("time_s").get<double>(), 0);
  EXPECT_DOUBLE_EQ(s.at("time_s").get<double>(),
                   3 * tp2 + 3 * dp2 + move.at("time_s").get<double>());
  EXPECT_DOUBLE_EQ(s.at("tokens").get<double>(), 6 * 256);
  // The table, and a report the reader takes back.
  const Result table = run(std::string(kTiny) + "--switch " + schedule);
  EXPECT_NE(table.out.find("tiny-tp2 -> tiny-dp2"), std::string::npos) << table.out;
  EXPECT_EQ(run("compare " + json + " " + json).exit_code, 0);
}

TEST_F(SwitchCli, TheBundledExampleSimulates) {
  const std::string schedule =
      std::string(STRATA_SOURCE_DIR) + "/configs/schedules/tiny-tp2-then-dp2.json";
  const Result r = run(std::string(kTiny) + "--switch " + schedule);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Strategy schedule tiny-tp2-then-dp2 (2 GPUs, 10 steps)"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("tiny-dp2 -> tiny-zero1"), std::string::npos) << r.out;
}

TEST_F(SwitchCli, BadSchedulesAndFlagsAreRefused) {
  const struct {
    const char* schedule;
    int exit_code;
    const char* message;
  } cases[] = {
      {R"({"phases": []})", 1, "switch.phases"},
      {R"({"phases": [{"strategy": "tiny-dp2", "steps": 0}]})", 1, "switch.phases.0.steps = 0"},
      {R"({"phases": [{"strategy": "tiny-dp2", "steps": 1}, {"strategy": "nope", "steps": 1}]})", 1,
       "switch.phases.1.strategy"},
      {R"({"phases": [{"strategy": "tiny-dp2", "steps": 1},
                      {"strategy": "tiny-pp4-zb-h2", "steps": 1}]})",
       1, "switch.phases.1 (strategy 'tiny-pp4-zb-h2')"},
  };
  const std::string json = path("report.json");
  for (const auto& c : cases) {
    const Result r =
        run(std::string(kTiny) + "--switch " + write("bad.json", c.schedule) + " --json " + json);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.schedule << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(json));
  }
  const std::string good =
      write("good.json", R"({"phases": [{"strategy": "tiny-dp2", "steps": 1}]})");
  for (const std::string& extra :
       {std::string("--strategy tiny-dp2"), std::string("--trace ") + path("t.json"),
        std::string("--failures ") + good}) {
    const Result r = run(std::string(kTiny) + "--switch " + good + " " + extra);
    EXPECT_EQ(r.exit_code, 2) << extra << "\n" << r.err;
    EXPECT_NE(r.err.find("--switch"), std::string::npos) << r.err;
  }
}

}  // namespace
