// STRATA_CHECK's failure path.
#include "common/error.hpp"

#include <cstdio>
#include <cstdlib>

namespace strata::detail {

void check_failed(const char* expr, const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "STRATA_CHECK failed: %s at %s:%d: %s\n", expr, file, line, msg.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace strata::detail
