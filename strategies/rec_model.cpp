// The recommendation model: parsing, tensors, expected unique rows (rec_model.hpp).
#include "strategies/rec_model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/error.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {

namespace {

const std::vector<std::string> kAccesses = {"uniform", "zipf"};

// Zipf's normaliser H_R(alpha) = sum_{k=1..R} k^-alpha: exact over the first `head` terms, the
// rest as the midpoint integral int_{head+1/2}^{R+1/2} x^-alpha dx.
double zipf_normaliser(std::int64_t rows, double alpha, std::int64_t head) {
  const std::int64_t exact = std::min(rows, head);
  double h = 0;
  for (std::int64_t k = exact; k >= 1; --k) h += std::pow(static_cast<double>(k), -alpha);
  if (rows > exact) {
    const double a = static_cast<double>(exact) + 0.5, b = static_cast<double>(rows) + 0.5;
    h += std::abs(alpha - 1) < 1e-12
             ? std::log(b / a)
             : (std::pow(b, 1 - alpha) - std::pow(a, 1 - alpha)) / (1 - alpha);
  }
  return h;
}

// 1 - (1 - p)^n without cancellation for small p.
double touched(double p, double n) { return -std::expm1(n * std::log1p(-std::min(p, 1.0))); }

// Simpson's rule of g(x) over [a, b] in u = ln x (the integrand g(e^u) e^u is smooth and the
// points concentrate where Zipf's probabilities change fastest).
template <typename G>
double log_simpson(G g, double a, double b) {
  constexpr int kIntervals = 4096;
  const double ua = std::log(a), ub = std::log(b), du = (ub - ua) / kIntervals;
  double sum = 0;
  for (int k = 0; k <= kIntervals; ++k) {
    const double x = std::exp(ua + k * du);
    const double w = (k == 0 || k == kIntervals) ? 1 : (k % 2 == 1 ? 4 : 2);
    sum += w * g(x) * x;
  }
  return sum * du / 3;
}

}  // namespace

const char* row_access_name(RowAccess a) { return kAccesses[static_cast<int>(a)].c_str(); }

bool is_recommendation_model(const json::Json& j) {
  return j.is_object() && j.contains("family") && j["family"].is_string() &&
         j["family"].get<std::string>() == "recommendation";
}

RecModelSpec parse_rec_model(const json::Json& j, const std::string& what) {
  json::ObjectReader r(j, what);
  r.finish({"name", "family", "embedding_rows", "embedding_dim", "sparse_features",
            "dense_features", "mlp", "access"});
  RecModelSpec m;
  m.name = r.get_string("name");
  if (m.name.empty()) json::fail(r.field("name"), m.name, "must not be empty");
  if (r.get_string("family") != "recommendation") {
    json::fail(r.field("family"), r.get_raw("family"), "must be \"recommendation\"");
  }
  const long long rows = r.get_int("embedding_rows");
  // 2^40 rows: a bound that keeps row x servers and the byte counts exact in 64 bits.
  if (rows < 1 || rows > (1LL << 40)) {
    json::fail(r.field("embedding_rows"), rows, "must be from 1 to 2^40 (rows of the table)");
  }
  m.embedding_rows = rows;
  m.embedding_dim = detail::read_positive_int(r, "embedding_dim");
  m.sparse_features = detail::read_positive_int(r, "sparse_features");
  const long long dense = r.get_int_or("dense_features", 0);
  if (dense < 0 || dense > 1000000) {
    json::fail(r.field("dense_features"), dense, "must be from 0 to 1000000");
  }
  m.dense_features = static_cast<int>(dense);
  if (r.has("mlp")) {
    const json::Json& list = r.get_raw("mlp");
    if (!list.is_array()) json::fail(r.field("mlp"), list, "must be a list of hidden widths");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string field = r.field("mlp") + "[" + std::to_string(i) + "]";
      if (!list[i].is_number_integer() || list[i].get<long long>() < 1 ||
          list[i].get<long long>() > 1000000) {
        json::fail(field, list[i], "must be a hidden width from 1 to 1000000");
      }
      m.mlp.push_back(list[i].get<int>());
    }
  } else {
    r.accept("mlp");
  }
  if (r.has("access")) {
    json::ObjectReader a = r.get_object("access");
    a.finish({"distribution", "alpha"});
    m.access = static_cast<RowAccess>(detail::read_choice(a, "distribution", kAccesses));
    if (m.access == RowAccess::kZipf) {
      m.zipf_alpha = a.get_number("alpha");
      if (!(m.zipf_alpha > 0 && m.zipf_alpha <= 10)) {
        json::fail(a.field("alpha"), m.zipf_alpha,
                   "must be a Zipf exponent in (0, 10] (row i is drawn ~ (i + 1)^-alpha)");
      }
    } else if (a.has("alpha")) {
      json::fail(a.field("alpha"), a.get_raw("alpha"),
                 "is only for \"distribution\": \"zipf\" (uniform access has no exponent)");
    }
  } else {
    r.accept("access");
  }
  m.source = detail::read_source(j);
  return m;
}

