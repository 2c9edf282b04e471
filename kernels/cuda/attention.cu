// CUDA causal attention of model_ops.hpp: fused (flash_attention_forward / _backward: the T x T
// scores are never stored, only the log-sum-exp of each query row) and unfused
// (attention_forward / _backward: the probabilities saved for the backward, as the CPU op does).
// A first, simple kernel: one thread per query row (forward, dq) or key row (dk, dv) of one
// head, looping over the other rows with an online softmax (fused forward) or a stored row
// (unfused forward), and in the backward reading the probabilities (unfused) or recomputing them
// from lse (fused, as FlashAttention-2 does), the accumulators of one row in the thread. Every
// output element is formed by one thread in a fixed order, so runs are deterministic (no atomics).
// It is correct first: it reads K and V once per query row instead of sharing tiles through shared
// memory, so it is far from a tuned kernel's speed (the next step: blocks of 64 queries sharing K/V
// tiles, as the CPU kernel and FlashAttention do). Head dimensions up to kMaxHeadDim.
#include <cmath>
#include <cstddef>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/model_ops_cuda.hpp"

namespace strata::kernels::cuda {
namespace {

constexpr int kBlock = 128;

struct Shape {
  std::int64_t b, t, c, h, d;
  float scale;  // 1 / sqrt(d)
  // Row r of batch i: q, k, v of head hh start at (i * t + r) * 3c + {0, c, 2c} + hh * d.
  __device__ std::int64_t row(std::int64_t i, std::int64_t r) const { return (i * t + r) * 3 * c; }
};

__device__ float dot(const float* __restrict__ a, const float* __restrict__ b, std::int64_t d) {
  float s = 0.0f;
  for (std::int64_t k = 0; k < d; ++k) s += a[k] * b[k];
  return s;
}

// One thread per (batch, head, query row).
__global__ void forward_kernel(float* __restrict__ out, float* __restrict__ lse,
                               const float* __restrict__ qkv, Shape sh) {
  const std::int64_t rows = sh.b * sh.h * sh.t;
  for (std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < rows;
       g += static_cast<std::int64_t>(blockDim.x) * gridDim.x) {
    const std::int64_t tq = g % sh.t, hh = (g / sh.t) % sh.h, i = g / (sh.t * sh.h);
    const float* q = qkv + sh.row(i, tq) + hh * sh.d;
    float acc[kMaxHeadDim];
    for (std::int64_t k = 0; k < sh.d; ++k) acc[k] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (std::int64_t s = 0; s <= tq; ++s) {
      const float* k = qkv + sh.row(i, s) + sh.c + hh * sh.d;
      const float* v = k + sh.c;
      const float score = dot(q, k, sh.d) * sh.scale;
      const float m_new = fmaxf(m, score);
      const float correction = expf(m - m_new);  // 0 at the first key (m = -inf)
      const float p = expf(score - m_new);
      l = l * correction + p;
      for (std::int64_t k2 = 0; k2 < sh.d; ++k2) acc[k2] = acc[k2] * correction + p * v[k2];
      m = m_new;
    }
    float* o = out + (i * sh.t + tq) * sh.c + hh * sh.d;
    for (std::int64_t k = 0; k < sh.d; ++k) o[k] = acc[k] / l;
    lse[(i * sh.h + hh) * sh.t + tq] = m + logf(l);
  }
}

// The unfused forward, one thread per (batch, head, query row): the scores into the row of att,
// then its softmax there, in the CPU's order (max, exp and sum, scale by 1 / sum), then
// out = sum_s att v.
__global__ void unfused_forward_kernel(float* __restrict__ out, float* __restrict__ att,
                                       const float* __restrict__ qkv, Shape sh) {
  const std::int64_t rows = sh.b * sh.h * sh.t;
  for (std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < rows;
       g += static_cast<std::int64_t>(blockDim.x) * gridDim.x) {
    const std::int64_t tq = g % sh.t, hh = (g / sh.t) % sh.h, i = g / (sh.t * sh.h);
    const float* q = qkv + sh.row(i, tq) + hh * sh.d;
    float* row = att + g * sh.t;
    float m = -INFINITY;
    for (std::int64_t s = 0; s <= tq; ++s) {
      row[s] = dot(q, qkv + sh.row(i, s) + sh.c + hh * sh.d, sh.d) * sh.scale;
      m = fmaxf(m, row[s]);
    }
    float sum = 0.0f;
    for (std::int64_t s = 0; s <= tq; ++s) {
      row[s] = expf(row[s] - m);
      sum += row[s];
    }
    const float inv = 1.0f / sum;
    for (std::int64_t s = 0; s <= tq; ++s) row[s] *= inv;
    for (std::int64_t s = tq + 1; s < sh.t; ++s) row[s] = 0.0f;
    float* o = out + (i * sh.t + tq) * sh.c + hh * sh.d;
    for (std::int64_t k = 0; k < sh.d; ++k) {
      float acc = 0.0f;
      for (std::int64_t s = 0; s <= tq; ++s)
        acc += row[s] * qkv[sh.row(i, s) + 2 * sh.c + hh * sh.d + k];
      o[k] = acc;
    }
  }
}

// The unfused backward's delta[t] = sum_{s <= t} att[t, s] (dout[t] . v[s]), in fp32 as the CPU.
__global__ void unfused_delta_kernel(float* __restrict__ delta, const float* __restrict__ dout,
                                     const float* __restrict__ qkv, const float* __restrict__ att,
                                     Shape sh) {
  const std::int64_t rows = sh.b * sh.h * sh.t;
  for (std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < rows;
       g += static_cast<std::int64_t>(blockDim.x) * gridDim.x) {
    const std::int64_t tq = g % sh.t, hh = (g / sh.t) % sh.h, i = g / (sh.t * sh.h);
    const float* dy = dout + (i * sh.t + tq) * sh.c + hh * sh.d;
    float s_total = 0.0f;
    for (std::int64_t s = 0; s <= tq; ++s) {
      s_total += att[g * sh.t + s] * dot(dy, qkv + sh.row(i, s) + 2 * sh.c + hh * sh.d, sh.d);
    }
    delta[g] = s_total;
  }
}

// delta[i, hh, t] = dout[t] . out[t] over the head's columns, summed in double (as the CPU).
__global__ void delta_kernel(float* __restrict__ delta, const float* __restrict__ dout,
                             const float* __restrict__ out, Shape sh) {
  const std::int64_t rows = sh.b * sh.h * sh.t;
  for (std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < rows;
       g += static_cast<std::int64_t>(blockDim.x) * gridDim.x) {
    const std::int64_t tq = g % sh.t, hh = (g / sh.t) % sh.h, i = g / (sh.t * sh.h);
    const std::int64_t base = (i * sh.t + tq) * sh.c + hh * sh.d;
    double s = 0.0;
    for (std::int64_t k = 0; k < sh.d; ++k)
      s += static_cast<double>(dout[base + k]) * out[base + k];
    delta[g] = static_cast<float>(s);
  }
}

// P[t, s] of head row r (= (i * h + hh) * t + tq): read from the unfused forward's probabilities
// (att, (B, H, T, T)), or recomputed from the fused forward's lse.
template <bool kStored>
__device__ float probability(const float* __restrict__ att, const float* __restrict__ lse,
                             std::int64_t r, std::int64_t s, const float* q, const float* k,
                             const Shape& sh) {
  if constexpr (kStored) {
    return att[r * sh.t + s];
  } else {
    return expf(dot(q, k, sh.d) * sh.scale - lse[r]);
  }
}

// dq[t] = sum_{s <= t} dS[t, s] k[s], with dS = P (dout.v - delta) scale.
template <bool kStored>
__global__ void dq_kernel(float* __restrict__ dqkv, const float* __restrict__ dout,
                          const float* __restrict__ qkv, const float* __restrict__ att,
                          const float* __restrict__ lse, const float* __restrict__ delta,
                          Shape sh) {
  const std::int64_t rows = sh.b * sh.h * sh.t;
  for (std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < rows;
       g += static_cast<std::int64_t>(blockDim.x) * gridDim.x) {
    const std::int64_t tq = g % sh.t, hh = (g / sh.t) % sh.h, i = g / (sh.t * sh.h);
    const float* q = qkv + sh.row(i, tq) + hh * sh.d;
    const float* dy = dout + (i * sh.t + tq) * sh.c + hh * sh.d;
    const float row_delta = delta[g];
    float acc[kMaxHeadDim];
    for (std::int64_t k = 0; k < sh.d; ++k) acc[k] = 0.0f;
    for (std::int64_t s = 0; s <= tq; ++s) {
      const float* k = qkv + sh.row(i, s) + sh.c + hh * sh.d;
      const float* v = k + sh.c;
      const float p = probability<kStored>(att, lse, g, s, q, k, sh);
      const float ds = p * (dot(dy, v, sh.d) - row_delta) * sh.scale;
      for (std::int64_t k2 = 0; k2 < sh.d; ++k2) acc[k2] += ds * k[k2];
    }
    float* dq = dqkv + sh.row(i, tq) + hh * sh.d;
    for (std::int64_t k = 0; k < sh.d; ++k) dq[k] = acc[k];
  }
}

// dv[s] = sum_{t >= s} P[t, s] dout[t],  dk[s] = sum_{t >= s} dS[t, s] q[t].
template <bool kStored>
__global__ void dkv_kernel(float* __restrict__ dqkv, const float* __restrict__ dout,
                           const float* __restrict__ qkv, const float* __restrict__ att,
                           const float* __restrict__ lse, const float* __restrict__ delta,
                           Shape sh) {
  const std::int64_t rows = sh.b * sh.h * sh.t;
  for (std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < rows;
       g += static_cast<std::int64_t>(blockDim.x) * gridDim.x) {
    const std::int64_t s = g % sh.t, hh = (g / sh.t) % sh.h, i = g / (sh.t * sh.h);
    const float* k = qkv + sh.row(i, s) + sh.c + hh * sh.d;
    const float* v = k + sh.c;
    float dk[kMaxHeadDim], dv[kMaxHeadDim];
    for (std::int64_t j = 0; j < sh.d; ++j) dk[j] = dv[j] = 0.0f;
    for (std::int64_t tq = s; tq < sh.t; ++tq) {
      const float* q = qkv + sh.row(i, tq) + hh * sh.d;
      const float* dy = dout + (i * sh.t + tq) * sh.c + hh * sh.d;
      const std::int64_t r = (i * sh.h + hh) * sh.t + tq;
      const float p = probability<kStored>(att, lse, r, s, q, k, sh);
      const float ds = p * (dot(dy, v, sh.d) - delta[r]) * sh.scale;
      for (std::int64_t j = 0; j < sh.d; ++j) {
        dv[j] += p * dy[j];
        dk[j] += ds * q[j];
      }
    }
    float* dkr = dqkv + sh.row(i, s) + sh.c + hh * sh.d;
    for (std::int64_t j = 0; j < sh.d; ++j) {
      dkr[j] = dk[j];
      dkr[j + sh.c] = dv[j];
    }
  }
}

unsigned int grid_for(std::int64_t rows) {
  return static_cast<unsigned int>(
      std::max<std::int64_t>(1, std::min<std::int64_t>((rows + kBlock - 1) / kBlock, 65536)));
}

Shape shape_of(std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h) {
  const std::int64_t d = c / h;
  return {b, t, c, h, d, static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)))};
}

