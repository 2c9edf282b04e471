// CUDA attention over rows with explicit positions (model_ops.hpp attention_segments_*: context
// parallelism's queries against one rank's or every rank's keys, merged by log-sum-exp), in the
// style of attention.cu's first kernels: one thread per query row (forward, dq) or key row (dk,
// dv) of one head, an online softmax over the visible keys (pos(s) <= pos(t)), the backward
// recomputing the probabilities from the final lse (FlashAttention-2's formulas). Every output
// element is formed by one thread in a fixed order: deterministic, no atomics. The segments
// travel by value in the kernel's parameters (at most kMaxSegments each side: cp up to 32 for
// the gathered layout). The CPU kernel works in blocks of 64 keys; the sums agree within fp32
// rounding (tests/kernels/cross_backend_test.cpp).
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/model_ops_cuda.hpp"

namespace strata::kernels::cuda {
namespace {

constexpr int kBlock = 128;

struct Segments {
  int n = 0;
  int position[kMaxSegments];
  int length[kMaxSegments];
  // The position of row r (0 <= r < the lengths' sum).
  __device__ int position_of(std::int64_t r) const {
    for (int i = 0; i < n; ++i) {
      if (r < length[i]) return position[i] + static_cast<int>(r);
      r -= length[i];
    }
    return 0x7fffffff;  // not reached for valid rows
  }
};

struct Geometry {
  std::int64_t b, tq, tk, c, h, d;
  std::int64_t ldq, ldkv, lddq, lddkv;
  float scale;
  Segments qs, ks;
};

__device__ float dot(const float* __restrict__ a, const float* __restrict__ b, std::int64_t d) {
  float s = 0.0f;
  for (std::int64_t k = 0; k < d; ++k) s += a[k] * b[k];
  return s;
}

// One thread per (batch, head, query row): merge == false starts from nothing; merge == true
// from the row's stored out and lse (max = lse, sum = 1, accumulator = out). A row that sees no
// key in this call is written as 0 and -inf, or with merge left as it was.
__global__ void forward_kernel(float* __restrict__ out, float* __restrict__ lse,
                               const float* __restrict__ q, const float* __restrict__ k,
                               const float* __restrict__ v, Geometry g, bool merge) {
  const std::int64_t rows = g.b * g.h * g.tq;
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       r < rows; r += static_cast<std::int64_t>(blockDim.x) * gridDim.x) {
    const std::int64_t t = r % g.tq, hh = (r / g.tq) % g.h, i = r / (g.tq * g.h);
    const int pt = g.qs.position_of(t);
    const float* qr = q + (i * g.tq + t) * g.ldq + hh * g.d;
    float* o = out + (i * g.tq + t) * g.c + hh * g.d;
    float* lr = lse + (i * g.h + hh) * g.tq + t;
    float acc[kMaxHeadDim];
    float m = -INFINITY, l = 0.0f;
    if (merge && *lr != -INFINITY) {
      m = *lr;
      l = 1.0f;
      for (std::int64_t j = 0; j < g.d; ++j) acc[j] = o[j];
    } else {
      for (std::int64_t j = 0; j < g.d; ++j) acc[j] = 0.0f;
    }
    bool seen = false;
    for (std::int64_t s = 0; s < g.tk; ++s) {
      if (g.ks.position_of(s) > pt) continue;
      seen = true;
      const float* kr = k + (i * g.tk + s) * g.ldkv + hh * g.d;
      const float* vr = v + (i * g.tk + s) * g.ldkv + hh * g.d;
      const float score = dot(qr, kr, g.d) * g.scale;
      const float m_new = fmaxf(m, score);
      const float correction = expf(m - m_new);  // 0 while m is -inf
      const float p = expf(score - m_new);
      l = l * correction + p;
      for (std::int64_t j = 0; j < g.d; ++j) acc[j] = acc[j] * correction + p * vr[j];
      m = m_new;
    }
    if (!seen) {
      if (!merge) {
        for (std::int64_t j = 0; j < g.d; ++j) o[j] = 0.0f;
        *lr = -INFINITY;
      }
      continue;
    }
    for (std::int64_t j = 0; j < g.d; ++j) o[j] = acc[j] / l;
    *lr = m + logf(l);
  }
}

// delta[i, hh, t] = dout[t] . out[t] over the head's columns, summed in double (as the CPU).
__global__ void delta_kernel(float* __restrict__ delta, const float* __restrict__ dout,
                             const float* __restrict__ out, Geometry g) {
  const std::int64_t rows = g.b * g.h * g.tq;
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       r < rows; r += static_cast<std::int64_t>(blockDim.x) * gridDim.x) {
    const std::int64_t t = r % g.tq, hh = (r / g.tq) % g.h, i = r / (g.tq * g.h);
    const std::int64_t base = (i * g.tq + t) * g.c + hh * g.d;
    double s = 0.0;
    for (std::int64_t j = 0; j < g.d; ++j) s += static_cast<double>(dout[base + j]) * out[base + j];
    delta[(i * g.h + hh) * g.tq + t] = static_cast<float>(s);
  }
}

