// The ops of kernels/, one entry point per op and direction, dispatched on the stream's backend.
// defines: gelu_forward, gelu_backward, layer_norm_forward, layer_norm_backward
// (and, through kernels/model_ops.hpp, the other ops of a training step: embedding, RMSNorm,
// linear, attention, SwiGLU, cross-entropy, AdamW; through kernels/moe_ops.hpp, the
// mixture-of-experts router, permutation and grouped GEMM; through kernels/parallel_ops.hpp,
// the ops on one shard of a vocabulary- or sequence-parallel layout; through
// kernels/elementwise_ops.hpp, in-place additions, scaling and bias gradients; through
// kernels/bf16_ops.hpp, the ops on bf16 tensors so far: GELU, LayerNorm, the linear layer, the
// in-place addition and conversions)
//
// Contract shared by every op:
// - fp32 (or, for the ops of bf16_ops.hpp, bf16), row-major, contiguous tensors; shapes are
//   annotated as // (N, C).
// - every pointer lives in memory of the stream's backend and device (a Buffer on that stream).
// - the op is enqueued on `stream` and the returned Event completes when its outputs are ready;
//   on the CPU the work is done before the call returns.
// - outputs are overwritten, unless the op says it accumulates (an `accumulate` option, or an op
//   documented as "+=", such as a gradient accumulator's update); outputs must not alias inputs
//   unless the op says so (in-place ops update one tensor that is both).
// - bad sizes (negative, zero channels) throw std::invalid_argument before anything is enqueued.
// Each op has a CPU implementation (kernels/cpu/) that is the reference for the CUDA one
// (kernels/cuda/); tests/kernels/ compares them op by op.
#pragma once

#include <cstdint>

#include "kernels/backend.hpp"
#include "kernels/bf16_ops.hpp"         // IWYU pragma: export
#include "kernels/elementwise_ops.hpp"  // IWYU pragma: export
#include "kernels/model_ops.hpp"        // IWYU pragma: export
#include "kernels/moe_ops.hpp"          // IWYU pragma: export
#include "kernels/parallel_ops.hpp"     // IWYU pragma: export

namespace strata::kernels {

// GELU with the tanh approximation used by GPT-2 and Megatron-LM:
//   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// Elementwise over n values. Both backends evaluate it as x * sigmoid(2u), u = sqrt(2/pi)(x +
// 0.044715 x^3) -- the same function -- which keeps full relative precision for negative x,
// where fp32 1 + tanh(u) cancels.
Event gelu_forward(const Stream& stream,
                   float* y,        // (n) output
                   const float* x,  // (n)
                   std::int64_t n);

// dx = dy * gelu'(x), with gelu' the exact derivative of the tanh approximation above.
Event gelu_backward(const Stream& stream,
                    float* dx,        // (n) output
                    const float* dy,  // (n)
                    const float* x,   // (n) the forward input
                    std::int64_t n);

// LayerNorm over the last dimension: y = (x - mean) * rstd * gamma + beta, per row, with
// mean and biased variance of the row and rstd = 1 / sqrt(var + eps). Saves mean and rstd for
// the backward pass. n may be 0; c must be positive; eps must be positive (1e-5 in GPT-2).
Event layer_norm_forward(const Stream& stream,
                         float* y,            // (N, C) output
                         float* mean,         // (N) output
                         float* rstd,         // (N) output
                         const float* x,      // (N, C)
                         const float* gamma,  // (C)
                         const float* beta,   // (C)
                         std::int64_t n, std::int64_t c, float eps = 1e-5f);

// The gradients of layer_norm_forward given dy and the saved mean and rstd:
//   xhat = (x - mean) * rstd,  g = dy * gamma,
//   dx = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)),
//   dgamma = sum_n(dy * xhat),  dbeta = sum_n(dy).
// dx is overwritten. dgamma and dbeta are overwritten (with zeros when n == 0), or with
// accumulate the sums are added into them: dgamma[j] = dgamma[j] + sum_n(...), the same sum as
// without accumulate, so the result is bit-identical to adding the overwriting result, on each
// backend (n == 0 then leaves them unchanged). Both backends reduce over rows in a fixed order,
// so repeated runs give bit-identical results.
Event layer_norm_backward(const Stream& stream,
                          float* dx,           // (N, C) output
                          float* dgamma,       // (C) output, or accumulated into
                          float* dbeta,        // (C) output, or accumulated into
                          const float* dy,     // (N, C)
                          const float* x,      // (N, C) the forward input
                          const float* gamma,  // (C)
                          const float* mean,   // (N) saved by the forward pass
                          const float* rstd,   // (N) saved by the forward pass
                          std::int64_t n, std::int64_t c, bool accumulate = false);

}  // namespace strata::kernels
