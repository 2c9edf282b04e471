// Argument checks and backend dispatch for the ops in parallel_ops.hpp. The CPU path runs
// inline; the CUDA path (STRATA_HAVE_CUDA) enqueues kernels/cuda/parallel_ops.cu's kernels.
// defines: the entry points declared in parallel_ops.hpp
#include "kernels/parallel_ops.hpp"

#include <string>

#include "kernels/cpu/parallel_ops_cpu.hpp"
#include "kernels/detail/checks.hpp"

#if STRATA_HAVE_CUDA
#include "kernels/cuda/model_ops_cuda.hpp"
#endif

namespace strata::kernels {
namespace {

using detail::check_finite;
using detail::check_nonnegative_indices;
using detail::check_size;
using detail::require;
using detail::require_pointers;

// A shard of `count` vocabulary entries from `first`: both within int32, as tokens are.
void check_shard(const char* op, const char* count_name, std::int64_t first, std::int64_t count) {
  check_size(op, "first", first, true);
  check_size(op, count_name, count, false);
  require(first + count <= std::int64_t{1} << 31, op,
          "first + " + std::string(count_name) + " = " + std::to_string(first + count) +
              " must be at most 2^31 (int32 tokens)");
}

void check_positions(const char* op, std::int64_t first_row, std::int64_t rows, std::int64_t t,
                     std::int64_t c) {
  check_size(op, "first_row", first_row, true);
  check_size(op, "rows", rows, true);
  check_size(op, "t", t, false);
  check_size(op, "c", c, false);
}

}  // namespace

Event embedding_shard_forward(const Stream& stream, float* out, const std::int32_t* tokens,
                              const float* wte_shard, std::int64_t first, std::int64_t rows,
                              std::int64_t n, std::int64_t c) {
  const char* op = "embedding_shard_forward";
  check_shard(op, "rows", first, rows);
  check_size(op, "n", n, true);
  check_size(op, "c", c, false);
  require_pointers(op, n, {out, tokens, wte_shard});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    check_nonnegative_indices(stream, op, "tokens", tokens, n);
    cpu::embedding_shard_forward(out, tokens, wte_shard, first, rows, n, c);
  } else {
    STRATA_CUDA_ONLY(cuda::embedding_shard_forward(cuda::stream_of(stream), out, tokens, wte_shard,
                                                   first, rows, n, c);)
  }
  return stream.record_event();
}

Event embedding_shard_backward(const Stream& stream, float* dwte_shard, const float* dout,
                               const std::int32_t* tokens, std::int64_t first, std::int64_t rows,
                               std::int64_t n, std::int64_t c) {
  const char* op = "embedding_shard_backward";
  check_shard(op, "rows", first, rows);
  check_size(op, "n", n, true);
  check_size(op, "c", c, false);
  require_pointers(op, n, {dwte_shard, dout, tokens});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    check_nonnegative_indices(stream, op, "tokens", tokens, n);
    cpu::embedding_shard_backward(dwte_shard, dout, tokens, first, rows, n, c);
  } else {
    STRATA_CUDA_ONLY(cuda::embedding_shard_backward(cuda::stream_of(stream), dwte_shard, dout,
                                                    tokens, first, rows, n, c);)
  }
  return stream.record_event();
}

Event add_positions(const Stream& stream, float* x, const float* wpe, std::int64_t first_row,
                    std::int64_t rows, std::int64_t t, std::int64_t c) {
  const char* op = "add_positions";
  check_positions(op, first_row, rows, t, c);
  require_pointers(op, rows, {x, wpe});
  if (rows == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::add_positions(x, wpe, first_row, rows, t, c);
  } else {
    STRATA_CUDA_ONLY(cuda::add_positions(cuda::stream_of(stream), x, wpe, first_row, rows, t, c);)
  }
  return stream.record_event();
}

