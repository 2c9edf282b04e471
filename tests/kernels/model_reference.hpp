// Test helpers for the ops of kernels/model_ops.hpp: straightforward double-precision references
// (plain loops, the definition the kernels are held to) and a weighted-sum loss for finite
// differences. Shared helpers (central differences, expect_close, ...) are in reference.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/kernels/reference.hpp"

namespace strata::kernels::testing {

// sum_k dy[k] * y[k]: a scalar loss whose gradient with respect to y is dy.
inline double weighted_sum(const std::vector<double>& dy, const std::vector<double>& y) {
  double total = 0.0;
  for (std::size_t k = 0; k < dy.size(); ++k) total += dy[k] * y[k];
  return total;
}

// out (B, T, C) from tokens (B, T), wte (V, C), wpe (T, C).
inline std::vector<double> embedding_reference(const std::vector<std::int32_t>& tokens,
                                               const std::vector<double>& wte,
                                               const std::vector<double>& wpe, std::int64_t b,
                                               std::int64_t t, std::int64_t c) {
  std::vector<double> out(b * t * c);
  for (std::int64_t i = 0; i < b * t; ++i) {
    const std::int64_t tok = tokens[i];
    const std::int64_t pos = i % t;
    for (std::int64_t j = 0; j < c; ++j) out[i * c + j] = wte[tok * c + j] + wpe[pos * c + j];
  }
  return out;
}

struct RmsNormReference {
  std::vector<double> y;     // (N, C)
  std::vector<double> rstd;  // (N)
};

inline RmsNormReference rms_norm_reference(const std::vector<double>& x,
                                           const std::vector<double>& weight, std::int64_t n,
                                           std::int64_t c, double eps) {
  RmsNormReference out{std::vector<double>(x.size()), std::vector<double>(n)};
  for (std::int64_t i = 0; i < n; ++i) {
    double sq = 0.0;
    for (std::int64_t j = 0; j < c; ++j) sq += x[i * c + j] * x[i * c + j];
    const double r = 1.0 / std::sqrt(sq / c + eps);
    for (std::int64_t j = 0; j < c; ++j) out.y[i * c + j] = x[i * c + j] * r * weight[j];
    out.rstd[i] = r;
  }
  return out;
}

// y (N, OUT) = x (N, IN) W^T (OUT, IN) + bias (OUT; empty for none).
inline std::vector<double> linear_reference(const std::vector<double>& x,
                                            const std::vector<double>& weight,
                                            const std::vector<double>& bias, std::int64_t n,
                                            std::int64_t in, std::int64_t out) {
  std::vector<double> y(n * out);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t o = 0; o < out; ++o) {
      double acc = bias.empty() ? 0.0 : bias[o];
      for (std::int64_t k = 0; k < in; ++k) acc += x[i * in + k] * weight[o * in + k];
      y[i * out + o] = acc;
    }
  }
  return y;
}

// max |got - want| / max |want| (max |got - want| when want is all 0): the kernel headers'
// measure of a difference relative to the tensor's largest element. Entries that are -inf in
// both count as equal (the lse of a query row that sees no key).
template <typename Got, typename Want>
double relative_to_largest(const std::vector<Got>& got, const std::vector<Want>& want) {
  double diff = 0.0, largest = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const auto g = static_cast<double>(got[i]);
    const auto w = static_cast<double>(want[i]);
    if (std::isinf(g) && g == w) continue;
    diff = std::max(diff, std::fabs(g - w));
    largest = std::max(largest, std::fabs(w));
  }
  return largest > 0.0 ? diff / largest : diff;
}

// A causal-attention test shape: qkv (B, T, 3C) with H heads; `name` names the gtest case.
struct AttentionShape {
  std::int64_t b;
  std::int64_t t;
  std::int64_t c;
  std::int64_t h;
  std::string name;
};

// For INSTANTIATE_TEST_SUITE_P: each case named after its shape.
inline std::string attention_shape_name(const ::testing::TestParamInfo<AttentionShape>& info) {
  return info.param.name;
}

