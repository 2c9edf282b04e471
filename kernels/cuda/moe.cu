// CUDA versions of the MoE ops (moe_ops.hpp): simple, deterministic kernels, first correct, not
// yet fast. The router, the combine and the permutation's backward run the CPU's row
// arithmetic (kernels/detail/moe_rows.hpp), one thread per row or element. The permutation is
// a pass ranking each choice for the capacity (one thread per choice, O((N k)^2) comparisons),
// a single-block counting pass (one thread per expert walks the choices in order: counts, then
// the offsets, then the rows) and a gather, one thread per element. Per-expert counts and
// segment offsets never leave the device. The grouped GEMMs are one thread per output element,
// a dot product in fp32 in index order (no tiling, no tensor cores); fine for tests and small
// models, a cuBLAS grouped GEMM (or CUTLASS) is the fast path to come. No float atomics: every
// result is bit-for-bit repeatable; against the CPU they differ by exp rounding, fused
// multiply-adds and the GEMMs' summation order (tolerances in cross_backend_test.cpp).
// Scratch is stream-ordered (cudaMallocAsync), as the cross-entropy's.
#include <algorithm>
#include <cstddef>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/grid.cuh"
#include "kernels/cuda/moe_cuda.hpp"
#include "kernels/detail/moe_rows.hpp"

namespace strata::kernels::cuda {
namespace {

namespace moe = detail::moe;
using grid::first_index;
using grid::kBlock;
using grid::stride;

unsigned int grid_for(std::int64_t n) { return grid::blocks_for(n); }

// A stream-ordered device array of `count` T (at least one element), freed on the stream.
template <typename T>
class Scratch {
 public:
  Scratch(cudaStream_t stream, std::int64_t count) : stream_(stream) {
    const std::size_t n = static_cast<std::size_t>(std::max<std::int64_t>(count, 1));
    STRATA_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), sizeof(T) * n, stream));
  }
  ~Scratch() { (void)cudaFreeAsync(ptr_, stream_); }  // a destructor does not throw
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* get() const { return ptr_; }

 private:
  cudaStream_t stream_;
  T* ptr_ = nullptr;
};

void check_launch() { STRATA_CUDA_CHECK(cudaGetLastError()); }

// --- Router ----------------------------------------------------------------------------------

__global__ void router_forward_kernel(float* __restrict__ probs, std::int32_t* __restrict__ idx,
                                      float* __restrict__ w, const float* __restrict__ logits,
                                      std::int64_t n, std::int64_t e, std::int64_t k,
                                      bool normalize) {
  for (std::int64_t t = first_index(); t < n; t += stride()) {
    moe::router_row_forward(probs + t * e, idx + t * k, w + t * k, logits + t * e, e, k, normalize);
  }
}

// counts[j] = the choices naming expert j (one thread per expert, the choices in order).
__global__ void expert_counts_kernel(std::int32_t* __restrict__ counts,
                                     const std::int32_t* __restrict__ idx, std::int64_t nk,
                                     std::int64_t e) {
  for (std::int64_t j = first_index(); j < e; j += stride()) {
    std::int32_t count = 0;
    for (std::int64_t i = 0; i < nk; ++i) count += idx[i] == j ? 1 : 0;
    counts[j] = count;
  }
}

__global__ void router_backward_kernel(float* __restrict__ dlogits, const float* __restrict__ g,
                                       const float* __restrict__ probs,
                                       const std::int32_t* __restrict__ idx, std::int64_t n,
                                       std::int64_t e, std::int64_t k, bool normalize,
                                       const std::int32_t* __restrict__ counts, double factor) {
  for (std::int64_t t = first_index(); t < n; t += stride()) {
    moe::router_row_backward(dlogits + t * e, g + t * k, probs + t * e, idx + t * k, e, k,
                             normalize, counts, factor);
  }
}

