// `strata search` end to end: the search's best against an exhaustive simulation of its space,
// the strategies it writes, the memory budget, bad spaces, determinism.
#include <sstream>

#include "tests/cli/strata_test.hpp"

namespace strata::testing {
namespace {

// A small space of gpt-tiny on one DGX node: a few hundred strategies, each simulated in a
// fraction of a second.
const char* const kSmallSpace =
    R"({"tp": [1, 2, 4], "pp": [1, 2], "micro_batch_size": [1, 2], "schedule": ["gpipe", "1f1b"],
        "zero_stage": [0, 1, 3], "grad_bucket_MiB": [25]})";

int column(const std::vector<std::string>& header, const std::string& name) {
  for (std::size_t i = 0; i < header.size(); ++i) {
    if (header[i] == name) return static_cast<int>(i);
  }
  ADD_FAILURE() << "no column " << name;
  return 0;
}

class SearchTest : public StrataTest {
 protected:
  std::string tiny(const std::string& out, const std::string& more = "") const {
    return "search --model gpt-tiny --cluster dgx-a100-128n --gpus 8 --global-batch 16 --space " +
           path("space.json") + " --out " + path(out) + " --quiet " + more;
  }
};

// The search is not missing a better candidate of its own space: simulating every candidate
// finds the same best as verifying the estimator's top 8.
TEST_F(SearchTest, TheBestAgreesWithAnExhaustiveSimulationOfTheSpace) {
  write("space.json", kSmallSpace);
  const Result all = run(tiny("all", "--top all"));
  ASSERT_EQ(all.exit_code, 0) << all.err;
  const Result top = run(tiny("top"));
  ASSERT_EQ(top.exit_code, 0) << top.err;
  const auto every = read_csv(read(path("all/ranking.csv")));
  const auto best = read_csv(read(path("top/ranking.csv")));
  ASSERT_GT(every.size(), 100u);  // the exhaustive run simulated the whole space
  ASSERT_EQ(best.size(), 9u);     // header and the 8 verified
  const int sim = column(every.front(), "simulated_step_s");
  EXPECT_EQ(best[1][column(best.front(), "strategy")], every[1][column(every.front(), "strategy")]);
  EXPECT_EQ(std::stod(best[1][sim]), std::stod(every[1][sim]));
  for (std::size_t i = 2; i < every.size(); ++i) {
    EXPECT_LE(std::stod(every[1][sim]), std::stod(every[i][sim]));
  }
  EXPECT_NE(top.out.find("estimator vs simulation over 8 verified: Spearman"), std::string::npos);
}

// Every strategy written validates, lowers and fits (strata plan says so), and simulates to the
// step time the ranking reports; the same inputs give the same files.
TEST_F(SearchTest, WrittenStrategiesAreReadyToUseAndTheOutputIsDeterministic) {
  write("space.json", kSmallSpace);
  ASSERT_EQ(run(tiny("a")).exit_code, 0);
  ASSERT_EQ(run(tiny("b", "--jobs 1")).exit_code, 0);
  EXPECT_EQ(read(path("a/ranking.csv")), read(path("b/ranking.csv")));
  const auto rows = read_csv(read(path("a/ranking.csv")));
  const int file = column(rows.front(), "file");
  const int sim = column(rows.front(), "simulated_step_s");
  for (std::size_t i = 1; i < rows.size(); ++i) {
    const std::string strategy = path("a/" + rows[i][file]);
    EXPECT_EQ(read(strategy), read(path("b/" + rows[i][file])));
    const Result plan =
        run("plan --model gpt-tiny --cluster dgx-a100-128n --gpus 8 --strategy " + strategy);
    EXPECT_EQ(plan.exit_code, 0) << plan.err;
    EXPECT_NE(plan.out.find("fits           yes"), std::string::npos) << plan.out;
    if (i == 1) {
      const Result simulated =
          run("simulate --model gpt-tiny --cluster dgx-a100-128n --gpus 8 "
              "--quiet --json " +
              path("best.json") + " --strategy " + strategy);
      ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
      const std::string report = read(path("best.json"));
      const std::string step = rows[i][sim];
      EXPECT_NE(report.find("\"step_time_s\": " + step), std::string::npos) << step;
    }
  }
}

