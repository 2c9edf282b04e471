// CUDA token + position embedding (forward and backward) and the LM head's softmax
// cross-entropy (forward and backward), each in the CPU reference's order where it reduces
// (kernels/cpu/model_ops_cpu.cpp):
//  - the embedding's backward is a scatter-add; one thread per column walks the tokens in order
//    (row by row, position by position) and adds into that column of dwte and dwpe, so the sums
//    are the CPU's, bit for bit, with no atomics. Its parallelism is C threads: correct and
//    deterministic first, fast later (a sort by token would parallelise over rows).
//  - the cross-entropy forward runs a block per row (max, then the sum of exponentials in
//    double, then lse), and one block adds the rows' losses in a fixed order in double.
// Tokens and targets live on the device, so they are not range-checked as on the CPU: a token
// outside [0, vocab) makes its output row NaN (forward) or is skipped (backward), never an
// access outside the tables; a target outside it makes its row's loss NaN.
#include <algorithm>
#include <cfloat>
#include <cstddef>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/grid.cuh"
#include "kernels/cuda/model_ops_cuda.hpp"

namespace strata::kernels::cuda {
namespace {

using grid::kBlock;
using grid::kMaxBlocks;

unsigned int grid_for(std::int64_t n) { return grid::blocks_for(n); }

__global__ void embedding_forward_kernel(float* __restrict__ out,
                                         const std::int32_t* __restrict__ tokens,
                                         const float* __restrict__ wte,
                                         const float* __restrict__ wpe, std::int64_t b,
                                         std::int64_t t, std::int64_t c, std::int64_t vocab) {
  const std::int64_t total = b * t * c;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(blockDim.x) * gridDim.x) {
    const std::int64_t row = k / c, j = k % c, p = row % t;
    const std::int32_t tok = tokens[row];
    out[k] = tok >= 0 && tok < vocab ? wte[static_cast<std::int64_t>(tok) * c + j] + wpe[p * c + j]
                                     : __int_as_float(0x7fc00000);  // NaN
  }
}

__global__ void embedding_backward_kernel(float* __restrict__ dwte, float* __restrict__ dwpe,
                                          const float* __restrict__ dout,
                                          const std::int32_t* __restrict__ tokens, std::int64_t b,
                                          std::int64_t t, std::int64_t c, std::int64_t vocab) {
  for (std::int64_t j = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < c;
       j += static_cast<std::int64_t>(blockDim.x) * gridDim.x) {
    for (std::int64_t i = 0; i < b; ++i) {
      for (std::int64_t p = 0; p < t; ++p) {
        const std::int64_t row = i * t + p;
        const float d = dout[row * c + j];
        const std::int32_t tok = tokens[row];
        if (tok >= 0 && tok < vocab) dwte[static_cast<std::int64_t>(tok) * c + j] += d;
        dwpe[p * c + j] += d;
      }
    }
  }
}

// One block per row: lse[i] and the row's loss term (lse - logit of the target) into `terms`.
__global__ void cross_entropy_rows_kernel(float* __restrict__ lse, double* __restrict__ terms,
                                          const float* __restrict__ logits,
                                          const std::int32_t* __restrict__ targets, std::int64_t n,
                                          std::int64_t vocab) {
  __shared__ float max_shared[kBlock];
  __shared__ double sum_shared[kBlock];
  for (std::int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const float* row = logits + i * vocab;
    const grid::RowStats st = grid::block_row_stats(row, vocab, max_shared, sum_shared);
    if (threadIdx.x == 0) {
      const double row_lse = static_cast<double>(st.max) + log(st.sum_exp);
      lse[i] = static_cast<float>(row_lse);
      const std::int32_t target = targets[i];
      terms[i] = target >= 0 && target < vocab ? row_lse - static_cast<double>(row[target])
                                               : __longlong_as_double(0x7ff8000000000000LL);
    }
  }
}

// One block adds the n terms in a fixed order and writes their mean.
__global__ void mean_kernel(float* __restrict__ loss, const double* __restrict__ terms,
                            std::int64_t n) {
  __shared__ double sum_shared[kBlock];
  double s = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += kBlock) s += terms[i];
  s = grid::block_sum(s, sum_shared);
  if (threadIdx.x == 0) *loss = n > 0 ? static_cast<float>(s / static_cast<double>(n)) : 0.0f;
}

__global__ void cross_entropy_backward_kernel(float* __restrict__ dlogits,
                                              const float* __restrict__ logits,
                                              const float* __restrict__ lse,
                                              const std::int32_t* __restrict__ targets,
                                              std::int64_t n, std::int64_t vocab, float scale) {
  const std::int64_t total = n * vocab;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(blockDim.x) * gridDim.x) {
    const std::int64_t i = k / vocab, j = k % vocab;
    const float p = __fmul_rn(scale, expf(logits[k] - lse[i]));
    dlogits[k] = j == targets[i] ? p - scale : p;
  }
}

}  // namespace

void embedding_forward(cudaStream_t stream, float* out, const std::int32_t* tokens,
                       const float* wte, const float* wpe, std::int64_t b, std::int64_t t,
                       std::int64_t c, std::int64_t vocab) {
  if (b * t == 0) return;
  embedding_forward_kernel<<<grid_for(b * t * c), kBlock, 0, stream>>>(out, tokens, wte, wpe, b, t,
                                                                       c, vocab);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void embedding_backward(cudaStream_t stream, float* dwte, float* dwpe, const float* dout,
                        const std::int32_t* tokens, std::int64_t b, std::int64_t t, std::int64_t c,
                        std::int64_t vocab) {
  STRATA_CUDA_CHECK(cudaMemsetAsync(dwte, 0, sizeof(float) * vocab * c, stream));
  if (t > 0) STRATA_CUDA_CHECK(cudaMemsetAsync(dwpe, 0, sizeof(float) * t * c, stream));
  if (b * t == 0) return;
  embedding_backward_kernel<<<grid_for(c), kBlock, 0, stream>>>(dwte, dwpe, dout, tokens, b, t, c,
                                                                vocab);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void cross_entropy_forward(cudaStream_t stream, float* loss, float* lse, const float* logits,
                           const std::int32_t* targets, std::int64_t n, std::int64_t vocab) {
  // The rows' loss terms, in double: a stream-ordered temporary until the device arena
  // (sized from the Plan) provides the scratch.
  double* terms = nullptr;
  STRATA_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&terms),
                                    sizeof(double) * static_cast<std::size_t>(n > 0 ? n : 1),
                                    stream));
  if (n > 0) {
    const unsigned int grid = static_cast<unsigned int>(std::min<std::int64_t>(n, kMaxBlocks));
    cross_entropy_rows_kernel<<<grid, kBlock, 0, stream>>>(lse, terms, logits, targets, n, vocab);
    STRATA_CUDA_CHECK(cudaGetLastError());
  }
  mean_kernel<<<1, kBlock, 0, stream>>>(loss, terms, n);
  STRATA_CUDA_CHECK(cudaGetLastError());
  STRATA_CUDA_CHECK(cudaFreeAsync(terms, stream));
}

void cross_entropy_backward(cudaStream_t stream, float* dlogits, const float* logits,
                            const float* lse, const std::int32_t* targets, std::int64_t n,
                            std::int64_t vocab, float dloss) {
  if (n == 0) return;
  const float scale = dloss / static_cast<float>(n);
  cross_entropy_backward_kernel<<<grid_for(n * vocab), kBlock, 0, stream>>>(
      dlogits, logits, lse, targets, n, vocab, scale);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strata::kernels::cuda
