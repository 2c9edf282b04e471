// report.json: write -> read gives back every field; counts are JSON integers; another kind,
// another schema version, a missing key, a wrong type or an unknown key is a ConfigError naming
// the file, the field and the value; the table.
#include "results/report.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/strategies/expect_config_error.hpp"

namespace strata::results {
namespace {

using strategies::testing::expect_config_error;

// A report with a distinct, non-default value in every field report.json holds.
Report sample_report() {
  Report r;
  r.model = "gpt-test";
  r.cluster = "test-cluster";
  r.strategy = "dp1-tp1-pp3";
  r.provenance = {"0.1.0+abc", "m1", "c2", "s3", {}};
  r.world_size = 3;
  r.global_batch_size = 12;
  r.seq_length = 256;
  r.step_time_s = 0.125;
  r.tokens_per_s = 24576.5;
  r.tflops_per_gpu = 101.25;
  r.hardware_tflops_per_gpu = 133.5;
  r.mfu = 0.32451923076923078;
  r.bubble_fraction = 0.1875;
  r.fits = false;
  r.simulation = {"roofline", 2, 123456789012, false, true, false, {1.0, 0.5, 1.0},
                  {{"H200-SXM-141GB", "h100"}}};
  for (int i = 0; i < 3; ++i) {
    RankTimes t;
    t.stage = i;
    t.compute_s = 0.1 + i;
    t.communication_s = 0.02 + i;
    t.exposed_comm_s = 0.01 + i;
    t.idle_s = 0.005 + i;
    t.peak_memory_bytes = 60e9 + 15e9 * i;  // rank 2 does not fit
    t.capacity_bytes = 80e9;
    r.ranks.push_back(t);
  }
  return r;
}

void expect_same(const Report& a, const Report& b) {
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.cluster, b.cluster);
  EXPECT_EQ(a.strategy, b.strategy);
  EXPECT_EQ(a.provenance.strata_version, b.provenance.strata_version);
  EXPECT_EQ(a.provenance.model_hash, b.provenance.model_hash);
  EXPECT_EQ(a.provenance.cluster_hash, b.provenance.cluster_hash);
  EXPECT_EQ(a.provenance.strategy_hash, b.provenance.strategy_hash);
  EXPECT_EQ(a.world_size, b.world_size);
  EXPECT_EQ(a.global_batch_size, b.global_batch_size);
  EXPECT_EQ(a.seq_length, b.seq_length);
  EXPECT_EQ(a.step_time_s, b.step_time_s);
  EXPECT_EQ(a.tokens_per_s, b.tokens_per_s);
  EXPECT_EQ(a.tflops_per_gpu, b.tflops_per_gpu);
  EXPECT_EQ(a.hardware_tflops_per_gpu, b.hardware_tflops_per_gpu);
  EXPECT_EQ(a.mfu, b.mfu);
  EXPECT_EQ(a.bubble_fraction, b.bubble_fraction);
  EXPECT_EQ(a.fits, b.fits);
  EXPECT_EQ(a.simulation, b.simulation);
  EXPECT_EQ(a.ranks, b.ranks);
  EXPECT_EQ(a.spans, b.spans);
}

TEST(ReportJson, WriteThenReadGivesEveryFieldBack) {
  const Report r = sample_report();
  const json::Json j = report_to_json(r);
  const Report back = report_from_json(j);
  expect_same(r, back);
  EXPECT_EQ(report_to_json(back), j);
}

TEST(ReportJson, OverridesInTheProvenanceRoundTripAndAreAbsentWhenNone) {
  Report r = sample_report();
  EXPECT_FALSE(report_to_json(r)["provenance"].contains("overrides"));
  r.provenance.overrides = {"strategy.tp=4", "model.seq_length=4096"};
  json::Json j = report_to_json(r);
  EXPECT_EQ(j["provenance"]["overrides"], json::Json({"strategy.tp=4", "model.seq_length=4096"}));
  EXPECT_EQ(report_from_json(j).provenance.overrides, r.provenance.overrides);
  j["provenance"]["overrides"] = {4};
  expect_config_error([&] { report_from_json(j); },
                      {"report.provenance.overrides = 4", "must be a string"});
}

// The failures section (docs/failures.md): absent unless given, read back as written, refused
// when it is not an object.
TEST(ReportJson, TheFailuresSectionRoundTripsAndIsAbsentWhenNone) {
  Report r = sample_report();
  EXPECT_FALSE(report_to_json(r).contains("failures"));
  r.failures = {{"reaction", "restart"}, {"rows", json::Json::array()}};
  const json::Json j = report_to_json(r);
  EXPECT_EQ(report_from_json(j).failures, r.failures);
  json::Json bad = j;
  bad["failures"] = 3;
  expect_config_error([&] { report_from_json(bad); }, {"report.failures = 3", "must be an object"});
}

TEST(ReportJson, FinishTimesAndSpansAreNotInTheFile) {
  Report r = sample_report();
  r.ranks[1].finish_s = 0.12;
  r.spans = {{0, 3, 0.0, 0.5}};
  const Report back = report_from_json(report_to_json(r));
  EXPECT_EQ(back.ranks[1].finish_s, 0.0);
  EXPECT_TRUE(back.spans.empty());
  EXPECT_EQ(report_to_json(back), report_to_json(r));
}

// The "JSON counts written as floats" defect: counts are integers, byte for byte.
TEST(ReportJson, CountsAreIntegers) {
  const json::Json j = report_to_json(sample_report());
  for (const json::Json* v :
       {&j["world_size"], &j["global_batch_size"], &j["seq_length"],
        &j["simulation"]["simulated_ranks"], &j["simulation"]["simgrid_activities"],
        &j["ranks"][2]["rank"], &j["ranks"][2]["stage"]}) {
    EXPECT_TRUE(v->is_number_integer()) << v->dump();
  }
  EXPECT_NE(j.dump().find("\"simgrid_activities\":123456789012,"), std::string::npos) << j.dump();
}

TEST(ReportJson, ReadsTheFloatActivitiesOfEarlierReports) {
  json::Json j = report_to_json(sample_report());
  j["simulation"]["simgrid_activities"] = 1069394.0;
  EXPECT_EQ(report_from_json(j).simulation.simgrid_activities, 1069394);
}

TEST(ReportJson, AnotherKindOrSchemaVersionIsRefusedNamingTheFile) {
  json::Json j = report_to_json(sample_report());
  j["kind"] = "strata.trace";
  expect_config_error([&] { report_from_json(j, "out/r.json"); },
                      {"out/r.json: report.kind = \"strata.trace\"", "strata.report"});
  j = report_to_json(sample_report());
  j["schema_version"] = 2;
  expect_config_error([&] { report_from_json(j, "out/r.json"); },
                      {"out/r.json: report.schema_version = 2", "schema version 1"});
}

TEST(ReportJson, MissingFieldWrongTypeOrUnknownKeyNamesTheField) {
  const json::Json good = report_to_json(sample_report());
  json::Json j = good;
  j.erase("mfu");
  expect_config_error([&] { report_from_json(j, "r.json"); },
                      {"r.json: report.mfu: required key is missing"});
  j = good;
  j["simulation"]["simgrid_activities"] = 1.5;
  expect_config_error([&] { report_from_json(j, "r.json"); },
                      {"report.simulation.simgrid_activities = 1.5", "integer"});
  j = good;
  j["ranks"][1]["compute_s"] = "fast";
  expect_config_error([&] { report_from_json(j, "r.json"); },
                      {"report.ranks[1].compute_s = \"fast\"", "number"});
  j = good;
  j["ranks"][2]["fits"] = true;  // 90 GB in 80 GB
  expect_config_error([&] { report_from_json(j, "r.json"); }, {"report.ranks[2].fits"});
  j = good;
  j["ranks"].erase(2);
  expect_config_error([&] { report_from_json(j, "r.json"); }, {"report.ranks", "world_size (3)"});
  j = good;
  j["simulation"]["speed_factor"] = 1;
  expect_config_error([&] { report_from_json(j, "r.json"); },
                      {"report.simulation.speed_factor: unknown key"});
}

TEST(ReportJson, ReadReportNamesThePath) {
  const std::string path = ::testing::TempDir() + "report-" + std::to_string(::getpid()) + ".json";
  json::Json j = report_to_json(sample_report());
  std::ofstream(path) << j.dump(2);
  EXPECT_EQ(read_report(path).ranks.size(), 3u);
  j["world_size"] = "three";
  std::ofstream(path) << j.dump(2);
  expect_config_error([&] { read_report(path); }, {path + ": report.world_size = \"three\""});
  std::filesystem::remove(path);
}

TEST(ReportTable, OneRowPerPipelineStage) {
  const std::string table = render_report(sample_report());
  EXPECT_NE(
      table.find("Strata simulation: gpt-test on test-cluster (3 GPUs), strategy dp1-tp1-pp3"),
      std::string::npos)
      << table;
  EXPECT_NE(table.find("DOES NOT FIT"), std::string::npos) << table;
  EXPECT_NE(table.find("    0          0.1000    0.0200     0.0100    0.0050"), std::string::npos)
      << table;
  EXPECT_NE(table.find("    2          2.1000"), std::string::npos) << table;
  // The efficiency class that priced each device is named (an H200 priced as an H100).
  EXPECT_NE(table.find("priced as          H200-SXM-141GB: roofline class 'h100'"),
            std::string::npos)
      << table;
}

TEST(ReportJson, DeviceClassesRoundTripAndMayBeAbsent) {
  json::Json j = report_to_json(sample_report());
  ASSERT_EQ(j["simulation"]["device_classes"].size(), 1u);
  EXPECT_EQ(j["simulation"]["device_classes"][0]["class"], "h100");
  EXPECT_EQ(report_from_json(j).simulation.device_classes, sample_report().simulation.device_classes);
  j["simulation"].erase("device_classes");  // a report written before the field existed
  EXPECT_TRUE(report_from_json(j).simulation.device_classes.empty());
  j["simulation"]["device_classes"] = {{{"device", "A100"}, {"kind", "x"}}};
  expect_config_error([&] { report_from_json(j); },
                      {"simulation.device_classes[0].class", "required key is missing"});
}

}  // namespace
}  // namespace strata::results
