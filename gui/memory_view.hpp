// Memory per rank: each rank's peak against its device's capacity, as bars (a rank over its
// capacity in red), with the capacity drawn across; with more ranks than pixels, each column
// shows the largest peak of the ranks it holds. Clicking a bar selects its rank.
#pragma once

#include <QWidget>
#include <vector>

namespace strata::gui {

struct RankMemory {
  double peak_bytes = 0;
  double capacity_bytes = 0;
  int stage = 0;
};

class MemoryView : public QWidget {
  Q_OBJECT

 public:
  explicit MemoryView(QWidget* parent = nullptr);
  // `what` names the bars and the line ("peak memory per rank ...; line: device capacity").
  void set_ranks(std::vector<RankMemory> ranks, QString what = {});
  const std::vector<RankMemory>& ranks() const { return ranks_; }
  // The rank drawn at x, or -1.
  int rank_at(int x) const;

 signals:
  void rank_selected(int rank);

 protected:
  void paintEvent(QPaintEvent* e) override;
  void mouseReleaseEvent(QMouseEvent* e) override;

 private:
  std::vector<RankMemory> ranks_;
  QString what_;
  static constexpr int kLeft = 70, kBottom = 30, kTop = 30, kRight = 10;
};

}  // namespace strata::gui
