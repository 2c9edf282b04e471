// Internal: the CPU implementations of the ops in kernels/moe_ops.hpp, run inline on the
// caller's thread. Arguments (sizes, pointers, index and count ranges) are already validated by
// moe_ops.cpp; see moe_ops.hpp for the contracts and shapes.
#pragma once

#include <cstdint>

namespace strata::kernels::cpu {

void moe_router_forward(float* probs, std::int32_t* topk_idx, float* topk_w, const float* logits,
                        std::int64_t n, std::int64_t e, std::int64_t k, bool normalize);
void moe_router_backward(float* dlogits, const float* dtopk_w, const float* probs,
                         const std::int32_t* topk_idx, std::int64_t n, std::int64_t e,
                         std::int64_t k, bool normalize, float aux_coef, float aux_scale);
void moe_aux_loss_forward(double* loss, const float* probs, const std::int32_t* topk_idx,
                          std::int64_t n, std::int64_t e, std::int64_t k, float aux_coef,
                          float aux_scale);

void moe_permute_forward(float* rows_out, std::int32_t* row_of, std::int32_t* counts,
                         const float* x, const std::int32_t* topk_idx, const float* topk_w,
                         std::int64_t n, std::int64_t c, std::int64_t e, std::int64_t k,
                         std::int64_t r_max, std::int64_t capacity);
void moe_permute_backward(float* dx, const float* drows, const std::int32_t* row_of, std::int64_t n,
                          std::int64_t c, std::int64_t k, std::int64_t r_max, bool accumulate);
void moe_unpermute_forward(float* y, const float* rows, const std::int32_t* row_of,
                           const float* topk_w, std::int64_t n, std::int64_t c, std::int64_t k,
                           std::int64_t r_max, bool accumulate);
void moe_unpermute_backward(float* drows, float* dtopk_w, const float* dy, const float* rows,
                            const std::int32_t* row_of, const float* topk_w, std::int64_t n,
                            std::int64_t c, std::int64_t k, std::int64_t r_max);

// counts are host values, validated (non-negative, summing to at most r).
void grouped_linear_forward(float* y, const float* x, const float* w, const std::int32_t* counts,
                            std::int64_t n_segments, std::int64_t groups, std::int64_t in,
                            std::int64_t out, std::int64_t r);
void grouped_linear_backward_data(float* dx, const float* dy, const float* w,
                                  const std::int32_t* counts, std::int64_t n_segments,
                                  std::int64_t groups, std::int64_t in, std::int64_t out,
                                  std::int64_t r);
void grouped_linear_backward_weight(float* dw, const float* dy, const float* x,
                                    const std::int32_t* counts, std::int64_t n_segments,
                                    std::int64_t groups, std::int64_t in, std::int64_t out,
                                    std::int64_t r, bool accumulate);

}  // namespace strata::kernels::cpu
