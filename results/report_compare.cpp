// Two reports side by side (report_compare.hpp).
#include "results/report_compare.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <vector>

#include "common/units.hpp"

namespace strata::results {

namespace {

struct Figure {
  std::string name;
  double a = 0, b = 0;
  std::string unit;  // "s", "bytes", "" (a plain number), "%" (a fraction shown in percent)
};

json::Json figure_json(const Figure& f) {
  json::Json j = {{"a", f.a}, {"b", f.b}, {"difference", f.b - f.a}};
  j["relative"] = f.a != 0 ? json::Json(f.b / f.a - 1) : json::Json(nullptr);
  return j;
}

std::string shown(double v, const std::string& unit) {
  if (unit == "bytes") return units::format_bytes(v);
  if (unit == "%") return units::fixed(100 * v, 2) + " %";
  char text[48];
  std::snprintf(text, sizeof text, "%.6g", v);
  return text + (unit.empty() ? "" : " " + unit);
}

std::string figure_line(const Figure& f) {
  std::string rel = "-";
  if (f.a != 0) rel = (f.b >= f.a ? "+" : "") + units::fixed(100 * (f.b / f.a - 1), 2) + " %";
  std::string diff;
  if (f.unit == "bytes") {
    diff = (f.b >= f.a ? "+" : "-") + units::format_bytes(std::abs(f.b - f.a));
  } else if (f.unit == "%") {
    diff = (f.b >= f.a ? "+" : "") + units::fixed(100 * (f.b - f.a), 2) + " pt";
  } else {
    char text[48];
    std::snprintf(text, sizeof text, "%+.6g", f.b - f.a);
    diff = text;
  }
  char line[256];
  std::snprintf(line, sizeof line, "  %-24s %16s %16s %16s %10s\n", f.name.c_str(),
                shown(f.a, f.unit).c_str(), shown(f.b, f.unit).c_str(), diff.c_str(), rel.c_str());
  return line;
}

int stages_of(const Report& r) {
  int stages = 0;
  for (const auto& t : r.ranks) stages = std::max(stages, t.stage + 1);
  return stages;
}

const RankTimes* first_of_stage(const Report& r, int stage) {
  for (const auto& t : r.ranks) {
    if (t.stage == stage) return &t;
  }
  return nullptr;
}

}  // namespace

ReportComparison compare_reports(const Report& a, const Report& b, const std::string& pa,
                                 const std::string& pb) {
  const std::vector<Figure> step = {
      {"step time", a.step_time_s, b.step_time_s, "s"},
      {"tokens/s", a.tokens_per_s, b.tokens_per_s, ""},
      {"TFLOP/s per GPU", a.tflops_per_gpu, b.tflops_per_gpu, ""},
      {"hardware TFLOP/s per GPU", a.hardware_tflops_per_gpu, b.hardware_tflops_per_gpu, ""},
      {"MFU", a.mfu, b.mfu, "%"},
      {"bubble", a.bubble_fraction, b.bubble_fraction, "%"},
      {"world size", double(a.world_size), double(b.world_size), ""},
      {"global batch", double(a.global_batch_size), double(b.global_batch_size), ""},
      {"sequence length", double(a.seq_length), double(b.seq_length), ""}};
  const int stages = std::max(stages_of(a), stages_of(b));
  json::Json j = {{"kind", "strata.report_comparison"},
                  {"a", {{"file", pa}, {"model", a.model}, {"cluster", a.cluster},
                         {"strategy", a.strategy}, {"fits", a.fits}}},
                  {"b", {{"file", pb}, {"model", b.model}, {"cluster", b.cluster},
                         {"strategy", b.strategy}, {"fits", b.fits}}}};
  json::Json figures = json::Json::object();
  const char* keys[] = {"step_time_s", "tokens_per_s", "tflops_per_gpu",
                        "hardware_tflops_per_gpu", "mfu", "bubble_fraction",
                        "world_size", "global_batch_size", "seq_length"};
  for (std::size_t i = 0; i < step.size(); ++i) figures[keys[i]] = figure_json(step[i]);
  j["figures"] = figures;
  std::ostringstream os;
  os << "A: " << pa << ": " << a.model << " on " << a.cluster << ", " << a.strategy
     << (a.fits ? "" : " (DOES NOT FIT)") << "\n";
  os << "B: " << pb << ": " << b.model << " on " << b.cluster << ", " << b.strategy
     << (b.fits ? "" : " (DOES NOT FIT)") << "\n";
  char head[256];
  std::snprintf(head, sizeof head, "  %-24s %16s %16s %16s %10s\n", "", "A", "B", "B - A",
                "B / A - 1");
  os << head;
  for (const Figure& f : step) os << figure_line(f);
  json::Json per_stage = json::Json::array();
  for (int stage = 0; stage < stages; ++stage) {
    const RankTimes* ta = first_of_stage(a, stage);
    const RankTimes* tb = first_of_stage(b, stage);
    os << "  stage " << stage << " (its first rank)";
    if (!ta || !tb) {
      os << ": only in " << (ta ? "A" : "B") << "\n";
      per_stage.push_back({{"stage", stage}, {"only_in", ta ? "a" : "b"}});
      continue;
    }
    os << "\n";
    const std::vector<Figure> rows = {
        {"  compute", ta->compute_s, tb->compute_s, "s"},
        {"  communication", ta->communication_s, tb->communication_s, "s"},
        {"  exposed communication", ta->exposed_comm_s, tb->exposed_comm_s, "s"},
        {"  idle", ta->idle_s, tb->idle_s, "s"},
        {"  peak memory", ta->peak_memory_bytes, tb->peak_memory_bytes, "bytes"}};
    const char* stage_keys[] = {"compute_s", "communication_s", "exposed_comm_s", "idle_s",
                                "peak_memory_bytes"};
    json::Json row = {{"stage", stage}};
    for (std::size_t i = 0; i < rows.size(); ++i) {
      os << figure_line(rows[i]);
      row[stage_keys[i]] = figure_json(rows[i]);
    }
    per_stage.push_back(row);
  }
  j["stages"] = per_stage;
  return {std::move(j), os.str()};
}

}  // namespace strata::results
