// The SIGINT/SIGTERM handling of the strata commands; see interrupt.hpp. A waiter thread takes
// the signals; what it reads is published through atomics (the run's line through a double
// buffer and its index), and it formats the line by hand into a fixed buffer.
#include "cli/interrupt.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <thread>

namespace strata::cli {

namespace {

constexpr int kSlots = 64;
constexpr std::size_t kPathBytes = 4096;

const char* g_command = "strata";
std::atomic<bool> g_quiet{false};
std::atomic<const char*> g_phase{"starting"};
// The run's progress: two line buffers, the handler reads the one g_progress_index names.
char g_progress[2][kPathBytes];
std::atomic<int> g_progress_index{-1};
// Temporary files to remove: a slot is in use when its flag is 1.
char g_temporaries[kSlots][kPathBytes];
std::atomic<bool> g_in_use[kSlots];

void put(char* out, std::size_t& at, std::size_t cap, const char* text) {
  while (*text != '\0' && at + 1 < cap) out[at++] = *text++;
  out[at] = '\0';
}

void put_int(char* out, std::size_t& at, std::size_t cap, long long n) {
  char digits[24];
  int len = 0;
  const bool negative = n < 0;
  unsigned long long u =
      negative ? 0ULL - static_cast<unsigned long long>(n) : static_cast<unsigned long long>(n);
  do {
    digits[len++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u > 0);
  if (negative) put(out, at, cap, "-");
  while (len > 0 && at + 1 < cap) out[at++] = digits[--len];
  out[at] = '\0';
}

// What a signal does: remove the temporaries, print the line, exit.
[[noreturn]] void on_interrupt(int sig) {
  for (int i = 0; i < kSlots; ++i) {
    if (g_in_use[i]) ::unlink(g_temporaries[i]);
  }
  if (!g_quiet) {
    char line[2 * kPathBytes];
    std::size_t at = 0;
    put(line, at, sizeof line, "strata ");
    put(line, at, sizeof line, g_command);
    put(line, at, sizeof line,
        sig == SIGINT ? ": interrupted (SIGINT) " : ": interrupted (SIGTERM) ");
    const int progress = g_progress_index;
    if (progress >= 0) {
      put(line, at, sizeof line, g_progress[progress]);
    } else {
      put(line, at, sizeof line, "while ");
      put(line, at, sizeof line, g_phase);
      put(line, at, sizeof line, "; no output was written");
    }
    put(line, at, sizeof line, "\n");
    [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, line, at);
  }
  ::_exit(128 + sig);
}

}  // namespace

void install_interrupt_handler(const char* command, bool quiet) {
  g_command = command;
  g_quiet = quiet;
  // The signals are blocked in this thread, and so in every thread started after it (MPI's,
  // SimGrid's), and one waiter thread takes them with sigwait: a library that installs its own
  // handler later (SimGrid does for SIGINT) does not take them away.
  static sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::thread([] {
    int sig = 0;
    while (sigwait(&signals, &sig) != 0) {
    }
    on_interrupt(sig);
  }).detach();
}

void set_interrupt_quiet(bool quiet) { g_quiet = quiet; }

void set_interrupt_phase(const char* phase) {
  g_phase = phase;
  g_progress_index = -1;
}

void set_interrupt_step(int step, int steps, const std::string& latest) {
  const int next = g_progress_index == 0 ? 1 : 0;
  char* out = g_progress[next];
  std::size_t at = 0;
  put(out, at, kPathBytes, "during step ");
  put_int(out, at, kPathBytes, step);
  put(out, at, kPathBytes, " of ");
  put_int(out, at, kPathBytes, steps);
  put(out, at, kPathBytes, "; ");
  put(out, at, kPathBytes, latest.c_str());
  g_progress_index = next;
}

int remember_temporary(const std::string& path) {
  if (path.size() >= kPathBytes) return -1;
  for (int i = 0; i < kSlots; ++i) {
    if (!g_in_use[i]) {
      std::memcpy(g_temporaries[i], path.c_str(), path.size() + 1);
      g_in_use[i] = true;
      return i;
    }
  }
  return -1;
}

void forget_temporary(int slot) {
  if (slot >= 0 && slot < kSlots) g_in_use[slot] = false;
}

}  // namespace strata::cli
