// End-to-end tests of exploring without writing JSON: `--set` overrides, `strata sweep`, and
// `strata compare` of two reports. Each runs the strata executable.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/json.hpp"

#include "tests/cli/strata_test.hpp"
namespace fs = std::filesystem;
namespace json = strata::json;

namespace {

using strata::testing::read_csv;
using strata::testing::Result;

class Explore : public strata::testing::StrataTest {};

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

const char* kTiny = "--model gpt-tiny --cluster dgx-a100-128n --nodes 1 --strategy tiny-1rank";

// ---------------------------------------------------------------------------------------------
// --set

TEST_F(Explore, SetGivesTheSameReportAsAFileWithThatValue) {
  // tiny-1rank with micro_batch_size 4 written to a file, and the same by --set.
  json::Json s = json::parse_file(config("strategies/tiny-1rank.json"));
  s["micro_batch_size"] = 4;
  s["dp"] = 2;
  const std::string file = write("mbs4.json", s.dump());
  Result r = run("simulate --model gpt-tiny --cluster dgx-a100-128n --nodes 1 --gpus 2 "
                 "--strategy " + file + " --json " + path("file.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run("simulate " + std::string(kTiny) + " --gpus 2 --set strategy.micro_batch_size=4 "
          "--set strategy.dp=2 "
          "--json " + path("set.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json::Json a = json::parse_file(path("file.json")), b = json::parse_file(path("set.json"));
  EXPECT_EQ(b["provenance"]["overrides"],
            json::Json({"strategy.micro_batch_size=4", "strategy.dp=2"}));
  EXPECT_FALSE(a["provenance"].contains("overrides"));
  EXPECT_EQ(a["step_time_s"], b["step_time_s"]);
  EXPECT_EQ(a["ranks"], b["ranks"]);
  EXPECT_EQ(a["provenance"]["strategy_hash"], b["provenance"]["strategy_hash"]);
  // A later --set of the same field wins; nested keys and strings work.
  r = run("plan " + std::string(kTiny) + " --gpus 1 --set strategy.micro_batch_size=4 "
          "--set strategy.micro_batch_size=1 --set strategy.schedule=gpipe "
          "--set cluster.gpu.memory_bytes=1e12 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json::Json plan = json::Json::parse(r.out);
  EXPECT_EQ(plan["micro_batch_size"], 1) << plan.dump();
  EXPECT_EQ(plan["schedule"], "gpipe");
}

TEST_F(Explore, SetRefusesUnknownKeysAndMalformedOverrides) {
  Result r = run("plan " + std::string(kTiny) + " --set strategy.tpp=2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "--set strategy.tpp=2")) << r.err;
  EXPECT_TRUE(has(r.err, "strategy.tpp: unknown key (known keys: name, dp, tp")) << r.err;
  r = run("plan " + std::string(kTiny) + " --set strategy.tp");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "--set strategy.tp: expected PATH=VALUE")) << r.err;
  r = run("plan " + std::string(kTiny) + " --set optimizer.lr=1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "'optimizer' is not a spec; a path starts with model, cluster or "
                         "strategy")) << r.err;
  r = run("plan " + std::string(kTiny) + " --set strategy=1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "name a field of the strategy")) << r.err;
  r = run("plan " + std::string(kTiny) + " --set model.seq_length.x=1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "model.seq_length = 32 has no fields")) << r.err;
  // The value is checked like the file's: a string where a number belongs, a range.
  r = run("plan " + std::string(kTiny) + " --set strategy.tp=two");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "with --set strategy.tp=two: strategy.tp = \"two\"")) << r.err;
  r = run("plan " + std::string(kTiny) + " --gpus 3 --set strategy.tp=3");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "divisible by tp")) << r.err;
  // An optional key the file does not have is added.
  r = run("plan " + std::string(kTiny) + " --gpus 2 --set strategy.tp=2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::Json::parse(r.out)["degrees"]["tp"], 2);
}

TEST_F(Explore, SetOnAHuggingFaceConfigRefusesKeysItsReaderIgnores) {
  const std::string hf = "--model " + config("models/gpt2-hf-config.json") +
                         " --cluster dgx-a100-128n --nodes 1 --strategy tiny-1rank --gpus 1";
  Result r = run("plan " + hf + " --set model.n_layers=2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "--set model.n_layers=2: Strata's reader of Hugging Face \"gpt2\" "
                         "configs does not read 'n_layers' (it reads: ")) << r.err;
  EXPECT_TRUE(has(r.err, "n_layer,")) << r.err;
  r = run("plan " + hf + " --set model.n_layer=2 --set model.seq_length=128 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::Json::parse(r.out)["seq_length"], 128);
}

// ---------------------------------------------------------------------------------------------
// Hugging Face configs: the training sequence length and the vocabulary padding

TEST_F(Explore, HuggingFaceSequenceLengthIsRequiredAndVocabularyIsPaddedForTp) {
  json::Json hf = json::parse_file(config("models/gpt2-hf-config.json"));
  hf.erase("seq_length");
  const std::string file = write("gpt2.json", hf.dump());
  const std::string rest = " --cluster dgx-a100-128n --nodes 1 --strategy tiny-tp2 --gpus 2";
  Result r = run("plan --model " + file + rest);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "model.seq_length: required for a Hugging Face config")) << r.err;
  EXPECT_TRUE(has(r.err, "give --set model.seq_length=N")) << r.err;
  r = run("plan --model " + file + rest + " --set model.seq_length=512");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "model          sequence length 512, vocabulary 50432 (50257 padded to a "
                         "multiple of 128 x tp 2)")) << r.out;
  r = run("plan --model " + file + rest + " --set model.seq_length=512 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json::Json j = json::Json::parse(r.out);
  EXPECT_EQ(j["vocab_size"], 50432);
  EXPECT_EQ(j["unpadded_vocab_size"], 50257);
  EXPECT_EQ(j["make_vocab_size_divisible_by"], 128);
  // One rank: nothing to split, nothing padded.
  r = run("plan --model " + file + " --cluster dgx-a100-128n --nodes 1 --strategy tiny-1rank "
          "--gpus 1 --set model.seq_length=512 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::Json::parse(r.out)["vocab_size"], 50257);
  EXPECT_FALSE(json::Json::parse(r.out).contains("unpadded_vocab_size"));
}

// ---------------------------------------------------------------------------------------------
// World size

TEST_F(Explore, AWorldSizeMismatchSaysWhatWouldFit) {
  Result r = run("plan --model gpt-tiny --cluster dgx-a100-128n --strategy tiny-dp2-tp2-pp2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "strategy 'tiny-dp2-tp2-pp2' needs dp*tp*pp*cp = 2*2*2*1 = 8 GPUs; the "
                         "cluster 'dgx-a100-128n' has 1024 (128 nodes of 8): use --gpus 8 or "
                         "--nodes 1 (or --set strategy.dp=256 to use all 1024)")) << r.err;
  r = run("simulate --model gpt-tiny --cluster dgx-a100-128n --strategy tiny-dp2 --gpus 4");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "needs dp*tp*pp*cp = 2*1*1*1 = 2 GPUs; --gpus is 4: use --gpus 2 (or "
                         "--set strategy.dp=4 to use all 4)")) << r.err;
  r = run("plan --model gpt-tiny --cluster dgx-a100-128n --nodes 1 --strategy tiny-1rank "
          "--set strategy.dp=16");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "= 16 GPUs; the cluster 'dgx-a100-128n (rescaled to 1 nodes)' has 8 (1 node of 8): use "
                         "--nodes 2")) << r.err;
}

