// Internal: the CPU implementations of the ops in kernels/parallel_ops.hpp, run inline on the
// caller's thread. Arguments (sizes, pointers, negative tokens) are already validated by
// parallel_ops.cpp; see parallel_ops.hpp for the contracts and shapes.
#pragma once

#include <cstdint>

namespace strata::kernels::cpu {

void embedding_shard_forward(float* out, const std::int32_t* tokens, const float* wte_shard,
                             std::int64_t first, std::int64_t rows, std::int64_t n, std::int64_t c);
void embedding_shard_backward(float* dwte_shard, const float* dout, const std::int32_t* tokens,
                              std::int64_t first, std::int64_t rows, std::int64_t n,
                              std::int64_t c);

void add_positions(float* x, const float* wpe, std::int64_t first_row, std::int64_t rows,
                   std::int64_t t, std::int64_t c);
void positions_backward(float* dwpe, const float* dx, std::int64_t first_row, std::int64_t rows,
                        std::int64_t t, std::int64_t c);

void softmax_stats(float* stats, const float* logits, const std::int32_t* targets,
                   std::int64_t first, std::int64_t cols, std::int64_t n);
void combine_softmax_stats(float* inout, const float* in, std::int64_t rows);
void cross_entropy_from_stats(float* lse, float* loss_sum, const float* stats, std::int64_t n);
// Reads each row's lse from `lse` when it is set, else recomputes it from `stats` (N, 3).
void cross_entropy_shard_backward(float* dlogits, const float* logits, const float* lse,
                                  const float* stats, const std::int32_t* targets,
                                  std::int64_t first, std::int64_t cols, std::int64_t n,
                                  float scale);

}  // namespace strata::kernels::cpu
