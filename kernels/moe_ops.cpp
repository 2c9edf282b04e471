// Argument checks and backend dispatch for the ops in moe_ops.hpp. The CPU path runs inline,
// after range-checking the index and count values it reads; CUDA (kernels/cuda/moe.cu) enqueues
// on the stream and reads them on the device.
// defines: the entry points declared in moe_ops.hpp
#include "kernels/moe_ops.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cpu/moe_ops_cpu.hpp"
#include "kernels/detail/checks.hpp"

#if STRATA_HAVE_CUDA
#include "kernels/cuda/moe_cuda.hpp"
#endif

namespace strata::kernels {
namespace {

using detail::check_finite;
using detail::check_indices;
using detail::check_size;
using detail::require;
using detail::require_pointers;

// n >= 0, e >= 1, 1 <= k <= e.
void check_routing(const char* op, std::int64_t n, std::int64_t e, std::int64_t k) {
  check_size(op, "n", n, true);
  check_size(op, "e", e, false);
  check_size(op, "k", k, false);
  require(k <= e, op, "k = " + std::to_string(k) + " must be at most e = " + std::to_string(e));
  require(n * k <= std::numeric_limits<int>::max(), op,
          "n k = " + std::to_string(n * k) + " must be below 2^31");
}

void check_aux(const char* op, float aux_coef, float aux_scale) {
  check_finite(op, "aux_coef", aux_coef);
  check_finite(op, "aux_scale", aux_scale);
}

// n >= 0, c >= 1, k >= 1, r_max >= 0 for the ops that follow a permutation.
void check_rows(const char* op, std::int64_t n, std::int64_t c, std::int64_t k,
                std::int64_t r_max) {
  check_size(op, "n", n, true);
  check_size(op, "c", c, false);
  check_size(op, "k", k, false);
  check_size(op, "r_max", r_max, true);
}

// row_of values in [-1, r_max), on the CPU (where they are readable).
void check_row_of(const Stream& stream, const char* op, const std::int32_t* row_of,
                  std::int64_t count, std::int64_t r_max) {
  if (stream.backend() != Backend::kCpu) return;
  for (std::int64_t i = 0; i < count; ++i) {
    if (row_of[i] < -1 || row_of[i] >= r_max) {
      throw std::out_of_range(std::string(op) + ": row_of[" + std::to_string(i) +
                              "] = " + std::to_string(row_of[i]) +
                              " is outside [-1, r_max = " + std::to_string(r_max) + ")");
    }
  }
}

void check_grouped(const Stream& stream, const char* op, const std::int32_t* counts,
                   std::int64_t n_segments, std::int64_t groups, std::int64_t in, std::int64_t out,
                   std::int64_t r) {
  check_size(op, "n_segments", n_segments, true);
  check_size(op, "groups", groups, false);
  check_size(op, "in", in, false);
  check_size(op, "out", out, false);
  check_size(op, "r", r, true);
  require_pointers(op, n_segments, {counts});
  if (stream.backend() != Backend::kCpu) return;
  std::int64_t total = 0;
  for (std::int64_t s = 0; s < n_segments; ++s) {
    require(counts[s] >= 0, op,
            "counts[" + std::to_string(s) + "] = " + std::to_string(counts[s]) +
                " must not be negative");
    total += counts[s];
  }
  require(
      total <= r, op,
      "the counts sum to " + std::to_string(total) + " rows, more than r = " + std::to_string(r));
}

}  // namespace

// --- Router ----------------------------------------------------------------------------------

Event moe_router_forward(const Stream& stream, float* probs, std::int32_t* topk_idx, float* topk_w,
                         const float* logits, std::int64_t n, std::int64_t e, std::int64_t k,
                         bool normalize) {
  const char* op = "moe_router_forward";
  check_routing(op, n, e, k);
  require_pointers(op, n, {probs, topk_idx, topk_w, logits});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::moe_router_forward(probs, topk_idx, topk_w, logits, n, e, k, normalize);
  } else {
    STRATA_CUDA_ONLY(cuda::moe_router_forward(cuda::stream_of(stream), probs, topk_idx, topk_w,
                                              logits, n, e, k, normalize);)
  }
  return stream.record_event();
}

