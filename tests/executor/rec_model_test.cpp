// The recommendation model (executor/rec_model.hpp) and its baselines (rec_train.hpp): the
// gradient against central finite differences, the data's determinism and skew, the
// one-process reference against dp on a one-rank world, and the loss decreasing.
#include "executor/rec_model.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "common/error.hpp"
#include "executor/comm.hpp"
#include "executor/rec_train.hpp"

namespace strata::exec {
namespace {

RecModelDims tiny(RecAccess access = RecAccess::kUniform) {
  RecModelDims d;
  d.rows = 20;
  d.dim = 3;
  d.sparse_features = 3;
  d.dense_features = 2;
  d.mlp = {5, 4};
  d.access = access;
  return d;
}

// The loss of `batch` at (dense, rows), gradients discarded.
float loss_at(const RecModelDims& dims, const std::vector<float>& dense,
              const std::vector<float>& rows, const RecBatch& batch, const UniqueRows& u) {
  std::vector<float> dg(dense.size()), rg(rows.size());
  return rec_forward_backward(dims, dense.data(), rows.data(), batch, u, dg.data(), rg.data());
}

TEST(RecModel, LayoutNamesTheDesignsTensorsInOrder) {
  const RecLayout l = rec_layout(tiny());
  ASSERT_EQ(l.dense.size(), 6u);
  EXPECT_EQ(l.input_width, 3 * 3 + 2);
  EXPECT_EQ(l.dense[0].name, "mlp.0.w");
  EXPECT_EQ(l.dense[0].rows, 11);
  EXPECT_EQ(l.dense[0].cols, 5);
  EXPECT_EQ(l.dense[3].name, "mlp.1.b");
  EXPECT_EQ(l.dense[4].name, "mlp.2.w");
  EXPECT_EQ(l.dense[4].rows, 4);
  EXPECT_EQ(l.dense[4].cols, 1);
  EXPECT_EQ(l.dense_size, 11 * 5 + 5 + 5 * 4 + 4 + 4 + 1);
  EXPECT_EQ(l.dense[5].offset + 1, l.dense_size);
}

// Every parameter's gradient (dense and the batch's rows, repeated ids among them) against
// (L(p + e) - L(p - e)) / 2e.
TEST(RecModel, GradientMatchesFiniteDifferences) {
  for (RecAccess access : {RecAccess::kUniform, RecAccess::kZipf}) {
    const RecModelDims dims = tiny(access);
    const RecData data(dims, 3);
    const RecBatch batch = data.batch(10, 6);
    const UniqueRows u = unique_rows(batch);
    ASSERT_LT(u.rows.size(), batch.ids.size()) << "the test wants repeated ids";
    std::vector<float> dense = rec_init_dense(dims, 3);
    // Non-zero biases, so their gradients and the relu's mask are exercised off the origin.
    for (float& p : dense) p += 0.05f;
    std::vector<float> rows(u.rows.size() * 3);
    rec_init_rows(dims, 3, u.rows.data(), static_cast<std::int64_t>(u.rows.size()), rows.data());
    for (float& r : rows) r *= 5.0f;
    std::vector<float> dg(dense.size()), rg(rows.size());
    rec_forward_backward(dims, dense.data(), rows.data(), batch, u, dg.data(), rg.data());

    const float eps = 1e-3f;
    double largest = 0;
    auto check = [&](std::vector<float>& p, const std::vector<float>& g, const char* what) {
      for (std::size_t i = 0; i < p.size(); ++i) {
        const float keep = p[i];
        p[i] = keep + eps;
        const double up = loss_at(dims, dense, rows, batch, u);
        p[i] = keep - eps;
        const double down = loss_at(dims, dense, rows, batch, u);
        p[i] = keep;
        const double numeric = (up - down) / (2.0 * eps);
        largest = std::max(largest, std::abs(static_cast<double>(g[i])));
        EXPECT_NEAR(g[i], numeric, 5e-4 + 2e-2 * std::abs(numeric)) << what << " " << i;
      }
    };
    check(dense, dg, "dense");
    check(rows, rg, "row");
    EXPECT_GT(largest, 1e-2);  // not a vacuous comparison of zeros
  }
}

TEST(RecModel, DataIsAPureFunctionOfSeedAndSampleIndex) {
  const RecModelDims dims = tiny(RecAccess::kZipf);
  const RecBatch whole = RecData(dims, 9).batch(0, 40);
  const RecBatch part = RecData(dims, 9).batch(25, 5);
  for (int s = 0; s < 5; ++s) {
    for (int j = 0; j < 3; ++j) EXPECT_EQ(part.ids[s * 3 + j], whole.ids[(25 + s) * 3 + j]);
    for (int k = 0; k < 2; ++k) EXPECT_EQ(part.dense[s * 2 + k], whole.dense[(25 + s) * 2 + k]);
    EXPECT_EQ(part.labels[s], whole.labels[25 + s]);
  }
  const RecBatch other = RecData(dims, 10).batch(0, 40);
  EXPECT_NE(other.ids, whole.ids);
  std::set<float> labels(whole.labels.begin(), whole.labels.end());
  EXPECT_EQ(labels, (std::set<float>{0.0f, 1.0f}));
  for (std::int64_t id : whole.ids) EXPECT_TRUE(id >= 0 && id < dims.rows);
  for (float x : whole.dense) EXPECT_TRUE(x >= -1.0f && x < 1.0f);
}

// Zipf(1.05) over 1000 rows: P(id 0) = 1 / H, H = sum_i (i + 1)^-1.05 = 5.84..; uniform: the
// mean id near (rows - 1) / 2.
TEST(RecModel, ZipfIdsFollowTheDistribution) {
  RecModelDims dims = tiny(RecAccess::kZipf);
  dims.rows = 1000;
  dims.sparse_features = 4;
  const RecBatch b = RecData(dims, 5).batch(0, 10000);
  double h = 0;
  for (int i = 1; i <= 1000; ++i) h += std::pow(i, -1.05);
  double zeros = 0;
  for (std::int64_t id : b.ids) zeros += id == 0;
  EXPECT_NEAR(zeros / static_cast<double>(b.ids.size()), 1.0 / h, 0.05 / h);

  dims.access = RecAccess::kUniform;
  const RecBatch flat = RecData(dims, 5).batch(0, 10000);
  double sum = 0;
  for (std::int64_t id : flat.ids) sum += static_cast<double>(id);
  EXPECT_NEAR(sum / static_cast<double>(flat.ids.size()), 499.5, 10.0);
}

TEST(RecModel, BadSizesNameTheField) {
  RecModelDims d = tiny();
  d.rows = 0;
  EXPECT_THROW(
      {
        try {
          check_rec_dims(d);
        } catch (const ConfigError& e) {
          EXPECT_NE(std::string(e.what()).find("model.embedding_rows = 0"), std::string::npos);
          throw;
        }
      },
      ConfigError);
  d = tiny();
  d.mlp = {4, 0};
  EXPECT_THROW(check_rec_dims(d), ConfigError);
  RecSgdOptions sgd;
  sgd.steps = 0;
  EXPECT_THROW(check_rec_sgd(sgd), ConfigError);
}

// One worker: dp on a one-rank world is the reference, bit for bit; and the loss learns the
// teacher (the mean of the last 10 of 60 steps well below the first 10's).
TEST(RecModel, ReferenceEqualsOneRankDpAndLearns) {
  RecModelDims dims = tiny(RecAccess::kZipf);
  dims.rows = 200;
  dims.dim = 8;
  dims.mlp = {16, 8};
  RecSgdOptions sgd;
  sgd.steps = 60;
  sgd.batch_per_worker = 16;
  const std::vector<float> ref = rec_reference_losses(dims, sgd, 1);
  auto comm = make_local_comm();
  const GroupId g = comm->split({0});
  EXPECT_EQ(run_rec_dp(*comm, g, dims, sgd), ref);
  double first = 0, last = 0;
  for (int t = 0; t < 10; ++t) {
    first += ref[static_cast<std::size_t>(t)] / 10;
    last += ref[static_cast<std::size_t>(50 + t)] / 10;
  }
  EXPECT_LT(last, 0.8 * first) << first << " -> " << last;
}

}  // namespace
}  // namespace strata::exec
