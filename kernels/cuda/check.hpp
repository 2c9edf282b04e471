// Internal: STRATA_CUDA_CHECK, the check every CUDA runtime call and kernel launch goes through.
// A failure throws std::runtime_error naming the call, the CUDA error, file:line, the current
// device, the host and (under mpirun) the rank. Library code never exits.
#pragma once

#include <cuda_runtime.h>

#include <string>

namespace strata::kernels::cuda_detail {

// The message STRATA_CUDA_CHECK throws, e.g. "cudaMalloc(&p, n) failed: cudaErrorMemoryAllocation
// (out of memory) at kernels/cuda/runtime.cpp:80 [device 0, host gpu-7, rank 3]".
std::string cuda_error_message(cudaError_t error, const char* expr, const char* file, int line);
[[noreturn]] void throw_cuda_error(cudaError_t error, const char* expr, const char* file, int line);

// This machine's host name ("unknown-host" if it cannot be read).
std::string host_name();

}  // namespace strata::kernels::cuda_detail

#define STRATA_CUDA_CHECK(expr)                                                              \
  do {                                                                                       \
    const cudaError_t strata_cuda_status_ = (expr);                                          \
    if (strata_cuda_status_ != cudaSuccess) {                                                \
      ::strata::kernels::cuda_detail::throw_cuda_error(strata_cuda_status_, #expr, __FILE__, \
                                                       __LINE__);                            \
    }                                                                                        \
  } while (0)
