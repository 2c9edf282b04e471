// Argument checks and backend dispatch for the ops in ops.hpp: the CPU path runs inline, the
// CUDA path (STRATA_HAVE_CUDA) enqueues on the stream's cudaStream_t. Both return an event.
// defines: the entry points declared in ops.hpp
#include "kernels/ops.hpp"

#include <cmath>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cpu/ops_cpu.hpp"
#include "kernels/detail/checks.hpp"

#if STRATA_HAVE_CUDA
#include "kernels/cuda/ops_cuda.hpp"
#include "kernels/cuda/runtime.hpp"
#endif

namespace strata::kernels {
namespace {

using detail::require;
using detail::require_pointers;

void check_elementwise(const char* op, std::int64_t n) {
  require(n >= 0, op, "n = " + std::to_string(n) + " must be >= 0");
}

void check_rows(const char* op, std::int64_t n, std::int64_t c) {
  require(n >= 0, op, "n = " + std::to_string(n) + " must be >= 0");
  require(c > 0 && c <= std::numeric_limits<int>::max(), op,
          "c = " + std::to_string(c) + " must be in [1, 2^31)");
}

#if STRATA_HAVE_CUDA
cudaStream_t cuda_stream(const Stream& stream) {
  cuda_detail::set_current_device(stream.device());
  return static_cast<cudaStream_t>(stream.native_handle());
}
#endif

}  // namespace

Event gelu_forward(const Stream& stream, float* y, const float* x, std::int64_t n) {
  check_elementwise("gelu_forward", n);
  require_pointers("gelu_forward", n, {y, x});
  if (n > 0) {
    if (stream.backend() == Backend::kCpu) {
      cpu::gelu_forward(y, x, n);
    } else {
#if STRATA_HAVE_CUDA
      cuda::gelu_forward(cuda_stream(stream), y, x, n);
#endif
    }
  }
  return stream.record_event();
}

Event gelu_backward(const Stream& stream, float* dx, const float* dy, const float* x,
                    std::int64_t n) {
  check_elementwise("gelu_backward", n);
  require_pointers("gelu_backward", n, {dx, dy, x});
  if (n > 0) {
    if (stream.backend() == Backend::kCpu) {
      cpu::gelu_backward(dx, dy, x, n);
    } else {
#if STRATA_HAVE_CUDA
      cuda::gelu_backward(cuda_stream(stream), dx, dy, x, n);
#endif
    }
  }
  return stream.record_event();
}

Event layer_norm_forward(const Stream& stream, float* y, float* mean, float* rstd, const float* x,
                         const float* gamma, const float* beta, std::int64_t n, std::int64_t c,
                         float eps) {
  check_rows("layer_norm_forward", n, c);
  require(std::isfinite(eps) && eps > 0.0f, "layer_norm_forward",
          "eps = " + std::to_string(eps) + " must be positive and finite");
  require_pointers("layer_norm_forward", n, {y, mean, rstd, x, gamma, beta});
  if (n > 0) {
    if (stream.backend() == Backend::kCpu) {
      cpu::layer_norm_forward(y, mean, rstd, x, gamma, beta, n, c, eps);
    } else {
#if STRATA_HAVE_CUDA
      cuda::layer_norm_forward(cuda_stream(stream), y, mean, rstd, x, gamma, beta, n, c, eps);
#endif
    }
  }
  return stream.record_event();
}

Event layer_norm_backward(const Stream& stream, float* dx, float* dgamma, float* dbeta,
                          const float* dy, const float* x, const float* gamma, const float* mean,
                          const float* rstd, std::int64_t n, std::int64_t c, bool accumulate) {
  check_rows("layer_norm_backward", n, c);
  require_pointers("layer_norm_backward", c, {dgamma, dbeta});  // written even when n == 0
  require_pointers("layer_norm_backward", n, {dx, dy, x, gamma, mean, rstd});
  if (stream.backend() == Backend::kCpu) {
    cpu::layer_norm_backward(dx, dgamma, dbeta, dy, x, gamma, mean, rstd, n, c, accumulate);
  } else {
#if STRATA_HAVE_CUDA
    cuda::layer_norm_backward(cuda_stream(stream), dx, dgamma, dbeta, dy, x, gamma, mean, rstd, n,
                              c, accumulate);
#endif
  }
  return stream.record_event();
}

}  // namespace strata::kernels