// dq[t] = sum over this call's visible keys of dS[t, s] k[s]; written, or added into.
__global__ void dq_kernel(float* __restrict__ dq, const float* __restrict__ dout,
                          const float* __restrict__ q, const float* __restrict__ k,
                          const float* __restrict__ v, const float* __restrict__ lse,
                          const float* __restrict__ delta, Geometry g, bool accumulate) {
  const std::int64_t rows = g.b * g.h * g.tq;
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       r < rows; r += static_cast<std::int64_t>(blockDim.x) * gridDim.x) {
    const std::int64_t t = r % g.tq, hh = (r / g.tq) % g.h, i = r / (g.tq * g.h);
    const std::int64_t stat = (i * g.h + hh) * g.tq + t;
    const float row_lse = lse[stat];
    float acc[kMaxHeadDim];
    for (std::int64_t j = 0; j < g.d; ++j) acc[j] = 0.0f;
    if (row_lse != -INFINITY) {  // a row that saw no key contributes nothing
      const int pt = g.qs.position_of(t);
      const float* qr = q + (i * g.tq + t) * g.ldq + hh * g.d;
      const float* dy = dout + (i * g.tq + t) * g.c + hh * g.d;
      for (std::int64_t s = 0; s < g.tk; ++s) {
        if (g.ks.position_of(s) > pt) continue;
        const float* kr = k + (i * g.tk + s) * g.ldkv + hh * g.d;
        const float* vr = v + (i * g.tk + s) * g.ldkv + hh * g.d;
        const float p = expf(dot(qr, kr, g.d) * g.scale - row_lse);
        const float ds = p * (dot(dy, vr, g.d) - delta[stat]) * g.scale;
        for (std::int64_t j = 0; j < g.d; ++j) acc[j] += ds * kr[j];
      }
    }
    float* o = dq + (i * g.tq + t) * g.lddq + hh * g.d;
    for (std::int64_t j = 0; j < g.d; ++j) o[j] = accumulate ? o[j] + acc[j] : acc[j];
  }
}

// dv[s] = sum_t P[t, s] dout[t], dk[s] = sum_t dS[t, s] q[t] over the queries that see key s;
// written, or the sums added at the end (old + the overwriting result, bit for bit).
__global__ void dkv_kernel(float* __restrict__ dk, float* __restrict__ dv,
                           const float* __restrict__ dout, const float* __restrict__ q,
                           const float* __restrict__ k, const float* __restrict__ v,
                           const float* __restrict__ lse, const float* __restrict__ delta,
                           Geometry g, bool accumulate) {
  const std::int64_t rows = g.b * g.h * g.tk;
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       r < rows; r += static_cast<std::int64_t>(blockDim.x) * gridDim.x) {
    const std::int64_t s = r % g.tk, hh = (r / g.tk) % g.h, i = r / (g.tk * g.h);
    const int ps = g.ks.position_of(s);
    const float* kr = k + (i * g.tk + s) * g.ldkv + hh * g.d;
    const float* vr = v + (i * g.tk + s) * g.ldkv + hh * g.d;
    float sk[kMaxHeadDim], sv[kMaxHeadDim];
    for (std::int64_t j = 0; j < g.d; ++j) sk[j] = sv[j] = 0.0f;
    for (std::int64_t t = 0; t < g.tq; ++t) {
      const std::int64_t stat = (i * g.h + hh) * g.tq + t;
      if (lse[stat] == -INFINITY || g.qs.position_of(t) < ps) continue;
      const float* qr = q + (i * g.tq + t) * g.ldq + hh * g.d;
      const float* dy = dout + (i * g.tq + t) * g.c + hh * g.d;
      const float p = expf(dot(qr, kr, g.d) * g.scale - lse[stat]);
      const float ds = p * (dot(dy, vr, g.d) - delta[stat]) * g.scale;
      for (std::int64_t j = 0; j < g.d; ++j) {
        sv[j] += p * dy[j];
        sk[j] += ds * qr[j];
      }
    }
    float* ok = dk + (i * g.tk + s) * g.lddkv + hh * g.d;
    float* ov = dv + (i * g.tk + s) * g.lddkv + hh * g.d;
    for (std::int64_t j = 0; j < g.d; ++j) {
      ok[j] = accumulate ? ok[j] + sk[j] : sk[j];
      ov[j] = accumulate ? ov[j] + sv[j] : sv[j];
    }
  }
}

