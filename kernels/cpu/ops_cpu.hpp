// Internal: the CPU implementations of the ops in kernels/ops.hpp, run inline on the caller's
// thread. They are also the reference the CUDA kernels are tested against. Arguments are
// already validated by ops.cpp; see ops.hpp for the contracts and shapes.
#pragma once

#include <cstdint>

namespace strata::kernels::cpu {

// True when these were built with Eigen (vectorized); false for the plain-loop fallback.
bool uses_eigen();

void gelu_forward(float* y, const float* x, std::int64_t n);
void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n);

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma,
                        const float* beta, std::int64_t n, std::int64_t c, float eps);
void layer_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* gamma, const float* mean, const float* rstd, std::int64_t n,
                         std::int64_t c, bool accumulate);

}  // namespace strata::kernels::cpu
