// One fuzz target per parser (tests/fuzz/README.md). A target feeds its bytes to a parser and
// accepts two outcomes only: success, or a ConfigError (a clear message for bad input). Any
// other exception escapes and fails the run, as do crashes and sanitizer reports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.hpp"

namespace strata::fuzz {

template <class Parse>
int run_one(const std::uint8_t* data, std::size_t size, Parse parse) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    parse(text);
  } catch (const ConfigError&) {
    // The one accepted failure.
  }
  return 0;
}

}  // namespace strata::fuzz
