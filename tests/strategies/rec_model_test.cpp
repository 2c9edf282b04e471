// The recommendation model (strategies/rec_model.hpp): parsing and its errors by message, its
// tensors and parameters, and the expected unique rows against the exact sum and closed forms.
#include "strategies/rec_model.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "expect_config_error.hpp"
#include "strategies/ps.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {
namespace {

using json::Json;
using testing::expect_config_error;

Json ctr() {
  return {{"name", "ctr"},          {"family", "recommendation"},
          {"embedding_rows", 1000}, {"embedding_dim", 16},
          {"sparse_features", 4},   {"dense_features", 3},
          {"mlp", {32, 8}},         {"access", {{"distribution", "zipf"}, {"alpha", 1.05}}}};
}

RecModelSpec zipf(std::int64_t rows, double alpha) {
  RecModelSpec m;
  m.name = "z";
  m.embedding_rows = rows;
  m.embedding_dim = 8;
  m.sparse_features = 1;
  m.access = RowAccess::kZipf;
  m.zipf_alpha = alpha;
  return m;
}

TEST(RecModel, ParsesAndWritesBack) {
  ASSERT_TRUE(is_recommendation_model(ctr()));
  EXPECT_FALSE(is_recommendation_model(Json{{"family", "gpt"}}));
  const RecModelSpec m = parse_rec_model(ctr());
  EXPECT_EQ(m.embedding_rows, 1000);
  EXPECT_EQ(m.mlp_input(), 4 * 16 + 3);
  EXPECT_EQ(m.access, RowAccess::kZipf);
  EXPECT_DOUBLE_EQ(m.zipf_alpha, 1.05);
  EXPECT_EQ(parse_rec_model(to_json(m)).mlp, m.mlp);
  // The MLP 67 -> 32 -> 8 -> 1 with biases.
  EXPECT_EQ(rec_mlp_params(m), 67 * 32 + 32 + 32 * 8 + 8 + 8 * 1 + 1);
  EXPECT_EQ(rec_total_params(m), 1000 * 16 + rec_mlp_params(m));
  const auto tensors = rec_model_tensors(m);
  ASSERT_EQ(tensors.size(), 7u);
  EXPECT_EQ(tensors[0].name, "embedding");
  EXPECT_TRUE(tensors[0].sparse);
  EXPECT_EQ(tensors[5].name, "mlp.2.w");
  EXPECT_EQ(tensors[5].rows, 8);
  EXPECT_EQ(tensors[5].row_elements, 1);
}

TEST(RecModel, ErrorsNameFieldValueAndRule) {
  const auto bad = [](const std::string& key, const Json& value) {
    Json j = ctr();
    j[key] = value;
    return j;
  };
  expect_config_error([&] { parse_rec_model(bad("embedding_rows", 0)); },
                      {"model.embedding_rows = 0", "from 1 to 2^40"});
  expect_config_error([&] { parse_rec_model(bad("embedding_dim", -2)); },
                      {"model.embedding_dim = -2", "positive"});
  expect_config_error(
      [&] {
        parse_rec_model(bad("mlp", Json::array({64, 0})));
      },
      {"model.mlp[1] = 0", "hidden width"});
  expect_config_error([&] { parse_rec_model(bad("tables", 3)); }, {"tables"});
  expect_config_error(
      [&] {
        parse_rec_model(bad("access", {{"distribution", "pareto"}}));
      },
      {"model.access.distribution = \"pareto\"", "\"uniform\", \"zipf\""});
  expect_config_error(
      [&] {
        parse_rec_model(bad("access", {{"distribution", "zipf"}, {"alpha", -1}}));
      },
      {"model.access.alpha = -1", "Zipf exponent"});
  expect_config_error(
      [&] {
        parse_rec_model(bad("access", {{"distribution", "uniform"}, {"alpha", 1}}));
      },
      {"model.access.alpha = 1", "only for \"distribution\": \"zipf\""});
  // The transformer reader refuses it with the way out.
  expect_config_error([&] { parse_model(ctr()); }, {"model.family = \"recommendation\"", "'ctr'",
                                                    "strategy.ps", "strata simulate"});
}

TEST(RecModel, UniformUniqueRowsIsTheClosedForm) {
  RecModelSpec m = zipf(1000, 1);
  m.access = RowAccess::kUniform;
  // R (1 - (1 - 1/R)^n): 1000 lookups over 1000 rows touch 1000 (1 - 0.999^1000) = 632.305.
  EXPECT_NEAR(expected_unique_rows(m, 1000), 1000 * (1 - std::pow(0.999, 1000)), 1e-9);
  EXPECT_NEAR(expected_unique_rows(m, 1), 1.0, 1e-12);
  EXPECT_EQ(expected_unique_rows(m, 0), 0);
  EXPECT_NEAR(expected_unique_rows(m, 1000, 0, 250), expected_unique_rows(m, 1000) / 4, 1e-9);
}

TEST(RecModel, ZipfUniqueRowsMatchTheExactSum) {
  // The fast sum with a head of 100 rows and the integral over the tail against every term.
  for (double alpha : {0.5, 1.0, 1.05, 1.5}) {
    const RecModelSpec m = zipf(100000, alpha);
    for (double n : {1.0, 100.0, 26.0 * 512, 1e6}) {
      const double exact = expected_unique_rows_exact(m, n, 0, m.embedding_rows);
      EXPECT_NEAR(expected_unique_rows(m, n, 0, m.embedding_rows, 100), exact, 1e-5 * exact)
          << "alpha " << alpha << " lookups " << n;
      EXPECT_NEAR(expected_unique_rows(m, n), exact, 1e-6 * exact);
      // A block in the tail, as a range partition's server owns.
      const double block = expected_unique_rows_exact(m, n, 50000, 75000);
      EXPECT_NEAR(expected_unique_rows(m, n, 50000, 75000, 100), block, 1e-5 * block + 1e-9);
    }
  }
  // Fewer distinct rows than lookups, more than a uniform draw's share of the head: one lookup
  // touches one row; many lookups touch fewer distinct rows than uniform access would.
  const RecModelSpec m = zipf(100000, 1.05);
  EXPECT_NEAR(expected_unique_rows(m, 1), 1.0, 1e-6);
  RecModelSpec u = m;
  u.access = RowAccess::kUniform;
  EXPECT_LT(expected_unique_rows(m, 1e4), 0.5 * expected_unique_rows(u, 1e4));
}

TEST(RecModel, RowProbabilitiesAddUpToTheUniqueRows) {
  const RecModelSpec m = zipf(5000, 1.2);
  const std::vector<double> p = row_touch_probabilities(m, 300, 5000);
  ASSERT_EQ(p.size(), 5000u);
  double sum = 0;
  for (double v : p) sum += v;
  EXPECT_NEAR(sum, expected_unique_rows_exact(m, 300, 0, 5000), 1e-9);
  EXPECT_GT(p[0], p[1]);
  EXPECT_EQ(row_touch_probabilities(m, 300, 1 << 20).size(), 5000u);
}

TEST(RecModel, LargeTablesAreFast) {
  // 1e9 rows: the same cost as 1e5 (a head and an integral); bounded by the lookups.
  const RecModelSpec m = zipf(1000000000, 1.05);
  const double n = 26.0 * 4096;
  const double u = expected_unique_rows(m, n);
  EXPECT_GT(u, 0.1 * n);
  EXPECT_LT(u, n);
}

}  // namespace
}  // namespace strata::strategies
