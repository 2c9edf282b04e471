// Parameter shards and their seeded initialisation; see params.hpp for the layout.
#include "executor/params.hpp"

#include <cmath>

#include "common/error.hpp"
#include "common/hash.hpp"

namespace strata::exec {
namespace {

using strategies::Block;
using strategies::Dim;


// A uniform double in (0, 1] from 53 random bits.
double unit(std::uint64_t bits) { return (static_cast<double>(bits >> 11) + 1.0) * 0x1.0p-53; }

// The unsharded row-major indices a shard holds, in the shard's own row-major order.
std::vector<std::int64_t> shard_indices(std::int64_t rows, std::int64_t cols, Shard shard, int t,
                                        int r) {
  std::vector<std::int64_t> out;
  auto rows_range = [&](std::int64_t first, std::int64_t count) {
    for (std::int64_t i = first; i < first + count; ++i) {
      for (std::int64_t j = 0; j < cols; ++j) out.push_back(i * cols + j);
    }
  };
  switch (shard) {
    case Shard::kReplicated:
      rows_range(0, rows);
      break;
    case Shard::kRows:
      rows_range(r * (rows / t), rows / t);
      break;
    case Shard::kQkvRows:
      for (int p = 0; p < 3; ++p) rows_range(p * (rows / 3) + r * (rows / 3 / t), rows / 3 / t);
      break;
    case Shard::kCols:
      for (std::int64_t i = 0; i < rows; ++i) {
        for (std::int64_t j = r * (cols / t); j < (r + 1) * (cols / t); ++j) {
          out.push_back(i * cols + j);
        }
      }
      break;
  }
  return out;
}

enum class Init { kNormal, kZero, kOne };

Param make_param(const std::string& name, std::int64_t rows, std::int64_t cols, Shard shard,
                 Init init, double std_dev, std::uint64_t seed, int t, int r) {
  Param p;
  p.name = name;
  p.rows = rows;
  p.cols = cols;
  p.shard = shard;
  const auto idx = shard_indices(rows, cols, shard, t, r);
  p.value.resize(idx.size());
  for (std::size_t k = 0; k < idx.size(); ++k) {
    switch (init) {
      case Init::kNormal:
        p.value[k] = static_cast<float>(std_dev * init_normal(seed, name, idx[k]));
        break;
      case Init::kZero:
        p.value[k] = 0.0f;
        break;
      case Init::kOne:
        p.value[k] = 1.0f;
        break;
    }
  }
  p.grad.assign(p.value.size(), 0.0f);
  p.adam_m.assign(p.value.size(), 0.0f);
  p.adam_v.assign(p.value.size(), 0.0f);
  return p;
}

}  // namespace

float init_normal(std::uint64_t seed, const std::string& name, std::int64_t index) {
  const std::uint64_t key = splitmix64(seed ^ fnv1a64(name));
  const double u1 = unit(splitmix64(key + 2 * static_cast<std::uint64_t>(index)));
  const double u2 = unit(splitmix64(key + 2 * static_cast<std::uint64_t>(index) + 1));
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

std::vector<Param*> LayerParams::in_backward_order() {
  return {&fc2_w, &fc2_b, &fc1_w, &fc1_b, &ln2_w, &ln2_b,
          &proj_w, &proj_b, &qkv_w, &qkv_b, &ln1_w, &ln1_b};
}

std::vector<Param*> LayerParams::all() {
  return {&ln1_w, &ln1_b, &qkv_w, &qkv_b, &proj_w, &proj_b,
          &ln2_w, &ln2_b, &fc1_w, &fc1_b, &fc2_w, &fc2_b};
}

RankParams::RankParams(const strategies::Plan& plan, int rank, std::uint64_t seed) {
  const auto& m = plan.model;
  const auto& s = plan.strategy;
  const int t = s.tp, r = plan.grid().coord(rank, Dim::kTp);
  const int stage = plan.stage_of(rank);
  const std::int64_t C = m.hidden_size, F = m.intermediate_size, V = m.vocab_size;
  const double std_dev = 0.02, out_std = 0.02 / std::sqrt(2.0 * m.num_hidden_layers);
  auto normal = [&](const std::string& n, std::int64_t rows, std::int64_t cols, Shard sh,
                    double sd) { return make_param(n, rows, cols, sh, Init::kNormal, sd, seed, t, r); };
  auto fill = [&](const std::string& n, std::int64_t rows, Shard sh, Init init) {
    return make_param(n, rows, 1, sh, init, 0, seed, t, r);
  };
  const int vstages = s.pp * s.virtual_stages;
  for (int c = 0; c < s.virtual_stages; ++c) {
    const int vs = c * s.pp + stage;
    for (int l = plan.stage_first_layer[vs]; l < plan.stage_first_layer[vs + 1]; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      LayerParams lp;
      lp.ln1_w = fill(p + "ln1.w", C, Shard::kReplicated, Init::kOne);
      lp.ln1_b = fill(p + "ln1.b", C, Shard::kReplicated, Init::kZero);
      lp.qkv_w = normal(p + "qkv.w", 3 * C, C, Shard::kQkvRows, std_dev);
      lp.qkv_b = fill(p + "qkv.b", 3 * C, Shard::kQkvRows, Init::kZero);
      lp.proj_w = normal(p + "proj.w", C, C, Shard::kCols, out_std);
      lp.proj_b = fill(p + "proj.b", C, Shard::kReplicated, Init::kZero);
      lp.ln2_w = fill(p + "ln2.w", C, Shard::kReplicated, Init::kOne);
      lp.ln2_b = fill(p + "ln2.b", C, Shard::kReplicated, Init::kZero);
      lp.fc1_w = normal(p + "fc1.w", F, C, Shard::kRows, std_dev);
      lp.fc1_b = fill(p + "fc1.b", F, Shard::kRows, Init::kZero);
      lp.fc2_w = normal(p + "fc2.w", C, F, Shard::kCols, out_std);
      lp.fc2_b = fill(p + "fc2.b", C, Shard::kReplicated, Init::kZero);
      for (Param* q : lp.all()) q->layer = l;
      layers_.emplace(l, std::move(lp));
    }
    if (vs == 0) {
      wte_ = std::make_unique<Param>(normal("wte", V, C, Shard::kRows, std_dev));
      wpe_ = std::make_unique<Param>(normal("wpe", m.seq_length, C, Shard::kReplicated, std_dev));
    }
    if (vs == vstages - 1) {
      lnf_w_ = std::make_unique<Param>(fill("lnf.w", C, Shard::kReplicated, Init::kOne));
      lnf_b_ = std::make_unique<Param>(fill("lnf.b", C, Shard::kReplicated, Init::kZero));
      if (!m.tie_word_embeddings) {
        head_ = std::make_unique<Param>(normal("lm_head.w", V, C, Shard::kRows, std_dev));
      } else if (vs != 0) {
        // Megatron's copy of the tied embedding on the last stage: same values as "wte".
        head_ = std::make_unique<Param>(normal("wte", V, C, Shard::kRows, std_dev));
        head_->name = "wte.head_copy";
      }
    }
  }
}

LayerParams& RankParams::layer(int l) {
  auto it = layers_.find(l);
  STRATA_CHECK(it != layers_.end(), "layer " + std::to_string(l) + " is not on this rank");
  return it->second;
}

Param& RankParams::wte() {
  STRATA_CHECK(wte_ != nullptr, "wte is not on this rank");
  return *wte_;
}
Param& RankParams::wpe() {
  STRATA_CHECK(wpe_ != nullptr, "wpe is not on this rank");
  return *wpe_;
}
Param& RankParams::lnf_w() {
  STRATA_CHECK(lnf_w_ != nullptr, "lnf is not on this rank");
  return *lnf_w_;
}
Param& RankParams::lnf_b() {
  STRATA_CHECK(lnf_b_ != nullptr, "lnf is not on this rank");
  return *lnf_b_;
}
Param& RankParams::head() {
  if (head_) return *head_;
  STRATA_CHECK(wte_ != nullptr && lnf_w_ != nullptr, "the LM head is not on this rank");
  return *wte_;
}

std::vector<Param*> RankParams::params_of(Block block, int layer) {
  switch (block) {
    case Block::kEmbedding:
      return {&wte(), &wpe()};
    case Block::kFinalNorm:
      return {&lnf_w(), &lnf_b()};
    case Block::kLmHead:
      if (head_) return {head_.get()};
      return {};
    case Block::kAttnNorm:
      return {&this->layer(layer).ln1_w, &this->layer(layer).ln1_b};
    case Block::kAttnQkv:
      return {&this->layer(layer).qkv_w, &this->layer(layer).qkv_b};
    case Block::kAttnOut:
      return {&this->layer(layer).proj_w, &this->layer(layer).proj_b};
    case Block::kMlpNorm:
      return {&this->layer(layer).ln2_w, &this->layer(layer).ln2_b};
    case Block::kMlpFc1:
      return {&this->layer(layer).fc1_w, &this->layer(layer).fc1_b};
    case Block::kMlpFc2:
      return {&this->layer(layer).fc2_w, &this->layer(layer).fc2_b};
    default:
      return {};
  }
}

std::vector<Param*> RankParams::all() {
  std::vector<Param*> out;
  if (wte_) out.push_back(wte_.get());
  if (wpe_) out.push_back(wpe_.get());
  for (auto& [l, lp] : layers_) {
    for (Param* p : lp.all()) out.push_back(p);
  }
  if (lnf_w_) out.push_back(lnf_w_.get());
  if (lnf_b_) out.push_back(lnf_b_.get());
  if (head_) out.push_back(head_.get());
  return out;
}

}  // namespace strata::exec
