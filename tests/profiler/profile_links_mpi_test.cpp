// `mpirun -np N strata profile links`: a links.json that profiler::read_link_profile accepts,
// with the curves of the executor's MPI layer over the expected groups, the local-cpu cluster's
// device and fabric, and positive times (never their values: a test asserts no timing); options
// that make no curve refused once, by rank 0, with nothing written. Sizes up to 4 MiB and 10
// calls per size keep one stalled call on a shared machine from flattening a curve (which would
// leave it out).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "profiler/profile.hpp"

namespace fs = std::filesystem;

namespace strata::profiler {
namespace {

struct Result {
  int exit_code = -1;
  std::string out, err;
};

class ProfileLinksMpi : public ::testing::Test {
 protected:
  void SetUp() override {
    // CI runs as root; Open MPI refuses that without these two variables.
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    dir_ = fs::temp_directory_path() /
           ("strata-links-mpi-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // `mpirun -np N strata profile links ARGS`, bounded by `timeout` so that a hang fails. Leak
  // checking is off for the ranks, as in executor_mpi_test.cpp (Open MPI's own allocations).
  Result run(int ranks, const std::string& args) {
    const fs::path out = dir_ / "stdout", err = dir_ / "stderr";
    const char* asan = std::getenv("ASAN_OPTIONS");
    const std::string cmd = "ASAN_OPTIONS=" + std::string(asan ? asan : "") +
                            ":detect_leaks=0 timeout 300 " + STRATA_MPIEXEC +
                            " --oversubscribe -np " + std::to_string(ranks) + " " + STRATA_EXE +
                            " profile links " + args + " >" + out.string() + " 2>" + err.string();
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read(out), read(err)};
  }
  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// The curves of a world of `n` ranks (groups of 2 and n) in the order measured.
std::vector<std::pair<LinkCollective, int>> expected_curves(int n) {
  std::vector<std::pair<LinkCollective, int>> curves;
  for (LinkCollective c :
       {LinkCollective::kAllReduce, LinkCollective::kAllGather, LinkCollective::kReduceScatter,
        LinkCollective::kAllToAll, LinkCollective::kBroadcast}) {
    curves.emplace_back(c, 2);
    if (n > 2) curves.emplace_back(c, n);
  }
  curves.emplace_back(LinkCollective::kSendRecv, 2);
  return curves;
}

// The expected curves in order; a curve the tool left out (its times did not grow with the size:
// timing noise on an oversubscribed machine, as under the sanitizers) must be named by its
// warning on stderr, and at least one curve is there.
void expect_valid_curves(const LinkProfile& p, int ranks, const std::string& err) {
  EXPECT_EQ(p.backend, "mpi");
  EXPECT_EQ(p.on.device_kind, "cpu");
  EXPECT_NE(p.on.device.find("Xeon"), std::string::npos) << p.on.device;  // local-cpu's gpu.name
  EXPECT_FALSE(p.on.libraries.at("mpi").empty());
  ASSERT_FALSE(p.curves.empty());
  std::size_t next = 0;
  for (const auto& [collective, n] : expected_curves(ranks)) {
    if (next == p.curves.size() || p.curves[next].collective != collective ||
        p.curves[next].ranks != n) {
      const std::string left_out =
          std::string(link_collective_name(collective)) + " " + std::to_string(n) + " ranks left out";
      EXPECT_NE(err.find(left_out), std::string::npos) << "missing without a warning: " << left_out;
      continue;
    }
    const LinkCurve& c = p.curves[next++];
    EXPECT_EQ(c.fabric, "shared");  // every rank on this host: local-cpu's intra_node fabric
    EXPECT_GE(c.points.size(), 2u);
    EXPECT_LE(c.points.back().bytes, 4 << 20);
    for (const LinkPoint& x : c.points) EXPECT_GT(x.time_s, 0) << link_collective_name(collective);
    EXPECT_GT(c.fit.busbw_Bps, 0) << link_collective_name(collective);
  }
  EXPECT_EQ(next, p.curves.size()) << "curves beyond the expected ones";
}

TEST_F(ProfileLinksMpi, TwoRanksWriteAValidLinksJson) {
  const std::string links = path("links.json");
  const Result r = run(2, "--max-bytes 4M --factor 4 --iters 10 --warmup 2 --out " + links);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  expect_valid_curves(read_link_profile(links), 2, r.err);
  // Rank 0 reports progress on stderr and the summary on stdout, once.
  EXPECT_NE(r.err.find("links: all_reduce 2 ranks, 8 bytes (1 of 66)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("links: send_recv 2 ranks, 4194304 bytes (66 of 66)"), std::string::npos)
      << r.err;
  // The all-to-all and broadcast were measured to the largest size and their checks passed (a
  // wrong result exits 70); their curves are in the file unless left out with a warning.
  EXPECT_NE(r.err.find("links: all_to_all 2 ranks, 4194304 bytes"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("links: broadcast 2 ranks, 4194304 bytes"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find(" curves (mpi)"), r.out.rfind(" curves (mpi)")) << r.out;
  EXPECT_FALSE(fs::exists(links + ".tmp-strata"));
}

TEST_F(ProfileLinksMpi, ThreeRanksMeasureTheSubgroupOfTwoAndTheWorld) {
  const std::string links = path("links.json");
  const Result r =
      run(3, "--cluster local-cpu --max-bytes 4M --factor 4 --iters 10 --warmup 2 --out " + links);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  expect_valid_curves(read_link_profile(links), 3, r.err);
  // Over 3 ranks an all-to-all moves whole floats per member: 4 MiB rounded down to 12 bytes.
  EXPECT_NE(r.err.find("links: all_to_all 3 ranks, 4194300 bytes"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("links: broadcast 3 ranks, 4194304 bytes"), std::string::npos) << r.err;
}

TEST_F(ProfileLinksMpi, OptionsThatMakeNoCurveAreRefusedOnceAndWriteNothing) {
  const std::string links = path("links.json");
  const Result r = run(2, "--max-bytes 8 --out " + links);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const std::string message =
      "strata profile: error: --max-bytes = 8: with 2 ranks a curve needs two sizes of at least "
      "one float per rank; use --max-bytes 16 or more";
  EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(message), r.err.rfind(message)) << r.err;
  EXPECT_FALSE(fs::exists(links));
}

}  // namespace
}  // namespace strata::profiler
