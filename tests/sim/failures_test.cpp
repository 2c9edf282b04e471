// The failure spec and the step-granular event simulation (sim/failures.hpp): Young/Daly
// against hand numbers, closed forms without failures and with one explicit failure, shrinking
// with fewer replicas, determinism for a seed, and the spec's errors.
#include "sim/failures.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "common/error.hpp"

namespace {

using strata::ConfigError;
using strata::json::Json;
namespace sim = strata::sim;

// 2 nodes of 4 GPUs, dp 4 (replica = gpu / 2), a 10 s step of 1000 tokens.
sim::FailureJob small_job() {
  sim::FailureJob job;
  job.step_time_s = 10;
  job.tokens_per_step = 1000;
  job.dp = 4;
  job.node_of_gpu = {0, 0, 0, 0, 1, 1, 1, 1};
  job.replica_of_gpu = {0, 0, 1, 1, 2, 2, 3, 3};
  job.checkpoint_bytes_per_node = 40e9;
  return job;
}

sim::FailureSpec spec(const std::string& text) {
  return sim::parse_failure_spec(Json::parse(text));
}

std::string error_of(const std::string& text, const sim::FailureJob& job = small_job()) {
  try {
    sim::simulate_failures(spec(text), job);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Failures, YoungAndDalyAgainstHandNumbers) {
  // C = 100 s, M = 20000 s: sqrt(2 * 100 * 20000) = 2000 s.
  EXPECT_DOUBLE_EQ(sim::young_interval_s(100, 20000), 2000);
  // Daly: x = sqrt(100 / 40000) = 0.05; 2000 * (1 + 0.05/3 + 0.0025/9) - 100 = 1933.888...
  EXPECT_NEAR(sim::daly_interval_s(100, 20000), 2000 * (1 + 0.05 / 3 + 0.0025 / 9) - 100, 1e-9);
  EXPECT_NEAR(sim::daly_interval_s(100, 20000), 1933.8889, 1e-4);
  EXPECT_DOUBLE_EQ(sim::daly_interval_s(500, 200), 200);  // C >= 2M: M
  EXPECT_TRUE(std::isinf(sim::daly_interval_s(100, INFINITY)));
}

TEST(Failures, NoFailuresGoodputIsStepsOverStepsPlusCheckpoints) {
  // 1000 steps of 10 s, a checkpoint of 25 s every 100 steps: 10 checkpoints.
  const sim::FailureReport r = sim::simulate_failures(
      spec(R"({"span": {"steps": 1000}, "checkpoint": {"interval": 100, "cost_s": 25},
               "trials": 2})"),
      small_job());
  ASSERT_EQ(r.rows.size(), 1u);
  const sim::FailureRow& row = r.rows[0];
  EXPECT_EQ(row.interval_steps, 100);
  EXPECT_DOUBLE_EQ(row.wall_s.mean, 1000 * 10 + 10 * 25);
  EXPECT_DOUBLE_EQ(row.goodput.mean, 10000.0 / 10250.0);
  EXPECT_DOUBLE_EQ(row.goodput.stddev, 0);
  EXPECT_DOUBLE_EQ(row.tokens_per_s.mean, 1000 * 1000 / 10250.0);
  EXPECT_DOUBLE_EQ(row.failures.mean, 0);
  EXPECT_DOUBLE_EQ(row.lost_work_s.mean, 0);
  EXPECT_TRUE(std::isinf(row.mtbf_s));
}

TEST(Failures, CheckpointCostFromStateBytesOverWriteBandwidth) {
  const sim::FailureReport r =
      sim::simulate_failures(spec(R"({"span": {"steps": 10}, "checkpoint": {"interval": 5,
               "write_gb_per_s_per_node": 2}, "trials": 1})"),
                             small_job());
  EXPECT_TRUE(r.checkpoint_cost_derived);
  EXPECT_DOUBLE_EQ(r.checkpoint_s, 20);  // 40 GB / 2 GB/s
  EXPECT_DOUBLE_EQ(r.rows[0].wall_s.mean, 100 + 2 * 20);
}

TEST(Failures, OneExplicitFailureLosesTheWorkSinceTheCheckpointPlusDetectionAndRestart) {
  // Checkpoints (25 s) after steps 100, 200, ...: the one after step 200 ends at
  // 200 * 10 + 2 * 25 = 2050 s. GPU 5 fails at 0.6 h = 2160 s: 110 s of work lost (11 steps),
  // then 60 s detection and 600 s restart.
  const sim::FailureReport r = sim::simulate_failures(
      spec(R"({"span": {"steps": 1000}, "events": [{"time_h": 0.6, "gpu": 5}],
               "detection_s": 60, "restart_s": 600,
               "checkpoint": {"interval": 100, "cost_s": 25}, "trials": 1})"),
      small_job());
  const sim::FailureRow& row = r.rows[0];
  EXPECT_DOUBLE_EQ(row.failures.mean, 1);
  EXPECT_NEAR(row.lost_work_s.mean, 110, 1e-6);
  EXPECT_DOUBLE_EQ(row.downtime_s.mean, 660);
  EXPECT_NEAR(row.wall_s.mean, 10000 + 250 + 110 + 660, 1e-6);
  EXPECT_DOUBLE_EQ(row.useful_steps.mean, 1000);
}

