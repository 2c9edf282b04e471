// CPU ops: Eigen array expressions when Eigen is available (STRATA_KERNELS_HAVE_EIGEN), so that
// exp and the row reductions vectorize; plain loops otherwise (e.g. a GPU machine without
// Eigen headers). Both reduce in a fixed order, so results are deterministic. Also
// kernels::eigen_version(), for the provenance of measured outputs.
#include "kernels/cpu/ops_cpu.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/backend.hpp"

#if STRATA_KERNELS_HAVE_EIGEN
#include <Eigen/Core>
#endif

namespace strata::kernels {

std::string eigen_version() {
#if STRATA_KERNELS_HAVE_EIGEN
  return std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
         std::to_string(EIGEN_MINOR_VERSION);
#else
  return "";
#endif
}

}  // namespace strata::kernels

namespace strata::kernels::cpu {
namespace {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;
constexpr float kGeluClamp = 80.0f;  // |2u| bound: exp(80) = 5.5e34 < FLT_MAX

#if STRATA_KERNELS_HAVE_EIGEN
constexpr std::int64_t kChunk = 4096;  // elements per GELU chunk: temporaries stay in L1/L2
using ArrayMap = Eigen::Map<Eigen::ArrayXf, Eigen::Unaligned>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf, Eigen::Unaligned>;
#endif

}  // namespace

bool uses_eigen() {
#if STRATA_KERNELS_HAVE_EIGEN
  return true;
#else
  return false;
#endif
}

// GELU is evaluated as x * sigmoid(2u), u = s (x + a x^3), which equals 0.5 x (1 + tanh u) but
// avoids the cancellation in 1 + tanh u for negative x (there fp32 tanh u rounds to -1 and the
// tanh form loses every digit of small outputs and gradients). With e = exp(-2u):
//   sigmoid(2u) = 1 / (1 + e),  1 - sigmoid(2u) = e * sigmoid(2u),
//   gelu'(x) = sigmoid(2u) + x * sigmoid(2u) * (1 - sigmoid(2u)) * 2 s (1 + 3 a x^2).
// 2u is clamped to +-kGeluClamp so that e stays finite (beyond it sigmoid is 0 or 1 in fp32).
void gelu_forward(float* y, const float* x, std::int64_t n) {
#if STRATA_KERNELS_HAVE_EIGEN
  // exp is evaluated into aligned scratch: written straight to y, Eigen would compute the
  // elements before y's first 64-byte boundary with the scalar exp and the rest with its packet
  // exp, which round differently, so a value would depend on where y lies in memory.
  const auto scratch = static_cast<Eigen::Index>(std::min(kChunk, std::max<std::int64_t>(n, 1)));
  Eigen::ArrayXf e(scratch);  // exp(-2u)
  for (std::int64_t start = 0; start < n; start += kChunk) {
    const Eigen::Index len = static_cast<Eigen::Index>(std::min(kChunk, n - start));
    ConstArrayMap xs(x + start, len);  // (len)
    ArrayMap ys(y + start, len);       // (len)
    auto eh = e.head(len);
    eh = (-(2.0f * kGeluScale * (xs + kGeluCubic * xs.cube())).max(-kGeluClamp).min(kGeluClamp))
             .exp();
    ys = xs / (1.0f + eh);
  }
#else
  for (std::int64_t i = 0; i < n; ++i) {
    const float xi = x[i];
    const float two_u =
        std::clamp(2.0f * kGeluScale * (xi + kGeluCubic * xi * xi * xi), -kGeluClamp, kGeluClamp);
    y[i] = xi / (1.0f + std::exp(-two_u));
  }
#endif
}

void gelu_backward(float* dx, const float* dy, const float* x, std::int64_t n) {
#if STRATA_KERNELS_HAVE_EIGEN
  const auto scratch = static_cast<Eigen::Index>(std::min(kChunk, std::max<std::int64_t>(n, 1)));
  Eigen::ArrayXf e(scratch);    // exp(-2u)
  Eigen::ArrayXf sig(scratch);  // sigmoid(2u)
  for (std::int64_t start = 0; start < n; start += kChunk) {
    const Eigen::Index len = static_cast<Eigen::Index>(std::min(kChunk, n - start));
    ConstArrayMap xs(x + start, len);    // (len)
    ConstArrayMap dys(dy + start, len);  // (len)
    ArrayMap dxs(dx + start, len);       // (len)
    auto eh = e.head(len);
    auto sh = sig.head(len);
    eh = (-(2.0f * kGeluScale * (xs + kGeluCubic * xs.cube())).max(-kGeluClamp).min(kGeluClamp))
             .exp();
    sh = 1.0f / (1.0f + eh);
    dxs = dys * sh *
          (1.0f + xs * (eh * sh) * (2.0f * kGeluScale) * (1.0f + 3.0f * kGeluCubic * xs.square()));
  }
#else
  for (std::int64_t i = 0; i < n; ++i) {
    const float xi = x[i];
    const float two_u =
        std::clamp(2.0f * kGeluScale * (xi + kGeluCubic * xi * xi * xi), -kGeluClamp, kGeluClamp);
    const float e = std::exp(-two_u);
    const float sig = 1.0f / (1.0f + e);
    const float local =
        sig * (1.0f + xi * (e * sig) * (2.0f * kGeluScale) * (1.0f + 3.0f * kGeluCubic * xi * xi));
    dx[i] = dy[i] * local;
  }
#endif
}

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma,
                        const float* beta, std::int64_t n, std::int64_t c, float eps) {
#if STRATA_KERNELS_HAVE_EIGEN
  const Eigen::Index cols = static_cast<Eigen::Index>(c);
  ConstArrayMap g(gamma, cols);  // (C)
  ConstArrayMap b(beta, cols);   // (C)
  // The row is reduced from an aligned copy: Eigen splits a reduction at the first aligned
  // element of its input, so over caller memory (16-byte aligned from malloc, 64-byte packets
  // with AVX-512) the summation order, and the last bit, would depend on the address.
  Eigen::ArrayXf xr(cols);  // (C)
  for (std::int64_t i = 0; i < n; ++i) {
    xr = ConstArrayMap(x + i * c, cols);
    ArrayMap yr(y + i * c, cols);  // (C)
    // Two passes (mean, then squared deviations): no cancellation when |mean| >> std.
    const float m = xr.mean();
    const float var = (xr - m).square().mean();
    const float r = 1.0f / std::sqrt(var + eps);
    yr = (xr - m) * r * g + b;
    mean[i] = m;
    rstd[i] = r;
  }
#else
  for (std::int64_t i = 0; i < n; ++i) {
    const float* xr = x + i * c;  // (C)
    float* yr = y + i * c;        // (C)
    double sum = 0.0;
    for (std::int64_t j = 0; j < c; ++j) sum += xr[j];
    const float m = static_cast<float>(sum / static_cast<double>(c));
    double sq = 0.0;
    for (std::int64_t j = 0; j < c; ++j) sq += static_cast<double>(xr[j] - m) * (xr[j] - m);
    const float var = static_cast<float>(sq / static_cast<double>(c));
    const float r = 1.0f / std::sqrt(var + eps);
    for (std::int64_t j = 0; j < c; ++j) yr[j] = (xr[j] - m) * r * gamma[j] + beta[j];
    mean[i] = m;
    rstd[i] = r;
  }
#endif
}

