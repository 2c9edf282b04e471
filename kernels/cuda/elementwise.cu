// CUDA element-wise ops (elementwise_ops.hpp), SwiGLU and AdamW (model_ops.hpp), and the linear
// layer's bias epilogues: grid-stride loops, one thread per element, each element by the CPU
// reference's formula in the CPU's order. Reductions over rows (the bias gradients) run one
// thread per column adding the rows in order from row 0, as the CPU does, so they are
// bit-identical to it; the additions, copies and scalings are too. SwiGLU and AdamW differ from
// the CPU only in expf/sqrtf rounding and the device's fused multiply-adds (tolerances in
// tests/kernels/cross_backend_test.cpp). The bias epilogues, the in-place addition and the
// conversions also run on bf16 storage (T; fp32 arithmetic, one rounding per stored element).
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/grid.cuh"
#include "kernels/cuda/model_ops_cuda.hpp"

namespace strata::kernels::cuda {
namespace {

using grid::first_index;
using grid::kBlock;
__device__ std::int64_t grid_stride() { return grid::stride(); }

unsigned int grid_for(std::int64_t n) { return grid::blocks_for(n); }

template <typename T>
__global__ void add_bias_rows_kernel(T* __restrict__ y, const T* __restrict__ bias,
                                     std::int64_t rows, std::int64_t c) {
  for (std::int64_t i = first_index(); i < rows * c; i += grid_stride()) {
    y[i] = st<T>(ld(y[i]) + ld(bias[i % c]));
  }
}

template <typename T>
__global__ void column_sums_kernel(T* __restrict__ dbias, const T* __restrict__ dy,
                                   std::int64_t rows, std::int64_t c, bool accumulate) {
  for (std::int64_t j = first_index(); j < c; j += grid_stride()) {
    float acc = 0.0f;
    for (std::int64_t i = 0; i < rows; ++i) acc += ld(dy[i * c + j]);
    dbias[j] = st<T>(accumulate ? ld(dbias[j]) + acc : acc);
  }
}

template <typename To, typename From>
__global__ void convert_kernel(To* __restrict__ y, const From* __restrict__ x, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] = st<To>(ld(x[i]));
}

__global__ void bias_backward_kernel(float* __restrict__ dbias, const float* __restrict__ dy,
                                     std::int64_t rows, std::int64_t c) {
  for (std::int64_t j = first_index(); j < c; j += grid_stride()) {
    float d = dbias[j];
    for (std::int64_t i = 0; i < rows; ++i) d += dy[i * c + j];
    dbias[j] = d;
  }
}

template <typename T>
__global__ void add_inplace_kernel(T* __restrict__ y, const T* __restrict__ x, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] = st<T>(ld(y[i]) + ld(x[i]));
}

__global__ void scale_inplace_kernel(float* __restrict__ y, float alpha, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] = alpha * y[i];
}

__global__ void copy_columns_kernel(float* __restrict__ y, std::int64_t ldy,
                                    const float* __restrict__ x, std::int64_t ldx,
                                    std::int64_t rows, std::int64_t width, bool accumulate) {
  for (std::int64_t k = first_index(); k < rows * width; k += grid_stride()) {
    const std::int64_t i = k / width, j = k % width;
    float* yy = y + i * ldy + j;
    const float xx = x[i * ldx + j];
    *yy = accumulate ? *yy + xx : xx;
  }
}

__global__ void add_residual_bias_kernel(float* __restrict__ y, const float* __restrict__ residual,
                                         const float* __restrict__ bias, std::int64_t rows,
                                         std::int64_t c) {
  for (std::int64_t k = first_index(); k < rows * c; k += grid_stride()) {
    const float sum = y[k] + residual[k];
    y[k] = bias != nullptr ? sum + bias[k % c] : sum;
  }
}

__device__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void swiglu_forward_kernel(float* __restrict__ out, const float* __restrict__ x,
                                      std::int64_t n, std::int64_t f) {
  for (std::int64_t k = first_index(); k < n * f; k += grid_stride()) {
    const std::int64_t i = k / f, j = k % f;
    const float g = x[i * 2 * f + j];
    const float up = x[i * 2 * f + f + j];
    out[k] = __fmul_rn(__fmul_rn(g, sigmoid(g)), up);
  }
}

__global__ void swiglu_backward_kernel(float* __restrict__ dx, const float* __restrict__ dout,
                                       const float* __restrict__ x, std::int64_t n,
                                       std::int64_t f) {
  for (std::int64_t k = first_index(); k < n * f; k += grid_stride()) {
    const std::int64_t i = k / f, j = k % f;
    const float g = x[i * 2 * f + j];
    const float up = x[i * 2 * f + f + j];
    const float dy = dout[k];
    const float sig = sigmoid(g);
    // dy * up * sig * (1 + g (1 - sig)) and dy * g * sig, without contractions (the CPU's order).
    const float inner = __fadd_rn(1.0f, __fmul_rn(g, __fadd_rn(1.0f, -sig)));
    dx[i * 2 * f + j] = __fmul_rn(__fmul_rn(__fmul_rn(dy, up), sig), inner);
    dx[i * 2 * f + f + j] = __fmul_rn(__fmul_rn(dy, g), sig);
  }
}

