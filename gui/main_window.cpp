// strata-gui's window (main_window.hpp).
#include "gui/main_window.hpp"

#include <QComboBox>
#include <QFile>
#include <QtConcurrent/QtConcurrentRun>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QMenuBar>
#include <QMessageBox>
#include <QPainter>
#include <QSpinBox>
#include <QSplitter>
#include <QSvgGenerator>
#include <QTimer>
#include <QVBoxLayout>
#include <unistd.h>
#include <QStatusBar>
#include <exception>
#include <string>

#include "common/error.hpp"
#include "common/json.hpp"
#include "gui/trace_loader.hpp"
#include "results/plan.hpp"
#include "results/plan_summary.hpp"
#include "results/run.hpp"
#include "results/trace.hpp"
#include "strategies/plan_json.hpp"

namespace strata::gui {

namespace {

enum class FileKind { kTrace, kReport, kPlan, kRun, kUnknown };

// Which of Strata's files `path` is, from its first 64 KiB, so that a trace of a million tasks
// is not parsed twice: a trace names traceEvents or its kind early, the others their kind.
// ConfigError when it cannot be read.
FileKind kind_from_head(const QString& path) {
  QFile file(path);
  if (!file.open(QIODevice::ReadOnly)) {
    throw ConfigError(path.toStdString() + ": cannot be read (" +
                      file.errorString().toStdString() + ")");
  }
  const QByteArray head = file.read(64 * 1024);
  if (head.contains("\"traceEvents\"") || head.contains("\"strata.trace\"")) {
    return FileKind::kTrace;
  }
  if (head.contains("\"strata.report\"")) return FileKind::kReport;
  if (head.contains("\"strata.plan\"")) return FileKind::kPlan;
  if (head.contains("\"strata.run\"")) return FileKind::kRun;
  return FileKind::kUnknown;
}

}  // namespace

QString sibling_file(const QString& path, const QString& from, const QString& to) {
  const QFileInfo info(path);
  QString name = info.fileName();
  const qsizetype at = name.lastIndexOf(from);
  if (at < 0) return {};
  name.replace(at, from.size(), to);
  const QString sibling = info.dir().filePath(name);
  return QFileInfo(sibling).isFile() ? sibling : QString();
}

MainWindow::MainWindow(GuiOptions options, QWidget* parent)
    : QMainWindow(parent), options_(std::move(options)) {
  setWindowTitle("Strata");
  tabs_ = new QTabWidget(this);
  timeline_ = new TimelineView(tabs_);
  memory_ = new MemoryView(tabs_);
  report_text_ = new QPlainTextEdit(tabs_);
  report_text_->setReadOnly(true);
  QFont mono("monospace");
  mono.setStyleHint(QFont::Monospace);
  report_text_->setFont(mono);
  cluster_ = new ClusterView(tabs_);
  auto* cluster_tab = new QWidget(tabs_);
  auto* cluster_layout = new QVBoxLayout(cluster_tab);
  auto* colour_by = new QComboBox(cluster_tab);
  colour_by->addItems({"colour by pipeline stage", "colour by tensor-parallel group",
                       "colour by data-parallel group", "colour by context-parallel group"});
  connect(colour_by, &QComboBox::currentIndexChanged, this, [this](int i) {
    cluster_->set_colour_by(static_cast<ClusterView::ColourBy>(i));
  });
  cluster_layout->addWidget(colour_by);
  cluster_layout->addWidget(cluster_, 1);
  tabs_->addTab(timeline_, "Timeline");
  tabs_->addTab(cluster_tab, "Cluster");
  auto* memory_tab = new QSplitter(Qt::Vertical, tabs_);
  memory_->setParent(memory_tab);
  memory_timeline_ = new MemoryTimelineView(memory_tab);
  memory_tab->addWidget(memory_);
  memory_tab->addWidget(memory_timeline_);
  tabs_->addTab(memory_tab, "Memory");
  side_by_side_ = new SideBySide(tabs_);
  tabs_->addTab(report_text_, "Report");
  tabs_->addTab(side_by_side_, "Compare");
  setCentralWidget(tabs_);

  status_ = new QLabel("Open a report or a trace, or simulate (File menu)", this);
  cancel_ = new QPushButton("Cancel", this);
  cancel_->setVisible(false);
  statusBar()->addWidget(status_, 1);
  statusBar()->addPermanentWidget(cancel_);

  QMenu* file = menuBar()->addMenu("&File");
  file->addAction("&Open...", QKeySequence::Open, this, [this] { show_open_dialog(); });
  file->addAction("&Compare two runs...", QKeySequence("Ctrl+D"), this,
                  [this] { show_compare_dialog(); });
  file->addAction("&Simulate...", QKeySequence("Ctrl+R"), this, [this] { show_simulate_dialog(); });
  file->addAction("&Export view as PNG or SVG...", QKeySequence("Ctrl+E"), this,
                  [this] { show_export_dialog(); });
  file->addSeparator();
  file->addAction("&Quit", QKeySequence::Quit, this, [this] { close(); });

  QMenu* view = menuBar()->addMenu("&View");
  QAction* by_block = view->addAction("Colour compute by &block (what it computes)");
  by_block->setCheckable(true);
  connect(by_block, &QAction::toggled, this, [this](bool on) {
    timeline_->set_compute_by_block(on);
    side_by_side_->top()->set_compute_by_block(on);
    side_by_side_->bottom()->set_compute_by_block(on);
  });
  // A task's ops and their sizes, from the run's Plan when the window has it.
  timeline_->set_details([this](std::size_t event) { return ops_of(event); });

  runner_ = new SimulationRunner(options_.strata, this);
  connect(cancel_, &QPushButton::clicked, this, [this] { cancel_simulation(); });
  // Progress: the child's last stderr line and the time it has run, every half second.
  auto* ticker = new QTimer(this);
  ticker->setInterval(500);
  auto show_progress = [this] {
    status_->setText(QString("simulating (%1 s; Cancel stops it): %2")
                         .arg(runner_->elapsed_s(), 0, 'f', 1)
                         .arg(last_progress_));
  };
  connect(ticker, &QTimer::timeout, this, show_progress);
  connect(runner_, &SimulationRunner::progress, this, [this, ticker, show_progress](const QString& line) {
    last_progress_ = line;
    if (!ticker->isActive()) ticker->start();
    show_progress();
  });
  connect(runner_, &SimulationRunner::finished, ticker, &QTimer::stop);
  connect(runner_, &SimulationRunner::failed, ticker, &QTimer::stop);
  connect(runner_, &SimulationRunner::finished, this,
          [this](const QString& report, const QString& trace) {
            cancel_->setVisible(false);
            own_run_ = true;
            const bool ok = open_report(report, false) && open_trace(trace);
            own_run_ = false;
            if (ok) status_->setText(QString("simulated in %1 s").arg(runner_->elapsed_s(), 0, 'f', 1));
            emit simulation_done(ok);
          });
  connect(runner_, &SimulationRunner::failed, this, [this](const QString& message) {
    cancel_->setVisible(false);
    fail(message);
    emit simulation_done(false);
  });
  // A rank picked in the memory or cluster view: its rows in the timeline.
  auto select = [this](int rank) {
    if (timeline_->model() == nullptr || timeline_->model()->first_row_of(rank) < 0) {
      status_->setText(
          QString("rank %1 is not in the trace (strata simulate --trace-ranks)").arg(rank));
      return;
    }
    timeline_->scroll_to_rank(rank);
    tabs_->setCurrentWidget(timeline_);
  };
  connect(cluster_, &ClusterView::rank_selected, this, select);
  connect(memory_, &MemoryView::rank_selected, this, [this](int rank) { show_memory_of(rank); });
  connect(timeline_, &TimelineView::event_selected, this, [this](std::ptrdiff_t ev) {
    if (ev >= 0 && timeline_->model() != nullptr) {
      status_->setText(QString::fromStdString(
          timeline_->text_of(static_cast<std::size_t>(ev))).replace('\n', "; "));
    }
  });
  resize(1200, 700);
}

MainWindow::~MainWindow() {
  if (trace_loader_ != nullptr) trace_loader_->waitForFinished();
}

QString MainWindow::status_text() const { return status_->text(); }

void MainWindow::fail(const QString& message) {
  last_error_ = message;
  status_->setText("error: " + message);
  if (options_.interactive) QMessageBox::warning(this, "Strata", message);
}

bool MainWindow::open_file(const QString& path) {
  const QFileInfo info(path);
  if (!info.exists()) {
    fail(path + ": no such file");
    return false;
  }
  if (!info.isFile()) {
    fail(path + ": not a regular file (a directory or a device)");
    return false;
  }
  // A file whose kind its start does not show is read whole, so that the reader's message says
  // what is wrong.
  try {
    switch (kind_from_head(path)) {
      case FileKind::kTrace:
        return open_trace(path, !options_.interactive);
      case FileKind::kReport:
        return open_report(path);
      case FileKind::kPlan:
        return open_plan(path);
      case FileKind::kRun:
        return open_run(path);
      case FileKind::kUnknown:
        break;
    }
    const json::Json j = json::parse_file(path.toStdString());
    if (j.is_object() && j.contains("traceEvents")) return open_trace(path, !options_.interactive);
    if (j.is_object() && j.value("kind", "") == results::kReportKind) return open_report(path);
    fail(path + ": not a file strata-gui opens: a report (kind \"strata.report\"), a trace "
                "(traceEvents), a plan (\"strata.plan\") or a run record (\"strata.run\")");
  } catch (const std::exception& e) {
    fail(QString::fromStdString(e.what()));
  }
  return false;
}

bool MainWindow::open_report(const QString& path, bool with_trace) {
  try {
    results::Report r = results::read_report(path.toStdString());
    std::vector<RankMemory> ranks;
    ranks.reserve(r.ranks.size());
    for (const results::RankTimes& t : r.ranks) {
      ranks.push_back({t.peak_memory_bytes, t.capacity_bytes, t.stage});
    }
    memory_->set_ranks(std::move(ranks));
    report_text_->setPlainText(QString::fromStdString(results::render_report(r)));
    setWindowTitle(QString::fromStdString("Strata: " + r.model + " / " + r.strategy + " on " +
                                          r.cluster));
    // The cluster view: the specs this run used when the GUI started it, else bundled specs of
    // the report's names.
    load_specs(own_run_ ? last_request_.model : QString::fromStdString(r.model),
               own_run_ ? last_request_.cluster : QString::fromStdString(r.cluster),
               own_run_ ? last_request_.strategy : QString::fromStdString(r.strategy),
               r.world_size);
    report_ = std::move(r);
  } catch (const std::exception& e) {
    fail(QString::fromStdString(e.what()));
    return false;
  }
  status_->setText("opened " + path);
  emit opened(path);
  if (!with_trace) return true;
  if (const QString trace = sibling_file(path, "report", "trace"); !trace.isEmpty()) {
    open_trace(trace, !options_.interactive);
  } else {
    timeline_->set_model(nullptr);
  }
  return true;
}

bool MainWindow::loading() const { return load_pending_; }

bool MainWindow::open_plan(const QString& path) {
  try {
    auto plan = std::make_shared<const strategies::Plan>(results::read_plan(path.toStdString()));
    std::vector<RankMemory> ranks;
    for (int r = 0; r < plan->world_size; ++r) {
      ranks.push_back({plan->program_of(r).memory.peak_bytes(), plan->capacity_bytes(r),
                       plan->stage_of(r)});
    }
    memory_->set_ranks(std::move(ranks),
                       QString("planned peak memory per rank (%1 ranks); line: device capacity")
                           .arg(plan->world_size));
    report_text_->setPlainText(QString::fromStdString(
        results::render_plan_summary(strategies::plan_summary(*plan))));
    cluster_->set_specs(plan->cluster, plan->strategy, plan->world_size);
    setWindowTitle(QString::fromStdString("Strata: plan of " + plan->model.name + " / " +
                                          plan->strategy.name + " on " + plan->cluster.name));
    plan_ = std::move(plan);
    report_.reset();
  } catch (const std::exception& e) {
    fail(QString::fromStdString(e.what()));
    return false;
  }
  status_->setText("opened " + path + " (a plan: open a trace of it for the timeline)");
  emit opened(path);
  return true;
}

bool MainWindow::open_run(const QString& path) {
  try {
    const results::RunRecord run = results::read_run(path.toStdString());
    std::vector<RankMemory> ranks;
    for (const results::RunMemory& m : run.memory) {
      ranks.push_back({m.measured_peak_bytes, m.planned_peak_bytes, 0});
    }
    memory_->set_ranks(std::move(ranks),
                       QString("measured peak memory per rank (%1 ranks); line: the Plan's peak")
                           .arg(run.memory.size()));
    QString text = QString("Strata run: %1 / %2 on %3 (%4 ranks, %5), %6\n\n  step        loss"
                           "     seconds    tokens/s\n")
                       .arg(QString::fromStdString(run.model), QString::fromStdString(run.strategy),
                            QString::fromStdString(run.cluster))
                       .arg(run.world_size)
                       .arg(QString::fromStdString(run.backend), QString::fromStdString(run.date));
    for (const results::RunStep& s : run.steps) {
      text += QString("  %1 %2 %3 %4\n")
                  .arg(s.step, 5)
                  .arg(s.loss, 11, 'f', 5)
                  .arg(s.seconds, 11, 'f', 4)
                  .arg(s.tokens_per_s, 11, 'f', 0);
    }
    text += QString("\n  median tokens/s %1\n").arg(run.median_tokens_per_s, 0, 'f', 0);
    report_text_->setPlainText(text);
  } catch (const std::exception& e) {
    fail(QString::fromStdString(e.what()));
    return false;
  }
  status_->setText("opened " + path + " (a run record)");
  emit opened(path);
  return true;
}

bool MainWindow::open_trace(const QString& path, bool wait) {
  if (loading()) {
    fail("still loading " + loading_path_ + ": wait for it before opening " + path);
    return false;
  }
  // A trace needs about 1.6 times its size in memory while it loads (the text and the tasks):
  // one that would not fit in this machine's memory is refused before any is read.
  const double bytes = static_cast<double>(QFileInfo(path).size());
  const double ram = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) *
                     static_cast<double>(::sysconf(_SC_PAGE_SIZE));
  if (ram > 0 && bytes * 1.6 > ram) {
    fail(QString("%1 is %2 GB: loading it needs about %3 GB and this machine has %4 GB of memory "
                 "(trace fewer ranks: strata simulate --trace-ranks)")
             .arg(path)
             .arg(bytes / 1e9, 0, 'f', 1)
             .arg(bytes * 1.6 / 1e9, 0, 'f', 1)
             .arg(ram / 1e9, 0, 'f', 1));
    return false;
  }
  loading_path_ = path;
  load_pending_ = true;  // until finish_loading() has taken the result in
  // The worker reads the file and lays out the rows; the window only swaps the model in.
  const std::string file = path.toStdString();
  auto work = [file]() -> Loaded {
    try {
      return {std::make_shared<const TimelineModel>(load_timeline(file)), {}};
    } catch (const std::exception& e) {
      return {nullptr, QString::fromStdString(e.what())};
    }
  };
  delete trace_loader_;
  trace_loader_ = new QFutureWatcher<Loaded>(this);
  connect(trace_loader_, &QFutureWatcherBase::finished, this, [this] { finish_loading(); });
  status_->setText("loading " + path + " ...");
  trace_loader_->setFuture(QtConcurrent::run(work));
  if (!wait) return true;
  trace_loader_->waitForFinished();
  trace_loader_->disconnect(this);  // finished() is handled here, not again from the event loop
  return finish_loading();
}