// A Plan too large for this machine's memory is refused before lowering, with the estimate.
TEST_F(Explore, APlanLargerThanHostMemoryIsRefusedWithTheEstimate) {
  const Result r = run("plan " + std::string(kTiny) + " --gpus 1 "
                       "--set strategy.global_batch_size=2000000000 --set strategy.micro_batch_size=1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "strategy 'tiny-1rank': its Plan would need about 91552.73 GiB of "
                         "host memory (2000000000 micro-batches x 4 layers, about 24 tasks of "
                         "512 bytes each), more than the ")) << r.err;
}

// ---------------------------------------------------------------------------------------------
// strata sweep

TEST_F(Explore, SweepRowsMatchSingleSimulationsAndRecordRefusedPoints) {
  const std::string out = path("sweep");
  Result r = run(std::string("sweep ") + kTiny + " --vary strategy.tp=1,2 "
                 "--vary strategy.micro_batch_size=2,3 --jobs 2 --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "4 points, 2 simulated, 2 refused")) << r.out;
  EXPECT_TRUE(has(r.err, "of 4: tp=2 micro_batch_size=2: ")) << r.err;
  EXPECT_TRUE(has(r.err, " s/step")) << r.err;
  EXPECT_FALSE(fs::exists(out + ".partial"));
  const auto rows = read_csv(read(out + "/sweep.csv"));
  ASSERT_EQ(rows.size(), 5u);
  const std::vector<std::string> header = {
      "point", "strategy.tp", "strategy.micro_batch_size", "status", "exit_code", "step_time_s",
      "tokens_per_s", "tflops_per_gpu", "hardware_tflops_per_gpu", "mfu",
      "max_peak_memory_bytes", "capacity_bytes", "error"};
  EXPECT_EQ(rows[0], header);
  // Points in order, the first --vary slowest.
  const char* tp[] = {"1", "1", "2", "2"};
  const char* mbs[] = {"2", "3", "2", "3"};
  for (int n = 1; n <= 4; ++n) {
    const auto& row = rows[n];
    ASSERT_EQ(row.size(), header.size()) << n;
    EXPECT_EQ(row[0], std::to_string(n));
    EXPECT_EQ(row[1], tp[n - 1]);
    EXPECT_EQ(row[2], mbs[n - 1]);
    if (row[2] == "3") {  // 8 sequences do not split into micro-batches of 3
      EXPECT_EQ(row[3], "refused");
      EXPECT_EQ(row[4], "1");
      EXPECT_TRUE(has(row[12], "strategy.global_batch_size = 8")) << row[12];
      EXPECT_EQ(row[5], "");
      continue;
    }
    EXPECT_EQ(row[3], "ok");
    EXPECT_EQ(row[4], "0");
    // The same point simulated alone gives the same figures, digit for digit.
    const std::string single = path("single" + std::to_string(n) + ".json");
    Result s = run(std::string("simulate ") + kTiny + " --set strategy.tp=" + row[1] +
                   " --set strategy.micro_batch_size=" + row[2] + " --gpus " + row[1] +
                   " --json " + single);
    ASSERT_EQ(s.exit_code, 0) << s.err;
    const json::Json rep = json::parse_file(single);
    EXPECT_EQ(row[5], rep["step_time_s"].dump());
    EXPECT_EQ(row[6], rep["tokens_per_s"].dump());
    EXPECT_EQ(row[7], rep["tflops_per_gpu"].dump());
    EXPECT_EQ(row[9], rep["mfu"].dump());
    double peak = 0;
    for (const auto& rank : rep["ranks"]) peak = std::max(peak, rank["peak_memory_bytes"].get<double>());
    EXPECT_EQ(row[10], json::count(peak).dump());  // bytes as report.json writes them
    char dir[32];
    std::snprintf(dir, sizeof dir, "/points/%03d/report.json", n);
    const json::Json point = json::parse_file(out + dir);
    EXPECT_EQ(point["step_time_s"], rep["step_time_s"]);
    EXPECT_EQ(point["provenance"]["overrides"],
              json::Json({"strategy.tp=" + row[1], "strategy.micro_batch_size=" + row[2]}));
  }
  EXPECT_NE(rows[1][5], rows[3][5]);  // tp changes the step
  const std::string svg = read(out + "/sweep.svg");
  EXPECT_TRUE(has(svg, "<svg")) << svg.substr(0, 200);
  EXPECT_TRUE(has(svg, "tokens/s"));
  EXPECT_TRUE(has(svg, "tp=2 micro_batch_size=3: refused"));
}

// A sweep killed outright (SIGKILL: no handler runs) takes its running simulations with it:
// each child gets SIGTERM when the process that started it dies (cli/launch.hpp run_logged),
// instead of running on, orphaned, for the rest of its point (seconds: SC'21's 1 T row).
TEST_F(Explore, AKilledSweepLeavesNoSimulationRunning) {
  const std::string specs = std::string(STRATA_SOURCE_DIR) + "/experiments/megatron-sc21/specs/";
  const std::string pid_file = path("sweep.pid");
  const std::string cmd = std::string(STRATA_EXE) + " sweep --model " + specs +
                          "row10-gpt-1008b.model.json --cluster dgx-a100-128n --strategy " +
                          specs + "row10-gpt-1008b.strategy.json --nodes 384 " +
                          "--vary strategy.micro_batch_size=1,2 --jobs 1 --out " + path("s") +
                          " >/dev/null 2>&1 </dev/null & echo $! > " + pid_file;
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const pid_t sweep = static_cast<pid_t>(std::stol(read(pid_file)));
  const std::string running = wait_for_simulations(false, 60);
  ::kill(sweep, SIGKILL);
  ASSERT_NE(running, "") << "the sweep never started a simulation";
  EXPECT_EQ(wait_for_simulations(true, 5), "") << "simulations left running";
}

TEST_F(Explore, SweepRefusesABadVaryBeforeAnyWork) {
  const std::string out = path("sweep");
  Result r = run(std::string("sweep ") + kTiny + " --vary strategy.tpp=1,2 --out " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "--vary strategy.tpp: ")) << r.err;
  EXPECT_TRUE(has(r.err, "unknown key")) << r.err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".partial"));
  r = run(std::string("sweep ") + kTiny + " --vary strategy.tp --out " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "expected PATH=V1,V2,...")) << r.err;
  r = run(std::string("sweep ") + kTiny + " --out " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "--vary: required")) << r.err;
  // "DIR/" is the folder DIR (written as DIR.partial, not DIR/.partial).
  r = run(std::string("sweep ") + kTiny + " --vary strategy.micro_batch_size=3 --out " + out + "/");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out + "/sweep.csv"));
  EXPECT_TRUE(has(read(out + "/sweep.csv"), "1,3,refused,1,"));
  EXPECT_FALSE(fs::exists(out + ".partial"));
}

