// The mixture-of-experts ops of one rank: the router (softmax, top-k, its backward and the
// load-balancing auxiliary loss), the permutation of token rows into expert-major order and
// back (the combine), and the grouped GEMM over consecutive row segments (the experts' MLPs).
// defines: moe_router_forward, moe_router_backward, moe_aux_loss_forward, moe_permute_forward,
//          moe_permute_backward, moe_unpermute_forward, moe_unpermute_backward,
//          grouped_linear_forward, grouped_linear_backward_data, grouped_linear_backward_weight
//
// The contract of ops.hpp holds: fp32 row-major contiguous tensors and int32 index tensors, all
// in memory of the stream's backend (on CUDA the indices and counts are read on the device, never
// copied to the host: no op here synchronises); std::invalid_argument for bad sizes before
// anything runs; outputs overwritten unless an `accumulate` option (or moe_aux_loss_forward's
// "adds") says otherwise; outputs never alias inputs. On the CPU, index values are range-checked
// before any output is written (std::out_of_range, as the embedding's tokens); on CUDA an expert
// index outside [0, E) drops that choice and a row index outside [-1, R_max) counts as dropped,
// never an access outside a tensor. Every op is deterministic (fixed orders, no float atomics).
// CPU: kernels/cpu/moe_ops_cpu.cpp (the GEMMs per segment through the linear layer's Eigen
// products); CUDA: kernels/cuda/moe.cu (one thread per row or element, single-block counting
// passes; first correct, not yet fast). The per-row arithmetic of the router, permutation and
// combine is one set of functions both backends run (kernels/detail/moe_rows.hpp).
//
// Names: N tokens (rows), C channels, E experts, k experts per token (slots), R_max rows of the
// permuted tensors. A layer's step:
//   forward:  logits = linear(x, w_router) -> moe_router_forward -> moe_aux_loss_forward
//             -> moe_permute_forward (rows grouped by expert, counts) -> grouped_linear_forward
//             (fc1, counts as segments) -> activation -> grouped_linear_forward (fc2)
//             -> moe_unpermute_forward(accumulate: into the residual stream)
//   backward: moe_unpermute_backward (drows, dtopk_w) -> grouped_linear_backward_* (x2)
//             -> moe_permute_backward(accumulate into dx) -> moe_router_backward (dlogits, with
//             the aux loss's gradient) -> linear_backward.
// Expert parallelism moves the permuted rows with an all-to-all between permute and the GEMMs;
// the received rows are then segments (source rank, local expert), s % G the local expert.
#pragma once

#include <cstdint>

#include "kernels/backend.hpp"

