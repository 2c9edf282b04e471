// Prediction against measurement, task by task: two traces of one Plan joined on (rank, task);
// the per-category sums, the step and idle time, the worst tasks, the tasks only one side has,
// the CSV and JSON; traces of different Plans, or with no rank in common, are refused.
#include "results/trace_compare.hpp"

#include <gtest/gtest.h>

#include "tests/strategies/expect_config_error.hpp"
#include "tests/strategies/test_models.hpp"

namespace strata::results {
namespace {

using strategies::Plan;
using strategies::TaskSpan;
using strategies::testing::expect_config_error;

const Plan& plan() {  // dp 2, one stage: every task of a rank back to back
  static const Plan p = strategies::lower(strategies::testing::gpt(2, 256, 8, 512, 64),
                                          strategies::testing::cluster(1, 8),
                                          strategies::testing::strategy(2, 1, 1, 1, 4), 2);
  return p;
}

// Every task of `ranks`, back to back, each `scale` x 1 ms long (task 0 of rank 0: `first`).
Trace trace(const std::vector<int>& ranks, double scale, double first = -1,
            std::uint32_t drop = UINT32_MAX) {
  std::vector<TaskSpan> spans;
  for (int r : ranks) {
    double t = 0;
    const auto& tasks = plan().program_of(r).tasks;
    for (std::uint32_t i = 0; i < tasks.size(); ++i) {
      if (i == drop) continue;
      const double d = (r == ranks.front() && i == 0 && first >= 0) ? first : scale * 1e-3;
      spans.push_back({r, i, t, t + d});
      t += d;
    }
  }
  const json::Json j =
      trace_to_json(plan(), spans, trace_other_data("test", plan().provenance));
  return trace_from_json(j, "t.json");
}

TEST(TraceCompare, JoinsOnTaskIdsAndSumsPerCategory) {
  const Trace predicted = trace({0, 1}, 1.0), measured = trace({0, 1}, 2.0, 0.5, 3);
  const TraceComparison c = compare_traces(predicted, measured, "p.json", "m.json");
  const std::size_t tasks = plan().program_of(0).tasks.size();
  EXPECT_EQ(c.ranks, (std::vector<int>{0, 1}));
  EXPECT_EQ(c.tasks.size(), 2 * tasks - 2);  // task 3 of both ranks is not in the measured trace
  ASSERT_EQ(c.only_predicted.size(), 2u);
  EXPECT_EQ(c.only_predicted[0], (std::pair<int, std::uint32_t>{0, 3}));
  EXPECT_TRUE(c.only_measured.empty());
  // Every category but the one holding task 0 of rank 0 is measured at twice the prediction.
  double predicted_sum = 0, measured_sum = 0;
  for (const CategoryComparison& x : c.categories) {
    predicted_sum += x.predicted_s;
    measured_sum += x.measured_s;
  }
  EXPECT_NEAR(predicted_sum, (2 * tasks - 2) * 1e-3, 1e-9);
  EXPECT_NEAR(measured_sum, (2 * tasks - 3) * 2e-3 + 0.5, 1e-9);
  // The worst task is rank 0's first (0.5 s measured against 1 ms).
  const json::Json j = comparison_to_json(c, 3);
  EXPECT_EQ(j["worst_tasks"].size(), 3u);
  EXPECT_EQ(j["worst_tasks"][0]["rank"], 0);
  EXPECT_EQ(j["worst_tasks"][0]["task"], 0);
  EXPECT_NEAR(j["worst_tasks"][0]["error"].get<double>(), 1e-3 / 0.5 - 1, 1e-9);
  EXPECT_NEAR(c.predicted_step_s, tasks * 1e-3, 1e-9);
  EXPECT_NEAR(c.measured_step_s, (tasks - 2) * 2e-3 + 0.5, 1e-9);
  // Categories name the block and pass, or the collective and its purpose.
  const std::string text = render_comparison(c, 3);
  EXPECT_NE(text.find("compute mlp_fc1 forward"), std::string::npos) << text;
  EXPECT_NE(text.find("all_reduce dp"), std::string::npos) << text;
  EXPECT_NE(text.find("only in one trace: 2 predicted, 0 measured tasks"), std::string::npos);
  const std::string csv = comparison_csv(c);
  EXPECT_EQ(csv.rfind("rank,task,name,category,predicted_s,measured_s,error\n", 0), 0u);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), static_cast<long>(c.tasks.size()) + 1);
}

TEST(TraceCompare, OnlyTheRanksBothTracesHave) {
  const TraceComparison c = compare_traces(trace({0, 1}, 1.0), trace({1}, 1.0), "p", "m");
  EXPECT_EQ(c.ranks, (std::vector<int>{1}));
  EXPECT_TRUE(c.only_predicted.empty());
  expect_config_error([&] { compare_traces(trace({0}, 1.0), trace({1}, 1.0), "p.json", "m.json"); },
                      {"m.json: no rank of it is in p.json"});
}

TEST(TraceCompare, TracesOfDifferentPlansAreRefused) {
  Trace other = trace({0}, 1.0);
  other.other_data["provenance"]["strategy_hash"] = "0123";
  expect_config_error([&] { compare_traces(trace({0}, 1.0), other, "p.json", "m.json"); },
                      {"m.json: otherData.provenance.strategy_hash = \"0123\"", "different Plans"});
}

}  // namespace
}  // namespace strata::results

namespace strata::results {
namespace {

// A simulated collective's span is the communication alone; the rank issued it earlier and
// waited for the other members (args.waited_us). The executor's span runs from the call to the
// return, wait included, so the join compares the predicted wait and span with it.
TEST(TraceCompare, ASimulatedCollectiveIsComparedWithTheWaitBeforeIt) {
  std::vector<TaskSpan> spans;
  std::uint32_t collective = UINT32_MAX;
  double t = 0;
  const auto& tasks = plan().program_of(0).tasks;
  for (std::uint32_t i = 0; i < tasks.size(); ++i) {
    const bool c = tasks[i].kind == strategies::TaskKind::kCollective;
    if (c && collective == UINT32_MAX) collective = i;
    spans.push_back({0, i, t + (c ? 3e-3 : 0), t + (c ? 4e-3 : 1e-3), c ? 3e-3 : 0});
    t += c ? 4e-3 : 1e-3;
  }
  ASSERT_NE(collective, UINT32_MAX);
  const json::Json j = trace_to_json(plan(), spans, trace_other_data("test", plan().provenance));
  const Trace predicted = trace_from_json(j, "p.json");
  bool seen = false;
  for (const TraceEvent& e : predicted.events) {
    if (e.task != collective) continue;
    seen = true;
    EXPECT_NEAR(e.waited_s, 3e-3, 1e-12);  // written as args.waited_us, read back
    EXPECT_NEAR(e.duration_s, 1e-3, 1e-12);
  }
  EXPECT_TRUE(seen);
  const TraceComparison c = compare_traces(predicted, predicted, "p.json", "p.json");
  for (const TaskComparison& x : c.tasks) {
    if (x.task != collective) continue;
    EXPECT_NEAR(x.predicted_s, 4e-3, 1e-12);  // the wait and the communication
    EXPECT_NEAR(x.measured_s, 1e-3, 1e-12);   // a measured span has no separate wait
  }
}

}  // namespace
}  // namespace strata::results
