// The parameter servers (executor/ps.hpp) in one process: the placement against
// strategies/ps_partition.hpp, the messages (pushed bytes == the batch's distinct ids x
// (dim x 4 + 8) + the dense bytes, each id to its owner, values round-tripped), the options'
// errors; and, with MPI, ps_mpi_check under mpirun on 2 workers + 2 servers and 3 + 1.
#include "executor/ps.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>

#include "common/error.hpp"
#include "executor/detail/ps_wire.hpp"
#include "tests/executor/mpi_check.hpp"

namespace strata::exec {
namespace {

using strategies::PsGranularity;
using strategies::PsPartition;

RecModelDims dims_for_test() {
  RecModelDims d;
  d.rows = 100;
  d.dim = 4;
  d.sparse_features = 5;
  d.dense_features = 3;
  d.mlp = {7, 6};
  d.access = RecAccess::kZipf;
  return d;
}

// Every dense element on exactly one server; rows by ps_row_owner or on the table's server.
TEST(PsPlacement, EveryParameterHasOneOwnerAsPsPartitionSays) {
  const RecModelDims dims = dims_for_test();
  const RecLayout layout = rec_layout(dims);
  for (PsPartition p : {PsPartition::kRange, PsPartition::kHash}) {
    for (PsGranularity g : {PsGranularity::kRow, PsGranularity::kTensor}) {
      const PsPlacement place = ps_placement(dims, 3, p, g);
      std::vector<int> owners(static_cast<std::size_t>(layout.dense_size), 0);
      for (const auto& mine : place.dense_elements) {
        for (std::int64_t e : mine) ++owners[static_cast<std::size_t>(e)];
      }
      for (int n : owners) EXPECT_EQ(n, 1);
      for (std::int64_t r = 0; r < dims.rows; ++r) {
        const int want = g == PsGranularity::kRow ? strategies::ps_row_owner(r, dims.rows, 3, p)
                                                  : place.table_server;
        EXPECT_EQ(place.row_owner(r), want);
      }
    }
  }
  // Row granularity, range, 2 servers: mlp.0.w (23, 7) rows 0..11 on server 0 (floor(r 2 / 23)).
  const PsPlacement place = ps_placement(dims, 2, PsPartition::kRange, PsGranularity::kRow);
  EXPECT_EQ(place.table_server, -1);
  EXPECT_EQ(place.dense_elements[0].front(), 0);
  EXPECT_EQ(place.dense_elements[1].front(), 12 * 7);
  // Tensor granularity: the table's server is ps_tensor_owners' for "embedding".
  const PsPlacement whole = ps_placement(dims, 2, PsPartition::kRange, PsGranularity::kTensor);
  std::vector<std::int64_t> elements{dims.rows * dims.dim};
  std::vector<std::string> names{"embedding"};
  for (const RecTensor& t : layout.dense) {
    elements.push_back(t.elements());
    names.push_back(t.name);
  }
  EXPECT_EQ(whole.table_server,
            strategies::ps_tensor_owners(elements, names, 2, PsPartition::kRange)[0]);
}

// A worker's pushes carry its batch's distinct ids, each once and to its owner, with their
// gradients and the dense gradients: bytes == U (dim 4 + 8) + dense 4, U counted here from the
// batch's ids. The pulls ask for the same rows.
TEST(PsMessages, PushedBytesAreTheTouchedRows) {
  const RecModelDims dims = dims_for_test();
  const RecLayout layout = rec_layout(dims);
  const RecData data(dims, 4);
  for (PsGranularity g : {PsGranularity::kRow, PsGranularity::kTensor}) {
    const PsPlacement place = ps_placement(dims, 3, PsPartition::kHash, g);
    for (int step = 0; step < 3; ++step) {
      const RecBatch batch = data.batch(step * 16, 16);
      const std::set<std::int64_t> distinct(batch.ids.begin(), batch.ids.end());
      const auto touched = static_cast<std::int64_t>(distinct.size());
      const UniqueRows u = unique_rows(batch);
      std::vector<float> row_grad(u.rows.size() * 4), dense_grad(layout.dense_size);
      for (std::size_t i = 0; i < row_grad.size(); ++i) row_grad[i] = 0.5f * i;
      for (std::size_t i = 0; i < dense_grad.size(); ++i) dense_grad[i] = -0.25f * i;

      const auto pushes =
          detail::make_pushes(place, dims.dim, 1, step, u.rows, row_grad.data(), dense_grad.data());
      std::int64_t bytes = 0, rows = 0;
      std::set<std::int64_t> seen;
      for (std::size_t s = 0; s < pushes.size(); ++s) {
        bytes += pushes[s].payload_bytes;
        rows += pushes[s].rows;
        const detail::PsRequest r =
            detail::parse_request(pushes[s].words, dims.dim, place.dense_elements[s].size());
        EXPECT_EQ(r.kind, detail::PsKind::kPush);
        EXPECT_EQ(r.worker, 1);
        EXPECT_EQ(r.step, step);
        for (std::size_t i = 0; i < r.ids.size(); ++i) {
          EXPECT_EQ(place.row_owner(r.ids[i]), static_cast<int>(s));
          EXPECT_TRUE(seen.insert(r.ids[i]).second);
          const auto at = std::lower_bound(u.rows.begin(), u.rows.end(), r.ids[i]) - u.rows.begin();
          for (int c = 0; c < 4; ++c) EXPECT_EQ(r.row_values[i * 4 + c], row_grad[at * 4 + c]);
        }
        for (std::size_t e = 0; e < place.dense_elements[s].size(); ++e) {
          EXPECT_EQ(r.dense_values[e], dense_grad[place.dense_elements[s][e]]);
        }
      }
      EXPECT_EQ(seen, distinct);
      EXPECT_EQ(rows, touched);
      EXPECT_EQ(bytes, touched * (4 * 4 + 8) + layout.dense_size * 4);

      const auto pulls = detail::make_pulls(place, dims.dim, 1, step, u.rows);
      std::int64_t pulled = 0;
      for (const auto& m : pulls) pulled += m.payload_bytes;
      EXPECT_EQ(pulled, bytes);
    }
  }
}

TEST(PsMessages, IdsTravelBitForBit) {
  for (std::int64_t v : {std::int64_t{0}, std::int64_t{1}, std::int64_t{(1LL << 40) + 3},
                         std::int64_t{-1}, std::int64_t{0x7ff0000000000001LL}}) {
    std::vector<float> m;
    detail::put_int(m, v);
    EXPECT_EQ(detail::get_int(m.data()), v);
  }
}

void expect_error(const PsRunOptions& o, int world, const std::string& text) {
  try {
    check_ps_options(o, world);
    ADD_FAILURE() << "no error for " << text;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

TEST(PsOptions, BadOptionsNameTheField) {
  PsRunOptions o;
  o.servers = 0;
  expect_error(o, 4, "servers = 0");
  o.servers = 4;
  expect_error(o, 4, "no rank is left for a worker");
  o.servers = 1;
  o.staleness = -1;
  o.consistency = PsConsistency::kSsp;
  expect_error(o, 4, "staleness = -1");
  o.staleness = 2;
  o.consistency = PsConsistency::kBsp;
  expect_error(o, 4, "only ssp takes a staleness bound");
  o.consistency = PsConsistency::kSsp;
  EXPECT_NO_THROW(check_ps_options(o, 4));
}

TEST(PsComm, TheLocalBackendRefusesToProbe) {
  auto comm = make_local_comm();
  EXPECT_THROW(comm->probe_any_source(1), std::runtime_error);
}

#ifdef STRATA_PS_CHECK
// Rank 0's checks (ps_mpi_check.cpp's header): 2 BSP runs x (dp, reference, staleness,
// W x (rows, bytes), S updates, received bytes), 2 SSP runs x (W + 1 + S), 1 for ASP, 1 for
// the probe's timeout.
TEST(PsMpi, BspEqualsDpSspBoundHoldsAspLearnsOnTwoPlusTwoAndThreePlusOne) {
  for (const auto& [workers, servers] : {std::pair{2, 2}, std::pair{3, 1}}) {
    const test::MpiCheckRun r = test::run_mpi_check(STRATA_MPIEXEC, STRATA_PS_CHECK,
                                                    workers + servers, std::to_string(servers));
    const std::string& out = r.output;
    EXPECT_EQ(r.exit_code, 0) << out;
    const int checks = 2 * (4 + 2 * workers + servers) + 2 * (workers + 1 + servers) + 2;
    EXPECT_NE(out.find("ps_mpi_check: " + std::to_string(workers) + " workers + " +
                       std::to_string(servers) + " servers, " + std::to_string(checks) +
                       " checks passed"),
              std::string::npos)
        << out;
  }
}
#endif

}  // namespace
}  // namespace strata::exec
