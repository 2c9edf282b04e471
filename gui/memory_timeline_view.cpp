// The memory timeline widget (memory_timeline_view.hpp).
#include "gui/memory_timeline_view.hpp"

#include <QPainter>
#include <algorithm>
#include <vector>

namespace strata::gui {

namespace {

QColor role_colour(int band) {
  // Bands: 0 parameters, 1 gradients, 2 optimizer, 3 other static; then 4 + role.
  static const QColor colours[] = {
      QColor(120, 144, 156), QColor(144, 164, 174), QColor(176, 190, 197), QColor(207, 216, 220),
  };
  if (band < 4) return colours[band];
  const int role = band - 4;
  return QColor::fromHsv((role * 47 + 10) % 360, 140, 230);
}

}  // namespace

MemoryTimelineView::MemoryTimelineView(QWidget* parent) : QWidget(parent) {
  setMinimumSize(300, 160);
}

void MemoryTimelineView::set_timeline(MemoryTimeline timeline, double capacity_bytes) {
  timeline_ = std::move(timeline);
  capacity_ = capacity_bytes;
  update();
}

void MemoryTimelineView::clear(const QString& why) {
  timeline_.reset();
  why_ = why;
  update();
}

void MemoryTimelineView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), Qt::white);
  if (!timeline_ || timeline_->samples.empty()) {
    p.setPen(QColor(90, 90, 90));
    p.drawText(rect(), Qt::AlignCenter | Qt::TextWordWrap, why_);
    return;
  }
  const MemoryTimeline& m = *timeline_;
  const int left = 70, right = 150, top = 24, bottom = 24;
  const int w = std::max(1, width() - left - right), h = std::max(1, height() - top - bottom);
  const double t0 = m.samples.front().t_s;
  const double t1 = std::max(m.samples.back().t_s, t0 + 1e-12);
  const double ymax = std::max({m.peak_bytes, capacity_, 1.0}) * 1.08;
  auto x_of = [&](double t) { return left + (t - t0) / (t1 - t0) * w; };
  auto y_of = [&](double b) { return top + h - b / ymax * h; };
  const double gib = 1024.0 * 1024 * 1024;
  // Band values: static parts, then roles. One column per pixel, showing the sample with the
  // largest total among those it spans (so no peak falls between columns), bands stacked.
  const strategies::StaticMemory& s = m.static_bytes;
  const std::vector<double> statics = {s.params, s.grads, s.optimizer, s.other};
  const int bands = 4 + strategies::kNumRoles;
  std::vector<std::ptrdiff_t> column(static_cast<std::size_t>(w), -1);
  for (std::size_t i = 0; i < m.samples.size(); ++i) {
    const double end = i + 1 < m.samples.size() ? m.samples[i + 1].t_s : t1;
    const int c0 = std::clamp(static_cast<int>(x_of(m.samples[i].t_s)) - left, 0, w - 1);
    const int c1 = std::clamp(static_cast<int>(x_of(end)) - left, c0, w - 1);
    for (int c = c0; c <= c1; ++c) {
      std::ptrdiff_t& k = column[static_cast<std::size_t>(c)];
      if (k < 0 || m.samples[i].total_transient() > m.samples[static_cast<std::size_t>(k)].total_transient()) {
        k = static_cast<std::ptrdiff_t>(i);
      }
    }
  }
  std::vector<bool> used(static_cast<std::size_t>(bands), false);
  for (int b = 0; b < 4; ++b) used[static_cast<std::size_t>(b)] = statics[static_cast<std::size_t>(b)] > 0;
  for (const MemorySample& sample : m.samples) {
    for (int r = 0; r < strategies::kNumRoles; ++r) {
      if (sample.transient[static_cast<std::size_t>(r)] > 0) used[static_cast<std::size_t>(4 + r)] = true;
    }
  }
  for (int c = 0; c < w; ++c) {
    const std::ptrdiff_t k = column[static_cast<std::size_t>(c)];
    if (k < 0) continue;
    double below = 0;
    for (int band = 0; band < bands; ++band) {
      const double v = band < 4 ? statics[static_cast<std::size_t>(band)]
                                : m.samples[static_cast<std::size_t>(k)].transient[static_cast<std::size_t>(band - 4)];
      if (v <= 0) continue;
      const double ya = y_of(below + v), yb = y_of(below);
      p.fillRect(QRectF(left + c, ya, 1, std::max(1.0, yb - ya)), role_colour(band));
      below += v;
    }
  }
  // Axis, capacity, peak.
  p.setPen(QColor(90, 90, 90));
  for (int k = 0; k <= 4; ++k) {
    const double b = ymax * k / 4;
    p.drawText(QRect(0, static_cast<int>(y_of(b)) - 8, left - 6, 16),
               Qt::AlignRight | Qt::AlignVCenter, QString::number(b / gib, 'f', 1) + " GiB");
  }
  if (capacity_ > 0) {
    p.setPen(QPen(QColor(200, 0, 0), 1, Qt::DashLine));
    p.drawLine(QPointF(left, y_of(capacity_)), QPointF(left + w, y_of(capacity_)));
  }
  p.setPen(QPen(Qt::black, 1));
  p.drawLine(QPointF(x_of(m.peak_t_s), y_of(m.peak_bytes)), QPointF(x_of(m.peak_t_s), top + h));
  p.drawText(QRect(left, 2, w, top - 4), Qt::AlignLeft | Qt::AlignVCenter,
             QString("rank %1: peak %2 GiB at %3 s (static %4 GiB)")
                 .arg(m.rank)
                 .arg(m.peak_bytes / gib, 0, 'f', 2)
                 .arg(m.peak_t_s, 0, 'f', 4)
                 .arg(s.total() / gib, 0, 'f', 2));
  // Legend.
  int y = top;
  const char* statics_names[] = {"static: parameters", "static: gradients", "static: optimizer",
                                 "static: other"};
  for (int band = bands - 1; band >= 0; --band) {  // top to bottom, as stacked
    if (!used[static_cast<std::size_t>(band)]) continue;
    const QString name = band < 4 ? statics_names[band]
                                  : strategies::role_name(static_cast<strategies::Role>(band - 4));
    p.fillRect(left + w + 10, y + 3, 10, 10, role_colour(band));
    p.setPen(QColor(40, 40, 40));
    p.drawText(left + w + 24, y + 12, name);
    y += 16;
  }
}

}  // namespace strata::gui
