// The exit-code table (strata --help, cli/README.md), command by command: every code a command
// can return, with the message that goes with it; and the hostile inputs of issue 16 (a
// 100,000-deep array, a peak of 1e-300 FLOP/s, 1e999, a directory or FIFO as a spec), each
// refused with a clear error and exit 1. docs/robustness.md lists them.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/json.hpp"
#include "kernels/backend.hpp"

#include "tests/cli/strata_test.hpp"
namespace fs = std::filesystem;

namespace {

using strata::testing::Result;

class ExitCodes : public strata::testing::StrataTest {
 protected:
  // The bundled local-cpu cluster with one field replaced.
  std::string cluster_with(const std::string& key, const std::string& sub, double value) {
    strata::json::Json c = strata::json::parse_file(std::string(STRATA_SOURCE_DIR) +
                                                    "/configs/clusters/local-cpu.json");
    if (sub.empty()) {
      c[key] = value;
    } else {
      c[key][sub] = value;
    }
    return write("cluster.json", c.dump());
  }
  // Expects `code`, and `message` on stderr.
  void expect(const Result& r, int code, const std::string& message, const std::string& what) {
    EXPECT_EQ(r.exit_code, code) << what << "\n" << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << what << "\n" << r.err;
  }
};

const std::string kTiny = " --model gpt-tiny --cluster local-cpu --strategy tiny-1rank --gpus 1";
// GPT-3 175B with pure data parallelism on 8 GPUs cannot fit 80 GiB per GPU.
const std::string kTooBig = R"({"name": "dp8", "dp": 8, "micro_batch_size": 1,
  "global_batch_size": 8})";

TEST_F(ExitCodes, TheTableIsInEveryHelp) {
  const Result top = run("--help");
  EXPECT_EQ(top.exit_code, 0);
  for (const char* line : {"0   success", "1   invalid input", "2   usage error",
                           "3   does not fit", "4   runtime failure", "70  internal error"}) {
    EXPECT_NE(top.out.find(line), std::string::npos) << line;
  }
  for (const char* command :
       {"plan", "simulate", "run", "compare", "profile ops", "profile links", "validate"}) {
    const Result r = run(std::string(command) + " --help");
    EXPECT_EQ(r.exit_code, 0) << command;
    EXPECT_NE(r.out.find("Exit codes: 0 success, 1 invalid input, 2 usage error, 3 does not fit "
                         "in memory, 4 runtime\nfailure, 70 internal error"),
              std::string::npos)
        << command;
  }
}

TEST_F(ExitCodes, Plan) {
  expect(run("plan" + kTiny), 0, "", "fits");
  expect(run("plan --model gpt-tiny --cluster local-cpu --strategy tiny-1rank --gpus 0"), 1,
         "--gpus = 0: must be a positive integer", "a flag's value");
  expect(run("plan" + kTiny + " --frobnicate"), 2, "usage error: --frobnicate: unknown option",
         "unknown option");
  expect(run("plan --model gpt-tiny --cluster local-cpu"), 2,
         "--strategy: required option is missing", "missing option");
  expect(run("plan --model gpt-tiny --cluster local-cpu --strategy"), 2,
         "--strategy: missing value", "missing value");
  expect(run("plan --model gpt3-175b --cluster dgx-a100-128n --gpus 8 --strategy " +
             write("dp8.json", kTooBig)),
         3, "rank 0", "does not fit");
  expect(run("plan" + kTiny, "STRATA_TEST_INTERNAL_ERROR=1"), 70,
         "strata plan: internal error (a bug in Strata; please report it", "internal error");
}

