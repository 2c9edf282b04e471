// The executor: trains a model for real by running one rank's program of a Plan each step
// (interpreter.hpp), with the training loop's bookkeeping around it: parameter initialisation,
// the data, the step's loss and wall time, the measured trace, memory measured beside the Plan's,
// and the reduced gradients for the equivalence tests. It reads no strategy: everything a step
// does is in the Plan's programs (a build-time check keeps strategy specs out of executor/).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "executor/checkpoint_slices.hpp"
#include "executor/comm.hpp"
#include "executor/data.hpp"
#include "executor/interpreter.hpp"
#include "kernels/model_ops.hpp"
#include "strategies/program_json.hpp"
#include "strategies/program.hpp"

namespace strata::exec {

struct RunOptions {
  // Where the rank's tensors live and its ops run: the CPU, or CUDA device `device`.
  kernels::Backend backend = kernels::Backend::kCpu;
  int device = 0;
  std::uint64_t seed = 1234;  // parameter initialisation (params.hpp) and data sampling
  kernels::AdamWOptions adam = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f};
  // Fault injection for the tests: the logits' gradient scaled by this (1 = none), which
  // AdamW's loss curve hardly shows but the gradients do.
  float test_gradient_scale = 1.0f;
};

struct StepResult {
  int step = 0;          // 1 for the first
  double loss = 0;       // mean cross-entropy over the global batch (every rank has it)
  double seconds = 0;    // the slowest rank's wall time for the step
};

// One task's measured wall-clock interval, seconds from the start of its step.
struct TaskTiming {
  std::uint32_t task = 0;
  double start_s = 0, end_s = 0;
};

// One rank's memory: what the Plan predicts and what the executor held.
struct RankMemory {
  int rank = 0;
  double planned_peak_bytes = 0;
  strategies::StaticMemory planned_static;
  MemoryStats measured;
};

// A reduced gradient a rank holds before the optimizer step, as a piece of one unsharded
// parameter: elements [begin, begin + values.size()) of shard `index` of its `parts`.
struct GradientPiece {
  std::string name;  // the parameter's init name ("layers.3.qkv.w", "wte", ...)
  std::int64_t rows = 0, cols = 1;
  strategies::Shard shard = strategies::Shard::kReplicated;
  std::array<std::int64_t, 3> row_blocks{};
  int parts = 1, index = 0;
  std::int64_t begin = 0;
  std::vector<float> values;
};

// A run of a rank's parameters in host memory: the elements slice.indices() names of
// slice.tensor, `data` pointing at slice.count fp32 values inside the rank's parameter buffer.
// Writing through `data` changes the weights the next step uses (parameters() says when).
struct ParameterSpan {
  StateSlice slice;
  float* data = nullptr;
};

class Executor {
 public:
  // Builds this rank's buffers, groups and initial parameters (collective over the world: every
  // rank constructs its Executor at the same time). Throws ConfigError when the world does not
  // match the Plan's or when the program needs what this executor cannot run (refusal()).
  // `comm` (host memory: MPI or local) carries the executor's bookkeeping (the loss, timings,
  // memory) and, unless `plan_comm` is given, the Plan's collectives and transfers; `plan_comm`
  // (a device communicator over the same ranks: NCCL) carries those on the device tensors.
  Executor(const strategies::ProgramSet& plan, Comm& comm, const Corpus& corpus,
           const RunOptions& options, Comm* plan_comm = nullptr);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // One optimizer step over the Plan's global batch. With `capture_gradients`, the reduced
  // gradients are kept as they are just before the optimizer runs (captured_gradients()).
  StepResult step(bool capture_gradients = false);
  int steps_done() const { return steps_; }
  // After loading a checkpoint: the next step() is step `steps` + 1 (its data and AdamW count).
  void set_steps_done(int steps) { steps_ = steps; }
  Interpreter& interpreter() { return *interp_; }
  // This rank's parameters as runs of fp32 host memory, in the order of state_slices()
  // (checkpoint_slices.hpp), so two ranks that hold the same shards (the same rank of two
  // federated sites running one Plan) list the same runs. Only where the parameters are the
  // optimizer's weights: ConfigError on a device backend, for bf16 parameters and when the
  // optimizer keeps fp32 master weights apart (bf16, ZeRO), which writing the parameters would
  // not reach. For federated averaging (fedavg.hpp).
  std::vector<ParameterSpan> parameters();
  const std::vector<TaskTiming>& last_step_timings() const { return timings_; }
  const std::vector<GradientPiece>& captured_gradients() const { return gradients_; }
  // Collective: every rank's timings of the last step, on rank 0 (empty on the others), each
  // counted from its own start of the step, which a barrier aligns across ranks.
  std::vector<strategies::TaskSpan> gather_last_step();
  // Collective: every rank's planned and measured memory, on rank 0.
  std::vector<RankMemory> gather_memory();

 private:
  void capture();
  const strategies::ProgramSet& plan_;
  Comm& comm_;
  RunOptions options_;
  std::unique_ptr<Interpreter> interp_;
  GroupId world_ = kNoGroup;
  int steps_ = 0;
  std::vector<TaskTiming> timings_;
  std::vector<GradientPiece> gradients_;
};

}  // namespace strata::exec
