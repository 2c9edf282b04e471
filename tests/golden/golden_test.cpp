// Golden end-to-end simulations: every scenario below runs `strata simulate` in its own process
// and its report.json must match tests/golden/expected/<scenario>.report.json field by field
// (floats to a relative 1e-9, provenance.strata_version ignored). With STRATA_UPDATE_GOLDEN=1
// a differing expected report is rewritten instead. Scenarios and the hand check: docs/golden.md.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/json.hpp"

namespace fs = std::filesystem;
using strata::json::Json;

namespace {

// Relative tolerance for floating-point fields: far below any modelling change, far above the
// last-bit differences another libm or compiler may give.
constexpr double kRelativeTolerance = 1e-9;

// Fields that legitimately differ between builds: the git describe of the binary.
const std::set<std::string> kIgnoredFields = {"provenance.strata_version"};

// One simulation: spec files under tests/golden/specs/ and the world size.
struct Scenario {
  std::string name;  // also the expected report's file name: expected/<name>.report.json
  std::string model;
  std::string cluster;
  std::string strategy;
  int gpus;
};

const std::vector<Scenario> kScenarios = {
    {"dp4", "gpt-golden.json", "dgx-a100-2n4g.json", "dp4.json", 4},
    {"tp4-sp", "gpt-golden.json", "dgx-a100-2n4g.json", "tp4-sp.json", 4},
    {"tp2-pp2-gpipe", "gpt-golden.json", "dgx-a100-2n4g.json", "tp2-pp2-gpipe.json", 4},
    {"pp4-interleaved", "gpt-golden.json", "dgx-a100-2n4g.json", "pp4-interleaved.json", 4},
    {"pp4-zb-h1", "gpt-golden.json", "dgx-a100-2n4g.json", "pp4-zb-h1.json", 4},
    {"dp8-zero3", "gpt-golden.json", "dgx-a100-2n4g.json", "dp8-zero3.json", 8},
    {"dp2-tp2-pp2-1f1b", "gpt-golden.json", "dgx-a100-2n4g.json", "dp2-tp2-pp2-1f1b.json", 8},
    {"dp4-ep4", "moe-golden.json", "dgx-a100-2n4g.json", "dp4-ep4.json", 4},
};

// Names the scenario in gtest's output instead of dumping the struct's bytes.
void PrintTo(const Scenario& s, std::ostream* os) { *os << s.name; }

fs::path golden_dir() { return fs::path(STRATA_SOURCE_DIR) / "tests" / "golden"; }
fs::path expected_path(const std::string& name) {
  return golden_dir() / "expected" / (name + ".report.json");
}

bool update_requested() {
  const char* v = std::getenv("STRATA_UPDATE_GOLDEN");
  return v != nullptr && std::string(v) == "1";
}

std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string child_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

// Appends "<path>: expected <a>, got <b>" for every difference between two JSON values:
// objects key by key (missing and unexpected keys both count), arrays element by element,
// integers exactly, floating-point numbers to kRelativeTolerance, an integer where a float was
// (or the reverse) as a difference of representation, everything else exactly. Paths read like
// "ranks[3].compute_s".
void diff_json(const Json& expected, const Json& actual, const std::string& path,
               std::vector<std::string>* diffs) {
  if (kIgnoredFields.count(path) != 0) return;
  auto report = [&](const std::string& what) { diffs->push_back(path + ": " + what); };
  if (expected.is_number() && actual.is_number()) {
    if (expected.is_number_float() != actual.is_number_float()) {
      auto shown = [](const Json& v) {
        return (v.is_number_float() ? "float " : "integer ") + v.dump();
      };
      report("expected " + shown(expected) + ", got " + shown(actual));
    } else if (expected.is_number_float()) {
      const double a = expected.get<double>(), b = actual.get<double>();
      const double scale = std::max(std::abs(a), std::abs(b));
      if (!(a == b || std::abs(a - b) <= kRelativeTolerance * scale)) {
        std::ostringstream os;
        os.precision(3);
        os << "expected " << Json(a).dump() << ", got " << Json(b).dump()
           << " (relative difference " << std::abs(a - b) / scale << ")";
        report(os.str());
      }
    } else if (expected != actual) {
      report("expected " + expected.dump() + ", got " + actual.dump());
    }
    return;
  }
  if (expected.type() != actual.type()) {
    report("expected " + std::string(expected.type_name()) + " " + expected.dump() + ", got " +
           actual.type_name() + " " + actual.dump());
    return;
  }
  if (expected.is_object()) {
    for (const auto& [key, value] : expected.items()) {
      const std::string p = child_path(path, key);
      if (!actual.contains(key)) {
        if (kIgnoredFields.count(p) == 0) diffs->push_back(p + ": missing from the new report");
      } else {
        diff_json(value, actual.at(key), p, diffs);
      }
    }
    for (const auto& [key, value] : actual.items()) {
      const std::string p = child_path(path, key);
      if (!expected.contains(key) && kIgnoredFields.count(p) == 0) {
        diffs->push_back(p + ": new field, " + value.dump());
      }
    }
  } else if (expected.is_array()) {
    if (expected.size() != actual.size()) {
      report("expected " + std::to_string(expected.size()) + " elements, got " +
             std::to_string(actual.size()));
    }
    for (std::size_t i = 0; i < std::min(expected.size(), actual.size()); ++i) {
      diff_json(expected[i], actual[i], path + "[" + std::to_string(i) + "]", diffs);
    }
  } else if (expected != actual) {
    report("expected " + expected.dump() + ", got " + actual.dump());
  }
}

std::vector<std::string> diff_json(const Json& expected, const Json& actual) {
  std::vector<std::string> diffs;
  diff_json(expected, actual, "", &diffs);
  return diffs;
}

class Golden : public ::testing::TestWithParam<Scenario> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("strata-golden-" + std::to_string(::getpid()) + "-" + GetParam().name);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
};

