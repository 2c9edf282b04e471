// The timeline widget (timeline_view.hpp).
#include "gui/timeline_view.hpp"

#include <QFontMetrics>
#include <QHelpEvent>
#include <QKeyEvent>
#include <QMouseEvent>
#include <QPainter>
#include <QToolTip>
#include <QWheelEvent>
#include <algorithm>
#include <cmath>
#include <vector>

namespace strata::gui {

QColor category_color(Category c) {
  switch (c) {
    case Category::kForward:
      return QColor(66, 133, 244);
    case Category::kBackward:
      return QColor(25, 70, 160);
    case Category::kRecompute:
      return QColor(140, 170, 230);
    case Category::kOptimizer:
      return QColor(120, 120, 120);
    case Category::kTp:
      return QColor(234, 67, 53);
    case Category::kCp:
      return QColor(255, 112, 67);
    case Category::kEp:
      return QColor(171, 71, 188);
    case Category::kDp:
      return QColor(52, 168, 83);
    case Category::kZero:
      return QColor(0, 137, 123);
    case Category::kPp:
      return QColor(251, 188, 5);
    case Category::kOther:
    case Category::kCount:
      break;
  }
  return QColor(160, 160, 160);
}

QColor block_color(strategies::Block b) {
  using strategies::Block;
  switch (b) {
    case Block::kEmbedding:
      return QColor(121, 85, 72);
    case Block::kAttnNorm:
      return QColor(179, 157, 219);
    case Block::kAttnQkv:
      return QColor(126, 87, 194);
    case Block::kAttnCore:
      return QColor(81, 45, 168);
    case Block::kAttnOut:
      return QColor(149, 117, 205);
    case Block::kMlpNorm:
      return QColor(129, 212, 250);
    case Block::kMlpFc1:
      return QColor(3, 155, 229);
    case Block::kMlpFc2:
      return QColor(2, 119, 189);
    case Block::kFinalNorm:
      return QColor(255, 204, 128);
    case Block::kLmHead:
      return QColor(239, 108, 0);
    case Block::kOptimizer:
      return QColor(120, 120, 120);
    case Block::kMoeRouter:
      return QColor(102, 187, 106);
    case Block::kMoeExperts:
      return QColor(46, 125, 50);
    case Block::kMoeCombine:
      return QColor(165, 214, 167);
    case Block::kNone:
      break;
  }
  return QColor(160, 160, 160);
}

QColor TimelineView::colour_of(Category c, strategies::Block b) const {
  const bool compute = c == Category::kForward || c == Category::kBackward ||
                       c == Category::kRecompute || c == Category::kOptimizer;
  return compute_by_block_ && compute ? block_color(b) : category_color(c);
}

void TimelineView::set_compute_by_block(bool on) {
  compute_by_block_ = on;
  update();
}

void TimelineView::set_details(std::function<std::string(std::size_t)> details) {
  details_ = std::move(details);
}

std::string TimelineView::text_of(std::size_t event) const {
  if (!model_) return {};
  std::string s = model_->describe(event);
  if (details_) {
    const std::string more = details_(event);
    if (!more.empty()) s += "\n" + more;
  }
  return s;
}

TimelineView::TimelineView(QWidget* parent) : QWidget(parent) {
  setMouseTracking(true);
  setFocusPolicy(Qt::StrongFocus);
  setMinimumSize(400, 200);
  setAutoFillBackground(true);
  QPalette pal = palette();
  pal.setColor(QPalette::Window, Qt::white);
  setPalette(pal);
}

void TimelineView::set_highlighted(std::vector<std::uint32_t> events) {
  std::sort(events.begin(), events.end());
  highlighted_ = std::move(events);
  update();
}

void TimelineView::set_model(std::shared_ptr<const TimelineModel> model) {
  model_ = std::move(model);
  selected_event_ = -1;
  first_row_ = 0;
  show_all();
}

int TimelineView::plot_width() const { return std::max(1, width() - kGutter); }

void TimelineView::clamp_view() {
  const double end = model_ && model_->end_s() > 0 ? model_->end_s() : 1.0;
  const double min_span = 1e-9;
  double span = std::clamp(t1_ - t0_, min_span, end * 1.05);
  t0_ = std::clamp(t0_, -0.025 * end, std::max(-0.025 * end, end * 1.025 - span));
  t1_ = t0_ + span;
}

void TimelineView::set_view(double t0, double t1) {
  t0_ = t0;
  t1_ = t1 > t0 ? t1 : t0 + 1e-9;
  clamp_view();
  emit view_changed(t0_, t1_);
  update();
}

void TimelineView::zoom(double factor, double anchor_s) {
  const double span = (t1_ - t0_) * factor;
  const double frac = (anchor_s - t0_) / (t1_ - t0_);
  set_view(anchor_s - frac * span, anchor_s - frac * span + span);
}

void TimelineView::show_all() {
  const double end = model_ && model_->end_s() > 0 ? model_->end_s() : 1.0;
  set_view(-0.01 * end, end * 1.01);
}

void TimelineView::scroll_to_rank(int rank) {
  if (!model_) return;
  const std::ptrdiff_t row = model_->first_row_of(rank);
  if (row >= 0) {
    first_row_ = static_cast<int>(row);
    update();
  }
}

int TimelineView::visible_rows() const {
  if (!model_) return 0;
  const int fit = std::max(0, (height() - kAxisHeight - kLegendHeight) / kRowHeight);
  const int left = static_cast<int>(model_->rows().size()) - first_row_;
  return std::clamp(left, 0, fit);
}

double TimelineView::time_at(int x) const {
  return t0_ + (t1_ - t0_) * (x - kGutter) / static_cast<double>(plot_width());
}

std::ptrdiff_t TimelineView::row_at(int y) const {
  if (!model_ || y < kAxisHeight) return -1;
  const std::ptrdiff_t row = first_row_ + (y - kAxisHeight) / kRowHeight;
  return row < static_cast<std::ptrdiff_t>(model_->rows().size()) ? row : -1;
}

std::ptrdiff_t TimelineView::event_at(QPoint pos) const {
  const std::ptrdiff_t row = row_at(pos.y());
  if (row < 0 || pos.x() < kGutter) return -1;
  const double pixel_s = (t1_ - t0_) / plot_width();
  const std::ptrdiff_t s =
      model_->slice_at(static_cast<std::size_t>(row), time_at(pos.x()), 2 * pixel_s);
  if (s < 0) return -1;
  return model_->rows()[static_cast<std::size_t>(row)].slices[static_cast<std::size_t>(s)].event;
}

void TimelineView::draw_axis(QPainter& p, int width) const {
  p.fillRect(0, 0, kGutter + width, kAxisHeight, QColor(245, 245, 245));
  p.setPen(QColor(90, 90, 90));
  // Ticks at a round step giving about one label per 100 pixels.
  const double span = t1_ - t0_;
  const double raw = span / std::max(1.0, width / 100.0);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (const double m : {1.0, 2.0, 5.0, 10.0}) {
    if (mag * m >= raw) {
      step = mag * m;
      break;
    }
  }
  const char* unit = span >= 1 ? "s" : span >= 1e-3 ? "ms" : "us";
  const double scale = span >= 1 ? 1 : span >= 1e-3 ? 1e3 : 1e6;
  for (double t = std::ceil(t0_ / step) * step; t <= t1_; t += step) {
    const int x = kGutter + static_cast<int>((t - t0_) / span * width);
    p.drawLine(x, kAxisHeight - 6, x, kAxisHeight);
    p.drawText(x + 2, kAxisHeight - 8, QString::number(t * scale, 'g', 6) + " " + unit);
  }
}

void TimelineView::draw_legend(QPainter& p) const {
  const int y = height() - kLegendHeight;
  p.fillRect(0, y, width(), kLegendHeight, QColor(245, 245, 245));
  int x = 6;
  const QFontMetrics metrics = p.fontMetrics();
  auto entry = [&](const QColor& colour, const QString& name) {
    p.fillRect(x, y + 5, 10, 10, colour);
    p.setPen(QColor(40, 40, 40));
    p.drawText(x + 14, y + kLegendHeight - 5, name);
    x += 14 + metrics.horizontalAdvance(name) + 12;
  };
  if (compute_by_block_) {
    for (int b = 1; b <= static_cast<int>(strategies::Block::kOptimizer); ++b) {
      const auto block = static_cast<strategies::Block>(b);
      entry(block_color(block), strategies::block_name(block));
    }
  }
  for (int c = 0; c < static_cast<int>(Category::kCount); ++c) {
    const auto category = static_cast<Category>(c);
    if (compute_by_block_ && c <= static_cast<int>(Category::kOptimizer)) continue;
    entry(category_color(category), category_name(category));
  }
}

void TimelineView::draw_row(QPainter& p, std::size_t row, int y, int width) const {
  const Row& r = model_->rows()[row];
  p.setPen(QColor(40, 40, 40));
  p.drawText(QRect(4, y, kGutter - 8, kRowHeight), Qt::AlignVCenter | Qt::AlignLeft,
             QString::fromStdString(r.label));
  const double span = t1_ - t0_;
  const std::size_t in_view = model_->slices_in(row, t0_, t1_);
  if (in_view * 4 <= static_cast<std::size_t>(width)) {
    // Few enough: each task as a rectangle, named where it has room.
    auto it = std::upper_bound(r.slices.begin(), r.slices.end(), t0_,
                               [](double v, const Slice& s) { return v < s.end_s; });
    for (; it != r.slices.end() && it->start_s <= t1_; ++it) {
      const double x0 = kGutter + (it->start_s - t0_) / span * width;
      const double x1 = kGutter + (it->end_s - t0_) / span * width;
      const QRectF rect(std::max(x0, double(kGutter)), y + 2,
                        std::max(1.0, std::min(x1, double(kGutter + width)) -
                                          std::max(x0, double(kGutter))),
                        kRowHeight - 4);
      const bool selected = static_cast<std::ptrdiff_t>(it->event) == selected_event_;
      p.fillRect(rect, colour_of(it->category, it->block));
      if (std::binary_search(highlighted_.begin(), highlighted_.end(), it->event)) {
        p.setPen(QPen(QColor(220, 0, 0), 2));
        p.drawRect(rect.adjusted(-1, -1, 1, 1));
      }
      if (selected) {
        p.setPen(QPen(Qt::black, 2));
        p.drawRect(rect);
      }
      if (rect.width() > 40) {
        p.setPen(Qt::white);
        p.drawText(rect.adjusted(2, 0, -2, 0), Qt::AlignVCenter | Qt::AlignLeft,
                   QString::fromStdString(std::string(model_->name(model_->events()[it->event]))));
      }
    }
    return;
  }
  // Many: one column per pixel, its colour's strength by how much of it tasks cover.
  std::vector<Pixel> px(static_cast<std::size_t>(width));
  model_->rasterize(row, t0_, t1_, px);
  for (int x = 0; x < width; ++x) {
    const Pixel& c = px[static_cast<std::size_t>(x)];
    if (c.coverage <= 0) continue;
    QColor color = colour_of(c.category, c.block);
    color.setAlphaF(0.35f + 0.65f * c.coverage);
    p.fillRect(kGutter + x, y + 2, 1, kRowHeight - 4, color);
  }
  // Highlighted tasks too small to outline: a red tick at their middle.
  for (const std::uint32_t ev : highlighted_) {
    const TimelineEvent& e = model_->events()[ev];
    if (e.rank != r.rank || e.stream != r.stream || e.lane != r.lane) continue;
    const double mid = e.start_s + e.duration_s / 2;
    const int x = kGutter + static_cast<int>((mid - t0_) / span * width);
    if (x >= kGutter && x < kGutter + width) p.fillRect(x - 1, y, 3, kRowHeight, QColor(220, 0, 0));
  }
}

void TimelineView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  const int width = plot_width();
  p.fillRect(rect(), Qt::white);
  if (!model_ || model_->rows().empty()) {
    p.setPen(QColor(90, 90, 90));
    p.drawText(rect(), Qt::AlignCenter, model_ ? "The trace has no tasks" : "No trace open");
    return;
  }
  draw_axis(p, width);
  draw_legend(p);
  const int rows = visible_rows();
  int previous_rank = -1;
  for (int i = 0; i < rows; ++i) {
    const std::size_t row = static_cast<std::size_t>(first_row_ + i);
    const int y = kAxisHeight + i * kRowHeight;
    const int rank = model_->rows()[row].rank;
    if (rank != previous_rank && i > 0) {
      p.setPen(QColor(210, 210, 210));
      p.drawLine(0, y, kGutter + width, y);
    }
    previous_rank = rank;
    draw_row(p, row, y, width);
  }
}

