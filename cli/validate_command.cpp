// `strata validate`: close the loop on this machine. Profiles the Plan's ops and the links (or
// takes given profiles), simulates the Plan with those measured costs, runs the executor for real
// under mpirun, and joins the two traces task by task (docs/validate.md). Each stage is this same
// executable started as a child (one SimGrid engine per process; mpirun needs its own
// processes), its output in a log; the results land in one directory, whole or not at all.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/launch.hpp"
#include "cli/specs.hpp"
#include "common/error.hpp"
#include "common/json.hpp"
#include "results/trace_compare.hpp"

namespace strata::cli {

const char* const kValidateHelp =
    R"(Usage: strata validate --model M --strategy S --np N [options]

Compare a prediction with reality on this machine, task by task. In order:
  1. profile ops     time every distinct op of the Plan on this CPU (`strata profile ops`),
                     unless --profile gives a profile.json
  2. profile links   measure the collectives under `mpirun -np N` (`strata profile links`),
                     unless --links gives a links.json (skipped for N = 1: nothing to send)
  3. simulate        predict one step with those measured costs on the cluster spec of this
                     machine (`strata simulate --exact`, every rank traced)
  4. run             train for real under `mpirun -np N` (`strata run`) and keep the last step's
                     trace
  5. compare         join the predicted and measured traces on their task ids
                     (`strata compare`)
and print the step time predicted against measured, then per category of task (compute by block
and pass, each collective kind, transfers) and the idle time, with relative errors
(predicted / measured - 1), and the worst-predicted tasks.

Required:
  --model M          model spec file or bundled name (configs/models/), e.g. gpt-10m
  --strategy S       strategy spec file or bundled name (configs/strategies/)
  --set PATH=VALUE   override a spec field in every stage (repeatable; docs/specs.md)
  --np N             ranks to run: must equal the strategy's dp * tp * pp * cp

Options:
  --cluster C        the cluster spec of this machine (default: local-cpu)
  --out DIR          where the results go (default: validate-<strategy>-np<N>); written under
                     DIR.partial and renamed to DIR at the end, replacing an older DIR; a failed
                     stage leaves DIR.partial with its logs; inputs inside an older DIR (its
                     profiles, given to a rerun) are kept in the new one
  --profile FILES    use these op profiles instead of profiling (comma-separated)
  --links FILES      use these link profiles instead of measuring (comma-separated)
  --steps K          training steps to run (default 5, at least 2): the measured step time is
                     the median of steps 2..K (step 1 allocates); the trace is step K's
  --warmup W         profile ops: untimed runs per op (default 2)
  --repetitions R    profile ops: timed runs per op (default 30)
  --trials T         profile ops: passes over the ops sharing those runs (default 10)
  --max-bytes B      profile links: the largest message (default 64M)
  --mpirun CMD       the launcher's words before the program, e.g. "mpirun -np 2 --bind-to core"
                     (default: the mpiexec of the build with -np N, plus --allow-run-as-root as
                     root and --oversubscribe with more ranks than cores)
  --worst N          worst-predicted tasks to list (default 10)
  --help             show this help

Files in DIR: profile.json and links.json (when measured here), report.json and predicted.json
(the simulation and its trace), run.json and measured.json (the run and its trace), joined.csv
(one row per task: rank, task, name, category, predicted_s, measured_s, error), summary.json
(kind "strata.validation": the stages' commands, both step times, the measured-cost counts and
the comparison) and logs/ (each stage's output).

Run it on an otherwise idle machine: another process on the cores slows the measured run but
not the profiles taken before it. A stage that fails on invalid input exits 1 (3 when the
strategy does not fit), one that fails otherwise 4.

Example:
  strata validate --model gpt-10m --strategy bench-10m-dp2 --np 2

Exit codes: 0 success, 1 invalid input, 2 usage error, 3 does not fit in memory, 4 runtime
failure, 70 internal error (the table: strata --help, cli/README.md).
)";

namespace {

namespace fs = std::filesystem;

struct Stage {
  std::string name;  // "profile-ops": also its log's name
  std::vector<std::string> argv;
};

std::string seconds_text(double s) {
  char buf[32];
  if (s < 1.0) {
    std::snprintf(buf, sizeof buf, "%.2f ms", s * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.3f s", s);
  }
  return buf;
}

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Runs a stage, with a progress line; a failure is an error carrying the log's tail.
void run_stage(const Stage& s, int number, int count, const fs::path& logs) {
  const std::string log = (logs / (s.name + ".log")).string();
  std::cerr << "validate: [" << number << "/" << count << "] " << s.name << ": "
            << shell_words(s.argv) << std::endl;
  const auto start = std::chrono::steady_clock::now();
  const int code = run_logged(s.argv, log);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (code != 0) {
    const std::string message = "stage '" + s.name + "' failed (exit code " + std::to_string(code) +
                                ") after " + seconds_text(seconds) + "; the end of " + log + ":\n" +
                                tail_of(log, 12);
    if (code == kExitConfigError) throw ConfigError(message);
    if (code == kExitOutOfMemory) throw DoesNotFitError(message);
    throw RuntimeFailure(message);
  }
  std::cerr << "validate: [" << number << "/" << count << "] " << s.name << " done in "
            << seconds_text(seconds) << std::endl;
}

// The median of run.json's step times after the first (or the only one).
double median_step(const json::Json& run) {
  std::vector<double> seconds;
  for (const json::Json& s : run.at("steps")) seconds.push_back(s.at("seconds").get<double>());
  if (seconds.size() > 1) seconds.erase(seconds.begin());
  std::sort(seconds.begin(), seconds.end());
  const std::size_t n = seconds.size();
  return n % 2 ? seconds[n / 2] : 0.5 * (seconds[n / 2 - 1] + seconds[n / 2]);
}

std::string percent(double predicted, double measured) {
  if (measured <= 0) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f%%", 100.0 * (predicted / measured - 1.0));
  return buf;
}

}  // namespace

int validate_command(const std::vector<std::string>& argv_in) {
  if (asks_for_help(argv_in)) {
    std::cout << kValidateHelp;
    return kExitOk;
  }
  if (under_mpi_launcher()) {
    throw ConfigError(
        "strata validate starts its own mpirun for the profiles and the run: "
        "start it without mpirun (--np N sets the ranks)");
  }
  const std::vector<std::string> argv = with_local_cluster(argv_in);
  const Args args(argv,
                  {"--model", "--strategy", "--cluster", "--np", "--out", "--profile", "--links",
                   "--steps", "--warmup", "--repetitions", "--trials", "--max-bytes", "--mpirun",
                   "--worst", "--set"},
                  {}, {});
  const std::string model = args.require("--model"), strategy = args.require("--strategy"),
                    cluster = args.require("--cluster");
  if (!args.has("--np")) {
    throw UsageError("--np is required: the number of ranks to run (the strategy's world size)");
  }
  const int np = *args.get_positive_int("--np");
  const int steps = args.get_positive_int("--steps").value_or(5);
  if (steps < 2) {
    throw ConfigError("--steps = " + std::to_string(steps) +
                      ": must be at least 2 (step 1 allocates and is not measured)");
  }
  const int worst = args.get_positive_int("--worst").value_or(10);
  // The stages' own flags, checked here so that a typo does not wait for its stage.
  count_flag(args, "--warmup", 0, 0);
  count_flag(args, "--repetitions", 1, 1);
  count_flag(args, "--trials", 1, 1);

  // The specs are lowered here first, so that bad input stops before any stage starts.
  const Inputs in = load_inputs(args);
  refuse_federated(in.strategy, "validate");
  if (in.strategy.world_size() != np) {
    throw ConfigError("--np = " + std::to_string(np) + ": strategy '" + in.strategy.name +
                      "' runs on dp * tp * pp * cp = " + std::to_string(in.strategy.world_size()) +
                      " ranks");
  }
  if (np > in.cluster.total_gpus()) {
    throw ConfigError("--np = " + std::to_string(np) + ": cluster '" + in.cluster.name + "' has " +
                      std::to_string(in.cluster.total_gpus()) + " ranks");
  }
  const strategies::Plan plan = lower_inputs(in, np);
  const int over = strategies::first_rank_over_capacity(plan);
  if (over >= 0)
    throw ConfigError("strategy '" + in.strategy.name +
                      "' does not fit: " + over_capacity(plan, over));

  for (const char* flag : {"--profile", "--links"}) {
    const auto list = args.get(flag);
    if (!list) continue;
    for (const std::string& f : comma_list(flag, *list)) {
      if (!fs::is_regular_file(f)) {
        throw ConfigError(std::string(flag) + " = " + *list + ": no such file '" + f + "'");
      }
    }
  }
  const std::string given_out =
      args.get("--out").value_or("validate-" + in.strategy.name + "-np" + std::to_string(np));
  const fs::path out = results_directory("--out", given_out);
  // The results directory is replaced as a whole at the end; inputs inside it are carried over
  // into the new one (below), so that nothing given is lost.
  std::vector<NamedPath> inputs = spec_inputs(args);
  for (const NamedPath& p : flag_paths(args, {"--profile", "--links"})) inputs.push_back(p);
  check_paths(inputs, {}, {{"--out", given_out}});  // messages name the path as given
  const fs::path staging = out.string() + ".partial", logs = staging / "logs";
  fs::remove_all(staging);
  fs::create_directories(logs);
  auto file = [&](const std::string& name) { return (staging / name).string(); };

  const std::string self = self_executable();
  std::vector<std::string> specs = {"--model", model,       "--strategy",
                                    strategy,  "--cluster", cluster};
  for (const std::string& o : args.get_all("--set")) specs.insert(specs.end(), {"--set", o});
  const std::optional<std::string> custom = args.get("--mpirun");
  const std::vector<std::string> launcher = mpi_launcher(np, custom);
  std::vector<Stage> stages;
  std::string profiles = args.get("--profile").value_or(file("profile.json"));
  if (!args.has("--profile")) {
    std::vector<std::string> a = concat({self, "profile", "ops"}, specs);
    a.insert(a.end(), {"--out", profiles});
    for (const char* f : {"--warmup", "--repetitions", "--trials"}) {
      if (const auto v = args.get(f)) a.insert(a.end(), {f, *v});
    }
    stages.push_back({"profile-ops", a});
  }
  std::optional<std::string> links = args.get("--links");
  if (!links && np > 1) {
    links = file("links.json");
    stages.push_back(
        {"profile-links",
         concat(launcher, {self, "profile", "links", "--cluster", cluster, "--max-bytes",
                           args.get("--max-bytes").value_or("64M"), "--out", *links})});
  }
  std::vector<std::string> simulate = concat({self, "simulate"}, specs);
  simulate.insert(simulate.end(),
                  {"--gpus", std::to_string(np), "--exact", "--profile", profiles, "--trace-ranks",
                   "all", "--trace", file("predicted.json"), "--json", file("report.json")});
  if (links) simulate.insert(simulate.end(), {"--links", *links});
  stages.push_back({"simulate", simulate});
  std::vector<std::string> run =
      concat(np > 1 ? launcher : std::vector<std::string>{}, {self, "run"});
  run = concat(run, specs);
  run.insert(run.end(), {"--steps", std::to_string(steps), "--trace", file("measured.json"),
                         "--json", file("run.json")});
  stages.push_back({"run", run});

  const int count = static_cast<int>(stages.size()) + 1;
  for (std::size_t i = 0; i < stages.size(); ++i) {
    run_stage(stages[i], static_cast<int>(i) + 1, count, logs);
  }

  std::cerr << "validate: [" << count << "/" << count << "] compare" << std::endl;
  const results::TraceComparison c = results::compare_traces(
      results::read_trace(file("predicted.json")), results::read_trace(file("measured.json")),
      (out / "predicted.json").string(), (out / "measured.json").string());
  const json::Json report = json::parse_file(file("report.json"));
  const json::Json run_record = json::parse_file(file("run.json"));
  const double predicted_step = report.at("step_time_s").get<double>();
  const double measured_step = median_step(run_record);

  json::Json commands = json::Json::array();
  for (const Stage& s : stages) {
    commands.push_back(json::Json{{"stage", s.name}, {"command", shell_words(s.argv)}});
  }
  json::Json summary = {
      {"kind", "strata.validation"},
      {"schema_version", 1},
      {"model", in.model.name},
      {"strategy", in.strategy.name},
      {"cluster", in.cluster.name},
      {"ranks", np},
      {"steps", steps},
      {"stages", commands},
      {"predicted_step_s", predicted_step},
      {"measured_step_s", measured_step},
      {"step_error", measured_step > 0 ? predicted_step / measured_step - 1.0 : 0.0},
      {"measured_step_times_s", json::Json::array()},
      {"measured_costs", report.at("simulation").value("measured_costs", json::Json::object())},
      {"comparison", results::comparison_to_json(c, worst)}};
  for (const json::Json& s : run_record.at("steps")) {
    summary["measured_step_times_s"].push_back(s.at("seconds"));
  }
  write_outputs({{"--out", file("joined.csv"), results::comparison_csv(c)},
                 {"--out", file("summary.json"), summary.dump(2) + "\n"}});

  // Inputs that live in the directory being replaced (a rerun on the previous run's profiles)
  // move into the new one at the same place, unless a stage wrote a file of that name there.
  for (const NamedPath& given : inputs) {
    const std::optional<std::string> rel = path_inside(given.path, out.string());
    if (!rel || fs::exists(staging / *rel)) continue;
    fs::create_directories((staging / *rel).parent_path());
    fs::copy_file(given.path, staging / *rel);
  }
  // The whole directory at once: the older one moves aside, the new one takes its name.
  if (fs::exists(out)) {
    const fs::path old = out.string() + ".old";
    fs::remove_all(old);
    fs::rename(out, old);
    fs::rename(staging, out);
    fs::remove_all(old);
  } else {
    fs::rename(staging, out);
  }

  std::cout << "Strata validate: " << in.model.name << ", strategy " << in.strategy.name << ", "
            << np << " rank(s) on " << in.cluster.name << "\n"
            << "  step time (median of steps 2.." << steps << ")  predicted "
            << seconds_text(predicted_step) << ", measured " << seconds_text(measured_step)
            << ", error " << percent(predicted_step, measured_step) << "\n\n"
            << results::render_comparison(c, worst) << "\nwrote " << out.string()
            << "/: summary.json, joined.csv, report.json, predicted.json, run.json, measured.json"
            << (args.has("--profile") ? "" : ", profile.json")
            << (args.has("--links") || np == 1 ? "" : ", links.json") << ", logs/\n";
  return kExitOk;
}

}  // namespace strata::cli
