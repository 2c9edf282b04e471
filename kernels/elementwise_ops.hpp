// In-place element-wise updates and the bias gradient: the additions a training step does
// between its ops (residual connections, gradient accumulation) as ops of their own, so that
// an executor interpreting a Plan dispatches every computation to kernels/.
// defines: add_inplace, scale_inplace, add_residual_bias, bias_backward, copy_columns
//
// The contract of ops.hpp holds (fp32 row-major contiguous tensors on the stream's backend,
// std::invalid_argument for bad sizes before anything runs). Each op updates its first tensor
// in place; the other tensors must not overlap it. Every element is computed by the formula
// stated, in that order (no reassociation), so results are bit-identical across runs and buffer
// placements. CPU only so far: on a CUDA stream each throws std::runtime_error("<op>: not
// implemented on CUDA yet") after its argument checks.
#pragma once

#include <cstdint>

#include "kernels/backend.hpp"

namespace strata::kernels {

// y[i] = y[i] + x[i] (gradient accumulation, a residual branch's gradient). n may be 0.
Event add_inplace(const Stream& stream,
                  float* y,        // (n) updated in place
                  const float* x,  // (n)
                  std::int64_t n);

// A block of columns between row-major tensors of different widths (the keys and values of a
// fused qkv row into a packed tensor, and back): y[i * ldy + j] = x[i * ldx + j] for j < width,
// or += with accumulate. rows may be 0; width must be positive and at most ldx and ldy; x and y
// point at the block's first column and must not overlap.
Event copy_columns(const Stream& stream,
                   float* y, std::int64_t ldy,        // (rows, ldy), columns [0, width) written
                   const float* x, std::int64_t ldx,  // (rows, ldx), columns [0, width) read
                   std::int64_t rows, std::int64_t width, bool accumulate = false);

// y[i] = alpha * y[i]. n may be 0; alpha must be finite.
Event scale_inplace(const Stream& stream,
                    float* y,  // (n) updated in place
                    float alpha, std::int64_t n);

// A block's epilogue folded into its partial sum: y += residual + bias, evaluated as
//   y[i, j] = (y[i, j] + residual[i, j]) + bias[j]   (y[i, j] + residual[i, j] without bias),
// left to right. bias may be nullptr. rows may be 0; c must be positive.
Event add_residual_bias(const Stream& stream,
                        float* y,               // (rows, C) updated in place
                        const float* residual,  // (rows, C)
                        const float* bias,      // (C) or nullptr
                        std::int64_t rows, std::int64_t c);

// Accumulates: dbias[j] += dy[i, j] for i in order from 0 (the running sum of dbias, not
// dbias + a separate sum), e.g. a replicated bias's gradient from one rank's slice of rows.
// rows may be 0 (nothing changes); c must be positive.
Event bias_backward(const Stream& stream,
                    float* dbias,     // (C) accumulated into
                    const float* dy,  // (rows, C)
                    std::int64_t rows, std::int64_t c);

}  // namespace strata::kernels
