// Two runs side by side (side_by_side.hpp).
#include "gui/side_by_side.hpp"

#include <QSplitter>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "results/report_compare.hpp"

namespace strata::gui {

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
  if (a.report && b.report) {
    text += results::compare_reports(*a.report, *b.report, a.label.toStdString(),
                                     b.label.toStdString())
                .text +
            "\n";
  }
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
