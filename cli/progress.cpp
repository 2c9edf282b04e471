// The progress line (progress.hpp).
#include "cli/progress.hpp"

#include <unistd.h>

#include <iostream>

namespace strata::cli {

Progress::Progress(std::string command, bool quiet)
    : Progress(std::move(command), std::cerr, !quiet && ::isatty(STDERR_FILENO) == 1) {}

Progress::Progress(std::string command, std::ostream& out, bool shown)
    : command_(std::move(command)), out_(out), shown_(shown) {}

Progress::~Progress() { clear(); }

void Progress::show(const std::string& text, bool force) {
  if (!shown_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  std::string line = "strata " + command_ + ": " + text;
  const std::size_t width = line.size();
  if (width < width_) line.append(width_ - width, ' ');  // cover the longer line before
  width_ = width;
  out_ << '\r' << line << std::flush;
}

void Progress::phase(const std::string& what) { show(what, true); }

void Progress::fraction(const std::string& what, std::uint64_t done, std::uint64_t total) {
  if (!shown_ || total == 0) return;
  auto grouped = [](std::uint64_t v) {
    std::string s = std::to_string(v);
    for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<std::size_t>(i), ",");
    return s;
  };
  const int percent = static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total));
  show(what + ": " + std::to_string(percent) + "% of the tasks (" + grouped(done) + " of " +
           grouped(total) + ")",
       done == total);
}

void Progress::clear() {
  if (!shown_ || width_ == 0) return;
  out_ << '\r' << std::string(width_, ' ') << '\r' << std::flush;
  width_ = 0;
}

}  // namespace strata::cli
