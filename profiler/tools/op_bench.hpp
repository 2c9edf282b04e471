// The op bench of `strata profile ops`: every distinct op of a Plan (profiler::OpKey: what
// changes its work) timed once, alone, with the executor's op timer (executor/op_timer.hpp: the
// interpreter's dispatch to kernels/ on rotated copies of the op's operands), into an OpProfile
// (profiler/profile.hpp; docs/profiles.md "Measuring ops").
//
// A measuring tool, not the profiler library: it uses the executor and kernels/, so it lives in
// its own target (strata_profiler_tools; DESIGN.md "Profiler") and the library stays free of them.
//
// defines: OpSite, distinct_ops(), measurement_of(), OpBenchOptions, measure_ops()
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "executor/op_timer.hpp"
#include "profiler/cost_model.hpp"
#include "profiler/profile.hpp"
#include "strategies/plan.hpp"
#include "strategies/program.hpp"

namespace strata::profiler {

// Where a distinct op is timed: the first place it appears.
struct OpSite {
  OpKey key;
  int rank = 0;                // the first rank that runs the program holding it
  std::uint32_t task = 0;      // its compute task in that program
  std::uint32_t op_index = 0;  // its index among the task's ops
};

// Every distinct OpKey of the compute tasks of `plan`'s programs, in order of first appearance
// (programs in stage order, tasks and ops in program order), each with the site where it first
// appears. Ops the op timer does not time are left out (exec::untimed_reason: load_batch).
std::vector<OpSite> distinct_ops(const strategies::ProgramSet& plan);

// The measurement of `key` from its timed runs (at least one): their median (the mean of the
// two middle runs for an even count), fastest and slowest.
OpMeasurement measurement_of(const OpKey& key, std::vector<double> seconds);

struct OpBenchOptions {
  // How each op is timed: warm-up runs, timed runs, input sets (executor/op_timer.hpp).
  exec::OpTimerOptions timer;
  // Passes over every op (at least 1, at most timer.repetitions): each op's repetitions are
  // shared among them, each pass on freshly allocated and filled inputs, so that two profiles
  // agree within the spread they report (docs/profiles.md "How reproducible a profile is").
  int trials = 3;
  // Called before each op is timed with its number (1 for the first) and the number of timings
  // (ops x trials), and where it is timed: progress for people.
  std::function<void(std::size_t number, std::size_t count, const OpSite& site)> progress;
};

// Times every op of distinct_ops(plan) on this machine's CPU (or, with options.timer.backend
// kCuda, on a CUDA device: the ops kernels/ has CUDA kernels for, every op but the
// context-parallel attention; another op is a ConfigError naming it) and returns the profile: one
// measurement per distinct op, in that order, with the settings, the specs' names and where it
// was measured (the device: the cluster's device name of the ranks timed; the host, the date,
// Strata's version, Eigen's). ConfigError, before any op is timed, when the executor refuses the
// Plan (exec::refusal), when options are out of range, or when the ranks timed are not devices
// of one name and of the kind timed on: CPU times filed under a GPU's name would be a lie.
OpProfile measure_ops(const strategies::Plan& plan, const OpBenchOptions& options);

}  // namespace strata::profiler
