// The memory view (memory_view.hpp).
#include "gui/memory_view.hpp"

#include <QMouseEvent>
#include <QPainter>
#include <algorithm>

namespace strata::gui {

MemoryView::MemoryView(QWidget* parent) : QWidget(parent) { setMinimumSize(300, 200); }

void MemoryView::set_ranks(std::vector<RankMemory> ranks, QString what) {
  ranks_ = std::move(ranks);
  what_ = what.isEmpty() ? QString("peak memory per rank (%1 ranks); line: device capacity")
                               .arg(ranks_.size())
                         : what;
  update();
}

int MemoryView::rank_at(int x) const {
  const int width = std::max(1, this->width() - kLeft - kRight);
  if (ranks_.empty() || x < kLeft || x >= kLeft + width) return -1;
  return std::min(static_cast<int>(ranks_.size()) - 1,
                  static_cast<int>(static_cast<long long>(x - kLeft) *
                                   static_cast<long long>(ranks_.size()) / width));
}

void MemoryView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), Qt::white);
  if (ranks_.empty()) {
    p.setPen(QColor(90, 90, 90));
    p.drawText(rect(), Qt::AlignCenter, "No report open");
    return;
  }
  const int width = std::max(1, this->width() - kLeft - kRight);
  const int height = std::max(1, this->height() - kTop - kBottom);
  double top = 0;
  for (const RankMemory& r : ranks_) top = std::max({top, r.peak_bytes, r.capacity_bytes});
  top = std::max(top * 1.1, 1.0);
  const double gib = 1024.0 * 1024 * 1024;
  auto y_of = [&](double bytes) { return kTop + height - static_cast<int>(bytes / top * height); };
  // Axis: GiB.
  p.setPen(QColor(90, 90, 90));
  for (int k = 0; k <= 4; ++k) {
    const double b = top * k / 4;
    const int y = y_of(b);
    p.drawLine(kLeft - 4, y, kLeft, y);
    p.drawText(QRect(0, y - 8, kLeft - 8, 16), Qt::AlignRight | Qt::AlignVCenter,
               QString::number(b / gib, 'f', 1) + " GiB");
  }
  p.drawText(QRect(kLeft, 4, width, kTop - 8), Qt::AlignLeft | Qt::AlignVCenter,
             what_);
  const int n = static_cast<int>(ranks_.size());
  // One bar per rank where they fit, else one column per pixel with the largest peak in it.
  const int columns = std::min(n, width);
  for (int c = 0; c < columns; ++c) {
    const int r0 = static_cast<int>(static_cast<long long>(c) * n / columns);
    const int r1 = std::max(r0 + 1, static_cast<int>(static_cast<long long>(c + 1) * n / columns));
    double peak = 0, capacity = 0;
    for (int r = r0; r < r1; ++r) {
      peak = std::max(peak, ranks_[static_cast<std::size_t>(r)].peak_bytes);
      capacity = std::max(capacity, ranks_[static_cast<std::size_t>(r)].capacity_bytes);
    }
    const int x0 = kLeft + c * width / columns;
    const int x1 = kLeft + (c + 1) * width / columns;
    const int bar = std::max(1, x1 - x0 - (columns < width / 3 ? 2 : 0));
    const bool over = peak > capacity;
    p.fillRect(x0, y_of(peak), bar, kTop + height - y_of(peak),
               over ? QColor(219, 68, 55) : QColor(66, 133, 244));
    p.setPen(QPen(QColor(30, 30, 30), 1, Qt::DashLine));
    p.drawLine(x0, y_of(capacity), x0 + bar, y_of(capacity));
  }
  p.setPen(QColor(90, 90, 90));
  p.drawText(QRect(kLeft, kTop + height + 4, width, kBottom - 6), Qt::AlignCenter,
             QString("rank 0 .. %1").arg(n - 1));
}

void MemoryView::mouseReleaseEvent(QMouseEvent* e) {
  const int rank = rank_at(static_cast<int>(e->position().x()));
  if (rank >= 0) emit rank_selected(rank);
}

}  // namespace strata::gui
