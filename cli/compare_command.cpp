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
#include "results/report_compare.hpp"
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

Outputs are checked before any work (none may be an input or share another output's path;
their directories must be writable) and written all or none: a failure leaves none of them.

Exit codes: 0 success, 1 invalid input, 2 usage error, 3 does not fit in memory, 4 runtime
failure, 70 internal error (the table: strata --help, cli/README.md).
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

int compare_reports(const json::Json& ja, const std::string& pa, const json::Json& jb,
                    const std::string& pb, const Args& args) {
  const results::ReportComparison c = results::compare_reports(
      results::report_from_json(ja, pa), results::report_from_json(jb, pb), pa, pb);
  const json::Json& j = c.json;
  if (const auto path = args.get("--json")) write_outputs({{"--json", *path, j.dump(2) + "\n"}});
  if (args.get("--json") != "-") std::cout << c.text;
  return kExitOk;
}

}  // namespace

int compare_command(const std::vector<std::string>& argv) {
  if (asks_for_help(argv)) {
    std::cout << kCompareHelp;
    return kExitOk;
  }
  if (argv.size() < 2 || argv[0].rfind("-", 0) == 0 || argv[1].rfind("-", 0) == 0) {
    throw UsageError("expected two trace files (PREDICTED.json MEASURED.json) or two report "
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
    const Args args(std::vector<std::string>(argv.begin() + 2, argv.end()), {"--json"}, {}, {});
    check_paths({{"A", predicted}, {"B", measured}}, flag_paths(args, {"--json"}));
    return compare_reports(ja, predicted, jb, measured, args);
  }
  const Args args(std::vector<std::string>(argv.begin() + 2, argv.end()),
                  {"--csv", "--json", "--worst"}, {}, {});
  const int worst = args.get_positive_int("--worst").value_or(10);
  check_paths({{"PREDICTED", predicted}, {"MEASURED", measured}},
              flag_paths(args, {"--csv", "--json"}));
  const results::TraceComparison c = results::compare_traces(
      results::read_trace(predicted), results::read_trace(measured), predicted, measured);
  std::vector<Output> outputs;
  if (const auto path = args.get("--csv")) outputs.push_back({"--csv", *path, results::comparison_csv(c)});
  if (const auto path = args.get("--json")) {
    outputs.push_back({"--json", *path, results::comparison_to_json(c, worst).dump(2) + "\n"});
  }
  write_outputs(outputs);
  if (args.get("--json") != "-") std::cout << results::render_comparison(c, worst);
  return kExitOk;
}

}  // namespace strata::cli