bool MainWindow::finish_loading() {
  load_pending_ = false;
  Loaded loaded = trace_loader_->result();
  if (!loaded.model) {
    fail(loaded.error);
    emit open_failed(loaded.error);
    return false;
  }
  timeline_->set_model(std::move(loaded.model));
  // The memory of the first traced rank, when the run's Plan is at hand.
  if (plan_ && !timeline_->model()->ranks().empty()) {
    show_memory_of(timeline_->model()->ranks().front());
  }
  status_->setText(QString("opened %1: %2 tasks on %3 rows")
                       .arg(loading_path_)
                       .arg(timeline_->model()->task_count())
                       .arg(timeline_->model()->rows().size()));
  emit opened(loading_path_);
  return true;
}

bool MainWindow::load_specs(const QString& model, const QString& cluster,
                            const QString& strategy, int world_size) {
  auto resolve = [this](const QString& arg, const char* kind) {
    if (QFileInfo(arg).isFile()) return arg;
    return options_.config_dir + "/" + kind + "/" + arg + ".json";
  };
  plan_.reset();
  memory_timeline_->clear("Click a rank's bar above for its memory over the step");
  bool cluster_shown = false;
  try {
    strategies::ClusterSpec c = strategies::load_cluster(resolve(cluster, "clusters").toStdString());
    const strategies::StrategySpec s =
        strategies::load_strategy(resolve(strategy, "strategies").toStdString());
    if (c.total_gpus() < world_size && c.node_groups.size() == 1) {
      const int gpn = c.node_groups.front().gpus_per_node;
      c = strategies::with_nodes(c, (world_size + gpn - 1) / gpn);
    }
    if (s.world_size() != world_size) {
      cluster_->clear(QString("strategy %1 has %2 ranks, the run %3: not the specs of this run")
                          .arg(strategy).arg(s.world_size()).arg(world_size));
      return false;
    }
    cluster_->set_specs(c, s, world_size);
    cluster_shown = true;
    const strategies::ModelSpec m = strategies::load_model(resolve(model, "models").toStdString());
    plan_ = std::make_shared<const strategies::Plan>(strategies::lower(m, c, s, world_size));
  } catch (const std::exception& e) {
    const QString why = "No specs: " + QString::fromStdString(e.what()) +
                        " (the views read the bundled specs of the report's names)";
    if (!cluster_shown) cluster_->clear(why);
    memory_timeline_->clear(why);
    return false;
  }
  return true;
}

