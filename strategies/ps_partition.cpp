#include "strategies/ps_partition.hpp"

#include <limits>

#include "common/error.hpp"
#include "common/hash.hpp"

namespace strata::strategies {

const char* ps_partition_name(PsPartition p) { return p == PsPartition::kRange ? "range" : "hash"; }

const char* ps_granularity_name(PsGranularity g) {
  return g == PsGranularity::kTensor ? "tensor" : "row";
}

const char* ps_consistency_name(PsConsistency c) {
  switch (c) {
    case PsConsistency::kBsp:
      return "bsp";
    case PsConsistency::kSsp:
      return "ssp";
    case PsConsistency::kAsp:
      return "asp";
  }
  return "?";
}

int ps_row_owner(std::int64_t row, std::int64_t rows, int servers, PsPartition p) {
  STRATA_CHECK(servers >= 1 && rows >= 1 && row >= 0 && row < rows &&
                   rows <= std::numeric_limits<std::int64_t>::max() / servers,
               "ps_row_owner");
  if (p == PsPartition::kRange) {
    return static_cast<int>(row * servers / rows);
  }
  return static_cast<int>(splitmix64(static_cast<std::uint64_t>(row)) %
                          static_cast<std::uint64_t>(servers));
}

std::vector<int> ps_tensor_owners(const std::vector<std::int64_t>& elements,
                                  const std::vector<std::string>& names, int servers,
                                  PsPartition p) {
  STRATA_CHECK(servers >= 1 && elements.size() == names.size(), "ps_tensor_owners");
  std::vector<int> owner(elements.size(), 0);
  if (p == PsPartition::kHash) {
    for (std::size_t i = 0; i < names.size(); ++i) {
      owner[i] = static_cast<int>(splitmix64(fnv1a64(names[i])) %
                                  static_cast<std::uint64_t>(servers));
    }
    return owner;
  }
  long double total = 0;
  for (std::int64_t e : elements) total += static_cast<long double>(e);
  long double before = 0;
  for (std::size_t i = 0; i < elements.size(); ++i) {
    const long double middle = before + static_cast<long double>(elements[i]) / 2;
    const int s = total > 0 ? static_cast<int>(middle * servers / total) : 0;
    owner[i] = s < servers ? s : servers - 1;
    before += static_cast<long double>(elements[i]);
  }
  return owner;
}

std::int64_t ps_rows_owned(std::int64_t rows, int server, int servers, PsPartition p) {
  STRATA_CHECK(servers >= 1 && server >= 0 && server < servers && rows >= 0 &&
                   rows <= std::numeric_limits<std::int64_t>::max() / servers,
               "ps_rows_owned");
  if (p == PsPartition::kRange) {
    // Rows r with floor(r S / R) == server: r in [ceil(server R / S), ceil((server+1) R / S)).
    auto first = [&](int s) {
      return (static_cast<std::int64_t>(s) * rows + servers - 1) / servers;
    };
    return first(server + 1) - first(server);
  }
  std::int64_t n = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    if (ps_row_owner(r, rows, servers, p) == server) ++n;
  }
  return n;
}

}  // namespace strata::strategies