// dgamma and dbeta are summed over rows in scratch and then written, or added with accumulate:
// the accumulated result is exactly old + (the overwriting result).
void layer_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* gamma, const float* mean, const float* rstd, std::int64_t n,
                         std::int64_t c, bool accumulate) {
  if (n == 0 && accumulate) return;
#if STRATA_KERNELS_HAVE_EIGEN
  const Eigen::Index cols = static_cast<Eigen::Index>(c);
  ConstArrayMap g(gamma, cols);                        // (C)
  Eigen::ArrayXf sum_dg = Eigen::ArrayXf::Zero(cols);  // (C) scratch
  Eigen::ArrayXf sum_db = Eigen::ArrayXf::Zero(cols);  // (C) scratch
  Eigen::ArrayXf xhat(cols);                           // (C) scratch
  Eigen::ArrayXf dxhat(cols);                          // (C) scratch: dy * gamma
  for (std::int64_t i = 0; i < n; ++i) {
    ConstArrayMap xr(x + i * c, cols);    // (C)
    ConstArrayMap dyr(dy + i * c, cols);  // (C)
    ArrayMap dxr(dx + i * c, cols);       // (C)
    const float r = rstd[i];
    xhat = (xr - mean[i]) * r;
    dxhat = dyr * g;
    const float mean_dxhat = dxhat.mean();
    const float mean_dxhat_xhat = (dxhat * xhat).mean();
    dxr = r * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
    sum_dg += dyr * xhat;
    sum_db += dyr;
  }
  ArrayMap dg(dgamma, cols);  // (C)
  ArrayMap db(dbeta, cols);   // (C)
  if (accumulate) {
    dg += sum_dg;
    db += sum_db;
  } else {
    dg = sum_dg;
    db = sum_db;
  }
#else
  std::vector<float> xhat(static_cast<std::size_t>(c));          // (C) scratch
  std::vector<float> sum_dg(static_cast<std::size_t>(c), 0.0f);  // (C) scratch
  std::vector<float> sum_db(static_cast<std::size_t>(c), 0.0f);  // (C) scratch
  for (std::int64_t i = 0; i < n; ++i) {
    const float* xr = x + i * c;    // (C)
    const float* dyr = dy + i * c;  // (C)
    float* dxr = dx + i * c;        // (C)
    const float m = mean[i];
    const float r = rstd[i];
    double sum_dxhat = 0.0;
    double sum_dxhat_xhat = 0.0;
    for (std::int64_t j = 0; j < c; ++j) {
      xhat[j] = (xr[j] - m) * r;
      const float g = dyr[j] * gamma[j];
      sum_dxhat += g;
      sum_dxhat_xhat += static_cast<double>(g) * xhat[j];
    }
    const float mean_dxhat = static_cast<float>(sum_dxhat / static_cast<double>(c));
    const float mean_dxhat_xhat = static_cast<float>(sum_dxhat_xhat / static_cast<double>(c));
    for (std::int64_t j = 0; j < c; ++j) {
      dxr[j] = r * (dyr[j] * gamma[j] - mean_dxhat - xhat[j] * mean_dxhat_xhat);
      sum_dg[j] += dyr[j] * xhat[j];
      sum_db[j] += dyr[j];
    }
  }
  for (std::int64_t j = 0; j < c; ++j) {
    dgamma[j] = accumulate ? dgamma[j] + sum_dg[j] : sum_dg[j];
    dbeta[j] = accumulate ? dbeta[j] + sum_db[j] : sum_db[j];
  }
#endif
}

}  // namespace strata::kernels::cpu