// One float per (batch, head, row): a stream-ordered temporary until the device arena provides
// the scratch.
float* row_scratch(cudaStream_t stream, std::int64_t rows) {
  float* p = nullptr;
  STRATA_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&p),
                                    sizeof(float) * static_cast<std::size_t>(rows), stream));
  return p;
}

// The backward after delta: dq, then dk and dv; frees delta.
template <bool kStored>
void gradients(cudaStream_t stream, float* dqkv, const float* dout, const float* qkv,
               const float* att, const float* lse, float* delta, const Shape& sh) {
  const std::int64_t rows = sh.b * sh.h * sh.t;
  dq_kernel<kStored><<<grid_for(rows), kBlock, 0, stream>>>(dqkv, dout, qkv, att, lse, delta, sh);
  STRATA_CUDA_CHECK(cudaGetLastError());
  dkv_kernel<kStored><<<grid_for(rows), kBlock, 0, stream>>>(dqkv, dout, qkv, att, lse, delta, sh);
  STRATA_CUDA_CHECK(cudaGetLastError());
  STRATA_CUDA_CHECK(cudaFreeAsync(delta, stream));
}

}  // namespace

void flash_attention_forward(cudaStream_t stream, float* out, float* lse, const float* qkv,
                             std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h) {
  const Shape sh = shape_of(b, t, c, h);
  const std::int64_t rows = b * h * t;
  if (rows == 0) return;
  forward_kernel<<<grid_for(rows), kBlock, 0, stream>>>(out, lse, qkv, sh);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void flash_attention_backward(cudaStream_t stream, float* dqkv, const float* dout, const float* qkv,
                              const float* out, const float* lse, std::int64_t b, std::int64_t t,
                              std::int64_t c, std::int64_t h) {
  const Shape sh = shape_of(b, t, c, h);
  const std::int64_t rows = b * h * t;
  if (rows == 0) return;
  float* delta = row_scratch(stream, rows);
  delta_kernel<<<grid_for(rows), kBlock, 0, stream>>>(delta, dout, out, sh);
  STRATA_CUDA_CHECK(cudaGetLastError());
  gradients<false>(stream, dqkv, dout, qkv, nullptr, lse, delta, sh);
}

void attention_forward(cudaStream_t stream, float* out, float* att, const float* qkv,
                       std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h) {
  const Shape sh = shape_of(b, t, c, h);
  const std::int64_t rows = b * h * t;
  if (rows == 0) return;
  unfused_forward_kernel<<<grid_for(rows), kBlock, 0, stream>>>(out, att, qkv, sh);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void attention_backward(cudaStream_t stream, float* dqkv, const float* dout, const float* qkv,
                        const float* att, std::int64_t b, std::int64_t t, std::int64_t c,
                        std::int64_t h) {
  const Shape sh = shape_of(b, t, c, h);
  const std::int64_t rows = b * h * t;
  if (rows == 0) return;
  float* delta = row_scratch(stream, rows);
  unfused_delta_kernel<<<grid_for(rows), kBlock, 0, stream>>>(delta, dout, qkv, att, sh);
  STRATA_CUDA_CHECK(cudaGetLastError());
  gradients<true>(stream, dqkv, dout, qkv, att, nullptr, delta, sh);
}

}  // namespace strata::kernels::cuda
