// A rank's memory over the step (memory_timeline.hpp).
#include "gui/memory_timeline.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <unordered_map>

#include "common/error.hpp"

namespace strata::gui {

double MemorySample::total_transient() const {
  return std::accumulate(transient.begin(), transient.end(), 0.0);
}

MemoryTimeline memory_timeline(const strategies::ProgramSet& plan, const TimelineModel& trace,
                               int rank) {
  if (rank < 0 || rank >= plan.world_size) {
    throw ConfigError("rank " + std::to_string(rank) + " is not a rank of the Plan (world of " +
                      std::to_string(plan.world_size) + ")");
  }
  const strategies::Program& p = plan.program_of(rank);
  // The rank's task times.
  std::unordered_map<std::uint32_t, std::pair<double, double>> times;
  for (const TimelineEvent& e : trace.events()) {
    if (e.rank == rank) times[e.task] = {e.start_s, e.start_s + e.duration_s};
  }
  if (times.empty()) {
    throw ConfigError("the trace has no task of rank " + std::to_string(rank) +
                      " (strata simulate --trace-ranks " + std::to_string(rank) + ")");
  }
  auto time_of = [&](std::uint32_t task, bool end) {
    const auto it = times.find(task);
    if (it == times.end()) {
      throw ConfigError("the trace lacks task " + std::to_string(task) + " of rank " +
                        std::to_string(rank) + " (" + plan.task_name(p.tasks[task]) +
                        "): a trace of another Plan?");
    }
    return end ? it->second.second : it->second.first;
  };
  // Allocations at their first task's start, frees at their last task's end; at one instant
  // frees come first (a task that ends releases before the next one allocates). An end is
  // start + duration, read from microseconds: rounding can put it a few 1e-19 s after the next
  // task's start, so instants are compared to the nanosecond (tasks last far longer).
  const auto instant = [](double t) { return std::round(t * 1e9); };
  struct Change {
    double t;
    bool alloc;
    int role;
    double bytes;
  };
  std::vector<Change> changes;
  for (const strategies::Buffer& b : p.buffers) {
    if (b.persistent || b.is_view() || b.bytes() <= 0) continue;
    const int role = static_cast<int>(b.role);
    changes.push_back({time_of(b.first_task, false), true, role, b.bytes()});
    changes.push_back({time_of(b.last_task, true), false, role, b.bytes()});
  }
  std::stable_sort(changes.begin(), changes.end(), [&](const Change& a, const Change& b) {
    const double ta = instant(a.t), tb = instant(b.t);
    return ta != tb ? ta < tb : (!a.alloc && b.alloc);
  });
  MemoryTimeline m;
  m.rank = rank;
  m.static_bytes = p.memory.static_bytes;
  double first = times.begin()->second.first;
  for (const auto& [task, span] : times) first = std::min(first, span.first);
  MemorySample now;
  now.t_s = first;
  m.samples.push_back(now);
  m.peak_bytes = m.static_bytes.total();
  m.peak_t_s = first;
  for (const Change& c : changes) {
    now.t_s = c.t;
    now.transient[static_cast<std::size_t>(c.role)] += c.alloc ? c.bytes : -c.bytes;
    // Rounding must not leave a freed role slightly negative.
    if (now.transient[static_cast<std::size_t>(c.role)] < 0) {
      now.transient[static_cast<std::size_t>(c.role)] = 0;
    }
    if (instant(m.samples.back().t_s) == instant(c.t)) {
      m.samples.back() = now;
    } else {
      m.samples.push_back(now);
    }
    const double total = m.static_bytes.total() + now.total_transient();
    if (total > m.peak_bytes) {
      m.peak_bytes = total;
      m.peak_t_s = c.t;
    }
  }
  return m;
}

}  // namespace strata::gui
