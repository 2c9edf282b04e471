// CUDA LayerNorm, forward and backward. One warp per row for the row-wise work (forward; dx);
// dgamma/dbeta reduce over rows with one thread per column and a fixed-order shared-memory sum,
// so results are deterministic (no atomics). CPU reference: kernels/cpu/ops_cpu.cpp. The tensors
// are fp32 or bf16 (T; the per-row mean and rstd always fp32), the arithmetic fp32 (dtype.cuh).
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/ops_cuda.hpp"

namespace strata::kernels::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // block (32, 8): warp y handles row blockIdx.x * 8 + y
constexpr int kParamRows = 32;    // block (32, 32) for dgamma/dbeta: 32 columns x 32 row lanes

__device__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename T>
__global__ void layer_norm_forward_kernel(T* __restrict__ y,                // (N, C)
                                          float* __restrict__ mean,         // (N)
                                          float* __restrict__ rstd,         // (N)
                                          const T* __restrict__ x,          // (N, C)
                                          const T* __restrict__ gamma,      // (C)
                                          const T* __restrict__ beta,       // (C)
                                          std::int64_t n, int c, float eps) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= n) return;           // uniform across the warp: a warp shares threadIdx.y
  const T* xr = x + row * c;  // (C)
  T* yr = y + row * c;        // (C)
  float sum = 0.0f;
  for (int j = threadIdx.x; j < c; j += kWarp) sum += ld(xr[j]);
  const float m = warp_sum(sum) / c;
  float sq = 0.0f;  // second pass over the (cached) row: no cancellation
  for (int j = threadIdx.x; j < c; j += kWarp) {
    const float d = ld(xr[j]) - m;
    sq += d * d;
  }
  const float r = rsqrtf(warp_sum(sq) / c + eps);
  for (int j = threadIdx.x; j < c; j += kWarp) {
    yr[j] = st<T>((ld(xr[j]) - m) * r * ld(gamma[j]) + ld(beta[j]));
  }
  if (threadIdx.x == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

template <typename T>
__global__ void layer_norm_backward_dx_kernel(T* __restrict__ dx,               // (N, C)
                                              const T* __restrict__ dy,         // (N, C)
                                              const T* __restrict__ x,          // (N, C)
                                              const T* __restrict__ gamma,      // (C)
                                              const float* __restrict__ mean,   // (N)
                                              const float* __restrict__ rstd,   // (N)
                                              std::int64_t n, int c) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= n) return;
  const T* xr = x + row * c;    // (C)
  const T* dyr = dy + row * c;  // (C)
  T* dxr = dx + row * c;        // (C)
  const float m = mean[row];
  const float r = rstd[row];
  float sum_g = 0.0f;
  float sum_gx = 0.0f;
  for (int j = threadIdx.x; j < c; j += kWarp) {
    const float g = ld(dyr[j]) * ld(gamma[j]);
    sum_g += g;
    sum_gx += g * (ld(xr[j]) - m) * r;
  }
  const float mean_g = warp_sum(sum_g) / c;
  const float mean_gx = warp_sum(sum_gx) / c;
  for (int j = threadIdx.x; j < c; j += kWarp) {
    const float xhat = (ld(xr[j]) - m) * r;
    dxr[j] = st<T>(r * (ld(dyr[j]) * ld(gamma[j]) - mean_g - xhat * mean_gx));
  }
}