TEST_P(Golden, Report) {
  const Scenario& s = GetParam();
  const fs::path specs = golden_dir() / "specs";
  const fs::path report = dir_ / "report.json", log = dir_ / "output.txt";
  const std::string cmd = std::string(STRATA_EXE) + " simulate --model " + quoted(specs / s.model) +
                          " --cluster " + quoted(specs / s.cluster) + " --strategy " +
                          quoted(specs / s.strategy) + " --gpus " + std::to_string(s.gpus) +
                          " --json " + quoted(report) + " >" + quoted(log) + " 2>&1";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << cmd << "\nfailed with status " << status << ":\n"
      << read_text(log);

  const Json actual = strata::json::parse_file(report.string());
  const fs::path expected_file = expected_path(s.name);
  std::vector<std::string> diffs;
  if (fs::exists(expected_file)) {
    diffs = diff_json(strata::json::parse_file(expected_file.string()), actual);
  } else {
    diffs.push_back(expected_file.string() + " does not exist");
  }

  if (update_requested()) {
    // Only a report that really changed is rewritten, so that `git diff` shows nothing else.
    if (!diffs.empty()) {
      fs::copy_file(report, expected_file, fs::copy_options::overwrite_existing);
      std::cout << "[golden] rewrote " << expected_file.string() << " (" << diffs.size()
                << " differences); review with git diff\n";
    }
    return;
  }
  std::ostringstream os;
  for (const std::string& d : diffs) os << "  " << d << "\n";
  EXPECT_TRUE(diffs.empty()) << s.name << ": the report differs from " << expected_file.string()
                             << " in " << diffs.size() << " field(s):\n"
                             << os.str()
                             << "If the change is intended, regenerate with "
                                "STRATA_UPDATE_GOLDEN=1 ctest -R Golden and review git diff "
                                "(docs/golden.md).";
}

