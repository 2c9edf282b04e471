// Argument checks and backend dispatch for the ops in model_ops.hpp. The CPU path runs inline.
// Every op has a CUDA version (kernels/cuda/embedding_loss.cu, rms_norm.cu, blas.cpp,
// attention.cu, attention_segments.cu, elementwise.cu), enqueued on the stream.
// defines: the entry points declared in model_ops.hpp
#include "kernels/model_ops.hpp"

#include <cmath>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/model_ops_cpu.hpp"
#include "kernels/detail/checks.hpp"

#if STRATA_HAVE_CUDA
#include "kernels/cuda/model_ops_cuda.hpp"
#endif

namespace strata::kernels {
namespace {

using detail::check_indices;
using detail::check_positive_finite;
using detail::check_size;
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
  if (b * t == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    check_indices(stream, op, "tokens", tokens, b * t, vocab);
    cpu::embedding_forward(out, tokens, wte, wpe, b, t, c);
  } else {
    STRATA_CUDA_ONLY(
        cuda::embedding_forward(cuda::stream_of(stream), out, tokens, wte, wpe, b, t, c, vocab);)
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
  if (stream.backend() == Backend::kCpu) {
    check_indices(stream, op, "tokens", tokens, b * t, vocab);
    cpu::embedding_backward(dwte, dwpe, dout, tokens, b, t, c, vocab);
  } else {
    STRATA_CUDA_ONLY(cuda::embedding_backward(cuda::stream_of(stream), dwte, dwpe, dout, tokens, b,
                                              t, c, vocab);)
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
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::rms_norm_forward(y, rstd, x, weight, n, c, eps);
  } else {
    STRATA_CUDA_ONLY(
        cuda::rms_norm_forward(cuda::stream_of(stream), y, rstd, x, weight, n, c, eps);)
  }
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
  if (stream.backend() == Backend::kCpu) {
    cpu::rms_norm_backward(dx, dweight, dy, x, weight, rstd, n, c, accumulate);
  } else {
    STRATA_CUDA_ONLY(cuda::rms_norm_backward(cuda::stream_of(stream), dx, dweight, dy, x, weight,
                                             rstd, n, c, accumulate);)
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
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::linear_forward(y, x, weight, bias, n, in, out);
  } else {
    STRATA_CUDA_ONLY(cuda::linear_forward(cuda::stream_of(stream), stream.device(), y, x, weight,
                                          bias, n, in, out);)
  }
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
  if (stream.backend() == Backend::kCpu) {
    // The two halves, in the order the fused version ran them: bit-identical to it.
    cpu::linear_backward_data(dx, dy, weight, n, in, out, false);
    cpu::linear_backward_weight(dweight, dbias, dy, x, n, in, out, false);
  } else {
    STRATA_CUDA_ONLY({
      const cudaStream_t s = cuda::stream_of(stream);
      if (n > 0) cuda::linear_backward_data(s, stream.device(), dx, dy, weight, n, in, out, false);
      cuda::linear_backward_weight(s, stream.device(), dweight, dbias, dy, x, n, in, out, false);
    })
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
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::linear_backward_data(dx, dy, weight, n, in, out, accumulate);
  } else {
    STRATA_CUDA_ONLY(cuda::linear_backward_data(cuda::stream_of(stream), stream.device(), dx, dy,
                                                weight, n, in, out, accumulate);)
  }
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
  if (stream.backend() == Backend::kCpu) {
    cpu::linear_backward_weight(dweight, dbias, dy, x, n, in, out, accumulate);
  } else {
    STRATA_CUDA_ONLY(cuda::linear_backward_weight(cuda::stream_of(stream), stream.device(), dweight,
                                                  dbias, dy, x, n, in, out, accumulate);)
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

#if STRATA_HAVE_CUDA
// The CUDA attention kernels keep one head's row in each thread: c / h at most kMaxHeadDim.
void check_cuda_head_dim(const char* op, std::int64_t c, std::int64_t h) {
  require(c / h <= cuda::kMaxHeadDim, op,
          "head dimension c / h = " + std::to_string(c / h) + " exceeds the CUDA kernels' " +
              std::to_string(cuda::kMaxHeadDim));
}
#endif

}  // namespace

Event attention_forward(const Stream& stream, float* out, float* att, const float* qkv,
                        std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h) {
  const char* op = "attention_forward";
  check_attention(op, b, t, c, h);
  require_pointers(op, b * t, {out, att, qkv});
  if (b * t == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::attention_forward(out, att, qkv, b, t, c, h);
  } else {
    STRATA_CUDA_ONLY(check_cuda_head_dim(op, c, h);
                     cuda::attention_forward(cuda::stream_of(stream), out, att, qkv, b, t, c, h);)
  }
  return stream.record_event();
}

Event attention_backward(const Stream& stream, float* dqkv, const float* dout, const float* qkv,
                         const float* att, std::int64_t b, std::int64_t t, std::int64_t c,
                         std::int64_t h) {
  const char* op = "attention_backward";
  check_attention(op, b, t, c, h);
  require_pointers(op, b * t, {dqkv, dout, qkv, att});
  if (b * t == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::attention_backward(dqkv, dout, qkv, att, b, t, c, h);
  } else {
    STRATA_CUDA_ONLY(check_cuda_head_dim(op, c, h); cuda::attention_backward(
                         cuda::stream_of(stream), dqkv, dout, qkv, att, b, t, c, h);)
  }
  return stream.record_event();
}

Event flash_attention_forward(const Stream& stream, float* out, float* lse, const float* qkv,
                              std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h) {
  const char* op = "flash_attention_forward";
  check_attention(op, b, t, c, h);
  require_pointers(op, b * t, {out, lse, qkv});
  if (b * t == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::flash_attention_forward(out, lse, qkv, b, t, c, h);
  } else {
    STRATA_CUDA_ONLY(check_cuda_head_dim(op, c, h); cuda::flash_attention_forward(
                         cuda::stream_of(stream), out, lse, qkv, b, t, c, h);)
  }
  return stream.record_event();
}

Event flash_attention_backward(const Stream& stream, float* dqkv, const float* dout,
                               const float* qkv, const float* out, const float* lse, std::int64_t b,
                               std::int64_t t, std::int64_t c, std::int64_t h) {
  const char* op = "flash_attention_backward";
  check_attention(op, b, t, c, h);
  require_pointers(op, b * t, {dqkv, dout, qkv, out, lse});
  if (b * t == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::flash_attention_backward(dqkv, dout, qkv, out, lse, b, t, c, h);
  } else {
    STRATA_CUDA_ONLY(check_cuda_head_dim(op, c, h); cuda::flash_attention_backward(
                         cuda::stream_of(stream), dqkv, dout, qkv, out, lse, b, t, c, h);)
  }
  return stream.record_event();
}

namespace {

// Each segment non-empty at a non-negative position, their lengths summing to `rows`.
void check_segments(const char* op, const char* name, const std::vector<AttentionSegment>& segments,
                    const char* rows_name, std::int64_t rows) {
  std::int64_t total = 0;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const AttentionSegment& seg = segments[i];
    const std::string which = std::string(name) + "[" + std::to_string(i) + "] = {position " +
                              std::to_string(seg.position) + ", length " +
                              std::to_string(seg.length) + "}";
    require(seg.length >= 1, op, which + ": length must be positive");
    require(seg.position >= 0 && seg.position <= std::numeric_limits<int>::max() - seg.length, op,
            which + ": positions must lie in [0, 2^31)");
    require(
        seg.length <= rows - total, op,
        which + ": the segments run past " + rows_name + " = " + std::to_string(rows) + " rows");
    total += seg.length;
  }
  require(total == rows, op,
          std::string(name) + " cover " + std::to_string(total) + " rows but " + rows_name + " = " +
              std::to_string(rows) + ": the segments' lengths must sum to it");
}

void check_leading_dimension(const char* op, const char* name, std::int64_t ld, std::int64_t c) {
  require(ld >= c && ld <= std::numeric_limits<int>::max(), op,
          std::string(name) + " = " + std::to_string(ld) + " must be in [c = " + std::to_string(c) +
              ", 2^31)");
}

void check_attention_segments(const char* op, std::int64_t b, std::int64_t tq, std::int64_t tk,
                              const std::vector<AttentionSegment>& q_segments,
                              const std::vector<AttentionSegment>& kv_segments, std::int64_t c,
                              std::int64_t h) {
  check_size(op, "b", b, true);
  check_size(op, "tq", tq, true);
  check_size(op, "tk", tk, true);
  check_size(op, "c", c, false);
  check_size(op, "h", h, false);
  require(c % h == 0, op,
          "c = " + std::to_string(c) + " must be divisible by h = " + std::to_string(h));
  check_segments(op, "q_segments", q_segments, "tq", tq);
  check_segments(op, "kv_segments", kv_segments, "tk", tk);
}

}  // namespace

Event attention_segments_forward(const Stream& stream, float* out, float* lse, const float* q,
                                 std::int64_t ldq, const float* k, const float* v,
                                 std::int64_t ldkv, std::int64_t b, std::int64_t tq,
                                 std::int64_t tk, const std::vector<AttentionSegment>& q_segments,
                                 const std::vector<AttentionSegment>& kv_segments, std::int64_t c,
                                 std::int64_t h, bool merge) {
  const char* op = "attention_segments_forward";
  check_attention_segments(op, b, tq, tk, q_segments, kv_segments, c, h);
  check_leading_dimension(op, "ldq", ldq, c);
  check_leading_dimension(op, "ldkv", ldkv, c);
  require_pointers(op, b * tq, {out, lse, q});
  require_pointers(op, b * tq * tk, {k, v});
  if (b * tq == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::attention_segments_forward(out, lse, q, ldq, k, v, ldkv, b, tq, tk, q_segments,
                                    kv_segments, c, h, merge);
  } else {
    STRATA_CUDA_ONLY(cuda::attention_segments_forward(cuda::stream_of(stream), out, lse, q, ldq, k,
                                                      v, ldkv, b, tq, tk, q_segments, kv_segments,
                                                      c, h, merge);)
  }
  return stream.record_event();
}

Event attention_segments_backward(const Stream& stream, float* dq, std::int64_t lddq, float* dk,
                                  float* dv, std::int64_t lddkv, const float* dout, const float* q,
                                  std::int64_t ldq, const float* k, const float* v,
                                  std::int64_t ldkv, const float* out, const float* lse,
                                  std::int64_t b, std::int64_t tq, std::int64_t tk,
                                  const std::vector<AttentionSegment>& q_segments,
                                  const std::vector<AttentionSegment>& kv_segments, std::int64_t c,
                                  std::int64_t h, bool accumulate_dq, bool accumulate_dkv) {
  const char* op = "attention_segments_backward";
  check_attention_segments(op, b, tq, tk, q_segments, kv_segments, c, h);
  check_leading_dimension(op, "lddq", lddq, c);
  check_leading_dimension(op, "lddkv", lddkv, c);
  check_leading_dimension(op, "ldq", ldq, c);
  check_leading_dimension(op, "ldkv", ldkv, c);
  require_pointers(op, b * tq, {dq, dout, q, out, lse});
  require_pointers(op, b * tk, {dk, dv, k, v});
  if (b * (tq + tk) == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::attention_segments_backward(dq, lddq, dk, dv, lddkv, dout, q, ldq, k, v, ldkv, out, lse, b,
                                     tq, tk, q_segments, kv_segments, c, h, accumulate_dq,
                                     accumulate_dkv);
  } else {
    STRATA_CUDA_ONLY(cuda::attention_segments_backward(
        cuda::stream_of(stream), dq, lddq, dk, dv, lddkv, dout, q, ldq, k, v, ldkv, out, lse, b, tq,
        tk, q_segments, kv_segments, c, h, accumulate_dq, accumulate_dkv);)
  }
  return stream.record_event();
}

namespace {

void check_context_parallel(const char* op, std::int64_t seq_len, int cp) {
  require(cp >= 1, op, "cp = " + std::to_string(cp) + " must be at least 1");
  check_size(op, "seq_len", seq_len, false);
  require(cp == 1 || seq_len % (2 * std::int64_t{cp}) == 0, op,
          "seq_len = " + std::to_string(seq_len) +
              " must be divisible by 2 cp = " + std::to_string(2 * std::int64_t{cp}) +
              " (cp = " + std::to_string(cp) + ": each rank holds two of 2 cp equal chunks)");
}

std::vector<AttentionSegment> rank_segments(std::int64_t seq_len, int cp, int rank) {
  if (cp == 1) return {{0, seq_len}};
  const std::int64_t chunk = seq_len / (2 * std::int64_t{cp});
  return {{rank * chunk, chunk}, {(2 * std::int64_t{cp} - 1 - rank) * chunk, chunk}};
}

}  // namespace

std::vector<AttentionSegment> context_parallel_segments(std::int64_t seq_len, int cp, int rank) {
  const char* op = "context_parallel_segments";
  check_context_parallel(op, seq_len, cp);
  require(rank >= 0 && rank < cp, op,
          "rank = " + std::to_string(rank) + " must be in [0, cp = " + std::to_string(cp) + ")");
  return rank_segments(seq_len, cp, rank);
}

std::vector<AttentionSegment> context_parallel_gathered_segments(std::int64_t seq_len, int cp) {
  check_context_parallel("context_parallel_gathered_segments", seq_len, cp);
  std::vector<AttentionSegment> all;
  for (int rank = 0; rank < cp; ++rank) {
    for (const AttentionSegment& seg : rank_segments(seq_len, cp, rank)) all.push_back(seg);
  }
  return all;
}

Event swiglu_forward(const Stream& stream, float* out, const float* x, std::int64_t n,
                     std::int64_t f) {
  const char* op = "swiglu_forward";
  check_size(op, "n", n, true);
  check_size(op, "f", f, false);
  require_pointers(op, n, {out, x});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::swiglu_forward(out, x, n, f);
  } else {
    STRATA_CUDA_ONLY(cuda::swiglu_forward(cuda::stream_of(stream), out, x, n, f);)
  }
  return stream.record_event();
}

Event swiglu_backward(const Stream& stream, float* dx, const float* dout, const float* x,
                      std::int64_t n, std::int64_t f) {
  const char* op = "swiglu_backward";
  check_size(op, "n", n, true);
  check_size(op, "f", f, false);
  require_pointers(op, n, {dx, dout, x});
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::swiglu_backward(dx, dout, x, n, f);
  } else {
    STRATA_CUDA_ONLY(cuda::swiglu_backward(cuda::stream_of(stream), dx, dout, x, n, f);)
  }
  return stream.record_event();
}

