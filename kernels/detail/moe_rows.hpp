// Internal: the per-row (and per-element) arithmetic of the MoE ops (kernels/moe_ops.hpp),
// written once and run by both backends: the CPU loops over rows calling these
// (kernels/cpu/moe_ops_cpu.cpp), CUDA runs one thread per row or element calling the same
// functions (kernels/cuda/moe.cu). Compiled as host code by g++ and as host/device code by nvcc.
#pragma once

#include <math.h>
#include <string.h>

#include <cstdint>

#if defined(__CUDACC__)
#define STRATA_MOE_HD __host__ __device__ inline
#else
#define STRATA_MOE_HD inline
#endif

namespace strata::kernels::detail::moe {

// A float's bits mapped to an unsigned integer in the order of the values: -0 just below +0, a
// NaN above +inf (or below -inf with its sign bit set). A total order, so that selections never
// depend on how comparisons with NaN behave.
STRATA_MOE_HD std::uint32_t order_key(float v) {
  std::uint32_t u = 0;
  memcpy(&u, &v, sizeof u);
  return (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
}

// Whether (value a, index ia) comes before (value b, index ib) in decreasing order of value,
// equal values by increasing index: the router's top-k order and the capacity's keep order.
STRATA_MOE_HD bool ranks_before(float a, std::int64_t ia, float b, std::int64_t ib) {
  const std::uint32_t ka = order_key(a), kb = order_key(b);
  return ka > kb || (ka == kb && ia < ib);
}

STRATA_MOE_HD bool valid_expert(std::int32_t j, std::int64_t e) { return j >= 0 && j < e; }
STRATA_MOE_HD bool kept_row(std::int32_t row, std::int64_t r_max) {
  return row >= 0 && row < r_max;
}

// d(aux_scale L_aux) / d probs[t, j] = aux_factor * count_j, and aux_scale L_aux =
// aux_factor * sum_j count_j sum_t probs[t, j]:  aux_factor = aux_scale aux_coef E / (N k N).
STRATA_MOE_HD double aux_factor(std::int64_t n, std::int64_t e, std::int64_t k, float aux_coef,
                                float aux_scale) {
  if (n == 0) return 0.0;
  const double nd = static_cast<double>(n);
  return static_cast<double>(aux_scale) * static_cast<double>(aux_coef) * static_cast<double>(e) /
         (nd * static_cast<double>(k) * nd);
}

// One row of moe_router_forward: probs (E), idx (k), w (k) from z (E).
STRATA_MOE_HD void router_row_forward(float* probs, std::int32_t* idx, float* w, const float* z,
                                      std::int64_t e, std::int64_t k, bool normalize) {
  float m = z[0];
  for (std::int64_t j = 1; j < e; ++j) m = z[j] > m ? z[j] : m;
  double sum = 0.0;
  for (std::int64_t j = 0; j < e; ++j) sum += exp(static_cast<double>(z[j] - m));
  for (std::int64_t j = 0; j < e; ++j) {
    probs[j] = static_cast<float>(exp(static_cast<double>(z[j] - m)) / sum);
  }
  // Selection: slot s takes the first expert, in ranks_before order, after slot s - 1's.
  std::int64_t prev = -1;
  for (std::int64_t s = 0; s < k; ++s) {
    std::int64_t best = -1;
    for (std::int64_t j = 0; j < e; ++j) {
      if (prev >= 0 && !ranks_before(z[prev], prev, z[j], j)) continue;
      if (best < 0 || ranks_before(z[j], j, z[best], best)) best = j;
    }
    idx[s] = static_cast<std::int32_t>(best);
    prev = best;
  }
  double selected = 0.0;
  for (std::int64_t s = 0; s < k; ++s) selected += probs[idx[s]];
  for (std::int64_t s = 0; s < k; ++s) {
    w[s] = normalize ? static_cast<float>(probs[idx[s]] / selected) : probs[idx[s]];
  }
}

// One row of moe_router_backward: dz (E) from g = dtopk_w (k), p = probs (E), idx (k); counts
// (E) of the whole batch, or nullptr when aux_factor is 0. Experts outside [0, E) in idx (only
// possible on a device) contribute nothing.
STRATA_MOE_HD void router_row_backward(float* dz, const float* g, const float* p,
                                       const std::int32_t* idx, std::int64_t e, std::int64_t k,
                                       bool normalize, const std::int32_t* counts,
                                       double aux_factor) {
  double z_sum = 0.0, gw = 0.0;  // Z and sum_r g_r w_r of the normalisation
  if (normalize) {
    for (std::int64_t s = 0; s < k; ++s) {
      if (valid_expert(idx[s], e)) z_sum += p[idx[s]];
    }
    for (std::int64_t s = 0; s < k; ++s) {
      if (valid_expert(idx[s], e)) gw += static_cast<double>(g[s]) * (p[idx[s]] / z_sum);
    }
  }
  const auto dp = [&](std::int64_t j) {
    double d = counts != nullptr ? aux_factor * static_cast<double>(counts[j]) : 0.0;
    for (std::int64_t s = 0; s < k; ++s) {
      if (idx[s] != j) continue;
      d += normalize ? (static_cast<double>(g[s]) - gw) / z_sum : static_cast<double>(g[s]);
    }
    return d;
  };
  double dot = 0.0;
  for (std::int64_t j = 0; j < e; ++j) dot += static_cast<double>(p[j]) * dp(j);
  for (std::int64_t j = 0; j < e; ++j) dz[j] = static_cast<float>(p[j] * (dp(j) - dot));
}

// Element (t, j) of moe_permute_backward (src = drows, w = nullptr) or moe_unpermute_forward
// (src = the experts' rows, w = topk_w): sum over kept slots, in slot order, of w[t, s] src[row].
STRATA_MOE_HD void combine_element(float* out, const float* src, const std::int32_t* row_of,
                                   const float* w, std::int64_t t, std::int64_t j, std::int64_t c,
                                   std::int64_t k, std::int64_t r_max, bool accumulate) {
  float acc = 0.0f;
  for (std::int64_t s = 0; s < k; ++s) {
    const std::int32_t row = row_of[t * k + s];
    if (!kept_row(row, r_max)) continue;
    const float v = src[static_cast<std::int64_t>(row) * c + j];
    acc += w != nullptr ? w[t * k + s] * v : v;
  }
  float& o = out[t * c + j];
  o = accumulate ? o + acc : acc;
}

// dtopk_w[t, s] of moe_unpermute_backward: dot(dy[t], rows[row]) in double, 0 when dropped.
STRATA_MOE_HD float combine_weight_grad(const float* dy_row, const float* rows, std::int32_t row,
                                        std::int64_t c, std::int64_t r_max) {
  if (!kept_row(row, r_max)) return 0.0f;
  const float* r = rows + static_cast<std::int64_t>(row) * c;
  double acc = 0.0;
  for (std::int64_t j = 0; j < c; ++j) acc += static_cast<double>(dy_row[j]) * r[j];
  return static_cast<float>(acc);
}

}  // namespace strata::kernels::detail::moe