struct AttentionReference {
  std::vector<double> out;  // (B, T, C)
  std::vector<double> att;  // (B, H, T, T)
  std::vector<double> lse;  // (B, H, T) log sum_{s <= t} exp(score[t, s])
};

// Causal MHA on qkv (B, T, 3C) laid out [q | k | v], head h at columns h*D .. h*D + D - 1.
inline AttentionReference attention_reference(const std::vector<double>& qkv, std::int64_t b,
                                              std::int64_t t, std::int64_t c, std::int64_t h) {
  const std::int64_t d = c / h;
  AttentionReference r{std::vector<double>(b * t * c, 0.0), std::vector<double>(b * h * t * t, 0.0),
                       std::vector<double>(b * h * t)};
  const auto at = [&](std::int64_t i, std::int64_t p, std::int64_t part, std::int64_t head,
                      std::int64_t j) {
    return qkv[(i * t + p) * 3 * c + part * c + head * d + j];
  };
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t head = 0; head < h; ++head) {
      for (std::int64_t p = 0; p < t; ++p) {
        std::vector<double> score(p + 1);
        for (std::int64_t s = 0; s <= p; ++s) {
          double dot = 0.0;
          for (std::int64_t j = 0; j < d; ++j) dot += at(i, p, 0, head, j) * at(i, s, 1, head, j);
          score[s] = dot / std::sqrt(static_cast<double>(d));
        }
        const double mx = *std::max_element(score.begin(), score.end());
        double sum = 0.0;
        for (double& sc : score) sum += (sc = std::exp(sc - mx));
        r.lse[(i * h + head) * t + p] = mx + std::log(sum);
        for (std::int64_t s = 0; s <= p; ++s) {
          const double prob = score[s] / sum;
          r.att[((i * h + head) * t + p) * t + s] = prob;
          for (std::int64_t j = 0; j < d; ++j) {
            r.out[(i * t + p) * c + head * d + j] += prob * at(i, s, 2, head, j);
          }
        }
      }
    }
  }
  return r;
}

// Attention over explicit positions (attention_segments_forward): q (B, Tq, C) and k, v
// (B, Tk, C) dense, query row t at q_pos[t], key row s at k_pos[s]; key s visible to query t iff
// k_pos[s] <= q_pos[t]. A query that sees no key gets out 0 and lse -inf.
struct PositionAttentionReference {
  std::vector<double> out;  // (B, Tq, C)
  std::vector<double> lse;  // (B, H, Tq)
};

inline PositionAttentionReference attention_positions_reference(
    const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
    const std::vector<std::int64_t>& q_pos, const std::vector<std::int64_t>& k_pos, std::int64_t b,
    std::int64_t c, std::int64_t h) {
  const auto tq = static_cast<std::int64_t>(q_pos.size());
  const auto tk = static_cast<std::int64_t>(k_pos.size());
  const std::int64_t d = c / h;
  PositionAttentionReference r{std::vector<double>(b * tq * c, 0.0),
                               std::vector<double>(b * h * tq, -INFINITY)};
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t head = 0; head < h; ++head) {
      for (std::int64_t t = 0; t < tq; ++t) {
        std::vector<std::int64_t> keys;
        std::vector<double> score;
        for (std::int64_t s = 0; s < tk; ++s) {
          if (k_pos[s] > q_pos[t]) continue;
          double dot = 0.0;
          for (std::int64_t j = 0; j < d; ++j) {
            dot += q[(i * tq + t) * c + head * d + j] * k[(i * tk + s) * c + head * d + j];
          }
          keys.push_back(s);
          score.push_back(dot / std::sqrt(static_cast<double>(d)));
        }
        if (keys.empty()) continue;
        const double mx = *std::max_element(score.begin(), score.end());
        double sum = 0.0;
        for (double& sc : score) sum += (sc = std::exp(sc - mx));
        r.lse[(i * h + head) * tq + t] = mx + std::log(sum);
        for (std::size_t n = 0; n < keys.size(); ++n) {
          for (std::int64_t j = 0; j < d; ++j) {
            r.out[(i * tq + t) * c + head * d + j] +=
                score[n] / sum * v[(i * tk + keys[n]) * c + head * d + j];
          }
        }
      }
    }
  }
  return r;
}

