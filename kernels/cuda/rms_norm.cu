// CUDA RMSNorm, forward and backward, laid out as layer_norm.cu: one warp per row for the
// row-wise work, the row sums in double as the CPU reference does (kernels/cpu/model_ops_cpu.cpp);
// dweight reduces over rows with one thread per column and a fixed-order shared-memory sum, so
// results are deterministic (no atomics).
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/model_ops_cuda.hpp"

namespace strata::kernels::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // block (32, 8): warp y handles row blockIdx.x * 8 + y
constexpr int kParamRows = 32;    // block (32, 32) for dweight: 32 columns x 32 row lanes

__device__ double warp_sum(double v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

__global__ void rms_norm_forward_kernel(float* __restrict__ y,             // (N, C)
                                        float* __restrict__ rstd,          // (N)
                                        const float* __restrict__ x,       // (N, C)
                                        const float* __restrict__ weight,  // (C)
                                        std::int64_t n, int c, float eps) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= n) return;  // uniform across the warp
  const float* xr = x + row * c;
  float* yr = y + row * c;
  double sq = 0.0;
  for (int j = threadIdx.x; j < c; j += kWarp) sq += static_cast<double>(xr[j]) * xr[j];
  const float r = static_cast<float>(1.0 / sqrt(warp_sum(sq) / c + static_cast<double>(eps)));
  for (int j = threadIdx.x; j < c; j += kWarp) yr[j] = __fmul_rn(__fmul_rn(xr[j], r), weight[j]);
  if (threadIdx.x == 0) rstd[row] = r;
}

__global__ void rms_norm_backward_dx_kernel(float* __restrict__ dx,            // (N, C)
                                            const float* __restrict__ dy,      // (N, C)
                                            const float* __restrict__ x,       // (N, C)
                                            const float* __restrict__ weight,  // (C)
                                            const float* __restrict__ rstd,    // (N)
                                            std::int64_t n, int c) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= n) return;
  const float* xr = x + row * c;
  const float* dyr = dy + row * c;
  float* dxr = dx + row * c;
  const float r = rstd[row];
  double sum = 0.0;
  for (int j = threadIdx.x; j < c; j += kWarp) {
    sum += static_cast<double>(__fmul_rn(dyr[j], weight[j])) * __fmul_rn(xr[j], r);
  }
  const float mean_g_xhat = static_cast<float>(warp_sum(sum) / c);
  for (int j = threadIdx.x; j < c; j += kWarp) {
    const float xhat = __fmul_rn(xr[j], r);
    dxr[j] = __fmul_rn(r, __fadd_rn(__fmul_rn(dyr[j], weight[j]), -__fmul_rn(xhat, mean_g_xhat)));
  }
}

__global__ void rms_norm_backward_weight_kernel(float* __restrict__ dweight,     // (C)
                                                const float* __restrict__ dy,    // (N, C)
                                                const float* __restrict__ x,     // (N, C)
                                                const float* __restrict__ rstd,  // (N)
                                                std::int64_t n, int c, bool accumulate) {
  __shared__ float partial[kParamRows][kWarp + 1];  // +1: no bank conflicts on the column read
  const int col = blockIdx.x * kWarp + threadIdx.x;
  float dw = 0.0f;
  if (col < c) {
    for (std::int64_t row = threadIdx.y; row < n; row += kParamRows) {
      dw += dy[row * c + col] * __fmul_rn(x[row * c + col], rstd[row]);
    }
  }
  partial[threadIdx.y][threadIdx.x] = dw;
  __syncthreads();
  if (threadIdx.y == 0 && col < c) {
    float total = 0.0f;
    for (int k = 0; k < kParamRows; ++k) total += partial[k][threadIdx.x];  // fixed order
    dweight[col] = accumulate ? dweight[col] + total : total;
  }
}

unsigned int row_blocks(std::int64_t n) {
  return static_cast<unsigned int>((n + kRowsPerBlock - 1) / kRowsPerBlock);
}

}  // namespace

void rms_norm_forward(cudaStream_t stream, float* y, float* rstd, const float* x,
                      const float* weight, std::int64_t n, std::int64_t c, float eps) {
  if (n == 0) return;
  const dim3 block(kWarp, kRowsPerBlock);
  rms_norm_forward_kernel<<<row_blocks(n), block, 0, stream>>>(y, rstd, x, weight, n,
                                                               static_cast<int>(c), eps);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void rms_norm_backward(cudaStream_t stream, float* dx, float* dweight, const float* dy,
                       const float* x, const float* weight, const float* rstd, std::int64_t n,
                       std::int64_t c, bool accumulate) {
  const int cols = static_cast<int>(c);
  if (n > 0) {
    const dim3 block(kWarp, kRowsPerBlock);
    rms_norm_backward_dx_kernel<<<row_blocks(n), block, 0, stream>>>(dx, dy, x, weight, rstd, n,
                                                                     cols);
    STRATA_CUDA_CHECK(cudaGetLastError());
  }
  // Runs for n == 0 too: it writes the zero gradient the contract promises (with accumulate
  // there is nothing to add).
  if (n == 0 && accumulate) return;
  const dim3 block(kWarp, kParamRows);
  const unsigned int grid = static_cast<unsigned int>((c + kWarp - 1) / kWarp);
  rms_norm_backward_weight_kernel<<<grid, block, 0, stream>>>(dweight, dy, x, rstd, n, cols,
                                                              accumulate);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strata::kernels::cuda
