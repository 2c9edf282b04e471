// The initial values of a rank's parameters: GPT-2's initialisation, drawn so that it does not
// depend on the strategy (every strategy starts from the same model). Element i of the unsharded
// parameter tensor is a pure function of (seed, its init name, i): init_normal() for normal
// weights (every weight matrix and embedding ~ N(0, 0.02), the residual output projections
// ~ N(0, 0.02 / sqrt(2 L))), 0 for biases, 1 for norm weights; the Plan's ParamInfo says which
// (strategies/program.hpp), and where the rank's shard sits in its bucket's flat buffer.
//
// Shards (Megatron's layout, PyTorch's (OUT, IN) weights), for index r of a t-way tp group:
//   kRows:       rows [r R/t, (r+1) R/t)                      (column-parallel, vocabulary)
//   kBlockRows:  those rows within each block (q, k, v of a fused QKV; gate, up of SwiGLU)
//   kCols:       columns [r C/t, (r+1) C/t)                  (row-parallel weights)
//   kReplicated: everything
// A tied LM head on the last stage (pp > 1) is initialised as the word embedding ("wte").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "strategies/program.hpp"

namespace strata::exec {

class Interpreter;

// A standard normal drawn with splitmix64 and Box-Muller from (seed, fnv1a64(name), index).
float init_normal(std::uint64_t seed, const std::string& name, std::int64_t index);

// The unsharded row-major indices that shard `index` of parameter `p` holds, in its order.
std::vector<std::int64_t> shard_indices(const strategies::ParamInfo& p, int index);

// Mixture of experts: a layer's expert weights hold the rank's E/ep experts one after another
// (kExpertFc1Weight (E/ep F, C), kExpertFc2Weight (E/ep C, F); with expert_tp > 1 each expert's
// shard, fc1 by rows and fc2 by columns as the dense MLP's), and each expert is a tensor of its
// own named by its GLOBAL index e = (the rank's ep index) E/ep + j: "layers.L.experts.e.fc1.w"
// (F, C), "layers.L.experts.e.fc2.w" (C, F), so that every strategy starts from the one-rank
// run's experts; the router is "layers.L.router.w".
struct ExpertSlice {
  std::int64_t first = 0;  // the global index of the rank's first expert
  std::int64_t local = 1;  // experts on the rank (E/ep)
};

// A parameter as the executor names it: the Plan's tensor, or one expert of it.
struct ParamPiece {
  std::string name;
  std::int64_t first = 0;         // its first element in the rank's part of the parameter
  strategies::ParamInfo info;     // its own rows, cols, shard and elements on the rank
};
std::vector<ParamPiece> param_pieces(const strategies::ParamInfo& p, const ExpertSlice& experts);

// The rank's expert slice for parameter `p` (`p`'s layer's router gives E; the ep group of its
// layout the index). {0, 1} for a parameter of no MoE layer.
ExpertSlice expert_slice(const Interpreter& in, const strategies::ParamInfo& p);

// The initial values of shard `index` of parameter `p` (piece after piece).
std::vector<float> initial_values(const strategies::ParamInfo& p, int index, std::uint64_t seed,
                                  const ExpertSlice& experts = {});

// Writes every parameter of the interpreter's rank into its buffers (the whole bucket, or the
// rank's part of it under ZeRO-3).
void initialise_parameters(Interpreter& in, std::uint64_t seed);

}  // namespace strata::exec
