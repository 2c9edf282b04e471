// End-to-end tests of what `strata` promises about its files and its faults: an output that is
// an input or another output is refused before any work; the outputs of one command are written
// all or none; `strata run` checks its paths before training, checksums and checks its
// checkpoints on resume, keeps the last N, stops at a non-finite loss with exit 4; SIGTERM
// and SIGINT print what was interrupted (cli/README.md "Outputs and faults").
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

#include "tests/cli/strata_test.hpp"
namespace fs = std::filesystem;

namespace {

using strata::testing::Result;

class Outputs : public strata::testing::StrataTest {
 protected:
  // strata with `args` (shell syntax) and `env` before it, from within dir_.
  Result run(const std::string& args, const std::string& env = "") const {
    return StrataTest::run(args, env, /*in_dir=*/true);
  }
  // Names in dir_ that look like OutputFiles' temporaries.
  std::vector<std::string> temporaries() const {
    std::vector<std::string> found;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) {
      if (e.path().filename().string().find(".strata-") != std::string::npos) {
        found.push_back(e.path().string());
      }
    }
    return found;
  }
};

const std::string kTiny = "--model gpt-tiny --cluster local-cpu --strategy tiny-dp2 --gpus 2 ";
const std::string kRun = "run --model gpt-tiny --strategy tiny-1rank ";

// An output on an input's path, however it is spelled (./, a symlink), is refused before any
// work, naming both flags and the path; the input is left as it was.
TEST_F(Outputs, AnOutputOnAnInputsPathIsRefusedNamingBothFlags) {
  const std::string strategy =
      read(std::string(STRATA_SOURCE_DIR) + "/configs/strategies/tiny-dp2.json");
  write("s.json", strategy);
  const std::string specs = "--model gpt-tiny --cluster local-cpu --strategy s.json --gpus 2 ";
  Result r = run("simulate " + specs + "--json ./s.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--json = ./s.json: the same file as the input --strategy = s.json"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.out, "") << "the simulation ran";
  fs::create_symlink(dir_ / "s.json", dir_ / "link.json");
  r = run("simulate " + specs + "--trace link.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--trace = link.json: the same file as the input --strategy"),
            std::string::npos)
      << r.err;
  r = run("plan " + specs + "--out " + (dir_ / "x" / ".." / "s.json").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--out = "), std::string::npos) << r.err;
  EXPECT_EQ(read(dir_ / "s.json"), strategy);
  // compare's positional inputs.
  ASSERT_EQ(run("simulate " + kTiny + "--trace a.json").exit_code, 0);
  const std::string trace = read(dir_ / "a.json");
  r = run("compare a.json a.json --csv ./a.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--csv = ./a.json: the same file as the input PREDICTED = a.json"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(read(dir_ / "a.json"), trace);
}

TEST_F(Outputs, TwoOutputsOnOnePathAreRefused) {
  Result r = run("simulate " + kTiny + "--trace t.json --json ./t.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--json = ./t.json: the same path as --trace = t.json"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "t.json"));
  r = run("plan " + kTiny + "--out - --json -");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("(both to stdout)"), std::string::npos) << r.err;
}

// The second output's directory is a regular file (which fails for root too): refused before
// any work; the first output's existing file is untouched and nothing else is left.
TEST_F(Outputs, AnUnwritableSecondOutputLeavesNeither) {
  write("trace.json", "old trace\n");
  write("file", "a regular file\n");
  const Result r = run("simulate " + kTiny + "--trace trace.json --json file/report.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--json = file/report.json: cannot be written: its directory"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("is not a directory"), std::string::npos) << r.err;
  EXPECT_EQ(read(dir_ / "trace.json"), "old trace\n");
  EXPECT_TRUE(temporaries().empty());
}

