// CPU ops of moe_ops.hpp: the row arithmetic shared with CUDA (kernels/detail/moe_rows.hpp) in
// loops over rows, the permutation as buckets per expert, and the grouped GEMM as the linear
// layer's Eigen products (model_ops_cpu.cpp), one per segment. Fixed orders throughout, so
// repeated runs give bit-identical results.
#include "kernels/cpu/moe_ops_cpu.hpp"

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kernels/cpu/model_ops_cpu.hpp"
#include "kernels/detail/moe_rows.hpp"

namespace strata::kernels::cpu {
namespace {

namespace moe = detail::moe;

// counts_j: the choices of topk_idx (N k, all in [0, E)) naming expert j.
std::vector<std::int32_t> expert_counts(const std::int32_t* topk_idx, std::int64_t nk,
                                        std::int64_t e) {
  std::vector<std::int32_t> counts(static_cast<std::size_t>(e), 0);
  for (std::int64_t i = 0; i < nk; ++i) ++counts[static_cast<std::size_t>(topk_idx[i])];
  return counts;
}

// Row offsets of the segments, cut at r (the counts are validated: they sum to at most r).
std::vector<std::int64_t> segment_starts(const std::int32_t* counts, std::int64_t n_segments) {
  std::vector<std::int64_t> starts(static_cast<std::size_t>(n_segments) + 1, 0);
  for (std::int64_t s = 0; s < n_segments; ++s) {
    starts[static_cast<std::size_t>(s) + 1] = starts[static_cast<std::size_t>(s)] + counts[s];
  }
  return starts;
}

}  // namespace

// --- Router ----------------------------------------------------------------------------------

void moe_router_forward(float* probs, std::int32_t* topk_idx, float* topk_w, const float* logits,
                        std::int64_t n, std::int64_t e, std::int64_t k, bool normalize) {
  for (std::int64_t t = 0; t < n; ++t) {
    moe::router_row_forward(probs + t * e, topk_idx + t * k, topk_w + t * k, logits + t * e, e, k,
                            normalize);
  }
}

void moe_router_backward(float* dlogits, const float* dtopk_w, const float* probs,
                         const std::int32_t* topk_idx, std::int64_t n, std::int64_t e,
                         std::int64_t k, bool normalize, float aux_coef, float aux_scale) {
  const double factor = moe::aux_factor(n, e, k, aux_coef, aux_scale);
  std::vector<std::int32_t> counts;
  if (factor != 0.0) counts = expert_counts(topk_idx, n * k, e);
  for (std::int64_t t = 0; t < n; ++t) {
    moe::router_row_backward(dlogits + t * e, dtopk_w + t * k, probs + t * e, topk_idx + t * k, e,
                             k, normalize, counts.empty() ? nullptr : counts.data(), factor);
  }
}

void moe_aux_loss_forward(double* loss, const float* probs, const std::int32_t* topk_idx,
                          std::int64_t n, std::int64_t e, std::int64_t k, float aux_coef,
                          float aux_scale) {
  const double factor = moe::aux_factor(n, e, k, aux_coef, aux_scale);
  if (factor == 0.0) return;
  const std::vector<std::int32_t> counts = expert_counts(topk_idx, n * k, e);
  double sum = 0.0;
  for (std::int64_t j = 0; j < e; ++j) {
    double column = 0.0;  // sum_t probs[t, j], rows in order (the CUDA kernel's order)
    for (std::int64_t t = 0; t < n; ++t) column += probs[t * e + j];
    sum += static_cast<double>(counts[static_cast<std::size_t>(j)]) * column;
  }
  *loss += factor * sum;
}

// --- Permutation and combine -----------------------------------------------------------------

void moe_permute_forward(float* rows_out, std::int32_t* row_of, std::int32_t* counts,
                         const float* x, const std::int32_t* topk_idx, const float* topk_w,
                         std::int64_t n, std::int64_t c, std::int64_t e, std::int64_t k,
                         std::int64_t r_max, std::int64_t capacity) {
  const std::int64_t nk = n * k;
  // Each expert's choices (flat index t k + s), in increasing order: token, then slot.
  std::vector<std::vector<std::int64_t>> choices(static_cast<std::size_t>(e));
  for (std::int64_t i = 0; i < nk; ++i) {
    choices[static_cast<std::size_t>(topk_idx[i])].push_back(i);
  }
  std::vector<char> keep(static_cast<std::size_t>(nk), 1);
  if (capacity > 0) {
    const auto before = [&](std::int64_t a, std::int64_t b) {
      return moe::ranks_before(topk_w[a], a, topk_w[b], b);
    };
    for (const std::vector<std::int64_t>& list : choices) {
      if (static_cast<std::int64_t>(list.size()) <= capacity) continue;
      std::vector<std::int64_t> ranked = list;
      std::nth_element(ranked.begin(), ranked.begin() + capacity, ranked.end(), before);
      for (auto it = ranked.begin() + capacity; it != ranked.end(); ++it) {
        keep[static_cast<std::size_t>(*it)] = 0;
      }
    }
  }
  std::int64_t row = 0;
  for (std::int64_t j = 0; j < e; ++j) {
    std::int32_t count = 0;
    for (const std::int64_t i : choices[static_cast<std::size_t>(j)]) {
      if (keep[static_cast<std::size_t>(i)] == 0) {
        row_of[i] = -1;
        continue;
      }
      row_of[i] = static_cast<std::int32_t>(row);
      const float* src = x + (i / k) * c;  // (C)
      std::copy(src, src + c, rows_out + row * c);
      ++row;
      ++count;
    }
    counts[j] = count;
  }
  std::fill(rows_out + row * c, rows_out + r_max * c, 0.0f);
}

void moe_permute_backward(float* dx, const float* drows, const std::int32_t* row_of, std::int64_t n,
                          std::int64_t c, std::int64_t k, std::int64_t r_max, bool accumulate) {
  for (std::int64_t t = 0; t < n; ++t) {
    for (std::int64_t j = 0; j < c; ++j) {
      moe::combine_element(dx, drows, row_of, nullptr, t, j, c, k, r_max, accumulate);
    }
  }
}

void moe_unpermute_forward(float* y, const float* rows, const std::int32_t* row_of,
                           const float* topk_w, std::int64_t n, std::int64_t c, std::int64_t k,
                           std::int64_t r_max, bool accumulate) {
  for (std::int64_t t = 0; t < n; ++t) {
    for (std::int64_t j = 0; j < c; ++j) {
      moe::combine_element(y, rows, row_of, topk_w, t, j, c, k, r_max, accumulate);
    }
  }
}

void moe_unpermute_backward(float* drows, float* dtopk_w, const float* dy, const float* rows,
                            const std::int32_t* row_of, const float* topk_w, std::int64_t n,
                            std::int64_t c, std::int64_t k, std::int64_t r_max) {
  std::fill(drows, drows + r_max * c, 0.0f);
  for (std::int64_t t = 0; t < n; ++t) {
    const float* dyr = dy + t * c;  // (C)
    for (std::int64_t s = 0; s < k; ++s) {
      const std::int32_t row = row_of[t * k + s];
      dtopk_w[t * k + s] = moe::combine_weight_grad(dyr, rows, row, c, r_max);
      if (!moe::kept_row(row, r_max)) continue;
      const float w = topk_w[t * k + s];
      float* d = drows + static_cast<std::int64_t>(row) * c;  // (C)
      for (std::int64_t j = 0; j < c; ++j) d[j] = w * dyr[j];
    }
  }
}

// --- Grouped GEMM ----------------------------------------------------------------------------

void grouped_linear_forward(float* y, const float* x, const float* w, const std::int32_t* counts,
                            std::int64_t n_segments, std::int64_t groups, std::int64_t in,
                            std::int64_t out, std::int64_t r) {
  const std::vector<std::int64_t> starts = segment_starts(counts, n_segments);
  for (std::int64_t s = 0; s < n_segments; ++s) {
    const std::int64_t first = starts[static_cast<std::size_t>(s)];
    const std::int64_t rows = starts[static_cast<std::size_t>(s) + 1] - first;
    if (rows == 0) continue;
    linear_forward(y + first * out, x + first * in, w + (s % groups) * out * in, nullptr, rows, in,
                   out);
  }
  std::fill(y + starts.back() * out, y + r * out, 0.0f);
}

void grouped_linear_backward_data(float* dx, const float* dy, const float* w,
                                  const std::int32_t* counts, std::int64_t n_segments,
                                  std::int64_t groups, std::int64_t in, std::int64_t out,
                                  std::int64_t r) {
  const std::vector<std::int64_t> starts = segment_starts(counts, n_segments);
  for (std::int64_t s = 0; s < n_segments; ++s) {
    const std::int64_t first = starts[static_cast<std::size_t>(s)];
    const std::int64_t rows = starts[static_cast<std::size_t>(s) + 1] - first;
    linear_backward_data(dx + first * in, dy + first * out, w + (s % groups) * out * in, rows, in,
                         out, false);
  }
  std::fill(dx + starts.back() * in, dx + r * in, 0.0f);
}

void grouped_linear_backward_weight(float* dw, const float* dy, const float* x,
                                    const std::int32_t* counts, std::int64_t n_segments,
                                    std::int64_t groups, std::int64_t in, std::int64_t out,
                                    std::int64_t r, bool accumulate) {
  (void)r;  // the rows after the last segment take no part
  const std::vector<std::int64_t> starts = segment_starts(counts, n_segments);
  // Whether group g's gradient has been written by this call (or holds the old value to add to).
  std::vector<char> written(static_cast<std::size_t>(groups), accumulate ? 1 : 0);
  for (std::int64_t s = 0; s < n_segments; ++s) {
    const std::int64_t first = starts[static_cast<std::size_t>(s)];
    const std::int64_t rows = starts[static_cast<std::size_t>(s) + 1] - first;
    if (rows == 0) continue;
    const std::int64_t g = s % groups;
    char& done = written[static_cast<std::size_t>(g)];
    linear_backward_weight(dw + g * out * in, nullptr, dy + first * out, x + first * in, rows, in,
                           out, done != 0);
    done = 1;
  }
  for (std::int64_t g = 0; g < groups; ++g) {
    if (written[static_cast<std::size_t>(g)] == 0) {
      std::fill(dw + g * out * in, dw + (g + 1) * out * in, 0.0f);
    }
  }
}

}  // namespace strata::kernels::cpu