json::Json to_json(const RecModelSpec& m) {
  json::Json access = {{"distribution", row_access_name(m.access)}};
  if (m.access == RowAccess::kZipf) access["alpha"] = m.zipf_alpha;
  json::Json j = {{"name", m.name},
                  {"family", "recommendation"},
                  {"embedding_rows", m.embedding_rows},
                  {"embedding_dim", m.embedding_dim},
                  {"sparse_features", m.sparse_features},
                  {"dense_features", m.dense_features},
                  {"mlp", m.mlp},
                  {"access", access}};
  if (!m.source.empty()) j["source"] = m.source;
  return j;
}

std::vector<PsTensor> rec_model_tensors(const RecModelSpec& m) {
  std::vector<PsTensor> out = {{"embedding", m.embedding_rows, m.embedding_dim, true}};
  std::int64_t in = m.mlp_input();
  std::vector<int> widths = m.mlp;
  widths.push_back(1);  // the logit
  for (std::size_t i = 0; i < widths.size(); ++i) {
    const std::string layer = "mlp." + std::to_string(i);
    out.push_back({layer + ".w", in, widths[i], false});
    out.push_back({layer + ".b", 1, widths[i], false});
    in = widths[i];
  }
  return out;
}

std::int64_t rec_mlp_params(const RecModelSpec& m) {
  std::int64_t n = 0;
  for (const PsTensor& t : rec_model_tensors(m)) {
    if (!t.sparse) n += t.elements();
  }
  return n;
}

std::int64_t rec_total_params(const RecModelSpec& m) {
  return m.embedding_rows * m.embedding_dim + rec_mlp_params(m);
}

double expected_unique_rows(const RecModelSpec& m, double lookups, std::int64_t first,
                            std::int64_t last, std::int64_t exact_head_rows) {
  STRATA_CHECK(0 <= first && first <= last && last <= m.embedding_rows && lookups >= 0,
               "expected_unique_rows: rows [first, last) of the table");
  if (first == last || lookups == 0) return 0;
  const double rows = static_cast<double>(m.embedding_rows);
  if (m.access == RowAccess::kUniform) {
    return static_cast<double>(last - first) * touched(1 / rows, lookups);
  }
  const double alpha = m.zipf_alpha;
  const double h = zipf_normaliser(m.embedding_rows, alpha, exact_head_rows);
  const auto g = [&](double x) { return touched(std::pow(x, -alpha) / h, lookups); };
  double sum = 0;
  const std::int64_t head_end = std::min(last, exact_head_rows);
  for (std::int64_t i = first; i < head_end; ++i) sum += g(static_cast<double>(i + 1));
  const std::int64_t tail_first = std::max(first, exact_head_rows);
  if (tail_first < last) {
    // Rows i in [tail_first, last) have x = i + 1: the midpoint rule over [x - 1/2, x + 1/2].
    sum += log_simpson(g, static_cast<double>(tail_first) + 0.5, static_cast<double>(last) + 0.5);
  }
  return sum;
}

std::vector<double> row_touch_probabilities(const RecModelSpec& m, double lookups,
                                            std::int64_t count) {
  const std::int64_t n = std::clamp<std::int64_t>(count, 0, m.embedding_rows);
  std::vector<double> out(static_cast<std::size_t>(n));
  if (m.access == RowAccess::kUniform) {
    std::fill(out.begin(), out.end(), touched(1 / static_cast<double>(m.embedding_rows), lookups));
    return out;
  }
  const double h = zipf_normaliser(m.embedding_rows, m.zipf_alpha, kExactHeadRows);
  for (std::int64_t i = 0; i < n; ++i) {
    out[i] = touched(std::pow(static_cast<double>(i + 1), -m.zipf_alpha) / h, lookups);
  }
  return out;
}

double expected_unique_rows_exact(const RecModelSpec& m, double lookups, std::int64_t first,
                                  std::int64_t last) {
  STRATA_CHECK(0 <= first && first <= last && last <= m.embedding_rows && lookups >= 0,
               "expected_unique_rows_exact: rows [first, last) of the table");
  if (m.access == RowAccess::kUniform) {
    return expected_unique_rows(m, lookups, first, last);
  }
  const double h =
      zipf_normaliser(m.embedding_rows, m.zipf_alpha, std::numeric_limits<std::int64_t>::max());
  double sum = 0;
  for (std::int64_t i = first; i < last; ++i) {
    sum += touched(std::pow(static_cast<double>(i + 1), -m.zipf_alpha) / h, lookups);
  }
  return sum;
}

}  // namespace strata::strategies
