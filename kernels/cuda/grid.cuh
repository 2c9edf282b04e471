// Internal, for the .cu files: grid-stride launch geometry and fixed-order block reductions.
// Every kernel of elementwise.cu, parallel_ops.cu and embedding_loss.cu runs kBlock threads per
// block over at most kMaxBlocks blocks, looping over the rest (a grid-stride loop); reductions
// over a block are trees over shared memory in a fixed order, so results are deterministic.
#pragma once

#include <algorithm>
#include <cstdint>

namespace strata::kernels::cuda::grid {

constexpr int kBlock = 256;
constexpr std::int64_t kMaxBlocks = 65536;

// Blocks for n elements of one thread each (at least one block).
inline unsigned int blocks_for(std::int64_t n) {
  return static_cast<unsigned int>(
      std::max<std::int64_t>(1, std::min((n + kBlock - 1) / kBlock, kMaxBlocks)));
}

__device__ inline std::int64_t first_index() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ inline std::int64_t stride() {
  return static_cast<std::int64_t>(blockDim.x) * gridDim.x;
}

// The maximum / sum of one value per thread of a kBlock-thread block, returned to every thread;
// `shared` holds kBlock entries.
__device__ inline float block_max(float v, float* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = kBlock / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) shared[threadIdx.x] = fmaxf(shared[threadIdx.x], shared[threadIdx.x + s]);
    __syncthreads();
  }
  const float r = shared[0];
  __syncthreads();
  return r;
}

__device__ inline double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = kBlock / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  const double r = shared[0];
  __syncthreads();
  return r;
}

// A row's softmax statistics over a kBlock-thread block: its maximum, and the sum of
// exp(x - max) in double (as the CPU's softmax and cross-entropy sum them).
struct RowStats {
  float max;
  double sum_exp;
};
__device__ inline RowStats block_row_stats(const float* row, std::int64_t cols, float* max_shared,
                                           double* sum_shared) {
  float m = -3.402823466e38f;  // -FLT_MAX
  for (std::int64_t v = threadIdx.x; v < cols; v += kBlock) m = fmaxf(m, row[v]);
  m = block_max(m, max_shared);
  double s = 0.0;
  for (std::int64_t v = threadIdx.x; v < cols; v += kBlock)
    s += exp(static_cast<double>(row[v] - m));
  return {m, block_sum(s, sum_shared)};
}

}  // namespace strata::kernels::cuda::grid
