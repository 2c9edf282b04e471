// The parameter servers' messages (internal to ps.cpp, and its unit tests). A message is a
// float vector (the Comm moves floats); an int64 travels as the bit pattern of two floats
// (memcpy, never arithmetic, so every value survives). Layouts:
//   pull request  worker -> server  [kPull, worker, step, k] ids(k)
//   pull reply    server -> worker  [min clock] rows(k, dim) dense(its dense elements)
//   push          worker -> server  [kPush, worker, step, k] ids(k) row grads(k, dim) dense grads
//   done          worker -> server  [kDone, worker, steps, 0]
// Requests (pull, push, done) share one tag, so a server sees each worker's in the order sent.
#pragma once

#include <cstdint>
#include <vector>

#include "executor/ps.hpp"

namespace strata::exec::detail {

enum class PsKind : std::int64_t { kPull = 1, kPush = 2, kDone = 3 };
inline constexpr int kPsRequestTag = 2201;
inline constexpr int kPsReplyTag = 2202;
inline constexpr std::size_t kPsHeaderFloats = 8;  // four int64

void put_int(std::vector<float>& m, std::int64_t v);
std::int64_t get_int(const float* at);  // the int64 at two floats

// A message built by a worker, with what its stats count for it.
struct PsMessage {
  std::vector<float> words;
  std::int64_t payload_bytes = 0;  // ids, rows and dense values it carries (sent or asked for)
  std::int64_t rows = 0;
};

// For each server, the positions in u.rows of the rows it owns (ascending).
std::vector<std::vector<std::int32_t>> rows_by_server(const PsPlacement& place,
                                                      const std::vector<std::int64_t>& rows);

// Worker `worker`'s pull requests of step `step`, one per server; payload_bytes counts the ids
// sent and the rows and dense values the reply will carry.
std::vector<PsMessage> make_pulls(const PsPlacement& place, std::int64_t dim, int worker, int step,
                                  const std::vector<std::int64_t>& rows);
// Its pushes: row_grad (U, dim) for `rows`, dense_grad over the whole flat dense vector.
std::vector<PsMessage> make_pushes(const PsPlacement& place, std::int64_t dim, int worker, int step,
                                   const std::vector<std::int64_t>& rows, const float* row_grad,
                                   const float* dense_grad);

// Its done messages, one per server, after its last push (`steps` of them).
std::vector<PsMessage> make_dones(const PsPlacement& place, int worker, int steps);

// A request as a server reads it (views into the received words).
struct PsRequest {
  PsKind kind = PsKind::kDone;
  int worker = 0, step = 0;
  std::int64_t k = 0;
  std::vector<std::int64_t> ids;
  const float* row_values = nullptr;    // push: (k, dim)
  const float* dense_values = nullptr;  // push: the server's dense elements
};
// Checks the length against the layout (STRATA_CHECK) for a server owning `dense_n` elements.
PsRequest parse_request(const std::vector<float>& words, std::int64_t dim, std::size_t dense_n);

}  // namespace strata::exec::detail
