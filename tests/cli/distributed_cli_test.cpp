// `strata sweep` and `strata search` under mpirun (cli/farm.hpp, docs/distributed.md): the same
// files as one process, point for point, whichever rank ran a point; and a rank that stops
// answering or dies loses only the point it was running, which another rank runs again.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "tests/cli/strata_test.hpp"

namespace strata::testing {
namespace {

namespace fs = std::filesystem;

// Eight points (two refused: 3 does not divide the heads), each a child simulation.
const char* kSweep =
    "sweep --model gpt-tiny --cluster local-cpu --strategy tiny-dp2 "
    "--vary strategy.tp=1,2,3,4 --vary strategy.micro_batch_size=1,2";

class DistributedTest : public StrataTest {
 protected:
  // `env mpirun -np N [launcher flags] strata args`, bounded by a timeout.
  Result mpirun(int np, const std::string& args, const std::string& env = "",
                const std::string& launcher_flags = "") const {
    const fs::path out = dir_ / "mpi-stdout", err = dir_ / "mpi-stderr";
    // Under AddressSanitizer, Open MPI's own allocations (never freed at MPI_Finalize, in
    // plugins unloaded before LeakSanitizer can name them) would fail every rank: leak checking
    // is off for the ranks, as in executor_mpi_test.cpp; the same commands without mpirun
    // (run()) are leak-checked.
    const char* asan = std::getenv("ASAN_OPTIONS");
    const std::string sanitizer =
        "ASAN_OPTIONS=" + std::string(asan ? asan : "") + ":detect_leaks=0 ";
    const std::string cmd = sanitizer + env + " timeout 300 " + std::string(STRATA_MPIEXEC) +
                            (::geteuid() == 0 ? " --allow-run-as-root" : "") +
                            " --oversubscribe " + launcher_flags + " -np " + std::to_string(np) +
                            " " + std::string(STRATA_EXE) + " " + args + " >" + out.string() +
                            " 2>" + err.string() + " </dev/null";
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read(out), read(err)};
  }
  // timing.csv's rows (job, rank, attempts, started_s, seconds, lost), header dropped.
  std::vector<std::vector<std::string>> timing(const std::string& dir) const {
    std::vector<std::vector<std::string>> rows = read_csv(read(dir + "/timing.csv"));
    EXPECT_EQ(rows.at(0), (std::vector<std::string>{"job", "rank", "attempts", "started_s",
                                                    "seconds", "lost"}));
    rows.erase(rows.begin());
    return rows;
  }
};

TEST_F(DistributedTest, ASweepOverTwoRanksWritesWhatOneProcessWrites) {
  const Result one = run(std::string(kSweep) + " --out " + path("one"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const Result two = mpirun(2, std::string(kSweep) + " --jobs 1 --out " + path("two"));
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_EQ(two.err.find("rank 0 sent nothing"), std::string::npos) << two.err;
  EXPECT_EQ(read(path("two/sweep.csv")), read(path("one/sweep.csv")));
  EXPECT_NE(read(path("one/sweep.csv")).find(",refused,1,"), std::string::npos);
  EXPECT_NE(two.out.find("8 points, 6 simulated, 2 refused"), std::string::npos) << two.out;
  // Every point ran once, on rank 0 or 1, and each point's report is in its folder.
  const auto rows = timing(path("two"));
  ASSERT_EQ(rows.size(), 8u);
  std::set<std::string> ranks;
  for (const auto& row : rows) {
    ASSERT_EQ(row.size(), 6u);
    ranks.insert(row[1]);
    EXPECT_EQ(row[2], "1");
    EXPECT_GE(std::stod(row[3]), 0);
    EXPECT_GT(std::stod(row[4]), 0);
    EXPECT_TRUE(fs::exists(path("two/points/" + row[0] + "/log.txt")));
  }
  EXPECT_TRUE(ranks.count("0") + ranks.count("1") == ranks.size());
  EXPECT_TRUE(fs::exists(path("two/points/001/report.json")));
}

// One simulation at a time: the points start costliest first (micro-batches x layers: the
// smallest micro-batch has the most), whatever their order in the CSV.
TEST_F(DistributedTest, TheCostliestPointsStartFirst) {
  const Result r = run(
      "sweep --model gpt-tiny --cluster local-cpu --strategy tiny-dp2 "
      "--vary strategy.micro_batch_size=4,1,2 --jobs 1 --out " + path("out"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rows = timing(path("out"));
  ASSERT_EQ(rows.size(), 3u);
  const double mbs4 = std::stod(rows[0][3]), mbs1 = std::stod(rows[1][3]),
               mbs2 = std::stod(rows[2][3]);
  EXPECT_LT(mbs1, mbs2);
  EXPECT_LT(mbs2, mbs4);
  for (const auto& row : rows) EXPECT_EQ(row[1], "0");
}

TEST_F(DistributedTest, ASearchOverTwoRanksRanksAsOneProcessDoes) {
  const std::string search =
      "search --model gpt3-6.7b --cluster dgx-a100-128n --gpus 8 --global-batch 32 --top 4 "
      "--quiet --out ";
  const Result one = run(search + path("one"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const Result two = mpirun(2, search + path("two") + " --jobs 1");
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_EQ(read(path("two/ranking.csv")), read(path("one/ranking.csv")));
  for (const char* best : {"best/01.json", "best/04.json"}) {
    EXPECT_EQ(read(path(std::string("two/") + best)), read(path(std::string("one/") + best)));
  }
  EXPECT_EQ(timing(path("two")).size(), 4u);
}

// Rank 1 stops itself (SIGSTOP) when its first point arrives: after --rank-timeout rank 0
// declares it lost, runs the point itself, writes everything and ends the world.
TEST_F(DistributedTest, AStoppedRankLosesOnlyItsPoint) {
  const Result one = run(std::string(kSweep) + " --out " + path("one"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const Result two =
      mpirun(2, std::string(kSweep) + " --jobs 1 --rank-timeout 2 --out " + path("two"),
             "STRATA_TEST_FARM_HANG_RANK=1", "-x STRATA_TEST_FARM_HANG_RANK");
  EXPECT_NE(two.err.find("rank 1 was lost (no message for 2 s: it died or hangs)"),
            std::string::npos)
      << two.err;
  EXPECT_EQ(read(path("two/sweep.csv")), read(path("one/sweep.csv")));
  const auto rows = timing(path("two"));
  ASSERT_EQ(rows.size(), 8u);
  int retried = 0;
  for (const auto& row : rows) {
    EXPECT_EQ(row[1], "0");  // rank 1 finished nothing
    retried += row[2] == "2" ? 1 : 0;
  }
  EXPECT_EQ(retried, 1);
}

// Rank 2 of three dies (SIGKILL) at its first point; with Open MPI's --enable-recovery the job
// goes on, and the point runs again on another rank.
TEST_F(DistributedTest, ADeadRankLosesOnlyItsPoint) {
  const Result one = run(std::string(kSweep) + " --out " + path("one"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const Result three =
      mpirun(3, std::string(kSweep) + " --jobs 1 --rank-timeout 3 --out " + path("three"),
             "STRATA_TEST_FARM_KILL_RANK=2", "-x STRATA_TEST_FARM_KILL_RANK --enable-recovery");
  EXPECT_NE(three.err.find("rank 2 was lost"), std::string::npos) << three.err;
  EXPECT_EQ(read(path("three/sweep.csv")), read(path("one/sweep.csv")));
  const auto rows = timing(path("three"));
  ASSERT_EQ(rows.size(), 8u);
  int retried = 0;
  for (const auto& row : rows) {
    EXPECT_NE(row[1], "2");
    retried += row[2] == "2" ? 1 : 0;
  }
  EXPECT_EQ(retried, 1);
}

// Rank 0 stops itself (SIGSTOP) after handing rank 1 its first point: rank 1 hears no heartbeat
// for --rank-timeout and ends the world with an error instead of waiting for rank 0 forever.
TEST_F(DistributedTest, ServingRanksEndTheWorldWhenRankZeroHangs) {
  const auto start = std::chrono::steady_clock::now();
  const Result two =
      mpirun(2, std::string(kSweep) + " --jobs 1 --rank-timeout 2 --out " + path("two"),
             "STRATA_TEST_FARM_HANG_RANK=0", "-x STRATA_TEST_FARM_HANG_RANK");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(two.exit_code, 0);
  EXPECT_NE(two.exit_code, 124) << "the 300 s timeout ended it: nobody noticed rank 0";
  EXPECT_LT(seconds, 120);
  EXPECT_NE(two.err.find("strata: rank 1: rank 0 sent nothing for 2 s (--rank-timeout): it "
                         "died or hangs, so this rank ends the world"),
            std::string::npos)
      << two.err;
}

// The simulations running when the world ends die with it instead of running on unseen: two
// points of the 1 T row of SC'21 (seconds each), rank 0 stopped after handing them out to
// itself and rank 1; once rank 1 has ended the world, none is left.
TEST_F(DistributedTest, TheRunningSimulationsEndWithTheWorld) {
  const std::string specs = std::string(STRATA_SOURCE_DIR) + "/experiments/megatron-sc21/specs/";
  const std::string tmp = path("tmp");
  fs::create_directories(tmp);
  const Result two = mpirun(
      2,
      "sweep --model " + specs + "row10-gpt-1008b.model.json --cluster dgx-a100-128n "
      "--strategy " + specs + "row10-gpt-1008b.strategy.json --nodes 384 "
      "--vary strategy.micro_batch_size=1,2 --jobs 1 --rank-timeout 1 --out " + path("two"),
      "TMPDIR=" + tmp + " STRATA_TEST_FARM_HANG_RANK=0",
      "-x TMPDIR -x STRATA_TEST_FARM_HANG_RANK");
  EXPECT_NE(two.err.find("rank 0 sent nothing for 1 s"), std::string::npos) << two.err;
  // Open MPI kills each rank's process group, and each child also gets SIGTERM with its rank.
  EXPECT_EQ(wait_for_simulations(true, 5), "") << "simulations left running";
}

// Rank 0 dies (SIGKILL) with --enable-recovery, which keeps the others alive: they notice.
TEST_F(DistributedTest, ServingRanksEndTheWorldWhenRankZeroDies) {
  const Result three =
      mpirun(3, std::string(kSweep) + " --jobs 1 --rank-timeout 2 --out " + path("three"),
             "STRATA_TEST_FARM_KILL_RANK=0", "-x STRATA_TEST_FARM_KILL_RANK --enable-recovery");
  EXPECT_NE(three.exit_code, 124) << "the 300 s timeout ended it: nobody noticed rank 0";
  EXPECT_NE(three.err.find(": rank 0 sent nothing for 2 s (--rank-timeout)"), std::string::npos)
      << three.err;
}

}  // namespace
}  // namespace strata::testing