Event positions_backward(const Stream& stream, float* dwpe, const float* dx, std::int64_t first_row,
                         std::int64_t rows, std::int64_t t, std::int64_t c) {
  const char* op = "positions_backward";
  check_positions(op, first_row, rows, t, c);
  require_pointers(op, rows, {dwpe, dx});
  if (rows == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::positions_backward(dwpe, dx, first_row, rows, t, c);
  } else {
    STRATA_CUDA_ONLY(
        cuda::positions_backward(cuda::stream_of(stream), dwpe, dx, first_row, rows, t, c);)
  }
  return stream.record_event();
}

Event softmax_stats(const Stream& stream, float* stats, const float* logits,
                    const std::int32_t* targets, std::int64_t first, std::int64_t cols,
                    std::int64_t n) {
  const char* op = "softmax_stats";
  check_shard(op, "cols", first, cols);
  check_size(op, "n", n, true);
  require_pointers(op, n, {stats, logits, targets});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    check_nonnegative_indices(stream, op, "targets", targets, n);
    cpu::softmax_stats(stats, logits, targets, first, cols, n);
  } else {
    STRATA_CUDA_ONLY(
        cuda::softmax_stats(cuda::stream_of(stream), stats, logits, targets, first, cols, n);)
  }
  return stream.record_event();
}

void combine_softmax_stats(float* inout, const float* in, std::int64_t rows) {
  const char* op = "combine_softmax_stats";
  require(rows >= 0, op, "rows = " + std::to_string(rows) + " must be >= 0");
  require_pointers(op, rows, {inout, in});
  if (rows > 0) cpu::combine_softmax_stats(inout, in, rows);
}

Event cross_entropy_from_stats(const Stream& stream, float* lse, float* loss_sum,
                               const float* stats, std::int64_t n) {
  const char* op = "cross_entropy_from_stats";
  check_size(op, "n", n, true);
  require_pointers(op, 1, {loss_sum});  // written even when n == 0; lse is optional
  require_pointers(op, n, {stats});
  if (stream.backend() == Backend::kCpu) {
    cpu::cross_entropy_from_stats(lse, loss_sum, stats, n);
  } else {
    STRATA_CUDA_ONLY(
        cuda::cross_entropy_from_stats(cuda::stream_of(stream), lse, loss_sum, stats, n);)
  }
  return stream.record_event();
}

Event cross_entropy_shard_backward(const Stream& stream, float* dlogits, const float* logits,
                                   const float* lse, const std::int32_t* targets,
                                   std::int64_t first, std::int64_t cols, std::int64_t n,
                                   float scale) {
  const char* op = "cross_entropy_shard_backward";
  check_shard(op, "cols", first, cols);
  check_size(op, "n", n, true);
  check_finite(op, "scale", scale);
  require_pointers(op, n, {dlogits, logits, lse, targets});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    check_nonnegative_indices(stream, op, "targets", targets, n);
    cpu::cross_entropy_shard_backward(dlogits, logits, lse, nullptr, targets, first, cols, n,
                                      scale);
  } else {
    STRATA_CUDA_ONLY(cuda::cross_entropy_shard_backward(cuda::stream_of(stream), dlogits, logits,
                                                        lse, nullptr, targets, first, cols, n,
                                                        scale);)
  }
  return stream.record_event();
}

Event cross_entropy_shard_backward_from_stats(const Stream& stream, float* dlogits,
                                              const float* logits, const float* stats,
                                              const std::int32_t* targets, std::int64_t first,
                                              std::int64_t cols, std::int64_t n, float scale) {
  const char* op = "cross_entropy_shard_backward_from_stats";
  check_shard(op, "cols", first, cols);
  check_size(op, "n", n, true);
  check_finite(op, "scale", scale);
  require_pointers(op, n, {dlogits, logits, stats, targets});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    check_nonnegative_indices(stream, op, "targets", targets, n);
    cpu::cross_entropy_shard_backward(dlogits, logits, nullptr, stats, targets, first, cols, n,
                                      scale);
  } else {
    STRATA_CUDA_ONLY(cuda::cross_entropy_shard_backward(cuda::stream_of(stream), dlogits, logits,
                                                        nullptr, stats, targets, first, cols, n,
                                                        scale);)
  }
  return stream.record_event();
}

}  // namespace strata::kernels
