// Builds without MPI (STRATA_WITH_MPI=OFF, e.g. the GPU machine): only the local backend.
#include <stdexcept>

#include "executor/comm.hpp"
#include "executor/messenger.hpp"

namespace strata::exec {

bool built_with_mpi() { return false; }
std::unique_ptr<Comm> make_mpi_comm() {
  throw std::runtime_error("this build has no MPI backend (STRATA_WITH_MPI=OFF)");
}
std::unique_ptr<Messenger> make_mpi_messenger() {
  throw std::runtime_error("this build has no MPI backend (STRATA_WITH_MPI=OFF)");
}

}  // namespace strata::exec