namespace strata::kernels {

// --- Router ----------------------------------------------------------------------------------

// Per row t of the router's logits:
//   probs[t, :] = softmax(logits[t, :]), max-subtracted: exp(z - max) in fp32 arguments, the
//                 sum of exponentials in double, each prob rounded once to fp32;
//   topk_idx[t, :] = the k experts of largest logit (equivalently of largest probability), in
//                 decreasing order; equal logits go to the lower expert index first. Logits
//                 are ordered by value, -0 below +0 and a NaN above +inf (below -inf when its
//                 sign bit is set), so k distinct experts are always chosen;
//   topk_w[t, s] = probs[t, topk_idx[t, s]], or with `normalize` that divided by the sum of the
//                 row's k selected probs (the sum in double; Mixtral's convention; without it
//                 DeepSeek-V2's).
// n may be 0; e >= 1; 1 <= k <= e (here and below, n k must stay below 2^31: row indices are
// int32).
Event moe_router_forward(const Stream& stream,
                         float* probs,            // (N, E) output
                         std::int32_t* topk_idx,  // (N, k) output, in [0, E)
                         float* topk_w,           // (N, k) output
                         const float* logits,     // (N, E)
                         std::int64_t n, std::int64_t e, std::int64_t k, bool normalize);

// dlogits = the gradient of  sum_{t,s} dtopk_w[t, s] topk_w[t, s]  +  aux_scale L_aux  with
// respect to the logits, through the softmax (and the normalisation) of the selected experts;
// the selection is piecewise constant and has no gradient. With p = probs[t, :] and the row's
// selected experts i_s:
//   no normalize:  dp[j] = sum_{s: i_s = j} dtopk_w[t, s]
//   normalize:     w_s = p[i_s] / Z, Z = sum_s p[i_s],
//                  dp[j] = sum_{s: i_s = j} (dtopk_w[t, s] - sum_r dtopk_w[t, r] w_r) / Z
//   aux:           dp[j] += aux_scale aux_coef E count_j / (N k N), the gradient of
//                  L_aux = aux_coef E sum_j f_j P_j,  f_j = count_j / (N k) (a constant),
//                  P_j = (1/N) sum_t probs[t, j];  count_j = the choices of topk_idx naming j
//                  (Switch Transformer's load-balancing loss, Fedus et al. 2021, eq. 4-6)
//   dlogits[t, j] = p[j] (dp[j] - sum_m p[m] dp[m])   (the softmax's backward, sums in double).
// probs and topk_idx are moe_router_forward's outputs. aux_coef == 0 (or aux_scale == 0) means
// no aux term. Overwrites dlogits. n may be 0; e >= 1; 1 <= k <= e; aux_coef, aux_scale finite.
Event moe_router_backward(const Stream& stream,
                          float* dlogits,                // (N, E) output
                          const float* dtopk_w,          // (N, k)
                          const float* probs,            // (N, E) the forward's
                          const std::int32_t* topk_idx,  // (N, k) the forward's
                          std::int64_t n, std::int64_t e, std::int64_t k, bool normalize,
                          float aux_coef, float aux_scale);

// Adds aux_scale * L_aux (moe_router_backward's formula) into *loss, a double in memory of the
// stream's backend, like the executor's fp64 loss buffer. The column sums of probs (rows in
// order) and the terms count_j * column_j (experts in order) are formed in double, the same on
// both backends. n == 0 adds nothing. e >= 1; 1 <= k <= e; aux_coef, aux_scale finite.
Event moe_aux_loss_forward(const Stream& stream,
                           double* loss,                  // (1) added into
                           const float* probs,            // (N, E)
                           const std::int32_t* topk_idx,  // (N, k)
                           std::int64_t n, std::int64_t e, std::int64_t k, float aux_coef,
                           float aux_scale);

// --- Permutation (dispatch) and combine ------------------------------------------------------

// Gathers each token's rows for its experts, grouped by expert in increasing expert order and,
// within an expert, in increasing token index (then slot, should a token name an expert twice):
//   rows_out[row_of[t, s]] = x[t] for every kept choice (t, s);
//   counts[j] = rows kept for expert j; the rows of expert j start at sum_{i<j} counts[i];
//   row_of[t, s] = -1 for a dropped choice; rows_out rows from sum(counts) to R_max - 1 are 0.
// capacity == 0: dropless, every choice is kept. capacity > 0: each expert keeps at most
// `capacity` of its choices, those of largest topk_w (equal weights: the lower token index,
// then slot; weights ordered as moe_router_forward orders logits), still in token order.
// topk_w is read only when capacity > 0 (it may be nullptr otherwise).
// r_max must hold the most rows the call can keep, whatever the routing: n k when dropless,
// min(n k, e capacity) with a capacity (std::invalid_argument before anything is written
// otherwise). The bound is static, so the CUDA version needs no copy of the routing to the host
// and both backends accept and reject the same calls. n may be 0; c, e >= 1; 1 <= k <= e;
// r_max, capacity >= 0.
Event moe_permute_forward(const Stream& stream,
                          float* rows_out,               // (R_max, C) output
                          std::int32_t* row_of,          // (N, k) output, in [-1, R_max)
                          std::int32_t* counts,          // (E) output
                          const float* x,                // (N, C)
                          const std::int32_t* topk_idx,  // (N, k) in [0, E)
                          const float* topk_w,           // (N, k), or nullptr when dropless
                          std::int64_t n, std::int64_t c, std::int64_t e, std::int64_t k,
                          std::int64_t r_max, std::int64_t capacity);

// The permutation's backward: dx[t] = sum over kept slots s, in slot order, of
// drows[row_of[t, s]] (the sum formed first, then written, or added with `accumulate`: old +
// new). A token with no kept slot gets 0 (unchanged with accumulate).
// row_of entries in [-1, R_max) (-1: dropped). n may be 0; c, k >= 1; r_max >= 0.
Event moe_permute_backward(const Stream& stream,
                           float* dx,                   // (N, C) output, or accumulated
                           const float* drows,          // (R_max, C)
                           const std::int32_t* row_of,  // (N, k) from moe_permute_forward
                           std::int64_t n, std::int64_t c, std::int64_t k, std::int64_t r_max,
                           bool accumulate);

// The combine: y[t] = sum over kept slots s, in slot order, of topk_w[t, s] rows[row_of[t, s]]
// (dropped slots contribute 0), formed first and then written, or added into y with
// `accumulate` (old + new: how the expert output joins the residual stream).
// Same sizes as moe_permute_backward.
Event moe_unpermute_forward(const Stream& stream,
                            float* y,                    // (N, C) output, or accumulated
                            const float* rows,           // (R_max, C) the experts' outputs
                            const std::int32_t* row_of,  // (N, k) from moe_permute_forward
                            const float* topk_w,         // (N, k)
                            std::int64_t n, std::int64_t c, std::int64_t k, std::int64_t r_max,
                            bool accumulate);

// The combine's backward:
//   drows[row_of[t, s]] = topk_w[t, s] dy[t] for every kept slot; rows nobody references are 0;
//   dtopk_w[t, s] = dot(dy[t], rows[row_of[t, s]]) (summed in double), 0 when dropped.
// Each row must be referenced by one slot at most (as moe_permute_forward writes row_of).
// Both outputs overwritten. n may be 0; c, k >= 1; r_max >= 0.
Event moe_unpermute_backward(const Stream& stream,
                             float* drows,                // (R_max, C) output
                             float* dtopk_w,              // (N, k) output
                             const float* dy,             // (N, C)
                             const float* rows,           // (R_max, C) the forward's input
                             const std::int32_t* row_of,  // (N, k)
                             const float* topk_w,         // (N, k)
                             std::int64_t n, std::int64_t c, std::int64_t k, std::int64_t r_max);

// --- Grouped GEMM over row segments ----------------------------------------------------------

// The R rows of x are S consecutive segments, segment s holding counts[s] rows (moe_permute's
// counts, or after an all-to-all the (source rank, local expert) segments); segment s is
// multiplied by weight w[s % G] (PyTorch's nn.Linear layout, (OUT, IN)):
//   y[segment s] = x[segment s] w[s % G]^T;  rows after the last segment (sum(counts) < R) get 0.
// counts live in the stream's memory. On the CPU each must be >= 0 and their sum <= R
// (std::invalid_argument before anything is written); on CUDA they are read on the device, a
// negative count taken as 0 and the segments cut at R. The CPU runs linear_forward's Eigen
// product on each segment's rows in place (linear_forward on those rows, no bias, bit for bit);
// CUDA one thread per output element, a dot product over IN in fp32.
// n_segments (S) >= 0, groups (G) >= 1, in, out >= 1, r >= 0.
Event grouped_linear_forward(const Stream& stream,
                             float* y,                    // (R, OUT) output
                             const float* x,              // (R, IN)
                             const float* w,              // (G, OUT, IN)
                             const std::int32_t* counts,  // (S)
                             std::int64_t n_segments, std::int64_t groups, std::int64_t in,
                             std::int64_t out, std::int64_t r);

// dx[segment s] = dy[segment s] w[s % G]; rows after the last segment get 0. Overwrites dx.
// CPU: linear_backward_data per segment. Sizes and counts as grouped_linear_forward.
Event grouped_linear_backward_data(const Stream& stream,
                                   float* dx,                   // (R, IN) output
                                   const float* dy,             // (R, OUT)
                                   const float* w,              // (G, OUT, IN)
                                   const std::int32_t* counts,  // (S)
                                   std::int64_t n_segments, std::int64_t groups, std::int64_t in,
                                   std::int64_t out, std::int64_t r);

// dw[g] = sum over segments s with s % G == g, in increasing s, of dy[segment s]^T x[segment s]
// (0 for a group with no rows), written, or added into dw with `accumulate`. CPU:
// linear_backward_weight per segment (the first of each group overwriting unless accumulate, the
// later ones adding inside the GEMM); CUDA: one thread per element of dw, rows in order, the sum
// formed first and then written or added. Sizes and counts as grouped_linear_forward.
Event grouped_linear_backward_weight(const Stream& stream,
                                     float* dw,                   // (G, OUT, IN) output/accum.
                                     const float* dy,             // (R, OUT)
                                     const float* x,              // (R, IN)
                                     const std::int32_t* counts,  // (S)
                                     std::int64_t n_segments, std::int64_t groups, std::int64_t in,
                                     std::int64_t out, std::int64_t r, bool accumulate);

}  // namespace strata::kernels
