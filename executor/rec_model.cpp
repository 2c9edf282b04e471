// The recommendation model's layout, initialisation, data and its one forward and backward. The
// GEMMs are kernels/' linear ops with the roles of their operands swapped, because the design's
// W is (in, out) where nn.Linear's is (out, in): x W is linear_backward_data's dy W, dy W^T is
// linear_forward's x W^T, and x^T dy is linear_backward_weight's dy^T x with dy and x exchanged.
#include "executor/rec_model.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "common/hash.hpp"
#include "kernels/elementwise_ops.hpp"
#include "kernels/model_ops.hpp"

namespace strata::exec {
namespace {

// SplitMix64 of (seed, a, b): the one hash every value of the model and its data comes from.
std::uint64_t hash3(std::uint64_t seed, std::uint64_t a, std::uint64_t b) {
  return splitmix64(splitmix64(splitmix64(seed) ^ a) ^ b);
}

// Uniform in [0, 1) from the top 53 bits.
double unit(std::uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

// Uniform in [-1, 1).
float symmetric(std::uint64_t h) { return static_cast<float>(2.0 * unit(h) - 1.0); }

// What a hash is for (part of hash3's words), so that the parameters, the ids, the dense
// features and the labels' noise-free teacher are independent streams.
enum Purpose : std::uint64_t {
  kEmbedding = 1,
  kDenseParams = 2,
  kIds = 3,
  kFeatures = 4,
  kTeacherRows = 5,
  kTeacherDense = 6
};

std::string field(const char* name) { return std::string("model.") + name; }

std::int64_t slot_of(const UniqueRows& u, std::int64_t lookup) {
  return u.slot[static_cast<std::size_t>(lookup)];
}

}  // namespace

void check_rec_dims(const RecModelDims& dims) {
  auto need = [](bool ok, const std::string& what, long long value, const char* rule) {
    if (!ok) throw ConfigError(what + " = " + std::to_string(value) + ": " + rule);
  };
  need(dims.rows >= 1, field("embedding_rows"), dims.rows, "must be at least 1");
  need(dims.dim >= 1, field("embedding_dim"), dims.dim, "must be at least 1");
  need(dims.sparse_features >= 1, field("sparse_features"), dims.sparse_features,
       "must be at least 1");
  need(dims.dense_features >= 0, field("dense_features"), dims.dense_features,
       "must not be negative");
  for (std::size_t i = 0; i < dims.mlp.size(); ++i) {
    need(dims.mlp[i] >= 1, field("mlp") + "[" + std::to_string(i) + "]", dims.mlp[i],
         "hidden widths must be at least 1");
  }
  if (dims.access == RecAccess::kZipf && !(dims.zipf_alpha > 0)) {
    throw ConfigError(field("access.alpha") + " = " + std::to_string(dims.zipf_alpha) +
                      ": must be positive");
  }
}

RecLayout rec_layout(const RecModelDims& dims) {
  RecLayout l;
  l.input_width = dims.sparse_features * dims.dim + dims.dense_features;
  std::int64_t in = l.input_width;
  std::vector<std::int64_t> widths(dims.mlp.begin(), dims.mlp.end());
  widths.push_back(1);  // the logit
  for (std::size_t i = 0; i < widths.size(); ++i) {
    const std::string p = "mlp." + std::to_string(i);
    l.dense.push_back({p + ".w", in, widths[i], l.dense_size});
    l.dense_size += in * widths[i];
    l.dense.push_back({p + ".b", widths[i], 1, l.dense_size});
    l.dense_size += widths[i];
    in = widths[i];
  }
  return l;
}

void rec_init_rows(const RecModelDims& dims, std::uint64_t seed, const std::int64_t* ids,
                   std::int64_t n, float* out) {
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t c = 0; c < dims.dim; ++c) {
      const auto e = static_cast<std::uint64_t>(ids[i] * dims.dim + c);
      out[i * dims.dim + c] = 0.1f * symmetric(hash3(seed, kEmbedding, e));
    }
  }
}

std::vector<float> rec_init_dense(const RecModelDims& dims, std::uint64_t seed) {
  const RecLayout l = rec_layout(dims);
  std::vector<float> p(static_cast<std::size_t>(l.dense_size), 0.0f);
  for (std::size_t t = 0; t < l.dense.size(); t += 2) {  // weights; biases stay 0
    const RecTensor& w = l.dense[t];
    const float scale = std::sqrt(3.0f / static_cast<float>(w.rows));
    for (std::int64_t e = 0; e < w.elements(); ++e) {
      const auto k = static_cast<std::uint64_t>(w.offset + e);
      p[static_cast<std::size_t>(w.offset + e)] = scale * symmetric(hash3(seed, kDenseParams, k));
    }
  }
  return p;
}

