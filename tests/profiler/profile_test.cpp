// profile.json and links.json: round trips, the refusals (naming file, field and value), the
// bus-bandwidth factors of nccl-tests and the latency/bandwidth fit of a curve.
#include "profiler/profile.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "tests/strategies/expect_config_error.hpp"

namespace strata::profiler {
namespace {

using json::Json;
using strategies::testing::expect_config_error;

MeasuredOn here() {
  MeasuredOn m;
  m.device = "Test CPU";
  m.device_kind = "cpu";
  m.host = "test-host";
  m.date = "2026-12-06T12:00:00Z";
  m.strata_version = "test";
  m.libraries = {{"eigen", "3.4.0"}};
  return m;
}

OpProfile an_op_profile() {
  OpProfile p;
  p.on = here();
  p.warmup = 2;
  p.repetitions = 5;
  p.trials = 2;
  p.model = "gpt-tiny";
  p.strategy = "tiny-1rank";
  p.cluster = "local-cpu";
  OpMeasurement m;
  m.key.kind = strategies::OpKind::kLinear;
  m.key.dtype = strategies::DType::kFp32;
  m.key.n_in = 3;
  m.key.n_out = 1;
  m.key.dims = {64, 64, 192, 0, 0, 0};
  m.median_s = 2e-5;
  m.min_s = 1.8e-5;
  m.max_s = 3e-5;
  m.repetitions = 5;
  p.ops.push_back(m);
  return p;
}

// Absurd but finite numbers would become absurd task times in the simulator, or wrap when
// narrowed to an int: each is refused with its range (docs/profiles.md).
TEST(OpProfileFile, AbsurdNumbersAreRefusedWithTheirRange) {
  const Json good = op_profile_to_json(an_op_profile());
  const std::vector<std::pair<std::function<void(Json&)>, std::vector<std::string>>> cases = {
      {[](Json& j) { j["ops"][0]["max_s"] = 1e300; },
       {"profile.ops[0].max_s = 1e+300", "must be a time from 1e-12 to 1e+05 s"}},
      {[](Json& j) { j["ops"][0]["min_s"] = 1e-300; }, {"profile.ops[0].min_s = 1e-300"}},
      {[](Json& j) { j["ops"][0]["dims"][2] = 1LL << 41; },
       {"profile.ops[0].dims[2] = 2199023255552", "from 0 to 2^40"}},
      {[](Json& j) { j["ops"][0]["dims"][0] = 18446744073709551615ULL; },
       {"profile.ops[0].dims[0] = 18446744073709551615", "from 0 to 2^40"}},
      {[](Json& j) { j["ops"][0]["repetitions"] = 4294967297LL; },
       {"profile.ops[0].repetitions = 4294967297", "from 1 to 1000000000"}},
      {[](Json& j) { j["settings"]["repetitions"] = 4294967301LL; },
       {"profile.settings.repetitions = 4294967301", "from 1 to 1000000"}},
      {[](Json& j) { j["settings"]["trials"] = 4294967297LL; },
       {"profile.settings.trials = 4294967297", "from 1 to repetitions"}},
      {[](Json& j) { j["measured_on"]["libraries"][std::string(5000, 'l')] = 1; },
       {"profile.measured_on.libraries.llll", "...", "must be a string"}},
  };
  for (const auto& [change, expected] : cases) {
    Json j = good;
    change(j);
    expect_config_error([&] { op_profile_from_json(j, "p.json"); }, expected);
  }
}

TEST(OpProfileFile, RoundTrips) {
  const OpProfile p = an_op_profile();
  const Json j = op_profile_to_json(p);
  EXPECT_EQ(j["kind"], "strata-op-profile");
  EXPECT_EQ(j["ops"][0]["op"], "linear");
  const OpProfile back = op_profile_from_json(j, "p.json");
  EXPECT_EQ(op_profile_to_json(back), j);
  EXPECT_EQ(back.ops[0].key, p.ops[0].key);
  EXPECT_EQ(back.on.libraries.at("eigen"), "3.4.0");
  EXPECT_EQ(back.trials, 2);
  // A profile written before trials existed reads as one pass.
  Json old = j;
  old["settings"].erase("trials");
  EXPECT_EQ(op_profile_from_json(old, "p.json").trials, 1);
}

TEST(OpProfileFile, BadFilesNameFileFieldAndValue) {
  const Json good = op_profile_to_json(an_op_profile());
  Json j = good;
  j["schema_version"] = 7;
  expect_config_error([&] { op_profile_from_json(j, "p.json"); },
                      {"p.json: profile.schema_version = 7", "reads version 1"});
  j = good;
  j["ops"][0]["median_s"] = -1.0;
  expect_config_error([&] { op_profile_from_json(j, "p.json"); },
                      {"p.json: profile.ops[0].median_s = -1",
                       "must be a time from 1e-12 to 1e+05 s"});
  j = good;
  j["ops"][0]["op"] = "conv2d";
  expect_config_error([&] { op_profile_from_json(j, "p.json"); },
                      {"profile.ops[0].op = \"conv2d\"", "\"linear\""});
  j = good;
  j["ops"][0]["dims"] = {1, 2, 3};
  expect_config_error([&] { op_profile_from_json(j, "p.json"); },
                      {"profile.ops[0].dims", "6 integers"});
  j = good;
  j["ops"][0]["min_s"] = 1.0;
  expect_config_error([&] { op_profile_from_json(j, "p.json"); },
                      {"profile.ops[0].median_s", "between min_s"});
  j = good;
  j["measured_on"]["device_kind"] = "tpu";
  expect_config_error([&] { op_profile_from_json(j, "p.json"); },
                      {"profile.measured_on.device_kind = \"tpu\""});
  j = good;
  j["settings"]["trials"] = 6;
  expect_config_error([&] { op_profile_from_json(j, "p.json"); },
                      {"p.json: profile.settings.trials = 6", "from 1 to repetitions"});
  j = good;
  j["kind"] = "strata-link-profile";
  expect_config_error([&] { op_profile_from_json(j, "p.json"); },
                      {"profile.kind = \"strata-link-profile\"", "strata-op-profile"});
}

TEST(LinkProfileFile, BusBandwidthFactorsAreNcclTests) {
  EXPECT_DOUBLE_EQ(busbw_factor(LinkCollective::kAllReduce, 8), 2.0 * 7 / 8);
  EXPECT_DOUBLE_EQ(busbw_factor(LinkCollective::kAllGather, 8), 7.0 / 8);
  EXPECT_DOUBLE_EQ(busbw_factor(LinkCollective::kReduceScatter, 4), 3.0 / 4);
  EXPECT_DOUBLE_EQ(busbw_factor(LinkCollective::kAllToAll, 2), 0.5);
  EXPECT_DOUBLE_EQ(busbw_factor(LinkCollective::kBroadcast, 8), 1.0);
  EXPECT_DOUBLE_EQ(busbw_factor(LinkCollective::kSendRecv, 2), 1.0);
}

LinkCurve exact_curve(double latency, double busbw) {
  // An all-reduce over 4 ranks whose times follow the model exactly.
  LinkCurve c;
  c.collective = LinkCollective::kAllReduce;
  c.ranks = 4;
  c.fabric = "shared";
  for (double bytes : {1e3, 1e5, 1e7, 1e8}) {
    c.points.push_back({bytes, latency + bytes * 1.5 / busbw});
  }
  return c;
}

TEST(LinkProfileFile, FitRecoversLatencyAndBusBandwidth) {
  const LinkFit f = fit_curve(exact_curve(20e-6, 5e9));
  EXPECT_NEAR(f.latency_s, 20e-6, 1e-12);
  EXPECT_NEAR(f.busbw_Bps / 5e9, 1.0, 1e-9);
  // The fit is in relative error: a latency that an absolute fit would lose in the largest
  // sizes' noise (1% on 1e8 bytes is 300 us against a 20 us latency) is recovered from the
  // small sizes.
  LinkCurve noisy = exact_curve(20e-6, 5e9);
  noisy.points.push_back({3e8, 1.01 * (20e-6 + 3e8 * 1.5 / 5e9)});
  const LinkFit nf = fit_curve(noisy);
  EXPECT_NEAR(nf.latency_s, 20e-6, 1e-6);
  EXPECT_NEAR(nf.busbw_Bps / 5e9, 1.0, 0.01);
  // A curve whose intercept would be negative is fitted through the origin.
  LinkCurve c = exact_curve(0, 5e9);
  c.points[0].time_s *= 0.5;
  EXPECT_EQ(fit_curve(c).latency_s, 0);
}

TEST(LinkProfileFile, RoundTripsAndRefusesBadCurves) {
  LinkProfile p;
  p.on = here();
  p.backend = "mpi";
  p.curves.push_back(exact_curve(20e-6, 5e9));
  p.curves.back().fit = fit_curve(p.curves.back());
  const Json j = link_profile_to_json(p);
  EXPECT_NEAR(j["curves"][0]["points"][3]["busbw_GBps"].get<double>(),
              1e8 * 1.5 / (20e-6 + 1e8 * 1.5 / 5e9) / 1e9, 1e-9);
  const LinkProfile back = link_profile_from_json(j, "l.json");
  EXPECT_EQ(link_profile_to_json(back), j);
  Json bad = j;
  bad["curves"][0]["points"][1]["bytes"] = 10;
  expect_config_error([&] { link_profile_from_json(bad, "l.json"); },
                      {"l.json: links.curves[0].points[1].bytes = 10", "ascend"});
  bad = j;
  bad["curves"][0]["collective"] = "all-reduce";
  expect_config_error([&] { link_profile_from_json(bad, "l.json"); },
                      {"links.curves[0].collective = \"all-reduce\"", "\"all_reduce\""});
  bad = j;
  bad["curves"][0]["ranks"] = 1;
  expect_config_error([&] { link_profile_from_json(bad, "l.json"); },
                      {"links.curves[0].ranks = 1"});
  bad = j;
  bad["backend"] = "gloo";
  expect_config_error([&] { link_profile_from_json(bad, "l.json"); },
                      {"links.backend = \"gloo\""});
  // Absurd but finite numbers, each with its range.
  bad = j;
  bad["curves"][0]["points"][0]["time_s"] = 1e-300;
  expect_config_error([&] { link_profile_from_json(bad, "l.json"); },
                      {"links.curves[0].points[0].time_s = 1e-300", "from 1e-12 to 1e+05 s"});
  bad = j;
  bad["curves"][0]["fit"]["busbw_GBps"] = 1e-300;
  expect_config_error([&] { link_profile_from_json(bad, "l.json"); },
                      {"links.curves[0].fit.busbw_GBps = 1e-300", "1 kB/s to 1 PB/s"});
  bad = j;
  bad["curves"][0]["fit"]["latency_s"] = 1e300;
  expect_config_error([&] { link_profile_from_json(bad, "l.json"); },
                      {"links.curves[0].fit.latency_s = 1e+300", "from 0 to 1 s"});
  bad = j;
  bad["curves"][0]["ranks"] = 4294967298LL;
  expect_config_error([&] { link_profile_from_json(bad, "l.json"); },
                      {"links.curves[0].ranks = 4294967298", "2 to 1048576 ranks"});
}

}  // namespace
}  // namespace strata::profiler
