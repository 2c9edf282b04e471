// `strata validate` end to end on gpt-tiny, 1 and 2 ranks: it runs every stage, prints the
// comparison and leaves one directory with the traces, the joined table and a summary whose
// numbers hang together (never their values against the machine: a test asserts no timing).
// Bad input stops before any stage with nothing written; a failing stage names itself and
// leaves no result directory.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/json.hpp"

namespace fs = std::filesystem;

namespace {

struct Result {
  int exit_code = -1;
  std::string out, err;
};

class Validate : public ::testing::Test {
 protected:
  void SetUp() override {
    // The ranks under mpirun: Open MPI's own allocations are not ours to leak-check (as in
    // executor_mpi_test.cpp).
    const char* asan = std::getenv("ASAN_OPTIONS");
    setenv("ASAN_OPTIONS", (std::string(asan ? asan : "") + ":detect_leaks=0").c_str(), 1);
    dir_ = fs::temp_directory_path() /
           ("strata-validate-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // `strata validate ARGS --out DIR/out`, bounded by `timeout` so that a hang fails.
  Result run(const std::string& args) {
    const fs::path out = dir_ / "stdout", err = dir_ / "stderr";
    const std::string cmd = "timeout 600 " + std::string(STRATA_EXE) + " validate " + args +
                            " --out " + result_dir().string() + " >" + out.string() + " 2>" +
                            err.string();
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read(out), read(err)};
  }
  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  fs::path result_dir() const { return dir_ / "out"; }
  fs::path partial_dir() const { return dir_ / "out.partial"; }

  // The checks every successful validation passes; returns summary.json.
  strata::json::Json expect_complete(const Result& r, int ranks) {
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(fs::exists(partial_dir()));
    for (const char* f : {"summary.json", "joined.csv", "report.json", "predicted.json", "run.json",
                          "measured.json", "profile.json", "logs/run.log"}) {
      EXPECT_TRUE(fs::exists(result_dir() / f)) << f;
    }
    EXPECT_EQ(fs::exists(result_dir() / "links.json"), ranks > 1);
    EXPECT_NE(r.out.find("step time (median of steps 2..3)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("worst-predicted tasks"), std::string::npos) << r.out;
    // Progress: the first stage of 4 (one rank: no links) or 5.
    EXPECT_NE(r.err.find(ranks > 1 ? "[1/5] profile-ops" : "[1/4] profile-ops"), std::string::npos)
        << r.err;

    const strata::json::Json s = strata::json::parse_file((result_dir() / "summary.json").string());
    EXPECT_EQ(s.at("kind"), "strata.validation");
    EXPECT_EQ(s.at("ranks"), ranks);
    EXPECT_EQ(s.at("measured_step_times_s").size(), 3u);
    EXPECT_GT(s.at("predicted_step_s").get<double>(), 0);
    EXPECT_GT(s.at("measured_step_s").get<double>(), 0);
    // The simulation priced every compute task from the profile taken for this very Plan.
    EXPECT_EQ(s.at("measured_costs").at("tasks_modelled"), 0);
    EXPECT_GT(s.at("measured_costs").at("tasks_measured").get<int>(), 0);
    const strata::json::Json& c = s.at("comparison");
    EXPECT_EQ(c.at("ranks").size(), static_cast<std::size_t>(ranks));
    EXPECT_FALSE(c.at("categories").empty());
    EXPECT_TRUE(c.at("only_predicted").empty());
    EXPECT_TRUE(c.at("only_measured").empty());
    // One CSV row per joined task, after the header.
    const std::string csv = read(result_dir() / "joined.csv");
    const long rows = std::count(csv.begin(), csv.end(), '\n') - 1;
    EXPECT_EQ(rows, c.at("joined_tasks").get<long>());
    return s;
  }

  fs::path dir_;
};

const char* kQuick = "--model gpt-tiny --steps 3 --warmup 1 --repetitions 2";

TEST_F(Validate, OneRankRunsEveryStageButTheLinks) {
  const Result r = run(std::string(kQuick) + " --strategy tiny-1rank --np 1");
  const strata::json::Json s = expect_complete(r, 1);
  EXPECT_EQ(s.at("stages").size(), 3u);  // profile-ops, simulate, run
}

TEST_F(Validate, TwoRanksMeasureTheLinksAndCompareTheAllReduce) {
  const Result r = run(std::string(kQuick) + " --strategy tiny-dp2 --np 2 --max-bytes 256K");
  const strata::json::Json s = expect_complete(r, 2);
  EXPECT_EQ(s.at("stages").size(), 4u);
  EXPECT_EQ(s.at("measured_costs").at("collectives_modelled"), 0);
  bool all_reduce = false;
  for (const auto& cat : s.at("comparison").at("categories")) {
    all_reduce = all_reduce || cat.at("category") == "all_reduce dp";
  }
  EXPECT_TRUE(all_reduce) << s.at("comparison").dump();
  // A second validation into the same directory, on the profiles of the first, replaces it
  // whole; the given files, which lived in it, are kept in the new one unchanged.
  const std::string links = read(result_dir() / "links.json");
  const std::string profile = read(result_dir() / "profile.json");
  const Result again = run(std::string(kQuick) +
                           " --strategy tiny-dp2 --np 2 --max-bytes 256K "
                           "--links " +
                           (result_dir() / "links.json").string() + " --profile " +
                           (result_dir() / "profile.json").string());
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_FALSE(fs::exists(partial_dir()));
  EXPECT_EQ(read(result_dir() / "links.json"), links);  // given, not measured: kept as it was
  EXPECT_EQ(read(result_dir() / "profile.json"), profile);
  const strata::json::Json s2 = strata::json::parse_file((result_dir() / "summary.json").string());
  EXPECT_EQ(s2.at("stages").size(), 2u);  // simulate, run
}

TEST_F(Validate, BadInputStopsBeforeAnyStageWithNothingWritten) {
  Result r = run("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--np N"), std::string::npos) << r.out;
  // Started by mpirun itself it would start mpirun inside every rank: refused.
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  r = run(std::string(kQuick) + " --strategy tiny-dp2 --np 2");
  unsetenv("OMPI_COMM_WORLD_SIZE");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("without mpirun"), std::string::npos) << r.err;
  r = run(std::string(kQuick) + " --strategy tiny-dp2 --np 3");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--np = 3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("2 ranks"), std::string::npos) << r.err;
  r = run(std::string(kQuick) + " --strategy tiny-dp2");
  EXPECT_EQ(r.exit_code, 2);  // a usage error
  EXPECT_NE(r.err.find("--np is required"), std::string::npos) << r.err;
  r = run("--model gpt-tiny --strategy tiny-dp2 --np 2 --steps 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--steps = 1"), std::string::npos) << r.err;
  r = run("--model gpt-tiny --strategy tiny-dp2 --np 2 --repetitions 0");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--repetitions = 0"), std::string::npos) << r.err;
  r = run(std::string(kQuick) + " --strategy tiny-dp2 --np 2 --profile /no/such/profile.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--profile = /no/such/profile.json"), std::string::npos) << r.err;

  EXPECT_FALSE(fs::exists(result_dir()));
  EXPECT_FALSE(fs::exists(partial_dir()));
}

// A stage whose child dies (here the launcher kills itself, as a rank killed by the system
// would) is a runtime failure, exit 4; an unknown option a usage error, exit 2.
TEST_F(Validate, AKilledStageIsARuntimeFailure) {
  const std::string killer = (dir_ / "killer.sh").string();
  std::ofstream(killer) << "#!/bin/sh\nkill -KILL $$\n";
  fs::permissions(killer, fs::perms::owner_all);
  Result r = run(std::string(kQuick) + " --strategy tiny-dp2 --np 2 --mpirun " + killer);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("strata validate: runtime failure: stage 'profile-links' failed (exit code "
                       "137)"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(result_dir()));
  r = run(std::string(kQuick) + " --strategy tiny-dp2 --np 2 --frobnicate");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--frobnicate: unknown option"), std::string::npos) << r.err;
}

TEST_F(Validate, AFailingStageNamesItselfAndLeavesNoResult) {
  // A launcher that fails: the links stage is the first under it.
  const Result r = run(std::string(kQuick) + " --strategy tiny-dp2 --np 2 --mpirun false");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("stage 'profile-links' failed"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(result_dir()));
  EXPECT_TRUE(fs::exists(partial_dir() / "logs" / "profile-links.log"));
}

}  // namespace