std::string MainWindow::ops_of(std::size_t event) const {
  const TimelineModel* model = timeline_->model();
  if (!plan_ || model == nullptr || event >= model->task_count()) return {};
  const TimelineEvent& e = model->events()[event];
  if (e.rank < 0 || e.rank >= plan_->world_size) return {};
  const strategies::Program& p = plan_->program_of(e.rank);
  if (e.task >= p.tasks.size()) return {};
  const strategies::Task& t = p.tasks[e.task];
  if (plan_->task_name(t) != model->name(e)) return {};  // another Plan's trace
  std::string s;
  const std::uint32_t shown = std::min<std::uint32_t>(t.op_count, 8);
  for (std::uint32_t k = 0; k < shown; ++k) {
    const strategies::Op& op = p.ops[t.op_begin + k];
    std::size_t n = op.dims.size();
    while (n > 1 && op.dims[n - 1] == 0) --n;
    s += std::string(k ? "\n" : "") + "op " + strategies::op_kind_name(op.kind) + " " +
         strategies::dtype_name(op.dtype) + " dims ";
    for (std::size_t i = 0; i < n; ++i) s += (i ? "x" : "") + std::to_string(op.dims[i]);
    // Its output's shape, when it has one.
    if (op.n_out > 0) {
      const strategies::Buffer& b = p.buffers[static_cast<std::size_t>(p.output(op, 0))];
      s += " -> " + p.buffer_name(p.output(op, 0)) + " (";
      for (int i = 0; i < b.ndim; ++i) s += (i ? ", " : "") + std::to_string(b.shape[static_cast<std::size_t>(i)]);
      s += ")";
    }
  }
  if (t.op_count > shown) s += "\n... " + std::to_string(t.op_count - shown) + " more ops";
  return s;
}

