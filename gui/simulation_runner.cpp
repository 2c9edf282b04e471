// The child `strata simulate` process (simulation_runner.hpp).
#include "gui/simulation_runner.hpp"

#include <QFileInfo>

namespace strata::gui {

SimulationRunner::SimulationRunner(QString strata, QObject* parent)
    : QObject(parent), strata_(std::move(strata)) {}

SimulationRunner::~SimulationRunner() {
  if (running()) {
    process_->disconnect(this);
    process_->kill();
    process_->waitForFinished(5000);
  }
}

bool SimulationRunner::running() const {
  return process_ && process_->state() != QProcess::NotRunning;
}

double SimulationRunner::elapsed_s() const {
  return clock_.isValid() ? static_cast<double>(clock_.elapsed()) / 1000.0 : 0.0;
}

bool SimulationRunner::start(const SimulationRequest& request) {
  if (running()) {
    emit failed("a simulation is already running: cancel it first");
    return false;
  }
  if (!QFileInfo(strata_).isExecutable()) {
    emit failed("the strata command line was not found at '" + strata_ +
                "' (build it, or give its path with --strata or STRATA_BIN)");
    return false;
  }
  dir_ = std::make_unique<QTemporaryDir>();
  if (!dir_->isValid()) {
    emit failed("cannot make a temporary directory for the simulation's files: " +
                dir_->errorString());
    return false;
  }
  arguments_ = {"simulate", "--model", request.model, "--cluster", request.cluster,
                "--strategy", request.strategy, "--json", dir_->filePath("report.json"),
                "--trace", dir_->filePath("trace.json")};
  if (!request.trace_ranks.isEmpty()) arguments_ << "--trace-ranks" << request.trace_ranks;
  if (request.gpus > 0) arguments_ << "--gpus" << QString::number(request.gpus);
  arguments_ << request.extra;
  stderr_.clear();
  cancelling_ = false;
  process_ = std::make_unique<QProcess>();
  connect(process_.get(), &QProcess::readyReadStandardError, this, [this] {
    const QString text = QString::fromLocal8Bit(process_->readAllStandardError());
    stderr_ += text;
    for (const QString& line : text.split('\n', Qt::SkipEmptyParts)) emit progress(line);
  });
  connect(process_.get(), &QProcess::finished, this, &SimulationRunner::on_finished);
  connect(process_.get(), &QProcess::errorOccurred, this, [this](QProcess::ProcessError e) {
    if (e == QProcess::FailedToStart) {
      emit failed("could not start '" + strata_ + "': " + process_->errorString());
    }
  });
  clock_.start();
  process_->start(strata_, arguments_);
  emit progress("running: strata " + arguments_.join(' '));
  return true;
}

void SimulationRunner::cancel() {
  if (!running()) return;
  cancelling_ = true;
  process_->kill();
  process_->waitForFinished(5000);
}

void SimulationRunner::on_finished(int exit_code, QProcess::ExitStatus status) {
  if (cancelling_) {
    emit failed("cancelled after " + QString::number(elapsed_s(), 'f', 1) + " s");
    return;
  }
  if (status != QProcess::NormalExit || exit_code != 0) {
    QString why = stderr_.trimmed();
    if (why.isEmpty()) why = "no message";
    emit failed(QString("strata simulate %1 (exit code %2): %3")
                    .arg(status == QProcess::NormalExit ? "failed" : "crashed")
                    .arg(exit_code)
                    .arg(why));
    return;
  }
  emit finished(dir_->filePath("report.json"), dir_->filePath("trace.json"));
}

}  // namespace strata::gui
