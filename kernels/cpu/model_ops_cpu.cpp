// CPU ops of model_ops.hpp: plain loops in a fixed order, except the linear layer's and the
// attention's matrix products, which use Eigen when available (STRATA_KERNELS_HAVE_EIGEN) and
// loops otherwise.
// Every reduction runs in a fixed order, so repeated runs give bit-identical results.
#include "kernels/cpu/model_ops_cpu.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#if STRATA_KERNELS_HAVE_EIGEN
#include <Eigen/Core>
#endif

namespace strata::kernels::cpu {
namespace {

#if STRATA_KERNELS_HAVE_EIGEN
using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<RowMajorMatrix, Eigen::Unaligned>;
using ConstMatrixMap = Eigen::Map<const RowMajorMatrix, Eigen::Unaligned>;
using ConstVectorMap = Eigen::Map<const Eigen::RowVectorXf, Eigen::Unaligned>;
// One head's (T, D) slice of a row-major tensor whose rows are `stride` floats apart.
using Strided = Eigen::OuterStride<Eigen::Dynamic>;
using HeadMap = Eigen::Map<RowMajorMatrix, Eigen::Unaligned, Strided>;
using ConstHeadMap = Eigen::Map<const RowMajorMatrix, Eigen::Unaligned, Strided>;
#endif

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

// --- Embedding -------------------------------------------------------------------------------

void embedding_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe,
                       std::int64_t b, std::int64_t t, std::int64_t c) {
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t p = 0; p < t; ++p) {
      const float* tok_row = wte + static_cast<std::int64_t>(tokens[i * t + p]) * c;  // (C)
      const float* pos_row = wpe + p * c;                                             // (C)
      float* out_row = out + (i * t + p) * c;                                         // (C)
      for (std::int64_t j = 0; j < c; ++j) out_row[j] = tok_row[j] + pos_row[j];
    }
  }
}

void embedding_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens,
                        std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t vocab) {
  std::fill(dwte, dwte + vocab * c, 0.0f);
  std::fill(dwpe, dwpe + t * c, 0.0f);
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t p = 0; p < t; ++p) {
      const float* d = dout + (i * t + p) * c;                                   // (C)
      float* tok_row = dwte + static_cast<std::int64_t>(tokens[i * t + p]) * c;  // (C)
      float* pos_row = dwpe + p * c;                                             // (C)
      for (std::int64_t j = 0; j < c; ++j) {
        tok_row[j] += d[j];
        pos_row[j] += d[j];
      }
    }
  }
}

// --- RMSNorm ---------------------------------------------------------------------------------

void rms_norm_forward(float* y, float* rstd, const float* x, const float* weight, std::int64_t n,
                      std::int64_t c, float eps) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float* xr = x + i * c;  // (C)
    float* yr = y + i * c;        // (C)
    double sq = 0.0;
    for (std::int64_t j = 0; j < c; ++j) sq += static_cast<double>(xr[j]) * xr[j];
    const float r =
        static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(c) + static_cast<double>(eps)));
    for (std::int64_t j = 0; j < c; ++j) yr[j] = xr[j] * r * weight[j];
    rstd[i] = r;
  }
}

void rms_norm_backward(float* dx, float* dweight, const float* dy, const float* x,
                       const float* weight, const float* rstd, std::int64_t n, std::int64_t c,
                       bool accumulate) {
  if (n == 0 && accumulate) return;
  // dweight's sum is formed apart and then written or added: with accumulate the result is
  // exactly dweight + (the overwriting result).
  std::vector<float> sum_dw(static_cast<std::size_t>(c), 0.0f);  // (C)
  for (std::int64_t i = 0; i < n; ++i) {
    const float* xr = x + i * c;    // (C)
    const float* dyr = dy + i * c;  // (C)
    float* dxr = dx + i * c;        // (C)
    const float r = rstd[i];
    double sum_g_xhat = 0.0;
    for (std::int64_t j = 0; j < c; ++j) {
      sum_g_xhat += static_cast<double>(dyr[j] * weight[j]) * (xr[j] * r);
    }
    const float mean_g_xhat = static_cast<float>(sum_g_xhat / static_cast<double>(c));
    for (std::int64_t j = 0; j < c; ++j) {
      const float xhat = xr[j] * r;
      dxr[j] = r * (dyr[j] * weight[j] - xhat * mean_g_xhat);
      sum_dw[static_cast<std::size_t>(j)] += dyr[j] * xhat;
    }
  }
  for (std::int64_t j = 0; j < c; ++j) {
    const float s = sum_dw[static_cast<std::size_t>(j)];
    dweight[j] = accumulate ? dweight[j] + s : s;
  }
}

