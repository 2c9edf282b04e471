// `strata run` of a parameter-server strategy: specs to the executor's plain options, the run,
// the report and run.json (ps_run.hpp).
#include "cli/ps_run.hpp"

#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/interrupt.hpp"
#include "cli/ps.hpp"
#include "cli/training.hpp"
#include "common/error.hpp"
#include "common/host.hpp"
#include "profiler/profile.hpp"
#include "results/run.hpp"

namespace strata::cli {

namespace {

// What `strata run` takes for a plain strategy but a parameter-server run does not (yet).
const char* const kNotPs[] = {"--save",          "--resume",   "--trace",     "--data",
                              "--dump-gradients", "--switch",   "--save-every", "--keep-last",
                              "--force-resume",   "--save-on-nan", "--comm"};

// Tests only: STRATA_TEST_PS_DELAY="WORKER:SECONDS" slows that worker's every step (a straggler,
// to show SSP's bound at work end to end).
std::vector<double> test_delays(int workers) {
  std::vector<double> delays;
  const char* d = std::getenv("STRATA_TEST_PS_DELAY");
  if (d == nullptr) return delays;
  int worker = -1;
  double seconds = 0;
  if (std::sscanf(d, "%d:%lf", &worker, &seconds) != 2 || worker < 0 || worker >= workers ||
      !(seconds >= 0)) {
    throw ConfigError(std::string("STRATA_TEST_PS_DELAY = \"") + d +
                      "\": must be WORKER:SECONDS with a worker below " +
                      std::to_string(workers));
  }
  delays.assign(static_cast<std::size_t>(workers), 0.0);
  delays[static_cast<std::size_t>(worker)] = seconds;
  return delays;
}

void print_stats(const exec::PsRunResult& r) {
  std::printf(
      "\nworker  pushed MB  pulled MB  pushed rows  pulled rows  waited s  max staleness\n");
  for (std::size_t w = 0; w < r.workers.size(); ++w) {
    const exec::PsWorkerStats& s = r.workers[w];
    std::printf("%6zu  %9.3f  %9.3f  %11lld  %11lld  %8.3f  %13d\n", w, s.pushed_bytes / 1e6,
                s.pulled_bytes / 1e6, static_cast<long long>(s.pushed_rows),
                static_cast<long long>(s.pulled_rows), s.wait_s, s.max_staleness);
  }
  std::printf("\nserver  received MB  updates applied  table rows held\n");
  for (std::size_t k = 0; k < r.servers.size(); ++k) {
    const exec::PsServerStats& s = r.servers[k];
    std::printf("%6zu  %11.3f  %15lld  %15lld\n", k, s.received_bytes / 1e6,
                static_cast<long long>(s.updates_applied), static_cast<long long>(s.rows_held));
  }
}

json::Json ps_json(const PsRunInputs& x, const exec::PsRunResult& r) {
  json::Json workers = json::Json::array(), servers = json::Json::array();
  for (const exec::PsWorkerStats& s : r.workers) {
    workers.push_back({{"pushed_bytes", s.pushed_bytes},
                       {"pulled_bytes", s.pulled_bytes},
                       {"pushed_rows", s.pushed_rows},
                       {"pulled_rows", s.pulled_rows},
                       {"wait_s", s.wait_s},
                       {"max_staleness", s.max_staleness}});
  }
  for (const exec::PsServerStats& s : r.servers) {
    servers.push_back({{"received_bytes", s.received_bytes},
                       {"updates_applied", s.updates_applied},
                       {"rows_held", s.rows_held}});
  }
  const exec::PsRunOptions& o = x.options;
  return {{"servers", o.servers},
          {"consistency", exec::ps_consistency_name(o.consistency)},
          {"staleness", o.staleness},
          {"partition", strategies::ps_partition_name(o.partition)},
          {"granularity", strategies::ps_granularity_name(o.granularity)},
          {"optimizer", "sgd"},
          {"batch_per_worker", o.sgd.batch_per_worker},
          {"max_staleness", r.max_staleness()},
          {"workers", workers},
          {"server_stats", servers},
          {"note", "bytes are payload (ids, rows, dense values), not message headers"}};
}

}  // namespace

PsRunInputs ps_run_inputs(const Inputs& in, const Args& args, int world_size) {
  const strategies::StrategySpec& s = in.strategy;
  const strategies::PsSpec& ps = *s.ps;
  if (!in.rec_model) {
    throw ConfigError("strategy '" + s.name + "' (strategy.ps) with model '" + in.model.name +
                      "': `strata run` trains a recommendation model over parameter servers; a "
                      "GPT over parameter servers is simulated only (`strata simulate`, "
                      "docs/parameter-server.md)");
  }
  for (const char* flag : kNotPs) {
    if (args.has(flag)) {
      throw ConfigError(std::string(flag) + ": not with a parameter-server strategy ('" + s.name +
                        "') yet (docs/parameter-server.md \"Running it for real\")");
    }
  }
  if (args.get("--device").value_or("cpu") != "cpu") {
    throw ConfigError("--device = " + *args.get("--device") +
                      ": a parameter-server run trains on the CPU only");
  }
  const int world = s.dp + ps.servers;
  if (world != world_size) {
    throw ConfigError("world size = " + std::to_string(world_size) +
                      " (mpirun -np): strategy '" + s.name + "' needs dp = " +
                      std::to_string(s.dp) + " workers + strategy.ps.servers = " +
                      std::to_string(ps.servers) + " servers = " + std::to_string(world) +
                      " ranks");
  }
  if (s.global_batch_size % s.dp != 0) {
    throw ConfigError("strategy.global_batch_size = " + std::to_string(s.global_batch_size) +
                      ": must split evenly over the dp = " + std::to_string(s.dp) + " workers");
  }
  const strategies::RecModelSpec& m = *in.rec_model;
  PsRunInputs x;
  x.dims.rows = m.embedding_rows;
  x.dims.dim = m.embedding_dim;
  x.dims.sparse_features = m.sparse_features;
  x.dims.dense_features = m.dense_features;
  x.dims.mlp = m.mlp;
  x.dims.access =
      m.access == strategies::RowAccess::kZipf ? exec::RecAccess::kZipf : exec::RecAccess::kUniform;
  if (m.access == strategies::RowAccess::kZipf) x.dims.zipf_alpha = m.zipf_alpha;
  exec::PsRunOptions& o = x.options;
  o.servers = ps.servers;
  o.consistency = ps.consistency;
  o.staleness = ps.staleness;
  o.partition = ps.partition;
  o.granularity = ps.granularity;
  o.sgd.batch_per_worker = s.global_batch_size / s.dp;
  o.sgd.steps = args.get_positive_int("--steps").value_or(10);
  // --seed as for any run (default 1234): the initial values and the data stream.
  o.sgd.seed = static_cast<std::uint64_t>(args.get_positive_int("--seed").value_or(1234));
  o.sgd.lr = static_cast<float>(parse_positive_double(args, "--lr", o.sgd.lr));
  o.worker_delay_s = test_delays(s.dp);
  exec::check_rec_dims(x.dims);
  exec::check_ps_options(o, world_size);
  return x;
}

std::optional<int> run_if_ps(const Args& args, exec::Comm& world) {
  const bool lead = world.rank() == 0;
  Inputs in;
  PsRunInputs x;
  double timeout_s = 0;
  try {
    in = load_inputs(args, nullptr, /*recommendation_ok=*/true);
    if (!in.strategy.ps) return std::nullopt;
    x = ps_run_inputs(in, args, world.size());
    timeout_s = comm_timeout_s(args);
  } catch (const ConfigError&) {
    if (lead) throw;
    return kExitConfigError;
  }
  const strategies::PsSpec& ps = *in.strategy.ps;
  // run.json is opened (its path checked) on rank 0 before any step.
  OutputFiles files;
  std::ostream* json_out = nullptr;
  if (lead && args.get("--json")) json_out = &files.open("--json", *args.get("--json"));
  try {
    set_interrupt_phase("parameter-server training");
    world.set_timeout_s(timeout_s);
    if (lead) {
      std::printf("strata run: %s, parameter-server strategy %s: %d workers + %d servers (%s), "
                  "%s%s, %s partition by %s, SGD lr %g, %d samples per worker and step%s\n",
                  in.rec_model->name.c_str(), in.strategy.name.c_str(), in.strategy.dp,
                  ps.servers, world.backend().c_str(),
                  exec::ps_consistency_name(x.options.consistency),
                  ps.consistency == strategies::PsConsistency::kSsp
                      ? (" s = " + std::to_string(ps.staleness)).c_str()
                      : "",
                  strategies::ps_partition_name(ps.partition),
                  strategies::ps_granularity_name(ps.granularity), x.options.sgd.lr,
                  x.options.sgd.batch_per_worker,
                  ps.placement == strategies::PsPlacement::kColocated
                      ? "; servers are their own processes here (placement \"colocated\" is "
                        "what the simulator shares NICs by)"
                      : "");
    }
    const exec::PsRunResult r = exec::run_ps(world, x.dims, x.options);
    if (!lead) return kExitOk;
    std::vector<results::RunStep> steps;
    for (std::size_t t = 0; t < r.losses.size(); ++t) {
      std::printf("step %4zu  loss %.6f\n", t + 1, static_cast<double>(r.losses[t]));
      steps.push_back({static_cast<int>(t) + 1, r.losses[t], 0.0, 0.0, ""});
    }
    print_stats(r);
    if (json_out != nullptr) {
      results::RunRecord run;
      run.model = in.rec_model->name;
      run.strategy = in.strategy.name;
      run.cluster = in.cluster.name;
      run.world_size = world.size();
      run.backend = world.backend();
      run.seed = x.options.sgd.seed;
      run.lr = x.options.sgd.lr;
      run.data = "synthetic (executor/rec_model.hpp RecData)";
      run.tokens_per_step = in.strategy.global_batch_size;  // samples
      run.steps = steps;
      run.ps = ps_json(x, r);
      run.provenance = rec_provenance(in);
      run.host = host_name();
      run.date = profiler::utc_now_iso8601();
      *json_out << std::setw(2) << results::run_to_json(run) << "\n";
      files.commit();
    }
  } catch (const std::exception& e) {
    abort_world(world, e, kExitRuntime);
  }
  return kExitOk;
}

}  // namespace strata::cli