// One block: each expert's count_j * sum_t probs[t, j] into terms (threads over experts), then
// thread 0 adds them in expert order, as the CPU does, and adds factor * sum into *loss.
__global__ void aux_loss_kernel(double* __restrict__ loss, double* __restrict__ terms,
                                const float* __restrict__ probs,
                                const std::int32_t* __restrict__ idx, std::int64_t n,
                                std::int64_t e, std::int64_t k, double factor) {
  for (std::int64_t j = threadIdx.x; j < e; j += blockDim.x) {
    std::int64_t count = 0;
    for (std::int64_t i = 0; i < n * k; ++i) count += idx[i] == j ? 1 : 0;
    double column = 0.0;
    for (std::int64_t t = 0; t < n; ++t) column += probs[t * e + j];
    terms[j] = static_cast<double>(count) * column;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double sum = 0.0;
    for (std::int64_t j = 0; j < e; ++j) sum += terms[j];
    *loss += factor * sum;
  }
}

// --- Permutation -----------------------------------------------------------------------------

// keep[i] = choice i is kept: its expert is valid and (capacity == 0, or fewer than `capacity`
// choices of the same expert rank before it by weight).
__global__ void keep_kernel(std::int32_t* __restrict__ keep, const std::int32_t* __restrict__ idx,
                            const float* __restrict__ w, std::int64_t nk, std::int64_t e,
                            std::int64_t capacity) {
  for (std::int64_t i = first_index(); i < nk; i += stride()) {
    const std::int32_t expert = idx[i];
    bool kept = moe::valid_expert(expert, e);
    if (kept && capacity > 0) {
      std::int64_t rank = 0;
      for (std::int64_t j = 0; j < nk && rank < capacity; ++j) {
        if (idx[j] == expert && moe::ranks_before(w[j], j, w[i], i)) ++rank;
      }
      kept = rank < capacity;
    }
    keep[i] = kept ? 1 : 0;
  }
}

// One block: counts per expert, their offsets (thread 0), then each expert's rows in choice
// order: row_of[i] (pre-set to -1) and src[row] = the token. starts[e] = the rows kept.
__global__ void assign_rows_kernel(std::int32_t* __restrict__ row_of,
                                   std::int32_t* __restrict__ counts,
                                   std::int32_t* __restrict__ src,
                                   std::int64_t* __restrict__ starts,
                                   const std::int32_t* __restrict__ keep,
                                   const std::int32_t* __restrict__ idx, std::int64_t nk,
                                   std::int64_t e, std::int64_t k) {
  for (std::int64_t j = threadIdx.x; j < e; j += blockDim.x) {
    std::int32_t count = 0;
    for (std::int64_t i = 0; i < nk; ++i) count += keep[i] != 0 && idx[i] == j ? 1 : 0;
    counts[j] = count;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    starts[0] = 0;
    for (std::int64_t j = 0; j < e; ++j) starts[j + 1] = starts[j] + counts[j];
  }
  __syncthreads();
  for (std::int64_t j = threadIdx.x; j < e; j += blockDim.x) {
    std::int64_t row = starts[j];
    for (std::int64_t i = 0; i < nk; ++i) {
      if (keep[i] == 0 || idx[i] != j) continue;
      row_of[i] = static_cast<std::int32_t>(row);
      src[row] = static_cast<std::int32_t>(i / k);
      ++row;
    }
  }
}

__global__ void gather_rows_kernel(float* __restrict__ rows_out, const float* __restrict__ x,
                                   const std::int32_t* __restrict__ src,
                                   const std::int64_t* __restrict__ total, std::int64_t r_max,
                                   std::int64_t c) {
  const std::int64_t kept = *total;
  for (std::int64_t i = first_index(); i < r_max * c; i += stride()) {
    const std::int64_t row = i / c;
    rows_out[i] = row < kept ? x[static_cast<std::int64_t>(src[row]) * c + i % c] : 0.0f;
  }
}

// --- Combine ---------------------------------------------------------------------------------

__global__ void combine_kernel(float* __restrict__ out, const float* __restrict__ src,
                               const std::int32_t* __restrict__ row_of, const float* __restrict__ w,
                               std::int64_t n, std::int64_t c, std::int64_t k, std::int64_t r_max,
                               bool accumulate) {
  for (std::int64_t i = first_index(); i < n * c; i += stride()) {
    moe::combine_element(out, src, row_of, w, i / c, i % c, c, k, r_max, accumulate);
  }
}

