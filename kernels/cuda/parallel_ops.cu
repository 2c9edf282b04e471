// CUDA versions of parallel_ops.hpp (the vocabulary-parallel embedding and cross-entropy, the
// position embedding over a slice of rows), each in the CPU reference's order where it reduces
// (kernels/cpu/parallel_ops_cpu.cpp):
//  - the scatter-adds (embedding_shard_backward, positions_backward) run one thread per column,
//    walking the rows in order: the CPU's sums, bit for bit, without atomics (parallel over C
//    only: exact first, fast later);
//  - softmax_stats runs a block per row (max, then the exponentials summed in double);
//  - cross_entropy_from_stats adds the rows' terms in one block, in a fixed order, in double.
// Tokens and targets live on the device and are not range-checked; a negative one lies outside
// every shard, as one at or beyond the vocabulary does.
#include <algorithm>
#include <cfloat>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/grid.cuh"
#include "kernels/cuda/model_ops_cuda.hpp"

namespace strata::kernels::cuda {
namespace {

using grid::first_index;
using grid::kBlock;
using grid::kMaxBlocks;

__device__ std::int64_t grid_stride() { return grid::stride(); }

unsigned int grid_for(std::int64_t n) { return grid::blocks_for(n); }

__device__ std::int64_t shard_index(std::int32_t value, std::int64_t first, std::int64_t count) {
  const std::int64_t local = static_cast<std::int64_t>(value) - first;
  return local >= 0 && local < count ? local : -1;
}

__device__ double row_lse(const float* stat) {
  return static_cast<double>(stat[0]) + log(static_cast<double>(stat[1]));
}

__global__ void embedding_shard_forward_kernel(float* __restrict__ out,
                                               const std::int32_t* __restrict__ tokens,
                                               const float* __restrict__ wte, std::int64_t first,
                                               std::int64_t rows, std::int64_t n, std::int64_t c) {
  for (std::int64_t k = first_index(); k < n * c; k += grid_stride()) {
    const std::int64_t v = shard_index(tokens[k / c], first, rows);
    out[k] = v >= 0 ? wte[v * c + k % c] : 0.0f;
  }
}

__global__ void embedding_shard_backward_kernel(float* __restrict__ dwte,
                                                const float* __restrict__ dout,
                                                const std::int32_t* __restrict__ tokens,
                                                std::int64_t first, std::int64_t rows,
                                                std::int64_t n, std::int64_t c) {
  for (std::int64_t j = first_index(); j < c; j += grid_stride()) {
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t v = shard_index(tokens[i], first, rows);
      if (v >= 0) dwte[v * c + j] += dout[i * c + j];
    }
  }
}

__global__ void add_positions_kernel(float* __restrict__ x, const float* __restrict__ wpe,
                                     std::int64_t first_row, std::int64_t rows, std::int64_t t,
                                     std::int64_t c) {
  for (std::int64_t k = first_index(); k < rows * c; k += grid_stride()) {
    x[k] += wpe[((first_row + k / c) % t) * c + k % c];
  }
}

__global__ void positions_backward_kernel(float* __restrict__ dwpe, const float* __restrict__ dx,
                                          std::int64_t first_row, std::int64_t rows, std::int64_t t,
                                          std::int64_t c) {
  for (std::int64_t j = first_index(); j < c; j += grid_stride()) {
    for (std::int64_t i = 0; i < rows; ++i) dwpe[((first_row + i) % t) * c + j] += dx[i * c + j];
  }
}

__global__ void softmax_stats_kernel(float* __restrict__ stats, const float* __restrict__ logits,
                                     const std::int32_t* __restrict__ targets, std::int64_t first,
                                     std::int64_t cols, std::int64_t n) {
  __shared__ float max_shared[kBlock];
  __shared__ double sum_shared[kBlock];
  for (std::int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const float* row = logits + i * cols;
    const grid::RowStats st = grid::block_row_stats(row, cols, max_shared, sum_shared);
    if (threadIdx.x == 0) {
      const std::int64_t target = shard_index(targets[i], first, cols);
      stats[3 * i] = st.max;
      stats[3 * i + 1] = static_cast<float>(st.sum_exp);
      stats[3 * i + 2] = target >= 0 ? row[target] : 0.0f;
    }
    __syncthreads();
  }
}

__global__ void cross_entropy_from_stats_kernel(float* __restrict__ lse,
                                                float* __restrict__ loss_sum,
                                                const float* __restrict__ stats, std::int64_t n) {
  __shared__ double sum_shared[kBlock];
  double total = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += kBlock) {
    const double l = row_lse(stats + 3 * i);
    if (lse != nullptr) lse[i] = static_cast<float>(l);
    total += l - static_cast<double>(stats[3 * i + 2]);
  }
  total = grid::block_sum(total, sum_shared);
  if (threadIdx.x == 0) *loss_sum = static_cast<float>(total);
}

