// The timeline: a row per rank and stream (TimelineModel's rows), tasks coloured by category,
// a time axis on top. Zoom with the mouse wheel (around the cursor) or + and -, pan by dragging
// or with the arrow keys, Home to see the whole step; hovering a task shows what it is, clicking
// selects it. Each frame draws only the rows in view, and each row as pixel columns
// (TimelineModel::rasterize) unless few enough of its tasks are in view to draw one by one with
// their names: the cost of a frame does not grow with the number of tasks.
#pragma once

#include <QColor>
#include <QWidget>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gui/timeline_model.hpp"

namespace strata::gui {

// The colour of a category, the same in every view and in the legend.
QColor category_color(Category c);
// The colour of a compute task's block (embedding, attention's parts, the MLP's, the head, the
// optimizer), when compute is coloured by what it computes.
QColor block_color(strategies::Block b);

class TimelineView : public QWidget {
  Q_OBJECT

 public:
  explicit TimelineView(QWidget* parent = nullptr);

  // Shows `model` (shared with the window; may be null for none), the whole step in view.
  void set_model(std::shared_ptr<const TimelineModel> model);
  const TimelineModel* model() const { return model_.get(); }

  // The visible time window, in seconds from the step's start.
  double view_start_s() const { return t0_; }
  double view_end_s() const { return t1_; }
  void set_view(double t0, double t1);
  void zoom(double factor, double anchor_s);  // factor < 1 zooms in
  void show_all();
  // Scrolls so that the first row of `rank` is at the top.
  void scroll_to_rank(int rank);
  int first_visible_row() const { return first_row_; }
  // Rows drawn in the current frame (those in view).
  int visible_rows() const;

  // Trace events to outline (the worst-predicted tasks of a comparison), drawn in red: an
  // outline when the row draws its tasks, a tick above the row otherwise.
  void set_highlighted(std::vector<std::uint32_t> events);
  const std::vector<std::uint32_t>& highlighted() const { return highlighted_; }

  // Compute tasks coloured by block (what they compute) instead of by pass.
  void set_compute_by_block(bool on);
  bool compute_by_block() const { return compute_by_block_; }
  // More lines for a task's tooltip and click text (the window adds its ops and their shapes
  // from the Plan); empty for none.
  void set_details(std::function<std::string(std::size_t event)> details);
  // What the tooltip says of `event`: the model's description and the details.
  std::string text_of(std::size_t event) const;

  // The selected trace event (-1: none) and the row it is on.
  std::ptrdiff_t selected_event() const { return selected_event_; }
  // The row and event under a widget position (-1 where none).
  std::ptrdiff_t row_at(int y) const;
  std::ptrdiff_t event_at(QPoint pos) const;
  double time_at(int x) const;

  static constexpr int kRowHeight = 18;
  static constexpr int kAxisHeight = 24;
  static constexpr int kGutter = 150;  // row labels
  static constexpr int kLegendHeight = 20;  // the categories' colours, at the bottom

 signals:
  void event_selected(std::ptrdiff_t event);
  void view_changed(double t0, double t1);

 protected:
  void paintEvent(QPaintEvent* e) override;
  void wheelEvent(QWheelEvent* e) override;
  void mousePressEvent(QMouseEvent* e) override;
  void mouseMoveEvent(QMouseEvent* e) override;
  void mouseReleaseEvent(QMouseEvent* e) override;
  void keyPressEvent(QKeyEvent* e) override;
  bool event(QEvent* e) override;  // tooltips

 private:
  int plot_width() const;
  void clamp_view();
  void draw_axis(QPainter& p, int width) const;
  void draw_legend(QPainter& p) const;
  void draw_row(QPainter& p, std::size_t row, int y, int width) const;

  std::shared_ptr<const TimelineModel> model_;
  double t0_ = 0, t1_ = 1;
  int first_row_ = 0;
  std::ptrdiff_t selected_event_ = -1;
  std::vector<std::uint32_t> highlighted_;  // sorted
  bool compute_by_block_ = false;
  std::function<std::string(std::size_t)> details_;
  QColor colour_of(Category c, strategies::Block b) const;
  bool dragging_ = false;
  QPoint drag_from_;
  double drag_t0_ = 0;
  int drag_row_ = 0;
};

}  // namespace strata::gui
