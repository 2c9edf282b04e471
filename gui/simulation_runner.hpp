// A simulation run from the GUI: a child `strata simulate` process (SimGrid runs one engine per
// process, so the GUI never simulates in its own), writing report.json and trace.json into a
// directory of its own. The GUI stays responsive: the child's stderr arrives as progress lines,
// cancel() kills it (and it is gone when cancel returns), and its end is a signal with the two
// files or the error the command printed.
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QProcess>
#include <QString>
#include <QStringList>
#include <QTemporaryDir>
#include <memory>

namespace strata::gui {

struct SimulationRequest {
  QString model, cluster, strategy;  // paths or bundled names, as `strata simulate` takes them
  int gpus = 0;                      // 0: every GPU of the cluster
  QString trace_ranks = "all";       // --trace-ranks
  QStringList extra;                 // more arguments, as given
};

class SimulationRunner : public QObject {
  Q_OBJECT

 public:
  // `strata` is the command line's executable.
  explicit SimulationRunner(QString strata, QObject* parent = nullptr);
  ~SimulationRunner() override;

  // Starts a run; false (and failed() with why) when one is running or the executable is missing.
  bool start(const SimulationRequest& request);
  bool running() const;
  // Kills the running child, waits until it is gone, and emits failed("cancelled").
  void cancel();
  double elapsed_s() const;
  // The arguments of the last run (after `strata`), for people and tests.
  const QStringList& arguments() const { return arguments_; }

 signals:
  void progress(const QString& line);
  void finished(const QString& report_path, const QString& trace_path);
  void failed(const QString& message);

 private:
  void on_finished(int exit_code, QProcess::ExitStatus status);

  QString strata_;
  QStringList arguments_;
  std::unique_ptr<QProcess> process_;
  std::unique_ptr<QTemporaryDir> dir_;
  QElapsedTimer clock_;
  QString stderr_;
  bool cancelling_ = false;
};

}  // namespace strata::gui