// ---------------------------------------------------------------------------------------------
// strata compare of two reports

TEST_F(Explore, CompareTwoReportsSideBySideAndRefusesAReportAgainstATrace) {
  const std::string a = path("a.json"), b = path("b.json"), trace = path("trace.json");
  Result r = run(std::string("simulate ") + kTiny + " --gpus 1 --json " + a + " --trace " + trace);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run(std::string("simulate ") + kTiny + " --gpus 2 --set strategy.tp=2 --json " + b);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run("compare " + a + " " + b);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "A: " + a + ": gpt-tiny on dgx-a100-128n (rescaled to 1 nodes), tiny-1rank")) << r.out;
  EXPECT_TRUE(has(r.out, "step time")) << r.out;
  EXPECT_TRUE(has(r.out, "stage 0 (its first rank)")) << r.out;
  EXPECT_TRUE(has(r.out, "peak memory")) << r.out;
  r = run("compare " + a + " " + b + " --json -");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json::Json c = json::Json::parse(r.out);
  const json::Json ja = json::parse_file(a), jb = json::parse_file(b);
  const double sa = ja["step_time_s"].get<double>(), sb = jb["step_time_s"].get<double>();
  EXPECT_EQ(c["figures"]["step_time_s"]["a"].get<double>(), sa);
  EXPECT_EQ(c["figures"]["step_time_s"]["b"].get<double>(), sb);
  EXPECT_DOUBLE_EQ(c["figures"]["step_time_s"]["difference"].get<double>(), sb - sa);
  EXPECT_DOUBLE_EQ(c["figures"]["step_time_s"]["relative"].get<double>(), sb / sa - 1);
  EXPECT_EQ(c["figures"]["world_size"]["b"].get<double>(), 2);
  ASSERT_EQ(c["stages"].size(), 1u);
  EXPECT_EQ(c["stages"][0]["peak_memory_bytes"]["a"].get<double>(),
            ja["ranks"][0]["peak_memory_bytes"].get<double>());
  EXPECT_EQ(c["stages"][0]["compute_s"]["b"].get<double>(),
            jb["ranks"][0]["compute_s"].get<double>());
  // A report against a trace, either way round.
  r = run("compare " + a + " " + trace);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "cannot compare a report with a trace: " + a + " is a report")) << r.err;
  r = run("compare " + trace + " " + a);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "cannot compare a report with a trace")) << r.err;
  const std::string other = write("other.json", R"({"kind": "strata.plan"})");
  r = run("compare " + other + " " + a);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "neither a report")) << r.err;
}

}  // namespace
