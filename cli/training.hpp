// The pieces of `strata run` (cli/run_command.cpp): the Plan and the executor built from the
// flags, a resumed checkpoint, the training loop with its checkpoints and fault injection, and
// the report (steps, memory beside the Plan's, run.json, the measured trace); with --switch, the
// schedule's phases, the state moved in memory from one phase's executor to the next's.
#pragma once

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/switch_schedule.hpp"
#include "executor/checkpoint.hpp"
#include "executor/comm.hpp"
#include "executor/data.hpp"
#include "executor/executor.hpp"
#include "results/run.hpp"
#include "strategies/plan.hpp"

namespace strata::cli {

struct Training {
  std::unique_ptr<strategies::Plan> plan;
  std::unique_ptr<exec::Corpus> corpus;
  // --comm nccl: the Plan's collectives and transfers on NCCL (declared before the executor,
  // which uses it, so that it outlives it).
  std::unique_ptr<exec::Comm> plan_comm;
  std::unique_ptr<exec::Executor> executor;
  exec::RunOptions options;
  int steps = 10, save_every = 0;
  int keep_last = 0;       // --keep-last (0: keep every checkpoint)
  int first_step = 0;      // steps already done (a resumed checkpoint's)
  std::string latest;      // the latest complete checkpoint's directory ("" when none)
  // --switch FILE: the schedule; every phase's Plan is lowered before any work, each kept here
  // until its phase starts (then moved to `plan`; the running phase's slot is empty).
  std::optional<SwitchSchedule> schedule;
  std::vector<std::unique_ptr<strategies::Plan>> phase_plans;
  std::size_t phase = 0;  // the running phase
  // Rank 0, with --switch in a SimGrid build: switch i's simulated seconds and bytes (phase i to
  // i + 1; cli/switching.hpp), reported beside the measured ones.
  std::vector<std::pair<double, double>> simulated_switches;
};

// A step whose loss is NaN or infinite: every rank sees the same loss and stops with this,
// naming the step (and the checkpoints); `strata run` exits with kExitRuntime.
class NonFiniteLoss : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TrainingResult {
  std::vector<results::RunStep> steps;
  std::vector<results::RunSwitch> switches;  // --switch
  std::vector<strategies::TaskSpan> spans;  // rank 0, with --trace
  std::vector<exec::RankMemory> memory;      // rank 0
  json::Json federated;  // a federated run's run.json section (cli/federated_run.hpp)
};

// Specs (with --switch, every phase's), checks in the user's terms (the spec field to change),
// the paths it reads and writes (outputs and checkpoint directories writable and none of them an
// input), the Plan (every phase's), the data and the executor. ConfigError on bad input, before
// any work.
Training prepare_training(const Args& args, exec::Comm& comm);
// The number `flag` gives, or `fallback` without it; ConfigError unless it is a positive number
// ("--lr = x: must be a positive number").
double parse_positive_double(const Args& args, const std::string& flag, double fallback);
// --comm-timeout in seconds (default 300, 0: wait forever); ConfigError for a bad value.
double comm_timeout_s(const Args& args);
// An error on one rank once training has started: says so on stderr with the rank and stops the
// whole world (so no rank waits forever on one that gave up), exit kExitConfigError for a
// ConfigError, kExitRuntime for a CommTimeout, `other` for anything else.
[[noreturn]] void abort_world(exec::Comm& comm, const std::exception& e, int other);
// --resume DIR: loads the latest checkpoint (with --switch, into the phase of the step after
// it, whose executor prepare_training() built).
void resume(Training& t, const Args& args, exec::Comm& comm);
void print_banner(const Training& t, const exec::Comm& comm);
// The checkpoint options of --seed and --keep-last.
exec::SaveOptions save_options(const Training& t);
// "cpu", or "cuda:N (the GPU's name)": where a run's tensors live (run.json's "device").
std::string device_name(const exec::RunOptions& options);
// The steps, printing each on rank 0, with checkpoints (--save, --save-every, --keep-last), the
// first step's gradients (--dump-gradients) and the tests' fault injection (STRATA_TEST_KILL,
// STRATA_TEST_STOP); with --switch, the next phase's executor built and the state moved into it
// in memory (exec::switch_state) at each phase's first step. NonFiniteLoss when a step's loss
// is not finite (after saving its state with --save-on-nan).
TrainingResult train(Training& t, const Args& args, exec::Comm& comm);
// Rank 0: the median throughput, each rank's memory beside the Plan's, --json and --trace
// (written all or none, cli/args.hpp OutputFiles).
void report_training(const Training& t, const TrainingResult& r, const Args& args,
                     const exec::Comm& comm);

}  // namespace strata::cli