void TimelineView::wheelEvent(QWheelEvent* e) {
  if (!model_) return;
  const double steps = e->angleDelta().y() / 120.0;
  if (e->modifiers() & Qt::ShiftModifier) {  // scroll the rows
    first_row_ = std::clamp(first_row_ - static_cast<int>(steps * 3), 0,
                            std::max(0, static_cast<int>(model_->rows().size()) - 1));
    update();
  } else {
    zoom(std::pow(0.8, steps), time_at(static_cast<int>(e->position().x())));
  }
  e->accept();
}

void TimelineView::mousePressEvent(QMouseEvent* e) {
  if (e->button() != Qt::LeftButton) return;
  dragging_ = true;
  drag_from_ = e->pos();
  drag_t0_ = t0_;
  drag_row_ = first_row_;
}

void TimelineView::mouseMoveEvent(QMouseEvent* e) {
  if (!dragging_ || !model_) return;
  const QPoint d = e->pos() - drag_from_;
  const double span = t1_ - t0_;
  const double t0 = drag_t0_ - d.x() * span / plot_width();
  first_row_ = std::clamp(drag_row_ - d.y() / kRowHeight, 0,
                          std::max(0, static_cast<int>(model_->rows().size()) - 1));
  set_view(t0, t0 + span);
}

