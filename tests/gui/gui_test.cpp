// strata-gui's widgets, offscreen (QT_QPA_PLATFORM=offscreen): a simulated report and trace open
// with every rank's rows, tasks and memory; each view renders something, with a row per rank; a
// simulation runs as a child `strata simulate` and its report appears; a long one is cancelled
// and its process is gone; bad files say what is wrong.
#include <QDir>
#include <QImage>
#include <QJsonDocument>
#include <QJsonObject>
#include <QPlainTextEdit>
#include <QProcess>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest>
#include <cmath>
#include <set>

#include "gui/main_window.hpp"
#include "gui/trace_loader.hpp"
#include "results/run.hpp"
#include "results/trace.hpp"
#include "results/report.hpp"
#include "results/report_compare.hpp"
#include <cstdio>

using strata::gui::GuiOptions;
using strata::gui::MainWindow;
using strata::gui::SimulationRequest;

namespace {

const QString kStrata = QStringLiteral(STRATA_BINARY_DIR "/cli/strata");

GuiOptions options() {
  GuiOptions o;
  o.strata = kStrata;
  o.config_dir = QStringLiteral(STRATA_SOURCE_DIR "/configs");
  o.interactive = false;
  return o;
}

// Pixels of `image` that are not the background (white).
int drawn_pixels(const QImage& image) {
  int n = 0;
  for (int y = 0; y < image.height(); ++y) {
    for (int x = 0; x < image.width(); ++x) n += image.pixelColor(x, y) != QColor(Qt::white);
  }
  return n;
}

}  // namespace

