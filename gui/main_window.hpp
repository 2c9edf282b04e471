// strata-gui's window: File > Open (a report.json, a trace.json, or both: a report's trace is
// found beside it), File > Simulate (model, cluster and strategy, bundled names or files, run as
// a child `strata simulate` with its progress in the status bar and a Cancel button), File >
// Export (the current view as PNG). Tabs: Timeline, Cluster, Memory, Report (the text `strata
// simulate` prints). Bad files are reported by name with the reader's message; nothing crashes.
#pragma once

#include <QFutureWatcher>
#include <QLabel>
#include <QMainWindow>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QString>
#include <QTabWidget>
#include <memory>
#include <optional>
#include <string>

#include "gui/cluster_view.hpp"
#include "gui/memory_timeline_view.hpp"
#include "gui/memory_view.hpp"
#include "gui/side_by_side.hpp"
#include "gui/simulation_runner.hpp"
#include "gui/timeline_view.hpp"
#include "results/report.hpp"

namespace strata::gui {

// The file beside `path` whose name has the last `from` in `path`'s name replaced by `to`
// ("out/report.json" -> "out/trace.json", "a-report.json" -> "a-trace.json"), or "" when there
// is none. Only names that say so are paired: a directory may hold a prediction's report beside
// a measured trace.
QString sibling_file(const QString& path, const QString& from, const QString& to);

struct GuiOptions {
  QString strata;      // the command line's executable
  QString config_dir;  // bundled specs (configs/)
  bool interactive = true;  // false: errors go to the status bar only, never a dialog
};

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  explicit MainWindow(GuiOptions options, QWidget* parent = nullptr);
  ~MainWindow() override;  // waits for a trace still loading

  // Opens a report, a trace, a plan or a run record (by its kind), or says why not
  // (last_error()). A report opens its
  // trace too (with_trace) when one lies beside it (sibling_file(path, "report", "trace"));
  // without one the timeline is emptied, so that it never shows another run's tasks beside this
  // report.
  bool open_file(const QString& path);
  bool open_report(const QString& path, bool with_trace = true);
  // A plan.json (`strata plan --out`): the cluster view, every rank's planned peak against its
  // capacity, the plan summary; its Plan serves the memory timeline of a trace opened after it.
  bool open_plan(const QString& path);
  // A run.json (`strata run --json`): every rank's measured peak beside the Plan's (the bars and
  // the line), and the steps' losses and speed.
  bool open_run(const QString& path);
  // A trace is read and laid out in a worker thread; with `wait` false this returns at once
  // (true: started) and opened() or failed() follows, the window responsive meanwhile and the
  // status bar saying what loads. Interactive windows open traces so; tests and screenshots wait.
  bool open_trace(const QString& path, bool wait = true);
  bool loading() const;
  // Reads `model`, `cluster` and `strategy` (files, or names of bundled specs) for a world of
  // `world_size` ranks (a uniform cluster with fewer GPUs is rescaled to enough nodes), shows
  // them in the cluster view and lowers their Plan for the memory timelines; false with the
  // reason in the views when they cannot be read or are not this run's.
  bool load_specs(const QString& model, const QString& cluster, const QString& strategy,
                  int world_size);
  // The memory timeline of `rank` under the bars (false and the reason shown when there is no
  // Plan or the trace lacks the rank).
  bool show_memory_of(int rank);
  MemoryTimelineView* memory_timeline() { return memory_timeline_; }
  // The ops of trace event `event`'s task with their sizes and output shapes, from the run's
  // Plan ("" without one, or when the trace is not of that Plan).
  std::string ops_of(std::size_t event) const;
  // Two runs side by side in the Compare tab: each a report (with the trace beside it) or a
  // trace (with the report beside it, where there is one). False and last_error() when either
  // cannot be read.
  bool compare(const QString& a, const QString& b);
  // Starts a simulation (false and last_error() when it cannot start).
  bool simulate(const SimulationRequest& request);
  void cancel_simulation();
  // Saves the current tab as a PNG, or as SVG (vector: rectangles and text as drawn) when the
  // path ends in .svg (false and last_error() on failure).
  bool export_png(const QString& path);
  bool export_view(const QString& path);

  TimelineView* timeline() { return timeline_; }
  MemoryView* memory() { return memory_; }
  ClusterView* cluster() { return cluster_; }
  SideBySide* side_by_side() { return side_by_side_; }
  QTabWidget* tabs() { return tabs_; }
  SimulationRunner* runner() { return runner_; }
  const std::optional<results::Report>& report() const { return report_; }
  const QString& last_error() const { return last_error_; }
  QString status_text() const;

 signals:
  void opened(const QString& path);
  void open_failed(const QString& message);
  void simulation_done(bool ok);

 private:
  void fail(const QString& message);
  bool finish_loading();  // the trace loader's result into the timeline
  void show_simulate_dialog();
  void show_open_dialog();
  void show_export_dialog();
  void show_compare_dialog();

  GuiOptions options_;
  QTabWidget* tabs_ = nullptr;
  TimelineView* timeline_ = nullptr;
  MemoryView* memory_ = nullptr;
  MemoryTimelineView* memory_timeline_ = nullptr;
  std::shared_ptr<const strategies::Plan> plan_;
  ClusterView* cluster_ = nullptr;
  SideBySide* side_by_side_ = nullptr;
  SimulationRequest last_request_;
  bool own_run_ = false;  // opening the files of a simulation this window ran
  // What the trace loader's worker returns: the laid-out trace, or why not.
  struct Loaded {
    std::shared_ptr<const TimelineModel> model;
    QString error;
  };
  QFutureWatcher<Loaded>* trace_loader_ = nullptr;
  QString loading_path_;
  QString last_progress_;  // the simulation's last stderr line
  bool load_pending_ = false;
  QPlainTextEdit* report_text_ = nullptr;
  QLabel* status_ = nullptr;
  QPushButton* cancel_ = nullptr;
  SimulationRunner* runner_ = nullptr;
  std::optional<results::Report> report_;
  QString last_error_;
};

}  // namespace strata::gui
