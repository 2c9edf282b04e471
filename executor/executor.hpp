// The executor: runs one rank's program of a Plan for real, task by task in program order, on
// the CPU (kernels/ through a CPU stream; collectives and transfers through a Comm). A training
// loop reads top to bottom: Executor::step() runs every task of the rank's program once, which
// is one optimizer step over the Plan's global batch.
//
// What each task does is in executor.cpp, block by block; the Plan decides which tasks run, in
// which order, on which group, and the executor checks every message size against the Plan's
// bytes (a disagreement is a bug and stops the run). Computation is fp32 (the strategy's
// precision must be fp32); communication waits right after it is issued except pipeline sends,
// which complete by the end of the step (local-cpu: comm_overlaps_compute false).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "executor/comm.hpp"
#include "executor/data.hpp"
#include "executor/params.hpp"
#include "kernels/model_ops.hpp"
#include "strategies/plan.hpp"
#include "strategies/plan_json.hpp"

namespace strata::exec {

struct RunOptions {
  std::uint64_t seed = 1234;  // parameter initialisation (params.hpp) and data sampling
  kernels::AdamWOptions adam = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f};
};

// Throws ConfigError naming the field, value and rule for anything in the Plan's specs that
// the executor does not run yet (so nothing starts that would run differently from the Plan).
void check_supported(const strategies::Plan& plan);

// One task's measured wall-clock interval, seconds from the start of its step.
struct TaskTiming {
  std::uint32_t task = 0;
  double start_s = 0, end_s = 0;
};

struct StepResult {
  int step = 0;          // 1 for the first
  double loss = 0;       // mean cross-entropy over the global batch (every rank has it)
  double seconds = 0;    // the slowest rank's wall time for the step
};

class Executor {
 public:
  // Builds this rank's parameters and communication groups (collective over the world: every
  // rank constructs its Executor at the same time). `comm.size()` must equal the Plan's world.
  Executor(const strategies::Plan& plan, Comm& comm, const Corpus& corpus,
           const RunOptions& options);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  StepResult step();
  int steps_done() const;
  // After loading a checkpoint: the next step() is step `steps` + 1 (its data and AdamW count).
  void set_steps_done(int steps);
  RankParams& params();
  const std::vector<TaskTiming>& last_step_timings() const;
  // Collective: every rank's timings of the last step, on rank 0 (empty on the others), for
  // strategies::trace_to_json. Each rank's times count from its own start of the step, which
  // a barrier aligns across ranks.
  std::vector<strategies::TaskSpan> gather_last_step();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::exec