TEST(Failures, AFailureDuringACheckpointWriteLosesTheWrite) {
  // The write after step 100 runs 1000 .. 1025 s; node 1 fails at 1010 s: 100 steps and 10 s of
  // the write are lost.
  const sim::FailureReport r = sim::simulate_failures(
      spec(R"({"span": {"steps": 200}, "events": [{"time_h": 0.28055555555555556, "node": 1}],
               "detection_s": 0, "restart_s": 0,
               "checkpoint": {"interval": 100, "cost_s": 25}, "trials": 1})"),
      small_job());
  EXPECT_NEAR(r.rows[0].lost_work_s.mean, 1010, 1e-6);
  EXPECT_NEAR(r.rows[0].wall_s.mean, 1010 + 2000 + 50, 1e-6);
}

TEST(Failures, ShrinkRunsWithFewerReplicasUntilTheReplacementRejoins) {
  sim::FailureJob job = small_job();
  job.step_time_at_dp = {{3, 9.0}};  // the re-simulated step at dp 3
  // GPU 2 (replica 1) fails at 0.1 h = 360 s, within step 37 (360 .. 370 s): 0 s lost, 30 s
  // detection; from 390 s steps of 9 s at 3/4 of the tokens until the replica rejoins
  // (replacement 0.1 h after the failure: at 720 s, at the next step boundary 723 s).
  const sim::FailureReport r =
      sim::simulate_failures(spec(R"({"span": {"hours": 0.5}, "events": [{"time_h": 0.1, "gpu": 2}],
               "reaction": "shrink", "detection_s": 30,
               "shrink": {"replacement_h": 0.1, "rejoin_s": 5},
               "checkpoint": {"interval": 1000, "cost_s": 1}, "trials": 1})"),
                             job);
  const sim::FailureRow& row = r.rows[0];
  EXPECT_DOUBLE_EQ(row.failures.mean, 1);
  EXPECT_DOUBLE_EQ(row.lost_work_s.mean, 0);
  EXPECT_DOUBLE_EQ(row.downtime_s.mean, 35);
  // Steps: 36 full (0 .. 360), 37 shrunk (390 .. 723), rejoin to 728, then full steps to
  // 1800 s: (1800 - 728) / 10 = 107 (1798 s).
  EXPECT_DOUBLE_EQ(row.useful_steps.mean, 36 + 37 * 0.75 + 107);
  EXPECT_DOUBLE_EQ(row.wall_s.mean, 1800);
  EXPECT_EQ(r.step_time_at_dp.at(3), 9.0);
  EXPECT_EQ(sim::shrink_dps(spec(R"({"span": {"steps": 1}, "reaction": "shrink",
                                     "shrink": {"min_dp": 2}})"),
                            4),
            (std::vector<int>{2, 3}));
}

TEST(Failures, ShrinkBelowMinDpRestarts) {
  sim::FailureJob job = small_job();
  job.step_time_at_dp = {{3, 10.0}};
  // Node 0 holds replicas 0 and 1: dp 2 < min_dp 3, so the job restarts (nothing lost: the
  // failure at 0 s comes before any step).
  const sim::FailureReport r =
      sim::simulate_failures(spec(R"({"span": {"steps": 10}, "events": [{"time_h": 0, "node": 0}],
               "reaction": "shrink", "detection_s": 1, "restart_s": 9,
               "checkpoint": {"interval": 5, "cost_s": 0}, "trials": 1})"),
                             job);
  EXPECT_DOUBLE_EQ(r.rows[0].downtime_s.mean, 10);
  EXPECT_DOUBLE_EQ(r.rows[0].wall_s.mean, 110);
}

