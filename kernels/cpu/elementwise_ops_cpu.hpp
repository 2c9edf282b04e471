// Internal: the CPU implementations of the ops in kernels/elementwise_ops.hpp, run inline on the
// caller's thread. Arguments are already validated by elementwise_ops.cpp; see
// elementwise_ops.hpp for the contracts and shapes.
#pragma once

#include <cstdint>

namespace strata::kernels::cpu {

void add_inplace(float* y, const float* x, std::int64_t n);
void scale_inplace(float* y, float alpha, std::int64_t n);
void copy_columns(float* y, std::int64_t ldy, const float* x, std::int64_t ldx, std::int64_t rows,
                  std::int64_t width, bool accumulate);
void add_residual_bias(float* y, const float* residual, const float* bias, std::int64_t rows,
                       std::int64_t c);
void bias_backward(float* dbias, const float* dy, std::int64_t rows, std::int64_t c);

}  // namespace strata::kernels::cpu
