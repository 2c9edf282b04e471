// Dispatch of the bf16 ops (bf16_ops.hpp): the fp32 entry points' checks, then on the CPU the
// fp32 op on widened copies with its outputs rounded back, on CUDA the bf16 kernels.
// defines: the entry points declared in bf16_ops.hpp
#include "kernels/bf16_ops.hpp"

#include <string>
#include <vector>

#include "kernels/detail/checks.hpp"
#include "kernels/ops.hpp"

#if STRATA_HAVE_CUDA
#include "kernels/cuda/model_ops_cuda.hpp"
#include "kernels/cuda/ops_cuda.hpp"
#endif

namespace strata::kernels {
namespace {

using detail::check_size;
using detail::require;
using detail::require_pointers;

// A bf16 tensor's fp32 copy on the host (empty for a null pointer), rounded back into it by
// store().
struct Wide {
  Wide(const bf16* p, std::int64_t n) : data(p != nullptr ? widen(p, n) : std::vector<float>()) {}
  float* get() { return data.empty() ? nullptr : data.data(); }
  void store(bf16* p) const {
    if (p != nullptr) narrow(p, data.data(), static_cast<std::int64_t>(data.size()));
  }
  std::vector<float> data;
};

void check_count(const char* op, std::int64_t n) {
  require(n >= 0, op, "n = " + std::to_string(n) + " must be >= 0");
}

}  // namespace

Event convert(const Stream& stream, bf16* y, const float* x, std::int64_t n) {
  check_count("convert", n);
  require_pointers("convert", n, {y, x});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    narrow(y, x, n);
  } else {
    STRATA_CUDA_ONLY(cuda::convert(cuda::stream_of(stream), y, x, n);)
  }
  return stream.record_event();
}

Event convert(const Stream& stream, float* y, const bf16* x, std::int64_t n) {
  check_count("convert", n);
  require_pointers("convert", n, {y, x});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    for (std::int64_t i = 0; i < n; ++i) y[i] = to_float(x[i]);
  } else {
    STRATA_CUDA_ONLY(cuda::convert(cuda::stream_of(stream), y, x, n);)
  }
  return stream.record_event();
}

Event gelu_forward(const Stream& stream, bf16* y, const bf16* x, std::int64_t n) {
  check_count("gelu_forward", n);
  require_pointers("gelu_forward", n, {y, x});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    Wide wx(x, n), wy(y, n);
    gelu_forward(stream, wy.get(), wx.get(), n);
    wy.store(y);
  } else {
    STRATA_CUDA_ONLY(cuda::gelu_forward(cuda::stream_of(stream), y, x, n);)
  }
  return stream.record_event();
}

Event gelu_backward(const Stream& stream, bf16* dx, const bf16* dy, const bf16* x, std::int64_t n) {
  check_count("gelu_backward", n);
  require_pointers("gelu_backward", n, {dx, dy, x});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    Wide wdx(dx, n), wdy(dy, n), wx(x, n);
    gelu_backward(stream, wdx.get(), wdy.get(), wx.get(), n);
    wdx.store(dx);
  } else {
    STRATA_CUDA_ONLY(cuda::gelu_backward(cuda::stream_of(stream), dx, dy, x, n);)
  }
  return stream.record_event();
}

Event layer_norm_forward(const Stream& stream, bf16* y, float* mean, float* rstd, const bf16* x,
                         const bf16* gamma, const bf16* beta, std::int64_t n, std::int64_t c,
                         float eps) {
  if (stream.backend() == Backend::kCpu) {
    // The fp32 op checks the arguments (its messages name the op and the field).
    Wide wy(y, n * c), wx(x, n * c), wg(gamma, c), wb(beta, c);
    const Event e =
        layer_norm_forward(stream, wy.get(), mean, rstd, wx.get(), wg.get(), wb.get(), n, c, eps);
    wy.store(y);
    return e;
  }
  check_size("layer_norm_forward", "n", n, true);
  check_size("layer_norm_forward", "c", c, false);
  require_pointers("layer_norm_forward", n, {y, mean, rstd, x, gamma, beta});
  if (n > 0) {
    STRATA_CUDA_ONLY(cuda::layer_norm_forward(cuda::stream_of(stream), y, mean, rstd, x, gamma,
                                              beta, n, c, eps);)
  }
  return stream.record_event();
}

