// One task of one rank as it ran (executor/) or as it was simulated (sim/): what a trace is made
// of. Lives in strategies/ so that both can produce spans without depending on results/, which
// writes them as trace.json (results/trace.hpp).
#pragma once

#include <cstdint>

namespace strata::strategies {

// Task `task` (its index in the rank's program) of rank `rank`, seconds from the start of the
// step on that rank.
struct TaskSpan {
  int rank = 0;
  std::uint32_t task = 0;
  double start_s = 0;
  double end_s = 0;
  // Simulated collectives and receives: how long before start_s the rank issued it and waited
  // for its peers (the simulated span is the communication alone). 0 otherwise, and in measured
  // spans, which run from the call to its return, waiting included.
  double waited_s = 0;

  bool operator==(const TaskSpan&) const = default;
};

}  // namespace strata::strategies