Event moe_router_backward(const Stream& stream, float* dlogits, const float* dtopk_w,
                          const float* probs, const std::int32_t* topk_idx, std::int64_t n,
                          std::int64_t e, std::int64_t k, bool normalize, float aux_coef,
                          float aux_scale) {
  const char* op = "moe_router_backward";
  check_routing(op, n, e, k);
  check_aux(op, aux_coef, aux_scale);
  require_pointers(op, n, {dlogits, dtopk_w, probs, topk_idx});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    check_indices(stream, op, "topk_idx", topk_idx, n * k, e, "e");
    cpu::moe_router_backward(dlogits, dtopk_w, probs, topk_idx, n, e, k, normalize, aux_coef,
                             aux_scale);
  } else {
    STRATA_CUDA_ONLY(cuda::moe_router_backward(cuda::stream_of(stream), dlogits, dtopk_w, probs,
                                               topk_idx, n, e, k, normalize, aux_coef, aux_scale);)
  }
  return stream.record_event();
}

Event moe_aux_loss_forward(const Stream& stream, double* loss, const float* probs,
                           const std::int32_t* topk_idx, std::int64_t n, std::int64_t e,
                           std::int64_t k, float aux_coef, float aux_scale) {
  const char* op = "moe_aux_loss_forward";
  check_routing(op, n, e, k);
  check_aux(op, aux_coef, aux_scale);
  require_pointers(op, 1, {loss});
  require_pointers(op, n, {probs, topk_idx});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    check_indices(stream, op, "topk_idx", topk_idx, n * k, e, "e");
    cpu::moe_aux_loss_forward(loss, probs, topk_idx, n, e, k, aux_coef, aux_scale);
  } else {
    STRATA_CUDA_ONLY(cuda::moe_aux_loss_forward(cuda::stream_of(stream), loss, probs, topk_idx, n,
                                                e, k, aux_coef, aux_scale);)
  }
  return stream.record_event();
}

// --- Permutation and combine -----------------------------------------------------------------

Event moe_permute_forward(const Stream& stream, float* rows_out, std::int32_t* row_of,
                          std::int32_t* counts, const float* x, const std::int32_t* topk_idx,
                          const float* topk_w, std::int64_t n, std::int64_t c, std::int64_t e,
                          std::int64_t k, std::int64_t r_max, std::int64_t capacity) {
  const char* op = "moe_permute_forward";
  check_routing(op, n, e, k);
  check_size(op, "c", c, false);
  check_size(op, "r_max", r_max, true);
  check_size(op, "capacity", capacity, true);
  const std::int64_t most = capacity == 0 ? n * k : std::min(n * k, e * capacity);
  require(most <= r_max, op,
          "r_max = " + std::to_string(r_max) + " rows cannot hold the " + std::to_string(most) +
              " rows the call may keep (" +
              (capacity == 0 ? "n k, dropless"
                             : "min(n k, e capacity), capacity " + std::to_string(capacity)) +
              ")");
  require_pointers(op, 1, {counts});  // written even when n == 0
  require_pointers(op, r_max, {rows_out});
  require_pointers(op, n, {row_of, x, topk_idx});
  if (capacity > 0) require_pointers(op, n, {topk_w});
  if (stream.backend() == Backend::kCpu) {
    check_indices(stream, op, "topk_idx", topk_idx, n * k, e, "e");
    cpu::moe_permute_forward(rows_out, row_of, counts, x, topk_idx, topk_w, n, c, e, k, r_max,
                             capacity);
  } else {
    STRATA_CUDA_ONLY(cuda::moe_permute_forward(cuda::stream_of(stream), rows_out, row_of, counts, x,
                                               topk_idx, topk_w, n, c, e, k, r_max, capacity);)
  }
  return stream.record_event();
}

Event moe_permute_backward(const Stream& stream, float* dx, const float* drows,
                           const std::int32_t* row_of, std::int64_t n, std::int64_t c,
                           std::int64_t k, std::int64_t r_max, bool accumulate) {
  const char* op = "moe_permute_backward";
  check_rows(op, n, c, k, r_max);
  require_pointers(op, n, {dx, row_of});
  require_pointers(op, n * r_max, {drows});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    check_row_of(stream, op, row_of, n * k, r_max);
    cpu::moe_permute_backward(dx, drows, row_of, n, c, k, r_max, accumulate);
  } else {
    STRATA_CUDA_ONLY(cuda::moe_combine(cuda::stream_of(stream), dx, drows, row_of, nullptr, n, c, k,
                                       r_max, accumulate);)
  }
  return stream.record_event();
}

