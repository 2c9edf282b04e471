// run.json: write -> read gives back every field, the file has exactly the keys `strata run
// --json` has always written, and bad files are refused naming the file, field and value.
#include "results/run.hpp"

#include <gtest/gtest.h>

#include <set>

#include "tests/strategies/expect_config_error.hpp"

namespace strata::results {
namespace {

using strategies::testing::expect_config_error;

RunRecord sample_run() {
  RunRecord r;
  r.model = "gpt-tiny";
  r.strategy = "tiny-pp2-1f1b";
  r.cluster = "local-cpu";
  r.world_size = 2;
  r.backend = "mpi";
  r.seed = 1234;
  r.first_step = 6;
  r.lr = static_cast<double>(1e-3f);
  r.data = "configs/data/tiny-corpus.txt";
  r.tokens_per_step = 2048;
  r.steps = {{6, 4.25, 0.5, 4096, ""}, {7, 4.125, 0.25, 8192, ""}};
  r.median_tokens_per_s = 8192;
  r.provenance = {"0.1.0+abc", "m1", "c2", "s3", {}};
  r.host = "node7";
  r.date = "2026-01-31T12:00:00Z";
  return r;
}

TEST(RunJson, WriteThenReadGivesEveryFieldBack) {
  const RunRecord r = sample_run();
  const json::Json j = run_to_json(r);
  const RunRecord b = run_from_json(j);
  EXPECT_EQ(b.source, r.source);
  EXPECT_EQ(b.model, r.model);
  EXPECT_EQ(b.strategy, r.strategy);
  EXPECT_EQ(b.cluster, r.cluster);
  EXPECT_EQ(b.world_size, r.world_size);
  EXPECT_EQ(b.backend, r.backend);
  EXPECT_EQ(b.seed, r.seed);
  EXPECT_EQ(b.first_step, r.first_step);
  EXPECT_EQ(b.lr, r.lr);
  EXPECT_EQ(b.data, r.data);
  EXPECT_EQ(b.tokens_per_step, r.tokens_per_step);
  EXPECT_EQ(b.steps, r.steps);
  EXPECT_EQ(b.median_tokens_per_s, r.median_tokens_per_s);
  EXPECT_EQ(b.provenance.strata_version, r.provenance.strata_version);
  EXPECT_EQ(b.provenance.model_hash, r.provenance.model_hash);
  EXPECT_EQ(b.provenance.cluster_hash, r.provenance.cluster_hash);
  EXPECT_EQ(b.provenance.strategy_hash, r.provenance.strategy_hash);
  EXPECT_EQ(b.host, r.host);
  EXPECT_EQ(b.date, r.date);
  EXPECT_EQ(run_to_json(b), j);
}

TEST(RunJson, HasTheKeysStrataRunHasAlwaysWritten) {
  const json::Json j = run_to_json(sample_run());
  std::set<std::string> keys;
  for (const auto& [key, value] : j.items()) keys.insert(key);
  const std::set<std::string> expected = {"schema_version",
                                          "kind",
                                          "source",
                                          "model",
                                          "strategy",
                                          "cluster",
                                          "world_size",
                                          "backend",
                                          "device",
                                          "seed",
                                          "first_step",
                                          "lr",
                                          "data",
                                          "tokens_per_step",
                                          "losses",
                                          "steps",
                                          "median_tokens_per_s",
                                          "memory",
                                          "provenance",
                                          "host",
                                          "date"};
  EXPECT_EQ(keys, expected);
  EXPECT_EQ(j["kind"], "strata.run");
  EXPECT_EQ(j["source"], "measured");
  EXPECT_EQ(j["device"], "cpu");
  // "device" came later: a run.json without it was written on the CPU.
  json::Json older = j;
  older.erase("device");
  EXPECT_EQ(run_from_json(older, "old.json").device, "cpu");
  json::Json gpu = j;
  gpu["device"] = "cuda:0 (NVIDIA H100 80GB HBM3)";
  EXPECT_EQ(run_from_json(gpu, "gpu.json").device, "cuda:0 (NVIDIA H100 80GB HBM3)");
  EXPECT_EQ(j["losses"], json::Json({4.25, 4.125}));
  EXPECT_EQ(
      j["steps"][1],
      json::Json({{"step", 7}, {"loss", 4.125}, {"seconds", 0.25}, {"tokens_per_s", 8192.0}}));
}

// A run that switches strategies (strata run --switch) adds its schedule, each step's strategy
// and the switches; they read back, and a plain run has none of these keys.
TEST(RunJson, ASwitchingRunHasItsScheduleStepStrategiesAndSwitches) {
  RunRecord r = sample_run();
  EXPECT_FALSE(run_to_json(r).contains("switches"));
  EXPECT_FALSE(run_to_json(r)["steps"][0].contains("strategy"));
  r.strategy = "tiny-dp2 -> tiny-tp2";
  r.schedule = "dp-then-tp";
  r.steps[0].strategy = "tiny-dp2";
  r.steps[1].strategy = "tiny-tp2";
  r.switches = {{7, "tiny-dp2", "tiny-tp2", 0.0125, 4096, 2048}};
  const json::Json j = run_to_json(r);
  EXPECT_EQ(j["schedule"], "dp-then-tp");
  EXPECT_EQ(j["steps"][1]["strategy"], "tiny-tp2");
  EXPECT_EQ(j["switches"][0], json::Json({{"at_step", 7},
                                          {"from", "tiny-dp2"},
                                          {"to", "tiny-tp2"},
                                          {"measured_seconds", 0.0125},
                                          {"bytes_sent", 4096.0},
                                          {"max_rank_bytes_sent", 2048.0}}));
  const RunRecord b = run_from_json(j);
  EXPECT_EQ(b.schedule, r.schedule);
  EXPECT_EQ(b.steps, r.steps);
  EXPECT_EQ(b.switches, r.switches);
  EXPECT_EQ(run_to_json(b), j);
  json::Json bad = j;
  bad["switches"][0].erase("bytes_sent");
  expect_config_error([&] { run_from_json(bad, "out.json"); },
                      {"out.json: run.switches[0].bytes_sent: required key is missing"});
}

// A federated run (docs/federated.md "Running it for real") carries its "federated" section as
// it was written; any other run has none, and a section that is not an object is refused.
TEST(RunJson, AFederatedRunCarriesItsSection) {
  RunRecord r = sample_run();
  EXPECT_FALSE(run_to_json(r).contains("federated"));
  r.federated = {{"sites", {"site-a", "site-b"}},
                 {"rounds", {{{"round", 1}, {"participants", {"site-a"}}}}}};
  const json::Json j = run_to_json(r);
  EXPECT_EQ(j["federated"]["rounds"][0]["participants"][0], "site-a");
  const RunRecord b = run_from_json(j);
  EXPECT_EQ(b.federated, r.federated);
  EXPECT_EQ(run_to_json(b), j);
  json::Json bad = j;
  bad["federated"] = 3;
  expect_config_error([&] { run_from_json(bad, "out.json"); },
                      {"out.json: run.federated = 3: must be an object"});
}

// A parameter-server run (docs/parameter-server.md "Running it for real") carries its "ps"
// section the same way.
TEST(RunJson, AParameterServerRunCarriesItsSection) {
  RunRecord r = sample_run();
  EXPECT_FALSE(run_to_json(r).contains("ps"));
  r.ps = {{"servers", 2}, {"consistency", "ssp"}, {"max_staleness", 1}};
  const json::Json j = run_to_json(r);
  EXPECT_EQ(j["ps"]["max_staleness"], 1);
  EXPECT_EQ(run_from_json(j).ps, r.ps);
  json::Json bad = j;
  bad["ps"] = "x";
  expect_config_error([&] { run_from_json(bad, "out.json"); },
                      {"out.json: run.ps = \"x\": must be an object"});
}

TEST(RunJson, BadFilesAreRefusedNamingFileFieldAndValue) {
  const json::Json good = run_to_json(sample_run());
  json::Json j = good;
  j["kind"] = "strata.report";
  expect_config_error([&] { run_from_json(j, "out.json"); },
                      {"out.json: run.kind = \"strata.report\"", "strata.run"});
  j = good;
  j.erase("host");
  expect_config_error([&] { run_from_json(j, "out.json"); },
                      {"out.json: run.host: required key is missing"});
  j = good;
  j["steps"][1]["loss"] = "low";
  expect_config_error([&] { run_from_json(j, "out.json"); },
                      {"run.steps[1].loss = \"low\"", "number"});
  j = good;
  j["losses"][0] = 9.5;
  expect_config_error([&] { run_from_json(j, "out.json"); },
                      {"run.losses[0] = 9.5", "steps[0].loss"});
  j = good;
  j["seed"] = -1;
  expect_config_error([&] { run_from_json(j, "out.json"); }, {"run.seed = -1"});
}

}  // namespace
}  // namespace strata::results
