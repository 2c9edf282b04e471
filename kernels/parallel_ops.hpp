// Ops on one rank's shard of a tensor- or sequence-parallel layout: the vocabulary-parallel word
// embedding and softmax cross-entropy (Megatron-LM's VocabParallelEmbedding and
// vocab_parallel_cross_entropy), and the learned position embedding over a slice of the rows.
// With one shard (first = 0, all of the vocabulary) and all rows they are the plain operations.
// defines: embedding_shard_forward, embedding_shard_backward, add_positions, positions_backward,
//          softmax_stats, combine_softmax_stats, cross_entropy_from_stats,
//          cross_entropy_shard_backward, cross_entropy_shard_backward_from_stats
//
// The contract of ops.hpp holds (fp32 row-major contiguous tensors on the stream's backend,
// std::invalid_argument for bad sizes before anything runs, outputs must not alias inputs);
// the ops marked "accumulates" add into their output instead of overwriting it, each in a fixed
// order (bit-identical across runs). int32 tokens and targets: on the CPU a negative one throws
// std::out_of_range before any output is written; one at or beyond the vocabulary is the
// caller's error and lies outside every shard (a shard does not know the vocabulary's size).
// Every op has a CUDA version (kernels/cuda/parallel_ops.cu; ids on the device are not
// range-checked: a negative one lies outside every shard). combine_softmax_stats is a plain host
// function.
//
// How a step uses them on tensor-parallel rank r of t, shard of V/t rows from first = r * V/t:
//   forward:  embedding_shard_forward -> all-reduce (sum) over tp -> add_positions
//             ... LM head: logits (N, V/t) -> softmax_stats -> all-reduce with
//             combine_softmax_stats over tp -> cross_entropy_from_stats (the loss)
//   backward: cross_entropy_shard_backward_from_stats (or _shard_backward with the saved lse)
//             ... embedding_shard_backward, positions_backward (the rank's rows)
#pragma once

#include <cstdint>

#include "kernels/backend.hpp"

