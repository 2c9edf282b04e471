// Builds without the NCCL backend (STRATA_WITH_CUDA off, or nccl.h not found at configure time).
#include <stdexcept>

#include "executor/comm.hpp"

namespace strata::exec {
namespace {

constexpr const char* kNoNccl =
    "this build has no NCCL backend (it needs STRATA_WITH_CUDA=ON and nccl.h at configure "
    "time; set STRATA_NCCL_INCLUDE_DIR to the folder of nccl.h)";

[[noreturn]] void no_nccl() { throw std::runtime_error(kNoNccl); }

}  // namespace

bool built_with_nccl() { return false; }
std::string nccl_unavailable_reason() { return kNoNccl; }
std::unique_ptr<Comm> make_nccl_comm(Comm&, const NcclOptions&) { no_nccl(); }
std::unique_ptr<Comm> make_nccl_comm(const std::string&, int, int, const NcclOptions&) {
  no_nccl();
}

}  // namespace strata::exec
