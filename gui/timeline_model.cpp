// The GUI's timeline without Qt (timeline_model.hpp).
#include "gui/timeline_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <tuple>
#include <utility>

namespace strata::gui {

using strategies::Phase;
using strategies::Purpose;
using strategies::Stream;
using strategies::TaskKind;

TimelineData timeline_data(const results::Trace& trace) {
  TimelineData d;
  d.events.reserve(trace.events.size());
  for (const results::TraceEvent& t : trace.events) {
    TimelineEvent e;
    e.start_s = t.start_s;
    e.duration_s = t.duration_s;
    e.waited_s = t.waited_s;
    e.flops = t.flops;
    e.bytes = t.bytes;
    e.task = t.task;
    e.rank = t.rank;
    e.layer = t.layer;
    e.micro_batch = t.micro_batch;
    e.peer = t.peer;
    e.group_size = static_cast<std::int32_t>(t.group.size());
    d.add_name(e, t.name);
    e.chunk = static_cast<std::uint16_t>(std::max(0, t.chunk));
    e.stream = t.stream;
    e.lane = static_cast<std::uint8_t>(std::min(t.lane, 255));
    e.kind = t.kind;
    e.phase = t.phase;
    e.block = t.block;
    e.collective = t.collective;
    e.purpose = t.purpose;
    d.events.push_back(e);
  }
  for (const results::TraceTrack& t : trace.tracks) {
    d.tracks.push_back({t.rank, t.stream, t.lane, t.name});
  }
  return d;
}

Category category_of(const results::TraceEvent& e) {
  TimelineEvent c;
  c.kind = e.kind;
  c.phase = e.phase;
  c.block = e.block;
  c.stream = e.stream;
  c.purpose = e.purpose;
  return category_of(c);
}

Category category_of(const TimelineEvent& e) {
  if (e.kind == TaskKind::kCompute) {
    if (e.phase == Phase::kStep || e.block == strategies::Block::kOptimizer) {
      return Category::kOptimizer;
    }
    if (e.phase == Phase::kBackward) return Category::kBackward;
    if (e.phase == Phase::kRecompute) return Category::kRecompute;
    if (e.phase == Phase::kForward) return Category::kForward;
    return Category::kOther;
  }
  if (e.kind == TaskKind::kSend || e.kind == TaskKind::kRecv) {
    return e.stream == Stream::kPp ? Category::kPp : Category::kOther;
  }
  switch (e.purpose) {
    case Purpose::kTp:
    case Purpose::kReshard:
      return Category::kTp;
    case Purpose::kCp:
      return Category::kCp;
    case Purpose::kEp:
      return Category::kEp;
    case Purpose::kDp:
    case Purpose::kEmbedding:
      return Category::kDp;
    case Purpose::kZero:
      return Category::kZero;
    case Purpose::kPp:
      return Category::kPp;
    case Purpose::kNone:
      break;
  }
  switch (e.stream) {  // a collective without a purpose: by the stream it runs on
    case Stream::kTp:
      return Category::kTp;
    case Stream::kCp:
      return Category::kCp;
    case Stream::kEp:
      return Category::kEp;
    case Stream::kDp:
      return Category::kDp;
    case Stream::kPp:
      return Category::kPp;
    case Stream::kCompute:
      break;
  }
  return Category::kOther;
}

const char* category_name(Category c) {
  switch (c) {
    case Category::kForward:
      return "forward";
    case Category::kBackward:
      return "backward";
    case Category::kRecompute:
      return "recompute";
    case Category::kOptimizer:
      return "optimizer";
    case Category::kTp:
      return "tp";
    case Category::kCp:
      return "cp";
    case Category::kEp:
      return "ep";
    case Category::kDp:
      return "dp";
    case Category::kZero:
      return "ZeRO";
    case Category::kPp:
      return "pp";
    case Category::kOther:
    case Category::kCount:
      break;
  }
  return "other";
}

TimelineModel::TimelineModel(TimelineData data) : data_(std::move(data)) { lay_out(); }

TimelineModel::TimelineModel(results::Trace trace)
    : data_(timeline_data(trace)), full_(std::move(trace)) {
  lay_out();
}

void TimelineModel::lay_out() {
  // Rows by (rank, stream, lane); the trace's track names label them where it has them.
  std::map<std::tuple<int, int, int>, std::size_t> index;
  std::map<std::tuple<int, int, int>, std::string> names;
  for (const TimelineTrack& t : data_.tracks) {
    names[{t.rank, static_cast<int>(t.stream), t.lane}] = t.name;
  }
  std::vector<std::pair<std::tuple<int, int, int>, std::vector<Slice>>> grouped;
  for (std::size_t i = 0; i < data_.events.size(); ++i) {
    const TimelineEvent& e = data_.events[i];
    const std::tuple<int, int, int> key{e.rank, static_cast<int>(e.stream), e.lane};
    auto [it, inserted] = index.try_emplace(key, grouped.size());
    if (inserted) grouped.push_back({key, {}});
    grouped[it->second].second.push_back({e.start_s, e.start_s + std::max(0.0, e.duration_s),
                                           static_cast<std::uint32_t>(i), category_of(e), e.block});
    end_s_ = std::max(end_s_, e.start_s + e.duration_s);
  }
  std::sort(grouped.begin(), grouped.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [key, slices] : grouped) {
    Row row;
    row.rank = std::get<0>(key);
    row.stream = static_cast<Stream>(std::get<1>(key));
    row.lane = std::get<2>(key);
    const auto name = names.find(key);
    row.label = "rank " + std::to_string(row.rank) + " " +
                (name != names.end() && !name->second.empty()
                     ? name->second
                     : std::string(strategies::stream_name(row.stream)) +
                           (row.lane > 0 ? " " + std::to_string(row.lane + 1) : ""));
    std::sort(slices.begin(), slices.end(),
              [](const Slice& a, const Slice& b) { return a.start_s < b.start_s; });
    // Consecutive tasks may touch by the rounding of microsecond timestamps: clip so the
    // prefix sums stay exact and monotone.
    for (std::size_t i = 1; i < slices.size(); ++i) {
      slices[i].start_s = std::max(slices[i].start_s, slices[i - 1].end_s);
      slices[i].end_s = std::max(slices[i].end_s, slices[i].start_s);
    }
    row.busy_before.assign(slices.size() + 1, 0.0);
    for (std::size_t i = 0; i < slices.size(); ++i) {
      row.busy_before[i + 1] = row.busy_before[i] + (slices[i].end_s - slices[i].start_s);
    }
    row.slices = std::move(slices);
    if (ranks_.empty() || ranks_.back() != row.rank) ranks_.push_back(row.rank);
    rows_.push_back(std::move(row));
  }
}

double TimelineModel::busy_until(const Row& r, double t) const {
  // The last slice starting at or before t.
  const auto it = std::upper_bound(r.slices.begin(), r.slices.end(), t,
                                   [](double v, const Slice& s) { return v < s.start_s; });
  if (it == r.slices.begin()) return 0;
  const std::size_t i = static_cast<std::size_t>(it - r.slices.begin()) - 1;
  const Slice& s = r.slices[i];
  return r.busy_before[i] + std::clamp(t - s.start_s, 0.0, s.end_s - s.start_s);
}

double TimelineModel::busy(std::size_t row, double t0, double t1) const {
  const Row& r = rows_.at(row);
  return t1 <= t0 ? 0.0 : busy_until(r, t1) - busy_until(r, t0);
}

std::size_t TimelineModel::slices_in(std::size_t row, double t0, double t1) const {
  const Row& r = rows_.at(row);
  // Slices end in start order too (they do not overlap): the first ending after t0, the first
  // starting after t1.
  const auto first = std::upper_bound(r.slices.begin(), r.slices.end(), t0,
                                      [](double v, const Slice& s) { return v < s.end_s; });
  const auto last = std::upper_bound(r.slices.begin(), r.slices.end(), t1,
                                     [](double v, const Slice& s) { return v < s.start_s; });
  return last > first ? static_cast<std::size_t>(last - first) : 0;
}

void TimelineModel::rasterize(std::size_t row, double t0, double t1,
                              std::span<Pixel> out) const {
  const Row& r = rows_.at(row);
  if (out.empty() || !(t1 > t0)) return;
  const double width = (t1 - t0) / static_cast<double>(out.size());
  double before = busy_until(r, t0);
  for (std::size_t c = 0; c < out.size(); ++c) {
    const double a = t0 + width * static_cast<double>(c);
    const double b = a + width;
    const double after = busy_until(r, b);
    Pixel& p = out[c];
    p.coverage = static_cast<float>(std::clamp((after - before) / width, 0.0, 1.0));
    before = after;
    p.category = Category::kOther;
    if (p.coverage <= 0) continue;
    const std::ptrdiff_t mid = slice_at(row, (a + b) / 2, 0);
    if (mid >= 0) {
      p.category = r.slices[static_cast<std::size_t>(mid)].category;
      p.block = r.slices[static_cast<std::size_t>(mid)].block;
    } else {  // the first slice ending after a: it starts or ends inside the column
      const auto it = std::upper_bound(r.slices.begin(), r.slices.end(), a,
                                       [](double v, const Slice& s) { return v < s.end_s; });
      if (it != r.slices.end()) {
        p.category = it->category;
        p.block = it->block;
      }
    }
  }
}

std::ptrdiff_t TimelineModel::slice_at(std::size_t row, double t, double tolerance_s) const {
  const Row& r = rows_.at(row);
  if (r.slices.empty()) return -1;
  const auto it = std::upper_bound(r.slices.begin(), r.slices.end(), t,
                                   [](double v, const Slice& s) { return v < s.start_s; });
  std::ptrdiff_t best = -1;
  double best_gap = tolerance_s;
  auto consider = [&](std::ptrdiff_t i) {
    if (i < 0 || i >= static_cast<std::ptrdiff_t>(r.slices.size())) return;
    const Slice& s = r.slices[static_cast<std::size_t>(i)];
    const double gap = t < s.start_s ? s.start_s - t : (t > s.end_s ? t - s.end_s : 0.0);
    if (gap <= best_gap) {
      best_gap = gap;
      best = i;
    }
  };
  const std::ptrdiff_t after = it - r.slices.begin();
  consider(after - 1);  // the slice starting at or before t: covers it when t < its end
  if (best >= 0 && best_gap == 0) return best;
  consider(after);
  return best;
}

std::ptrdiff_t TimelineModel::first_row_of(int rank) const {
  for (std::size_t i = 0; i < rows_.size(); ++i) {
    if (rows_[i].rank == rank) return static_cast<std::ptrdiff_t>(i);
  }
  return -1;
}

std::ptrdiff_t TimelineModel::event_of(int rank, std::uint32_t task) const {
  for (std::size_t i = 0; i < data_.events.size(); ++i) {
    if (data_.events[i].rank == rank && data_.events[i].task == task) {
      return static_cast<std::ptrdiff_t>(i);
    }
  }
  return -1;
}

namespace {

std::string seconds_text(double s) {
  char buf[32];
  if (s >= 1) {
    std::snprintf(buf, sizeof buf, "%.3f s", s);
  } else if (s >= 1e-3) {
    std::snprintf(buf, sizeof buf, "%.3f ms", s * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f us", s * 1e6);
  }
  return buf;
}

std::string quantity_text(double v, const char* unit) {
  const char* prefixes[] = {"", "K", "M", "G", "T", "P"};
  int k = 0;
  while (std::fabs(v) >= 1000 && k < 5) {
    v /= 1000;
    ++k;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3g %s%s", v, prefixes[k], unit);
  return buf;
}

}  // namespace

std::string TimelineModel::describe(std::size_t event) const {
  const TimelineEvent& e = data_.events.at(event);
  std::string s = std::string(name(e)) + "\n";
  s += "rank " + std::to_string(e.rank) + ", task " + std::to_string(e.task) + " (" +
       strategies::task_kind_name(e.kind) + " on " + strategies::stream_name(e.stream) + ")\n";
  s += std::string("category ") + category_name(category_of(e));
  if (e.phase != Phase::kNone) s += std::string(", ") + strategies::phase_name(e.phase);
  if (e.block != strategies::Block::kNone) s += std::string(", ") + strategies::block_name(e.block);
  s += "\n";
  if (e.layer >= 0) s += "layer " + std::to_string(e.layer) + "  ";
  if (e.micro_batch >= 0) s += "micro-batch " + std::to_string(e.micro_batch) + "  ";
  if (e.chunk > 0) s += "chunk " + std::to_string(e.chunk);
  if (e.layer >= 0 || e.micro_batch >= 0 || e.chunk > 0) s += "\n";
  if (e.collective != strategies::CollectiveKind::kNone) {
    s += std::string(strategies::collective_name(e.collective)) + " for " +
         strategies::purpose_name(e.purpose) + " over " + std::to_string(e.group_size) +
         " ranks\n";
  }
  if (e.peer >= 0) s += (e.kind == TaskKind::kSend ? "to rank " : "from rank ") + std::to_string(e.peer) + "\n";
  s += "start " + seconds_text(e.start_s) + ", duration " + seconds_text(e.duration_s);
  if (e.waited_s > 0) s += ", waited " + seconds_text(e.waited_s) + " before";
  s += "\n";
  if (e.flops > 0) s += quantity_text(e.flops, "FLOP") + "  ";
  if (e.bytes > 0) s += quantity_text(e.bytes, "B");
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace strata::gui
