// `strata compare`: a predicted and a measured trace of the same Plan, joined task by task
// (results/trace_compare.hpp, docs/validate.md).
#include <iostream>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "common/error.hpp"
#include "results/trace_compare.hpp"

namespace strata::cli {

const char* const kCompareHelp =
    R"(Usage: strata compare PREDICTED.json MEASURED.json [options]

Join a predicted trace (`strata simulate --trace`, with --trace-ranks all to see every rank)
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

Exit codes: 0 success, 1 invalid input, 2 usage error, 3 does not fit in memory, 4 runtime
failure, 70 internal error (the table: strata --help, cli/README.md).
)";

int compare_command(const std::vector<std::string>& argv) {
  if (asks_for_help(argv)) {
    std::cout << kCompareHelp;
    return kExitOk;
  }
  if (argv.size() < 2 || argv[0].rfind("-", 0) == 0 || argv[1].rfind("-", 0) == 0) {
    throw UsageError("expected two trace files, PREDICTED.json MEASURED.json, before the options "
                      "(see strata compare --help)");
  }
  const std::string predicted = argv[0], measured = argv[1];
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
