// The parameter servers' message layouts (detail/ps_wire.hpp).
#include "executor/detail/ps_wire.hpp"

#include <cstring>

#include "common/error.hpp"

namespace strata::exec::detail {
namespace {

void put_header(std::vector<float>& m, PsKind kind, int worker, int step, std::int64_t k) {
  put_int(m, static_cast<std::int64_t>(kind));
  put_int(m, worker);
  put_int(m, step);
  put_int(m, k);
}

}  // namespace

void put_int(std::vector<float>& m, std::int64_t v) {
  float two[2];
  static_assert(sizeof two == sizeof v);
  std::memcpy(two, &v, sizeof v);
  m.insert(m.end(), two, two + 2);
}

std::int64_t get_int(const float* at) {
  std::int64_t v = 0;
  std::memcpy(&v, at, sizeof v);
  return v;
}

std::vector<std::vector<std::int32_t>> rows_by_server(const PsPlacement& place,
                                                      const std::vector<std::int64_t>& rows) {
  std::vector<std::vector<std::int32_t>> by(static_cast<std::size_t>(place.servers));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    by[static_cast<std::size_t>(place.row_owner(rows[i]))].push_back(static_cast<std::int32_t>(i));
  }
  return by;
}

std::vector<PsMessage> make_pulls(const PsPlacement& place, std::int64_t dim, int worker, int step,
                                  const std::vector<std::int64_t>& rows) {
  const auto by = rows_by_server(place, rows);
  std::vector<PsMessage> out(by.size());
  for (std::size_t s = 0; s < by.size(); ++s) {
    const auto k = static_cast<std::int64_t>(by[s].size());
    const auto dense_n = static_cast<std::int64_t>(place.dense_elements[s].size());
    PsMessage& m = out[s];
    put_header(m.words, PsKind::kPull, worker, step, k);
    for (std::int32_t i : by[s]) put_int(m.words, rows[static_cast<std::size_t>(i)]);
    m.rows = k;
    m.payload_bytes = k * 8 + k * dim * 4 + dense_n * 4;
  }
  return out;
}

std::vector<PsMessage> make_pushes(const PsPlacement& place, std::int64_t dim, int worker, int step,
                                   const std::vector<std::int64_t>& rows, const float* row_grad,
                                   const float* dense_grad) {
  const auto by = rows_by_server(place, rows);
  std::vector<PsMessage> out(by.size());
  for (std::size_t s = 0; s < by.size(); ++s) {
    const auto k = static_cast<std::int64_t>(by[s].size());
    const auto& dense = place.dense_elements[s];
    PsMessage& m = out[s];
    put_header(m.words, PsKind::kPush, worker, step, k);
    for (std::int32_t i : by[s]) put_int(m.words, rows[static_cast<std::size_t>(i)]);
    for (std::int32_t i : by[s]) {
      const float* g = row_grad + static_cast<std::int64_t>(i) * dim;
      m.words.insert(m.words.end(), g, g + dim);
    }
    for (std::int64_t e : dense) m.words.push_back(dense_grad[e]);
    m.rows = k;
    m.payload_bytes = k * (8 + dim * 4) + static_cast<std::int64_t>(dense.size()) * 4;
  }
  return out;
}

std::vector<PsMessage> make_dones(const PsPlacement& place, int worker, int steps) {
  std::vector<PsMessage> out(static_cast<std::size_t>(place.servers));
  for (PsMessage& m : out) put_header(m.words, PsKind::kDone, worker, steps, 0);
  return out;
}

PsRequest parse_request(const std::vector<float>& words, std::int64_t dim, std::size_t dense_n) {
  STRATA_CHECK(words.size() >= kPsHeaderFloats, "a parameter-server request without a header");
  PsRequest r;
  r.kind = static_cast<PsKind>(get_int(&words[0]));
  r.worker = static_cast<int>(get_int(&words[2]));
  r.step = static_cast<int>(get_int(&words[4]));
  r.k = get_int(&words[6]);
  const auto k = static_cast<std::size_t>(r.k);
  std::size_t expect = kPsHeaderFloats;
  if (r.kind == PsKind::kPull) expect += 2 * k;
  if (r.kind == PsKind::kPush) expect += 2 * k + k * static_cast<std::size_t>(dim) + dense_n;
  STRATA_CHECK(r.kind == PsKind::kPull || r.kind == PsKind::kPush || r.kind == PsKind::kDone,
               "a parameter-server request of unknown kind");
  STRATA_CHECK(words.size() == expect, "a parameter-server request of " +
                                           std::to_string(words.size()) + " floats, expected " +
                                           std::to_string(expect));
  r.ids.resize(k);
  for (std::size_t i = 0; i < k; ++i) r.ids[i] = get_int(&words[kPsHeaderFloats + 2 * i]);
  if (r.kind == PsKind::kPush) {
    r.row_values = words.data() + kPsHeaderFloats + 2 * k;
    r.dense_values = r.row_values + k * static_cast<std::size_t>(dim);
  }
  return r;
}

}  // namespace strata::exec::detail