// --- Linear ----------------------------------------------------------------------------------

void linear_forward(float* y, const float* x, const float* weight, const float* bias,
                    std::int64_t n, std::int64_t in, std::int64_t out) {
#if STRATA_KERNELS_HAVE_EIGEN
  ConstMatrixMap xs(x, n, in);         // (N, IN)
  ConstMatrixMap ws(weight, out, in);  // (OUT, IN)
  MatrixMap ys(y, n, out);             // (N, OUT)
  ys.noalias() = xs * ws.transpose();
  if (bias != nullptr) ys.rowwise() += ConstVectorMap(bias, out);
#else
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t o = 0; o < out; ++o) {
      const float* xr = x + i * in;       // (IN)
      const float* wr = weight + o * in;  // (IN)
      float acc = bias != nullptr ? bias[o] : 0.0f;
      for (std::int64_t k = 0; k < in; ++k) acc += xr[k] * wr[k];
      y[i * out + o] = acc;
    }
  }
#endif
}

// Column sums in tiles of kTile columns: per column the rows are added in order from 0.0f, the
// order the fused linear_backward used (setZero, then += row by row), without a heap scratch.
void column_sums(float* dbias, const float* dy, std::int64_t rows, std::int64_t c,
                 bool accumulate) {
  if (rows == 0 && accumulate) return;
  constexpr std::int64_t kTile = 256;
  float acc[kTile];
  for (std::int64_t j0 = 0; j0 < c; j0 += kTile) {
    const std::int64_t len = std::min(kTile, c - j0);
    std::fill(acc, acc + len, 0.0f);
    for (std::int64_t i = 0; i < rows; ++i) {
      const float* row = dy + i * c + j0;  // (len)
      for (std::int64_t j = 0; j < len; ++j) acc[j] += row[j];
    }
    float* d = dbias + j0;  // (len)
    for (std::int64_t j = 0; j < len; ++j) d[j] = accumulate ? d[j] + acc[j] : acc[j];
  }
}

void linear_backward_data(float* dx, const float* dy, const float* weight, std::int64_t n,
                          std::int64_t in, std::int64_t out, bool accumulate) {
  if (n == 0) return;
#if STRATA_KERNELS_HAVE_EIGEN
  ConstMatrixMap dys(dy, n, out);      // (N, OUT)
  ConstMatrixMap ws(weight, out, in);  // (OUT, IN)
  MatrixMap dxs(dx, n, in);            // (N, IN)
  if (accumulate) {
    dxs.noalias() += dys * ws;
  } else {
    dxs.noalias() = dys * ws;
  }
#else
  for (std::int64_t i = 0; i < n; ++i) {
    const float* dyr = dy + i * out;  // (OUT)
    float* dxr = dx + i * in;         // (IN)
    if (!accumulate) std::fill(dxr, dxr + in, 0.0f);
    for (std::int64_t o = 0; o < out; ++o) {
      const float d = dyr[o];
      const float* wr = weight + o * in;  // (IN)
      for (std::int64_t k = 0; k < in; ++k) dxr[k] += d * wr[k];
    }
  }
#endif
}

