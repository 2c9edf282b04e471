// The pieces of `strata run`; see training.hpp.
#include "cli/training.hpp"

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <tuple>
#include <utility>

#include "cli/commands.hpp"
#include "cli/interrupt.hpp"
#include "cli/specs.hpp"
#include "common/error.hpp"
#include "profiler/profile.hpp"
#include "common/host.hpp"
#include "common/units.hpp"
#include "executor/checkpoint.hpp"
#include "executor/switch_state.hpp"
#include "profiler/efficiency.hpp"
#include "profiler/roofline.hpp"
#include "results/trace.hpp"
#if STRATA_HAVE_SIMGRID
#include "cli/switching.hpp"
#endif

namespace strata::cli {

namespace {

// `flag` needs `needed` (--keep-last needs --save).
void needs(const Args& args, const std::string& flag, const std::string& needed,
           const std::string& what) {
  if (args.has(flag) && !args.has(needed)) {
    throw ConfigError(flag + (args.get(flag) == "1" ? "" : " = " + *args.get(flag)) + ": needs " +
                      needed + " " + what);
  }
}

// The paths of the run, before any work: outputs and checkpoint directories writable, none of
// them an input, no two outputs on one path.
void check_run_paths(const Args& args) {
  std::vector<NamedPath> inputs = spec_inputs(args);
  if (args.get("--data") != std::optional<std::string>("random")) {
    inputs.push_back({"--data", args.get("--data").value_or(exec::default_corpus_path())});
  }
  for (const NamedPath& p : flag_paths(args, {"--switch", "--resume"})) inputs.push_back(p);
  // --save may be --resume's directory (a resumed run goes on saving there); checked apart.
  std::vector<NamedPath> outputs = flag_paths(args, {"--json", "--trace"});
  std::vector<NamedPath> inputs_but_resume(inputs.begin(), inputs.end());
  if (args.has("--resume")) inputs_but_resume.pop_back();
  check_paths(inputs, outputs);
  check_paths(inputs_but_resume, outputs, flag_paths(args, {"--save", "--dump-gradients"}));
}

// FP8 (strategy fp8 or an override's) is simulated only. Checked on the spec before lowering,
// so that the answer is the executor's, not the lowering's rule for devices without an FP8 peak
// (local-cpu has none), and before the precision's, since FP8 needs a 16-bit precision.
void check_no_fp8(const strategies::StrategySpec& s) {
  if (!s.uses_fp8()) return;
  std::string field = "strategy.fp8", value = strategies::fp8_format_name(s.fp8);
  for (std::size_t i = 0; i < s.layer_overrides.size() && s.fp8 == strategies::Fp8Format::kNone;
       ++i) {
    if (s.layer_overrides[i].fp8 <= 0) continue;
    field = "strategy.layer_overrides[" + std::to_string(i) + "].fp8";
    value = strategies::fp8_format_name(
        static_cast<strategies::Fp8Format>(s.layer_overrides[i].fp8));
    break;
  }
  throw ConfigError(field + " = \"" + value +
                    "\": the CPU executor does not run FP8 GEMMs (it computes in fp32 and does "
                    "not emulate FP8 rounding): FP8 plans are simulated only; set \"fp8\": "
                    "\"none\" (and \"precision\": \"fp32\") to run it");
}

// What the CPU executor cannot run, named by the spec field to change (the executor itself
// refuses by the Plan's ops and buffers; this says it in the user's terms first).
void check_runnable(const strategies::Plan& plan, bool synthetic) {
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
  if (s.precision == strategies::Precision::kFp16) {
    refuse("strategy.precision", "\"fp16\"",
           "the executor computes in fp32 and bf16 (fp16 needs loss scaling, not built); set "
           "\"precision\": \"bf16\" or \"fp32\"");
  }
  if (m.vocab_size != 256 && !synthetic) {
    refuse("model.vocab_size", std::to_string(m.vocab_size),
           "the executor's byte-level data needs 256 (or synthetic tokens: --data random)");
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
  write_outputs({{"--dump-gradients", (std::filesystem::path(dir) / name).string(),
                  json::Json({{"kind", "strata.gradients"}, {"rank", rank}, {"pieces", list}})
                          .dump() +
                      "\n"}});
}

// --device: cpu, cuda (GPU local-rank mod the visible GPUs) or cuda:N.
void set_device(const Args& args, const exec::Comm& comm, exec::RunOptions& options) {
  const std::string d = args.get("--device").value_or("cpu");
  if (d == "cpu") return;
  const bool any = d == "cuda";
  std::optional<long long> index;
  if (!any && d.rfind("cuda:", 0) == 0) index = whole_integer(d.substr(5));
  if (!any && (!index || *index < 0 || *index > 1024)) {
    throw ConfigError("--device = " + d + ": must be cpu, cuda or cuda:N (N a GPU index)");
  }
  const int count = kernels::cuda_device_count();
  if (count == 0) {
    throw ConfigError("--device = " + d + ": no usable CUDA device (" +
                      kernels::cuda_unavailable_reason() + "); run with --device cpu");
  }
  options.backend = kernels::Backend::kCuda;
  if (index) {
    options.device = static_cast<int>(*index);
    return;
  }
  int local = comm.rank();
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    if (const char* v = std::getenv(name)) {
      local = std::atoi(v);
      break;
    }
  }
  options.device = local % count;
}

// --comm: the host communicator (MPI under mpirun, none for one process), or NCCL on the GPU.
void check_comm(const Args& args, const exec::RunOptions& options) {
  const std::string c = args.get("--comm").value_or("mpi");
  if (c == "mpi") return;
  if (c != "nccl") throw ConfigError("--comm = " + c + ": must be mpi or nccl");
  if (options.backend != kernels::Backend::kCuda) {
    throw ConfigError("--comm = nccl: NCCL moves device memory; run with --device cuda");
  }
  if (const std::string why = exec::nccl_unavailable_reason(); !why.empty()) {
    throw ConfigError("--comm = nccl: " + why + "; run with --comm mpi");
  }
}

// --switch: every phase runs on the same ranks and stores its state in the same dtypes (the
// state moves between them in memory, as it is).
void check_phases(const std::vector<Inputs>& phases) {
  const strategies::StrategySpec& first = phases.front().strategy;
  for (std::size_t i = 1; i < phases.size(); ++i) {
    const strategies::StrategySpec& s = phases[i].strategy;
    const std::string field = "switch.phases." + std::to_string(i) + ".strategy = '" + s.name;
    if (s.world_size() != first.world_size()) {
      throw ConfigError(field + "': needs dp * tp * pp * cp = " + std::to_string(s.world_size()) +
                        " ranks, phase 0's '" + first.name + "' needs " +
                        std::to_string(first.world_size()) +
                        "; every phase of a schedule runs on the same ranks");
    }
    if (s.precision != first.precision) {
      throw ConfigError(field + "': precision " + strategies::precision_name(s.precision) +
                        ", phase 0's '" + first.name + "' has " +
                        strategies::precision_name(first.precision) +
                        "; the state moves as it is stored, so every phase needs the same "
                        "precision");
    }
  }
}

// The phase that runs `step` (1-based): the last one starting at or before it.
std::size_t phase_of_step(const SwitchSchedule& schedule, int step) {
  std::size_t out = 0;
  for (std::size_t i = 0; i < schedule.phases.size(); ++i) {
    if (schedule.phases[i].first_step <= step) out = i;
  }
  return out;
}

}  // namespace

std::string device_name(const exec::RunOptions& options) {
  if (options.backend == kernels::Backend::kCpu) return "cpu";
  return "cuda:" + std::to_string(options.device) + " (" +
         kernels::cuda_device_properties(options.device).name + ")";
}

Training prepare_training(const Args& args, exec::Comm& comm) {
  Training t;
  t.steps = args.get_positive_int("--steps").value_or(10);  // --switch: the schedule's
  if (args.has("--save-every") && !args.has("--save")) {
    throw ConfigError("--save-every = " + *args.get("--save-every") + ": needs --save DIR");
  }
  t.save_every = args.get_positive_int("--save-every").value_or(0);
  needs(args, "--keep-last", "--save", "DIR");
  needs(args, "--save-on-nan", "--save", "DIR");
  needs(args, "--force-resume", "--resume", "DIR");
  t.keep_last = args.get_positive_int("--keep-last").value_or(0);
  comm_timeout_s(args);  // checked before any work
  check_run_paths(args);
  set_device(args, comm, t.options);
  check_comm(args, t.options);
  if (const auto seed = args.get_positive_int("--seed")) {
    t.options.seed = static_cast<unsigned>(*seed);
  }
  t.options.adam.lr = static_cast<float>(parse_positive_double(args, "--lr", t.options.adam.lr));
  // The inputs of each phase: one for --strategy, the schedule's for --switch.
  std::vector<Inputs> phases;
  if (args.has("--switch")) {
    const SwitchInputs sw = load_switch_inputs(args);
    for (std::size_t i = 0; i < sw.schedule.phases.size(); ++i) {
      phases.push_back(sw.phase_inputs(i));
    }
    t.schedule = sw.schedule;
    t.steps = sw.schedule.total_steps();
  } else {
    phases.push_back(load_inputs(args));  // --model, --cluster, --strategy and every --set
  }
  for (const Inputs& in : phases) {
    check_no_fp8(in.strategy);
    refuse_federated(in.strategy, "run --switch");  // plain --strategy: run_if_federated
  }
  check_phases(phases);
  const strategies::StrategySpec& strategy = phases.front().strategy;
  if (strategy.world_size() != comm.size()) {
    throw ConfigError("world size = " + std::to_string(comm.size()) + " (mpirun -np): strategy '" +
                      strategy.name + "' needs dp * tp * pp * cp = " +
                      std::to_string(strategy.world_size()) + " ranks");
  }
  const bool synthetic = args.get("--data") == std::optional<std::string>("random");
  for (std::size_t i = 0; i < phases.size(); ++i) {
    t.phase_plans.push_back(
        std::make_unique<strategies::Plan>(lower_inputs(phases[i], comm.size())));
    check_runnable(*t.phase_plans.back(), synthetic);
    // A later phase the executor would refuse is refused now, before any step.
    for (int r = 0; i > 0 && r < comm.size(); ++r) {
      const std::string why = exec::refusal(*t.phase_plans.back(), r, t.options.backend);
      if (!why.empty()) {
        throw ConfigError("switch.phases." + std::to_string(i) + ".strategy = '" +
                          phases[i].strategy.name + "': the executor cannot run its Plan: " +
                          why);
      }
    }
  }
#if STRATA_HAVE_SIMGRID
  // The simulator's cost of each switch, on rank 0, in a child process each (one SimGrid engine
  // per process; the child touches no MPI), beside which the measured ones are printed.
  if (t.schedule && comm.rank() == 0) {
    const profiler::RooflineCostModel cost(
        profiler::load_efficiencies(profiler::default_efficiencies_path()));
    for (std::size_t i = 0; i + 1 < t.phase_plans.size(); ++i) {
      const SwitchCost c = simulate_switch(*t.phase_plans[i], *t.phase_plans[i + 1], cost);
      t.simulated_switches.emplace_back(c.seconds, c.bytes);
    }
  }
#endif
  // Resumed with --switch: the phase of the step after the checkpoint's.
  if (t.schedule && args.has("--resume")) {
    t.phase = phase_of_step(*t.schedule, exec::latest_checkpoint_step(*args.get("--resume")) + 1);
  }
  t.plan = std::move(t.phase_plans[t.phase]);
  const strategies::ModelSpec& model = t.plan->model;
  // Fault injection for the tests (docs/executor.md): STRATA_TEST_GRAD_SCALE=X scales the
  // logits' gradient, which the loss curve hardly shows and the gradients do.
  if (const char* g = std::getenv("STRATA_TEST_GRAD_SCALE")) {
    t.options.test_gradient_scale = std::stof(g);
  }
  t.corpus = synthetic ? std::make_unique<exec::Corpus>(exec::Corpus::synthetic(
                             model.vocab_size, model.seq_length, t.options.seed))
                       : std::make_unique<exec::Corpus>(
                             args.get("--data").value_or(exec::default_corpus_path()),
                             model.seq_length, t.options.seed);
  const double timeout = comm_timeout_s(args);
  if (args.get("--comm").value_or("mpi") == "nccl") {
    exec::NcclOptions nccl;
    nccl.device = t.options.device;
    nccl.init_timeout_s = timeout;
    t.plan_comm = exec::make_nccl_comm(comm, nccl);
  }
  t.executor =
      std::make_unique<exec::Executor>(*t.plan, comm, *t.corpus, t.options, t.plan_comm.get());
  // Set after the Executor's groups are made: from here on no collective waits forever.
  comm.set_timeout_s(timeout);
  if (t.plan_comm) t.plan_comm->set_timeout_s(timeout);
  return t;
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

void abort_world(exec::Comm& comm, const std::exception& e, int other) {
  std::fprintf(stderr, "strata run: rank %d: error: %s\n", comm.rank(), e.what());
  std::fflush(stderr);
  set_interrupt_quiet(true);  // mpirun's SIGTERM after the abort is no interruption
  comm.abort(dynamic_cast<const ConfigError*>(&e) != nullptr            ? kExitConfigError
             : dynamic_cast<const exec::CommTimeout*>(&e) != nullptr ? kExitRuntime
                                                                     : other);
  std::abort();  // Comm::abort does not return; for the compiler
}

double comm_timeout_s(const Args& args) {
  const std::string v = args.get("--comm-timeout").value_or("300");
  const std::optional<long long> n = whole_integer(v);
  if (!n || *n < 0 || *n > 1'000'000) {
    throw ConfigError("--comm-timeout = " + v +
                      ": must be whole seconds from 0 (wait forever) to 1000000");
  }
  return static_cast<double>(*n);
}

void resume(Training& t, const Args& args, exec::Comm& comm) {
  const auto dir = args.get("--resume");
  if (!dir) return;
  exec::LoadOptions options;
  options.seed = t.options.seed;
  options.force = args.has("--force-resume");
  t.first_step = exec::load_checkpoint(*dir, *t.plan, comm, t.executor->interpreter(), options);
  t.executor->set_steps_done(t.first_step);
  t.latest = (std::filesystem::path(*dir) / exec::checkpoint_name(t.first_step)).string();
}

void print_banner(const Training& t, const exec::Comm& comm) {
  const strategies::Plan& p = *t.plan;
  const std::string cp =
      p.strategy.cp > 1 ? ", cp " + std::to_string(p.strategy.cp) + " " +
                              strategies::cp_comm_name(p.strategy.cp_comm)
                        : "";
  const std::string where = (t.plan_comm ? t.plan_comm->backend() : comm.backend()) +
                            (t.options.backend == kernels::Backend::kCpu
                                                  ? ""
                                                  : ", " + device_name(t.options));
  std::printf("strata run: %s, strategy %s (dp %d, tp %d, pp %d%s, %s, recompute %s), %d rank%s "
              "(%s), global batch %d x %d tokens\n",
              p.model.name.c_str(), p.strategy.name.c_str(), p.strategy.dp, p.strategy.tp,
              p.strategy.pp, cp.c_str(), strategies::schedule_name(p.strategy.schedule),
              strategies::recompute_name(p.strategy.recompute), comm.size(),
              comm.size() == 1 ? "" : "s", where.c_str(), p.strategy.global_batch_size,
              p.model.seq_length);
  if (!t.schedule) return;
  std::string phases;
  for (const SwitchPhase& ph : t.schedule->phases) {
    phases += (phases.empty() ? "" : ", ") + ph.strategy.name + " (steps " +
              std::to_string(ph.first_step) + "-" + std::to_string(ph.first_step + ph.steps - 1) +
              ")";
  }
  std::printf("schedule %s: %s; the state moves in memory at each switch\n",
              t.schedule->name.c_str(), phases.c_str());
}

namespace {

// The interrupt line's second half: where training can go on from.
std::string latest_text(const Training& t, const Args& args) {
  if (!t.latest.empty()) {
    const std::string dir = std::filesystem::path(t.latest).parent_path().string();
    return "latest checkpoint: " + t.latest + " (continue with --resume " + dir + ")";
  }
  if (const auto dir = args.get("--save")) return "no checkpoint in " + *dir + " yet";
  return "no checkpoint (no --save)";
}

// --switch, at the next phase's first step: its executor built (collective), the state moved
// into it in memory, the old executor and Plan released. Rank 0 prints the switch.
results::RunSwitch switch_phase(Training& t, exec::Comm& comm) {
  const std::size_t next = t.phase + 1;
  const int at_step = t.schedule->phases[next].first_step;
  set_interrupt_phase("switching strategies (the state moving to the next phase)");
  std::unique_ptr<strategies::Plan> plan = std::move(t.phase_plans[next]);
  auto executor =
      std::make_unique<exec::Executor>(*plan, comm, *t.corpus, t.options, t.plan_comm.get());
  const exec::SwitchStats s =
      exec::switch_state(comm, t.executor->interpreter(), executor->interpreter());
  executor->set_steps_done(t.executor->steps_done());
  results::RunSwitch out{at_step,   t.plan->strategy.name, plan->strategy.name,
                         s.seconds, s.bytes_sent,          s.max_rank_bytes_sent};
  if (t.phase < t.simulated_switches.size()) {
    std::tie(out.simulated_seconds, out.simulated_bytes) = t.simulated_switches[t.phase];
  }
  t.executor = std::move(executor);  // the old executor first, then the Plan it runs
  t.plan = std::move(plan);
  t.phase = next;
  if (comm.rank() == 0) {
    std::printf("switch at step %d: %s -> %s, state moved in memory in %.4f s: %s sent over the "
                "network (most by one rank %s), %lld elements sent, %lld copied locally\n",
                at_step, out.from.c_str(), out.to.c_str(), s.seconds,
                units::format_bytes(s.bytes_sent).c_str(),
                units::format_bytes(s.max_rank_bytes_sent).c_str(),
                static_cast<long long>(s.elements_sent),
                static_cast<long long>(s.elements_copied));
    if (out.simulated_seconds >= 0) {
      std::printf("  simulated (docs/switching.md): %.6f s for %s\n", out.simulated_seconds,
                  units::format_bytes(out.simulated_bytes).c_str());
    }
    std::fflush(stdout);
  }
  return out;
}

}  // namespace

exec::SaveOptions save_options(const Training& t) {
  exec::SaveOptions save;
  save.seed = t.options.seed;
  save.keep_last = t.keep_last;
  return save;
}

TrainingResult train(Training& t, const Args& args, exec::Comm& comm) {
  // Fault injection for the tests (docs/executor.md): STRATA_TEST_KILL="RANK:STEP" makes that
  // rank kill itself with SIGKILL as the step starts, like a crashed node; STRATA_TEST_STOP
  // stops it with SIGSTOP instead, like a hung one.
  int kill_rank = -1, kill_step = -1, stop_rank = -1, stop_step = -1;
  if (const char* k = std::getenv("STRATA_TEST_KILL")) {
    if (std::sscanf(k, "%d:%d", &kill_rank, &kill_step) != 2) kill_rank = -1;
  }
  if (const char* k = std::getenv("STRATA_TEST_STOP")) {
    if (std::sscanf(k, "%d:%d", &stop_rank, &stop_step) != 2) stop_rank = -1;
  }
  exec::SaveOptions save = save_options(t);
  TrainingResult out;
  for (int k = t.first_step; k < t.steps; ++k) {
    set_interrupt_step(k + 1, t.steps, latest_text(t, args));
    if (comm.rank() == kill_rank && k + 1 == kill_step) std::raise(SIGKILL);
    if (comm.rank() == stop_rank && k + 1 == stop_step) std::raise(SIGSTOP);
    if (t.schedule && t.phase + 1 < t.schedule->phases.size() &&
        t.schedule->phases[t.phase + 1].first_step == k + 1) {
      out.switches.push_back(switch_phase(t, comm));
      set_interrupt_step(k + 1, t.steps, latest_text(t, args));
    }
    const double tokens =
        static_cast<double>(t.plan->strategy.global_batch_size) * t.plan->model.seq_length;
    const bool capture = k == t.first_step && args.has("--dump-gradients");
    const exec::StepResult r = t.executor->step(capture);
    if (capture) {
      dump_gradients(*args.get("--dump-gradients"), comm.rank(), t.executor->captured_gradients());
    }
    const double rate = tokens / r.seconds;
    const std::string strategy = t.schedule ? t.plan->strategy.name : "";
    out.steps.push_back({r.step, r.loss, r.seconds, rate, strategy});
    if (comm.rank() == 0) {
      std::printf("step %4d  loss %.6f  time %8.4f s  tokens/s %10.0f%s%s\n", r.step, r.loss,
                  r.seconds, rate, strategy.empty() ? "" : "  strategy ", strategy.c_str());
      std::fflush(stdout);
    }
    // Every rank has the same loss, so every rank stops here together.
    if (!std::isfinite(r.loss)) {
      std::string saved;
      if (args.has("--save-on-nan")) {
        exec::SaveOptions bad = save;
        bad.publish = false;
        bad.suffix = "-nonfinite";
        saved = "; the state after it is in " +
                exec::save_checkpoint(*args.get("--save"), r.step, *t.plan, comm,
                                      t.executor->interpreter(), bad) +
                " (never resumed from)";
      }
      throw NonFiniteLoss("step " + std::to_string(r.step) + " of " + std::to_string(t.steps) +
                          ": the loss is " + (std::isnan(r.loss) ? "nan" : "inf") +
                          ", training stopped (lower --lr?); " + latest_text(t, args) + saved);
    }
    if (const auto dir = args.get("--save")) {
      if (r.step == t.steps || (t.save_every > 0 && r.step % t.save_every == 0)) {
        t.latest = exec::save_checkpoint(*dir, r.step, *t.plan, comm, t.executor->interpreter(),
                                         save);
      }
    }
  }
  set_interrupt_phase("gathering the measurements after the last step");
  if (args.has("--trace")) out.spans = t.executor->gather_last_step();
  out.memory = t.executor->gather_memory();
  return out;
}

void report_training(const Training& t, const TrainingResult& r, const Args& args,
                     const exec::Comm& comm) {
  std::vector<double> rates;
  for (const results::RunStep& s : r.steps) rates.push_back(s.tokens_per_s);
  std::sort(rates.begin(), rates.end());
  const double median = rates.empty() ? 0 : rates[rates.size() / 2];
  std::printf("median tokens/s %.0f over %d steps\n", median, t.steps - t.first_step);
  // Memory: the Plan's tensors as the executor allocated them, beside the Plan's prediction
  // (MoE: the routed buffers sized for the most rows, executor/memory.hpp).
  const strategies::Plan& p = *t.plan;
  for (const exec::RankMemory& m : r.memory) {
    std::printf("rank %d memory: measured peak %s, Plan %s%s (static %s; staging %s, "
                "alignment %s outside the Plan; %s held in the arena, placed from the "
                "Plan)\n",
                m.rank, units::format_bytes(m.measured.peak_bytes).c_str(),
                units::format_bytes(m.planned_peak_bytes).c_str(),
                m.measured.peak_bytes == m.planned_peak_bytes ? " (equal)"
                : p.model.is_moe() ? " (MoE: routed rows sized for the worst routing)"
                                   : " (DIFFERENT)",
                units::format_bytes(m.measured.static_bytes.total()).c_str(),
                units::format_bytes(m.measured.staging_peak_bytes).c_str(),
                units::format_bytes(m.measured.alignment_padding_bytes).c_str(),
                units::format_bytes(m.measured.reserved_peak_bytes).c_str());
  }
  OutputFiles files;
  if (const auto path = args.get("--json")) {
    results::RunRecord run;
    run.model = p.model.name;
    run.strategy = p.strategy.name;
    if (t.schedule) {
      // The strategies in the order they ran (each step and switch names its own).
      run.strategy.clear();
      for (std::size_t i = phase_of_step(*t.schedule, t.first_step + 1);
           i < t.schedule->phases.size(); ++i) {
        run.strategy += (run.strategy.empty() ? "" : " -> ") + t.schedule->phases[i].strategy.name;
      }
      run.schedule = t.schedule->name;
      run.switches = r.switches;
    }
    run.cluster = p.cluster.name;
    run.world_size = comm.size();
    run.backend = t.plan_comm ? t.plan_comm->backend() : comm.backend();
    run.device = device_name(t.options);
    run.seed = t.options.seed;
    run.first_step = t.first_step + 1;
    run.lr = t.options.adam.lr;
    run.data = t.corpus->path();
    run.tokens_per_step = static_cast<double>(p.strategy.global_batch_size) * p.model.seq_length;
    run.steps = r.steps;
    run.federated = r.federated;
    run.median_tokens_per_s = median;
    for (const exec::RankMemory& m : r.memory) {
      run.memory.push_back({m.rank, m.planned_peak_bytes, m.measured.peak_bytes, m.planned_static,
                            m.measured.static_bytes, m.measured.peak_transient_bytes,
                            m.measured.staging_peak_bytes, m.measured.alignment_padding_bytes,
                            m.measured.reserved_peak_bytes});
    }
    run.provenance = p.provenance;
    run.host = host_name();
    run.date = profiler::utc_now_iso8601();
    files.open("--json", *path) << std::setw(2) << results::run_to_json(run) << "\n";
  }
  if (const auto path = args.get("--trace")) {
    json::Json other = results::trace_other_data("measured", p.provenance);
    other["step"] = t.steps;
    other["backend"] = t.plan_comm ? t.plan_comm->backend() : comm.backend();
    other["device"] = device_name(t.options);
    other["host"] = host_name();
    other["date"] = profiler::utc_now_iso8601();
    files.open("--trace", *path) << results::trace_to_json(p, r.spans, other) << "\n";
  }
  files.commit();
}

}  // namespace strata::cli
