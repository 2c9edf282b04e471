// `strata profile links` without mpirun: the nccl-tests import end to end (a links.json that
// profiler::read_link_profile accepts, a bad row naming file and line with nothing written), the
// help, the flags of one mode refused in the other, measuring refused outside mpirun, and the
// NCCL backend refused where it cannot run.
// Measuring under mpirun: tests/profiler/profile_links_mpi_test.cpp.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "executor/comm.hpp"
#include "kernels/backend.hpp"
#include "profiler/profile.hpp"

namespace fs = std::filesystem;

namespace {

// all_reduce_perf over 4 GPUs of one host, newer layout.
const char* const kOutput = R"(# nccl-tests version 2.17.6 nccl-headers=22807 nccl-library=22807
# Collective test starting: all_reduce_perf
# nThread 1 nGpus 4 minBytes 1024 maxBytes 1048576 step: 32(factor) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0
# Using devices
#  Rank  0 Group  0 Pid 900 on gpu-box device  0 [0000:1b:00] NVIDIA H100 80GB HBM3
#  Rank  1 Group  0 Pid 900 on gpu-box device  1 [0000:43:00] NVIDIA H100 80GB HBM3
#  Rank  2 Group  0 Pid 900 on gpu-box device  2 [0000:52:00] NVIDIA H100 80GB HBM3
#  Rank  3 Group  0 Pid 900 on gpu-box device  3 [0000:61:00] NVIDIA H100 80GB HBM3
#
#                                                              out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
        1024           256     float     sum      -1    10.02    0.10    0.15      0    10.50    0.10    0.15      0
       32768          8192     float     sum      -1    10.49    3.12    4.69      0    11.00    2.98    4.47      0
     1048576        262144     float     sum      -1    25.73   40.75   61.13      0    26.90   38.98   58.47      0
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 21.99
)";

struct Result {
  int exit_code = -1;
  std::string out, err;
};

class ProfileLinksCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("strata-links-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // `strata profile links <args>`, capturing stdout, stderr and the exit code.
  Result run(const std::string& args) {
    const fs::path out = dir_ / "stdout", err = dir_ / "stderr";
    const std::string cmd =
        std::string(STRATA_EXE) + " " + args + " >" + out.string() + " 2>" + err.string();
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read(out), read(err)};
  }
  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name) << content;
    return (dir_ / name).string();
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

