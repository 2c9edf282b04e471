// The embedding-heavy recommendation model of the parameter-server design (issue 22), on the
// CPU in fp32, and its deterministic synthetic data. One forward and backward
// (rec_forward_backward) serves the parameter-server workers (executor/ps.hpp), the synchronous
// data-parallel baseline and the single-process reference (executor/rec_train.hpp).
// defines: RecAccess, RecModelDims, check_rec_dims, RecTensor, RecLayout, rec_layout,
//          rec_init_rows, rec_init_dense, RecBatch, RecData, UniqueRows, unique_rows,
//          rec_forward_backward, sgd_apply
//
// The model (docs/executor.md "Parameter servers"): per sample, the F sparse ids look up rows
// of one shared embedding table (rows, dim); the input of the MLP is concat(the F rows, the
// D dense features), F dim + D wide; hidden layers y = relu(x W + b) with W (in, out); then one
// logit and the binary cross-entropy with logits, averaged over the batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace strata::exec {

// How the sparse ids are drawn: uniform over the rows, or Zipf (p_i ~ 1 / (i + 1)^alpha, row
// 0 the hottest).
enum class RecAccess { kUniform, kZipf };

// The model's sizes (the model JSON's "embedding_rows", "embedding_dim", "sparse_features",
// "dense_features", "mlp", "access"). The CLI maps a spec to this; the executor reads no spec.
struct RecModelDims {
  std::int64_t rows = 0;    // embedding_rows (>= 1)
  std::int64_t dim = 0;     // embedding_dim (>= 1)
  int sparse_features = 0;  // F, lookups per sample (>= 1)
  int dense_features = 0;   // D (>= 0)
  std::vector<int> mlp;     // hidden widths (each >= 1; may be empty: a linear model)
  RecAccess access = RecAccess::kUniform;
  double zipf_alpha = 1.05;  // with kZipf (> 0)
};

// Throws ConfigError naming the field and value (model.embedding_rows = 0: ...).
void check_rec_dims(const RecModelDims& dims);

// One dense (MLP) tensor: "mlp.<i>.w" (in, out) or "mlp.<i>.b" (out, as `rows` x 1), at
// `offset` floats into the flat dense parameter vector.
struct RecTensor {
  std::string name;
  std::int64_t rows = 0, cols = 0;
  std::int64_t offset = 0;
  std::int64_t elements() const { return rows * cols; }
};

// The dense tensors in order (mlp.0.w, mlp.0.b, mlp.1.w, ..., the logit layer last), the flat
// vector's size, and the MLP's input width F dim + D. The embedding is not in the flat vector.
struct RecLayout {
  std::vector<RecTensor> dense;
  std::int64_t dense_size = 0;
  std::int64_t input_width = 0;
  int layers() const { return static_cast<int>(dense.size() / 2); }
};
RecLayout rec_layout(const RecModelDims& dims);

// The initial values, a pure function of (seed, tensor, element) so that any process can make
// any part: embedding rows uniform in [-0.1, 0.1); W uniform in [-sqrt(3 / in), sqrt(3 / in));
// biases 0. rec_init_rows writes the `n` rows `ids` (n, dim).
void rec_init_rows(const RecModelDims& dims, std::uint64_t seed, const std::int64_t* ids,
                   std::int64_t n, float* out);
std::vector<float> rec_init_dense(const RecModelDims& dims, std::uint64_t seed);

// `n` samples: ids (n, F) in [0, rows), dense (n, D) in [-1, 1), labels (n) 0 or 1.
struct RecBatch {
  std::int64_t n = 0;
  std::vector<std::int64_t> ids;
  std::vector<float> dense;
  std::vector<float> labels;
};

// The synthetic stream of samples: sample g's id j, dense feature k and label come from
// SplitMix64 (common/hash.hpp) of (seed, g, j). The label is a fixed random teacher's:
// 1 when sum_j a(id_j) / sqrt(F) + sum_k v_k x_k / sqrt(D) > 0, with a(id) and v_k uniform in
// [-1, 1) from the seed, so a model can learn it. Zipf ids by inverse CDF on a table of `rows`
// doubles built once.
class RecData {
 public:
  RecData(const RecModelDims& dims, std::uint64_t seed);
  // Samples first .. first + n - 1 of the stream.
  RecBatch batch(std::int64_t first, std::int64_t n) const;

 private:
  std::int64_t id_of(double u) const;
  RecModelDims dims_;
  std::uint64_t seed_;
  std::vector<double> cdf_;  // Zipf only: cdf_[i] = P(id <= i)
};

// A batch's distinct ids, ascending, and each lookup's index into them: what a worker pulls.
struct UniqueRows {
  std::vector<std::int64_t> rows;  // (U)
  std::vector<std::int32_t> slot;  // (n, F): ids[s, j] == rows[slot[s, j]]
};
UniqueRows unique_rows(const RecBatch& batch);

// One forward and backward on `batch`: returns the mean loss and writes the gradients of that
// mean, dense_grad (dense_size) and row_grad (U, dim) for the unique rows (both overwritten).
// `dense` is the flat dense vector, `rows` (U, dim) the embedding rows u.rows.
float rec_forward_backward(const RecModelDims& dims, const float* dense, const float* rows,
                           const RecBatch& batch, const UniqueRows& u, float* dense_grad,
                           float* row_grad);

// SGD on `n` parameters from a sum of `contributions` gradients: p -= lr * (g / contributions).
// The one update of the reference, the data-parallel baseline and the servers.
void sgd_apply(float* params, const float* grad_sum, std::int64_t n, float lr, int contributions);

}  // namespace strata::exec
