// End-to-end tests of `strata`: exit codes, messages that name field/value/rule, output files
// written only on success.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/json.hpp"
#include "profiler/profile.hpp"

#include "tests/cli/strata_test.hpp"
namespace fs = std::filesystem;

namespace {

using strata::testing::Result;

class Cli : public strata::testing::StrataTest {};

const char* kMain = "--model gpt3-175b --cluster dgx-a100-128n --strategy gpt3-175b-tp8-pp8-dp16";

TEST_F(Cli, HelpForEveryCommand) {
  Result r = run("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("plan"), std::string::npos);
  r = run("plan --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--strategy"), std::string::npos);
  r = run("help plan");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(run("").exit_code, 2);
  EXPECT_EQ(run("frobnicate").exit_code, 2);
}

TEST_F(Cli, PlansGpt3OnTheBundled1024GpuCluster) {
  const Result r = run(std::string("plan ") + kMain);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("1024 ranks = dp 16 x tp 8 x pp 8"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fits           yes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("reduce_scatter"), std::string::npos) << r.out;
}

TEST_F(Cli, PlanSummarySaysWhenTensorParallelCommunicationOverlaps) {
  const Result r = run(
      "plan --model gpt-tiny --cluster local-cpu --gpus 2 --strategy tiny-tp2-sp-overlap");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("tp communication overlapped (rings beside the GEMMs; communication holds "
                       "1 SM)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("ring_shift      tp"), std::string::npos) << r.out;
  const Result plain =
      run("plan --model gpt-tiny --cluster local-cpu --gpus 2 --strategy tiny-tp2-sp");
  EXPECT_EQ(plain.out.find("overlapped"), std::string::npos) << plain.out;
}

// `strata simulate --profile --links`: the measured costs in front of the roofline, counted in
// the report; a profile of a device the cluster lacks is refused naming file, field and value.
TEST_F(Cli, SimulateWithMeasuredCosts) {
  const std::string on =
      R"j({"device": "Intel Xeon vCPU core (KVM, 2.6 GHz, AVX-512 + AMX)", "device_kind": "cpu",
          "host": "h", "date": "2026-12-06T00:00:00Z", "strata_version": "test", "libraries": {}})j";
  const std::string profile = write(
      "profile.json", R"({"schema_version": 1, "kind": "strata-op-profile", "measured_on": )" + on +
                          R"(, "settings": {"warmup": 1, "repetitions": 3},
          "plan": {"model": "gpt-tiny", "strategy": "tiny-dp2", "cluster": "local-cpu"},
          "ops": []})");
  const std::string links = write(
      "links.json", R"({"schema_version": 1, "kind": "strata-link-profile", "measured_on": )" + on +
                        R"(, "backend": "mpi", "curves": [{"collective": "all_reduce", "ranks": 2,
          "fabric": "shared", "points": [{"bytes": 1024, "time_s": 2e-5},
                                         {"bytes": 1048576, "time_s": 6e-4}],
          "fit": {"latency_s": 1.9e-5, "busbw_GBps": 0.9}}]})");
  const std::string specs = "--model gpt-tiny --cluster local-cpu --strategy tiny-dp2 --gpus 2 ";
  const Result r = run("simulate " + specs + "--profile " + profile + " --links " + links);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // No op measured (an empty profile): every task from the roofline; the gradient all-reduces
  // over the 2 ranks on the shared fabric are measured.
  EXPECT_NE(r.out.find("measured costs     0 of "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(" 0 of 0 collectives"), std::string::npos) << r.out;
  EXPECT_EQ(run("simulate " + specs).out.find("measured costs"), std::string::npos);
  // Another device.
  const std::string other = write("other.json", strata::json::read_file(profile).replace(
                                                    strata::json::read_file(profile).find("Intel"),
                                                    5, "Other"));
  const Result bad = run("simulate " + specs + "--profile " + other);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find(other + ": profile.measured_on.device = \"Other Xeon"), std::string::npos)
      << bad.err;
  const Result missing = run("simulate " + specs + "--links " + (dir_ / "none.json").string());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("none.json"), std::string::npos) << missing.err;
}