TEST_F(ProfileLinksCli, ImportWritesALinksJsonTheReaderAccepts) {
  const std::string input = write("ar.txt", kOutput), links = path("links.json");
  const Result r = run("profile links --import " + input + " --fabric nvswitch --out " + links);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("1 curves (nccl-tests) on 'NVIDIA H100 80GB HBM3'"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("all_reduce"), std::string::npos) << r.out;
  const strata::profiler::LinkProfile p = strata::profiler::read_link_profile(links);
  EXPECT_EQ(p.backend, "nccl-tests");
  EXPECT_EQ(p.on.device, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(p.on.host, "gpu-box");
  EXPECT_EQ(p.on.libraries.at("nccl"), "2.28.7");
  ASSERT_EQ(p.curves.size(), 1u);
  EXPECT_EQ(p.curves[0].collective, strata::profiler::LinkCollective::kAllReduce);
  EXPECT_EQ(p.curves[0].ranks, 4);
  EXPECT_EQ(p.curves[0].fabric, "nvswitch");
  ASSERT_EQ(p.curves[0].points.size(), 3u);
  EXPECT_DOUBLE_EQ(p.curves[0].points[2].bytes, 1048576);
  EXPECT_DOUBLE_EQ(p.curves[0].points[2].time_s, 25.73e-6);
  EXPECT_FALSE(fs::exists(links + ".tmp-strata"));
  // --device names the device; '-' writes to stdout, without the summary.
  const Result s =
      run("profile links --import=" + input + " --fabric nvswitch --device H100 --out -");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(strata::json::parse(s.out, "stdout")["measured_on"]["device"], "H100");
}

TEST_F(ProfileLinksCli, ABadRowExitsOneNamingFileLineAndRuleAndWritesNothing) {
  const std::string bad = std::string(kOutput) + "   2097152   524288   float   sum   -1\n";
  const std::string input = write("bad.txt", bad), links = path("links.json");
  const Result r = run("profile links --import " + input + " --fabric nvswitch --out " + links);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("strata profile: error: " + input +
                       ": line 18: '2097152   524288   float   sum   -1': expected at least 8 "
                       "columns (size count type redop root time algbw busbw, as the header of "
                       "line 11 says), found 5"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(links));
  // A run on one host without --fabric, and a file that is not there.
  const Result f = run("profile links --import " + write("ar.txt", kOutput) + " --out " + links);
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_NE(f.err.find("pass --fabric"), std::string::npos) << f.err;
  const Result m = run("profile links --import " + path("none.txt") + " --out " + links);
  EXPECT_EQ(m.exit_code, 1);
  EXPECT_NE(m.err.find("none.txt"), std::string::npos) << m.err;
  EXPECT_FALSE(fs::exists(links));
}

TEST_F(ProfileLinksCli, HelpAndUsageErrors) {
  for (const char* args : {"profile links --help", "help profile links"}) {
    const Result h = run(args);
    EXPECT_EQ(h.exit_code, 0) << args;
    for (const char* flag : {"--import", "--fabric", "--device", "--cluster", "--max-bytes",
                             "--iters", "--warmup", "--out", "mpirun -np"}) {
      EXPECT_NE(h.out.find(flag), std::string::npos) << args << ": " << flag;
    }
  }
  EXPECT_NE(run("--help").out.find("profile links"), std::string::npos);
  const std::string input = write("ar.txt", kOutput), links = path("links.json");
  const auto error_of = [&](const std::string& args) {
    const Result r = run("profile links " + args);
    EXPECT_EQ(r.exit_code, 1) << args;
    return r.err;
  };
  // A required option missing is a usage error (exit 2); the rest are invalid values (exit 1).
  const Result usage = run("profile links --import " + input);
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.err.find("--out: required option is missing"), std::string::npos) << usage.err;
  EXPECT_NE(error_of("--import " + input + " --iters 3 --out " + links)
                .find("--iters: only when measuring under mpirun, not with --import"),
            std::string::npos);
  EXPECT_NE(error_of("--fabric nvswitch --out " + links)
                .find("--fabric: only with --import (measuring takes the fabric and the device "
                      "from --cluster)"),
            std::string::npos);
  EXPECT_NE(error_of("--import " + input + " --ranks 0 --out " + links)
                .find("--ranks = 0: must be a positive integer"),
            std::string::npos);
  EXPECT_NE(error_of("--max-bytes 16X --out " + links)
                .find("--max-bytes = 16X: must be a positive number of bytes (e.g. 4096, 64K, "
                      "16M, 1G)"),
            std::string::npos);
  EXPECT_NE(
      error_of("--warmup -1 --out " + links).find("--warmup = -1: must be a whole number >= 0"),
      std::string::npos);
  EXPECT_NE(error_of("--cluster no-such-cluster --out " + links).find("no-such-cluster"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(links));
}

TEST_F(ProfileLinksCli, MeasuringOutsideMpirunSaysHowToRunIt) {
  const std::string links = path("links.json");
  const Result r = run("profile links --max-bytes 64K --out " + links);
  EXPECT_EQ(r.exit_code, 1);
  // An MPI build asks for mpirun; a build without MPI says it needs one, and mpirun.
  EXPECT_NE(r.err.find("mpirun"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(links));
}

// --backend: mpi or nccl, measuring only; nccl is refused before MPI starts where it cannot run
// (no NCCL backend in the build, no libnccl.so.2, no CUDA device), naming why.
TEST_F(ProfileLinksCli, TheNcclBackendIsRefusedWhereItCannotRun) {
  const std::string links = path("links.json");
  const Result bad = run("profile links --backend gloo --out " + links);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("--backend = gloo: must be mpi or nccl"), std::string::npos) << bad.err;
  const Result with_import =
      run("profile links --import " + write("ar.txt", kOutput) + " --backend nccl --out " + links);
  EXPECT_EQ(with_import.exit_code, 1);
  EXPECT_NE(with_import.err.find("--backend: only when measuring under mpirun"), std::string::npos)
      << with_import.err;
  const Result nccl = run("profile links --backend nccl --out " + links);
  EXPECT_EQ(nccl.exit_code, 1);
  if (!strata::exec::nccl_unavailable_reason().empty() ||
      strata::kernels::cuda_device_count() == 0) {
    EXPECT_NE(nccl.err.find("--backend nccl: "), std::string::npos) << nccl.err;
  } else {  // a GPU with NCCL: outside mpirun there is one rank, and nothing to measure
    EXPECT_NE(nccl.err.find("mpirun"), std::string::npos) << nccl.err;
  }
  EXPECT_FALSE(fs::exists(links));
}

}  // namespace
