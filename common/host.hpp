// The host a measured output (executor traces and run JSON) or an error message names.
#pragma once

#include <string>

namespace strata {

// gethostname(), or "?" when it fails.
std::string host_name();

}  // namespace strata
