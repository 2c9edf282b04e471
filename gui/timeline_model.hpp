// The timeline of a trace as the GUI draws it, without Qt: one row per traced rank and stream
// (and lane), its tasks as slices sorted by start, and the two queries a frame needs that keep
// a million-task trace smooth:
//  - rasterize(): a row over a time window into pixel columns, each with the fraction of its
//    time covered by tasks and the category to colour it with, in O(columns x log tasks),
//    whatever the number of tasks in the window (level of detail by exact coverage, not one
//    item per task);
//  - slice_at(): the task under the mouse, by binary search.
//
// Rows come in the trace's own order of ranks, then streams in Stream order, then lanes; their
// slices never overlap (trace.json's contract: "no two complete events of one thread overlap"),
// so a row's busy time up to t is a prefix sum, which is what makes the coverage exact.
//
// defines: Category, category_of(), category_name(), Slice, Row, Pixel, TimelineModel
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "results/trace.hpp"

namespace strata::gui {

// What a task is drawn as: compute by pass (forward, backward, recompute, the optimizer step),
// communication by what it serves (tensor, context, expert or data parallelism, ZeRO's gathers
// and reduce-scatters, the pipeline's sends and receives).
enum class Category : std::uint8_t {
  kForward,
  kBackward,
  kRecompute,
  kOptimizer,
  kTp,
  kCp,
  kEp,
  kDp,
  kZero,
  kPp,
  kOther,
  kCount,
};
Category category_of(const results::TraceEvent& e);
const char* category_name(Category c);

struct Slice {
  double start_s = 0;
  double end_s = 0;
  std::uint32_t event = 0;  // index into Trace::events
  Category category = Category::kOther;
};

struct Row {
  int rank = 0;
  strategies::Stream stream = strategies::Stream::kCompute;
  int lane = 0;
  std::string label;          // "rank 3 compute", "rank 3 pp 2"
  std::vector<Slice> slices;  // by start; never overlapping
  // busy_before[i]: the time covered by slices 0..i-1 (size slices + 1).
  std::vector<double> busy_before;
};

// One pixel column of a row: the fraction of its time window covered by tasks (0 to 1) and
// the category of the task at the column's middle, or else of the first task that starts in it.
struct Pixel {
  float coverage = 0;
  Category category = Category::kOther;
};

class TimelineModel {
 public:
  TimelineModel() = default;
  explicit TimelineModel(results::Trace trace);

  const results::Trace& trace() const { return trace_; }
  const std::vector<Row>& rows() const { return rows_; }
  std::size_t task_count() const { return trace_.events.size(); }
  // Distinct ranks with at least one row, ascending.
  const std::vector<int>& ranks() const { return ranks_; }
  // Where the last task ends (0 for an empty trace).
  double end_s() const { return end_s_; }

  // Row `row` over [t0, t1) in out.size() equal columns. t1 > t0.
  void rasterize(std::size_t row, double t0, double t1, std::span<Pixel> out) const;
  // The time row `row` is busy in [t0, t1].
  double busy(std::size_t row, double t0, double t1) const;
  // The number of slices of row `row` that overlap [t0, t1].
  std::size_t slices_in(std::size_t row, double t0, double t1) const;
  // Index into rows()[row].slices of the slice covering t, or else the nearest one within
  // `tolerance_s` of t; -1 when none.
  std::ptrdiff_t slice_at(std::size_t row, double t, double tolerance_s) const;
  // The first row of `rank`, or -1.
  std::ptrdiff_t first_row_of(int rank) const;
  // The trace event of task `task` of `rank`, or -1.
  std::ptrdiff_t event_of(int rank, std::uint32_t task) const;

  // What a tooltip says of trace event `event`: its rank, task id, name, kind, op or
  // collective, layer, micro-batch, phase, start, duration, FLOPs and bytes, one per line.
  std::string describe(std::size_t event) const;

 private:
  double busy_until(const Row& r, double t) const;

  results::Trace trace_;
  std::vector<Row> rows_;
  std::vector<int> ranks_;
  double end_s_ = 0;
};

}  // namespace strata::gui
