// A rank's memory over the step, by what it holds: its static memory (parameters, gradients,
// optimizer states; the Plan's StaticMemory) under its transient buffers by role (activations,
// recomputed tensors, gathered parameters, workspace, communication buffers, ...), each buffer
// live from the start of its first task to the end of its last (strategies/program.hpp's
// lifetime rule), on the task times of a trace of that rank (predicted or measured). Without
// Qt; the Memory tab draws it.
//
// defines: MemorySample, MemoryTimeline, memory_timeline()
#pragma once

#include <array>
#include <vector>

#include "gui/timeline_model.hpp"
#include "strategies/program.hpp"

namespace strata::gui {

// From t_s until the next sample, the rank holds these transient bytes by role.
struct MemorySample {
  double t_s = 0;
  std::array<double, strategies::kNumRoles> transient{};
  double total_transient() const;
};

struct MemoryTimeline {
  int rank = 0;
  strategies::StaticMemory static_bytes;
  std::vector<MemorySample> samples;  // by time; the first at the rank's first task's start
  double peak_bytes = 0;              // static + the largest transient total
  double peak_t_s = 0;
};

// The timeline of `rank` from `plan` (its program's buffers) and `trace` (the rank's task
// times). ConfigError when the trace has no task of that rank, or lacks a task a buffer lives
// from or to (a trace of another Plan).
MemoryTimeline memory_timeline(const strategies::ProgramSet& plan, const TimelineModel& trace,
                               int rank);

}  // namespace strata::gui
