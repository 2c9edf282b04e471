// strata-gui: the Qt strategy visualizer (gui/README.md).
#include <QApplication>
#include <QElapsedTimer>
#include <QImage>
#include <algorithm>
#include <vector>
#include <QDir>
#include <QFileInfo>
#include <QProcessEnvironment>
#include <QTimer>
#include <cstdio>

#include "gui/main_window.hpp"

namespace {

const char* const kHelp = R"(Usage: strata-gui [FILE...] [--compare A B] [--strata PATH] [--screenshots DIR]

Strata's strategy visualizer. Opens report.json and trace.json files (written by
`strata simulate --json R --trace T`, or `strata run`); a report opens the trace beside it.
File > Simulate runs `strata simulate` as a child process, with its progress and a Cancel button.

  FILE               a report.json or a trace.json to open
  --compare A B      two runs side by side (Compare tab): reports (figures and stages diffed)
                     or traces (of one Plan, e.g. predicted and measured: joined task by task,
                     the worst-predicted tasks outlined in red)
  --strata PATH      the strata command line to simulate with (default: $STRATA_BIN, else the
                     one built beside strata-gui)
  --screenshots DIR  render the Timeline, Cluster, Memory and Report tabs of the opened files
                     (and Compare) to DIR/timeline.png, cluster.png, memory.png, report.png and
                     compare.png (1400 x 800), then exit
                     (works offscreen: QT_QPA_PLATFORM=offscreen)
  --benchmark TRACE  time opening TRACE and the first paint of its timeline, then 60 frames
                     of zooming and panning (1400 x 800, offscreen works), and print the figures
  --help             show this help

Timeline: wheel zooms around the cursor, drag pans, Shift+wheel or Up/Down scroll the rows,
+/- zoom, Left/Right pan, Home shows the whole step; hover a task for what it is, click to select.
Cluster and Memory: click a GPU or a rank's bar to show its rows in the timeline.

Exit codes: 0 success, 1 a file could not be opened (with --screenshots), 2 usage error.
)";

// --benchmark: open, first paint, then frames while zooming in and out and panning.
int run_benchmark(strata::gui::MainWindow& window, const QString& trace) {
  window.resize(1400, 800);
  window.show();
  QApplication::processEvents();
  QElapsedTimer clock;
  clock.start();
  if (!window.open_trace(trace)) {
    std::fprintf(stderr, "strata-gui: %s\n", qPrintable(window.last_error()));
    return 1;
  }
  const double open_s = static_cast<double>(clock.nsecsElapsed()) / 1e9;
  strata::gui::TimelineView* view = window.timeline();
  QImage frame(view->size(), QImage::Format_ARGB32_Premultiplied);
  clock.restart();
  view->render(&frame);
  const double first_paint_s = static_cast<double>(clock.nsecsElapsed()) / 1e9;
  const double end = view->model()->end_s();
  std::vector<double> frames;
  for (int i = 0; i < 60; ++i) {
    // 20 zooms in around the middle (x0.7 each), 20 pans of a tenth, 20 zooms back out.
    if (i < 20) {
      view->zoom(0.7, end / 2);
    } else if (i < 40) {
      const double span = view->view_end_s() - view->view_start_s();
      view->set_view(view->view_start_s() + span / 10, view->view_end_s() + span / 10);
    } else {
      view->zoom(1 / 0.7, end / 2);
    }
    clock.restart();
    view->render(&frame);
    frames.push_back(static_cast<double>(clock.nsecsElapsed()) / 1e6);
  }
  std::sort(frames.begin(), frames.end());
  std::printf("trace %s: %zu tasks on %zu rows\n", qPrintable(trace), view->model()->task_count(),
              view->model()->rows().size());
  std::printf("open (read and lay out): %.2f s\nfirst paint: %.1f ms\n", open_s,
              first_paint_s * 1e3);
  std::printf("frames (60, zoom and pan, %d x %d): median %.1f ms, max %.1f ms\n", view->width(),
              view->height(), frames[frames.size() / 2], frames.back());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QStringList args = QApplication::arguments();
  args.removeFirst();
  strata::gui::GuiOptions options;
  options.strata = QProcessEnvironment::systemEnvironment().value(
      "STRATA_BIN", QDir(QApplication::applicationDirPath()).filePath("../cli/strata"));
  options.config_dir = STRATA_CONFIG_DIR;
  QString screenshots, benchmark;
  QStringList files, compare;
  for (int i = 0; i < args.size(); ++i) {
    const QString& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      return 0;
    }
    if (a == "--strata" || a == "--screenshots" || a == "--benchmark") {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "strata-gui: %s needs a value (see --help)\n", qPrintable(a));
        return 2;
      }
      (a == "--strata" ? options.strata : a == "--screenshots" ? screenshots : benchmark) = args[++i];
      continue;
    }
    if (a == "--compare") {
      if (i + 2 >= args.size()) {
        std::fprintf(stderr, "strata-gui: --compare needs two files (see --help)\n");
        return 2;
      }
      compare << args[i + 1] << args[i + 2];
      i += 2;
      continue;
    }
    if (a.startsWith("--")) {
      std::fprintf(stderr, "strata-gui: unknown option %s (see --help)\n", qPrintable(a));
      return 2;
    }
    files << a;
  }
  options.interactive = screenshots.isEmpty() && benchmark.isEmpty();
  strata::gui::MainWindow window(options);
  if (!benchmark.isEmpty()) return run_benchmark(window, benchmark);
  bool all_opened = true;
  for (const QString& f : files) all_opened = window.open_file(f) && all_opened;
  if (!compare.isEmpty()) all_opened = window.compare(compare[0], compare[1]) && all_opened;
  if (!screenshots.isEmpty()) {
    if (!all_opened) {
      std::fprintf(stderr, "strata-gui: %s\n", qPrintable(window.last_error()));
      return 1;
    }
    if (!QDir().mkpath(screenshots)) {
      std::fprintf(stderr, "strata-gui: cannot create %s\n", qPrintable(screenshots));
      return 1;
    }
    window.resize(1400, 800);
    window.show();
    const char* names[] = {"timeline", "cluster", "memory", "report", "compare"};
    for (int t = 0; t < window.tabs()->count(); ++t) {
      window.tabs()->setCurrentIndex(t);
      QApplication::processEvents();
      const QString path = QDir(screenshots).filePath(QString(names[t]) + ".png");
      if (!window.export_png(path)) {
        std::fprintf(stderr, "strata-gui: %s\n", qPrintable(window.last_error()));
        return 1;
      }
      std::printf("wrote %s\n", qPrintable(path));
    }
    return 0;
  }
  window.show();
  return QApplication::exec();
}
