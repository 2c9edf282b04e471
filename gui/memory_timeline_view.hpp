// A rank's memory over the step (memory_timeline.hpp), drawn as stacked bands: static memory
// (parameters, gradients, optimizer states) at the bottom, the transient roles above, the
// device's capacity as a line, and the peak marked.
#pragma once

#include <QWidget>
#include <optional>

#include "gui/memory_timeline.hpp"

namespace strata::gui {

class MemoryTimelineView : public QWidget {
  Q_OBJECT

 public:
  explicit MemoryTimelineView(QWidget* parent = nullptr);
  void set_timeline(MemoryTimeline timeline, double capacity_bytes);
  void clear(const QString& why);
  const std::optional<MemoryTimeline>& timeline() const { return timeline_; }

 protected:
  void paintEvent(QPaintEvent* e) override;

 private:
  std::optional<MemoryTimeline> timeline_;
  double capacity_ = 0;
  QString why_ = "Click a rank's bar above for its memory over the step";
};

}  // namespace strata::gui
