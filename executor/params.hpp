// The parameters one rank holds under a Plan: the layers of its pipeline stage's chunks, the
// embeddings on the first stage, the final norm and LM head on the last, each sharded over the
// rank's tensor-parallel group the way Megatron-LM splits them, with a seeded initialisation
// that does not depend on the strategy (so every strategy starts from the same model).
//
// Layout (PyTorch's: a linear weight is (OUT, IN)); shard r of a tp-way group holds
//   qkv.w (3C, C):  rows [r C/t, (r+1) C/t) of each of the q, k and v blocks -> (3C/t, C)
//   proj.w (C, C):  columns [r C/t, (r+1) C/t)                               -> (C, C/t)
//   fc1.w (F, C):   rows [r F/t, (r+1) F/t)                                  -> (F/t, C)
//   fc2.w (C, F):   columns [r F/t, (r+1) F/t)                               -> (C, F/t)
//   wte (V, C):     rows [r V/t, (r+1) V/t) (vocabulary-parallel)            -> (V/t, C)
//   column-parallel biases (qkv.b, fc1.b) split like their weight's rows; row-parallel biases
//   (proj.b, fc2.b), norms and wpe are replicated.
// Initialisation (GPT-2's): every weight matrix and embedding ~ N(0, 0.02), the two residual
// output projections (proj.w, fc2.w) ~ N(0, 0.02 / sqrt(2 L)), biases 0, norm weights 1.
// Element i of the unsharded tensor `name` is a pure function of (seed, name, i): see
// init_value(). A tied LM head on the last stage (pp > 1) is a copy of "wte".
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "strategies/plan.hpp"

namespace strata::exec {

enum class Shard : std::uint8_t { kReplicated, kRows, kCols, kQkvRows };

struct Param {
  std::string name;                    // "layers.3.qkv.w", "wte", "lnf.b", ...
  std::int64_t rows = 0, cols = 1;     // unsharded shape (vectors: cols = 1)
  Shard shard = Shard::kReplicated;
  int layer = -1;                      // transformer layer, -1 outside the layers
  std::vector<float> value, grad, adam_m, adam_v;  // this rank's shard

  std::size_t size() const { return value.size(); }
};

// The parameters of one transformer layer.
struct LayerParams {
  Param ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
  std::vector<Param*> all();
  // The order in which the layer's backward completes them (mlp_fc2 first, attn_norm last):
  // the order of a ZeRO-3 layer's gradient reduce-scatter and parameter all-gather.
  std::vector<Param*> in_backward_order();
};

class RankParams {
 public:
  // The parameters of `rank` under `plan`, initialised from `seed`. Model features the executor
  // does not implement are refused by exec::check_supported() before this is called.
  RankParams(const strategies::Plan& plan, int rank, std::uint64_t seed);

  LayerParams& layer(int l);
  bool has_layer(int l) const { return layers_.count(l) > 0; }
  Param& wte();    // first stage
  Param& wpe();    // first stage
  Param& lnf_w();  // last stage
  Param& lnf_b();
  // The LM head's weight (V/t, C): wte itself when tied on one stage, else the last stage's own.
  Param& head();
  bool has_embedding() const { return wte_ != nullptr; }
  bool has_head() const { return lnf_w_ != nullptr; }

  // The parameters whose gradient a backward task of `block` (of `layer` when >= 0) computes,
  // excluding contributions to a tensor whose gradient another block completes (the tied head
  // on one stage adds into wte, which the embedding's backward completes).
  std::vector<Param*> params_of(strategies::Block block, int layer);
  // Every parameter of the rank, in a fixed order (checkpoints, the optimizer).
  std::vector<Param*> all();

 private:
  std::map<int, LayerParams> layers_;
  std::unique_ptr<Param> wte_, wpe_, lnf_w_, lnf_b_, head_;
};

// Element `index` (row-major in the unsharded tensor) of parameter `name` before scaling: a
// standard normal drawn with splitmix64 and Box-Muller from (seed, fnv1a64(name), index).
float init_normal(std::uint64_t seed, const std::string& name, std::int64_t index);

}  // namespace strata::exec