namespace strata::kernels {

// --- Vocabulary-parallel embedding -----------------------------------------------------------

// out[i] = wte_shard[tokens[i] - first] for tokens in [first, first + rows), a zero row for the
// others: summed over the shards (an all-reduce), every row is the full table's.
// n may be 0; c and rows must be positive; first >= 0.
Event embedding_shard_forward(const Stream& stream,
                              float* out,                  // (N, C) output
                              const std::int32_t* tokens,  // (N) in [0, vocab)
                              const float* wte_shard,      // (rows, C): rows first .. first+rows-1
                              std::int64_t first, std::int64_t rows, std::int64_t n,
                              std::int64_t c);

// Accumulates: dwte_shard[tokens[i] - first] += dout[i] for the tokens in the shard, i in
// order from 0 (repeated tokens are added in that order); other tokens are skipped.
Event embedding_shard_backward(const Stream& stream,
                               float* dwte_shard,           // (rows, C) accumulated into
                               const float* dout,           // (N, C)
                               const std::int32_t* tokens,  // (N) in [0, vocab)
                               std::int64_t first, std::int64_t rows, std::int64_t n,
                               std::int64_t c);

// --- Position embedding over a slice of rows -------------------------------------------------

// In place on rows first_row .. first_row + rows - 1 of a (B*T, C) activation (all of it, or
// one rank's slice under sequence parallelism), x pointing at the slice's first row; the row
// at global index g is at position g mod T: x[i] += wpe[(first_row + i) mod T].
// rows may be 0; t and c must be positive; first_row >= 0. wpe must not overlap x.
Event add_positions(const Stream& stream,
                    float* x,          // (rows, C) updated in place
                    const float* wpe,  // (T, C) position table
                    std::int64_t first_row, std::int64_t rows, std::int64_t t, std::int64_t c);

// Accumulates: dwpe[(first_row + i) mod T] += dx[i], i in order from 0.
Event positions_backward(const Stream& stream,
                         float* dwpe,      // (T, C) accumulated into
                         const float* dx,  // (rows, C) the slice's gradient
                         std::int64_t first_row, std::int64_t rows, std::int64_t t, std::int64_t c);

// --- Vocabulary-parallel cross-entropy -------------------------------------------------------

// Per row i of the shard's logits (N, cols), columns first .. first + cols - 1 of the vocabulary:
//   stats[i] = (max_v logits[i, v],  sum_v exp(logits[i, v] - max)  (summed in double),
//               logits[i, targets[i] - first] if the target is in the shard, else 0).
// Overwrites stats. n may be 0; cols must be positive; first >= 0. The rows of all shards
// combine with combine_softmax_stats (the all-reduce over tp) into the full row's statistics.
Event softmax_stats(const Stream& stream,
                    float* stats,                 // (N, 3) output: (max, sum_exp, target logit)
                    const float* logits,          // (N, cols)
                    const std::int32_t* targets,  // (N) in [0, vocab)
                    std::int64_t first, std::int64_t cols, std::int64_t n);

// The reduction of the softmax statistics all-reduce, on host memory (the comm layer applies it
// to received buffers; no Stream): for each of `rows` triples, with (m1, s1, t1) = inout and
// (m2, s2, t2) = in,
//   m = max(m1, m2),  s = s1 exp(m1 - m) + s2 exp(m2 - m),  t = t1 + t2  -> inout,
// evaluated as s = s_max + s_other * exp(m_other - m) (the side holding the maximum is not
// rescaled; with equal maxima s1 + s2). Commutative bit for bit; associative within fp32
// rounding (a reduction tree's shape changes the last bits, not more). (-inf, 0, 0) is the
// identity. rows may be 0; negative throws std::invalid_argument.
void combine_softmax_stats(float* inout,     // (rows, 3) updated in place
                           const float* in,  // (rows, 3)
                           std::int64_t rows);

// From the combined statistics: lse[i] = max + log(sum_exp) (in double, rounded once to fp32),
// and *loss_sum = sum_i (lse[i] - target logit), summed in double and rounded once. loss_sum is
// overwritten, never accumulated into (0 when n == 0); divide by N for the mean loss. lse may
// be nullptr when nothing reads it (cross_entropy_shard_backward_from_stats recomputes it).
Event cross_entropy_from_stats(const Stream& stream,
                               float* lse,          // (N) output, or nullptr
                               float* loss_sum,     // (1) output
                               const float* stats,  // (N, 3) combined over the shards
                               std::int64_t n);

// dlogits[i, v] = scale * (exp(logits[i, v] - lse[i]) - [v + first == targets[i]]) on the
// shard, overwritten; scale is d(loss)/d(loss_sum), e.g. 1 / N for the mean over N rows.
// n may be 0; cols must be positive; scale must be finite.
Event cross_entropy_shard_backward(const Stream& stream,
                                   float* dlogits,               // (N, cols) output
                                   const float* logits,          // (N, cols) the forward input
                                   const float* lse,             // (N) from the combined stats
                                   const std::int32_t* targets,  // (N) in [0, vocab)
                                   std::int64_t first, std::int64_t cols, std::int64_t n,
                                   float scale);

// The same from the combined statistics instead of a saved lse: each row's lse is recomputed
// exactly as cross_entropy_from_stats writes it, so the result is bit-identical to
// cross_entropy_from_stats followed by cross_entropy_shard_backward, and a plan needs no lse
// tensor.
Event cross_entropy_shard_backward_from_stats(const Stream& stream,
                                              float* dlogits,       // (N, cols) output
                                              const float* logits,  // (N, cols) forward input
                                              const float* stats,   // (N, 3) combined stats
                                              const std::int32_t* targets,  // (N)
                                              std::int64_t first, std::int64_t cols, std::int64_t n,
                                              float scale);

}  // namespace strata::kernels
