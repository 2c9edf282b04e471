// Internal: the CPU implementations of the ops in kernels/model_ops.hpp, run inline on the
// caller's thread. Arguments (sizes, pointers, token and target ranges) are already validated by
// model_ops.cpp; see model_ops.hpp for the contracts and shapes.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/model_ops.hpp"

namespace strata::kernels::cpu {

void embedding_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe,
                       std::int64_t b, std::int64_t t, std::int64_t c);
void embedding_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens,
                        std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t vocab);

void rms_norm_forward(float* y, float* rstd, const float* x, const float* weight, std::int64_t n,
                      std::int64_t c, float eps);
void rms_norm_backward(float* dx, float* dweight, const float* dy, const float* x,
                       const float* weight, const float* rstd, std::int64_t n, std::int64_t c,
                       bool accumulate);

void linear_forward(float* y, const float* x, const float* weight, const float* bias,
                    std::int64_t n, std::int64_t in, std::int64_t out);
// linear_backward is these two in turn (model_ops.cpp).
void linear_backward_data(float* dx, const float* dy, const float* weight, std::int64_t n,
                          std::int64_t in, std::int64_t out, bool accumulate);
void linear_backward_weight(float* dweight, float* dbias, const float* dy, const float* x,
                            std::int64_t n, std::int64_t in, std::int64_t out, bool accumulate);

// dbias (c) = sum over rows of dy (rows, c), rows in order, or dbias + that sum with accumulate
// (unchanged when rows == 0). Shared with the elementwise ops.
void column_sums(float* dbias, const float* dy, std::int64_t rows, std::int64_t c, bool accumulate);

void attention_forward(float* out, float* att, const float* qkv, std::int64_t b, std::int64_t t,
                       std::int64_t c, std::int64_t h);
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h);

// The fused attention (flash_attention_cpu.cpp). Blocks of the score matrix: `rows` queries by
// `cols` keys (any positive sizes; the ops of model_ops.hpp use the defaults, tests vary them).
// 64 x 64: a block of scores is 16 KiB and the query, key and value blocks (64, D) at most
// 16 KiB each for D <= 64, all within L2 with room to spare; see kernels/README.md for the
// measured alternatives.
struct FlashBlocks {
  std::int64_t rows = 64;
  std::int64_t cols = 64;
};
// The floats of scratch one call allocates (forward, or backward): the blocks above plus, for
// the backward, one (T) vector. Independent of B and H, and of T apart from that vector. The
// same for attention_segments_forward / _backward, with T = Tq.
std::int64_t flash_attention_scratch_floats(std::int64_t t, std::int64_t d, FlashBlocks blocks,
                                            bool backward);
// The attention over explicit positions (model_ops.hpp), on which the two above are built.
// Score entries (query, key) it computes per (batch row, head), forward or backward: every pair
// of a query and a key block not wholly masked, whole (kernels/README.md, FLOPs).
std::int64_t attention_segments_score_entries(const std::vector<AttentionSegment>& q_segments,
                                              const std::vector<AttentionSegment>& kv_segments,
                                              FlashBlocks blocks = {});
void attention_segments_forward(float* out, float* lse, const float* q, std::int64_t ldq,
                                const float* k, const float* v, std::int64_t ldkv, std::int64_t b,
                                std::int64_t tq, std::int64_t tk,
                                const std::vector<AttentionSegment>& q_segments,
                                const std::vector<AttentionSegment>& kv_segments, std::int64_t c,
                                std::int64_t h, bool merge, FlashBlocks blocks = {});
void attention_segments_backward(float* dq, std::int64_t lddq, float* dk, float* dv,
                                 std::int64_t lddkv, const float* dout, const float* q,
                                 std::int64_t ldq, const float* k, const float* v,
                                 std::int64_t ldkv, const float* out, const float* lse,
                                 std::int64_t b, std::int64_t tq, std::int64_t tk,
                                 const std::vector<AttentionSegment>& q_segments,
                                 const std::vector<AttentionSegment>& kv_segments, std::int64_t c,
                                 std::int64_t h, bool accumulate_dq, bool accumulate_dkv,
                                 FlashBlocks blocks = {});
// Self-attention over one sequence: the above with one segment {0, T} on each side and q, k, v
// the column ranges of qkv (B, T, 3C), dq, dk, dv those of dqkv.
void flash_attention_forward(float* out, float* lse, const float* qkv, std::int64_t b,
                             std::int64_t t, std::int64_t c, std::int64_t h,
                             FlashBlocks blocks = {});
void flash_attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                              const float* lse, std::int64_t b, std::int64_t t, std::int64_t c,
                              std::int64_t h, FlashBlocks blocks = {});

void swiglu_forward(float* out, const float* x, std::int64_t n, std::int64_t f);
void swiglu_backward(float* dx, const float* dout, const float* x, std::int64_t n, std::int64_t f);

void cross_entropy_forward(float* loss, float* lse, const float* logits,
                           const std::int32_t* targets, std::int64_t n, std::int64_t vocab);
void cross_entropy_backward(float* dlogits, const float* logits, const float* lse,
                            const std::int32_t* targets, std::int64_t n, std::int64_t vocab,
                            float dloss);

void adamw_step(float* params, float* m, float* v, const float* grads, std::int64_t n,
                std::int64_t step, const AdamWOptions& options);

}  // namespace strata::kernels::cpu
