// Vocabulary-parallel embedding and cross-entropy on the CPU; see vocab_parallel.hpp.
#include "executor/detail/vocab_parallel.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace strata::exec::detail {

void embedding_shard_forward(float* out, const std::int32_t* tokens, const float* wte,
                             std::int64_t first, std::int64_t rows, std::int64_t n,
                             std::int64_t c) {
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t v = tokens[i] - first;
    float* o = out + i * c;
    if (v >= 0 && v < rows) {
      std::memcpy(o, wte + v * c, sizeof(float) * static_cast<std::size_t>(c));
    } else {
      std::fill(o, o + c, 0.0f);
    }
  }
}

void embedding_shard_backward(float* dwte, const float* dout, const std::int32_t* tokens,
                              std::int64_t first, std::int64_t rows, std::int64_t n,
                              std::int64_t c) {
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t v = tokens[i] - first;
    if (v < 0 || v >= rows) continue;
    float* d = dwte + v * c;
    const float* g = dout + i * c;
    for (std::int64_t k = 0; k < c; ++k) d[k] += g[k];
  }
}

void add_positions(float* x, const float* wpe, std::int64_t first_row, std::int64_t rows,
                   std::int64_t t, std::int64_t c) {
  for (std::int64_t i = 0; i < rows; ++i) {
    float* o = x + i * c;
    const float* p = wpe + ((first_row + i) % t) * c;
    for (std::int64_t k = 0; k < c; ++k) o[k] += p[k];
  }
}

void positions_backward(float* dwpe, const float* dx, std::int64_t first_row, std::int64_t rows,
                        std::int64_t t, std::int64_t c) {
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* g = dx + i * c;
    float* d = dwpe + ((first_row + i) % t) * c;
    for (std::int64_t k = 0; k < c; ++k) d[k] += g[k];
  }
}

void bias_backward(float* dbias, const float* dy, std::int64_t rows, std::int64_t c) {
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t k = 0; k < c; ++k) dbias[k] += dy[i * c + k];
  }
}

void softmax_stats(float* stats, const float* logits, const std::int32_t* targets,
                   std::int64_t first, std::int64_t cols, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float* row = logits + i * cols;
    const float mx = *std::max_element(row, row + cols);
    double sum = 0;
    for (std::int64_t v = 0; v < cols; ++v) sum += std::exp(static_cast<double>(row[v] - mx));
    const std::int64_t tv = targets[i] - first;
    stats[3 * i] = mx;
    stats[3 * i + 1] = static_cast<float>(sum);
    stats[3 * i + 2] = tv >= 0 && tv < cols ? row[tv] : 0.0f;
  }
}

double cross_entropy_from_stats(float* lse, const float* stats, std::int64_t n) {
  double total = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double l = stats[3 * i] + std::log(static_cast<double>(stats[3 * i + 1]));
    lse[i] = static_cast<float>(l);
    total += l - stats[3 * i + 2];
  }
  return total;
}

void cross_entropy_shard_backward(float* dlogits, const float* logits, const float* lse,
                                  const std::int32_t* targets, std::int64_t first,
                                  std::int64_t cols, std::int64_t n, float scale) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float* row = logits + i * cols;
    float* d = dlogits + i * cols;
    for (std::int64_t v = 0; v < cols; ++v) d[v] = scale * std::exp(row[v] - lse[i]);
    const std::int64_t tv = targets[i] - first;
    if (tv >= 0 && tv < cols) d[tv] -= scale;
  }
}

}  // namespace strata::exec::detail
