// Errors shared by every Strata library: ConfigError for bad input, STRATA_CHECK for invariants.
// Library code throws; only main() chooses an exit code.
#pragma once

#include <stdexcept>
#include <string>

namespace strata {

// Bad input from a user: a spec, a CLI flag, a file. The message names the field, the value and
// the rule broken, e.g. "strategy.tp = 3: num_attention_heads (32) must be divisible by tp".
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(const std::string& message) : std::runtime_error(message) {}
};

// The command line is malformed: an unknown option, a missing required option or value, a stray
// argument. The CLI exits 2 (a ConfigError otherwise: it still names the flag).
class UsageError : public ConfigError {
 public:
  explicit UsageError(const std::string& message) : ConfigError(message) {}
};

// The inputs are valid but the strategy does not fit in device memory; the message carries the
// per-rank numbers. The CLI exits 3.
class DoesNotFitError : public ConfigError {
 public:
  explicit DoesNotFitError(const std::string& message) : ConfigError(message) {}
};

// Valid input, but the work failed while running: a rank died or stopped answering, a child
// process failed, an output could not be written. The CLI exits 4. (Any other exception is a
// bug in Strata: the CLI calls it an internal error and exits 70.)
class RuntimeFailure : public std::runtime_error {
 public:
  explicit RuntimeFailure(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
[[noreturn]] void check_failed(const char* expr, const char* file, int line, const std::string& msg);
}  // namespace detail

}  // namespace strata

// Always-on invariant check (not for user input: use ConfigError). Prints the expression,
// file:line and message, then aborts. The condition is evaluated exactly once.
#define STRATA_CHECK(cond, msg)                                          \
  do {                                                                   \
    if (!(cond)) ::strata::detail::check_failed(#cond, __FILE__, __LINE__, (msg)); \
  } while (0)