bool MainWindow::show_memory_of(int rank) {
  if (!plan_) {
    memory_timeline_->clear(QString("No memory timeline for rank %1: the report's specs are "
                                    "not bundled, so there is no Plan").arg(rank));
    return false;
  }
  if (timeline_->model() == nullptr) {
    memory_timeline_->clear("No memory timeline: open the run's trace for its task times");
    return false;
  }
  try {
    memory_timeline_->set_timeline(gui::memory_timeline(*plan_, *timeline_->model(), rank),
                                   plan_->capacity_bytes(rank));
  } catch (const std::exception& e) {
    memory_timeline_->clear(QString::fromStdString(e.what()));
    return false;
  }
  return true;
}

bool MainWindow::simulate(const SimulationRequest& request) {
  if (!runner_->start(request)) return false;
  last_request_ = request;
  cancel_->setVisible(true);
  return true;
}

void MainWindow::cancel_simulation() { runner_->cancel(); }

bool MainWindow::export_view(const QString& path) {
  if (!path.endsWith(".svg", Qt::CaseInsensitive)) return export_png(path);
  QWidget* view = tabs_->currentWidget();
  QSvgGenerator svg;
  svg.setFileName(path);
  svg.setSize(view->size());
  svg.setViewBox(QRect(QPoint(0, 0), view->size()));
  svg.setTitle("Strata: " + tabs_->tabText(tabs_->currentIndex()));
  QPainter painter;
  if (!painter.begin(&svg)) {
    fail(path + ": could not write the SVG");
    return false;
  }
  view->render(&painter);
  painter.end();
  if (!QFileInfo(path).isFile() || QFileInfo(path).size() == 0) {
    fail(path + ": could not write the SVG");
    return false;
  }
  status_->setText("saved " + path);
  return true;
}

