// `strata run`: train for real. Under `mpirun -np N` every process is one rank: it lowers the
// same Plan, builds its parameter shards and runs its program's tasks step by step (executor/).
// Rank 0 prints the loss and throughput of each step and writes the JSON.

#include <csignal>
#include <filesystem>
#include <cstdlib>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/specs.hpp"
#include "common/error.hpp"
#include "common/host.hpp"
#include "common/version.hpp"
#include "executor/checkpoint.hpp"
#include "executor/comm.hpp"
#include "executor/data.hpp"
#include "executor/executor.hpp"
#include "results/run.hpp"
#include "results/trace.hpp"
#include "strategies/plan.hpp"
#include "common/units.hpp"

namespace strata::cli {

const char* const kRunHelp = R"(Usage: mpirun -np N strata run --model M --strategy S [options]

Train a model for real with a strategy: every MPI process is one rank and runs its share of the
Plan (the same Plan `strata plan` and `strata simulate` use) on the CPU, with Eigen kernels and
MPI collectives. N must equal dp * tp * pp of the strategy; without mpirun the world is 1 rank
(and MPI is not used).

Required:
  --model M          model spec file or bundled name (configs/models/), e.g. gpt-tiny
  --strategy S       strategy spec file or bundled name (configs/strategies/), e.g. tiny-dp2

Options:
  --cluster C        cluster spec the Plan is lowered for (default: local-cpu, this machine)
  --steps K          optimizer steps to run (default: 10)
  --seed S           seed of the parameter initialisation and the data order (default: 1234)
  --lr X             AdamW learning rate (default: 0.001; betas 0.9, 0.95, eps 1e-8, no decay)
  --data FILE        training text, read as bytes: token = byte (default: the bundled
                     configs/data/tiny-corpus.txt); the model's vocab_size must be 256
  --save DIR         write a checkpoint into DIR after the last step (atomically: a crash
                     mid-write leaves the previous checkpoint intact)
  --save-every N     also after every N-th step (with --save)
  --resume DIR       continue from DIR's latest checkpoint (written by the same model and
                     strategy); --steps counts from the start, so a run resumed at step 5
                     with --steps 10 runs steps 6-10 with the uninterrupted run's losses
  --json FILE        write the losses and timings as JSON ('-' for stdout)
  --trace FILE       write the last step's measured trace.json (every rank; the simulator's
                     format, task ids of the Plan), to set beside `strata simulate --trace`
  --dump-gradients DIR
                     write every rank's reduced gradients of the first step, just before the
                     optimizer, to DIR/rank-NNNNN.json (each a list of pieces of the unsharded
                     parameters; the equivalence tests compare them across strategies)
  --help             show this help

Prints one line per step: the mean cross-entropy over the global batch, the step's wall time
(slowest rank) and tokens/s, then each rank's peak memory as measured beside the Plan's
prediction. The executor interprets the Plan's programs: GPT models in fp32 with dp, ZeRO 1-3,
tp (with or without sequence parallelism, also changing per layer), pp (gpipe, 1f1b,
interleaved-1f1b) and recompute none/selective/full; anything else is refused with the field
that needs changing, before any work (docs/executor.md).

Example (CI runs as root: add --allow-run-as-root; more ranks than cores: --oversubscribe):
  mpirun -np 2 strata run --model gpt-tiny --strategy tiny-dp2 --steps 10 --json out.json
)";

