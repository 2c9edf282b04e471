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
// A model holds its tasks compactly (TimelineEvent, names in one buffer): from a results::Trace
// (which it then keeps, for comparisons), or from trace_loader.hpp's fast reader.
//
// defines: Category, category_of(), category_name(), TimelineEvent, TimelineTrack, TimelineData,
//          Slice, Row, Pixel, TimelineModel
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <optional>
#include <string>
#include <string_view>
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
// One task, as the timeline keeps it (about 80 bytes; its name in TimelineData::names).
struct TimelineEvent {
  double start_s = 0, duration_s = 0, waited_s = 0;
  double flops = 0, bytes = 0;
  std::uint32_t task = 0;
  std::int32_t rank = 0, layer = -1, micro_batch = -1, peer = -1;
  std::int32_t group_size = 0;  // collectives: the group's ranks
  std::uint32_t name_begin = 0;
  std::uint16_t name_size = 0;
  std::uint16_t chunk = 0;
  strategies::Stream stream = strategies::Stream::kCompute;
  std::uint8_t lane = 0;
  strategies::TaskKind kind = strategies::TaskKind::kCompute;
  strategies::Phase phase = strategies::Phase::kNone;
  strategies::Block block = strategies::Block::kNone;
  strategies::CollectiveKind collective = strategies::CollectiveKind::kNone;
  strategies::Purpose purpose = strategies::Purpose::kNone;
};

// A thread of the trace, as its metadata names it.
struct TimelineTrack {
  int rank = 0;
  strategies::Stream stream = strategies::Stream::kCompute;
  int lane = 0;
  std::string name;
};

struct TimelineData {
  std::vector<TimelineEvent> events;  // in file order
  std::string names;                  // every event's name, back to back
  std::vector<TimelineTrack> tracks;

  // Appends `name` (its first 65,535 bytes) to `names` and points `e` at it.
  void add_name(TimelineEvent& e, std::string_view name) {
    e.name_begin = static_cast<std::uint32_t>(names.size());
    e.name_size = static_cast<std::uint16_t>(std::min<std::size_t>(name.size(), 65535));
    names.append(name.substr(0, e.name_size));
  }
};

// A trace's events, compact.
TimelineData timeline_data(const results::Trace& trace);

Category category_of(const TimelineEvent& e);
Category category_of(const results::TraceEvent& e);
const char* category_name(Category c);

struct Slice {
  double start_s = 0;
  double end_s = 0;
  std::uint32_t event = 0;  // index into TimelineModel::events()
  Category category = Category::kOther;
  strategies::Block block = strategies::Block::kNone;  // compute tasks: what they compute
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
  strategies::Block block = strategies::Block::kNone;  // of the same task
};

class TimelineModel {
 public:
  TimelineModel() = default;
  explicit TimelineModel(TimelineData data);
  // Keeps `trace` too (full_trace()).
  explicit TimelineModel(results::Trace trace);

  const std::vector<TimelineEvent>& events() const { return data_.events; }
  std::string_view name(const TimelineEvent& e) const {
    return std::string_view(data_.names).substr(e.name_begin, e.name_size);
  }
  // The whole trace when the model was made from one, else null (loaded for display only).
  const results::Trace* full_trace() const { return full_ ? &*full_ : nullptr; }
  const std::vector<Row>& rows() const { return rows_; }
  std::size_t task_count() const { return data_.events.size(); }
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
  void lay_out();

  TimelineData data_;
  std::optional<results::Trace> full_;
  std::vector<Row> rows_;
  std::vector<int> ranks_;
  double end_s_ = 0;
};

}  // namespace strata::gui
