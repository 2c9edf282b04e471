// Internal: launchers for the CUDA versions of the ops of moe_ops.hpp (kernels/cuda/moe.cu).
// Each enqueues on `stream` (the current device must be the stream's) and checks its calls.
// Arguments are already validated by kernels/moe_ops.cpp; see moe_ops.hpp for the contracts.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/model_ops_cuda.hpp"  // stream_of

namespace strata::kernels::cuda {

void moe_router_forward(cudaStream_t stream, float* probs, std::int32_t* topk_idx, float* topk_w,
                        const float* logits, std::int64_t n, std::int64_t e, std::int64_t k,
                        bool normalize);
void moe_router_backward(cudaStream_t stream, float* dlogits, const float* dtopk_w,
                         const float* probs, const std::int32_t* topk_idx, std::int64_t n,
                         std::int64_t e, std::int64_t k, bool normalize, float aux_coef,
                         float aux_scale);
void moe_aux_loss_forward(cudaStream_t stream, double* loss, const float* probs,
                          const std::int32_t* topk_idx, std::int64_t n, std::int64_t e,
                          std::int64_t k, float aux_coef, float aux_scale);

void moe_permute_forward(cudaStream_t stream, float* rows_out, std::int32_t* row_of,
                         std::int32_t* counts, const float* x, const std::int32_t* topk_idx,
                         const float* topk_w, std::int64_t n, std::int64_t c, std::int64_t e,
                         std::int64_t k, std::int64_t r_max, std::int64_t capacity);
// out[t] (+)= sum over kept slots of (w ? w[t, s] : 1) src[row_of[t, s]]: moe_permute_backward
// (w == nullptr) and moe_unpermute_forward.
void moe_combine(cudaStream_t stream, float* out, const float* src, const std::int32_t* row_of,
                 const float* w, std::int64_t n, std::int64_t c, std::int64_t k, std::int64_t r_max,
                 bool accumulate);
void moe_unpermute_backward(cudaStream_t stream, float* drows, float* dtopk_w, const float* dy,
                            const float* rows, const std::int32_t* row_of, const float* topk_w,
                            std::int64_t n, std::int64_t c, std::int64_t k, std::int64_t r_max);

void grouped_linear_forward(cudaStream_t stream, float* y, const float* x, const float* w,
                            const std::int32_t* counts, std::int64_t n_segments,
                            std::int64_t groups, std::int64_t in, std::int64_t out, std::int64_t r);
void grouped_linear_backward_data(cudaStream_t stream, float* dx, const float* dy, const float* w,
                                  const std::int32_t* counts, std::int64_t n_segments,
                                  std::int64_t groups, std::int64_t in, std::int64_t out,
                                  std::int64_t r);
void grouped_linear_backward_weight(cudaStream_t stream, float* dw, const float* dy, const float* x,
                                    const std::int32_t* counts, std::int64_t n_segments,
                                    std::int64_t groups, std::int64_t in, std::int64_t out,
                                    std::int64_t r, bool accumulate);

}  // namespace strata::kernels::cuda
