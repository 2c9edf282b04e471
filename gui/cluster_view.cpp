// The cluster view (cluster_view.hpp).
#include "gui/cluster_view.hpp"

#include <QMouseEvent>
#include <QPainter>
#include <algorithm>
#include <cmath>


namespace strata::gui {

using strategies::Dim;

namespace {

// Distinct colours for group indices: the golden angle around the hue circle.
QColor group_colour(int group) {
  const int hue = static_cast<int>(std::fmod(group * 137.508, 360.0));
  return QColor::fromHsv(hue, 150 + (group % 3) * 35, 230 - (group % 2) * 40);
}

QString gbps(double bytes_per_s) { return QString::number(bytes_per_s / 1e9, 'g', 4) + " GB/s"; }

QString micros(double s) { return QString::number(s * 1e6, 'g', 3) + " us"; }

}  // namespace

ClusterView::ClusterView(QWidget* parent) : QWidget(parent) { setMinimumSize(300, 200); }

void ClusterView::set_specs(const strategies::ClusterSpec& cluster,
                            const strategies::StrategySpec& strategy, int world_size) {
  cluster_ = cluster;
  grid_.emplace(strategy);
  world_ = std::min(world_size, cluster.total_gpus());
  update();
}

void ClusterView::clear(const QString& why) {
  grid_.reset();
  world_ = 0;
  why_ = why;
  update();
}

void ClusterView::set_colour_by(ColourBy by) {
  by_ = by;
  update();
}

int ClusterView::group_of(int rank) const {
  if (!grid_ || rank < 0 || rank >= grid_->world_size()) return -1;
  const strategies::Coords c = grid_->coords(rank);
  auto at = [&](Dim d) { return c[static_cast<int>(d)]; };
  // A group of dimension d is the ranks that share every other coordinate: index it by them.
  auto group_index = [&](Dim d) {
    int index = 0;
    for (const Dim other : {Dim::kPp, Dim::kDp, Dim::kCp, Dim::kTp}) {
      if (other == d) continue;
      index = index * grid_->size(other) + at(other);
    }
    return index;
  };
  switch (by_) {
    case ColourBy::kStage:
      return at(Dim::kPp);
    case ColourBy::kTp:
      return group_index(Dim::kTp);
    case ColourBy::kDp:
      return group_index(Dim::kDp);
    case ColourBy::kCp:
      return group_index(Dim::kCp);
  }
  return 0;
}

ClusterView::Layout ClusterView::layout() const {
  Layout l;
  const int nodes = cluster_.total_nodes();
  const int gpn = cluster_.node_groups.empty() ? 1 : cluster_.node_groups.front().gpus_per_node;
  l.gpu_cols = std::max(1, static_cast<int>(std::ceil(std::sqrt(gpn * 2.0))));
  l.gpu_rows = (gpn + l.gpu_cols - 1) / l.gpu_cols;
  const int w = std::max(1, width() - 2 * kMargin);
  l.top = kSwitch + kMargin;
  const int h = std::max(1, height() - l.top - kLegend - kMargin);
  // The most nodes per row that keeps nodes about as tall as their GPU grid needs.
  l.columns = std::max(1, nodes);
  for (int c = 1; c <= nodes; ++c) {
    const int rows = (nodes + c - 1) / c;
    const int nw = w / c;
    const int nh = h / rows;
    if (nh * l.gpu_cols >= nw * l.gpu_rows * 0.6 || c == nodes) {
      l.columns = c;
      break;
    }
  }
  const int rows = (nodes + l.columns - 1) / l.columns;
  l.node_w = std::max(1, w / l.columns);
  l.node_h = std::max(1, h / std::max(1, rows));
  const int cell = std::min((l.node_w - 6) / l.gpu_cols, (l.node_h - 6) / l.gpu_rows);
  l.cell = cell >= 4 ? cell : 0;
  return l;
}

QRect ClusterView::node_rect(const Layout& l, int node) const {
  return QRect(kMargin + (node % l.columns) * l.node_w, l.top + (node / l.columns) * l.node_h,
               std::max(1, l.node_w - 3), std::max(1, l.node_h - 3));
}

QRect ClusterView::gpu_rect(int gpu) const {
  if (!grid_ || gpu < 0 || gpu >= cluster_.total_gpus()) return {};
  const Layout l = layout();
  if (l.cell == 0) return {};
  // GPUs are numbered node by node, group by group.
  int node = 0, first = 0;
  for (const strategies::NodeGroup& g : cluster_.node_groups) {
    if (gpu < first + g.nodes * g.gpus_per_node) {
      node += (gpu - first) / g.gpus_per_node;
      const int local = (gpu - first) % g.gpus_per_node;
      const QRect n = node_rect(l, node);
      return QRect(n.left() + 3 + (local % l.gpu_cols) * l.cell,
                   n.top() + 3 + (local / l.gpu_cols) * l.cell, l.cell - 1, l.cell - 1);
    }
    first += g.nodes * g.gpus_per_node;
    node += g.nodes;
  }
  return {};
}

int ClusterView::rank_at(QPoint pos) const {
  if (!grid_) return -1;
  const Layout l = layout();
  int gpu = 0;
  int node = 0;
  for (const strategies::NodeGroup& g : cluster_.node_groups) {
    for (int n = 0; n < g.nodes; ++n, ++node, gpu += g.gpus_per_node) {
      if (!node_rect(l, node).contains(pos)) continue;
      if (l.cell == 0) return gpu < world_ ? gpu : -1;  // a whole node: its first rank
      for (int k = 0; k < g.gpus_per_node; ++k) {
        if (gpu_rect(gpu + k).contains(pos)) return gpu + k < world_ ? gpu + k : -1;
      }
      return -1;
    }
  }
  return -1;
}

QString ClusterView::links_text() const {
  QString s;
  for (const strategies::NodeGroup& g : cluster_.node_groups) {
    s += QString("%1: %2 nodes x %3 %4, %5 %6 per GPU, %7\n")
             .arg(QString::fromStdString(g.name.empty() ? cluster_.name : g.name))
             .arg(g.nodes)
             .arg(g.gpus_per_node)
             .arg(QString::fromStdString(g.gpu.name))
             .arg(strategies::intra_fabric_name(g.intra_node.kind))
             .arg(gbps(g.intra_node.bandwidth_Bps))
             .arg(micros(g.intra_node.latency_s));
  }
  const strategies::InterNodeSpec& n = cluster_.inter_node;
  if (n.topology != strategies::InterTopology::kNone && cluster_.total_nodes() > 1) {
    s += QString("network: %1, %2 NICs x %3 per node, oversubscription %4:1, %5")
             .arg(n.topology == strategies::InterTopology::kFatTree ? "fat tree" : "rail-optimized")
             .arg(n.nics_per_node)
             .arg(gbps(n.nic_bandwidth_Bps))
             .arg(n.oversubscription)
             .arg(micros(n.latency_s));
  }
  return s.trimmed();
}

void ClusterView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), Qt::white);
  if (!grid_) {
    p.setPen(QColor(90, 90, 90));
    p.drawText(rect(), Qt::AlignCenter | Qt::TextWordWrap, why_);
    return;
  }
  const Layout l = layout();
  const int nodes = cluster_.total_nodes();
  // The switch, and a line from it to each node (thin when there are many).
  const QRect sw(kMargin, kMargin, width() - 2 * kMargin, kSwitch - 2 * kMargin - 6);
  p.fillRect(sw, QColor(235, 235, 235));
  p.setPen(QColor(60, 60, 60));
  const char* by_name[] = {"pipeline stage", "tensor-parallel group", "data-parallel group",
                           "context-parallel group"};
  p.drawText(sw.adjusted(6, 0, -6, 0), Qt::AlignVCenter | Qt::AlignLeft,
             QString("%1 (%2 GPUs, %3 ranks): coloured by %4")
                 .arg(QString::fromStdString(cluster_.name))
                 .arg(cluster_.total_gpus())
                 .arg(world_)
                 .arg(by_name[static_cast<int>(by_)]));
  if (nodes <= 256) {
    p.setPen(QColor(190, 190, 190));
    for (int node = 0; node < nodes; ++node) {
      const QRect r = node_rect(l, node);
      if (node / l.columns == 0) p.drawLine(r.center().x(), sw.bottom(), r.center().x(), r.top());
    }
  }
  int gpu = 0, node = 0;
  for (const strategies::NodeGroup& g : cluster_.node_groups) {
    for (int n = 0; n < g.nodes; ++n, ++node, gpu += g.gpus_per_node) {
      const QRect r = node_rect(l, node);
      if (l.cell == 0) {
        p.fillRect(r, gpu < world_ ? group_colour(group_of(gpu)) : QColor(225, 225, 225));
        continue;
      }
      p.setPen(QColor(150, 150, 150));
      p.setBrush(QColor(248, 248, 248));
      p.drawRect(r);
      for (int k = 0; k < g.gpus_per_node; ++k) {
        const QRect c = gpu_rect(gpu + k);
        const bool used = gpu + k < world_;
        p.fillRect(c, used ? group_colour(group_of(gpu + k)) : QColor(225, 225, 225));
        if (used && c.width() >= 22) {
          p.setPen(Qt::black);
          p.drawText(c, Qt::AlignCenter, QString::number(gpu + k));
        }
      }
    }
  }
  p.setPen(QColor(40, 40, 40));
  p.drawText(QRect(kMargin, height() - kLegend, width() - 2 * kMargin, kLegend - 4),
             Qt::AlignLeft | Qt::AlignVCenter, links_text());
}

void ClusterView::mouseReleaseEvent(QMouseEvent* e) {
  const int rank = rank_at(e->position().toPoint());
  if (rank >= 0) emit rank_selected(rank);
}

}  // namespace strata::gui