// out (N, F) = silu(x[:, :F]) * x[:, F:].
inline std::vector<double> swiglu_reference(const std::vector<double>& x, std::int64_t n,
                                            std::int64_t f) {
  std::vector<double> out(n * f);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < f; ++j) {
      const double g = x[i * 2 * f + j];
      out[i * f + j] = g / (1.0 + std::exp(-g)) * x[i * 2 * f + f + j];
    }
  }
  return out;
}

struct CrossEntropyReference {
  double loss = 0.0;
  std::vector<double> lse;  // (N)
};

// Mean over rows of lse - logits[target], logits (N, V).
inline CrossEntropyReference cross_entropy_reference(const std::vector<double>& logits,
                                                     const std::vector<std::int32_t>& targets,
                                                     std::int64_t n, std::int64_t vocab) {
  CrossEntropyReference r{0.0, std::vector<double>(n)};
  for (std::int64_t i = 0; i < n; ++i) {
    const double* row = logits.data() + i * vocab;
    const double mx = *std::max_element(row, row + vocab);
    double sum = 0.0;
    for (std::int64_t j = 0; j < vocab; ++j) sum += std::exp(row[j] - mx);
    r.lse[i] = mx + std::log(sum);
    r.loss += (r.lse[i] - row[targets[i]]) / static_cast<double>(n);
  }
  return r;
}

// --- Shards (kernels/parallel_ops.hpp) ---------------------------------------------------------

// out (N, C): row tokens[i] - first of wte_shard (rows, C) for tokens in the shard, else zeros.
inline std::vector<double> embedding_shard_reference(const std::vector<std::int32_t>& tokens,
                                                     const std::vector<double>& wte_shard,
                                                     std::int64_t first, std::int64_t rows,
                                                     std::int64_t c) {
  const auto n = static_cast<std::int64_t>(tokens.size());
  std::vector<double> out(n * c, 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t v = tokens[i] - first;
    if (v < 0 || v >= rows) continue;
    for (std::int64_t j = 0; j < c; ++j) out[i * c + j] = wte_shard[v * c + j];
  }
  return out;
}

// x (rows, C) plus the position rows (first_row + i) mod T of wpe (T, C).
inline std::vector<double> add_positions_reference(const std::vector<double>& x,
                                                   const std::vector<double>& wpe,
                                                   std::int64_t first_row, std::int64_t rows,
                                                   std::int64_t t, std::int64_t c) {
  std::vector<double> out(x);
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t j = 0; j < c; ++j) out[i * c + j] += wpe[((first_row + i) % t) * c + j];
  }
  return out;
}

// Per row of logits (N, cols), vocabulary columns first ..: (max, sum exp(l - max), target
// logit or 0 when the target is outside the shard) -> (N, 3).
inline std::vector<double> softmax_stats_reference(const std::vector<double>& logits,
                                                   const std::vector<std::int32_t>& targets,
                                                   std::int64_t first, std::int64_t cols,
                                                   std::int64_t n) {
  std::vector<double> stats(3 * n);
  for (std::int64_t i = 0; i < n; ++i) {
    const double* row = logits.data() + i * cols;
    const double mx = *std::max_element(row, row + cols);
    double sum = 0.0;
    for (std::int64_t v = 0; v < cols; ++v) sum += std::exp(row[v] - mx);
    const std::int64_t tv = targets[i] - first;
    stats[3 * i] = mx;
    stats[3 * i + 1] = sum;
    stats[3 * i + 2] = tv >= 0 && tv < cols ? row[tv] : 0.0;
  }
  return stats;
}

}  // namespace strata::kernels::testing
