// Internal: launchers for the CUDA versions of the ops of model_ops.hpp and elementwise_ops.hpp
// that have one (kernels/cuda/blas.cpp: the linear layer's GEMMs through cuBLAS;
// kernels/cuda/elementwise.cu: the element-wise ops, SwiGLU, AdamW, the bias epilogues). Each
// enqueues on `stream` (the current device must be the stream's) and checks its calls.
// Arguments are already validated by the entry points; see the public headers for contracts.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/dtype.hpp"
#include "kernels/model_ops.hpp"
#include "kernels/cuda/runtime.hpp"

namespace strata::kernels::cuda {

// The stream's cudaStream_t, with its device made the calling thread's current one.
inline cudaStream_t stream_of(const Stream& stream) {
  cuda_detail::set_current_device(stream.device());
  return static_cast<cudaStream_t>(stream.native_handle());
}

// --- Shards of tensor- and sequence-parallel layouts (parallel_ops.cu) --------------------------
void embedding_shard_forward(cudaStream_t stream, float* out, const std::int32_t* tokens,
                             const float* wte_shard, std::int64_t first, std::int64_t rows,
                             std::int64_t n, std::int64_t c);
void embedding_shard_backward(cudaStream_t stream, float* dwte_shard, const float* dout,
                              const std::int32_t* tokens, std::int64_t first, std::int64_t rows,
                              std::int64_t n, std::int64_t c);
void add_positions(cudaStream_t stream, float* x, const float* wpe, std::int64_t first_row,
                   std::int64_t rows, std::int64_t t, std::int64_t c);
void positions_backward(cudaStream_t stream, float* dwpe, const float* dx, std::int64_t first_row,
                        std::int64_t rows, std::int64_t t, std::int64_t c);
void softmax_stats(cudaStream_t stream, float* stats, const float* logits,
                   const std::int32_t* targets, std::int64_t first, std::int64_t cols,
                   std::int64_t n);
void cross_entropy_from_stats(cudaStream_t stream, float* lse, float* loss_sum, const float* stats,
                              std::int64_t n);
// lse, or (lse == nullptr) each row's lse recomputed from the combined stats.
void cross_entropy_shard_backward(cudaStream_t stream, float* dlogits, const float* logits,
                                  const float* lse, const float* stats, const std::int32_t* targets,
                                  std::int64_t first, std::int64_t cols, std::int64_t n,
                                  float scale);

// --- Causal attention, fused and unfused (attention.cu) ----------------------------------------
// The largest head dimension (c / h) the CUDA kernels take (the entry point checks it).
inline constexpr int kMaxHeadDim = 256;
// The most segments of positions on each side of attention_segments_* (attention_segments.cu).
inline constexpr int kMaxSegments = 64;
// attention_segments.cu: the attention over rows with explicit positions (model_ops.hpp).
void attention_segments_forward(cudaStream_t stream, float* out, float* lse, const float* q,
                                std::int64_t ldq, const float* k, const float* v,
                                std::int64_t ldkv, std::int64_t b, std::int64_t tq,
                                std::int64_t tk, const std::vector<AttentionSegment>& q_segments,
                                const std::vector<AttentionSegment>& kv_segments, std::int64_t c,
                                std::int64_t h, bool merge);
void attention_segments_backward(cudaStream_t stream, float* dq, std::int64_t lddq, float* dk,
                                 float* dv, std::int64_t lddkv, const float* dout, const float* q,
                                 std::int64_t ldq, const float* k, const float* v,
                                 std::int64_t ldkv, const float* out, const float* lse,
                                 std::int64_t b, std::int64_t tq, std::int64_t tk,
                                 const std::vector<AttentionSegment>& q_segments,
                                 const std::vector<AttentionSegment>& kv_segments, std::int64_t c,
                                 std::int64_t h, bool accumulate_dq, bool accumulate_dkv);
void flash_attention_forward(cudaStream_t stream, float* out, float* lse, const float* qkv,
                             std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h);
void flash_attention_backward(cudaStream_t stream, float* dqkv, const float* dout, const float* qkv,
                              const float* out, const float* lse, std::int64_t b, std::int64_t t,
                              std::int64_t c, std::int64_t h);
void attention_forward(cudaStream_t stream, float* out, float* att, const float* qkv,
                       std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h);
void attention_backward(cudaStream_t stream, float* dqkv, const float* dout, const float* qkv,
                        const float* att, std::int64_t b, std::int64_t t, std::int64_t c,
                        std::int64_t h);

// --- Embedding and the LM-head loss (embedding_loss.cu) ----------------------------------------
void embedding_forward(cudaStream_t stream, float* out, const std::int32_t* tokens,
                       const float* wte, const float* wpe, std::int64_t b, std::int64_t t,
                       std::int64_t c, std::int64_t vocab);
void embedding_backward(cudaStream_t stream, float* dwte, float* dwpe, const float* dout,
                        const std::int32_t* tokens, std::int64_t b, std::int64_t t, std::int64_t c,
                        std::int64_t vocab);
void cross_entropy_forward(cudaStream_t stream, float* loss, float* lse, const float* logits,
                           const std::int32_t* targets, std::int64_t n, std::int64_t vocab);
void cross_entropy_backward(cudaStream_t stream, float* dlogits, const float* logits,
                            const float* lse, const std::int32_t* targets, std::int64_t n,
                            std::int64_t vocab, float dloss);

// --- RMSNorm (rms_norm.cu) --------------------------------------------------------------------
void rms_norm_forward(cudaStream_t stream, float* y, float* rstd, const float* x,
                      const float* weight, std::int64_t n, std::int64_t c, float eps);
void rms_norm_backward(cudaStream_t stream, float* dx, float* dweight, const float* dy,
                       const float* x, const float* weight, const float* rstd, std::int64_t n,
                       std::int64_t c, bool accumulate);

// --- Linear (blas.cpp) -------------------------------------------------------------------------
void linear_forward(cudaStream_t stream, int device, float* y, const float* x, const float* weight,
                    const float* bias, std::int64_t n, std::int64_t in, std::int64_t out);
void linear_backward_data(cudaStream_t stream, int device, float* dx, const float* dy,
                          const float* weight, std::int64_t n, std::int64_t in, std::int64_t out,
                          bool accumulate);
void linear_backward_weight(cudaStream_t stream, int device, float* dweight, float* dbias,
                            const float* dy, const float* x, std::int64_t n, std::int64_t in,
                            std::int64_t out, bool accumulate);
// bf16 tensors, fp32 accumulation (cublasGemmEx, CUBLAS_COMPUTE_32F), the product rounded once;
// the bias added (and rounded) after it, its gradient summed in fp32.
void linear_forward(cudaStream_t stream, int device, bf16* y, const bf16* x, const bf16* weight,
                    const bf16* bias, std::int64_t n, std::int64_t in, std::int64_t out);
void linear_backward_data(cudaStream_t stream, int device, bf16* dx, const bf16* dy,
                          const bf16* weight, std::int64_t n, std::int64_t in, std::int64_t out,
                          bool accumulate);
void linear_backward_weight(cudaStream_t stream, int device, bf16* dweight, bf16* dbias,
                            const bf16* dy, const bf16* x, std::int64_t n, std::int64_t in,
                            std::int64_t out, bool accumulate);

// --- Element-wise (elementwise.cu) -------------------------------------------------------------
// y[i, j] += bias[j] over rows x c.
void add_bias_rows(cudaStream_t stream, float* y, const float* bias, std::int64_t rows,
                   std::int64_t c);
// dbias[j] = sum_i dy[i, j] (rows added in order from 0), or dbias[j] += that sum with
// accumulate (the CPU's column_sums); rows == 0 writes zeros, or with accumulate nothing.
void column_sums(cudaStream_t stream, float* dbias, const float* dy, std::int64_t rows,
                 std::int64_t c, bool accumulate);
void add_inplace(cudaStream_t stream, float* y, const float* x, std::int64_t n);
// The same on bf16 storage (fp32 arithmetic, one rounding per stored element), and the
// conversions fp32 -> bf16 (to nearest even) and bf16 -> fp32 (exact).
void add_bias_rows(cudaStream_t stream, bf16* y, const bf16* bias, std::int64_t rows,
                   std::int64_t c);
void column_sums(cudaStream_t stream, bf16* dbias, const bf16* dy, std::int64_t rows,
                 std::int64_t c, bool accumulate);
void add_inplace(cudaStream_t stream, bf16* y, const bf16* x, std::int64_t n);
void convert(cudaStream_t stream, bf16* y, const float* x, std::int64_t n);
void convert(cudaStream_t stream, float* y, const bf16* x, std::int64_t n);
void scale_inplace(cudaStream_t stream, float* y, float alpha, std::int64_t n);
void copy_columns(cudaStream_t stream, float* y, std::int64_t ldy, const float* x, std::int64_t ldx,
                  std::int64_t rows, std::int64_t width, bool accumulate);
void add_residual_bias(cudaStream_t stream, float* y, const float* residual, const float* bias,
                       std::int64_t rows, std::int64_t c);
// dbias[j] += dy[i, j] for i in order (the running sum, as the CPU's bias_backward).
void bias_backward(cudaStream_t stream, float* dbias, const float* dy, std::int64_t rows,
                   std::int64_t c);
void swiglu_forward(cudaStream_t stream, float* out, const float* x, std::int64_t n,
                    std::int64_t f);
void swiglu_backward(cudaStream_t stream, float* dx, const float* dout, const float* x,
                     std::int64_t n, std::int64_t f);
// One AdamW step with the bias corrections computed by the caller (as the CPU does, in double).
void adamw_step(cudaStream_t stream, float* params, float* m, float* v, const float* grads,
                std::int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                float bias1, float bias2);

}  // namespace strata::kernels::cuda
