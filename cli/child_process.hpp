// One SimGrid engine per process (DESIGN.md "Processes"): a simulation whose result is a few
// numbers runs in a forked child, so that a command can simulate several Plans.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace strata::cli {

// Runs `f` in a forked child and returns the numbers it returned (through a pipe). Call it
// before this process starts its own SimGrid engine. The child prints an exception's message
// to stderr; then, or when the child dies, RuntimeFailure("<what> failed").
std::vector<double> numbers_in_child(const std::string& what,
                                     const std::function<std::vector<double>()>& f);

}  // namespace strata::cli