bool MainWindow::export_png(const QString& path) {
  const QPixmap image = tabs_->currentWidget()->grab();
  if (!image.save(path, "PNG")) {
    fail(path + ": could not write the PNG");
    return false;
  }
  status_->setText("saved " + path);
  return true;
}

void MainWindow::show_open_dialog() {
  const QString path = QFileDialog::getOpenFileName(this, "Open a report or a trace", QString(),
                                                    "Strata JSON (*.json);;All files (*)");
  if (!path.isEmpty()) open_file(path);
}

bool MainWindow::compare(const QString& a, const QString& b) {
  // A report and the trace beside it, or a trace and the report beside it.

  auto load = [&](const QString& path, Run& run) {
    run.label = path;
    if (!QFileInfo(path).isFile()) throw ConfigError(path.toStdString() + ": not a readable file");
    const bool is_trace = kind_from_head(path) == FileKind::kTrace;
    const QString report = is_trace ? sibling_file(path, "trace", "report") : path;
    const QString trace = is_trace ? path : sibling_file(path, "report", "trace");
    if (!report.isEmpty()) {
      try {
        run.report = results::read_report(report.toStdString());
      } catch (const ConfigError&) {
        if (!is_trace) throw;  // a trace's neighbour that is no report is only left out
      }
    }
    if (!trace.isEmpty()) {
      run.timeline = std::make_shared<const TimelineModel>(results::read_trace(trace.toStdString()));
    }
  };
  Run ra, rb;
  try {
    load(a, ra);
    load(b, rb);
  } catch (const std::exception& e) {
    fail(QString::fromStdString(e.what()));
    return false;
  }
  side_by_side_->set_runs(std::move(ra), std::move(rb));
  tabs_->setCurrentWidget(side_by_side_);
  status_->setText("comparing " + a + " with " + b);
  return true;
}

