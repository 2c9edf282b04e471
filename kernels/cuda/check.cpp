// STRATA_CUDA_CHECK's failure path: builds the message with device, host and rank, then throws.
#include "kernels/cuda/check.hpp"

#include <unistd.h>

#include <array>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

namespace strata::kernels::cuda_detail {
namespace {

// The rank as mpirun and common launchers export it; empty outside such launches.
std::string launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"}) {
    if (const char* value = std::getenv(name); value != nullptr && *value != '\0') return value;
  }
  return "";
}

// "/abs/path/kernels/cuda/x.cu" -> "kernels/cuda/x.cu", to keep messages short.
std::string_view short_path(std::string_view file) {
  const std::size_t pos = file.rfind("kernels/");
  return pos == std::string_view::npos ? file : file.substr(pos);
}

}  // namespace

std::string host_name() {
  std::array<char, 256> buffer{};
  if (gethostname(buffer.data(), buffer.size() - 1) != 0 || buffer[0] == '\0') {
    return "unknown-host";
  }
  return std::string(buffer.data());
}

std::string cuda_error_message(cudaError_t error, const char* expr, const char* file, int line) {
  std::string device = "?";
  int current = -1;
  if (cudaGetDevice(&current) == cudaSuccess) {
    device = std::to_string(current);
  } else {
    (void)cudaGetLastError();  // do not leave this lookup's own failure behind
  }
  std::string message = std::string(expr) + " failed: " + cudaGetErrorName(error) + " (" +
                        cudaGetErrorString(error) + ") at " + std::string(short_path(file)) + ":" +
                        std::to_string(line) + " [device " + device + ", host " + host_name();
  if (const std::string rank = launcher_rank(); !rank.empty()) message += ", rank " + rank;
  return message + "]";
}

void throw_cuda_error(cudaError_t error, const char* expr, const char* file, int line) {
  throw std::runtime_error(cuda_error_message(error, expr, file, line));
}

}  // namespace strata::kernels::cuda_detail
