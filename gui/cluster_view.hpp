// The cluster: its nodes, each with its GPUs, and the strategy's groups coloured on them (by
// pipeline stage, or tensor-, data- or context-parallel group: one colour per group), the
// inter-node switch with each node's NIC bandwidth, and a legend of the links (intra-node fabric
// and bandwidth per GPU, NICs, topology, oversubscription, latencies). GPU r runs rank r (ranks
// are numbered over the cluster's GPUs node by node). Clicking a GPU selects its rank. With more
// GPUs than fit, a node is drawn as one cell in its first GPU's colour.
#pragma once

#include <QRect>
#include <QWidget>
#include <optional>

#include "strategies/rank_grid.hpp"
#include "strategies/spec.hpp"

namespace strata::gui {

class ClusterView : public QWidget {
  Q_OBJECT

 public:
  enum class ColourBy { kStage, kTp, kDp, kCp };

  explicit ClusterView(QWidget* parent = nullptr);
  // Shows `cluster` with the first `world_size` GPUs running `strategy`'s ranks.
  void set_specs(const strategies::ClusterSpec& cluster, const strategies::StrategySpec& strategy,
                 int world_size);
  void clear(const QString& why);
  bool has_specs() const { return grid_.has_value(); }
  void set_colour_by(ColourBy by);
  ColourBy colour_by() const { return by_; }

  // The group index (stage, tp group, ...) that colours `rank`.
  int group_of(int rank) const;
  // Where GPU `gpu` is drawn (empty when the view is too small for per-GPU cells), and the rank
  // at a position (-1 where none).
  QRect gpu_rect(int gpu) const;
  int rank_at(QPoint pos) const;
  int world_size() const { return world_; }
  const strategies::ClusterSpec& cluster() const { return cluster_; }
  // The legend's text (links and their bandwidths), as drawn.
  QString links_text() const;

 signals:
  void rank_selected(int rank);

 protected:
  void paintEvent(QPaintEvent* e) override;
  void mouseReleaseEvent(QMouseEvent* e) override;

 private:
  struct Layout {
    int columns = 1;      // nodes per row
    int node_w = 0, node_h = 0;
    int gpu_cols = 1, gpu_rows = 1;
    int cell = 0;         // GPU cell side; 0: nodes drawn whole
    int top = 0;          // first row of nodes
  };
  Layout layout() const;
  QRect node_rect(const Layout& l, int node) const;

  strategies::ClusterSpec cluster_;
  std::optional<strategies::RankGrid> grid_;
  int world_ = 0;
  ColourBy by_ = ColourBy::kStage;
  QString why_ = "No cluster: open a report whose specs are bundled, or simulate";
  static constexpr int kLegend = 64, kSwitch = 36, kMargin = 8;
};

}  // namespace strata::gui
