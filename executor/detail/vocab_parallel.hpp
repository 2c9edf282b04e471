// The pieces of a parallel GPT step that have no op in kernels/ yet (CPU only): the word-
// embedding look-up and its gradient over one shard of the vocabulary, the softmax cross-entropy
// whose rows are spread over the shards (Megatron's VocabParallelEmbedding and
// vocab_parallel_cross_entropy), and position and bias terms over a slice of the rows (sequence
// parallelism). With one shard and all rows they are the plain operations.
#pragma once

#include <cstdint>

namespace strata::exec::detail {

// out[i] = wte[tokens[i] - first] for tokens in [first, first + rows), 0 otherwise.
void embedding_shard_forward(float* out,                  // (N, C) output
                             const std::int32_t* tokens,  // (N)
                             const float* wte,            // (rows, C) the shard
                             std::int64_t first, std::int64_t rows, std::int64_t n,
                             std::int64_t c);
// dwte[tokens[i] - first] += dout[i] for the shard's tokens (accumulates).
void embedding_shard_backward(float* dwte, const float* dout, const std::int32_t* tokens,
                              std::int64_t first, std::int64_t rows, std::int64_t n,
                              std::int64_t c);
// Rows first_row .. first_row + rows - 1 of a (B*T, C) activation (all of it, or one rank's
// slice under sequence parallelism), row i at position i mod T:
// x[i] += wpe[i mod T];  dwpe[i mod T] += dx[i] (accumulates).
void add_positions(float* x, const float* wpe, std::int64_t first_row, std::int64_t rows,
                   std::int64_t t, std::int64_t c);
void positions_backward(float* dwpe, const float* dx, std::int64_t first_row, std::int64_t rows,
                        std::int64_t t, std::int64_t c);
// dbias += sum over rows of dy (rows, c): a replicated bias's gradient from one slice of rows.
void bias_backward(float* dbias, const float* dy, std::int64_t rows, std::int64_t c);

// Per row of the shard's logits (N, V/t): (max, sum of exp(logit - max), the target's logit
// if the target is in this shard else 0) -> stats (N, 3), for ReduceOp::kSoftmaxStats.
void softmax_stats(float* stats, const float* logits, const std::int32_t* targets,
                   std::int64_t first, std::int64_t cols, std::int64_t n);
// After the all-reduce: lse[i] = max + log(sum_exp); returns sum_i (lse[i] - target logit).
double cross_entropy_from_stats(float* lse, const float* stats, std::int64_t n);
// dlogits = scale * (exp(logits - lse) - onehot(target)) on the shard.
void cross_entropy_shard_backward(float* dlogits, const float* logits, const float* lse,
                                  const std::int32_t* targets, std::int64_t first,
                                  std::int64_t cols, std::int64_t n, float scale);

}  // namespace strata::exec::detail