// drows[row_of[t, s], j] = topk_w[t, s] dy[t, j] (each row referenced once at most).
__global__ void scatter_rows_kernel(float* __restrict__ drows, const float* __restrict__ dy,
                                    const std::int32_t* __restrict__ row_of,
                                    const float* __restrict__ w, std::int64_t n, std::int64_t c,
                                    std::int64_t k, std::int64_t r_max) {
  for (std::int64_t i = first_index(); i < n * k * c; i += stride()) {
    const std::int64_t slot = i / c, j = i % c;
    const std::int32_t row = row_of[slot];
    if (!moe::kept_row(row, r_max)) continue;
    drows[static_cast<std::int64_t>(row) * c + j] = w[slot] * dy[(slot / k) * c + j];
  }
}

__global__ void weight_grad_kernel(float* __restrict__ dw, const float* __restrict__ dy,
                                   const float* __restrict__ rows,
                                   const std::int32_t* __restrict__ row_of, std::int64_t n,
                                   std::int64_t c, std::int64_t k, std::int64_t r_max) {
  for (std::int64_t slot = first_index(); slot < n * k; slot += stride()) {
    dw[slot] = moe::combine_weight_grad(dy + (slot / k) * c, rows, row_of[slot], c, r_max);
  }
}

// --- Grouped GEMM ----------------------------------------------------------------------------

// starts[s] = the first row of segment s, starts[S] = the rows covered: counts below 0 taken
// as 0, the segments cut at r.
__global__ void segment_starts_kernel(std::int64_t* __restrict__ starts,
                                      const std::int32_t* __restrict__ counts,
                                      std::int64_t n_segments, std::int64_t r) {
  if (first_index() != 0) return;
  starts[0] = 0;
  for (std::int64_t s = 0; s < n_segments; ++s) {
    const std::int64_t count = counts[s] > 0 ? counts[s] : 0;
    starts[s + 1] = starts[s] + count < r ? starts[s] + count : r;
  }
}

