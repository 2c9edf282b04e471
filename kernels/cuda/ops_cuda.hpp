// Internal: launchers for the CUDA kernels in kernels/cuda/*.cu. Each enqueues its kernels on
// `stream` (the current device must be the stream's) and checks the launch with
// STRATA_CUDA_CHECK. Arguments are already validated by ops.cpp; see ops.hpp for contracts.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.hpp"

namespace strata::kernels::cuda {

void gelu_forward(cudaStream_t stream, float* y, const float* x, std::int64_t n);
void gelu_backward(cudaStream_t stream, float* dx, const float* dy, const float* x, std::int64_t n);
void gelu_forward(cudaStream_t stream, bf16* y, const bf16* x, std::int64_t n);
void gelu_backward(cudaStream_t stream, bf16* dx, const bf16* dy, const bf16* x, std::int64_t n);

void layer_norm_forward(cudaStream_t stream, float* y, float* mean, float* rstd, const float* x,
                        const float* gamma, const float* beta, std::int64_t n, std::int64_t c,
                        float eps);
void layer_norm_backward(cudaStream_t stream, float* dx, float* dgamma, float* dbeta,
                         const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* rstd, std::int64_t n, std::int64_t c, bool accumulate);
void layer_norm_forward(cudaStream_t stream, bf16* y, float* mean, float* rstd, const bf16* x,
                        const bf16* gamma, const bf16* beta, std::int64_t n, std::int64_t c,
                        float eps);
void layer_norm_backward(cudaStream_t stream, bf16* dx, bf16* dgamma, bf16* dbeta, const bf16* dy,
                         const bf16* x, const bf16* gamma, const float* mean, const float* rstd,
                         std::int64_t n, std::int64_t c, bool accumulate);

}  // namespace strata::kernels::cuda
