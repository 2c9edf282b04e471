// Parameter-server partitioning (docs/parameter-server.md): which server owns which parameters,
// and the consistency model's names.
// Pure functions of sizes and names, shared by the lowering/simulation (sim/ps) and the CPU
// executor's servers and workers (executor/ps), so that both place every row the same way.
//
// Two granularities:
//   tensor: every tensor lives whole on one server;
//           range: the tensors, in the order given, are cut into `servers` contiguous runs of
//                  about equal element counts (tensor i goes to server floor(S x c_i / total),
//                  c_i = the elements before the middle of tensor i);
//           hash:  server = splitmix64(fnv1a64(name)) mod S (common/hash.hpp).
//   row:    every tensor's rows are spread over all servers;
//           range: row r of R goes to server floor(r x S / R) (contiguous blocks, sizes differ
//                  by at most one row);
//           hash:  row r goes to server splitmix64(r) mod S,
//                  which spreads the hot low ids of a skewed (Zipf) access over the servers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace strata::strategies {

enum class PsPartition { kRange, kHash };
enum class PsGranularity { kTensor, kRow };
const char* ps_partition_name(PsPartition p);
const char* ps_granularity_name(PsGranularity g);

// The consistency model (docs/parameter-server.md): BSP (synchronous), SSP (a staleness bound),
// ASP (asynchronous); the spec's ps block and the executor's options both hold it.
enum class PsConsistency { kBsp, kSsp, kAsp };
const char* ps_consistency_name(PsConsistency c);  // "bsp", "ssp", "asp"

// The server (0 .. servers-1) that owns row `row` of a tensor with `rows` rows, row granularity.
int ps_row_owner(std::int64_t row, std::int64_t rows, int servers, PsPartition p);

// The server of each whole tensor, tensor granularity: `elements[i]` and `names[i]` describe
// tensor i (names are used by hash, element counts by range). Both vectors have the same size.
std::vector<int> ps_tensor_owners(const std::vector<std::int64_t>& elements,
                                  const std::vector<std::string>& names, int servers,
                                  PsPartition p);

// Rows of a `rows`-row tensor that server `server` owns, row granularity (range: its block
// size; hash: counted, O(rows)).
std::int64_t ps_rows_owned(std::int64_t rows, int server, int servers, PsPartition p);

}  // namespace strata::strategies
