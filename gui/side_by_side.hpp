// Two runs side by side: two timelines, one above the other, that zoom and pan together (the
// same window of time), and below them what differs. Two reports are diffed figure by figure
// and stage by stage (results/report_compare.hpp, as `strata compare` prints them); two traces of the same Plan (a prediction and a measurement: their
// provenance says so) are joined task by task (results/trace_compare.hpp), and the tasks whose
// prediction erred most are outlined in both timelines and listed.
#pragma once

#include <QLabel>
#include <QPlainTextEdit>
#include <QString>
#include <QWidget>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gui/timeline_view.hpp"
#include "results/report.hpp"
#include "results/trace_compare.hpp"

namespace strata::gui {

// One side: a trace, and the report beside it when there is one.
struct Run {
  QString label;  // the file, for people
  std::shared_ptr<const TimelineModel> timeline;
  std::optional<results::Report> report;
};

class SideBySide : public QWidget {
  Q_OBJECT

 public:
  explicit SideBySide(QWidget* parent = nullptr);
  // Shows `a` above `b`; what can be compared is compared (reports: figures; traces of one
  // Plan: task by task, with the `worst` tasks outlined).
  void set_runs(Run a, Run b, int worst = 10);
  TimelineView* top() { return top_; }
  TimelineView* bottom() { return bottom_; }
  QString summary() const { return text_->toPlainText(); }
  // The joined comparison, when the two traces are of one Plan.
  const std::optional<results::TraceComparison>& comparison() const { return comparison_; }

 private:
  TimelineView* top_ = nullptr;
  TimelineView* bottom_ = nullptr;
  QLabel* top_label_ = nullptr;
  QLabel* bottom_label_ = nullptr;
  QPlainTextEdit* text_ = nullptr;
  std::optional<results::TraceComparison> comparison_;
  bool syncing_ = false;
};

}  // namespace strata::gui