// Mixture-of-experts models are validated (model and strategy), planned, simulated and run;
// what is not lowered with them is refused by name.
TEST_F(ExitCodes, MixtureOfExpertsIsPlannedSimulatedAndRun) {
  const std::string mixtral =
      " --model mixtral-8x7b --cluster dgx-h100-128n --gpus 64 --strategy "
      "mixtral-8x7b-tp2-pp4-dp8-ep8";
  expect(run("plan" + mixtral), 0, "", "plan");
  expect(run("simulate --quiet" + mixtral), 0, "", "simulate");
  expect(run("plan" + mixtral + " --set strategy.ep=16"), 1,
         "strategy.ep = 16: must divide dp x cp (8 x 1)", "validation comes first");
  expect(run("plan" + mixtral + " --set strategy.zero_stage=3"), 1,
         "strategy.zero_stage = 3: ZeRO-3 with a mixture-of-experts model is not lowered yet",
         "what is not lowered is refused by name");
  expect(run("plan --model mixtral-8x7b-hf-config --cluster dgx-h100-128n --gpus 64 --strategy "
             "mixtral-8x7b-tp2-pp4-dp8-ep8"),
         0, "", "a Hugging Face config");
  // A tiny MoE model on this machine: run trains it.
  strata::json::Json moe =
      strata::json::parse_file(std::string(STRATA_SOURCE_DIR) + "/configs/models/gpt-tiny.json");
  moe["num_experts"] = 8;
  moe["num_experts_per_tok"] = 2;
  moe["moe_intermediate_size"] = 16;
  const std::string model = write("moe.json", moe.dump());
  expect(run("run --model " + model + " --strategy tiny-1rank --steps 1"), 0, "", "run");
  moe["n_shared_experts"] = 2;
  const std::string shared = write("moe-shared.json", moe.dump());
  expect(run("plan --model " + shared + " --cluster local-cpu --gpus 1 --strategy tiny-1rank"),
         0, "", "shared experts are planned");
  expect(run("run --model " + shared + " --strategy tiny-1rank --steps 1"), 0, "", "and run");
}

TEST_F(ExitCodes, Simulate) {
  expect(run("simulate" + kTiny), 0, "", "simulates");
  expect(run("simulate" + kTiny + " --straggler 0:1e-300"), 1,
         "--straggler = 0:1e-300: '0:1e-300' must be RANK:FACTOR with a rank in [0, 0] and a "
         "factor from 0.001 to 1000",
         "straggler factor");
  expect(run("simulate --model gpt-tiny --strategy tiny-1rank"), 2,
         "--cluster: required option is missing", "missing option");
  expect(run("simulate --model gpt3-175b --cluster dgx-a100-128n --gpus 8 --strategy " +
             write("dp8.json", kTooBig)),
         3, "does not fit: rank 0", "does not fit");
  expect(run("simulate" + kTiny, "STRATA_TEST_INTERNAL_ERROR=1"), 70, "internal error",
         "internal error");
}

TEST_F(ExitCodes, Run) {
  const std::string json = (dir_ / "run.json").string();
  expect(run("run --model gpt-tiny --strategy tiny-1rank --steps 1 --json " + json), 0, "",
         "one step");
  EXPECT_TRUE(fs::exists(json));
  expect(run("run --model " + dir_.string() + " --strategy tiny-1rank --steps 1"), 1,
         "--model: " + dir_.string() + " is a directory, not a model spec file", "a directory");
  expect(run("run --model gpt-tiny --strategy tiny-1rank --steps 1 --frobnicate"), 2,
         "usage error: --frobnicate: unknown option", "unknown option");
  expect(
      run("run --model gpt-tiny --strategy tiny-1rank --steps 1", "STRATA_TEST_INTERNAL_ERROR=1"),
      70, "internal error", "internal error");
  // Where the tensors live and what moves them: bad values, and what this machine lacks.
  const std::string one = "run --model gpt-tiny --strategy tiny-1rank --steps 1 ";
  expect(run(one + "--device gpu"), 1, "--device = gpu: must be cpu, cuda or cuda:N",
         "a bad device");
  expect(run(one + "--device cuda:x"), 1, "--device = cuda:x", "a bad device index");
  expect(run(one + "--comm gloo"), 1, "--comm = gloo: must be mpi or nccl", "a bad comm");
  expect(run(one + "--comm nccl"), 1, "--comm = nccl: NCCL moves device memory; run with --device cuda",
         "nccl on the CPU");
  if (strata::kernels::cuda_device_count() == 0) {
    expect(run(one + "--device cuda"), 1, "--device = cuda: no usable CUDA device", "no GPU");
  }
}

// 0 for compare: Cli.CompareJoinsTwoTracesTaskByTask (cli_test.cpp).
TEST_F(ExitCodes, Compare) {
  const std::string deep = write("deep.json", std::string(100000, '[') + std::string(100000, ']'));
  expect(run("compare " + deep + " " + deep), 1, deep + ": JSON nested deeper than 64 levels",
         "a deep trace");
  expect(run("compare " + deep), 2, "usage error: expected two trace files", "one file");
  expect(run("compare " + deep + " " + deep, "STRATA_TEST_INTERNAL_ERROR=1"), 70, "internal error",
         "internal error");
}