void TimelineView::mouseReleaseEvent(QMouseEvent* e) {
  if (e->button() != Qt::LeftButton) return;
  dragging_ = false;
  if ((e->pos() - drag_from_).manhattanLength() < 4) {  // a click, not a drag
    selected_event_ = event_at(e->pos());
    emit event_selected(selected_event_);
    update();
  }
}

void TimelineView::keyPressEvent(QKeyEvent* e) {
  const double span = t1_ - t0_;
  const double mid = (t0_ + t1_) / 2;
  switch (e->key()) {
    case Qt::Key_Plus:
    case Qt::Key_Equal:
      zoom(0.5, mid);
      break;
    case Qt::Key_Minus:
      zoom(2.0, mid);
      break;
    case Qt::Key_Left:
      set_view(t0_ - span / 8, t1_ - span / 8);
      break;
    case Qt::Key_Right:
      set_view(t0_ + span / 8, t1_ + span / 8);
      break;
    case Qt::Key_Up:
      first_row_ = std::max(0, first_row_ - 1);
      update();
      break;
    case Qt::Key_Down:
      if (model_) {
        first_row_ = std::min(first_row_ + 1, std::max(0, int(model_->rows().size()) - 1));
      }
      update();
      break;
    case Qt::Key_Home:
      show_all();
      break;
    default:
      QWidget::keyPressEvent(e);
  }
}

bool TimelineView::event(QEvent* e) {
  if (e->type() == QEvent::ToolTip && model_) {
    auto* help = static_cast<QHelpEvent*>(e);
    const std::ptrdiff_t ev = event_at(help->pos());
    if (ev >= 0) {
      QToolTip::showText(help->globalPos(),
                         QString::fromStdString(text_of(static_cast<std::size_t>(ev))), this);
    } else {
      QToolTip::hideText();
    }
    return true;
  }
  return QWidget::event(e);
}

}  // namespace strata::gui