RecData::RecData(const RecModelDims& dims, std::uint64_t seed) : dims_(dims), seed_(seed) {
  check_rec_dims(dims);
  if (dims.access != RecAccess::kZipf) return;
  cdf_.resize(static_cast<std::size_t>(dims.rows));
  double sum = 0;
  for (std::int64_t i = 0; i < dims.rows; ++i) {
    sum += std::pow(static_cast<double>(i + 1), -dims.zipf_alpha);
    cdf_[static_cast<std::size_t>(i)] = sum;
  }
  for (double& c : cdf_) c /= sum;
}

std::int64_t RecData::id_of(double u) const {
  if (cdf_.empty()) {
    const auto id = static_cast<std::int64_t>(u * static_cast<double>(dims_.rows));
    return std::min(dims_.rows - 1, id);
  }
  const auto it = std::upper_bound(cdf_.begin(), cdf_.end(), u);
  return std::min(dims_.rows - 1, static_cast<std::int64_t>(it - cdf_.begin()));
}

RecBatch RecData::batch(std::int64_t first, std::int64_t n) const {
  STRATA_CHECK(first >= 0 && n >= 0, "RecData::batch: negative sample range");
  const int f = dims_.sparse_features, d = dims_.dense_features;
  RecBatch b;
  b.n = n;
  b.ids.resize(static_cast<std::size_t>(n * f));
  b.dense.resize(static_cast<std::size_t>(n * d));
  b.labels.resize(static_cast<std::size_t>(n));
  const std::uint64_t teacher = splitmix64(seed_ ^ 0x7eac4e2ULL);
  for (std::int64_t s = 0; s < n; ++s) {
    const auto g = static_cast<std::uint64_t>(first + s);
    double score_rows = 0, score_dense = 0;
    for (int j = 0; j < f; ++j) {
      const std::int64_t id = id_of(unit(hash3(seed_, g, kIds * 0x10000 + j)));
      b.ids[static_cast<std::size_t>(s * f + j)] = id;
      score_rows += symmetric(hash3(teacher, kTeacherRows, static_cast<std::uint64_t>(id)));
    }
    for (int k = 0; k < d; ++k) {
      const float x = symmetric(hash3(seed_, g, kFeatures * 0x10000 + k));
      b.dense[static_cast<std::size_t>(s * d + k)] = x;
      score_dense += x * symmetric(hash3(teacher, kTeacherDense, static_cast<std::uint64_t>(k)));
    }
    const double score = score_rows / std::sqrt(static_cast<double>(f)) +
                         (d > 0 ? score_dense / std::sqrt(static_cast<double>(d)) : 0.0);
    b.labels[static_cast<std::size_t>(s)] = score > 0 ? 1.0f : 0.0f;
  }
  return b;
}

UniqueRows unique_rows(const RecBatch& batch) {
  UniqueRows u;
  u.rows = batch.ids;
  std::sort(u.rows.begin(), u.rows.end());
  u.rows.erase(std::unique(u.rows.begin(), u.rows.end()), u.rows.end());
  u.slot.resize(batch.ids.size());
  for (std::size_t i = 0; i < batch.ids.size(); ++i) {
    u.slot[i] = static_cast<std::int32_t>(
        std::lower_bound(u.rows.begin(), u.rows.end(), batch.ids[i]) - u.rows.begin());
  }
  return u;
}

