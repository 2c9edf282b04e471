// host_name(); see host.hpp.
#include "common/host.hpp"

#include <unistd.h>

#include <array>

namespace strata {

std::string host_name() {
  std::array<char, 256> buf{};
  if (gethostname(buf.data(), buf.size() - 1) != 0) return "?";
  return buf.data();
}

}  // namespace strata