// A write that fails after the work (a full disk, injected): exit 4, none of the outputs, the
// existing file at the first one's path untouched, no temporary left.
TEST_F(Outputs, AFailedWriteLeavesNoneOfTheOutputs) {
  write("trace.json", "old trace\n");
  Result r = run("simulate " + kTiny + "--trace trace.json --json report.json",
                 "STRATA_TEST_FAIL_OUTPUT=--json");
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("--json = report.json: writing it failed"), std::string::npos) << r.err;
  EXPECT_EQ(read(dir_ / "trace.json"), "old trace\n");
  EXPECT_FALSE(fs::exists(dir_ / "report.json"));
  EXPECT_TRUE(temporaries().empty());
  // The same command without the fault writes both.
  r = run("simulate " + kTiny + "--trace trace.json --json report.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(dir_ / "trace.json").rfind("{", 0), 0u);
  EXPECT_TRUE(fs::exists(dir_ / "report.json"));
  EXPECT_TRUE(temporaries().empty());
}

// validate's --out directory may not be one of its input files.
TEST_F(Outputs, ValidateRefusesAnOutputDirectoryThatIsAnInput) {
  write("profile.json", "{}");
  const Result r =
      run("validate --model gpt-tiny --strategy tiny-1rank --np 1 --profile profile.json "
          "--out ./profile.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--out = ./profile.json: the same path as the input --profile = "
                       "profile.json"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(read(dir_ / "profile.json"), "{}");
}

// `strata run` checks its outputs and checkpoint directory before the first step.
TEST_F(Outputs, RunChecksItsPathsBeforeTraining) {
  write("file", "x");
  Result r = run(kRun + "--steps 2 --json file/run.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--json = file/run.json: cannot be written"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("step    1"), std::string::npos) << r.out;
  r = run(kRun + "--steps 2 --save file/ck");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--save = file/ck: cannot be created"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("step    1"), std::string::npos) << r.out;
  r = run(kRun + "--steps 2 --data file --trace file");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--trace = file: the same file as the input --data = file"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(read(dir_ / "file"), "x");
}

// Every rank file's checksum is in the manifest and checked on resume: one flipped byte is an
// error naming the file.
TEST_F(Outputs, AFlippedByteInACheckpointIsAnErrorNamingTheFile) {
  ASSERT_EQ(run(kRun + "--steps 2 --save ck").exit_code, 0);
  const fs::path bin = dir_ / "ck" / "step-000002" / "rank-00000.bin";
  std::string bytes = read(bin);
  ASSERT_GT(bytes.size(), 1000u);
  ASSERT_EQ(run(kRun + "--steps 3 --resume ck").exit_code, 0);  // intact: resumes
  bytes[1000] = static_cast<char>(bytes[1000] ^ 0x10);
  std::ofstream(bin, std::ios::binary | std::ios::trunc) << bytes;
  const Result r = run(kRun + "--steps 3 --resume ck");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("ck/step-000002/rank-00000.bin is corrupt: its FNV-1a 64 checksum is"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.out.find("step    3"), std::string::npos) << r.out;
}

// Resuming with another seed is refused unless forced.
TEST_F(Outputs, ResumingWithAnotherSeedIsRefusedUnlessForced) {
  ASSERT_EQ(run(kRun + "--steps 2 --seed 7 --save ck").exit_code, 0);
  Result r = run(kRun + "--steps 3 --seed 8 --resume ck");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("written by a run with --seed 7, this run has --seed 8"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.out.find("step    3"), std::string::npos) << r.out;
  r = run(kRun + "--steps 3 --seed 8 --resume ck --force-resume");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("step    3"), std::string::npos) << r.out;
  // The same seed needs no force; --force-resume alone is a usage mistake.
  r = run(kRun + "--steps 3 --seed 7 --resume ck");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = run(kRun + "--steps 3 --force-resume");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--force-resume: needs --resume DIR"), std::string::npos) << r.err;
}

// --keep-last 2 keeps the two newest checkpoints.
TEST_F(Outputs, KeepLastKeepsTheNewestCheckpoints) {
  const Result r = run(kRun + "--steps 5 --save ck --save-every 1 --keep-last 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_ / "ck")) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"latest", "step-000004", "step-000005"}));
  EXPECT_EQ(read(dir_ / "ck" / "latest"), "step-000005\n");
  EXPECT_EQ(run(kRun + "--steps 5 --keep-last 2").exit_code, 1);  // needs --save
}

// An absurd learning rate makes the loss infinite or NaN within a few steps: the run stops at
// that step with exit 4, saying so; with --save-on-nan the state after it is kept aside.
TEST_F(Outputs, ANonFiniteLossStopsTheRunWithItsStep) {
  const Result r = run(kRun + "--steps 20 --lr 1e30 --save ck --save-every 1 --save-on-nan");
  EXPECT_EQ(r.exit_code, 4) << r.err;
  const auto at = r.err.find("strata run: error: step ");
  ASSERT_NE(at, std::string::npos) << r.err;
  const int step = std::atoi(r.err.c_str() + at + 24);
  ASSERT_GT(step, 0) << r.err;
  EXPECT_NE(r.err.find(" of 20: the loss is "), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("step " + std::to_string(step + 1)), std::string::npos) << r.out;
  char name[32];
  std::snprintf(name, sizeof name, "step-%06d-nonfinite", step);
  EXPECT_TRUE(fs::is_directory(dir_ / "ck" / name)) << r.err;
  if (step > 1) {
    std::snprintf(name, sizeof name, "step-%06d\n", step - 1);
    EXPECT_EQ(read(dir_ / "ck" / "latest"), name);
  }
}

// Starts strata (argv) with stdout and stderr in files, returning its pid.
pid_t spawn(const std::vector<std::string>& args, const fs::path& out, const fs::path& err) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> argv;
  std::string exe = STRATA_EXE;
  argv.push_back(exe.data());
  std::vector<std::string> copy = args;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  posix_spawn(&pid, STRATA_EXE, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

// Waits (up to a minute) until `file` contains `text`.
bool wait_for(const fs::path& file, const std::string& text) {
  for (int i = 0; i < 600; ++i) {
    std::ifstream in(file);
    if (std::string(std::istreambuf_iterator<char>(in), {}).find(text) != std::string::npos) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

int signal_and_wait(pid_t pid, int sig) {
  ::kill(pid, sig);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// SIGTERM during `strata run`: one line with the step and the latest checkpoint, exit 143.
TEST_F(Outputs, SigtermDuringRunSaysTheStepAndTheLatestCheckpoint) {
  const fs::path out = dir_ / "stdout", err = dir_ / "stderr", ck = dir_ / "ck";
  const pid_t pid =
      spawn({"run", "--model", "gpt-tiny", "--strategy", "tiny-1rank", "--steps", "100000",
             "--save", ck.string(), "--save-every", "2", "--json", (dir_ / "run.json").string()},
            out, err);
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(wait_for(out, "step    3")) << read(out) << read(err);
  EXPECT_EQ(signal_and_wait(pid, SIGTERM), 128 + SIGTERM);
  const std::string e = read(err);
  EXPECT_NE(e.find("strata run: interrupted (SIGTERM) during step "), std::string::npos) << e;
  EXPECT_NE(e.find(" of 100000; latest checkpoint: " + ck.string() + "/step-0000"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("(continue with --resume " + ck.string() + ")"), std::string::npos) << e;
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
  EXPECT_FALSE(fs::exists(dir_ / "run.json"));
}

// SIGINT during `strata simulate` (SimGrid installs its own SIGINT handler, which must not take
// it): one line naming the phase, exit 130; no output, no temporary.
TEST_F(Outputs, SigintDuringSimulateSaysWhatWasInterrupted) {
  const fs::path out = dir_ / "stdout", err = dir_ / "stderr";
  const pid_t pid =
      spawn({"simulate", "--model", "gpt3-175b", "--cluster", "dgx-a100-128n", "--strategy",
             "gpt3-175b-tp8-pp8-dp16", "--exact", "--trace", (dir_ / "trace.json").string(),
             "--json", (dir_ / "report.json").string()},
            out, err);
  ASSERT_GT(pid, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(signal_and_wait(pid, SIGINT), 128 + SIGINT) << read(err);
  const std::string e = read(err);
  EXPECT_EQ(e.rfind("strata simulate: interrupted (SIGINT) while ", 0), 0u) << e;
  EXPECT_NE(e.find("; no output was written\n"), std::string::npos) << e;
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
  EXPECT_FALSE(fs::exists(dir_ / "report.json"));
  EXPECT_FALSE(fs::exists(dir_ / "trace.json"));
  EXPECT_TRUE(temporaries().empty());
}

}  // namespace