void linear_backward_weight(float* dweight, float* dbias, const float* dy, const float* x,
                            std::int64_t n, std::int64_t in, std::int64_t out, bool accumulate) {
#if STRATA_KERNELS_HAVE_EIGEN
  MatrixMap dws(dweight, out, in);  // (OUT, IN)
  if (n > 0) {
    ConstMatrixMap dys(dy, n, out);  // (N, OUT)
    ConstMatrixMap xs(x, n, in);     // (N, IN)
    if (accumulate) {
      dws.noalias() += dys.transpose() * xs;
    } else {
      dws.noalias() = dys.transpose() * xs;
    }
  } else if (!accumulate) {
    dws.setZero();
  }
#else
  if (!accumulate) std::fill(dweight, dweight + out * in, 0.0f);
  for (std::int64_t i = 0; i < n; ++i) {
    const float* dyr = dy + i * out;  // (OUT)
    const float* xr = x + i * in;     // (IN)
    for (std::int64_t o = 0; o < out; ++o) {
      const float d = dyr[o];
      float* dwr = dweight + o * in;  // (IN)
      for (std::int64_t k = 0; k < in; ++k) dwr[k] += d * xr[k];
    }
  }
#endif
  if (dbias != nullptr) column_sums(dbias, dy, n, out, accumulate);
}

// --- Causal self-attention -------------------------------------------------------------------

// Loops over (batch, head, query position); the row of att for query p holds p + 1 probabilities
// followed by zeros. Scores use a max-subtracted softmax.
#if STRATA_KERNELS_HAVE_EIGEN
// Per (batch row, head): the scores as one (T, T) matrix product, the causal mask and the
// softmax row by row, the output as a second product. The products cover the whole square
// (twice the causal FLOPs), which blocked GEMMs still run several times faster than loops over
// the triangle.
void attention_forward(float* out, float* att, const float* qkv, std::int64_t b, std::int64_t t,
                       std::int64_t c, std::int64_t h) {
  const std::int64_t d = c / h;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  Eigen::ArrayXf row_scratch(t);  // (T)
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t head = 0; head < h; ++head) {
      const float* base = qkv + i * t * 3 * c + head * d;
      const ConstHeadMap q(base, t, d, Strided(3 * c));          // (T, D)
      const ConstHeadMap k(base + c, t, d, Strided(3 * c));      // (T, D)
      const ConstHeadMap v(base + 2 * c, t, d, Strided(3 * c));  // (T, D)
      MatrixMap p(att + (i * h + head) * t * t, t, t);           // (T, T)
      p.noalias() = (q * k.transpose()) * scale;
      for (std::int64_t r = 0; r < t; ++r) {
        // The row's softmax in aligned scratch with Eigen's vectorised exp: in place on `att`
        // the split between scalar and packet exp would follow the address (kernels/README.md).
        auto e = row_scratch.head(r + 1);
        e = Eigen::Map<const Eigen::ArrayXf, Eigen::Unaligned>(p.data() + r * t, r + 1);
        e = (e - e.maxCoeff()).exp();
        e *= 1.0f / e.sum();
        float* row = p.data() + r * t;
        std::copy(e.data(), e.data() + r + 1, row);
        std::fill(row + r + 1, row + t, 0.0f);
      }
      HeadMap o(out + i * t * c + head * d, t, d, Strided(c));  // (T, D)
      o.noalias() = p * v;
    }
  }
}

