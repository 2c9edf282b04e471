// CUDA GELU (tanh approximation), forward and backward: elementwise grid-stride loops. Evaluated
// as x * sigmoid(2u), like the CPU reference in kernels/cpu/ops_cpu.cpp (see the reason there);
// tests/kernels/ compares the two. fp32 and bf16 storage (fp32 arithmetic: dtype.cuh).
#include <algorithm>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/ops_cuda.hpp"

namespace strata::kernels::cuda {
namespace {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;
constexpr float kGeluClamp = 80.0f;  // |2u| bound: exp(80) = 5.5e34 < FLT_MAX
constexpr int kBlock = 256;
constexpr std::int64_t kMaxBlocks = 65536;  // grid-stride beyond this: plenty for any GPU

// 2u = 2 s (x + a x^3), clamped so that exp(-2u) stays finite.
__device__ float two_u_of(float x) {
  return fminf(fmaxf(2.0f * kGeluScale * (x + kGeluCubic * x * x * x), -kGeluClamp), kGeluClamp);
}

template <typename T>
__global__ void gelu_forward_kernel(T* __restrict__ y,        // (n)
                                    const T* __restrict__ x,  // (n)
                                    std::int64_t n) {
  const std::int64_t stride = static_cast<std::int64_t>(blockDim.x) * gridDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float xi = ld(x[i]);
    const float two_u = two_u_of(xi);
    y[i] = st<T>(xi / (1.0f + expf(-two_u)));
  }
}

template <typename T>
__global__ void gelu_backward_kernel(T* __restrict__ dx,        // (n)
                                     const T* __restrict__ dy,  // (n)
                                     const T* __restrict__ x,   // (n)
                                     std::int64_t n) {
  const std::int64_t stride = static_cast<std::int64_t>(blockDim.x) * gridDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float xi = ld(x[i]);
    const float e = expf(-two_u_of(xi));  // 1 - sigmoid(2u) = e * sigmoid(2u): no cancellation
    const float sig = 1.0f / (1.0f + e);
    const float local =
        sig * (1.0f + xi * (e * sig) * (2.0f * kGeluScale) * (1.0f + 3.0f * kGeluCubic * xi * xi));
    dx[i] = st<T>(ld(dy[i]) * local);
  }
}

unsigned int grid_for(std::int64_t n) {
  return static_cast<unsigned int>(std::min((n + kBlock - 1) / kBlock, kMaxBlocks));
}

}  // namespace

void gelu_forward(cudaStream_t stream, float* y, const float* x, std::int64_t n) {
  gelu_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(y, x, n);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void gelu_forward(cudaStream_t stream, bf16* y, const bf16* x, std::int64_t n) {
  gelu_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(dev(y), dev(x), n);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void gelu_backward(cudaStream_t stream, float* dx, const float* dy, const float* x,
                   std::int64_t n) {
  gelu_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(dx, dy, x, n);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void gelu_backward(cudaStream_t stream, bf16* dx, const bf16* dy, const bf16* x, std::int64_t n) {
  gelu_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(dev(dx), dev(dy), dev(x), n);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strata::kernels::cuda