template <typename T>
__global__ void layer_norm_backward_params_kernel(T* __restrict__ dgamma,          // (C)
                                                  T* __restrict__ dbeta,           // (C)
                                                  const T* __restrict__ dy,        // (N, C)
                                                  const T* __restrict__ x,         // (N, C)
                                                  const float* __restrict__ mean,  // (N)
                                                  const float* __restrict__ rstd,  // (N)
                                                  std::int64_t n, int c, bool accumulate) {
  __shared__ float partial_dg[kParamRows][kWarp + 1];  // +1: no bank conflicts on the column read
  __shared__ float partial_db[kParamRows][kWarp + 1];
  const int col = blockIdx.x * kWarp + threadIdx.x;
  float dg = 0.0f;
  float db = 0.0f;
  if (col < c) {
    for (std::int64_t row = threadIdx.y; row < n; row += kParamRows) {
      const float d = ld(dy[row * c + col]);  // coalesced across threadIdx.x
      dg += d * (ld(x[row * c + col]) - mean[row]) * rstd[row];
      db += d;
    }
  }
  partial_dg[threadIdx.y][threadIdx.x] = dg;
  partial_db[threadIdx.y][threadIdx.x] = db;
  __syncthreads();
  if (threadIdx.y == 0 && col < c) {
    float total_dg = 0.0f;
    float total_db = 0.0f;
    for (int k = 0; k < kParamRows; ++k) {  // fixed order: deterministic
      total_dg += partial_dg[k][threadIdx.x];
      total_db += partial_db[k][threadIdx.x];
    }
    // With accumulate: old + the same total, as the CPU backend does.
    dgamma[col] = st<T>(accumulate ? ld(dgamma[col]) + total_dg : total_dg);
    dbeta[col] = st<T>(accumulate ? ld(dbeta[col]) + total_db : total_db);
  }
}

unsigned int row_blocks(std::int64_t n) {
  return static_cast<unsigned int>((n + kRowsPerBlock - 1) / kRowsPerBlock);
}

template <typename T>
void forward(cudaStream_t stream, T* y, float* mean, float* rstd, const T* x, const T* gamma,
             const T* beta, std::int64_t n, std::int64_t c, float eps) {
  const dim3 block(kWarp, kRowsPerBlock);
  layer_norm_forward_kernel<<<row_blocks(n), block, 0, stream>>>(y, mean, rstd, x, gamma, beta, n,
                                                                 static_cast<int>(c), eps);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void backward(cudaStream_t stream, T* dx, T* dgamma, T* dbeta, const T* dy, const T* x,
              const T* gamma, const float* mean, const float* rstd, std::int64_t n,
              std::int64_t c, bool accumulate) {
  const int cols = static_cast<int>(c);
  if (n > 0) {
    const dim3 block(kWarp, kRowsPerBlock);
    layer_norm_backward_dx_kernel<<<row_blocks(n), block, 0, stream>>>(dx, dy, x, gamma, mean, rstd,
                                                                       n, cols);
    STRATA_CUDA_CHECK(cudaGetLastError());
  }
  // Runs for n == 0 too: it writes the zero gradients the contract promises (with accumulate
  // there is nothing to add, and the parameter gradients are left as they are).
  if (n == 0 && accumulate) return;
  const dim3 block(kWarp, kParamRows);
  const unsigned int grid = static_cast<unsigned int>((c + kWarp - 1) / kWarp);
  layer_norm_backward_params_kernel<<<grid, block, 0, stream>>>(dgamma, dbeta, dy, x, mean, rstd, n,
                                                                cols, accumulate);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void layer_norm_forward(cudaStream_t stream, float* y, float* mean, float* rstd, const float* x,
                        const float* gamma, const float* beta, std::int64_t n, std::int64_t c,
                        float eps) {
  forward(stream, y, mean, rstd, x, gamma, beta, n, c, eps);
}

void layer_norm_forward(cudaStream_t stream, bf16* y, float* mean, float* rstd, const bf16* x,
                        const bf16* gamma, const bf16* beta, std::int64_t n, std::int64_t c,
                        float eps) {
  forward(stream, dev(y), mean, rstd, dev(x), dev(gamma), dev(beta), n, c, eps);
}

void layer_norm_backward(cudaStream_t stream, float* dx, float* dgamma, float* dbeta,
                         const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* rstd, std::int64_t n, std::int64_t c, bool accumulate) {
  backward(stream, dx, dgamma, dbeta, dy, x, gamma, mean, rstd, n, c, accumulate);
}

void layer_norm_backward(cudaStream_t stream, bf16* dx, bf16* dgamma, bf16* dbeta, const bf16* dy,
                         const bf16* x, const bf16* gamma, const float* mean, const float* rstd,
                         std::int64_t n, std::int64_t c, bool accumulate) {
  backward(stream, dev(dx), dev(dgamma), dev(dbeta), dev(dy), dev(x), dev(gamma), mean, rstd, n, c,
           accumulate);
}

}  // namespace strata::kernels::cuda
