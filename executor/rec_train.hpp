// Training the recommendation model (rec_model.hpp) without parameter servers: the
// single-process reference and synchronous data parallelism, the baselines the
// parameter-server runs (ps.hpp) are compared with. All three use the same batches, the same
// initial values, the same forward and backward and the same SGD (sgd_apply).
#pragma once

#include <cstdint>
#include <vector>

#include "executor/comm.hpp"
#include "executor/rec_model.hpp"

namespace strata::exec {

struct RecSgdOptions {
  float lr = 0.5f;           // SGD learning rate (no momentum: updates are additive)
  int batch_per_worker = 8;  // samples per worker and step
  int steps = 10;
  std::uint64_t seed = 1;  // initial values and data
};
// Throws ConfigError naming the option (lr, batch_per_worker, steps) and its value.
void check_rec_sgd(const RecSgdOptions& sgd);

// Worker `worker`'s batch at step `step` of a run with `workers` workers: step t's global batch
// is samples t W b .. (t + 1) W b - 1 of the data stream, and the worker's share its w-th run
// of b = batch_per_worker of them.
RecBatch worker_batch(const RecData& data, const RecSgdOptions& sgd, int workers, int worker,
                      int step);

// One process, step t's whole global batch in one forward and backward; the gradient of its
// mean loss applied with SGD. Returns each step's loss (the mean over the global batch).
std::vector<float> rec_reference_losses(const RecModelDims& dims, const RecSgdOptions& sgd,
                                        int workers);

// Synchronous data parallelism over group `g`, whose members are the workers (every member calls
// it): each member holds the whole model, computes on its share, the gradients (the dense ones
// and the whole embedding table's, as DDP does) are all-reduced, divided by W and applied with
// SGD. Returns each step's loss, the mean of the members' losses, on every member.
std::vector<float> run_rec_dp(Comm& comm, GroupId g, const RecModelDims& dims,
                              const RecSgdOptions& sgd);

}  // namespace strata::exec
