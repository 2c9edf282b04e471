// expect_config_error(): the check every spec test uses -- a ConfigError whose message names
// the field, the value and the rule.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/error.hpp"

namespace strata::strategies::testing {

// Runs `f`, expects a ConfigError whose message contains every one of `parts`.
template <typename F>
void expect_config_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    for (const auto& p : parts) {
      EXPECT_NE(message.find(p), std::string::npos) << "\"" << p << "\" not in: " << message;
    }
  }
}

}  // namespace strata::strategies::testing
