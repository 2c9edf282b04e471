// The reference and the synchronous data-parallel run of the recommendation model.
#include "executor/rec_train.hpp"

#include <algorithm>
#include <string>

#include "common/error.hpp"

namespace strata::exec {
namespace {

// The whole model, as the reference and every dp member hold it.
struct FullModel {
  std::vector<float> table;  // (rows, dim)
  std::vector<float> dense;

  FullModel(const RecModelDims& dims, std::uint64_t seed) : dense(rec_init_dense(dims, seed)) {
    std::vector<std::int64_t> ids(static_cast<std::size_t>(dims.rows));
    for (std::int64_t i = 0; i < dims.rows; ++i) ids[static_cast<std::size_t>(i)] = i;
    table.resize(static_cast<std::size_t>(dims.rows * dims.dim));
    rec_init_rows(dims, seed, ids.data(), dims.rows, table.data());
  }

  // One forward and backward on `batch`: the loss; dense_grad and the unique rows' gradient.
  float step(const RecModelDims& dims, const RecBatch& batch, const UniqueRows& u,
             std::vector<float>& dense_grad, std::vector<float>& row_grad) const {
    std::vector<float> rows(u.rows.size() * static_cast<std::size_t>(dims.dim));
    for (std::size_t i = 0; i < u.rows.size(); ++i) {
      const auto first = table.begin() + u.rows[i] * dims.dim;
      std::copy(first, first + dims.dim, rows.begin() + static_cast<std::int64_t>(i) * dims.dim);
    }
    dense_grad.resize(dense.size());
    row_grad.resize(rows.size());
    return rec_forward_backward(dims, dense.data(), rows.data(), batch, u, dense_grad.data(),
                                row_grad.data());
  }
};

}  // namespace

void check_rec_sgd(const RecSgdOptions& sgd) {
  if (!(sgd.lr > 0)) throw ConfigError("lr = " + std::to_string(sgd.lr) + ": must be positive");
  if (sgd.batch_per_worker < 1) {
    throw ConfigError("batch_per_worker = " + std::to_string(sgd.batch_per_worker) +
                      ": must be at least 1");
  }
  if (sgd.steps < 1) {
    throw ConfigError("steps = " + std::to_string(sgd.steps) + ": must be at least 1");
  }
}

RecBatch worker_batch(const RecData& data, const RecSgdOptions& sgd, int workers, int worker,
                      int step) {
  const std::int64_t b = sgd.batch_per_worker;
  return data.batch((static_cast<std::int64_t>(step) * workers + worker) * b, b);
}

std::vector<float> rec_reference_losses(const RecModelDims& dims, const RecSgdOptions& sgd,
                                        int workers) {
  check_rec_dims(dims);
  check_rec_sgd(sgd);
  const RecData data(dims, sgd.seed);
  FullModel m(dims, sgd.seed);
  std::vector<float> losses, dense_grad, row_grad;
  const std::int64_t global = static_cast<std::int64_t>(workers) * sgd.batch_per_worker;
  for (int t = 0; t < sgd.steps; ++t) {
    const RecBatch batch = data.batch(t * global, global);
    const UniqueRows u = unique_rows(batch);
    losses.push_back(m.step(dims, batch, u, dense_grad, row_grad));
    sgd_apply(m.dense.data(), dense_grad.data(), static_cast<std::int64_t>(m.dense.size()), sgd.lr,
              1);
    for (std::size_t i = 0; i < u.rows.size(); ++i) {
      sgd_apply(m.table.data() + u.rows[i] * dims.dim,
                row_grad.data() + static_cast<std::int64_t>(i) * dims.dim, dims.dim, sgd.lr, 1);
    }
  }
  return losses;
}

std::vector<float> run_rec_dp(Comm& comm, GroupId g, const RecModelDims& dims,
                              const RecSgdOptions& sgd) {
  check_rec_dims(dims);
  check_rec_sgd(sgd);
  const int workers = comm.group_size(g), me = comm.group_rank(g);
  const RecData data(dims, sgd.seed);
  FullModel m(dims, sgd.seed);
  // One all-reduce buffer: the dense gradient, then the whole table's, then the loss.
  const std::size_t dense_n = m.dense.size(), table_n = m.table.size();
  std::vector<float> grad(dense_n + table_n + 1), losses, dense_grad, row_grad;
  for (int t = 0; t < sgd.steps; ++t) {
    const RecBatch batch = worker_batch(data, sgd, workers, me, t);
    const UniqueRows u = unique_rows(batch);
    const float loss = m.step(dims, batch, u, dense_grad, row_grad);
    std::fill(grad.begin(), grad.end(), 0.0f);
    std::copy(dense_grad.begin(), dense_grad.end(), grad.begin());
    for (std::size_t i = 0; i < u.rows.size(); ++i) {
      const auto src = row_grad.begin() + static_cast<std::int64_t>(i) * dims.dim;
      std::copy(src, src + dims.dim,
                grad.begin() + static_cast<std::int64_t>(dense_n) + u.rows[i] * dims.dim);
    }
    grad.back() = loss;
    comm.all_reduce(g, grad.data(), grad.size(), ReduceOp::kSum).wait();
    sgd_apply(m.dense.data(), grad.data(), static_cast<std::int64_t>(dense_n), sgd.lr, workers);
    sgd_apply(m.table.data(), grad.data() + dense_n, static_cast<std::int64_t>(table_n), sgd.lr,
              workers);
    losses.push_back(grad.back() / static_cast<float>(workers));
  }
  return losses;
}

}  // namespace strata::exec