// `strata compare`: two traces of one Plan joined task by task (here two predictions, so every
// error is 0); usage errors name what is missing.
TEST_F(Cli, CompareJoinsTwoTracesTaskByTask) {
  const std::string specs = "--model gpt-tiny --cluster local-cpu --strategy tiny-dp2 --gpus 2 ";
  const std::string a = (dir_ / "a.json").string(), b = (dir_ / "b.json").string();
  ASSERT_EQ(run("simulate " + specs + "--trace-ranks all --trace " + a).exit_code, 0);
  ASSERT_EQ(run("simulate " + specs + "--trace " + b).exit_code, 0);  // rank 0 only
  const std::string csv = (dir_ / "c.csv").string();
  const Result r = run("compare " + a + " " + b + " --worst 2 --csv " + csv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("1 rank(s)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("all_reduce dp"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("+0.0%"), std::string::npos) << r.out;
  EXPECT_EQ(read(csv).rfind("rank,task,name,category,predicted_s,measured_s,error\n", 0), 0u);
  const Result json = run("compare " + a + " " + b + " --json -");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(strata::json::parse(json.out, "out")["step"]["error"], 0.0);
  const Result usage = run("compare " + a);
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.err.find("expected two trace files"), std::string::npos) << usage.err;
  EXPECT_EQ(run("compare --help").exit_code, 0);
}

TEST_F(Cli, JsonSummaryAndPlanFile) {
  const std::string plan = (dir_ / "plan.json").string();
  const Result r = run(std::string("plan ") + kMain + " --json - --out " + plan);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = strata::json::parse(r.out, "summary");
  EXPECT_EQ(j["world_size"], 1024);
  EXPECT_EQ(j["degrees"]["tp"], 8);
  EXPECT_EQ(j["tasks"]["distinct_programs"], 8);
  EXPECT_TRUE(j["memory"]["fits"].get<bool>());
  const auto p = strata::json::parse_file(plan);
  EXPECT_EQ(p["schema_version"], 2);
  EXPECT_EQ(p["programs"].size(), 8u);
  EXPECT_EQ(p["summary"], j);
  EXPECT_FALSE(fs::exists(plan + ".tmp-strata"));
}

TEST_F(Cli, InvalidStrategyNamesFieldValueAndRuleAndWritesNothing) {
  // tp 5 does not divide the 96 heads (a vocabulary it does not divide would be padded).
  const std::string bad = write("bad.json", R"({"name": "bad", "tp": 5, "pp": 1, "dp": 1,
    "micro_batch_size": 1, "global_batch_size": 8})");
  const std::string plan = (dir_ / "plan.json").string();
  const Result r = run("plan --model gpt3-175b --cluster dgx-a100-128n --gpus 5 --strategy " +
                       bad + " --out " + plan);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("strategy.tp = 5"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("divisible"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(plan));
}

TEST_F(Cli, JsonSyntaxErrorHasLineAndColumn) {
  const std::string bad = write("broken.json", "{\n  \"name\": \"x\",\n  \"tp\": ,\n}");
  const Result r = run("plan --model gpt3-175b --cluster dgx-a100-128n --strategy " + bad);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("line 3"), std::string::npos) << r.err;
}

TEST_F(Cli, UnknownSpecNameListsTheBundledOnes) {
  const Result r = run("plan --model gpt3-176b --cluster dgx-a100-128n --strategy x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--model = gpt3-176b"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("gpt3-175b"), std::string::npos) << r.err;
}

TEST_F(Cli, BadOptions) {
  // A bad value is invalid input (1); a malformed command line a usage error (2).
  EXPECT_EQ(run(std::string("plan ") + kMain + " --gpus zero").exit_code, 1);
  EXPECT_EQ(run(std::string("plan ") + kMain + " --frobnicate").exit_code, 2);
  EXPECT_EQ(run("plan --cluster dgx-a100-128n --strategy gpt3-175b-tp8-pp8-dp16").exit_code, 2);
}

