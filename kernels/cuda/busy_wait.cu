// A one-thread kernel that spins on the GPU's global nanosecond timer: lets the host run ahead
// of the device (the bench times back-to-back kernels, not launch gaps) and lets tests observe
// that ops are asynchronous.
#include <cstdint>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/runtime.hpp"

namespace strata::kernels::cuda_detail {
namespace {

__device__ std::uint64_t global_timer_ns() {
  std::uint64_t t = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void busy_wait_kernel(std::uint64_t duration_ns) {
  const std::uint64_t start = global_timer_ns();
  while (global_timer_ns() - start < duration_ns) {
  }
}

}  // namespace

void busy_wait(void* stream, int device, std::int64_t duration_ns) {
  set_current_device(device);
  busy_wait_kernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<std::uint64_t>(duration_ns));
  STRATA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strata::kernels::cuda_detail
