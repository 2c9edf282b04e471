// The recommendation model of parameter-server training (docs/parameter-server.md "The
// recommendation model"): one hashed embedding table shared by the sparse features, and a small
// MLP over the looked-up rows and the dense features (Criteo-style CTR models). Parsing (strict
// keys, ConfigErrors naming field, value and rule), its tensors and parameters, and the expected
// number of distinct rows a batch touches under a uniform or Zipf access. Pure.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/json.hpp"

namespace strata::strategies {

enum class RowAccess { kUniform, kZipf };
const char* row_access_name(RowAccess a);

struct RecModelSpec {
  std::string name;
  std::int64_t embedding_rows = 0;  // R: one table shared by the sparse features
  int embedding_dim = 0;            // d
  int sparse_features = 0;          // F: lookups per sample, one row each
  int dense_features = 0;           // continuous inputs beside the looked-up rows
  std::vector<int> mlp;             // hidden widths (ReLU), then one logit (BCE loss)
  RowAccess access = RowAccess::kUniform;
  double zipf_alpha = 0;  // kZipf: row i (0-based) has probability ~ (i + 1)^-alpha
  std::string source;

  // The MLP's input width: F x d + dense_features.
  std::int64_t mlp_input() const {
    return static_cast<std::int64_t>(sparse_features) * embedding_dim + dense_features;
  }
};

// Whether a model JSON is a recommendation model ("family": "recommendation").
bool is_recommendation_model(const json::Json& j);
RecModelSpec parse_rec_model(const json::Json& j, const std::string& what = "model");
json::Json to_json(const RecModelSpec& m);

// A parameter tensor as the parameter server partitions it: `rows` rows of `row_elements`
// fp32 elements.
struct PsTensor {
  std::string name;
  std::int64_t rows = 0;
  std::int64_t row_elements = 0;
  bool sparse = false;  // only the touched rows travel (the embedding)
  std::int64_t elements() const { return rows * row_elements; }
};
// "embedding" (R x d, sparse), then per MLP layer i "mlp.<i>.w" (in x out) and "mlp.<i>.b"
// (1 x out), the last layer being the logit (out = 1).
std::vector<PsTensor> rec_model_tensors(const RecModelSpec& m);
std::int64_t rec_mlp_params(const RecModelSpec& m);    // every MLP weight and bias
std::int64_t rec_total_params(const RecModelSpec& m);  // R x d + rec_mlp_params

// Expected distinct rows among `lookups` independent lookups restricted to rows
// [first, last) of the table: sum_{i in [first, last)} 1 - (1 - p_i)^lookups, with p_i = 1 / R
// (uniform) or (i + 1)^-alpha / H_R(alpha) (Zipf). Exact for the first kExactHeadRows rows of the
// table and for uniform access; the Zipf tail is the midpoint-rule integral of the same
// expression (accurate to ~1e-6 relative on tables of 1e5 rows, tests/strategies), so a table of
// 1e9 rows costs the same as one of 1e5.
// `exact_head_rows` moves the boundary (the tests shrink it to exercise the tail).
inline constexpr std::int64_t kExactHeadRows = 1 << 16;
double expected_unique_rows(const RecModelSpec& m, double lookups, std::int64_t first,
                            std::int64_t last, std::int64_t exact_head_rows = kExactHeadRows);
inline double expected_unique_rows(const RecModelSpec& m, double lookups) {
  return expected_unique_rows(m, lookups, 0, m.embedding_rows);
}
// Per row of the first min(count, R) rows: the probability that `lookups` lookups touch it,
// 1 - (1 - p_i)^lookups (what expected_unique_rows sums; a hash partition adds them by owner).
std::vector<double> row_touch_probabilities(const RecModelSpec& m, double lookups,
                                            std::int64_t count);
// The same sum, every row (O(R)); the reference of the tests.
double expected_unique_rows_exact(const RecModelSpec& m, double lookups, std::int64_t first,
                                  std::int64_t last);

}  // namespace strata::strategies