// With P the probabilities and dY the output gradient of one head:
//   dV = P^T dY,  dP = dY V^T,  dS = P o (dP - rowsum(P o dP)) / sqrt(D),
//   dQ = dS K,  dK = dS^T Q  (P is 0 above the diagonal, so dS is too).
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h) {
  const std::int64_t d = c / h;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  RowMajorMatrix ds(t, t);  // (T, T) scratch
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t head = 0; head < h; ++head) {
      const float* base = qkv + i * t * 3 * c + head * d;
      float* dbase = dqkv + i * t * 3 * c + head * d;
      const ConstHeadMap q(base, t, d, Strided(3 * c));
      const ConstHeadMap k(base + c, t, d, Strided(3 * c));
      const ConstHeadMap v(base + 2 * c, t, d, Strided(3 * c));
      HeadMap dq(dbase, t, d, Strided(3 * c));
      HeadMap dk(dbase + c, t, d, Strided(3 * c));
      HeadMap dv(dbase + 2 * c, t, d, Strided(3 * c));
      const ConstMatrixMap p(att + (i * h + head) * t * t, t, t);
      const ConstHeadMap dy(dout + i * t * c + head * d, t, d, Strided(c));
      dv.noalias() = p.transpose() * dy;
      ds.noalias() = dy * v.transpose();  // dP
      for (std::int64_t r = 0; r < t; ++r) {
        float dot = 0.0f;
        for (std::int64_t s2 = 0; s2 <= r; ++s2) dot += p(r, s2) * ds(r, s2);
        for (std::int64_t s2 = 0; s2 < t; ++s2) {
          ds(r, s2) = s2 <= r ? p(r, s2) * (ds(r, s2) - dot) * scale : 0.0f;
        }
      }
      dq.noalias() = ds * k;
      dk.noalias() = ds.transpose() * q;
    }
  }
}
#else
void attention_forward(float* out, float* att, const float* qkv, std::int64_t b, std::int64_t t,
                       std::int64_t c, std::int64_t h) {
  const std::int64_t d = c / h;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t head = 0; head < h; ++head) {
      for (std::int64_t p = 0; p < t; ++p) {
        const float* q = qkv + (i * t + p) * 3 * c + head * d;  // (D)
        float* row = att + ((i * h + head) * t + p) * t;        // (T)
        float max_score = -INFINITY;
        for (std::int64_t s = 0; s <= p; ++s) {
          const float* k = qkv + (i * t + s) * 3 * c + c + head * d;  // (D)
          float dot = 0.0f;
          for (std::int64_t j = 0; j < d; ++j) dot += q[j] * k[j];
          row[s] = dot * scale;
          max_score = std::max(max_score, row[s]);
        }
        float sum = 0.0f;
        for (std::int64_t s = 0; s <= p; ++s) {
          row[s] = std::exp(row[s] - max_score);
          sum += row[s];
        }
        const float inv_sum = 1.0f / sum;
        for (std::int64_t s = 0; s <= p; ++s) row[s] *= inv_sum;
        for (std::int64_t s = p + 1; s < t; ++s) row[s] = 0.0f;

        float* o = out + (i * t + p) * c + head * d;  // (D)
        std::fill(o, o + d, 0.0f);
        for (std::int64_t s = 0; s <= p; ++s) {
          const float* v = qkv + (i * t + s) * 3 * c + 2 * c + head * d;  // (D)
          for (std::int64_t j = 0; j < d; ++j) o[j] += row[s] * v[j];
        }
      }
    }
  }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        std::int64_t b, std::int64_t t, std::int64_t c, std::int64_t h) {
  const std::int64_t d = c / h;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::fill(dqkv, dqkv + b * t * 3 * c, 0.0f);
  std::vector<float> datt(static_cast<std::size_t>(t));  // (T) scratch: d loss / d att[p, :]
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t head = 0; head < h; ++head) {
      for (std::int64_t p = 0; p < t; ++p) {
        const float* row = att + ((i * h + head) * t + p) * t;  // (T)
        const float* dy = dout + (i * t + p) * c + head * d;    // (D)
        const float* q = qkv + (i * t + p) * 3 * c + head * d;  // (D)
        float* dq = dqkv + (i * t + p) * 3 * c + head * d;      // (D)
        // out[p] = sum_s att[p, s] v[s]: gradients of att and of v.
        float dot_att_datt = 0.0f;
        for (std::int64_t s = 0; s <= p; ++s) {
          const float* v = qkv + (i * t + s) * 3 * c + 2 * c + head * d;  // (D)
          float* dv = dqkv + (i * t + s) * 3 * c + 2 * c + head * d;      // (D)
          float dot = 0.0f;
          for (std::int64_t j = 0; j < d; ++j) {
            dot += dy[j] * v[j];
            dv[j] += row[s] * dy[j];
          }
          datt[static_cast<std::size_t>(s)] = dot;
          dot_att_datt += row[s] * dot;
        }
        // Softmax backward, then the scaled dot products q[p] . k[s].
        for (std::int64_t s = 0; s <= p; ++s) {
          const float dscore = row[s] * (datt[static_cast<std::size_t>(s)] - dot_att_datt) * scale;
          const float* k = qkv + (i * t + s) * 3 * c + c + head * d;  // (D)
          float* dk = dqkv + (i * t + s) * 3 * c + c + head * d;      // (D)
          for (std::int64_t j = 0; j < d; ++j) {
            dq[j] += dscore * k[j];
            dk[j] += dscore * q[j];
          }
        }
      }
    }
  }
}
#endif