unsigned int grid_for(std::int64_t rows) {
  return static_cast<unsigned int>(
      std::max<std::int64_t>(1, std::min<std::int64_t>((rows + kBlock - 1) / kBlock, 65536)));
}

Segments segments_of(const std::vector<AttentionSegment>& v, const char* what) {
  if (v.size() > static_cast<std::size_t>(kMaxSegments)) {
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(v.size()) +
                                " segments; the CUDA kernel takes at most " +
                                std::to_string(kMaxSegments));
  }
  Segments s;
  s.n = static_cast<int>(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    s.position[i] = static_cast<int>(v[i].position);
    s.length[i] = static_cast<int>(v[i].length);
  }
  return s;
}

Geometry geometry(std::int64_t b, std::int64_t tq, std::int64_t tk, std::int64_t c,
                  std::int64_t h, const std::vector<AttentionSegment>& q_segments,
                  const std::vector<AttentionSegment>& kv_segments) {
  Geometry g{};
  g.b = b;
  g.tq = tq;
  g.tk = tk;
  g.c = c;
  g.h = h;
  g.d = c / h;
  if (g.d > kMaxHeadDim) {
    throw std::invalid_argument("attention_segments: head dimension " + std::to_string(g.d) +
                                " exceeds the CUDA kernel's " + std::to_string(kMaxHeadDim));
  }
  g.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(g.d)));
  g.qs = segments_of(q_segments, "q_segments");
  g.ks = segments_of(kv_segments, "kv_segments");
  return g;
}

}  // namespace

void attention_segments_forward(cudaStream_t stream, float* out, float* lse, const float* q,
                                std::int64_t ldq, const float* k, const float* v,
                                std::int64_t ldkv, std::int64_t b, std::int64_t tq,
                                std::int64_t tk, const std::vector<AttentionSegment>& q_segments,
                                const std::vector<AttentionSegment>& kv_segments, std::int64_t c,
                                std::int64_t h, bool merge) {
  Geometry g = geometry(b, tq, tk, c, h, q_segments, kv_segments);
  g.ldq = ldq;
  g.ldkv = ldkv;
  const std::int64_t rows = b * h * tq;
  if (rows == 0) return;
  forward_kernel<<<grid_for(rows), kBlock, 0, stream>>>(out, lse, q, k, v, g, merge);
  STRATA_CUDA_CHECK(cudaGetLastError());
}

void attention_segments_backward(cudaStream_t stream, float* dq, std::int64_t lddq, float* dk,
                                 float* dv, std::int64_t lddkv, const float* dout, const float* q,
                                 std::int64_t ldq, const float* k, const float* v,
                                 std::int64_t ldkv, const float* out, const float* lse,
                                 std::int64_t b, std::int64_t tq, std::int64_t tk,
                                 const std::vector<AttentionSegment>& q_segments,
                                 const std::vector<AttentionSegment>& kv_segments, std::int64_t c,
                                 std::int64_t h, bool accumulate_dq, bool accumulate_dkv) {
  Geometry g = geometry(b, tq, tk, c, h, q_segments, kv_segments);
  g.ldq = ldq;
  g.ldkv = ldkv;
  g.lddq = lddq;
  g.lddkv = lddkv;
  const std::int64_t qrows = b * h * tq, krows = b * h * tk;
  float* delta = nullptr;
  if (qrows > 0) {
    // One float per (batch, head, query row): a stream-ordered temporary, as attention.cu's.
    STRATA_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&delta),
                                      sizeof(float) * static_cast<std::size_t>(qrows), stream));
    delta_kernel<<<grid_for(qrows), kBlock, 0, stream>>>(delta, dout, out, g);
    STRATA_CUDA_CHECK(cudaGetLastError());
    dq_kernel<<<grid_for(qrows), kBlock, 0, stream>>>(dq, dout, q, k, v, lse, delta, g,
                                                      accumulate_dq);
    STRATA_CUDA_CHECK(cudaGetLastError());
  }
  if (krows > 0) {
    dkv_kernel<<<grid_for(krows), kBlock, 0, stream>>>(dk, dv, dout, q, k, v, lse, delta, g,
                                                       accumulate_dkv);
    STRATA_CUDA_CHECK(cudaGetLastError());
  }
  if (delta != nullptr) STRATA_CUDA_CHECK(cudaFreeAsync(delta, stream));
}

}  // namespace strata::kernels::cuda
