// CPU ops of parallel_ops.hpp: plain loops in a fixed order. The softmax statistics sum their
// exponentials in double, as cross_entropy_forward does, so a 50k-entry vocabulary shard keeps
// full fp32 precision; everything else is fp32, one rounding per formula step.
#include "kernels/cpu/parallel_ops_cpu.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace strata::kernels::cpu {
namespace {

// The row's token or target as an index into the shard, or -1 when it lies outside.
std::int64_t shard_index(std::int32_t value, std::int64_t first, std::int64_t count) {
  const std::int64_t local = static_cast<std::int64_t>(value) - first;
  return local >= 0 && local < count ? local : -1;
}

// log-sum-exp of a row from its combined statistics (max, sum_exp, target logit), in double and
// rounded once: the one definition both cross-entropy ops use, so that their lse agree bit for bit.
double row_lse(const float* stat) {
  return static_cast<double>(stat[0]) + std::log(static_cast<double>(stat[1]));
}

}  // namespace

// --- Vocabulary-parallel embedding -----------------------------------------------------------

void embedding_shard_forward(float* out, const std::int32_t* tokens, const float* wte_shard,
                             std::int64_t first, std::int64_t rows, std::int64_t n,
                             std::int64_t c) {
  for (std::int64_t i = 0; i < n; ++i) {
    float* o = out + i * c;  // (C)
    const std::int64_t v = shard_index(tokens[i], first, rows);
    if (v >= 0) {
      std::copy(wte_shard + v * c, wte_shard + (v + 1) * c, o);
    } else {
      std::fill(o, o + c, 0.0f);
    }
  }
}

void embedding_shard_backward(float* dwte_shard, const float* dout, const std::int32_t* tokens,
                              std::int64_t first, std::int64_t rows, std::int64_t n,
                              std::int64_t c) {
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t v = shard_index(tokens[i], first, rows);
    if (v < 0) continue;
    const float* g = dout + i * c;  // (C)
    float* d = dwte_shard + v * c;  // (C)
    for (std::int64_t j = 0; j < c; ++j) d[j] += g[j];
  }
}

// --- Position embedding over a slice of rows -------------------------------------------------

void add_positions(float* x, const float* wpe, std::int64_t first_row, std::int64_t rows,
                   std::int64_t t, std::int64_t c) {
  for (std::int64_t i = 0; i < rows; ++i) {
    float* o = x + i * c;                              // (C)
    const float* p = wpe + ((first_row + i) % t) * c;  // (C)
    for (std::int64_t j = 0; j < c; ++j) o[j] += p[j];
  }
}

void positions_backward(float* dwpe, const float* dx, std::int64_t first_row, std::int64_t rows,
                        std::int64_t t, std::int64_t c) {
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* g = dx + i * c;                  // (C)
    float* d = dwpe + ((first_row + i) % t) * c;  // (C)
    for (std::int64_t j = 0; j < c; ++j) d[j] += g[j];
  }
}

// --- Vocabulary-parallel cross-entropy -------------------------------------------------------

void softmax_stats(float* stats, const float* logits, const std::int32_t* targets,
                   std::int64_t first, std::int64_t cols, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float* row = logits + i * cols;  // (cols)
    const float max_logit = *std::max_element(row, row + cols);
    double sum = 0.0;
    for (std::int64_t v = 0; v < cols; ++v) {
      sum += std::exp(static_cast<double>(row[v] - max_logit));
    }
    const std::int64_t target = shard_index(targets[i], first, cols);
    float* stat = stats + 3 * i;  // (3)
    stat[0] = max_logit;
    stat[1] = static_cast<float>(sum);
    stat[2] = target >= 0 ? row[target] : 0.0f;
  }
}

// Written as s_max + s_other * exp(m_other - m) rather than s1 exp(m1 - m) + s2 exp(m2 - m):
// the same value (exp(0) = 1), but symmetric in the two sides whether or not the compiler fuses
// the multiply-add (GCC does for C++ on FMA hardware), so combine(a, b) == combine(b, a) bit for
// bit. Equal maxima skip the exp, which keeps the identity (-inf, 0, 0) free of NaN.
void combine_softmax_stats(float* inout, const float* in, std::int64_t rows) {
  for (std::int64_t i = 0; i < 3 * rows; i += 3) {
    const float m1 = inout[i];
    const float m2 = in[i];
    const bool first_is_max = m1 >= m2;
    const float m = first_is_max ? m1 : m2;
    const float other_m = first_is_max ? m2 : m1;
    const float s_max = first_is_max ? inout[i + 1] : in[i + 1];
    const float s_other = first_is_max ? in[i + 1] : inout[i + 1];
    const float scale = m1 == m2 ? 1.0f : std::exp(other_m - m);
    inout[i] = m;
    inout[i + 1] = s_max + s_other * scale;
    inout[i + 2] += in[i + 2];
  }
}

void cross_entropy_from_stats(float* lse, float* loss_sum, const float* stats, std::int64_t n) {
  double total = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double l = row_lse(stats + 3 * i);
    if (lse != nullptr) lse[i] = static_cast<float>(l);
    total += l - static_cast<double>(stats[3 * i + 2]);
  }
  *loss_sum = static_cast<float>(total);
}

void cross_entropy_shard_backward(float* dlogits, const float* logits, const float* lse,
                                  const float* stats, const std::int32_t* targets,
                                  std::int64_t first, std::int64_t cols, std::int64_t n,
                                  float scale) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float* row = logits + i * cols;  // (cols)
    float* d = dlogits + i * cols;         // (cols)
    const float l = lse != nullptr ? lse[i] : static_cast<float>(row_lse(stats + 3 * i));
    for (std::int64_t v = 0; v < cols; ++v) d[v] = scale * std::exp(row[v] - l);
    const std::int64_t target = shard_index(targets[i], first, cols);
    if (target >= 0) d[target] -= scale;
  }
}

}  // namespace strata::kernels::cpu