float rec_forward_backward(const RecModelDims& dims, const float* dense, const float* rows,
                           const RecBatch& batch, const UniqueRows& u, float* dense_grad,
                           float* row_grad) {
  const kernels::Stream cpu = kernels::Stream::cpu();
  const RecLayout l = rec_layout(dims);
  const std::int64_t n = batch.n, dim = dims.dim, width = l.input_width;
  const int f = dims.sparse_features, d = dims.dense_features, layers = l.layers();
  STRATA_CHECK(static_cast<std::int64_t>(u.slot.size()) == n * f, "unique rows of another batch");

  // h[0] = concat(rows of the F ids, dense features) (n, width); h[i + 1] = layer i's output,
  // relu'd for hidden layers; h[layers] holds the logits (n, 1).
  std::vector<std::vector<float>> h(static_cast<std::size_t>(layers) + 1);
  h[0].resize(static_cast<std::size_t>(n * width));
  for (std::int64_t s = 0; s < n; ++s) {
    float* x = h[0].data() + s * width;
    for (int j = 0; j < f; ++j) {
      const float* r = rows + slot_of(u, s * f + j) * dim;
      std::copy(r, r + dim, x + j * dim);
    }
    std::copy(batch.dense.begin() + s * d, batch.dense.begin() + (s + 1) * d, x + f * dim);
  }
  for (int i = 0; i < layers; ++i) {
    const RecTensor& w = l.dense[static_cast<std::size_t>(2 * i)];
    const float* b = dense + l.dense[static_cast<std::size_t>(2 * i + 1)].offset;
    auto& y = h[static_cast<std::size_t>(i) + 1];
    y.resize(static_cast<std::size_t>(n * w.cols));
    if (n == 0) continue;
    // y = x W (n, out): linear_backward_data's dx = dy W with W as (OUT = in, IN = out).
    kernels::linear_backward_data(cpu, y.data(), h[static_cast<std::size_t>(i)].data(),
                                  dense + w.offset, n, w.cols, w.rows);
    const bool hidden = i + 1 < layers;
    for (std::int64_t s = 0; s < n; ++s) {
      for (std::int64_t o = 0; o < w.cols; ++o) {
        float& v = y[static_cast<std::size_t>(s * w.cols + o)];
        v += b[o];
        if (hidden) v = std::max(v, 0.0f);
      }
    }
  }

  // Binary cross-entropy with logits, mean over the batch: max(z, 0) - z y + log(1 + e^-|z|);
  // its gradient (sigmoid(z) - y) / n.
  const auto& z = h[static_cast<std::size_t>(layers)];
  std::vector<float> g(static_cast<std::size_t>(n));
  double loss = 0;
  for (std::int64_t s = 0; s < n; ++s) {
    const double zs = z[static_cast<std::size_t>(s)];
    const double y = batch.labels[static_cast<std::size_t>(s)];
    loss += std::max(zs, 0.0) - zs * y + std::log1p(std::exp(-std::abs(zs)));
    g[static_cast<std::size_t>(s)] =
        static_cast<float>((1.0 / (1.0 + std::exp(-zs)) - y) / static_cast<double>(n));
  }

  // Backward, layer by layer: dW = x^T g, db = sum_n g, dx = g W^T, through the relu of the
  // layer below.
  std::fill(dense_grad, dense_grad + l.dense_size, 0.0f);
  for (int i = layers - 1; i >= 0; --i) {
    const RecTensor& w = l.dense[static_cast<std::size_t>(2 * i)];
    const RecTensor& bias = l.dense[static_cast<std::size_t>(2 * i + 1)];
    const auto& x = h[static_cast<std::size_t>(i)];
    std::vector<float> dx(static_cast<std::size_t>(n * w.rows));
    if (n > 0) {
      // dW (in, out) = x^T g: linear_backward_weight's dy^T x with dy := x, x := g.
      kernels::linear_backward_weight(cpu, dense_grad + w.offset, nullptr, x.data(), g.data(), n,
                                      w.cols, w.rows);
      kernels::bias_backward(cpu, dense_grad + bias.offset, g.data(), n, w.cols);
      // dx = g W^T (n, in): linear_forward's x W^T with W as (OUT = in, IN = out).
      kernels::linear_forward(cpu, dx.data(), g.data(), dense + w.offset, nullptr, n, w.cols,
                              w.rows);
    }
    if (i > 0) {
      for (std::size_t k = 0; k < dx.size(); ++k) {
        if (x[k] <= 0.0f) dx[k] = 0.0f;
      }
    }
    g = std::move(dx);
  }
  // g = d(loss)/d(h[0]): each lookup's columns are added into its unique row's gradient.
  std::fill(row_grad, row_grad + static_cast<std::int64_t>(u.rows.size()) * dim, 0.0f);
  for (std::int64_t s = 0; s < n; ++s) {
    for (int j = 0; j < f; ++j) {
      float* r = row_grad + slot_of(u, s * f + j) * dim;
      const float* src = g.data() + s * width + j * dim;
      for (std::int64_t c = 0; c < dim; ++c) r[c] += src[c];
    }
  }
  return n > 0 ? static_cast<float>(loss / static_cast<double>(n)) : 0.0f;
}

void sgd_apply(float* params, const float* grad_sum, std::int64_t n, float lr, int contributions) {
  const auto c = static_cast<float>(contributions);
  for (std::int64_t i = 0; i < n; ++i) params[i] -= lr * (grad_sum[i] / c);
}

}  // namespace strata::exec
