// Two runs side by side (side_by_side.hpp).
#include "gui/side_by_side.hpp"

#include <QSplitter>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "common/error.hpp"

namespace strata::gui {

namespace {

std::string row(const char* name, double a, double b, const char* format) {
  char va[32], vb[32], line[160];
  std::snprintf(va, sizeof va, format, a);
  std::snprintf(vb, sizeof vb, format, b);
  const double rel = a != 0 ? (b / a - 1) * 100 : 0;
  std::snprintf(line, sizeof line, "  %-22s %16s %16s %+9.1f%%\n", name, va, vb, rel);
  return line;
}

}  // namespace

std::string report_diff(const results::Report& a, const results::Report& b) {
  std::string s = "A: " + a.model + " / " + a.strategy + " on " + a.cluster + " (" +
                  std::to_string(a.world_size) + " GPUs)\nB: " + b.model + " / " + b.strategy +
                  " on " + b.cluster + " (" + std::to_string(b.world_size) + " GPUs)\n\n";
  char head[160];
  std::snprintf(head, sizeof head, "  %-22s %16s %16s %10s\n", "", "A", "B", "B vs A");
  s += head;
  s += row("step time (s)", a.step_time_s, b.step_time_s, "%.4f");
  s += row("tokens/s", a.tokens_per_s, b.tokens_per_s, "%.0f");
  s += row("TFLOP/s per GPU", a.tflops_per_gpu, b.tflops_per_gpu, "%.1f");
  s += row("MFU (%)", a.mfu * 100, b.mfu * 100, "%.1f");
  s += row("bubble (%)", a.bubble_fraction * 100, b.bubble_fraction * 100, "%.1f");
  s += std::string("  fits in memory         ") + (a.fits ? "yes" : "no") + " / " +
       (b.fits ? "yes" : "no") + "\n";
  auto first_of_stages = [](const results::Report& r) {
    std::map<int, const results::RankTimes*> stages;
    for (const results::RankTimes& t : r.ranks) stages.try_emplace(t.stage, &t);
    return stages;
  };
  const auto sa = first_of_stages(a), sb = first_of_stages(b);
  const int stages = static_cast<int>(std::max(sa.size(), sb.size()));
  const double gib = 1024.0 * 1024 * 1024;
  for (int stage = 0; stage < stages; ++stage) {
    const auto ia = sa.find(stage), ib = sb.find(stage);
    s += "\n  stage " + std::to_string(stage) + "\n";
    if (ia == sa.end() || ib == sb.end()) {
      s += std::string("    only in ") + (ia == sa.end() ? "B" : "A") + "\n";
      continue;
    }
    const results::RankTimes& x = *ia->second;
    const results::RankTimes& y = *ib->second;
    s += row("  compute (s)", x.compute_s, y.compute_s, "%.4f");
    s += row("  communication (s)", x.communication_s, y.communication_s, "%.4f");
    s += row("  exposed comm. (s)", x.exposed_comm_s, y.exposed_comm_s, "%.4f");
    s += row("  idle (s)", x.idle_s, y.idle_s, "%.4f");
    s += row("  peak memory (GiB)", x.peak_memory_bytes / gib, y.peak_memory_bytes / gib, "%.2f");
  }
  return s;
}

SideBySide::SideBySide(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  auto* split = new QSplitter(Qt::Vertical, this);
  auto* timelines = new QWidget(split);
  auto* tl = new QVBoxLayout(timelines);
  tl->setContentsMargins(0, 0, 0, 0);
  top_label_ = new QLabel("A", timelines);
  top_ = new TimelineView(timelines);
  bottom_label_ = new QLabel("B", timelines);
  bottom_ = new TimelineView(timelines);
  tl->addWidget(top_label_);
  tl->addWidget(top_, 1);
  tl->addWidget(bottom_label_);
  tl->addWidget(bottom_, 1);
  text_ = new QPlainTextEdit(split);
  text_->setReadOnly(true);
  QFont mono("monospace");
  mono.setStyleHint(QFont::Monospace);
  text_->setFont(mono);
  text_->setPlainText("File > Compare two runs: two reports, or two traces (for example the "
                      "prediction and the measurement of one Plan).");
  split->addWidget(timelines);
  split->addWidget(text_);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 1);
  layout->addWidget(split);
  // The same window of time in both.
  auto follow = [this](TimelineView* other) {
    return [this, other](double t0, double t1) {
      if (syncing_) return;
      syncing_ = true;
      other->set_view(t0, t1);
      syncing_ = false;
    };
  };
  connect(top_, &TimelineView::view_changed, this, follow(bottom_));
  connect(bottom_, &TimelineView::view_changed, this, follow(top_));
}

void SideBySide::set_runs(Run a, Run b, int worst) {
  top_label_->setText("A: " + a.label);
  bottom_label_->setText("B: " + b.label);
  comparison_.reset();
  top_->set_highlighted({});
  bottom_->set_highlighted({});
  std::string text;
  if (a.report && b.report) text += report_diff(*a.report, *b.report) + "\n";
  if (a.timeline && b.timeline) {
    try {
      if (!a.timeline->full_trace() || !b.timeline->full_trace()) {
        throw ConfigError("a trace was loaded for display only");
      }
      comparison_ = results::compare_traces(*a.timeline->full_trace(), *b.timeline->full_trace(),
                                            a.label.toStdString(), b.label.toStdString());
    } catch (const std::exception& e) {
      text += std::string("Task by task: not compared (") + e.what() + ")\n";
    }
  }
  if (comparison_) {
    text += "Task by task (A predicted, B measured):\n" +
            results::render_comparison(*comparison_, worst);
    // The worst tasks by absolute difference, outlined in both.
    std::vector<const results::TaskComparison*> tasks;
    for (const results::TaskComparison& t : comparison_->tasks) tasks.push_back(&t);
    const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(worst), tasks.size());
    std::partial_sort(tasks.begin(), tasks.begin() + static_cast<std::ptrdiff_t>(n), tasks.end(),
                      [](const results::TaskComparison* x, const results::TaskComparison* y) {
                        return std::fabs(x->predicted_s - x->measured_s) >
                               std::fabs(y->predicted_s - y->measured_s);
                      });
    auto events_of = [&](const TimelineModel& m) {
      std::vector<std::uint32_t> events;
      for (std::size_t i = 0; i < n; ++i) {
        const std::ptrdiff_t e = m.event_of(tasks[i]->rank, tasks[i]->task);
        if (e >= 0) events.push_back(static_cast<std::uint32_t>(e));
      }
      return events;
    };
    top_->set_model(a.timeline);
    bottom_->set_model(b.timeline);
    top_->set_highlighted(events_of(*a.timeline));
    bottom_->set_highlighted(events_of(*b.timeline));
  } else {
    top_->set_model(a.timeline);
    bottom_->set_model(b.timeline);
  }
  // One window over both: the longer step.
  const double end = std::max(a.timeline ? a.timeline->end_s() : 0.0,
                              b.timeline ? b.timeline->end_s() : 0.0);
  if (end > 0) top_->set_view(-0.01 * end, 1.01 * end);
  if (text.empty()) text = "Nothing to compare: neither two reports nor two traces.";
  text_->setPlainText(QString::fromStdString(text));
}

}  // namespace strata::gui