TEST(Failures, DeterministicForASeedAndAveragedOverTrials) {
  const std::string text = R"({"span": {"hours": 100}, "rate_per_gpu_hour": [0.001, 0.01],
      "checkpoint": {"interval": ["auto", {"seconds": 3600}], "cost_s": 30}, "trials": 8,
      "seed": 7})";
  const sim::FailureReport a = sim::simulate_failures(spec(text), small_job());
  const sim::FailureReport b = sim::simulate_failures(spec(text), small_job());
  EXPECT_EQ(sim::failure_report_to_json(a).dump(), sim::failure_report_to_json(b).dump());
  ASSERT_EQ(a.rows.size(), 4u);
  EXPECT_EQ(a.rows[1].interval_steps, 360);
  // 8 GPUs x 0.01 / h x 100 h: 8 failures expected per trial; the trials differ.
  EXPECT_NEAR(a.rows[2].failures.mean, 8, 4);
  EXPECT_GT(a.rows[2].failures.stddev, 0);
  EXPECT_LT(a.rows[2].goodput.mean, a.rows[0].goodput.mean);
  // MTBF 3600 / (0.01 x 8) = 45000 s: Young's interval sqrt(2 * 30 * 45000) = 1643 s = 164
  // steps; "auto" is Daly's, 1623 s = 162 steps.
  EXPECT_EQ(a.rows[2].young_interval_steps, 164);
  EXPECT_EQ(a.rows[2].interval_steps, 162);
  EXPECT_NEAR(a.rows[2].mtbf_s, 45000, 1e-9);
  // The sweep's best is within a few percent of Young's interval's goodput.
  EXPECT_GE(a.rows[2].best_goodput, a.rows[2].goodput.mean - 0.01);
  const sim::FailureReport c =
      sim::simulate_failures(spec(R"({"span": {"hours": 100}, "rate_per_gpu_hour": 0.01,
               "checkpoint": {"cost_s": 30}, "trials": 8, "seed": 8})"),
                             small_job());
  EXPECT_NE(c.rows[0].failures.mean + c.rows[0].lost_work_s.mean,
            a.rows[2].failures.mean + a.rows[2].lost_work_s.mean);
}

TEST(Failures, BadSpecsNameTheFieldTheValueAndTheRule) {
  const auto has = [](const std::string& message, const std::string& part) {
    EXPECT_NE(message.find(part), std::string::npos) << message;
  };
  has(error_of(R"({"span": {"hours": 1}, "events": [{"time_h": 2, "gpu": 0}]})"),
      "failures.events[0].time_h = 2: must be before the end of the span (span.hours = 1.000)");
  has(error_of(R"({"span": {"steps": 10}, "events": [{"time_h": 1, "gpu": 0}]})"),
      "failures.events[0].time_h = 1: must be before the end of the span (span.steps = 10");
  has(error_of(R"({"span": {"hours": 1}, "events": [{"time_h": 0.5, "gpu": 8}]})"),
      "failures.events[0].gpu = 8: must be below the job's 8 GPUs");
  has(error_of(R"({"span": {"hours": 1}, "events": [{"time_h": 0.5, "link": 2}]})"),
      "failures.events[0].link = 2: must be below the job's 2 nodes");
  has(error_of(R"({"span": {"hours": 1}, "events": [{"time_h": 0.5, "gpu": 1, "node": 0}]})"),
      "must name exactly one of gpu, node or link");
  has(error_of(R"({"span": {"hours": 1}, "rate_per_gpu_hour": -1})"),
      "failures.rate_per_gpu_hour = -1: must be a number >= 0");
  has(error_of(R"({"span": {"hours": 1}, "reaction": "pray"})"),
      "failures.reaction = \"pray\": must be \"restart\" or \"shrink\"");
  has(error_of(R"({"span": {"hours": 1, "steps": 3}})"), "exactly one of hours or steps");
  has(error_of(R"({"span": {"hours": 1}, "checkpoint": {"interval": 0}})"),
      "failures.checkpoint.interval = 0: must be \"auto\"");
  has(error_of(R"({"span": {"hours": 1}, "reaction": "shrink", "shrink": {"min_dp": 4}})"),
      "failures.shrink.min_dp = 4: must be below the strategy's dp (4)");
  has(error_of(R"({"span": {"hours": 1}, "shrink": {"min_dp": 2}})"), "needs reaction \"shrink\"");
  has(error_of(R"({"span": {"hours": 1}, "checkpoint": {"cost_s": -3}})"),
      "failures.checkpoint.cost_s = -3: must be a finite number >= 0");
  has(error_of(R"({"span": {"hours": 1}, "mtbf": 3})"), "mtbf");
  has(error_of(R"({"span": {"hours": 100000}})"),
      "failures.span.hours = 100000: covers 36000000 steps of 10.0000 s; at most 10000000");
  has(error_of(R"({"span": {"steps": 20000000}})"), "failures.span.steps = 20000000: must be at");
}

TEST(Failures, ASpanInStepsThatFailuresKeepFromFinishingStops) {
  // 8 GPUs at 1000 failures per GPU-hour: an MTBF of 0.45 s against a 10 s step, so no step
  // ever finishes (exp(-22)); the trial stops at 1000 x 10 steps x 10 s.
  const sim::FailureReport r = sim::simulate_failures(
      spec(R"({"span": {"steps": 10}, "rate_per_gpu_hour": 1000, "detection_s": 0,
               "restart_s": 0, "checkpoint": {"interval": 1, "cost_s": 0}, "trials": 1})"),
      small_job());
  EXPECT_GE(r.rows[0].wall_s.mean, 1000 * 10 * 10);
  EXPECT_LT(r.rows[0].wall_s.mean, 1000 * 10 * 10 + 10);
  EXPECT_EQ(r.rows[0].useful_steps.mean, 0);
  EXPECT_EQ(r.rows[0].goodput.mean, 0);
}

}  // namespace
