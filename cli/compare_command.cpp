// `strata compare`: a predicted and a measured trace of the same Plan, joined task by task
// (results/trace_compare.hpp, docs/validate.md); or two reports (report.json), their figures
// side by side with the differences, per pipeline stage.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "common/error.hpp"
#include "common/units.hpp"
#include "results/report.hpp"
#include "results/trace_compare.hpp"

namespace strata::cli {

const char* const kCompareHelp =
    R"(Usage: strata compare PREDICTED.json MEASURED.json [options]
       strata compare A/report.json B/report.json [--json FILE]

Two reports (`strata simulate --json`, kind "strata.report"): print their figures side by side
-- step time, tokens/s, model and hardware TFLOP/s per GPU, MFU, bubble, world size, batch and
sequence, whether they fit -- and per pipeline stage (its first rank, as `strata simulate`
prints it) compute, communication, exposed communication and idle seconds and peak memory, each
with B - A and B / A - 1. --json writes the same as JSON. A report is not compared with a trace.

Two traces: join a predicted trace (`strata simulate --trace`, with --trace-ranks all to see every rank)
and a measured one (`strata run --trace`) of the same model and strategy on their task ids, and
print predicted against measured: the step, the idle time of the compute streams, the sums per
category of task (compute by block and pass, each collective by kind and purpose, transfers)
with their relative errors (predicted / measured - 1), the worst-predicted tasks, and how many
tasks only one trace has. Traces of different models or strategies are refused.

Options:
  --csv FILE     write one row per joined task (rank, task, name, category, predicted_s,
                 measured_s, error)
  --json FILE    write the comparison as JSON ('-' for stdout, replacing the table)
  --worst N      how many worst-predicted tasks to list (default 10)
  --help         show this help
)";

namespace {

enum class FileKind { kReport, kTrace };

// Which of our formats a file is: report.json carries kind "strata.report"; a trace is a
// Chrome trace whose otherData has kind "strata.trace".
FileKind kind_of(const json::Json& j, const std::string& path) {
  if (j.is_object() && j.contains("kind") && j["kind"] == results::kReportKind) {
    return FileKind::kReport;
  }
  if (j.is_object() && j.contains("traceEvents")) return FileKind::kTrace;
  std::string kind = "none";
  if (j.is_object() && j.contains("kind")) kind = json::show(j["kind"]);
  throw ConfigError(path + ": neither a report (kind \"strata.report\", from strata simulate "
                    "--json) nor a trace (traceEvents, from --trace); its kind is " + kind);
}

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

int stages_of(const results::Report& r) {
  int stages = 0;
  for (const auto& t : r.ranks) stages = std::max(stages, t.stage + 1);
  return stages;
}

const results::RankTimes* first_of_stage(const results::Report& r, int stage) {
  for (const auto& t : r.ranks) {
    if (t.stage == stage) return &t;
  }
  return nullptr;
}

int compare_reports(const json::Json& ja, const std::string& pa, const json::Json& jb,
                    const std::string& pb, const Args& args) {
  const results::Report a = results::report_from_json(ja, pa);
  const results::Report b = results::report_from_json(jb, pb);
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
    const results::RankTimes* ta = first_of_stage(a, stage);
    const results::RankTimes* tb = first_of_stage(b, stage);
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
  if (const auto path = args.get("--json")) write_outputs({{*path, j.dump(2) + "\n"}});
  if (args.get("--json") != "-") std::cout << os.str();
  return kExitOk;
}

}  // namespace

int compare_command(const std::vector<std::string>& argv) {
  if (asks_for_help(argv)) {
    std::cout << kCompareHelp;
    return kExitOk;
  }
  if (argv.size() < 2 || argv[0].rfind("-", 0) == 0 || argv[1].rfind("-", 0) == 0) {
    throw ConfigError("expected two trace files (PREDICTED.json MEASURED.json) or two report "
                      "files, before the options (see strata compare --help)");
  }
  const std::string predicted = argv[0], measured = argv[1];
  const json::Json ja = json::parse_file(predicted), jb = json::parse_file(measured);
  const FileKind ka = kind_of(ja, predicted), kb = kind_of(jb, measured);
  if (ka != kb) {
    const std::string& report = ka == FileKind::kReport ? predicted : measured;
    const std::string& trace = ka == FileKind::kReport ? measured : predicted;
    throw ConfigError("cannot compare a report with a trace: " + report + " is a report "
                      "(strata simulate --json) and " + trace + " a trace (--trace); give two "
                      "reports or two traces");
  }
  if (ka == FileKind::kReport) {
    return compare_reports(ja, predicted, jb, measured,
                           Args(std::vector<std::string>(argv.begin() + 2, argv.end()), {"--json"},
                                {}, {}));
  }
  const Args args(std::vector<std::string>(argv.begin() + 2, argv.end()),
                  {"--csv", "--json", "--worst"}, {}, {});
  const int worst = args.get_positive_int("--worst").value_or(10);
  const results::TraceComparison c = results::compare_traces(
      results::read_trace(predicted), results::read_trace(measured), predicted, measured);
  std::vector<Output> outputs;
  if (const auto path = args.get("--csv")) outputs.push_back({*path, results::comparison_csv(c)});
  if (const auto path = args.get("--json")) {
    outputs.push_back({*path, results::comparison_to_json(c, worst).dump(2) + "\n"});
  }
  write_outputs(outputs);
  if (args.get("--json") != "-") std::cout << results::render_comparison(c, worst);
  return kExitOk;
}

}  // namespace strata::cli