Event moe_unpermute_forward(const Stream& stream, float* y, const float* rows,
                            const std::int32_t* row_of, const float* topk_w, std::int64_t n,
                            std::int64_t c, std::int64_t k, std::int64_t r_max, bool accumulate) {
  const char* op = "moe_unpermute_forward";
  check_rows(op, n, c, k, r_max);
  require_pointers(op, n, {y, row_of, topk_w});
  require_pointers(op, n * r_max, {rows});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    check_row_of(stream, op, row_of, n * k, r_max);
    cpu::moe_unpermute_forward(y, rows, row_of, topk_w, n, c, k, r_max, accumulate);
  } else {
    STRATA_CUDA_ONLY(cuda::moe_combine(cuda::stream_of(stream), y, rows, row_of, topk_w, n, c, k,
                                       r_max, accumulate);)
  }
  return stream.record_event();
}

Event moe_unpermute_backward(const Stream& stream, float* drows, float* dtopk_w, const float* dy,
                             const float* rows, const std::int32_t* row_of, const float* topk_w,
                             std::int64_t n, std::int64_t c, std::int64_t k, std::int64_t r_max) {
  const char* op = "moe_unpermute_backward";
  check_rows(op, n, c, k, r_max);
  require_pointers(op, r_max, {drows});  // written even when n == 0
  require_pointers(op, n, {dtopk_w, dy, row_of, topk_w});
  require_pointers(op, n * r_max, {rows});
  if (stream.backend() == Backend::kCpu) {
    check_row_of(stream, op, row_of, n * k, r_max);
    cpu::moe_unpermute_backward(drows, dtopk_w, dy, rows, row_of, topk_w, n, c, k, r_max);
  } else {
    STRATA_CUDA_ONLY(cuda::moe_unpermute_backward(cuda::stream_of(stream), drows, dtopk_w, dy, rows,
                                                  row_of, topk_w, n, c, k, r_max);)
  }
  return stream.record_event();
}

// --- Grouped GEMM ----------------------------------------------------------------------------

Event grouped_linear_forward(const Stream& stream, float* y, const float* x, const float* w,
                             const std::int32_t* counts, std::int64_t n_segments,
                             std::int64_t groups, std::int64_t in, std::int64_t out,
                             std::int64_t r) {
  const char* op = "grouped_linear_forward";
  check_grouped(stream, op, counts, n_segments, groups, in, out, r);
  require_pointers(op, r, {y, x});
  require_pointers(op, 1, {w});
  if (r == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::grouped_linear_forward(y, x, w, counts, n_segments, groups, in, out, r);
  } else {
    STRATA_CUDA_ONLY(cuda::grouped_linear_forward(cuda::stream_of(stream), y, x, w, counts,
                                                  n_segments, groups, in, out, r);)
  }
  return stream.record_event();
}

Event grouped_linear_backward_data(const Stream& stream, float* dx, const float* dy, const float* w,
                                   const std::int32_t* counts, std::int64_t n_segments,
                                   std::int64_t groups, std::int64_t in, std::int64_t out,
                                   std::int64_t r) {
  const char* op = "grouped_linear_backward_data";
  check_grouped(stream, op, counts, n_segments, groups, in, out, r);
  require_pointers(op, r, {dx, dy});
  require_pointers(op, 1, {w});
  if (r == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::grouped_linear_backward_data(dx, dy, w, counts, n_segments, groups, in, out, r);
  } else {
    STRATA_CUDA_ONLY(cuda::grouped_linear_backward_data(cuda::stream_of(stream), dx, dy, w, counts,
                                                        n_segments, groups, in, out, r);)
  }
  return stream.record_event();
}

Event grouped_linear_backward_weight(const Stream& stream, float* dw, const float* dy,
                                     const float* x, const std::int32_t* counts,
                                     std::int64_t n_segments, std::int64_t groups, std::int64_t in,
                                     std::int64_t out, std::int64_t r, bool accumulate) {
  const char* op = "grouped_linear_backward_weight";
  check_grouped(stream, op, counts, n_segments, groups, in, out, r);
  require_pointers(op, 1, {dw});  // written even when r == 0
  require_pointers(op, r, {dy, x});
  if (stream.backend() == Backend::kCpu) {
    cpu::grouped_linear_backward_weight(dw, dy, x, counts, n_segments, groups, in, out, r,
                                        accumulate);
  } else {
    STRATA_CUDA_ONLY(cuda::grouped_linear_backward_weight(cuda::stream_of(stream), dw, dy, x,
                                                          counts, n_segments, groups, in, out, r,
                                                          accumulate);)
  }
  return stream.record_event();
}

}  // namespace strata::kernels