namespace {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

double parse_positive_double(const Args& args, const std::string& flag, double fallback) {
  const auto v = args.get(flag);
  if (!v) return fallback;
  std::size_t used = 0;
  double x = 0;
  try {
    x = std::stod(*v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v->size() || !(x > 0)) {
    throw ConfigError(flag + " = " + *v + ": must be a positive number");
  }
  return x;
}

// What the CPU executor cannot run, named by the spec field to change (the executor itself
// refuses by the Plan's ops and buffers; this says it in the user's terms first).
void check_runnable(const strategies::Plan& plan) {
  const auto& m = plan.model;
  const auto& s = plan.strategy;
  auto refuse = [](const std::string& field, const std::string& value, const std::string& rule) {
    throw ConfigError(field + " = " + value + ": " + rule);
  };
  if (m.family != strategies::ModelFamily::kGpt || m.norm != strategies::NormKind::kLayerNorm ||
      m.hidden_act != strategies::Activation::kGelu || !m.learned_position_embeddings ||
      !m.bias) {
    refuse("model.family", m.family == strategies::ModelFamily::kGpt ? "\"gpt\"" : "\"llama\"",
           "the executor runs GPT models (LayerNorm, GELU, learned positions, biases) so far");
  }
  if (m.dropout) {
    refuse("model.dropout", "true",
           "the executor does not implement dropout yet; set \"dropout\": false");
  }
  if (s.precision != strategies::Precision::kFp32) {
    refuse("strategy.precision", "\"" + std::string(strategies::precision_name(s.precision)) + "\"",
           "the CPU executor computes in fp32; set \"precision\": \"fp32\"");
  }
  if (m.vocab_size != 256) {
    refuse("model.vocab_size", std::to_string(m.vocab_size),
           "the executor's byte-level data needs 256");
  }
}

// DIR/rank-NNNNN.json: this rank's reduced gradients of the first step (RunOptions' capture).
void dump_gradients(const std::string& dir, int rank,
                    const std::vector<exec::GradientPiece>& pieces) {
  json::Json list = json::Json::array();
  for (const exec::GradientPiece& g : pieces) {
    list.push_back({{"name", g.name}, {"rows", g.rows}, {"cols", g.cols},
                    {"shard", strategies::shard_name(g.shard)}, {"row_blocks", g.row_blocks},
                    {"parts", g.parts}, {"index", g.index}, {"begin", g.begin},
                    {"values", g.values}});
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  char name[32];
  std::snprintf(name, sizeof name, "rank-%05d.json", rank);
  write_output((std::filesystem::path(dir) / name).string(),
               json::Json({{"kind", "strata.gradients"}, {"rank", rank}, {"pieces", list}}).dump() +
                   "\n");
}

}  // namespace

int run_command(const std::vector<std::string>& argv_in) {
  if (asks_for_help(argv_in)) {
    std::cout << kRunHelp;
    return kExitOk;
  }
  std::vector<std::string> argv = argv_in;
  if (std::find(argv.begin(), argv.end(), "--cluster") == argv.end() &&
      std::none_of(argv.begin(), argv.end(),
                   [](const std::string& a) { return a.rfind("--cluster=", 0) == 0; })) {
    argv.insert(argv.end(), {"--cluster", "local-cpu"});
  }
  std::set<std::string> with_value = {"--model", "--cluster",    "--strategy", "--steps",
                                      "--seed",  "--lr",         "--data",     "--json",
                                      "--save",  "--save-every", "--resume",   "--trace",
                                      "--dump-gradients"};
  // Arguments are checked before MPI starts, so a usage error is one message, not N.
  const Args args(argv, with_value, {}, {});
  // Under mpirun (Open MPI sets OMPI_COMM_WORLD_SIZE, PMIx launchers PMIX_RANK) the world is
  // MPI's; started directly, it is one rank without MPI at all.
  const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr ||
                        std::getenv("PMIX_RANK") != nullptr || std::getenv("PMI_SIZE") != nullptr;
  auto comm = exec::built_with_mpi() && launched ? exec::make_mpi_comm() : exec::make_local_comm();
  const bool lead = comm->rank() == 0;

  std::unique_ptr<strategies::Plan> plan;
  std::unique_ptr<exec::Corpus> corpus;
  std::unique_ptr<exec::Executor> executor;
  int steps = 10, save_every = 0;
  exec::RunOptions options;
  try {
    steps = args.get_positive_int("--steps").value_or(10);
    if (args.has("--save-every") && !args.has("--save")) {
      throw ConfigError("--save-every = " + *args.get("--save-every") + ": needs --save DIR");
    }
    save_every = args.get_positive_int("--save-every").value_or(0);
    if (const auto seed = args.get_positive_int("--seed")) options.seed = static_cast<unsigned>(*seed);
    options.adam.lr = static_cast<float>(parse_positive_double(args, "--lr", options.adam.lr));
    const strategies::ModelSpec model =
        strategies::load_model(resolve_spec("models", "--model", args.require("--model")));
    const strategies::ClusterSpec cluster =
        strategies::load_cluster(resolve_spec("clusters", "--cluster", args.require("--cluster")));
    const strategies::StrategySpec strategy = strategies::load_strategy(
        resolve_spec("strategies", "--strategy", args.require("--strategy")));
    if (strategy.world_size() != comm->size()) {
      throw ConfigError("world size = " + std::to_string(comm->size()) + " (mpirun -np): strategy '" +
                        strategy.name + "' needs dp * tp * pp * cp = " +
                        std::to_string(strategy.world_size()) + " ranks");
    }
    plan = std::make_unique<strategies::Plan>(
        strategies::lower(model, cluster, strategy, comm->size()));
    check_runnable(*plan);
    // Fault injection for the tests (docs/executor.md): STRATA_TEST_GRAD_SCALE=X scales the
    // logits' gradient, which the loss curve hardly shows and the gradients do.
    if (const char* g = std::getenv("STRATA_TEST_GRAD_SCALE")) options.test_gradient_scale = std::stof(g);
    corpus = std::make_unique<exec::Corpus>(args.get("--data").value_or(exec::default_corpus_path()),
                                            model.seq_length, options.seed);
    executor = std::make_unique<exec::Executor>(*plan, *comm, *corpus, options);
  } catch (const ConfigError&) {
    // Every rank validates the same inputs and fails the same way; one of them says so.
    if (lead) throw;
    return kExitConfigError;
  }

  // From here on an error may hit one rank only: it stops the whole world, so no rank waits
  // forever on one that gave up.
  auto fail = [&](const std::exception& e) {
    std::fprintf(stderr, "strata run: rank %d: error: %s\n", comm->rank(), e.what());
    std::fflush(stderr);
    comm->abort(dynamic_cast<const ConfigError*>(&e) != nullptr ? kExitConfigError : 70);
  };
  int first_step = 0;
  if (const auto dir = args.get("--resume")) {
    try {
      first_step = exec::load_checkpoint(*dir, *plan, *comm, executor->interpreter());
      executor->set_steps_done(first_step);
    } catch (const std::exception& e) {
      fail(e);
    }
    if (first_step >= steps) {
      if (lead) {
        std::fprintf(stderr, "strata run: error: --steps = %d: the checkpoint in %s is already at "
                     "step %d; ask for more steps\n", steps, dir->c_str(), first_step);
      }
      return kExitConfigError;
    }
  }

  const double tokens = static_cast<double>(plan->strategy.global_batch_size) *
                        plan->model.seq_length;
  if (lead) {
    std::printf("strata run: %s, strategy %s (dp %d, tp %d, pp %d, %s, recompute %s), %d rank%s "
                "(%s), global batch %d x %d tokens\n",
                plan->model.name.c_str(), plan->strategy.name.c_str(), plan->strategy.dp,
                plan->strategy.tp, plan->strategy.pp,
                strategies::schedule_name(plan->strategy.schedule),
                strategies::recompute_name(plan->strategy.recompute), comm->size(),
                comm->size() == 1 ? "" : "s", comm->backend().c_str(), plan->strategy.global_batch_size,
                plan->model.seq_length);
  }
  // Fault injection for the tests (docs/executor.md): STRATA_TEST_KILL="RANK:STEP" makes that
  // rank kill itself with SIGKILL as the step starts, like a crashed node.
  int kill_rank = -1, kill_step = -1;
  if (const char* k = std::getenv("STRATA_TEST_KILL")) {
    if (std::sscanf(k, "%d:%d", &kill_rank, &kill_step) != 2) kill_rank = -1;
  }
  std::vector<results::RunStep> step_rows;
  std::vector<double> rates;
  try {
    for (int k = first_step; k < steps; ++k) {
      if (comm->rank() == kill_rank && k + 1 == kill_step) std::raise(SIGKILL);
      const bool capture = k == first_step && args.has("--dump-gradients");
      const exec::StepResult r = executor->step(capture);
      if (capture) dump_gradients(*args.get("--dump-gradients"), comm->rank(), executor->captured_gradients());
      const double rate = tokens / r.seconds;
      rates.push_back(rate);
      step_rows.push_back({r.step, r.loss, r.seconds, rate});
      if (lead) {
        std::printf("step %4d  loss %.6f  time %8.4f s  tokens/s %10.0f\n", r.step, r.loss,
                    r.seconds, rate);
        std::fflush(stdout);
      }
      if (const auto dir = args.get("--save")) {
        if (r.step == steps || (save_every > 0 && r.step % save_every == 0)) {
          exec::save_checkpoint(*dir, r.step, *plan, *comm, executor->interpreter());
        }
      }
    }
  } catch (const std::exception& e) {
    fail(e);
  }

  std::vector<strategies::TaskSpan> spans;
  if (args.has("--trace")) {
    try {
      spans = executor->gather_last_step();
    } catch (const std::exception& e) {
      fail(e);
    }
  }
  std::vector<exec::RankMemory> memory;
  try {
    memory = executor->gather_memory();
  } catch (const std::exception& e) {
    fail(e);
  }
  std::vector<double> sorted = rates;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted.empty() ? 0 : sorted[sorted.size() / 2];
  if (lead) {
    std::printf("median tokens/s %.0f over %d steps\n", median, steps - first_step);
    // Memory: the Plan's tensors as the executor allocated them, beside the Plan's prediction.
    for (const exec::RankMemory& m : memory) {
      std::printf("rank %d memory: measured peak %s, Plan %s%s (static %s; staging %s, "
                  "alignment %s outside the Plan)\n",
                  m.rank, units::format_bytes(m.measured.peak_bytes).c_str(),
                  units::format_bytes(m.planned_peak_bytes).c_str(),
                  m.measured.peak_bytes == m.planned_peak_bytes ? " (equal)" : " (DIFFERENT)",
                  units::format_bytes(m.measured.static_bytes.total()).c_str(),
                  units::format_bytes(m.measured.staging_peak_bytes).c_str(),
                  units::format_bytes(m.measured.alignment_padding_bytes).c_str());
    }
    if (const auto path = args.get("--json")) {
      results::RunRecord run;
      run.model = plan->model.name;
      run.strategy = plan->strategy.name;
      run.cluster = plan->cluster.name;
      run.world_size = comm->size();
      run.backend = comm->backend();
      run.seed = options.seed;
      run.first_step = first_step + 1;
      run.lr = options.adam.lr;
      run.data = corpus->path();
      run.tokens_per_step = tokens;
      run.steps = step_rows;
      run.median_tokens_per_s = median;
      for (const exec::RankMemory& m : memory) {
        run.memory.push_back({m.rank, m.planned_peak_bytes, m.measured.peak_bytes,
                              m.planned_static, m.measured.static_bytes,
                              m.measured.peak_transient_bytes, m.measured.staging_peak_bytes,
                              m.measured.alignment_padding_bytes});
      }
      run.provenance = plan->provenance;
      run.host = host_name();
      run.date = utc_now();
      write_output(*path, results::run_to_json(run).dump(2) + "\n");
    }
    if (const auto path = args.get("--trace")) {
      json::Json other = results::trace_other_data("measured", plan->provenance);
      other["step"] = steps;
      other["backend"] = comm->backend();
      other["host"] = host_name();
      other["date"] = utc_now();
      write_output(*path, results::trace_to_json(*plan, spans, other).dump() + "\n");
    }
  }
  return kExitOk;
}

}  // namespace strata::cli