Event layer_norm_backward(const Stream& stream, bf16* dx, bf16* dgamma, bf16* dbeta, const bf16* dy,
                          const bf16* x, const bf16* gamma, const float* mean, const float* rstd,
                          std::int64_t n, std::int64_t c, bool accumulate) {
  if (stream.backend() == Backend::kCpu) {
    Wide wdx(dx, n * c), wdg(dgamma, c), wdb(dbeta, c), wdy(dy, n * c), wx(x, n * c), wg(gamma, c);
    const Event e = layer_norm_backward(stream, wdx.get(), wdg.get(), wdb.get(), wdy.get(),
                                        wx.get(), wg.get(), mean, rstd, n, c, accumulate);
    wdx.store(n > 0 ? dx : nullptr);
    wdg.store(dgamma);
    wdb.store(dbeta);
    return e;
  }
  check_size("layer_norm_backward", "n", n, true);
  check_size("layer_norm_backward", "c", c, false);
  require_pointers("layer_norm_backward", 1, {dgamma, dbeta, gamma});
  require_pointers("layer_norm_backward", n, {dx, dy, x, mean, rstd});
  STRATA_CUDA_ONLY(cuda::layer_norm_backward(cuda::stream_of(stream), dx, dgamma, dbeta, dy, x,
                                             gamma, mean, rstd, n, c, accumulate);)
  return stream.record_event();
}

namespace {

void check_linear(const char* op, std::int64_t n, std::int64_t in, std::int64_t out) {
  check_size(op, "n", n, true);
  check_size(op, "in", in, false);
  check_size(op, "out", out, false);
}

}  // namespace

Event linear_forward(const Stream& stream, bf16* y, const bf16* x, const bf16* weight,
                     const bf16* bias, std::int64_t n, std::int64_t in, std::int64_t out) {
  check_linear("linear_forward", n, in, out);
  require_pointers("linear_forward", n, {y, x, weight});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    Wide wy(y, n * out), wx(x, n * in), ww(weight, out * in), wb(bias, out);
    linear_forward(stream, wy.get(), wx.get(), ww.get(), wb.get(), n, in, out);
    wy.store(y);
  } else {
    STRATA_CUDA_ONLY(cuda::linear_forward(cuda::stream_of(stream), stream.device(), y, x, weight,
                                          bias, n, in, out);)
  }
  return stream.record_event();
}

Event linear_backward_data(const Stream& stream, bf16* dx, const bf16* dy, const bf16* weight,
                           std::int64_t n, std::int64_t in, std::int64_t out, bool accumulate) {
  check_linear("linear_backward_data", n, in, out);
  require_pointers("linear_backward_data", n, {dx, dy, weight});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    Wide wdx(dx, n * in), wdy(dy, n * out), ww(weight, out * in);
    linear_backward_data(stream, wdx.get(), wdy.get(), ww.get(), n, in, out, accumulate);
    wdx.store(dx);
  } else {
    STRATA_CUDA_ONLY(cuda::linear_backward_data(cuda::stream_of(stream), stream.device(), dx, dy,
                                                weight, n, in, out, accumulate);)
  }
  return stream.record_event();
}

Event linear_backward_weight(const Stream& stream, bf16* dweight, bf16* dbias, const bf16* dy,
                             const bf16* x, std::int64_t n, std::int64_t in, std::int64_t out,
                             bool accumulate) {
  check_linear("linear_backward_weight", n, in, out);
  require_pointers("linear_backward_weight", 1, {dweight});
  require_pointers("linear_backward_weight", n, {dy, x});
  if (stream.backend() == Backend::kCpu) {
    Wide wdw(dweight, out * in), wdb(dbias, out), wdy(dy, n * out), wx(x, n * in);
    linear_backward_weight(stream, wdw.get(), wdb.get(), wdy.get(), wx.get(), n, in, out,
                           accumulate);
    wdw.store(dweight);
    wdb.store(dbias);
  } else {
    STRATA_CUDA_ONLY(cuda::linear_backward_weight(cuda::stream_of(stream), stream.device(), dweight,
                                                  dbias, dy, x, n, in, out, accumulate);)
  }
  return stream.record_event();
}

Event add_inplace(const Stream& stream, bf16* y, const bf16* x, std::int64_t n) {
  check_count("add_inplace", n);
  require_pointers("add_inplace", n, {y, x});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    for (std::int64_t i = 0; i < n; ++i) y[i] = to_bf16(to_float(y[i]) + to_float(x[i]));
  } else {
    STRATA_CUDA_ONLY(cuda::add_inplace(cuda::stream_of(stream), y, x, n);)
  }
  return stream.record_event();
}

}  // namespace strata::kernels
