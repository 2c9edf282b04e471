// Run under mpirun by ps_test.cpp: `ps_mpi_check SERVERS`, the last SERVERS ranks servers, the
// others workers (executor/ps.hpp). Rank 0 checks:
//   BSP (uniform ids, row granularity, range; and Zipf ids, tensor granularity, hash): every
//     step's loss == synchronous dp's (run_rec_dp over the workers) and == the one-process
//     reference's within 1e-6; staleness 0; one update per step per server; each worker's
//     pushed and pulled bytes and rows == its batches' distinct ids counted here
//     independently; the servers received exactly what the workers sent;
//   SSP with s = 1 and s = 2, worker 0 slowed by 50 ms a step: every pull's staleness <= s,
//     and s is reached (the bound binds); one update per push;
//   ASP: runs, the mean loss of the last 5 steps is below that of the first 5;
//   Comm::probe_any_source gives up with CommTimeout when nothing comes.
// Rank 0 prints the numbers, then "ps_mpi_check: W workers + S servers, K checks passed" and
// every rank exits 0, or it prints its failures and exits 1.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "executor/comm.hpp"
#include "executor/ps.hpp"
#include "executor/rec_train.hpp"

namespace {

using namespace strata::exec;
using strata::strategies::PsGranularity;
using strata::strategies::PsPartition;

struct Tally {
  int checks = 0, failures = 0;
  void expect(bool ok, const std::string& what) {
    ++checks;
    if (ok) return;
    ++failures;
    std::fprintf(stderr, "ps_mpi_check: %s\n", what.c_str());
  }
};

RecModelDims small_dims(RecAccess access) {
  RecModelDims d;
  d.rows = 300;
  d.dim = 8;
  d.sparse_features = 4;
  d.dense_features = 3;
  d.mlp = {16, 8};
  d.access = access;
  return d;
}

double mean(const std::vector<float>& v, std::size_t first, std::size_t n) {
  double s = 0;
  for (std::size_t i = first; i < first + n; ++i) s += v[i];
  return s / static_cast<double>(n);
}

void print_losses(const char* what, const std::vector<float>& l) {
  std::printf("%s losses:", what);
  for (float x : l) std::printf(" %.6f", x);
  std::printf("\n");
}

// BSP against dp and the reference, and the bytes against the batches' distinct ids.
void check_bsp(Comm& comm, GroupId workers_group, int workers, const RecModelDims& dims,
               const PsRunOptions& o, const std::string& name, Tally& tally) {
  std::vector<float> dp;
  if (workers_group != kNoGroup) dp = run_rec_dp(comm, workers_group, dims, o.sgd);
  const PsRunResult ps = run_ps(comm, dims, o);
  if (comm.rank() != 0) return;
  const std::vector<float> ref = rec_reference_losses(dims, o.sgd, workers);
  print_losses((name + " ps").c_str(), ps.losses);
  print_losses((name + " dp").c_str(), dp);
  print_losses((name + " reference").c_str(), ref);
  double worst_dp = 0, worst_ref = 0;
  for (int t = 0; t < o.sgd.steps; ++t) {
    const auto i = static_cast<std::size_t>(t);
    worst_dp = std::max(worst_dp, std::abs(static_cast<double>(ps.losses[i]) - dp[i]));
    worst_ref = std::max(worst_ref, std::abs(static_cast<double>(ps.losses[i]) - ref[i]));
  }
  std::printf("%s: max |ps - dp| = %.3g, max |ps - reference| = %.3g\n", name.c_str(), worst_dp,
              worst_ref);
  tally.expect(worst_dp <= 1e-6,
               name + ": BSP losses differ from dp's by " + std::to_string(worst_dp));
  tally.expect(worst_ref <= 1e-6,
               name + ": BSP losses differ from the reference's by " + std::to_string(worst_ref));
  tally.expect(ps.max_staleness() == 0,
               name + ": BSP staleness " + std::to_string(ps.max_staleness()));

  const RecData data(dims, o.sgd.seed);
  const std::int64_t dense = rec_layout(dims).dense_size;
  std::int64_t sent = 0, received = 0;
  for (int w = 0; w < workers; ++w) {
    std::int64_t touched = 0;
    for (int t = 0; t < o.sgd.steps; ++t) {
      const RecBatch b = worker_batch(data, o.sgd, workers, w, t);
      const std::set<std::int64_t> distinct(b.ids.begin(), b.ids.end());
      touched += static_cast<std::int64_t>(distinct.size());
    }
    const std::int64_t want = touched * (dims.dim * 4 + 8) + o.sgd.steps * dense * 4;
    const PsWorkerStats& s = ps.workers[static_cast<std::size_t>(w)];
    std::printf(
        "%s worker %d: %lld touched rows, pushed %lld bytes (%lld rows), pulled %lld "
        "bytes, waited %.3f s\n",
        name.c_str(), w, static_cast<long long>(touched), static_cast<long long>(s.pushed_bytes),
        static_cast<long long>(s.pushed_rows), static_cast<long long>(s.pulled_bytes), s.wait_s);
    tally.expect(s.pushed_rows == touched && s.pulled_rows == touched,
                 name + ": worker " + std::to_string(w) + " moved " +
                     std::to_string(s.pushed_rows) + " rows, touched " + std::to_string(touched));
    tally.expect(s.pushed_bytes == want && s.pulled_bytes == want,
                 name + ": worker " + std::to_string(w) + " pushed " +
                     std::to_string(s.pushed_bytes) + " bytes, expected " + std::to_string(want));
    sent += s.pushed_bytes + 8 * s.pulled_rows;  // pushes and the pulls' ids
  }
  for (std::size_t k = 0; k < ps.servers.size(); ++k) {
    const PsServerStats& s = ps.servers[k];
    std::printf("%s server %zu: received %lld bytes, %lld updates, %lld rows held\n", name.c_str(),
                k, static_cast<long long>(s.received_bytes),
                static_cast<long long>(s.updates_applied), static_cast<long long>(s.rows_held));
    received += s.received_bytes;
    tally.expect(s.updates_applied == o.sgd.steps,
                 name + ": a BSP server applied " + std::to_string(s.updates_applied) + " updates");
  }
  tally.expect(received == sent, name + ": servers received " + std::to_string(received) +
                                     " bytes, workers sent " + std::to_string(sent));
}

int run(Comm& comm, int servers) {
  const int workers = comm.size() - servers;
  Tally tally;
  std::vector<int> worker_ranks;
  for (int r = 0; r < workers; ++r) worker_ranks.push_back(r);
  const GroupId wg = comm.split(comm.rank() < workers ? worker_ranks : std::vector<int>{});

  PsRunOptions o;
  o.servers = servers;
  o.sgd.steps = 8;
  o.sgd.batch_per_worker = 8;
  o.sgd.lr = 0.5f;
  o.sgd.seed = 7;
  check_bsp(comm, wg, workers, small_dims(RecAccess::kUniform), o, "bsp uniform row range", tally);
  o.granularity = PsGranularity::kTensor;
  o.partition = PsPartition::kHash;
  check_bsp(comm, wg, workers, small_dims(RecAccess::kZipf), o, "bsp zipf tensor hash", tally);

  PsRunOptions ssp = o;
  ssp.granularity = PsGranularity::kRow;
  ssp.consistency = PsConsistency::kSsp;
  ssp.sgd.steps = 10;
  ssp.worker_delay_s = {0.05};
  for (int bound : {1, 2}) {
    ssp.staleness = bound;
    const std::string name = "ssp s = " + std::to_string(bound);
    const PsRunResult s = run_ps(comm, small_dims(RecAccess::kZipf), ssp);
    if (comm.rank() != 0) continue;
    print_losses(name.c_str(), s.losses);
    for (int w = 0; w < workers; ++w) {
      const PsWorkerStats& st = s.workers[static_cast<std::size_t>(w)];
      std::printf("%s worker %d: max staleness %d, waited %.3f s\n", name.c_str(), w,
                  st.max_staleness, st.wait_s);
      tally.expect(st.max_staleness <= bound, name + ": worker " + std::to_string(w) +
                                                  " saw staleness " +
                                                  std::to_string(st.max_staleness));
    }
    tally.expect(s.max_staleness() == bound, name + ": the largest staleness is " +
                                                 std::to_string(s.max_staleness()) +
                                                 " (the slow worker did not hold a fast one back)");
    for (const PsServerStats& st : s.servers) {
      tally.expect(st.updates_applied == static_cast<std::int64_t>(workers) * ssp.sgd.steps,
                   name + ": a server applied " + std::to_string(st.updates_applied) + " updates");
    }
  }

  PsRunOptions asp = ssp;
  asp.consistency = PsConsistency::kAsp;
  asp.staleness = 0;
  asp.sgd.steps = 30;
  asp.worker_delay_s = {0.005};
  const PsRunResult a = run_ps(comm, small_dims(RecAccess::kZipf), asp);
  if (comm.rank() == 0) {
    print_losses("asp", a.losses);
    const double first = mean(a.losses, 0, 5), last = mean(a.losses, 25, 5);
    std::printf("asp: first 5 steps %.4f, last 5 %.4f, max staleness %d\n", first, last,
                a.max_staleness());
    tally.expect(last < first, "asp: the loss did not decrease (" + std::to_string(first) + " -> " +
                                   std::to_string(last) + ")");
  }

  // A probe gives up after the timeout: no rank sends tag 7.
  if (comm.rank() == 0) {
    comm.set_timeout_s(0.2);
    bool timed_out = false;
    try {
      comm.probe_any_source(7);
    } catch (const CommTimeout&) {
      timed_out = true;
    }
    tally.expect(timed_out, "a probe for a message nobody sends did not time out");
  }

  if (comm.rank() != 0) return 0;
  if (tally.failures > 0) return 1;
  std::printf("ps_mpi_check: %d workers + %d servers, %d checks passed\n", workers, servers,
              tally.checks);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int servers = argc > 1 ? std::atoi(argv[1]) : 1;
  std::unique_ptr<Comm> comm = make_mpi_comm();
  comm->set_timeout_s(60);
  try {
    const int code = run(*comm, servers);
    std::fflush(stdout);
    return code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ps_mpi_check: rank %d: %s\n", comm->rank(), e.what());
    comm->abort(2);
  }
}
