// FedAvg executed for real (executor/fedavg.hpp) against its single-process reference: the sites
// as groups of MPI ranks (fedavg_mpi_check run, under mpirun) and the sites one after another in
// one process (fedavg_mpi_check reference; with 2 ranks per site, the 2 ranks of one site) give
// the same per-round losses and final parameters within 1e-6, with 1 and 2 ranks per site, a
// site left out of a round, secure aggregation and DP noise.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#ifdef STRATA_FEDAVG_CHECK
namespace {

namespace fs = std::filesystem;

struct Output {
  std::vector<std::string> participants;    // per round, as written
  std::vector<std::vector<double>> losses;  // per round and site, the K losses in a row
  std::vector<double> dp_norms;             // before and after the clip, per participant
  std::vector<double> params;
};

Output read_output(const fs::path& file) {
  Output o;
  std::ifstream in(file);
  EXPECT_TRUE(in.good()) << file;
  for (std::string line; std::getline(in, line);) {
    std::istringstream s(line);
    std::string word;
    s >> word;
    if (word == "round") {
      o.participants.push_back(line);
    } else if (word == "losses") {
      int site = 0;
      s >> site;
      o.losses.emplace_back();
      for (double x; s >> x;) o.losses.back().push_back(x);
    } else if (word == "dp") {
      for (double x; s >> x;) o.dp_norms.push_back(x);
    } else if (word == "params") {
      std::size_t n = 0;
      s >> n;
      o.params.resize(n);
      for (double& p : o.params) in >> p;
    }
  }
  return o;
}

// Runs fedavg_mpi_check `mode` on `ranks` processes (1: without mpirun) into a fresh folder.
fs::path run_check(const std::string& mode, int ranks, const std::string& args) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);  // CI runs as root
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const fs::path out =
      fs::temp_directory_path() / ("strata-fedavg-" + std::to_string(::getpid()) + "-" + mode);
  fs::remove_all(out);
  fs::create_directories(out);
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string launcher = ranks == 1 ? std::string()
                                          : std::string(STRATA_MPIEXEC) + " --oversubscribe -np " +
                                                std::to_string(ranks) + " ";
  const std::string cmd = "ASAN_OPTIONS=" + std::string(asan ? asan : "") +
                          ":detect_leaks=0 timeout 300 " + launcher + STRATA_FEDAVG_CHECK + " " +
                          mode + " " + args + " " + out.string() + " >" +
                          (out / "log.txt").string() + " 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream log(out / "log.txt");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << cmd << "\n"
      << std::string(std::istreambuf_iterator<char>(log), {});
  return out;
}

double max_difference(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

// `sites` x `ranks` federated against the reference on `ranks`; returns the reference's output
// of rank 0. Every site's every rank: the same rounds, losses and parameters within 1e-6.
Output expect_equal_to_reference(const std::string& strategy, int sites, int ranks,
                                 const std::string& schedule, const std::string& flags) {
  const std::string args = strategy + " " + std::to_string(sites) + " 3 " + schedule + " " + flags;
  const fs::path fed = run_check("run", sites * ranks, args);
  const fs::path ref = run_check("reference", ranks, args);
  Output first;
  double loss_diff = 0, param_diff = 0;
  for (int p = 0; p < ranks; ++p) {
    const Output want = read_output(ref / ("site-0-rank-" + std::to_string(p) + ".txt"));
    if (p == 0) first = want;
    EXPECT_EQ(want.participants.size(), 3u);
    EXPECT_FALSE(want.params.empty());
    for (int s = 0; s < sites; ++s) {
      const Output got =
          read_output(fed / ("site-" + std::to_string(s) + "-rank-" + std::to_string(p) + ".txt"));
      EXPECT_EQ(got.participants, want.participants) << "site " << s << " rank " << p;
      EXPECT_EQ(got.losses.size(), want.losses.size());
      if (got.losses.size() != want.losses.size()) continue;
      for (std::size_t i = 0; i < want.losses.size(); ++i) {
        loss_diff = std::max(loss_diff, max_difference(got.losses[i], want.losses[i]));
      }
      EXPECT_LE(max_difference(got.dp_norms, want.dp_norms), 1e-6);
      param_diff = std::max(param_diff, max_difference(got.params, want.params));
    }
  }
  EXPECT_LE(loss_diff, 1e-6);
  EXPECT_LE(param_diff, 1e-6);
  std::printf(
      "%s, %d sites x %d ranks, rounds %s, %s: max |loss difference| %.3g, max "
      "|parameter difference| %.3g; site 0's first loss %.6f, last %.6f\n",
      strategy.c_str(), sites, ranks, schedule.c_str(), flags.c_str(), loss_diff, param_diff,
      first.losses.front().front(), first.losses[first.losses.size() - sites].back());
  fs::remove_all(fed);
  fs::remove_all(ref);
  return first;
}

TEST(FedAvgMpi, TwoSitesOfOneRankEqualTheSingleProcessReference) {
  const Output o = expect_equal_to_reference("tiny-1rank", 2, 1, "0,1", "plain");
  // Each site trains on its own data: the first step's losses differ (same model, other samples).
  ASSERT_EQ(o.losses.size(), 6u);
  EXPECT_NE(o.losses[0][0], o.losses[1][0]);
  // FedAvg learns: the last round's losses are below the first's.
  EXPECT_LT(o.losses[4][1], o.losses[0][0] - 0.1);
}

TEST(FedAvgMpi, TwoSitesOfTwoRanksEqualTheReference) {
  expect_equal_to_reference("tiny-dp2", 2, 2, "0,1", "plain");
}

TEST(FedAvgMpi, ThreeSitesWithOneLeftOutOfARoundEqualTheReference) {
  const Output o = expect_equal_to_reference("tiny-1rank", 3, 1, "0,1,2/0,2/0,1,2", "plain");
  ASSERT_EQ(o.participants.size(), 3u);
  EXPECT_NE(o.participants[1].find("participants 0 2 bytes"), std::string::npos)
      << o.participants[1];
}

TEST(FedAvgMpi, SecureAggregationAndDpNoiseEqualTheReference) {
  const Output o = expect_equal_to_reference("tiny-1rank", 2, 1, "0,1", "secure+dp");
  // The clip acted: every update's norm was above 0.05 and is 0.05 after it.
  ASSERT_EQ(o.dp_norms.size(), 12u);
  for (std::size_t i = 0; i < o.dp_norms.size(); i += 2) {
    EXPECT_GT(o.dp_norms[i], 0.05);
    EXPECT_NEAR(o.dp_norms[i + 1], 0.05, 1e-6);
  }
}

}  // namespace
#endif