// With a memory budget that binds (a share of the device), no returned strategy exceeds it in
// the simulation, and per-layer hybrids (recompute for some layers of a stage) are among the best.
TEST_F(SearchTest, NoReturnedStrategyExceedsTheMemoryBudget) {
  write("space.json", R"({"tp": [1, 2, 4, 8], "pp": [1, 2, 4], "micro_batch_size": [1, 2, 4],
                          "schedule": ["1f1b"], "zero_stage": [0, 1], "grad_bucket_MiB": [25],
                          "memory_fraction": 0.3})");
  const Result r =
      run("search --model gpt3-6.7b --cluster dgx-a100-128n --gpus 8 --global-batch 32 "
          "--space " +
          path("space.json") + " --out " + path("out") + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rows = read_csv(read(path("out/ranking.csv")));
  ASSERT_EQ(rows.size(), 9u);
  const int peak = column(rows.front(), "simulated_peak_bytes");
  const int capacity = column(rows.front(), "capacity_bytes");
  const int overrides = column(rows.front(), "layer_overrides");
  int hybrids = 0;
  for (std::size_t i = 1; i < rows.size(); ++i) {
    EXPECT_LE(std::stod(rows[i][peak]), 0.3 * std::stod(rows[i][capacity])) << rows[i][1];
    hybrids += rows[i][overrides].empty() ? 0 : 1;
  }
  EXPECT_GT(hybrids, 0);  // per-layer recompute buys speed under the budget
}

TEST_F(SearchTest, AnImpossibleSpaceIsAClearErrorAndWritesNothing) {
  write("space.json", R"({"tp": [8], "pp": [1]})");  // gpt-tiny has 4 heads
  const Result r = run(tiny("out"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("the search space holds no valid strategy for gpt-tiny on 8 GPUs"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("strategy.tp = 8"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(path("out")));
  EXPECT_FALSE(std::filesystem::exists(path("out.partial")));

  write("space.json", R"({"schedule": ["1f1b", "dualpipe"]})");
  const Result bad = run(tiny("out"));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("space.schedule[1] = \"dualpipe\": must be one of"), std::string::npos)
      << bad.err;
  EXPECT_FALSE(std::filesystem::exists(path("out")));
}

TEST_F(SearchTest, NothingFitsIsExitThreeWithTheSmallestPeak) {
  write("space.json", R"({"tp": [1], "pp": [1], "zero_stage": [0]})");
  const Result r =
      run("search --model gpt3-175b --cluster dgx-a100-128n --gpus 8 --global-batch 8 "
          "--space " +
          path("space.json") + " --out " + path("out") + " --quiet");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("no strategy of the space fits gpt3-175b on 8 GPUs"), std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(path("out")));
}

// --budget-s stops the verification: with a budget already spent, only the first simulation
// runs, and the output says so.
TEST_F(SearchTest, ABudgetStopsTheVerificationAfterTheFirstSimulation) {
  write("space.json", kSmallSpace);
  const Result r = run(tiny("out", "--budget-s 0.001 --jobs 1"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_csv(read(path("out/ranking.csv"))).size(), 2u);  // header and one
  EXPECT_NE(r.out.find("stopped by --budget-s"), std::string::npos) << r.out;
  EXPECT_NE(read(path("out/search.json")).find("\"stopped_by_budget\": true"), std::string::npos);
  const Result bad = run(tiny("out2", "--budget-s -3"));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("--budget-s = -3: must be a number of seconds > 0"), std::string::npos)
      << bad.err;
}

TEST_F(SearchTest, UsageErrors) {
  const Result no_batch = run("search --model gpt-tiny --cluster dgx-a100-128n --out " + path("o"));
  EXPECT_EQ(no_batch.exit_code, 2);
  EXPECT_NE(no_batch.err.find("--global-batch B is required without --strategy"),
            std::string::npos);
  const Result top =
      run("search --model gpt-tiny --cluster dgx-a100-128n --global-batch 8 --top 0 "
          "--out " +
          path("o"));
  EXPECT_EQ(top.exit_code, 1);
  EXPECT_NE(top.err.find("--top"), std::string::npos) << top.err;
  const Result help = run("search --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("Usage: strata search"), std::string::npos);
}

}  // namespace
}  // namespace strata::testing
