// The remaining ops of a GPT-style training step, forward and backward: embeddings, RMSNorm,
// linear layers, causal self-attention, SwiGLU, the LM-head cross-entropy loss and AdamW.
// defines: embedding_forward, embedding_backward, rms_norm_forward, rms_norm_backward,
//          linear_forward, linear_backward, linear_backward_data, linear_backward_weight,
//          attention_forward, attention_backward, flash_attention_forward,
//          flash_attention_backward, AttentionSegment, attention_segments_forward,
//          attention_segments_backward, context_parallel_segments,
//          context_parallel_gathered_segments, swiglu_forward, swiglu_backward,
//          cross_entropy_forward, cross_entropy_backward, AdamWOptions, adamw_step
//
// The contract of ops.hpp holds here too (fp32 row-major contiguous tensors on the stream's
// backend, outputs overwritten unless an `accumulate` option says otherwise,
// std::invalid_argument for bad sizes before anything runs).
// Integer inputs (tokens, targets) are int32; on the CPU their values are range-checked and an
// out-of-range one throws std::out_of_range before any output is written.
// Every op has a CUDA version (kernels/cuda/; the attentions take head dimensions up to 256, the
// attention over explicit positions up to 64 segments each side); ids on the device are not
// range-checked (an out-of-range one gives NaN rows).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/backend.hpp"

