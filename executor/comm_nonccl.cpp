// Builds without the NCCL backend (STRATA_WITH_CUDA off, or nccl.h not found at configure time).
#include <stdexcept>

#include "executor/comm.hpp"

namespace strata::exec {
namespace {

[[noreturn]] void no_nccl() {
  throw std::runtime_error(
      "this build has no NCCL backend (it needs STRATA_WITH_CUDA=ON and nccl.h at configure "
      "time; set STRATA_NCCL_INCLUDE_DIR to the folder of nccl.h)");
}

}  // namespace

bool built_with_nccl() { return false; }
std::unique_ptr<Comm> make_nccl_comm(Comm&, const NcclOptions&) { no_nccl(); }
std::unique_ptr<Comm> make_nccl_comm(const std::string&, int, int, const NcclOptions&) {
  no_nccl();
}

}  // namespace strata::exec
