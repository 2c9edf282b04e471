// A progress line on stderr for long commands (lowering, simulating, writing the outputs):
// shown only when stderr is a terminal and --quiet is not given, rewritten in place ("\r"), at
// most ten times a second, and cleared when the work ends, so that what the command prints
// afterwards (and any log of stderr) is the same with or without it.
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace strata::cli {

class Progress {
 public:
  // On stderr, when it is a terminal and not `quiet`.
  Progress(std::string command, bool quiet);
  // On `out`, shown when `shown` (tests).
  Progress(std::string command, std::ostream& out, bool shown);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  bool shown() const { return shown_; }
  // "strata simulate: lowering the specs to a Plan"
  void phase(const std::string& what);
  // "strata simulate: simulating: 42% of the tasks (123,456 of 293,000)"; throttled.
  void fraction(const std::string& what, std::uint64_t done, std::uint64_t total);
  // Clears the line.
  void clear();

 private:
  void show(const std::string& line, bool force);

  std::string command_;
  std::ostream& out_;
  bool shown_;
  std::size_t width_ = 0;  // of the line shown, to clear it
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace strata::cli