namespace strata::kernels {

// --- Embedding -------------------------------------------------------------------------------

// Token plus learned position embedding: out[b, t, :] = wte[tokens[b, t], :] + wpe[t, :].
// b and t may be 0; c and vocab must be positive. wpe needs only its first T rows.
Event embedding_forward(const Stream& stream,
                        float* out,                  // (B, T, C) output
                        const std::int32_t* tokens,  // (B, T) in [0, vocab)
                        const float* wte,            // (V, C) token table
                        const float* wpe,            // (T, C) position table
                        std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t vocab);

// Gradients of the tables, scattered from dout: dwte[v] = sum over (b, t) with tokens[b, t] == v
// of dout[b, t]; dwpe[t] = sum_b dout[b, t]. Both are overwritten (rows of unused tokens are
// zero). Accumulation runs over (b, t) in order, so results are deterministic.
Event embedding_backward(const Stream& stream,
                         float* dwte,                 // (V, C) output
                         float* dwpe,                 // (T, C) output
                         const float* dout,           // (B, T, C)
                         const std::int32_t* tokens,  // (B, T) in [0, vocab)
                         std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t vocab);

// --- RMSNorm ---------------------------------------------------------------------------------

// RMSNorm over the last dimension: y = x * rstd * weight, rstd = 1 / sqrt(mean_c(x^2) + eps).
// Saves rstd for the backward pass. n may be 0; c and eps must be positive.
Event rms_norm_forward(const Stream& stream,
                       float* y,             // (N, C) output
                       float* rstd,          // (N) output
                       const float* x,       // (N, C)
                       const float* weight,  // (C)
                       std::int64_t n, std::int64_t c, float eps = 1e-5f);

// With xhat = x * rstd and g = dy * weight:
//   dx = rstd * (g - xhat * mean_c(g * xhat)),  dweight = sum_n(dy * xhat).
// dx is overwritten. dweight is overwritten (zeros when n == 0), or with accumulate the sum is
// added into it: dweight[j] = dweight[j] + sum_n(...), the same sum as without accumulate, so
// the result is bit-identical to adding the overwriting result (n == 0 leaves it unchanged).
Event rms_norm_backward(const Stream& stream,
                        float* dx,            // (N, C) output
                        float* dweight,       // (C) output, or accumulated into
                        const float* dy,      // (N, C)
                        const float* x,       // (N, C) the forward input
                        const float* weight,  // (C)
                        const float* rstd,    // (N) saved by the forward pass
                        std::int64_t n, std::int64_t c, bool accumulate = false);

// --- Linear ----------------------------------------------------------------------------------

// y = x W^T + bias (PyTorch's nn.Linear layout: W is (OUT, IN)). bias may be nullptr (no bias).
// n may be 0; in and out must be positive.
Event linear_forward(const Stream& stream,
                     float* y,             // (N, OUT) output
                     const float* x,       // (N, IN)
                     const float* weight,  // (OUT, IN)
                     const float* bias,    // (OUT) or nullptr
                     std::int64_t n, std::int64_t in, std::int64_t out);

// dx = dy W, dW = dy^T x, dbias = sum_n(dy). dbias may be nullptr (a layer without bias).
// dweight and dbias are overwritten (zeros when n == 0). Runs linear_backward_data then
// linear_backward_weight (accumulate off) and gives their results bit for bit.
Event linear_backward(const Stream& stream,
                      float* dx,            // (N, IN) output
                      float* dweight,       // (OUT, IN) output
                      float* dbias,         // (OUT) output, or nullptr
                      const float* dy,      // (N, OUT)
                      const float* x,       // (N, IN) the forward input
                      const float* weight,  // (OUT, IN)
                      std::int64_t n, std::int64_t in, std::int64_t out);

// The two GEMMs of linear_backward, each usable alone (the data gradient on the critical path,
// the weight gradient deferred or overlapped with communication, as in Megatron-LM and
// ZeRO). Accumulate semantics, for the Plan's gradient accumulators, without temporaries:
// - accumulate off: the outputs are overwritten, bit-identical to linear_backward's.
// - accumulate on: the GEMM adds its products into the output (BLAS beta = 1). The result is
//   old + new within fp32 rounding. It is bit-identical to adding the overwriting result only
//   while the reduction dimension (N for dW, OUT for dx) fits one depth block of the CPU GEMM
//   (Eigen's blocking: 256 here), since the GEMM adds each block into the output in turn; a
//   longer reduction rounds at each block boundary. Runs are deterministic either way.

// dx = dy W, or dx += dy W with accumulate. n may be 0 (nothing is written).
Event linear_backward_data(const Stream& stream,
                           float* dx,            // (N, IN) output, or accumulated into
                           const float* dy,      // (N, OUT)
                           const float* weight,  // (OUT, IN)
                           std::int64_t n, std::int64_t in, std::int64_t out,
                           bool accumulate = false);

// dW = dy^T x and dbias = sum_n(dy), or both added into with accumulate. dbias may be nullptr.
// dbias sums the rows in order (row 0 first) and with accumulate adds that sum at the end:
// dbias[o] = dbias[o] + sum_n(dy[n, o]), bit-identical to adding the overwriting result.
// n == 0 writes zeros, or with accumulate leaves both unchanged.
Event linear_backward_weight(const Stream& stream,
                             float* dweight,   // (OUT, IN) output, or accumulated into
                             float* dbias,     // (OUT) output, accumulated into, or nullptr
                             const float* dy,  // (N, OUT)
                             const float* x,   // (N, IN) the forward input
                             std::int64_t n, std::int64_t in, std::int64_t out,
                             bool accumulate = false);

// --- Causal self-attention -------------------------------------------------------------------

// The core of multi-head causal self-attention (MHA; no GQA) on a fused QKV tensor: per batch row
// the columns are [q | k | v], each C wide and split into H heads of D = C / H columns (head h
// owns columns h*D .. h*D + D - 1 of each part). Per head:
//   att[t, s] = softmax_s(q[t] . k[s] / sqrt(D)) over s <= t (0 for s > t),
//   out[t, h*D : h*D + D] = sum_s att[t, s] v[s].
// att (the softmax probabilities) is saved for the backward pass. b and t may be 0; c and h
// must be positive and c divisible by h.
Event attention_forward(const Stream& stream,
                        float* out,        // (B, T, C) output
                        float* att,        // (B, H, T, T) output
                        const float* qkv,  // (B, T, 3C)
                        std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h);

// d(qkv) from dout and the saved probabilities, with datt[t, s] = dout[t] . v[s]:
//   dv[s] = sum_t att[t, s] dout[t],
//   dscore[t, s] = att[t, s] (datt[t, s] - sum_s' att[t, s'] datt[t, s']),
//   dq[t] = sum_s dscore[t, s] k[s] / sqrt(D),  dk[s] = sum_t dscore[t, s] q[t] / sqrt(D).
Event attention_backward(const Stream& stream,
                         float* dqkv,        // (B, T, 3C) output
                         const float* dout,  // (B, T, C)
                         const float* qkv,   // (B, T, 3C) the forward input
                         const float* att,   // (B, H, T, T) saved by the forward pass
                         std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h);

// --- Fused causal self-attention (FlashAttention) -----------------------------------------------

// The same attention as attention_forward / attention_backward (same qkv layout, heads, causal
// mask and scale 1/sqrt(D)), computed as FlashAttention does (Dao et al. 2022, arXiv:2205.14135;
// the loop order of FlashAttention-2, Dao 2023, arXiv:2307.08691): the (T, T) probabilities are
// never stored. The forward saves one fp32 statistic per query row instead,
//   lse[b, h, t] = log sum_{s <= t} exp(q[t] . k[s] / sqrt(D)),
// and the backward recomputes the probabilities block by block as exp(score - lse). Saved state:
// 4 B H T bytes instead of attention_forward's 4 B H T^2.
//
// CPU kernel: blocks of 64 queries x 64 keys; the forward runs an online softmax over the key
// blocks (a running max and sum per query row, the output accumulator rescaled when the max
// grows), the backward loops over key blocks outer and query blocks inner; blocks wholly above
// the diagonal are skipped, so it computes T (T + 64) / 2 score entries per head and direction
// (T a multiple of 64; the causal triangle has T (T + 1) / 2) where the unfused kernel runs the
// whole T x T square (FLOP counts in kernels/README.md). Scratch: a few (64, D) and
// (64, 64) blocks, plus a (T) vector in the backward, allocated once per call
// (kernels/README.md gives the bytes). Deterministic (a fixed loop order, no atomics) and
// independent of where the tensors lie.
//
// Numerics against the unfused ops (fp32 both; they differ in where the softmax is normalised,
// in the order of the sums over keys and in delta[t] below): out and d(qkv) agree within 1e-4 of
// the tensor's largest magnitude, the bound tests/kernels/flash_attention_test.cpp holds them
// to. Expected, and measured over normal(0, 1) inputs at T = 1 to 300 (the test prints it) and
// T = 1024 (kernels_bench --attention): at most 3e-7 for out and 6e-7 for d(qkv), a few fp32
// roundings (with Eigen or the plain loops alike). Against the double reference (T up to 67): out
// within 2e-7 of its largest element, lse within 1e-7, d(qkv) within 6e-7 of central differences.
// b and t may be 0; c and h must be positive and c divisible by h.
Event flash_attention_forward(const Stream& stream,
                              float* out,        // (B, T, C) output
                              float* lse,        // (B, H, T) output
                              const float* qkv,  // (B, T, 3C)
                              std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h);

// d(qkv) as attention_backward, from the forward's out and lse (FlashAttention-2's backward):
//   delta[t] = dout[t] . out[t] (per head),  P[t, s] = exp(q[t] . k[s] / sqrt(D) - lse[t]),
//   dv[s] = sum_t P[t, s] dout[t],  dP[t, s] = dout[t] . v[s],
//   dS[t, s] = P[t, s] (dP[t, s] - delta[t]) / sqrt(D),
//   dq[t] = sum_s dS[t, s] k[s],  dk[s] = sum_t dS[t, s] q[t].
// delta[t] equals attention_backward's sum_s P[t, s] dP[t, s], formed from D products (summed
// in double) instead of up to T.
Event flash_attention_backward(const Stream& stream,
                               float* dqkv,        // (B, T, 3C) output
                               const float* dout,  // (B, T, C)
                               const float* qkv,   // (B, T, 3C) the forward input
                               const float* out,   // (B, T, C) the forward output
                               const float* lse,   // (B, H, T) saved by the forward pass
                               std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h);

// --- Attention over explicit positions (context parallelism) ----------------------------------

// A run of rows holding consecutive sequence positions: the segments of a tensor are listed in
// row order and cover its rows, so segment i holds rows [first_i, first_i + length) with first_i
// the sum of the lengths before it, at positions [position, position + length). Every batch row
// uses the same list. length >= 1 and position >= 0; positions may repeat or run backwards
// between segments (a context-parallel rank's rows, or all ranks' rows gathered in rank order).
struct AttentionSegment {
  std::int64_t position;
  std::int64_t length;
  friend bool operator==(const AttentionSegment&, const AttentionSegment&) = default;
};

// Context parallelism's load-balanced layout (Megatron-Core's --context-parallel-size): the
// sequence of seq_len positions is cut into 2 cp chunks of seq_len / (2 cp), and rank r holds
// chunks r and 2 cp - 1 - r, in that order (every rank then computes the same number of causal
// score entries). Returns rank's rows: {r L, L}, {(2 cp - 1 - r) L, L} with L = seq_len / (2 cp);
// for cp = 1, the one segment {0, seq_len}. seq_len must be a positive multiple of 2 cp when
// cp > 1, cp >= 1 and rank in [0, cp); std::invalid_argument names the values otherwise.
std::vector<AttentionSegment> context_parallel_segments(std::int64_t seq_len, int cp, int rank);

// All ranks' rows in rank order: the segments of every rank's (seq_len / cp) rows gathered one
// after another along the sequence (what the all-gather variant attends to), i.e.
// context_parallel_segments(seq_len, cp, 0), then rank 1's, ... Same conditions.
std::vector<AttentionSegment> context_parallel_gathered_segments(std::int64_t seq_len, int cp);

// Causal multi-head attention between queries and keys/values whose rows carry explicit
// positions: key s is visible to query t iff pos(s) <= pos(t). Scale 1/sqrt(D), H heads of
// D = C / H columns (head h owns columns h*D .. h*D + D - 1 of q, k, v and out), MHA only.
// q holds (B, Tq) rows of leading dimension ldq (batch row i, row t at q + (i Tq + t) ldq), of
// which columns [0, C) are read; k and v hold (B, Tk) rows of leading dimension ldkv, C columns
// each. They may point into one fused tensor, with no copy: q = qkv, k = qkv + C, v = qkv + 2C,
// ldq = ldkv = 3C (a rank's own rows); or k = kv, v = kv + C, ldkv = 2C (another rank's k and v
// received as one (B, Tk, 2C) tensor), or k = qkv + C, v = qkv + 2C, ldkv = 3C for all ranks'
// qkv gathered as (B, Tk, 3C). (The all-gather's result is rank-major, (cp, B, Tk / cp, .);
// with B > 1 it must land in (B, Tk, .) order: receive rank j's rows at rows j Tk / cp of each
// batch row, e.g. an MPI vector datatype of B blocks Tk / cp rows long, or call per batch row.)
// out is (B, Tq, C) dense and lse (B, H, Tq):
//   lse[i, h, t] = log sum_{s: pos(s) <= pos(t)} exp(q[t] . k[s] / sqrt(D)),
//   out[i, t, h] = sum_{s: pos(s) <= pos(t)} exp(q[t] . k[s] / sqrt(D) - lse[i, h, t]) v[s].
// merge == false: out and lse are written; a query row that sees no key gets out 0, lse -inf.
// merge == true: out and lse already hold the attention of these queries over other keys (a
// row that saw none: out 0, lse -inf), and this call's keys are merged in, as over the union:
//   lse' = log(exp(lse) + exp(lse_new)),  out' = exp(lse - lse') out + exp(lse_new - lse') out_new
// (computed by starting the online softmax from max = lse, sum = 1, accumulator = out); rows that
// see no key in this call are left as they were, bit for bit. Any split of the keys over merged
// calls gives the one call's result within fp32 rounding (tested: context parallelism against
// the one-call flash_attention within 1e-5 of each tensor's largest element; measured at most
// 1.6e-7 for out and lse, 3.5e-7 for d(qkv), kernels/README.md). Context parallelism: the
// all-gather variant is one call per rank over all ranks' keys (kv_segments =
// context_parallel_gathered_segments); the ring variant one call per step over one rank's keys
// (kv_segments = context_parallel_segments of that rank), merge from the second step on.
//
// The kernel is flash_attention_forward's (flash_attention_forward is this op with one segment
// {0, T} each side and q, k, v in one qkv tensor, bit for bit): blocks of 64 queries x 64 keys,
// cut so that no block straddles two segments (a block then holds consecutive positions; a
// segment not a multiple of 64 long ends in a narrower block), an online softmax, and a block
// skipped when its first key's position is beyond its last query's. kernels/README.md counts
// the score entries computed for the context-parallel layouts. Deterministic, independent of
// where the tensors lie; outputs must not overlap inputs.
// b, tq and tk may be 0 (tk == 0: out 0 and lse -inf without merge; unchanged with it); c and h
// positive, c divisible by h; ldq, ldkv >= c; the segments' lengths must sum to tq and tk.
Event attention_segments_forward(const Stream& stream,
                                 float* out,      // (B, Tq, C) output, or merged into
                                 float* lse,      // (B, H, Tq) output, or merged into
                                 const float* q,  // (B, Tq) rows of ldq, columns [0, C)
                                 std::int64_t ldq,
                                 const float* k,  // (B, Tk) rows of ldkv, columns [0, C)
                                 const float* v,  // (B, Tk) rows of ldkv, columns [0, C)
                                 std::int64_t ldkv, std::int64_t b, std::int64_t tq,
                                 std::int64_t tk, const std::vector<AttentionSegment>& q_segments,
                                 const std::vector<AttentionSegment>& kv_segments, std::int64_t c,
                                 std::int64_t h, bool merge);

// The gradients through this call's keys, from the final out and lse (over all keys, after the
// last merge) and dout: flash_attention_backward's formulas with the mask pos(s) <= pos(t),
//   delta[t] = dout[t] . out[t],  P[t, s] = exp(q[t] . k[s] / sqrt(D) - lse[t]),
//   dS[t, s] = P[t, s] (dout[t] . v[s] - delta[t]) / sqrt(D),
//   dq[t] = sum_s dS[t, s] k[s],  dk[s] = sum_t dS[t, s] q[t],  dv[s] = sum_t P[t, s] dout[t],
// the sums over this call's keys (dq) and queries (dk, dv). Summed over the calls of a ring (or
// over the ranks, for gathered keys) they are the gradients of the attention over all keys.
// dq: (B, Tq) rows of leading dimension lddq, columns [0, C); dk and dv: (B, Tk) rows of
// lddkv, C columns each (dq = dqkv, dk = dqkv + C, dv = dqkv + 2C, lddq = lddkv = 3C is
// flash_attention_backward's layout); columns beyond C are not touched.
// accumulate_dq == false: dq is overwritten (0 for a row that sees no key); true: added into,
//   key block by key block, so within fp32 rounding of old + (the overwriting result).
// accumulate_dkv == false: dk, dv overwritten (0 for keys no query sees); true: each key
//   block's sum is formed as without accumulate and added at the end, so the result is
//   old + (the overwriting result) bit for bit (a ring step adding into the dk, dv it passes on).
// A query row whose lse is -inf (it saw no key in any call) contributes nothing.
Event attention_segments_backward(const Stream& stream,
                                  float* dq,  // (B, Tq) rows of lddq: output or accumulated
                                  std::int64_t lddq,
                                  float* dk,  // (B, Tk) rows of lddkv: output or accumulated
                                  float* dv,  // (B, Tk) rows of lddkv: output or accumulated
                                  std::int64_t lddkv,
                                  const float* dout,  // (B, Tq, C)
                                  const float* q, std::int64_t ldq, const float* k, const float* v,
                                  std::int64_t ldkv,
                                  const float* out,  // (B, Tq, C) the final forward output
                                  const float* lse,  // (B, H, Tq) the final forward lse
                                  std::int64_t b, std::int64_t tq, std::int64_t tk,
                                  const std::vector<AttentionSegment>& q_segments,
                                  const std::vector<AttentionSegment>& kv_segments, std::int64_t c,
                                  std::int64_t h, bool accumulate_dq, bool accumulate_dkv);

// --- SwiGLU ----------------------------------------------------------------------------------

// out = silu(gate) * up with silu(g) = g * sigmoid(g); per row of x the first F columns are the
// gate and the last F the up projection. n may be 0; f must be positive.
Event swiglu_forward(const Stream& stream,
                     float* out,      // (N, F) output
                     const float* x,  // (N, 2F): [gate | up]
                     std::int64_t n, std::int64_t f);

// dgate = dout * up * sigmoid(g) (1 + g (1 - sigmoid(g))),  dup = dout * silu(g).
Event swiglu_backward(const Stream& stream,
                      float* dx,          // (N, 2F) output: [dgate | dup]
                      const float* dout,  // (N, F)
                      const float* x,     // (N, 2F) the forward input
                      std::int64_t n, std::int64_t f);

// --- LM-head loss ----------------------------------------------------------------------------

// Softmax cross-entropy with integer targets, averaged over rows:
//   lse[i] = log sum_v exp(logits[i, v]),  loss = mean_i(lse[i] - logits[i, targets[i]]).
// lse is saved for the backward pass. n may be 0 (then loss = 0); vocab must be positive. There
// is no ignore index: every target must be in [0, vocab).
Event cross_entropy_forward(const Stream& stream,
                            float* loss,                  // (1) output
                            float* lse,                   // (N) output
                            const float* logits,          // (N, V)
                            const std::int32_t* targets,  // (N)
                            std::int64_t n, std::int64_t vocab);

// dlogits[i, v] = dloss / N * (softmax(logits[i])[v] - [v == targets[i]]), where dloss is the
// gradient of the mean loss (1 for a plain backward, the loss scale otherwise).
Event cross_entropy_backward(const Stream& stream,
                             float* dlogits,               // (N, V) output
                             const float* logits,          // (N, V) the forward input
                             const float* lse,             // (N) saved by the forward pass
                             const std::int32_t* targets,  // (N)
                             std::int64_t n, std::int64_t vocab, float dloss = 1.0f);

// --- AdamW -----------------------------------------------------------------------------------

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled, as in PyTorch's AdamW
};

// One AdamW step at step count `step` (1 for the first step), in place over n values:
//   m = beta1 m + (1 - beta1) g,  v = beta2 v + (1 - beta2) g^2,
//   mhat = m / (1 - beta1^step),  vhat = v / (1 - beta2^step),
//   param = param - lr (mhat / (sqrt(vhat) + eps) + weight_decay param).
// n may be 0; step >= 1; lr, weight_decay >= 0; betas in [0, 1); eps > 0.
Event adamw_step(const Stream& stream,
                 float* params,       // (n) updated in place
                 float* m,            // (n) first moment, updated in place (zeros before step 1)
                 float* v,            // (n) second moment, updated in place (zeros before step 1)
                 const float* grads,  // (n)
                 std::int64_t n, std::int64_t step, const AdamWOptions& options);

}  // namespace strata::kernels