// The segment holding `row` (row < starts[S]): the last s with starts[s] <= row.
__device__ std::int64_t segment_of(const std::int64_t* starts, std::int64_t n_segments,
                                   std::int64_t row) {
  std::int64_t lo = 0, hi = n_segments;  // starts[lo] <= row < starts[hi]
  while (hi - lo > 1) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (starts[mid] <= row) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// Both data GEMMs, one thread per element of the (R, cols) output: out[row, col] = sum over
// q < len of a[row, q] b[g, col, q] with g = (row's segment) % G, b[g, col, q] at
// b + g * b_group + col * b_col + q * b_q; rows after the segments 0. Forward: a = x, len = IN,
// cols = OUT, b = w with (b_col, b_q) = (IN, 1); backward data: a = dy, len = OUT, cols = IN,
// (b_col, b_q) = (1, IN).
__global__ void grouped_rows_kernel(float* __restrict__ result, const float* __restrict__ a,
                                    const float* __restrict__ b,
                                    const std::int64_t* __restrict__ starts,
                                    std::int64_t n_segments, std::int64_t groups, std::int64_t len,
                                    std::int64_t cols, std::int64_t b_group, std::int64_t b_col,
                                    std::int64_t b_q, std::int64_t r) {
  const std::int64_t covered = starts[n_segments];
  for (std::int64_t i = first_index(); i < r * cols; i += stride()) {
    const std::int64_t row = i / cols, col = i % cols;
    if (row >= covered) {
      result[i] = 0.0f;
      continue;
    }
    const std::int64_t g = segment_of(starts, n_segments, row) % groups;
    const float* ar = a + row * len;                  // (len)
    const float* bc = b + g * b_group + col * b_col;  // (len), stride b_q
    float acc = 0.0f;
    for (std::int64_t q = 0; q < len; ++q) acc += ar[q] * bc[q * b_q];
    result[i] = acc;
  }
}

// dw[g] (OUT, IN) = sum over segments s = g, g + G, ... of dy_s^T x_s, rows in order.
__global__ void grouped_backward_weight_kernel(float* __restrict__ dw, const float* __restrict__ dy,
                                               const float* __restrict__ x,
                                               const std::int64_t* __restrict__ starts,
                                               std::int64_t n_segments, std::int64_t groups,
                                               std::int64_t in, std::int64_t out, bool accumulate) {
  for (std::int64_t i = first_index(); i < groups * out * in; i += stride()) {
    const std::int64_t g = i / (out * in), o = (i / in) % out, q = i % in;
    float acc = 0.0f;
    for (std::int64_t s = g; s < n_segments; s += groups) {
      for (std::int64_t row = starts[s]; row < starts[s + 1]; ++row) {
        acc += dy[row * out + o] * x[row * in + q];
      }
    }
    dw[i] = accumulate ? dw[i] + acc : acc;
  }
}

void launch_segment_starts(cudaStream_t stream, std::int64_t* starts, const std::int32_t* counts,
                           std::int64_t n_segments, std::int64_t r) {
  segment_starts_kernel<<<1, 1, 0, stream>>>(starts, counts, n_segments, r);
  check_launch();
}

// grouped_rows_kernel over (R, cols) with w's groups of cols * len floats, its segment starts
// computed on the device first.
void launch_grouped_rows(cudaStream_t stream, float* result, const float* a, const float* w,
                         const std::int32_t* counts, std::int64_t n_segments, std::int64_t groups,
                         std::int64_t len, std::int64_t cols, std::int64_t w_col, std::int64_t w_q,
                         std::int64_t r) {
  Scratch<std::int64_t> starts(stream, n_segments + 1);
  launch_segment_starts(stream, starts.get(), counts, n_segments, r);
  grouped_rows_kernel<<<grid_for(r * cols), kBlock, 0, stream>>>(
      result, a, w, starts.get(), n_segments, groups, len, cols, cols * len, w_col, w_q, r);
  check_launch();
}

}  // namespace

void moe_router_forward(cudaStream_t stream, float* probs, std::int32_t* topk_idx, float* topk_w,
                        const float* logits, std::int64_t n, std::int64_t e, std::int64_t k,
                        bool normalize) {
  router_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(probs, topk_idx, topk_w, logits, n, e,
                                                            k, normalize);
  check_launch();
}

void moe_router_backward(cudaStream_t stream, float* dlogits, const float* dtopk_w,
                         const float* probs, const std::int32_t* topk_idx, std::int64_t n,
                         std::int64_t e, std::int64_t k, bool normalize, float aux_coef,
                         float aux_scale) {
  const double factor = moe::aux_factor(n, e, k, aux_coef, aux_scale);
  Scratch<std::int32_t> counts(stream, factor != 0.0 ? e : 0);
  if (factor != 0.0) {
    expert_counts_kernel<<<grid_for(e), kBlock, 0, stream>>>(counts.get(), topk_idx, n * k, e);
    check_launch();
  }
  router_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(
      dlogits, dtopk_w, probs, topk_idx, n, e, k, normalize, factor != 0.0 ? counts.get() : nullptr,
      factor);
  check_launch();
}

void moe_aux_loss_forward(cudaStream_t stream, double* loss, const float* probs,
                          const std::int32_t* topk_idx, std::int64_t n, std::int64_t e,
                          std::int64_t k, float aux_coef, float aux_scale) {
  const double factor = moe::aux_factor(n, e, k, aux_coef, aux_scale);
  if (factor == 0.0) return;
  Scratch<double> terms(stream, e);
  aux_loss_kernel<<<1, kBlock, 0, stream>>>(loss, terms.get(), probs, topk_idx, n, e, k, factor);
  check_launch();
}