TEST_F(Cli, OutOfMemoryExitsThreeUnlessIgnored) {
  // GPT-3 175B with pure data parallelism on 8 GPUs cannot fit 80 GiB per GPU.
  const std::string s = write("dp8.json", R"({"name": "dp8", "dp": 8, "micro_batch_size": 1,
    "global_batch_size": 8})");
  const std::string plan = (dir_ / "plan.json").string();
  Result r = run("plan --model gpt3-175b --cluster dgx-a100-128n --gpus 8 --strategy " + s +
                 " --out " + plan);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("rank 0"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("NO"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(plan));
  r = run("plan --model gpt3-175b --cluster dgx-a100-128n --gpus 8 --strategy " + s +
          " --ignore-memory --out " + plan);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(plan));
}

TEST_F(Cli, HuggingFaceConfigAndRescaledCluster) {
  const Result r = run("plan --model " + config("models/llama2-7b-hf-config.json") +
                       " --cluster dgx-h100-128n --nodes 1 --strategy llama2-7b-tp2-dp4 --json -");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = strata::json::parse(r.out, "summary");
  EXPECT_EQ(j["world_size"], 8);
  EXPECT_NEAR(j["params"]["total"].get<double>(), 6738415616.0, 0.5);
}

// `strata profile ops`: every distinct op of the Plan timed into a profile.json the strict
// reader accepts; progress on stderr. Behaviour only, never a timing value.
TEST_F(Cli, ProfileOpsWritesAProfileTheReaderAccepts) {
  const std::string out = (dir_ / "profile.json").string();
  const Result r = run("profile ops --model gpt-tiny --strategy tiny-1rank --repetitions 2 " +
                       std::string("--warmup 0 --out ") + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("op 1 of "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(": linear fp32 dims "), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("wrote " + out), std::string::npos) << r.out;
  const strata::profiler::OpProfile p = strata::profiler::read_op_profile(out);
  EXPECT_EQ(p.repetitions, 2);
  EXPECT_EQ(p.warmup, 0);
  EXPECT_EQ(p.strategy, "tiny-1rank");
  EXPECT_EQ(p.cluster, "local-cpu");
  EXPECT_EQ(p.on.device_kind, "cpu");
  EXPECT_GT(p.ops.size(), 10u);
  for (const auto& m : p.ops) {
    EXPECT_LE(m.min_s, m.median_s);
    EXPECT_LE(m.median_s, m.max_s);
    EXPECT_EQ(m.repetitions, 2);
  }
  EXPECT_FALSE(fs::exists(out + ".tmp-strata"));
  const Result help = run("profile ops --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--repetitions"), std::string::npos);
  EXPECT_EQ(run("help profile ops").out, help.out);
}

// Bad flags and what cannot be timed: exit 1, the flag and value named, no file written.
TEST_F(Cli, ProfileOpsRefusesBadFlagsAndWritesNothing) {
  const std::string out = (dir_ / "profile.json").string();
  const std::string base = "profile ops --model gpt-tiny --strategy tiny-1rank --out " + out;
  const std::string fp16 = write("fp16.json", R"({"name": "fp16", "micro_batch_size": 2,
    "global_batch_size": 8, "precision": "fp16"})");
  const std::pair<std::string, std::string> cases[] = {
      {base + " --repetitions 0", "--repetitions = 0"},
      {base + " --warmup -1", "--warmup = -1"},
      {base + " --warmup two", "--warmup = two"},
      {base + " --device cuda", "cuda"},  // no GPU: "no usable CUDA device"; with one: "is a CPU"
      {base + " --device tpu", "--device = tpu"},
      {base + " --frobnicate 3", "--frobnicate"},
      {"profile ops --model gpt-tiny --strategy tiny-1rank", "--out"},
      {"profile ops --model gpt-tiny --strategy " + fp16 + " --out " + out,
       "the executor cannot run this Plan"},
      {base + " --cluster dgx-a100-128n", "is a GPU"},
  };
  for (const auto& [args, message] : cases) {
    const Result r = run(args);
    // An unknown or missing option is a usage error (2); the rest are invalid input (1).
    const bool usage = message == "--frobnicate" || message == "--out";
    EXPECT_EQ(r.exit_code, usage ? 2 : 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << "\n" << r.err;
    EXPECT_FALSE(fs::exists(out)) << args;
  }
}

}  // namespace
