// Strata's version, from the header cmake/GenerateVersion.cmake writes at every build.
#include "common/version.hpp"

#include "generated_version.hpp"

namespace strata {

const char* version() { return STRATA_VERSION_STRING; }

}  // namespace strata