void moe_permute_forward(cudaStream_t stream, float* rows_out, std::int32_t* row_of,
                         std::int32_t* counts, const float* x, const std::int32_t* topk_idx,
                         const float* topk_w, std::int64_t n, std::int64_t c, std::int64_t e,
                         std::int64_t k, std::int64_t r_max, std::int64_t capacity) {
  const std::int64_t nk = n * k;
  Scratch<std::int32_t> keep(stream, nk);
  Scratch<std::int32_t> src(stream, r_max);
  Scratch<std::int64_t> starts(stream, e + 1);
  if (nk > 0) {
    // Every byte 0xff: -1 in int32, the value of a dropped choice.
    STRATA_CUDA_CHECK(cudaMemsetAsync(row_of, 0xff, sizeof(std::int32_t) * nk, stream));
    keep_kernel<<<grid_for(nk), kBlock, 0, stream>>>(keep.get(), topk_idx, topk_w, nk, e, capacity);
    check_launch();
  }
  assign_rows_kernel<<<1, kBlock, 0, stream>>>(row_of, counts, src.get(), starts.get(), keep.get(),
                                               topk_idx, nk, e, k);
  check_launch();
  if (r_max > 0) {
    gather_rows_kernel<<<grid_for(r_max * c), kBlock, 0, stream>>>(rows_out, x, src.get(),
                                                                   starts.get() + e, r_max, c);
    check_launch();
  }
}

void moe_combine(cudaStream_t stream, float* out, const float* src, const std::int32_t* row_of,
                 const float* w, std::int64_t n, std::int64_t c, std::int64_t k, std::int64_t r_max,
                 bool accumulate) {
  combine_kernel<<<grid_for(n * c), kBlock, 0, stream>>>(out, src, row_of, w, n, c, k, r_max,
                                                         accumulate);
  check_launch();
}

void moe_unpermute_backward(cudaStream_t stream, float* drows, float* dtopk_w, const float* dy,
                            const float* rows, const std::int32_t* row_of, const float* topk_w,
                            std::int64_t n, std::int64_t c, std::int64_t k, std::int64_t r_max) {
  if (r_max > 0) {
    STRATA_CUDA_CHECK(cudaMemsetAsync(drows, 0, sizeof(float) * r_max * c, stream));
  }
  if (n == 0) return;
  if (r_max > 0) {
    scatter_rows_kernel<<<grid_for(n * k * c), kBlock, 0, stream>>>(drows, dy, row_of, topk_w, n, c,
                                                                    k, r_max);
    check_launch();
  }
  weight_grad_kernel<<<grid_for(n * k), kBlock, 0, stream>>>(dtopk_w, dy, rows, row_of, n, c, k,
                                                             r_max);
  check_launch();
}

void grouped_linear_forward(cudaStream_t stream, float* y, const float* x, const float* w,
                            const std::int32_t* counts, std::int64_t n_segments,
                            std::int64_t groups, std::int64_t in, std::int64_t out,
                            std::int64_t r) {
  launch_grouped_rows(stream, y, x, w, counts, n_segments, groups, in, out, in, 1, r);
}

void grouped_linear_backward_data(cudaStream_t stream, float* dx, const float* dy, const float* w,
                                  const std::int32_t* counts, std::int64_t n_segments,
                                  std::int64_t groups, std::int64_t in, std::int64_t out,
                                  std::int64_t r) {
  launch_grouped_rows(stream, dx, dy, w, counts, n_segments, groups, out, in, 1, in, r);
}

void grouped_linear_backward_weight(cudaStream_t stream, float* dw, const float* dy, const float* x,
                                    const std::int32_t* counts, std::int64_t n_segments,
                                    std::int64_t groups, std::int64_t in, std::int64_t out,
                                    std::int64_t r, bool accumulate) {
  Scratch<std::int64_t> starts(stream, n_segments + 1);
  launch_segment_starts(stream, starts.get(), counts, n_segments, r);
  grouped_backward_weight_kernel<<<grid_for(groups * out * in), kBlock, 0, stream>>>(
      dw, dy, x, starts.get(), n_segments, groups, in, out, accumulate);
  check_launch();
}

}  // namespace strata::kernels::cuda