// --- SwiGLU ----------------------------------------------------------------------------------

// sigmoid(g) = 1 / (1 + exp(-g)) is safe without clamping in fp32: for g < -88 exp(-g) is inf
// and sigmoid is 0, and every formula below then gives 0.
void swiglu_forward(float* out, const float* x, std::int64_t n, std::int64_t f) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float* gate = x + i * 2 * f;  // (F)
    const float* up = gate + f;         // (F)
    float* o = out + i * f;             // (F)
    for (std::int64_t j = 0; j < f; ++j) o[j] = gate[j] * sigmoid(gate[j]) * up[j];
  }
}

void swiglu_backward(float* dx, const float* dout, const float* x, std::int64_t n, std::int64_t f) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float* gate = x + i * 2 * f;  // (F)
    const float* up = gate + f;         // (F)
    const float* dy = dout + i * f;     // (F)
    float* dgate = dx + i * 2 * f;      // (F)
    float* dup = dgate + f;             // (F)
    for (std::int64_t j = 0; j < f; ++j) {
      const float g = gate[j];
      const float sig = sigmoid(g);
      dgate[j] = dy[j] * up[j] * sig * (1.0f + g * (1.0f - sig));
      dup[j] = dy[j] * g * sig;
    }
  }
}

// --- LM-head loss ----------------------------------------------------------------------------

// Log-sum-exp per row with the row maximum subtracted; sums and the mean in double, so the loss
// of a 50k-entry vocabulary keeps full fp32 precision.
void cross_entropy_forward(float* loss, float* lse, const float* logits,
                           const std::int32_t* targets, std::int64_t n, std::int64_t vocab) {
  double total = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const float* row = logits + i * vocab;  // (V)
    const float max_logit = *std::max_element(row, row + vocab);
    double sum = 0.0;
    for (std::int64_t j = 0; j < vocab; ++j)
      sum += std::exp(static_cast<double>(row[j] - max_logit));
    const double row_lse = static_cast<double>(max_logit) + std::log(sum);
    lse[i] = static_cast<float>(row_lse);
    total += row_lse - static_cast<double>(row[targets[i]]);
  }
  *loss = n > 0 ? static_cast<float>(total / static_cast<double>(n)) : 0.0f;
}

void cross_entropy_backward(float* dlogits, const float* logits, const float* lse,
                            const std::int32_t* targets, std::int64_t n, std::int64_t vocab,
                            float dloss) {
  const float scale = dloss / static_cast<float>(n);
  for (std::int64_t i = 0; i < n; ++i) {
    const float* row = logits + i * vocab;  // (V)
    float* drow = dlogits + i * vocab;      // (V)
    for (std::int64_t j = 0; j < vocab; ++j) drow[j] = scale * std::exp(row[j] - lse[i]);
    drow[targets[i]] -= scale;
  }
}

// --- AdamW -----------------------------------------------------------------------------------

void adamw_step(float* params, float* m, float* v, const float* grads, std::int64_t n,
                std::int64_t step, const AdamWOptions& options) {
  const double s = static_cast<double>(step);
  const float bias1 = static_cast<float>(1.0 - std::pow(static_cast<double>(options.beta1), s));
  const float bias2 = static_cast<float>(1.0 - std::pow(static_cast<double>(options.beta2), s));
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = grads[i];
    m[i] = options.beta1 * m[i] + (1.0f - options.beta1) * g;
    v[i] = options.beta2 * v[i] + (1.0f - options.beta2) * g * g;
    const float mhat = m[i] / bias1;
    const float vhat = v[i] / bias2;
    params[i] -=
        options.lr * (mhat / (std::sqrt(vhat) + options.eps) + options.weight_decay * params[i]);
  }
}

}  // namespace strata::kernels::cpu
