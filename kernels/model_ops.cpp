// Argument checks and backend dispatch for the ops in model_ops.hpp. The CPU path runs inline;
// these ops have no CUDA kernels yet, so a CUDA stream gets std::runtime_error after the checks.
// defines: the entry points declared in model_ops.hpp
#include "kernels/model_ops.hpp"

#include <cmath>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cpu/model_ops_cpu.hpp"
#include "kernels/detail/checks.hpp"

namespace strata::kernels {
namespace {

using detail::check_indices;
using detail::check_positive_finite;
using detail::check_size;
using detail::on_cpu;
using detail::require;
using detail::require_pointers;

}  // namespace

Event embedding_forward(const Stream& stream, float* out, const std::int32_t* tokens,
                        const float* wte, const float* wpe, std::int64_t b, std::int64_t t,
                        std::int64_t c, std::int64_t vocab) {
  const char* op = "embedding_forward";
  check_size(op, "b", b, true);
  check_size(op, "t", t, true);
  check_size(op, "c", c, false);
  check_size(op, "vocab", vocab, false);
  require_pointers(op, b * t, {out, tokens, wte, wpe});
  if (on_cpu(stream, op) && b * t > 0) {
    check_indices(stream, op, "tokens", tokens, b * t, vocab);
    cpu::embedding_forward(out, tokens, wte, wpe, b, t, c);
  }
  return stream.record_event();
}

Event embedding_backward(const Stream& stream, float* dwte, float* dwpe, const float* dout,
                         const std::int32_t* tokens, std::int64_t b, std::int64_t t, std::int64_t c,
                         std::int64_t vocab) {
  const char* op = "embedding_backward";
  check_size(op, "b", b, true);
  check_size(op, "t", t, true);
  check_size(op, "c", c, false);
  check_size(op, "vocab", vocab, false);
  require_pointers(op, 1, {dwte});  // written even when b * t == 0
  require_pointers(op, t, {dwpe});
  require_pointers(op, b * t, {dout, tokens});
  if (on_cpu(stream, op)) {
    check_indices(stream, op, "tokens", tokens, b * t, vocab);
    cpu::embedding_backward(dwte, dwpe, dout, tokens, b, t, c, vocab);
  }
  return stream.record_event();
}

Event rms_norm_forward(const Stream& stream, float* y, float* rstd, const float* x,
                       const float* weight, std::int64_t n, std::int64_t c, float eps) {
  const char* op = "rms_norm_forward";
  check_size(op, "n", n, true);
  check_size(op, "c", c, false);
  check_positive_finite(op, "eps", eps);
  require_pointers(op, n, {y, rstd, x, weight});
  if (on_cpu(stream, op) && n > 0) cpu::rms_norm_forward(y, rstd, x, weight, n, c, eps);
  return stream.record_event();
}

Event rms_norm_backward(const Stream& stream, float* dx, float* dweight, const float* dy,
                        const float* x, const float* weight, const float* rstd, std::int64_t n,
                        std::int64_t c, bool accumulate) {
  const char* op = "rms_norm_backward";
  check_size(op, "n", n, true);
  check_size(op, "c", c, false);
  require_pointers(op, 1, {dweight});  // written even when n == 0
  require_pointers(op, n, {dx, dy, x, weight, rstd});
  if (on_cpu(stream, op)) {
    cpu::rms_norm_backward(dx, dweight, dy, x, weight, rstd, n, c, accumulate);
  }
  return stream.record_event();
}

Event linear_forward(const Stream& stream, float* y, const float* x, const float* weight,
                     const float* bias, std::int64_t n, std::int64_t in, std::int64_t out) {
  const char* op = "linear_forward";
  check_size(op, "n", n, true);
  check_size(op, "in", in, false);
  check_size(op, "out", out, false);
  require_pointers(op, n, {y, x, weight});  // bias is optional
  if (on_cpu(stream, op) && n > 0) cpu::linear_forward(y, x, weight, bias, n, in, out);
  return stream.record_event();
}

Event linear_backward(const Stream& stream, float* dx, float* dweight, float* dbias,
                      const float* dy, const float* x, const float* weight, std::int64_t n,
                      std::int64_t in, std::int64_t out) {
  const char* op = "linear_backward";
  check_size(op, "n", n, true);
  check_size(op, "in", in, false);
  check_size(op, "out", out, false);
  require_pointers(op, 1, {dweight});  // written even when n == 0; dbias is optional
  require_pointers(op, n, {dx, dy, x, weight});
  if (on_cpu(stream, op)) {
    // The two halves, in the order the fused version ran them: bit-identical to it.
    cpu::linear_backward_data(dx, dy, weight, n, in, out, false);
    cpu::linear_backward_weight(dweight, dbias, dy, x, n, in, out, false);
  }
  return stream.record_event();
}

Event linear_backward_data(const Stream& stream, float* dx, const float* dy, const float* weight,
                           std::int64_t n, std::int64_t in, std::int64_t out, bool accumulate) {
  const char* op = "linear_backward_data";
  check_size(op, "n", n, true);
  check_size(op, "in", in, false);
  check_size(op, "out", out, false);
  require_pointers(op, n, {dx, dy, weight});
  if (on_cpu(stream, op) && n > 0)
    cpu::linear_backward_data(dx, dy, weight, n, in, out, accumulate);
  return stream.record_event();
}

Event linear_backward_weight(const Stream& stream, float* dweight, float* dbias, const float* dy,
                             const float* x, std::int64_t n, std::int64_t in, std::int64_t out,
                             bool accumulate) {
  const char* op = "linear_backward_weight";
  check_size(op, "n", n, true);
  check_size(op, "in", in, false);
  check_size(op, "out", out, false);
  require_pointers(op, 1, {dweight});  // written even when n == 0; dbias is optional
  require_pointers(op, n, {dy, x});
  if (on_cpu(stream, op)) {
    cpu::linear_backward_weight(dweight, dbias, dy, x, n, in, out, accumulate);
  }
  return stream.record_event();
}

namespace {

void check_attention(const char* op, std::int64_t b, std::int64_t t, std::int64_t c,
                     std::int64_t h) {
  check_size(op, "b", b, true);
  check_size(op, "t", t, true);
  check_size(op, "c", c, false);
  check_size(op, "h", h, false);
  require(c % h == 0, op,
          "c = " + std::to_string(c) + " must be divisible by h = " + std::to_string(h));
  require(3 * c <= std::numeric_limits<int>::max(), op,
          "3c = " + std::to_string(3 * c) + " must be below 2^31");
}

}  // namespace

Event attention_forward(const Stream& stream, float* out, float* att, const float* qkv,
                        std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h) {
  const char* op = "attention_forward";
  check_attention(op, b, t, c, h);
  require_pointers(op, b * t, {out, att, qkv});
  if (on_cpu(stream, op) && b * t > 0) cpu::attention_forward(out, att, qkv, b, t, c, h);
  return stream.record_event();
}

Event attention_backward(const Stream& stream, float* dqkv, const float* dout, const float* qkv,
                         const float* att, std::int64_t b, std::int64_t t, std::int64_t c,
                         std::int64_t h) {
  const char* op = "attention_backward";
  check_attention(op, b, t, c, h);
  require_pointers(op, b * t, {dqkv, dout, qkv, att});
  if (on_cpu(stream, op) && b * t > 0) cpu::attention_backward(dqkv, dout, qkv, att, b, t, c, h);
  return stream.record_event();
}

Event flash_attention_forward(const Stream& stream, float* out, float* lse, const float* qkv,
                              std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h) {
  const char* op = "flash_attention_forward";
  check_attention(op, b, t, c, h);
  require_pointers(op, b * t, {out, lse, qkv});
  if (on_cpu(stream, op) && b * t > 0) cpu::flash_attention_forward(out, lse, qkv, b, t, c, h);
  return stream.record_event();
}

Event flash_attention_backward(const Stream& stream, float* dqkv, const float* dout,
                               const float* qkv, const float* out, const float* lse, std::int64_t b,
                               std::int64_t t, std::int64_t c, std::int64_t h) {
  const char* op = "flash_attention_backward";
  check_attention(op, b, t, c, h);
  require_pointers(op, b * t, {dqkv, dout, qkv, out, lse});
  if (on_cpu(stream, op) && b * t > 0) {
    cpu::flash_attention_backward(dqkv, dout, qkv, out, lse, b, t, c, h);
  }
  return stream.record_event();
}

Event swiglu_forward(const Stream& stream, float* out, const float* x, std::int64_t n,
                     std::int64_t f) {
  const char* op = "swiglu_forward";
  check_size(op, "n", n, true);
  check_size(op, "f", f, false);
  require_pointers(op, n, {out, x});
  if (on_cpu(stream, op) && n > 0) cpu::swiglu_forward(out, x, n, f);
  return stream.record_event();
}

Event swiglu_backward(const Stream& stream, float* dx, const float* dout, const float* x,
                      std::int64_t n, std::int64_t f) {
  const char* op = "swiglu_backward";
  check_size(op, "n", n, true);
  check_size(op, "f", f, false);
  require_pointers(op, n, {dx, dout, x});
  if (on_cpu(stream, op) && n > 0) cpu::swiglu_backward(dx, dout, x, n, f);
  return stream.record_event();
}

Event cross_entropy_forward(const Stream& stream, float* loss, float* lse, const float* logits,
                            const std::int32_t* targets, std::int64_t n, std::int64_t vocab) {
  const char* op = "cross_entropy_forward";
  check_size(op, "n", n, true);
  check_size(op, "vocab", vocab, false);
  require_pointers(op, 1, {loss});  // written even when n == 0
  require_pointers(op, n, {lse, logits, targets});
  if (on_cpu(stream, op)) {
    check_indices(stream, op, "targets", targets, n, vocab);
    cpu::cross_entropy_forward(loss, lse, logits, targets, n, vocab);
  }
  return stream.record_event();
}

Event cross_entropy_backward(const Stream& stream, float* dlogits, const float* logits,
                             const float* lse, const std::int32_t* targets, std::int64_t n,
                             std::int64_t vocab, float dloss) {
  const char* op = "cross_entropy_backward";
  check_size(op, "n", n, true);
  check_size(op, "vocab", vocab, false);
  require(std::isfinite(dloss), op, "dloss = " + std::to_string(dloss) + " must be finite");
  require_pointers(op, n, {dlogits, logits, lse, targets});
  if (on_cpu(stream, op) && n > 0) {
    check_indices(stream, op, "targets", targets, n, vocab);
    cpu::cross_entropy_backward(dlogits, logits, lse, targets, n, vocab, dloss);
  }
  return stream.record_event();
}

Event adamw_step(const Stream& stream, float* params, float* m, float* v, const float* grads,
                 std::int64_t n, std::int64_t step, const AdamWOptions& options) {
  const char* op = "adamw_step";
  require(n >= 0, op, "n = " + std::to_string(n) + " must be >= 0");
  require(step >= 1, op, "step = " + std::to_string(step) + " must be >= 1 (1 for the first)");
  const auto in_range = [&](const char* name, float value, bool zero_ok, bool below_one) {
    const bool ok = std::isfinite(value) && (zero_ok ? value >= 0.0f : value > 0.0f) &&
                    (!below_one || value < 1.0f);
    require(ok, op,
            std::string(name) + " = " + std::to_string(value) + " must be " +
                (below_one ? "in [0, 1)"
                 : zero_ok ? ">= 0 and finite"
                           : "> 0 and finite"));
  };
  in_range("lr", options.lr, true, false);
  in_range("beta1", options.beta1, true, true);
  in_range("beta2", options.beta2, true, true);
  in_range("eps", options.eps, false, false);
  in_range("weight_decay", options.weight_decay, true, false);
  require_pointers(op, n, {params, m, v, grads});
  if (on_cpu(stream, op) && n > 0) cpu::adamw_step(params, m, v, grads, n, step, options);
  return stream.record_event();
}

}  // namespace strata::kernels