class GuiTest : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir dir_;
  QString report_, trace_, report2_, plan_, run_;

 private slots:
  void initTestCase() {
    QVERIFY(dir_.isValid());
    report_ = dir_.filePath("report.json");
    trace_ = dir_.filePath("trace.json");
    // gpt-tiny with dp 2, tp 2, pp 2 on 8 A100s, every rank traced.
    QProcess p;
    p.start(kStrata, {"simulate", "--model", "gpt-tiny", "--cluster", "dgx-a100-128n",
                      "--strategy", "tiny-dp2-tp2-pp2", "--gpus", "8", "--trace-ranks", "all",
                      "--json", report_, "--trace", trace_});
    QVERIFY(p.waitForFinished(60000));
    QCOMPARE(p.exitCode(), 0);
    // Its plan, and a measured run of gpt-tiny on one rank.
    plan_ = dir_.filePath("plan.json");
    p.start(kStrata, {"plan", "--model", "gpt-tiny", "--cluster", "dgx-a100-128n", "--strategy",
                      "tiny-dp2-tp2-pp2", "--gpus", "8", "--out", plan_});
    QVERIFY(p.waitForFinished(60000));
    QCOMPARE(p.exitCode(), 0);
    run_ = dir_.filePath("run.json");
    p.start(kStrata, {"run", "--model", "gpt-tiny", "--strategy", "tiny-1rank", "--steps", "2",
                      "--json", run_});
    QVERIFY(p.waitForFinished(120000));
    QCOMPARE(p.exitCode(), 0);
    // Another strategy of the same model, for the report diff.
    report2_ = dir_.filePath("tp2-report.json");
    p.start(kStrata, {"simulate", "--model", "gpt-tiny", "--cluster", "dgx-a100-128n",
                      "--strategy", "tiny-dp2-tp2", "--gpus", "4", "--json", report2_});
    QVERIFY(p.waitForFinished(60000));
    QCOMPARE(p.exitCode(), 0);
  }

  void twoReportsSideBySide() {
    MainWindow w(options());
    QVERIFY2(w.compare(report_, report2_), qPrintable(w.last_error()));
    const QString text = w.side_by_side()->summary();
    QVERIFY2(text.contains("tiny-dp2-tp2-pp2") && text.contains(", tiny-dp2-tp2\n"), qPrintable(text));
    QVERIFY(text.contains("step time"));
    QVERIFY(text.contains("stage 1"));      // A has two stages
    QVERIFY(text.contains("only in A"));    // B has one
    QVERIFY(!w.side_by_side()->comparison().has_value());  // different Plans: no task join
    const strata::results::Report a = strata::results::read_report(report_.toStdString());
    const strata::results::Report b = strata::results::read_report(report2_.toStdString());
    // The table is results::compare_reports', as `strata compare` prints it.
    QVERIFY(text.contains(QString::fromStdString(
        strata::results::compare_reports(a, b, report_.toStdString(), report2_.toStdString()).text)));
  }

  void predictedAgainstMeasuredOutlinesTheWorstTasks() {
    // The committed prediction and measurement of v10m-dp2 (experiments/validate-cpu).
    const QString runs = QStringLiteral(STRATA_SOURCE_DIR "/experiments/validate-cpu/results/runs/v10m-dp2/");
    MainWindow w(options());
    QVERIFY2(w.compare(runs + "predicted.json", runs + "measured.json"), qPrintable(w.last_error()));
    auto* s = w.side_by_side();
    QVERIFY(s->comparison().has_value());
    QVERIFY(s->comparison()->tasks.size() > 100);
    QCOMPARE(static_cast<int>(s->top()->highlighted().size()), 10);
    QCOMPARE(static_cast<int>(s->bottom()->highlighted().size()), 10);
    QVERIFY(s->summary().contains("Task by task"));
    // Zooming one zooms the other: the same window of time.
    s->top()->zoom(0.5, 0.01);
    QCOMPARE(s->bottom()->view_start_s(), s->top()->view_start_s());
    QCOMPARE(s->bottom()->view_end_s(), s->top()->view_end_s());
    // The outlined tasks are drawn in red somewhere in the top timeline.
    w.resize(1400, 900);
    w.show();
    w.tabs()->setCurrentWidget(s);
    s->top()->show_all();
    const QImage image = s->top()->grab().toImage();
    int red = 0;
    for (int y = 0; y < image.height(); ++y) {
      for (int x = 0; x < image.width(); ++x) red += image.pixelColor(x, y) == QColor(220, 0, 0);
    }
    QVERIFY(red > 10);
  }

  void opensAReportWithItsTrace() {
    MainWindow w(options());
    QVERIFY2(w.open_file(report_), qPrintable(w.last_error()));
    QVERIFY(w.report().has_value());
    QCOMPARE(w.report()->world_size, 8);
    // Memory: a bar per rank, each with the report's peak and the A100's 80 GiB.
    QCOMPARE(static_cast<int>(w.memory()->ranks().size()), 8);
    for (std::size_t r = 0; r < 8; ++r) {
      QCOMPARE(w.memory()->ranks()[r].peak_bytes, w.report()->ranks[r].peak_memory_bytes);
      QCOMPARE(w.memory()->ranks()[r].capacity_bytes, 80.0 * 1024 * 1024 * 1024);
    }
    // The trace beside it: every rank has rows, and every task of the file is on one.
    const strata::gui::TimelineModel* m = w.timeline()->model();
    QVERIFY(m != nullptr);
    QCOMPARE(static_cast<int>(m->ranks().size()), 8);
    std::size_t tasks = 0;
    for (const auto& row : m->rows()) tasks += row.slices.size();
    QCOMPARE(tasks, m->task_count());
    QVERIFY(m->task_count() > 100);
  }

  void theDisplayReaderKeepsWhatTheFullReaderReads() {
    const strata::gui::TimelineModel full(strata::results::read_trace(trace_.toStdString()));
    const strata::gui::TimelineModel fast(strata::gui::load_timeline(trace_.toStdString()));
    QCOMPARE(fast.task_count(), full.task_count());
    QCOMPARE(fast.rows().size(), full.rows().size());
    for (std::size_t i = 0; i < full.task_count(); ++i) {
      const auto& a = full.events()[i];
      const auto& b = fast.events()[i];
      QCOMPARE(b.rank, a.rank);
      QCOMPARE(b.task, a.task);
      QCOMPARE(b.start_s, a.start_s);
      QCOMPARE(b.duration_s, a.duration_s);
      QCOMPARE(b.stream, a.stream);
      QCOMPARE(b.lane, a.lane);
      QCOMPARE(b.kind, a.kind);
      QCOMPARE(b.phase, a.phase);
      QCOMPARE(b.block, a.block);
      QCOMPARE(b.collective, a.collective);
      QCOMPARE(b.purpose, a.purpose);
      QCOMPARE(b.group_size, a.group_size);
      QCOMPARE(b.layer, a.layer);
      QCOMPARE(b.micro_batch, a.micro_batch);
      QCOMPARE(b.bytes, a.bytes);
      QCOMPARE(b.waited_s, a.waited_s);
      QCOMPARE(fast.name(b), full.name(a));
      QCOMPARE(fast.describe(i), full.describe(i));
    }
    for (std::size_t r = 0; r < full.rows().size(); ++r) {
      QCOMPARE(fast.rows()[r].label, full.rows()[r].label);
    }
    QVERIFY(full.full_trace() != nullptr);
    QVERIFY(fast.full_trace() == nullptr);
  }

  void opensEveryGoldenReport() {
    // The checked-in golden reports (tests/golden/expected): memory bars as the files say. Their
    // specs are not bundled, so the cluster view says so rather than drawing another cluster.
    const QDir golden(QStringLiteral(STRATA_SOURCE_DIR "/tests/golden/expected"));
    const QStringList files = golden.entryList({"*.report.json"}, QDir::Files);
    QVERIFY(files.size() >= 6);
    for (const QString& f : files) {
      MainWindow w(options());
      QVERIFY2(w.open_file(golden.filePath(f)), qPrintable(w.last_error()));
      QCOMPARE(static_cast<int>(w.memory()->ranks().size()), w.report()->world_size);
      for (std::size_t r = 0; r < w.memory()->ranks().size(); ++r) {
        QCOMPARE(w.memory()->ranks()[r].peak_bytes, w.report()->ranks[r].peak_memory_bytes);
        QCOMPARE(w.memory()->ranks()[r].capacity_bytes, w.report()->ranks[r].capacity_bytes);
      }
      QVERIFY(!w.cluster()->has_specs());
      QVERIFY(w.timeline()->model() == nullptr);  // no trace beside it
    }
  }

  void eachViewRendersARowPerRank() {
    MainWindow w(options());
    QVERIFY(w.open_file(report_));
    w.resize(1400, 900);
    w.show();
    // Timeline: the rows of all 8 ranks fit; each row has drawn pixels right of its label.
    auto* t = w.timeline();
    const int rows = static_cast<int>(t->model()->rows().size());
    QCOMPARE(t->visible_rows(), std::min(rows, (t->height() - t->kAxisHeight) / t->kRowHeight));
    const QImage image = t->grab().toImage();
    std::set<int> ranks_drawn;
    for (int i = 0; i < t->visible_rows(); ++i) {
      const int y = t->kAxisHeight + i * t->kRowHeight + t->kRowHeight / 2;
      int painted = 0;
      for (int x = t->kGutter; x < image.width(); ++x) painted += image.pixelColor(x, y) != QColor(Qt::white);
      if (painted > 0) ranks_drawn.insert(t->model()->rows()[static_cast<std::size_t>(i)].rank);
    }
    QCOMPARE(static_cast<int>(ranks_drawn.size()), 8);
    // Memory and the report's text are not blank.
    QVERIFY(drawn_pixels(w.memory()->grab().toImage()) > 1000);
    w.tabs()->setCurrentIndex(3);  // the report's text
    QVERIFY(drawn_pixels(w.tabs()->currentWidget()->grab().toImage()) > 1000);
    // Export writes a PNG of the current tab.
    const QString png = dir_.filePath("view.png");
    QVERIFY(w.export_png(png));
    QVERIFY(!QImage(png).isNull());
    // And as SVG: the timeline's rectangles as vector shapes.
    w.tabs()->setCurrentIndex(0);
    const QString svg = dir_.filePath("view.svg");
    QVERIFY(w.export_view(svg));
    QFile f(svg);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QByteArray text = f.readAll();
    QVERIFY(text.startsWith("<?xml"));
    QVERIFY(text.count("<rect") + text.count("<path") > 100);
    QVERIFY(text.contains("rank 0 compute"));
    QVERIFY(!w.export_view(dir_.filePath("no-such-dir/view.svg")));
  }

  void aRanksMemoryOverTheStepByRole() {
    MainWindow w(options());
    QVERIFY(w.open_file(report_));
    // Rank 0's, shown when the trace opened.
    QVERIFY(w.memory_timeline()->timeline().has_value());
    const strata::gui::MemoryTimeline& m0 = *w.memory_timeline()->timeline();
    QCOMPARE(m0.rank, 0);
    QVERIFY(m0.samples.size() > 10);
    // Its peak is the report's (the Plan's walk), from the trace's task times.
    const double reported = w.report()->ranks[0].peak_memory_bytes;
    QVERIFY2(std::abs(m0.peak_bytes - reported) <= 1e-9 * reported,
             qPrintable(QString("%1 vs %2").arg(m0.peak_bytes).arg(reported)));
    // Every buffer freed by the end: only static memory is left.
    QCOMPARE(m0.samples.back().total_transient(), 0.0);
    // A click on rank 5's bar shows rank 5's. A stage-1 rank: in simulated time its pipeline
    // receive for the next micro-batch is allocated while compute still holds what the Plan's
    // walk in program order had freed first, so its peak is one 8 KiB receive buffer above the
    // report's (1,186,568 against 1,178,376 bytes): within 1%, and not below.
    w.resize(1400, 900);
    w.show();
    w.tabs()->setCurrentIndex(2);
    QApplication::processEvents();
    auto* bars = w.memory();
    int x5 = -1;
    for (int x = 0; x < bars->width() && x5 < 0; ++x) {
      if (bars->rank_at(x) == 5) x5 = x;
    }
    QVERIFY(x5 >= 0);
    QTest::mouseClick(bars, Qt::LeftButton, {}, QPoint(x5 + 2, bars->height() / 2));
    QCOMPARE(w.memory_timeline()->timeline()->rank, 5);
    const double reported5 = w.report()->ranks[5].peak_memory_bytes;
    const double peak5 = w.memory_timeline()->timeline()->peak_bytes;
    QVERIFY2(peak5 >= reported5 && peak5 <= 1.01 * reported5,
             qPrintable(QString("%1 vs %2").arg(w.memory_timeline()->timeline()->peak_bytes, 0, 'f', 0).arg(reported5, 0, 'f', 0)));
    QVERIFY(drawn_pixels(w.memory_timeline()->grab().toImage()) > 1000);
    // A rank the trace lacks says so.
    QVERIFY(!w.show_memory_of(99));
  }

  void theClusterViewColoursTheGroupsAndSelectsRanks() {
    MainWindow w(options());
    QVERIFY(w.open_file(report_));
    w.resize(1400, 900);
    w.show();
    w.tabs()->setCurrentIndex(1);
    QApplication::processEvents();
    auto* c = w.cluster();
    QVERIFY(c->has_specs());
    QCOMPARE(c->world_size(), 8);
    QCOMPARE(c->cluster().total_gpus(), 1024);
    // By pipeline stage: the report's stage of every rank.
    for (int r = 0; r < 8; ++r) QCOMPARE(c->group_of(r), w.report()->ranks[static_cast<std::size_t>(r)].stage);
    // By tensor-parallel group (order tp-cp-ep-dp-pp: peers are consecutive ranks).
    c->set_colour_by(strata::gui::ClusterView::ColourBy::kTp);
    QCOMPARE(c->group_of(0), c->group_of(1));
    QVERIFY(c->group_of(0) != c->group_of(2));
    c->set_colour_by(strata::gui::ClusterView::ColourBy::kDp);
    QCOMPARE(c->group_of(0), c->group_of(2));
    QVERIFY(c->group_of(0) != c->group_of(1));
    // GPU 3 is drawn, in its stage's colour on the image, and clicking it shows rank 3's rows.
    const QRect g = c->gpu_rect(3);
    QVERIFY(!g.isEmpty());
    QCOMPARE(c->rank_at(g.center()), 3);
    QCOMPARE(c->rank_at(QPoint(1, 1)), -1);
    const QImage image = c->grab().toImage();
    QVERIFY(image.pixelColor(g.center()) != QColor(Qt::white));
    QVERIFY(c->links_text().contains("nvswitch 300 GB/s per GPU"));
    QTest::mouseClick(c, Qt::LeftButton, {}, g.center());
    QCOMPARE(w.tabs()->currentWidget(), static_cast<QWidget*>(w.timeline()));
    QCOMPARE(w.timeline()->first_visible_row(),
             static_cast<int>(w.timeline()->model()->first_row_of(3)));
    // A report whose specs are not bundled: the view says why instead of drawing.
    QJsonObject other;
    {
      QFile f(report_);
      QVERIFY(f.open(QIODevice::ReadOnly));
      other = QJsonDocument::fromJson(f.readAll()).object();
    }
    other["strategy"] = "not-bundled";
    const QString renamed = dir_.filePath("renamed-report.json");
    {
      QFile f(renamed);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(QJsonDocument(other).toJson());
    }
    QVERIFY2(w.open_file(renamed), qPrintable(w.last_error()));
    QVERIFY(!c->has_specs());
  }

  void opensAPlanAndARunRecord() {
    MainWindow w(options());
    QVERIFY2(w.open_file(plan_), qPrintable(w.last_error()));
    const strata::results::Report r = strata::results::read_report(report_.toStdString());
    QCOMPARE(static_cast<int>(w.memory()->ranks().size()), 8);
    for (std::size_t k = 0; k < 8; ++k) {  // the plan's peaks are the report's
      QCOMPARE(w.memory()->ranks()[k].peak_bytes, r.ranks[k].peak_memory_bytes);
    }
    QVERIFY(w.cluster()->has_specs());
    QCOMPARE(w.cluster()->world_size(), 8);
    // A trace of that Plan opened after it: the timeline, and rank 0's memory over the step.
    QVERIFY(w.open_file(trace_));
    QVERIFY(w.memory_timeline()->timeline().has_value());
    QCOMPARE(w.memory_timeline()->timeline()->peak_bytes, r.ranks[0].peak_memory_bytes);
    // A run record: measured peaks beside the Plan's, and its losses.
    QVERIFY2(w.open_file(run_), qPrintable(w.last_error()));
    const strata::results::RunRecord run = strata::results::read_run(run_.toStdString());
    QCOMPARE(static_cast<int>(w.memory()->ranks().size()), 1);
    QCOMPARE(w.memory()->ranks()[0].peak_bytes, run.memory[0].measured_peak_bytes);
    w.tabs()->setCurrentIndex(3);
    auto* text = qobject_cast<QPlainTextEdit*>(w.tabs()->currentWidget());
    QVERIFY(text != nullptr);
    QVERIFY(text->toPlainText().contains(QString::number(run.steps[1].loss, 'f', 5)));
  }

  void aTasksOpsAndShapesComeFromThePlan() {
    MainWindow w(options());
    QVERIFY(w.open_file(report_));
    const auto* m = w.timeline()->model();
    // The first forward compute task of rank 0 that runs a linear op (a GEMM).
    std::string ops;
    std::size_t at = 0;
    for (std::size_t i = 0; i < m->task_count() && ops.find("op linear") == std::string::npos; ++i) {
      const auto& e = m->events()[i];
      if (e.rank == 0 && e.kind == strata::strategies::TaskKind::kCompute &&
          e.phase == strata::strategies::Phase::kForward) {
        ops = w.ops_of(i);
        at = i;
      }
    }
    QVERIFY2(ops.find("op linear fp32 dims ") != std::string::npos, ops.c_str());
    QVERIFY2(ops.find(" -> ") != std::string::npos && ops.find("(") != std::string::npos, ops.c_str());
    // The tooltip text carries them after the task's description.
    const std::string tip = w.timeline()->text_of(at);
    QVERIFY(tip.find(m->describe(at)) == 0);
    QVERIFY(tip.find(ops) != std::string::npos);
    // A trace opened without its Plan has none.
    MainWindow bare(options());
    QVERIFY(bare.open_file(trace_));
    QCOMPARE(bare.ops_of(0), std::string());
    // Compute coloured by block: the attention core's colour appears in the rendered timeline.
    w.resize(1400, 900);
    w.show();
    w.timeline()->set_compute_by_block(true);
    const QImage image = w.timeline()->grab().toImage();
    bool found = false;
    const QColor core = strata::gui::block_color(strata::strategies::Block::kAttnCore);
    for (int y = 0; y < image.height() && !found; ++y) {
      for (int x = strata::gui::TimelineView::kGutter; x < image.width() && !found; ++x) {
        found = image.pixelColor(x, y) == core;
      }
    }
    QVERIFY(found);
  }

  void zoomPanAndTheTaskUnderTheCursor() {
    MainWindow w(options());
    QVERIFY(w.open_file(trace_));
    w.resize(1400, 900);
    w.show();
    auto* t = w.timeline();
    const double end = t->model()->end_s();
    QVERIFY(t->view_start_s() < 0 && t->view_end_s() > end);
    t->zoom(0.25, end / 2);
    QVERIFY(std::abs((t->view_end_s() - t->view_start_s()) - 0.25 * 1.02 * end) < 1e-9 * end + 1e-12);
    QTest::keyClick(t, Qt::Key_Home);
    QVERIFY(t->view_start_s() < 0 && t->view_end_s() > end);
    // The first task of row 0, clicked: selected, and its tooltip text names its rank and task.
    const auto& s = t->model()->rows()[0].slices[0];
    t->set_view(s.start_s - (s.end_s - s.start_s), s.end_s + (s.end_s - s.start_s));
    const int x = t->kGutter + t->width() / 2 - t->kGutter / 2;
    const QPoint at(x, t->kAxisHeight + t->kRowHeight / 2);
    QCOMPARE(t->event_at(at), static_cast<std::ptrdiff_t>(s.event));
    QSignalSpy selected(t, &strata::gui::TimelineView::event_selected);
    QTest::mouseClick(t, Qt::LeftButton, {}, at);
    QCOMPARE(selected.count(), 1);
    QCOMPARE(t->selected_event(), static_cast<std::ptrdiff_t>(s.event));
    QVERIFY(w.status_text().contains("rank"));
  }

  void runsASimulationAndShowsIt() {
    MainWindow w(options());
    QSignalSpy done(&w, &MainWindow::simulation_done);
    SimulationRequest r;
    r.model = "gpt-tiny";
    r.cluster = "dgx-a100-128n";
    r.strategy = "tiny-dp2";
    r.gpus = 2;
    QVERIFY(w.simulate(r));
    QVERIFY(done.wait(60000));
    QCOMPARE(done.first().first().toBool(), true);
    QVERIFY(w.report().has_value());
    QCOMPARE(w.report()->world_size, 2);
    QVERIFY(w.timeline()->model() != nullptr);
    QCOMPARE(static_cast<int>(w.timeline()->model()->ranks().size()), 2);
  }

  void aFailingSimulationShowsItsError() {
    MainWindow w(options());
    QSignalSpy done(&w, &MainWindow::simulation_done);
    SimulationRequest r;
    r.model = "gpt-tiny";
    r.cluster = "dgx-a100-128n";
    r.strategy = "no-such-strategy";
    QVERIFY(w.simulate(r));
    QVERIFY(done.wait(60000));
    QCOMPARE(done.first().first().toBool(), false);
    QVERIFY2(w.last_error().contains("no-such-strategy"), qPrintable(w.last_error()));
    QVERIFY(w.last_error().contains("exit code 1"));
  }

  void cancelStopsTheChild() {
    MainWindow w(options());
    QSignalSpy done(&w, &MainWindow::simulation_done);
    SimulationRequest r;  // GPT-3 175B on 1,024 GPUs: seconds, long enough to cancel
    r.model = "gpt3-175b";
    r.cluster = "dgx-a100-128n";
    r.strategy = "gpt3-175b-tp8-pp8-dp16";
    r.trace_ranks = "";
    QVERIFY(w.simulate(r));
    QVERIFY(w.runner()->running());
    QTest::qWait(200);
    w.cancel_simulation();
    QVERIFY(!w.runner()->running());
    QCOMPARE(done.count(), 1);
    QCOMPARE(done.first().first().toBool(), false);
    QVERIFY2(w.last_error().startsWith("cancelled"), qPrintable(w.last_error()));
    QVERIFY(!w.report().has_value());
  }

  void aTraceLoadsWithoutBlockingTheWindow() {
    MainWindow w(options());
    QSignalSpy opened(&w, &MainWindow::opened);
    QVERIFY(w.open_trace(trace_, /*wait=*/false));
    // Until the window has taken the result in (from its event loop), it is loading.
    QVERIFY(w.loading());
    QVERIFY(w.status_text().startsWith("loading"));
    QVERIFY(!w.open_trace(trace_, false));  // one load at a time
    QVERIFY(w.last_error().startsWith("still loading"));
    QVERIFY(opened.wait(30000));
    QVERIFY(!w.loading());
    QVERIFY(w.timeline()->model() != nullptr);
    QCOMPARE(static_cast<int>(w.timeline()->model()->ranks().size()), 8);
    // A broken trace in the background: open_failed, and the shown trace stays.
    const QString cut = dir_.filePath("cut-trace.json");
    {
      QFile in(trace_), out(cut);
      QVERIFY(in.open(QIODevice::ReadOnly) && out.open(QIODevice::WriteOnly));
      out.write(in.read(in.size() / 2));
    }
    QSignalSpy failed(&w, &MainWindow::open_failed);
    QVERIFY(w.open_trace(cut, false));
    QVERIFY(failed.wait(30000));
    QVERIFY2(failed.first().first().toString().contains("cut-trace.json"),
             qPrintable(failed.first().first().toString()));
    QCOMPARE(static_cast<int>(w.timeline()->model()->ranks().size()), 8);
  }

  void badFilesSayWhatIsWrong() {
    MainWindow w(options());
    const QString corrupt = dir_.filePath("corrupt.json");
    {
      QFile f(corrupt);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write("{\"traceEvents\": [ {\"ph\": \"X\", ");  // cut short
    }
    QVERIFY(!w.open_file(corrupt));
    QVERIFY2(w.last_error().contains("corrupt.json"), qPrintable(w.last_error()));
    QVERIFY(!w.open_file(dir_.filePath("missing.json")));
    QVERIFY(w.last_error().contains("no such file"));
    QVERIFY(!w.open_file(dir_.path()));
    QVERIFY(w.last_error().contains("not a regular file"));
    const QString other = dir_.filePath("other.json");
    {
      QFile f(other);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write("{\"kind\": \"something else\"}");
    }
    QVERIFY(!w.open_file(other));
    QVERIFY(w.last_error().contains("not a file strata-gui opens"));
    QVERIFY(w.timeline()->model() == nullptr);  // nothing half-opened
  }
};

QTEST_MAIN(GuiTest)
#include "gui_test.moc"