// 0 for profile ops: Cli.ProfileOpsWritesAProfileTheReaderAccepts; for profile links:
// ProfileLinksCli's imports (profile_links_cli_test.cpp).
TEST_F(ExitCodes, ProfileOpsAndLinks) {
  const std::string fifo = (dir_ / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string out = (dir_ / "profile.json").string();
  expect(run("profile ops --model " + fifo + " --strategy tiny-1rank --out " + out), 1,
         "--model: " + fifo + " is a FIFO (named pipe), not a model spec file", "a FIFO");
  expect(run("profile ops --model gpt-tiny --strategy tiny-1rank"), 2,
         "--out: required option is missing", "missing option");
  expect(run("profile ops --model gpt-tiny --strategy tiny-1rank --out " + out,
             "STRATA_TEST_INTERNAL_ERROR=1"),
         70, "internal error", "internal error");
  EXPECT_FALSE(fs::exists(out));
  const std::string links = (dir_ / "links.json").string();
  expect(run("profile links --import " + dir_.string() + " --fabric nvswitch --out " + links), 1,
         dir_.string() + " is a directory, not a regular file", "a directory");
  expect(run("profile links --import x.txt --fabric nvswitch"), 2,
         "--out: required option is missing", "missing option");
  expect(run("profile links --import x.txt --out " + links, "STRATA_TEST_INTERNAL_ERROR=1"), 70,
         "internal error", "internal error");
  EXPECT_FALSE(fs::exists(links));
}

// Regression (issue 16): a 100,000-deep array as a spec crashed with SIGSEGV in the error
// formatter; now a clear error at parse time, exit 1.
TEST_F(ExitCodes, DeeplyNestedSpecIsAClearError) {
  const std::string deep = write("deep.json", std::string(100000, '[') + std::string(100000, ']'));
  for (const char* flag : {"--model", "--cluster", "--strategy"}) {
    std::string args = "plan" + kTiny;
    const std::string name = std::string(flag) + " ";
    const auto at = args.find(name);
    args.replace(at, args.find(' ', at + name.size()) - at, name + deep);
    expect(run(args), 1, deep + ": JSON nested deeper than 64 levels at line 1, column 65", flag);
  }
}

// Regression (issue 16): a peak of 1e-300 FLOP/s made task times infinite and aborted the
// replay with "the plan deadlocked" (SIGABRT); now refused by the cluster's range check.
TEST_F(ExitCodes, AbsurdClusterValuesAreRefusedBeforeTheSimulation) {
  struct Case {
    std::string key, sub;
    double value;
    std::string message;
  };
  const Case cases[] = {
      {"peak_tflops", "bf16", 1e-300,
       "cluster.gpu.peak_tflops.bf16 = 1e-300: must be from 0.001 to 1e+05 TFLOP/s"},
      {"memory_bandwidth_GBps", "", 1e-300,
       "cluster.gpu.memory_bandwidth_GBps = 1e-300: must be from 1e-06 to 1e+06 GB/s"},
  };
  for (const Case& c : cases) {
    strata::json::Json j = strata::json::parse_file(std::string(STRATA_SOURCE_DIR) +
                                                    "/configs/clusters/local-cpu.json");
    if (c.sub.empty()) {
      j["gpu"][c.key] = c.value;
    } else {
      j["gpu"][c.key][c.sub] = c.value;
    }
    const std::string file = write("absurd.json", j.dump());
    expect(run("simulate --model gpt-tiny --strategy tiny-1rank --cluster " + file), 1,
           file + ": " + c.message, c.key);
  }
  expect(run("simulate --model gpt-tiny --strategy tiny-1rank --cluster " +
             cluster_with("intra_node", "latency_us", 1e300)),
         1, "cluster.intra_node.latency_us = 1e+300: must be from 0 to 1e+06 us (1 s)", "latency");
}

// Regression (issue 16): 1e999 escaped as the JSON library's out_of_range, exit 70.
TEST_F(ExitCodes, OverflowingNumberIsAParseErrorNamingTheField) {
  std::string text =
      strata::json::read_file(std::string(STRATA_SOURCE_DIR) + "/configs/models/gpt-tiny.json");
  const auto at = text.find("\"hidden_size\": ") + 15;
  text.replace(at, text.find_first_of(",\n}", at) - at, "1e999");
  const std::string model = write("model.json", text);
  const Result r = run("plan --model " + model + " --cluster local-cpu --strategy tiny-1rank");
  expect(r, 1, model + ": hidden_size = 1e999 at line ", "1e999");
  EXPECT_NE(r.err.find("number out of range"), std::string::npos) << r.err;
}

}  // namespace