__global__ void adamw_kernel(float* __restrict__ params, float* __restrict__ m,
                             float* __restrict__ v, const float* __restrict__ grads, std::int64_t n,
                             float lr, float beta1, float beta2, float eps, float weight_decay,
                             float bias1, float bias2) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    const float g = grads[i];
    const float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(1.0f - beta1, g));
    const float vi = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(__fmul_rn(1.0f - beta2, g), g));
    m[i] = mi;
    v[i] = vi;
    const float mhat = __fdiv_rn(mi, bias1);
    const float vhat = __fdiv_rn(vi, bias2);
    const float p = params[i];
    const float update =
        __fadd_rn(__fdiv_rn(mhat, __fadd_rn(__fsqrt_rn(vhat), eps)), __fmul_rn(weight_decay, p));
    params[i] = __fadd_rn(p, -__fmul_rn(lr, update));
  }
}

template <typename T>
void bias_rows(cudaStream_t stream, T* y, const T* bias, std::int64_t rows, std::int64_t c) {
  if (rows * c == 0) return;
  add_bias_rows_kernel<<<grid_for(rows * c), kBlock, 0, stream>>>(y, bias, rows, c);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void sums(cudaStream_t stream, T* dbias, const T* dy, std::int64_t rows, std::int64_t c,
          bool accumulate) {
  if (rows == 0 && accumulate) return;
  column_sums_kernel<<<grid_for(c), kBlock, 0, stream>>>(dbias, dy, rows, c, accumulate);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void add(cudaStream_t stream, T* y, const T* x, std::int64_t n) {
  if (n == 0) return;
  add_inplace_kernel<<<grid_for(n), kBlock, 0, stream>>>(y, x, n);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

template <typename To, typename From>
void convert_n(cudaStream_t stream, To* y, const From* x, std::int64_t n) {
  if (n == 0) return;
  convert_kernel<<<grid_for(n), kBlock, 0, stream>>>(y, x, n);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void add_bias_rows(cudaStream_t stream, float* y, const float* bias, std::int64_t rows,
                   std::int64_t c) {
  bias_rows(stream, y, bias, rows, c);
}
void add_bias_rows(cudaStream_t stream, bf16* y, const bf16* bias, std::int64_t rows,
                   std::int64_t c) {
  bias_rows(stream, dev(y), dev(bias), rows, c);
}

void column_sums(cudaStream_t stream, float* dbias, const float* dy, std::int64_t rows,
                 std::int64_t c, bool accumulate) {
  sums(stream, dbias, dy, rows, c, accumulate);
}
void column_sums(cudaStream_t stream, bf16* dbias, const bf16* dy, std::int64_t rows,
                 std::int64_t c, bool accumulate) {
  sums(stream, dev(dbias), dev(dy), rows, c, accumulate);
}

void add_inplace(cudaStream_t stream, float* y, const float* x, std::int64_t n) {
  add(stream, y, x, n);
}
void add_inplace(cudaStream_t stream, bf16* y, const bf16* x, std::int64_t n) {
  add(stream, dev(y), dev(x), n);
}

void convert(cudaStream_t stream, bf16* y, const float* x, std::int64_t n) {
  convert_n(stream, dev(y), x, n);
}
void convert(cudaStream_t stream, float* y, const bf16* x, std::int64_t n) {
  convert_n(stream, y, dev(x), n);
}

void scale_inplace(cudaStream_t stream, float* y, float alpha, std::int64_t n) {
  if (n == 0) return;
  scale_inplace_kernel<<<grid_for(n), kBlock, 0, stream>>>(y, alpha, n);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void copy_columns(cudaStream_t stream, float* y, std::int64_t ldy, const float* x, std::int64_t ldx,
                  std::int64_t rows, std::int64_t width, bool accumulate) {
  if (rows * width == 0) return;
  copy_columns_kernel<<<grid_for(rows * width), kBlock, 0, stream>>>(y, ldy, x, ldx, rows, width,
                                                                     accumulate);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void add_residual_bias(cudaStream_t stream, float* y, const float* residual, const float* bias,
                       std::int64_t rows, std::int64_t c) {
  if (rows * c == 0) return;
  add_residual_bias_kernel<<<grid_for(rows * c), kBlock, 0, stream>>>(y, residual, bias, rows, c);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void bias_backward(cudaStream_t stream, float* dbias, const float* dy, std::int64_t rows,
                   std::int64_t c) {
  if (rows == 0) return;
  bias_backward_kernel<<<grid_for(c), kBlock, 0, stream>>>(dbias, dy, rows, c);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void swiglu_forward(cudaStream_t stream, float* out, const float* x, std::int64_t n,
                    std::int64_t f) {
  if (n * f == 0) return;
  swiglu_forward_kernel<<<grid_for(n * f), kBlock, 0, stream>>>(out, x, n, f);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void swiglu_backward(cudaStream_t stream, float* dx, const float* dout, const float* x,
                     std::int64_t n, std::int64_t f) {
  if (n * f == 0) return;
  swiglu_backward_kernel<<<grid_for(n * f), kBlock, 0, stream>>>(dx, dout, x, n, f);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void adamw_step(cudaStream_t stream, float* params, float* m, float* v, const float* grads,
                std::int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                float bias1, float bias2) {
  if (n == 0) return;
  adamw_kernel<<<grid_for(n), kBlock, 0, stream>>>(params, m, v, grads, n, lr, beta1, beta2, eps,
                                                   weight_decay, bias1, bias2);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strata::kernels::cuda