void MainWindow::show_compare_dialog() {
  const QString a = QFileDialog::getOpenFileName(this, "Compare: run A (report or trace)",
                                                 QString(), "Strata JSON (*.json)");
  if (a.isEmpty()) return;
  const QString b = QFileDialog::getOpenFileName(this, "Compare: run B (report or trace)",
                                                 QFileInfo(a).path(), "Strata JSON (*.json)");
  if (!b.isEmpty()) compare(a, b);
}

void MainWindow::show_export_dialog() {
  const QString path = QFileDialog::getSaveFileName(
      this, "Export the view", "view.png", "PNG image (*.png);;SVG drawing (*.svg)");
  if (!path.isEmpty()) export_view(path);
}

void MainWindow::show_simulate_dialog() {
  QDialog dialog(this);
  dialog.setWindowTitle("Simulate a step");
  auto* form = new QFormLayout(&dialog);
  auto bundled = [&](const char* kind, const char* fallback) {
    auto* box = new QComboBox(&dialog);
    box->setEditable(true);  // a bundled name or a file path
    const QDir dir(options_.config_dir + "/" + kind);
    for (const QFileInfo& f : dir.entryInfoList({"*.json"}, QDir::Files, QDir::Name)) {
      box->addItem(f.completeBaseName());
    }
    box->setCurrentText(fallback);
    return box;
  };
  QComboBox* model = bundled("models", "gpt3-175b");
  QComboBox* cluster = bundled("clusters", "dgx-a100-128n");
  QComboBox* strategy = bundled("strategies", "gpt3-175b-tp8-pp8-dp16");
  auto* gpus = new QSpinBox(&dialog);
  gpus->setRange(0, 1 << 20);
  gpus->setSpecialValueText("all of the cluster");
  form->addRow("Model", model);
  form->addRow("Cluster", cluster);
  form->addRow("Strategy", strategy);
  form->addRow("GPUs", gpus);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, &dialog);
  form->addRow(buttons);
  connect(buttons, &QDialogButtonBox::accepted, &dialog, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, &dialog, &QDialog::reject);
  if (dialog.exec() != QDialog::Accepted) return;
  SimulationRequest request;
  request.model = model->currentText();
  request.cluster = cluster->currentText();
  request.strategy = strategy->currentText();
  request.gpus = gpus->value();
  request.trace_ranks = "";  // the first rank of every stage: the command's default
  simulate(request);
}

}  // namespace strata::gui
