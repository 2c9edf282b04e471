// The pieces of `strata run` (cli/run_command.cpp): the Plan and the executor built from the
// flags, a resumed checkpoint, the training loop with its checkpoints and fault injection, and
// the report (steps, memory beside the Plan's, run.json, the measured trace).
#pragma once

#include <memory>
#include <vector>

#include "cli/args.hpp"
#include "executor/comm.hpp"
#include "executor/data.hpp"
#include "executor/executor.hpp"
#include "results/run.hpp"
#include "strategies/plan.hpp"

namespace strata::cli {

struct Training {
  std::unique_ptr<strategies::Plan> plan;
  std::unique_ptr<exec::Corpus> corpus;
  std::unique_ptr<exec::Executor> executor;
  exec::RunOptions options;
  int steps = 10, save_every = 0;
  int first_step = 0;  // steps already done (a resumed checkpoint's)
};

struct TrainingResult {
  std::vector<results::RunStep> steps;
  std::vector<strategies::TaskSpan> spans;  // rank 0, with --trace
  std::vector<exec::RankMemory> memory;      // rank 0
};

// Specs, checks in the user's terms (the spec field to change), the Plan, the data and the
// executor. ConfigError on bad input, before any work.
Training prepare_training(const Args& args, exec::Comm& comm);
// --resume DIR: loads the latest checkpoint.
void resume(Training& t, const Args& args, exec::Comm& comm);
void print_banner(const Training& t, const exec::Comm& comm);
// The steps, printing each on rank 0, with checkpoints (--save, --save-every), the first step's
// gradients (--dump-gradients) and the tests' fault injection (STRATA_TEST_KILL).
TrainingResult train(Training& t, const Args& args, exec::Comm& comm);
// Rank 0: the median throughput, each rank's memory beside the Plan's, --json and --trace.
void report_training(const Training& t, const TrainingResult& r, const Args& args,
                     const exec::Comm& comm);

}  // namespace strata::cli
