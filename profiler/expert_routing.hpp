// The bytes of an uneven all-to-all (alltoallv): a per-(sender, receiver) byte matrix, and the
// matrix of a mixture-of-experts dispatch built from a distribution of tokens over the experts.
// Pure functions of small inputs (std and common/ only); sim/collectives.hpp runs the matrix as
// flows (plan_all_to_all), docs/simulator.md "All-to-all" states the model.
//
// defines: ByteMatrix, uniform_byte_matrix(), check_byte_matrix(), transposed(),
//          TokenDistribution, ExpertLoad, expert_token_shares(), expert_dispatch_bytes()
#pragma once

#include <string>
#include <vector>

namespace strata::profiler {

// bytes[i][j]: what member i of a group sends to member j in an all-to-all, by position in the
// group's ascending ranks. The diagonal is what a member keeps for itself: part of its buffer,
// never sent.
using ByteMatrix = std::vector<std::vector<double>>;

// nccl-tests' all-to-all of "size" S over n members: every member sends S/n to every member
// (itself included), so each row sums to S.
ByteMatrix uniform_byte_matrix(int n, double bytes);

// Throws ConfigError unless `m` is n x n with finite entries >= 0; the message names
// `what`[i][j] (or the row count), the value and the rule.
void check_byte_matrix(const ByteMatrix& m, int n, const std::string& what = "all_to_all.bytes");

// m^T: the combine all-to-all returns along the dispatch's routes, so its matrix is the
// dispatch's transposed.
ByteMatrix transposed(const ByteMatrix& m);

// How the routed tokens spread over the experts.
enum class TokenDistribution {
  kUniform,   // every expert receives 1/E of the token copies
  kZipf,      // expert e (0-based, the hottest first) receives (e+1)^-s / sum_f (f+1)^-s
  kExplicit,  // the given fractions, one per expert (measured routing, for example)
};

struct ExpertLoad {
  TokenDistribution distribution = TokenDistribution::kUniform;
  double zipf_exponent = 1.0;     // kZipf: s >= 0 (s = 0 is uniform)
  std::vector<double> fractions;  // kExplicit: one per expert, each >= 0, summing to 1 (1e-6)
};

// The share of the routed token copies each of `num_experts` experts receives; sums to 1.
// ConfigError (naming expert_load.zipf_exponent, expert_load.fractions[e], ...) for a bad load.
std::vector<double> expert_token_shares(int num_experts, const ExpertLoad& load);

// The dispatch all-to-all of an expert-parallel group of `ep` ranks holding `num_experts`
// experts, E/ep consecutive experts per rank (rank r holds experts [r E/ep, (r+1) E/ep)). Every
// rank routes `tokens_per_rank` tokens, each to `top_k` distinct experts, and sends one copy of
// the token's activations (`bytes_per_token` = hidden x bytes per element) per chosen expert:
// tokens x top_k x bytes_per_token bytes per rank, split over the destination ranks by the
// shares of their experts (expert_token_shares; the same distribution on every rank):
//   bytes[i][j] = tokens_per_rank * top_k * bytes_per_token * sum_{e on rank j} share_e.
// The diagonal is the part routed to the rank's own experts. A share above 1/top_k cannot be
// routed (a token picks top_k distinct experts, so an expert receives at most one copy of each)
// and is a ConfigError, as are ep < 1, E not divisible by ep, top_k outside [1, E], negative or
// non-finite tokens, and bytes_per_token <= 0. The combine all-to-all is transposed(dispatch).
ByteMatrix expert_dispatch_bytes(int ep, int num_experts, int top_k, double tokens_per_rank,
                                 double bytes_per_token, const ExpertLoad& load);

}  // namespace strata::profiler
