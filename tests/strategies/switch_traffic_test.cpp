// The resharding traffic of a strategy switch (strategies/switch_traffic.hpp): nothing moves
// for the same strategy, tp2 -> dp2 on gpt-tiny moves the bytes counted by hand from its
// parameter shapes, the rectangles agree with an element-by-element application of the source
// rule on small plans, and switches between layouts that hold every element once are each
// other's transpose.
#include "strategies/switch_traffic.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "expect_config_error.hpp"
#include "strategies/plan.hpp"
#include "test_models.hpp"

namespace strata::strategies {
namespace {

using testing::gpt;
using testing::lower_on_cluster;
using testing::strategy;

ModelSpec gpt_tiny() {
  ModelSpec m = gpt(4, 64, 4, 256, 32, "gpt-tiny");
  m.dropout = false;
  return m;
}

StrategySpec named(int dp, int tp, int pp, int zero, const std::string& name) {
  StrategySpec s = strategy(dp, tp, pp, 1, 4 * dp);
  s.zero_stage = zero;
  s.name = name;
  return s;
}

// ---------------------------------------------------------------------------------------------
// The oracle: every element a rank holds, enumerated one by one from the Plan's tables, and the
// source rule applied to each element.

// The unsharded row-major index of local element (i, j) of shard `index` of `p`.
std::int64_t global_index(const ParamInfo& p, int index, std::int64_t i, std::int64_t j) {
  const std::int64_t t = p.shard_parts;
  switch (p.shard) {
    case Shard::kReplicated:
      return i * p.cols + j;
    case Shard::kRows:
      return (index * (p.rows / t) + i) * p.cols + j;
    case Shard::kCols:
      return i * p.cols + index * (p.cols / t) + j;
    case Shard::kBlockRows: {
      std::int64_t start = 0;
      for (std::int64_t block : p.row_blocks) {
        if (i < block / t) return (start + index * (block / t) + i) * p.cols + j;
        i -= block / t;
        start += block;
      }
      break;
    }
  }
  ADD_FAILURE() << "element beyond the shard of " << p.init_name();
  return -1;
}

// held[rank]["tensor/state"][unsharded index]: the bytes per element of that rank's buffer,
// 0 where the rank does not hold the element.
using Held = std::vector<std::map<std::string, std::vector<int>>>;

Held held_elements(const Plan& plan) {
  Held out(static_cast<std::size_t>(plan.world_size));
  for (int rank = 0; rank < plan.world_size; ++rank) {
    const Program& prog = plan.program_of(rank);
    for (const BucketInfo& b : prog.buckets) {
      const std::pair<const char*, std::int32_t> states[] = {
          {"param", b.params}, {"master", b.master}, {"adam_m", b.adam_m}, {"adam_v", b.adam_v}};
      for (const auto& [state, id] : states) {
        if (id < 0) continue;
        const Buffer& buf = prog.buffers[id];
        Part part{0, b.elements};
        if (buf.elements() != b.elements) {
          const int n = static_cast<int>(plan.group_ranks(rank, b.dp_group).size());
          part = partition(b.elements, n, plan.group_index(rank, b.dp_group));
        }
        for (std::int32_t m : b.members) {
          const ParamInfo& p = prog.params[m];
          const int index =
              p.shard == Shard::kReplicated ? 0 : plan.group_index(rank, p.shard_group);
          const std::int64_t cols = p.shard == Shard::kCols ? p.cols / p.shard_parts : p.cols;
          std::vector<int>& bytes = out[rank][p.init_name() + "/" + state];
          bytes.resize(static_cast<std::size_t>(p.rows * p.cols));
          for (std::int64_t k = 0; k < p.elements; ++k) {
            const std::int64_t at = p.bucket_offset + k;
            if (at < part.offset || at >= part.offset + part.count) continue;
            bytes[global_index(p, index, k / cols, k % cols)] = dtype_bytes(buf.dtype);
          }
        }
      }
    }
  }
  return out;
}

// bytes[src][dst] by the source rule, element by element.
std::vector<std::vector<double>> oracle_matrix(const Held& from, const Held& to) {
  const int world = static_cast<int>(from.size());
  std::vector<std::vector<double>> bytes(world, std::vector<double>(world, 0.0));
  for (int r = 0; r < world; ++r) {
    for (const auto& [key, elements] : to[r]) {
      std::string source = key;
      bool any = false;
      for (int h = 0; h < world; ++h) any = any || from[h].count(key) > 0;
      if (!any && key.ends_with("/master")) source = key.substr(0, key.find('/')) + "/param";
      for (std::size_t e = 0; e < elements.size(); ++e) {
        if (elements[e] == 0) continue;
        int holder = -1;
        for (int d = 0; d < world && holder < 0; ++d) {
          const int h = (r + d) % world;
          const auto it = from[h].find(source);
          if (it != from[h].end() && it->second[e] > 0) holder = h;
        }
        EXPECT_GE(holder, 0) << key << " element " << e << " is held by no rank";
        if (holder >= 0 && holder != r) bytes[holder][r] += elements[e];
      }
    }
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------

TEST(SwitchTraffic, TheSameStrategyMovesNothing) {
  const ModelSpec m = gpt_tiny();
  for (const StrategySpec& s : {named(2, 1, 1, 0, "dp2"), named(2, 2, 1, 1, "dp2-tp2-zero1"),
                                named(2, 1, 2, 3, "dp2-pp2-zero3"), named(1, 2, 2, 0, "tp2-pp2")}) {
    const Plan plan = lower_on_cluster(m, s);
    const SwitchTraffic t = switch_traffic(plan, plan);
    EXPECT_EQ(t.total_bytes, 0) << s.name;
    EXPECT_TRUE(t.entries.empty()) << s.name;
    EXPECT_EQ(t.max_send_bytes(), 0) << s.name;
  }
}

// gpt-tiny: 4 layers of hidden 64, ffn 256, vocabulary 256, 32 positions, tied embeddings. Under
// tp2 the rank holds half of qkv.w (192 x 64) and qkv.b (192), proj.w (64 x 64), fc1.w
// (256 x 64), fc1.b (256), fc2.w (64 x 256) and of wte (256 x 64); the norms, the biases after
// the row-parallel GEMMs and wpe are whole. dp2 holds everything on both ranks.
TEST(SwitchTraffic, Tp2ToDp2OnGptTinyMovesTheOtherHalfOfTheShardedTensors) {
  const ModelSpec m = gpt_tiny();
  const Plan dp2 = lower_on_cluster(m, named(2, 1, 1, 0, "dp2"));
  const Plan tp2 = lower_on_cluster(m, named(1, 2, 1, 0, "tp2"));
  const double sharded_per_layer = 192 * 64 + 192 + 64 * 64 + 256 * 64 + 256 + 64 * 256;
  const double sharded = 4 * sharded_per_layer + 256 * 64;
  ASSERT_EQ(sharded, 214784);
  // Per element: the bf16 parameter, the fp32 master weight and two fp32 Adam moments.
  const double per_rank = sharded / 2 * (2 + 4 + 4 + 4);
  const SwitchTraffic to_dp = switch_traffic(tp2, dp2);
  ASSERT_EQ(to_dp.entries.size(), 2u);
  EXPECT_EQ(to_dp.entries[0].src, 0);
  EXPECT_EQ(to_dp.entries[0].dst, 1);
  EXPECT_EQ(to_dp.entries[0].bytes, per_rank);
  EXPECT_EQ(to_dp.entries[1].bytes, per_rank);
  EXPECT_EQ(to_dp.total_bytes, 2 * per_rank);
  EXPECT_EQ(to_dp.max_send_bytes(), per_rank);
  EXPECT_EQ(to_dp.max_recv_bytes(), per_rank);
  // dp2 -> tp2: each rank already holds its shards (the source rule prefers the rank itself).
  EXPECT_EQ(switch_traffic(dp2, tp2).total_bytes, 0);
}

// dp, tp, pp, ZeRO 1 and 3, fp32, interleaving: a third of the ordered pairs of 11 layouts on
// 4 ranks, each against the oracle.
TEST(SwitchTraffic, RectanglesEqualTheElementByElementRule) {
  ModelSpec m = gpt(4, 16, 4, 32, 8, "gpt-small");
  m.dropout = false;
  StrategySpec fp32 = named(4, 1, 1, 0, "dp4-fp32");
  fp32.precision = Precision::kFp32;
  StrategySpec interleaved = strategy(1, 1, 2, 1, 4, Schedule::kInterleaved, 2);
  interleaved.name = "pp2-interleaved";
  interleaved.dp = 2;
  interleaved.global_batch_size = 8;
  const std::vector<StrategySpec> strategies = {named(4, 1, 1, 0, "dp4"),
                                                named(4, 1, 1, 1, "dp4-zero1"),
                                                named(2, 2, 1, 0, "dp2-tp2"),
                                                named(2, 2, 1, 1, "dp2-tp2-zero1"),
                                                named(1, 4, 1, 0, "tp4"),
                                                named(2, 1, 2, 3, "dp2-pp2-zero3"),
                                                named(1, 2, 2, 0, "tp2-pp2"),
                                                named(2, 2, 1, 3, "dp2-tp2-zero3"),
                                                named(1, 1, 4, 0, "pp4"),
                                                fp32,
                                                interleaved};
  std::vector<Plan> plans;
  std::vector<Held> held;
  for (const StrategySpec& s : strategies) {
    plans.push_back(lower_on_cluster(m, s));
    held.push_back(held_elements(plans.back()));
  }
  int moving = 0;
  for (std::size_t i = 0; i < plans.size(); ++i) {
    for (std::size_t j = 0; j < plans.size(); ++j) {
      if (i == j || (i + j) % 3 != 0) continue;  // a third of the pairs, both directions
      const SwitchTraffic t = switch_traffic(plans[i], plans[j]);
      const std::vector<std::vector<double>> expected = oracle_matrix(held[i], held[j]);
      EXPECT_EQ(t.matrix(), expected) << strategies[i].name << " -> " << strategies[j].name;
      double sum = 0;
      for (const auto& row : expected) {
        for (double x : row) sum += x;
      }
      EXPECT_EQ(t.total_bytes, sum);
      moving += sum > 0;
    }
  }
  EXPECT_GE(moving, 20);
}

// fp32 parameters are their own master weights: tp2 in fp32 -> dp2 in bf16 moves the same bytes
// as bf16 tp2 -> dp2, the other rank's fp32 parameters serving as its master weights.
TEST(SwitchTraffic, MasterWeightsComeFromFp32Parameters) {
  const ModelSpec m = gpt_tiny();
  StrategySpec fp32 = named(1, 2, 1, 0, "tp2-fp32");
  fp32.precision = Precision::kFp32;
  const Plan a = lower_on_cluster(m, fp32);
  for (const StateHolding& h : state_holdings(a, 0)) {
    EXPECT_NE(h.state, StateKind::kMaster);
    if (h.state == StateKind::kParam) {
      EXPECT_EQ(h.dtype, DType::kFp32);
    }
  }
  const Plan dp2 = lower_on_cluster(m, named(2, 1, 1, 0, "dp2"));
  const Plan tp2 = lower_on_cluster(m, named(1, 2, 1, 0, "tp2"));
  const SwitchTraffic t = switch_traffic(a, dp2);
  EXPECT_EQ(t.total_bytes, switch_traffic(tp2, dp2).total_bytes);
  EXPECT_EQ(t.total_bytes, 214784.0 * 14);
}

// Where every element of every state is held by exactly one rank in both layouts, B -> A undoes
// A -> B: its matrix is the transpose, so the totals are equal.
TEST(SwitchTraffic, LayoutsHoldingEachElementOnceGiveTransposedTraffic) {
  ModelSpec m = gpt(4, 16, 4, 32, 8, "gpt-untied");
  m.dropout = false;
  m.tie_word_embeddings = false;
  const Plan zero3 = lower_on_cluster(m, named(4, 1, 1, 3, "dp4-zero3"));
  const Plan pp4 = lower_on_cluster(m, named(1, 1, 4, 0, "pp4"));
  const Plan mixed = lower_on_cluster(m, named(2, 1, 2, 3, "dp2-pp2-zero3"));
  const std::pair<const Plan*, const Plan*> pairs[] = {
      {&zero3, &pp4}, {&zero3, &mixed}, {&pp4, &mixed}};
  for (const auto& [a, b] : pairs) {
    const SwitchTraffic there = switch_traffic(*a, *b), back = switch_traffic(*b, *a);
    EXPECT_GT(there.total_bytes, 0);
    EXPECT_EQ(there.total_bytes, back.total_bytes);
    std::vector<std::vector<double>> t = back.matrix();
    for (std::size_t i = 0; i < t.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) std::swap(t[i][j], t[j][i]);
    }
    EXPECT_EQ(there.matrix(), t) << a->strategy.name << " -> " << b->strategy.name;
  }
}

TEST(SwitchTraffic, ZeroRangesAreAtMostThreeRectanglesPerBlock) {
  const ModelSpec m = gpt(2, 16, 4, 32, 8, "gpt-small");
  const Plan plan = lower_on_cluster(m, named(4, 2, 1, 1, "dp4-tp2-zero1"));
  int cut = 0;
  for (int rank = 0; rank < plan.world_size; ++rank) {
    for (const StateHolding& h : state_holdings(plan, rank)) {
      const bool qkv = h.tensor.ends_with("qkv.w") || h.tensor.ends_with("qkv.b");
      const std::size_t blocks = qkv ? 3 : 1;
      EXPECT_LE(h.rects.size(), 3 * blocks) << h.tensor;
      std::int64_t elements = 0;
      for (const Rect& r : h.rects) {
        EXPECT_FALSE(r.empty());
        EXPECT_LE(r.r1, h.rows);
        EXPECT_LE(r.c1, h.cols);
        elements += r.elements();
      }
      cut += h.state != StateKind::kParam && elements < h.rows * h.cols / 2;
    }
  }
  EXPECT_GT(cut, 0);
}

// Mixture of experts: each expert is a piece of its own, named by its global index. A GPT-shaped
// MoE with 4 experts of width 48 in layers 1..3: under ep2 rank 1 holds experts 2 and 3; ep1
// holds all four, so each rank receives the other two experts' fc1 (48 x 64) and fc2 (64 x 48)
// in each of the 3 MoE layers, with their bf16 parameters, master weights and Adam moments.
TEST(SwitchTraffic, ExpertsMoveAsPiecesOfTheirOwn) {
  ModelSpec m = gpt(4, 64, 4, 256, 32, "moe-test");
  m.moe.num_experts = 4;
  m.moe.num_experts_per_tok = 2;
  m.moe.moe_intermediate_size = 48;
  m.moe.first_k_dense_replace = 1;
  StrategySpec ep2 = named(2, 1, 1, 0, "dp2-ep2");
  ep2.ep = 2;
  const Plan a = lower_on_cluster(m, ep2);
  const Plan b = lower_on_cluster(m, named(2, 1, 1, 0, "dp2"));
  int experts = 0;
  for (const StateHolding& h : state_holdings(a, 1)) {
    if (h.state != StateKind::kParam || !h.tensor.starts_with("layers.1.experts.")) continue;
    EXPECT_TRUE(h.tensor.starts_with("layers.1.experts.2.") ||
                h.tensor.starts_with("layers.1.experts.3."))
        << h.tensor;
    ++experts;
  }
  EXPECT_EQ(experts, 4);  // fc1 and fc2 of two experts
  const double per_rank = 3 * 2 * (48 * 64 + 64 * 48) * (2 + 4 + 4 + 4);
  const SwitchTraffic t = switch_traffic(a, b);
  EXPECT_EQ(t.total_bytes, 2 * per_rank);
  EXPECT_EQ(t.max_recv_bytes(), per_rank);
  EXPECT_EQ(switch_traffic(b, a).total_bytes, 0);  // ep1 -> ep2: every rank holds its experts
  EXPECT_EQ(switch_traffic(a, a).total_bytes, 0);
}

TEST(SwitchTraffic, DifferentWorldsAreRefused) {
  const ModelSpec m = gpt_tiny();
  const Plan a = lower_on_cluster(m, named(2, 1, 1, 0, "dp2"));
  const Plan b = lower_on_cluster(m, named(4, 1, 1, 0, "dp4"));
  testing::expect_config_error([&] { switch_traffic(a, b); },
                               {"strategy 'dp2' -> 'dp4'", "the worlds differ (2 and 4 ranks)"});
}

}  // namespace
}  // namespace strata::strategies
