// Argument checks and backend dispatch for the ops in elementwise_ops.hpp. The CPU path runs
// inline; the CUDA path (STRATA_HAVE_CUDA) enqueues kernels/cuda/elementwise.cu's kernels on the
// stream.
// defines: the entry points declared in elementwise_ops.hpp
#include "kernels/elementwise_ops.hpp"

#include <string>

#include "kernels/cpu/elementwise_ops_cpu.hpp"
#include "kernels/detail/checks.hpp"

#if STRATA_HAVE_CUDA
#include "kernels/cuda/model_ops_cuda.hpp"
#endif

namespace strata::kernels {
namespace {

using detail::check_finite;
using detail::require;
using detail::require_pointers;

void check_count(const char* op, const char* name, std::int64_t value) {
  require(value >= 0, op, std::string(name) + " = " + std::to_string(value) + " must be >= 0");
}

}  // namespace

Event add_inplace(const Stream& stream, float* y, const float* x, std::int64_t n) {
  const char* op = "add_inplace";
  check_count(op, "n", n);
  require_pointers(op, n, {y, x});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::add_inplace(y, x, n);
  } else {
    STRATA_CUDA_ONLY(cuda::add_inplace(cuda::stream_of(stream), y, x, n);)
  }
  return stream.record_event();
}

Event scale_inplace(const Stream& stream, float* y, float alpha, std::int64_t n) {
  const char* op = "scale_inplace";
  check_count(op, "n", n);
  check_finite(op, "alpha", alpha);
  require_pointers(op, n, {y});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::scale_inplace(y, alpha, n);
  } else {
    STRATA_CUDA_ONLY(cuda::scale_inplace(cuda::stream_of(stream), y, alpha, n);)
  }
  return stream.record_event();
}

Event copy_columns(const Stream& stream, float* y, std::int64_t ldy, const float* x,
                   std::int64_t ldx, std::int64_t rows, std::int64_t width, bool accumulate) {
  const char* op = "copy_columns";
  detail::check_size(op, "rows", rows, true);
  detail::check_size(op, "width", width, false);
  require(width <= ldx && width <= ldy, op,
          "width = " + std::to_string(width) + " must be at most ldx (" + std::to_string(ldx) +
              ") and ldy (" + std::to_string(ldy) + ")");
  require_pointers(op, rows, {y, x});
  if (rows == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::copy_columns(y, ldy, x, ldx, rows, width, accumulate);
  } else {
    STRATA_CUDA_ONLY(
        cuda::copy_columns(cuda::stream_of(stream), y, ldy, x, ldx, rows, width, accumulate);)
  }
  return stream.record_event();
}

Event add_residual_bias(const Stream& stream, float* y, const float* residual, const float* bias,
                        std::int64_t rows, std::int64_t c) {
  const char* op = "add_residual_bias";
  detail::check_size(op, "rows", rows, true);
  detail::check_size(op, "c", c, false);
  require_pointers(op, rows, {y, residual});  // bias is optional
  if (rows == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::add_residual_bias(y, residual, bias, rows, c);
  } else {
    STRATA_CUDA_ONLY(cuda::add_residual_bias(cuda::stream_of(stream), y, residual, bias, rows, c);)
  }
  return stream.record_event();
}

Event bias_backward(const Stream& stream, float* dbias, const float* dy, std::int64_t rows,
                    std::int64_t c) {
  const char* op = "bias_backward";
  detail::check_size(op, "rows", rows, true);
  detail::check_size(op, "c", c, false);
  require_pointers(op, rows, {dbias, dy});
  if (rows == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::bias_backward(dbias, dy, rows, c);
  } else {
    STRATA_CUDA_ONLY(cuda::bias_backward(cuda::stream_of(stream), dbias, dy, rows, c);)
  }
  return stream.record_event();
}

}  // namespace strata::kernels