std::string scenario_name(const ::testing::TestParamInfo<Scenario>& info) {
  std::string name = info.param.name;
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

INSTANTIATE_TEST_SUITE_P(Scenarios, Golden, ::testing::ValuesIn(kScenarios), scenario_name);

// Every checked-in report belongs to a scenario, so none is left behind stale.
TEST(GoldenFiles, EveryExpectedReportHasAScenario) {
  std::set<std::string> names;
  for (const Scenario& s : kScenarios) names.insert(s.name + ".report.json");
  for (const auto& entry : fs::directory_iterator(golden_dir() / "expected")) {
    EXPECT_EQ(names.count(entry.path().filename().string()), 1u)
        << entry.path() << " matches no scenario in golden_test.cpp";
  }
}

// The comparison itself: what it tolerates, what it reports and how it names the field.
TEST(GoldenCompare, ToleratesLastBitsButNotModelChanges) {
  const Json a = {{"step_time_s", 0.1}, {"ranks", {{{"compute_s", 2.0}}}}};
  Json b = a;
  b["step_time_s"] = 0.1 * (1 + 1e-12);
  EXPECT_TRUE(diff_json(a, b).empty());
  b["ranks"][0]["compute_s"] = 2.0 * (1 + 1e-6);
  const std::vector<std::string> diffs = diff_json(a, b);
  ASSERT_EQ(diffs.size(), 1u);
  EXPECT_EQ(diffs[0], "ranks[0].compute_s: expected 2.0, got 2.000002 (relative difference 1e-06)");
}

TEST(GoldenCompare, IntegersStringsAndShapesCompareExactly) {
  const Json a = {{"world_size", 8}, {"model", "gpt"}, {"ranks", {1, 2}}, {"fits", true}};
  Json b = {{"world_size", 9}, {"model", "gpt2"}, {"ranks", {1, 2, 3}}, {"fits", "yes"}};
  const std::vector<std::string> diffs = diff_json(a, b);
  ASSERT_EQ(diffs.size(), 4u);
  EXPECT_EQ(diffs[0], "fits: expected boolean true, got string \"yes\"");
  EXPECT_EQ(diffs[1], "model: expected \"gpt\", got \"gpt2\"");
  EXPECT_EQ(diffs[2], "ranks: expected 2 elements, got 3");
  EXPECT_EQ(diffs[3], "world_size: expected 8, got 9");
}

// Counts are integers: a count written as a float (or a float as an integer) is a difference,
// even when the value is the same.
TEST(GoldenCompare, IntegerAndFloatRepresentationsDiffer) {
  const Json a = {{"simgrid_activities", 844472}, {"idle_s", 0.0}};
  const Json b = {{"simgrid_activities", 844472.0}, {"idle_s", 0}};
  const std::vector<std::string> diffs = diff_json(a, b);
  ASSERT_EQ(diffs.size(), 2u);
  EXPECT_EQ(diffs[0], "idle_s: expected float 0.0, got integer 0");
  EXPECT_EQ(diffs[1], "simgrid_activities: expected integer 844472, got float 844472.0");
}

TEST(GoldenCompare, NamesMissingAndNewFieldsAndIgnoresOnlyTheVersion) {
  const Json a = {{"provenance", {{"strata_version", "0.1.0+abc"}, {"model_hash", "11"}}},
                  {"mfu", 0.5}};
  const Json b = {{"provenance", {{"strata_version", "0.1.0+def"}, {"model_hash", "12"}}},
                  {"bubble_fraction", 0.0}};
  const std::vector<std::string> diffs = diff_json(a, b);
  ASSERT_EQ(diffs.size(), 3u);
  EXPECT_EQ(diffs[0], "mfu: missing from the new report");
  EXPECT_EQ(diffs[1], "provenance.model_hash: expected \"11\", got \"12\"");
  EXPECT_EQ(diffs[2], "bubble_fraction: new field, 0.0");
}

}  // namespace