__global__ void cross_entropy_shard_backward_kernel(
    float* __restrict__ dlogits, const float* __restrict__ logits, const float* __restrict__ lse,
    const float* __restrict__ stats, const std::int32_t* __restrict__ targets, std::int64_t first,
    std::int64_t cols, std::int64_t n, float scale) {
  for (std::int64_t k = first_index(); k < n * cols; k += grid_stride()) {
    const std::int64_t i = k / cols, v = k % cols;
    const float l = lse != nullptr ? lse[i] : static_cast<float>(row_lse(stats + 3 * i));
    const float d = __fmul_rn(scale, expf(logits[k] - l));
    dlogits[k] = v == shard_index(targets[i], first, cols) ? d - scale : d;
  }
}

}  // namespace

void embedding_shard_forward(cudaStream_t stream, float* out, const std::int32_t* tokens,
                             const float* wte_shard, std::int64_t first, std::int64_t rows,
                             std::int64_t n, std::int64_t c) {
  if (n == 0) return;
  embedding_shard_forward_kernel<<<grid_for(n * c), kBlock, 0, stream>>>(out, tokens, wte_shard,
                                                                         first, rows, n, c);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void embedding_shard_backward(cudaStream_t stream, float* dwte_shard, const float* dout,
                              const std::int32_t* tokens, std::int64_t first, std::int64_t rows,
                              std::int64_t n, std::int64_t c) {
  if (n == 0) return;
  embedding_shard_backward_kernel<<<grid_for(c), kBlock, 0, stream>>>(dwte_shard, dout, tokens,
                                                                      first, rows, n, c);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void add_positions(cudaStream_t stream, float* x, const float* wpe, std::int64_t first_row,
                   std::int64_t rows, std::int64_t t, std::int64_t c) {
  if (rows == 0) return;
  add_positions_kernel<<<grid_for(rows * c), kBlock, 0, stream>>>(x, wpe, first_row, rows, t, c);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void positions_backward(cudaStream_t stream, float* dwpe, const float* dx, std::int64_t first_row,
                        std::int64_t rows, std::int64_t t, std::int64_t c) {
  if (rows == 0) return;
  positions_backward_kernel<<<grid_for(c), kBlock, 0, stream>>>(dwpe, dx, first_row, rows, t, c);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void softmax_stats(cudaStream_t stream, float* stats, const float* logits,
                   const std::int32_t* targets, std::int64_t first, std::int64_t cols,
                   std::int64_t n) {
  if (n == 0) return;
  const auto grid = static_cast<unsigned int>(std::min<std::int64_t>(n, kMaxBlocks));
  softmax_stats_kernel<<<grid, kBlock, 0, stream>>>(stats, logits, targets, first, cols, n);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void cross_entropy_from_stats(cudaStream_t stream, float* lse, float* loss_sum, const float* stats,
                              std::int64_t n) {
  cross_entropy_from_stats_kernel<<<1, kBlock, 0, stream>>>(lse, loss_sum, stats, n);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void cross_entropy_shard_backward(cudaStream_t stream, float* dlogits, const float* logits,
                                  const float* lse, const float* stats, const std::int32_t* targets,
                                  std::int64_t first, std::int64_t cols, std::int64_t n,
                                  float scale) {
  if (n == 0) return;
  cross_entropy_shard_backward_kernel<<<grid_for(n * cols), kBlock, 0, stream>>>(
      dlogits, logits, lse, stats, targets, first, cols, n, scale);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strata::kernels::cuda
