// The op timer: one compute op of a Plan's program run alone, again and again, on the same
// dispatch the interpreter uses (compute_ops.cpp), and timed run by run. This is what the
// profiler's `strata profile ops` measures with (docs/profiles.md "Measuring ops").
//
// How an op is timed:
//  - Its operands alone are allocated: each buffer it names is resolved to the root buffer it is
//    a view of (as the interpreter resolves views, with the rank's group index), and only the
//    span of each root that the op's operands cover is allocated, so operands that share memory
//    in the program share it here too.
//  - Inputs hold deterministic pseudo-random values (a seeded splitmix64): floats uniform in
//    [0.5, 1.5) -- positive and away from zero, so statistics such as rstd or a softmax's sum
//    stay in their domains and no run meets NaN, infinity or subnormals, which time differently;
//    int32 buffers (token ids, targets) uniform over the op's whole vocabulary (its shard size
//    times its group's size); fp64 (the loss) zero.
//  - Several input sets (whole copies of the operands: on the CPU byte copies of the first set,
//    elsewhere each filled with its own seed) are kept and used in turn, run i on set
//    i mod sets, so that a run does not find its inputs in cache from the run before (CUTLASS's
//    rotation over 2x L2; here twice the last-level cache, bounded by memory: OpTimerOptions).
//  - `warmup` untimed runs, then `repetitions` timed ones, each timed alone between two events
//    recorded on the op's stream: on the CPU the host clock (std::chrono::steady_clock) before
//    and after the op, which runs inline; on CUDA (OpTimerOptions::backend) cudaEvents enqueued
//    around its kernels, so that launch overhead outside the stream is not counted.
//  - Ops that depend on the rank's index in a group (a vocabulary shard, a row block) run with
//    the given rank's index.
// Not timed (untimed_reason()): communication ops (the link face's: `strata profile links`),
// the data loader (load_batch, host work the cost model prices at 0) and the MoE ops that read
// a routing (indices, rows, counts: seeded values are not a valid one; moe_route is timed). A program the executor
// refuses (refusal(): FP8, 16-bit, dropout, rotary, GQA) is refused here too.
//
// Runs on the CPU stream by default. The CUDA path (backend kCuda) puts the input sets in device
// memory and times with CUDA events; it runs the ops kernels/ has CUDA kernels for (all but the
// context-parallel attention, which throws, naming the op).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/backend.hpp"
#include "strategies/program.hpp"

namespace strata::exec {

struct OpTimerOptions {
  int warmup = 2;        // untimed runs first (>= 0)
  int repetitions = 10;  // timed runs (>= 1)
  // Input sets: at least enough copies of the operands that together they reach `rotate_bytes`
  // (0: twice last_level_cache_bytes()), but at most `max_sets` copies and `max_bytes` in all
  // (one set is always allocated, however large).
  double rotate_bytes = 0;
  int max_sets = 64;
  double max_bytes = 1024.0 * 1024 * 1024;
  std::uint64_t seed = 1;  // of the input values
  // Where to time: the CPU, or a CUDA device (ConfigError when this build or machine has none).
  kernels::Backend backend = kernels::Backend::kCpu;
  int device = 0;
};

struct OpTiming {
  std::vector<double> seconds;  // one per timed run, in run order; each > 0
  int input_sets = 0;           // operand copies used in turn
  double set_bytes = 0;         // bytes of one copy of the operands
};

// Why `op` cannot be timed alone, or "" when it can.
std::string untimed_reason(const strategies::Op& op);

// Times op `op_index` (0 <= op_index < the task's op_count) of compute task `task` of the
// program `rank` runs. std::invalid_argument for a rank, task or op index out of range or a task
// that is not a compute task; ConfigError for an op that is not timed (untimed_reason()) or a
// program the executor refuses (refusal()), or options out of range.
OpTiming time_op(const strategies::ProgramSet& plan, int rank, std::uint32_t task,
                 std::uint32_t op_index, const OpTimerOptions& options = {});

// This machine's last-level cache in bytes (sysconf), or 32 MiB where it does not say.
double last_level_cache_bytes();

}  // namespace strata::exec