Event cross_entropy_forward(const Stream& stream, float* loss, float* lse, const float* logits,
                            const std::int32_t* targets, std::int64_t n, std::int64_t vocab) {
  const char* op = "cross_entropy_forward";
  check_size(op, "n", n, true);
  check_size(op, "vocab", vocab, false);
  require_pointers(op, 1, {loss});  // written even when n == 0
  require_pointers(op, n, {lse, logits, targets});
  if (stream.backend() == Backend::kCpu) {
    check_indices(stream, op, "targets", targets, n, vocab);
    cpu::cross_entropy_forward(loss, lse, logits, targets, n, vocab);
  } else {
    STRATA_CUDA_ONLY(
        cuda::cross_entropy_forward(cuda::stream_of(stream), loss, lse, logits, targets, n, vocab);)
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
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    check_indices(stream, op, "targets", targets, n, vocab);
    cpu::cross_entropy_backward(dlogits, logits, lse, targets, n, vocab, dloss);
  } else {
    STRATA_CUDA_ONLY(cuda::cross_entropy_backward(cuda::stream_of(stream), dlogits, logits, lse,
                                                  targets, n, vocab, dloss);)
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
  if (n == 0) return stream.record_event();
  if (stream.backend() == Backend::kCpu) {
    cpu::adamw_step(params, m, v, grads, n, step, options);
  } else {
    // The bias corrections in double, as the CPU computes them.
    const double t = static_cast<double>(step);
    const float bias1 = static_cast<float>(1.0 - std::pow(static_cast<double>(options.beta1), t));
    const float bias2 = static_cast<float>(1.0 - std::pow(static_cast<double>(options.beta2), t));
    STRATA_CUDA_ONLY(cuda::adamw_step(cuda::stream_of(stream), params, m, v, grads, n, options.lr,
                                      options.beta1, options.beta2, options.eps,
                                      options.weight_decay, bias1, bias2);)
    (void)bias1, (void)bias2;
  }
  return stream.record_event();
}

}  // namespace strata::kernels
