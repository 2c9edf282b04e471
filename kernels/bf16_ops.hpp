// The ops of kernels/ on bf16 tensors (kernels/dtype.hpp): the same entry points as the fp32
// ones (ops.hpp, model_ops.hpp, elementwise_ops.hpp), overloaded on the tensors' type, with the
// same contracts (shapes, accumulate semantics, checks) except:
// - arithmetic is fp32 and each stored element is rounded once to nearest even. On the CPU the
//   op runs its fp32 implementation on widened copies and rounds the outputs (so accumulating
//   into a bf16 output adds in fp32 and rounds the sum); on CUDA the kernels widen in registers
//   (kernels/cuda/dtype.cuh) and the GEMMs accumulate in fp32 (cublasGemmEx, COMPUTE_32F). The
//   two differ where their fp32 results do, by at most about one bf16 step (2^-8 relative):
//   tests/kernels/cross_backend_test.cpp compares them within 1e-2.
// - LayerNorm's per-row mean and rstd stay fp32 (they feed the backward's arithmetic).
// - the linear layer with bias on CUDA rounds the product, then adds the bias and rounds again
//   (the CPU rounds once): one more bf16 step at most.
// Conversions between the two types are ops too: fp32 -> bf16 rounds to nearest even, bf16 ->
// fp32 is exact.
#pragma once

#include <cstdint>

#include "kernels/backend.hpp"
#include "kernels/dtype.hpp"

namespace strata::kernels {

Event convert(const Stream& stream, bf16* y, const float* x, std::int64_t n);
Event convert(const Stream& stream, float* y, const bf16* x, std::int64_t n);

Event gelu_forward(const Stream& stream, bf16* y, const bf16* x, std::int64_t n);
Event gelu_backward(const Stream& stream, bf16* dx, const bf16* dy, const bf16* x, std::int64_t n);

Event layer_norm_forward(const Stream& stream, bf16* y, float* mean, float* rstd, const bf16* x,
                         const bf16* gamma, const bf16* beta, std::int64_t n, std::int64_t c,
                         float eps = 1e-5f);
Event layer_norm_backward(const Stream& stream, bf16* dx, bf16* dgamma, bf16* dbeta, const bf16* dy,
                          const bf16* x, const bf16* gamma, const float* mean, const float* rstd,
                          std::int64_t n, std::int64_t c, bool accumulate = false);

Event linear_forward(const Stream& stream, bf16* y, const bf16* x, const bf16* weight,
                     const bf16* bias, std::int64_t n, std::int64_t in, std::int64_t out);
Event linear_backward_data(const Stream& stream, bf16* dx, const bf16* dy, const bf16* weight,
                           std::int64_t n, std::int64_t in, std::int64_t out,
                           bool accumulate = false);
Event linear_backward_weight(const Stream& stream, bf16* dweight, bf16* dbias, const bf16* dy,
                             const bf16* x, std::int64_t n, std::int64_t in, std::int64_t out,
                             bool accumulate = false);

Event add_inplace(const Stream& stream, bf16* y, const bf16* x, std::int64_t n);

}  // namespace strata::kernels
