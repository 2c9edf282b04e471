// Mixture-of-experts layers lowered with expert parallelism: the Plan's work equals the
// accounting, the all-to-alls carry the dispatched rows over the expert-parallel group, the
// experts' gradients reduce over their own group, the dispatch sizes follow the routing, and
// what is not lowered yet is refused by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "expect_config_error.hpp"
#include "strategies/accounting.hpp"
#include "strategies/plan.hpp"
#include "test_models.hpp"

namespace strata::strategies {
namespace {

using testing::cluster;
using testing::expect_config_error;
using testing::llama;
using testing::strategy;

// A small Llama-style MoE (or GPT-style: GELU, biases, LayerNorm): 4 layers (the first dense),
// 4 experts of width 48, top-2, and `shared` shared experts of width 32.
ModelSpec moe_model(bool gpt_shape = false, int shared = 0) {
  ModelSpec m = gpt_shape ? testing::gpt(4, 64, 4, 256, 32) : llama(4, 64, 4, 2, 128, 256, 32);
  m.name = "moe-test";
  m.moe.num_experts = 4;
  m.moe.num_experts_per_tok = 2;
  m.moe.moe_intermediate_size = 48;
  m.moe.first_k_dense_replace = 1;
  m.moe.router_aux_loss_coef = 0.01;
  m.moe.n_shared_experts = shared;
  m.moe.shared_expert_intermediate_size = shared > 0 ? 32 : 0;
  return m;
}

StrategySpec moe_strategy(int dp, int tp, int pp, int ep, int expert_tp) {
  StrategySpec s = strategy(dp, tp, pp, 2, 4 * dp);
  s.ep = ep;
  s.expert_tp = expert_tp;
  s.sequence_parallel = tp > 1;
  return s;
}

struct Case {
  int dp, tp, pp, ep, expert_tp;
};
const std::vector<Case> kCases = {
    {2, 1, 1, 2, 1}, {4, 1, 2, 4, 1}, {4, 2, 1, 2, 2}, {2, 2, 2, 2, 1}, {4, 2, 1, 4, 1}};

Plan lower_case(const Case& k, const ModelSpec& m = moe_model()) {
  const StrategySpec s = moe_strategy(k.dp, k.tp, k.pp, k.ep, k.expert_tp);
  return lower(m, cluster(2, 8), s, k.dp * k.tp * k.pp);
}

std::string name(const Case& k) {
  return "dp" + std::to_string(k.dp) + " tp" + std::to_string(k.tp) + " pp" + std::to_string(k.pp) +
         " ep" + std::to_string(k.ep) + " expert_tp" + std::to_string(k.expert_tp);
}

// The Plan's model FLOPs summed over its tasks and ranks (recompute excluded) match the
// accounting's.
void expect_accounting_flops(const Plan& plan) {
  double flops = 0;
  for (const Program& p : plan.programs) {
    for (const Task& t : p.tasks) {
      if (t.kind == TaskKind::kCompute && t.phase != Phase::kRecompute) flops += t.flops;
    }
  }
  const double expected = to_double(step_flops(plan.model, plan.strategy).model);
  EXPECT_NEAR(flops * plan.world_size / plan.pp, expected, 1e-9 * expected);
}

// Uniform dropless routing sends every rank exactly rows x k rows: the Plan's FLOPs summed over
// its tasks are the accounting's, with and without full recompute.
TEST(MoeLower, PlanFlopsEqualTheAccounting) {
  for (const Case& k : kCases) {
    for (const Recompute r : {Recompute::kNone, Recompute::kFull}) {
      SCOPED_TRACE(name(k));
      const ModelSpec m = moe_model(r == Recompute::kFull, r == Recompute::kFull ? 0 : 2);
      StrategySpec s = moe_strategy(k.dp, k.tp, k.pp, k.ep, k.expert_tp);
      s.recompute = r;
      const Plan plan = lower(m, cluster(2, 8), s, k.dp * k.tp * k.pp);
      double model = 0, hardware = 0;
      for (const Program& p : plan.programs) {
        for (const Task& t : p.tasks) {
          if (t.kind != TaskKind::kCompute) continue;
          hardware += t.flops;
          if (t.phase != Phase::kRecompute) model += t.flops;
        }
      }
      const double ranks = static_cast<double>(plan.world_size) / plan.pp;
      const StepFlops expected = step_flops(m, s);
      EXPECT_NEAR(model * ranks, to_double(expected.model), 1e-9 * to_double(expected.model));
      EXPECT_NEAR(hardware * ranks, to_double(expected.hardware),
                  1e-9 * to_double(expected.hardware));
      EXPECT_TRUE(plan.totals.flops.model == expected.model);
    }
  }
}

// Each rank holds the router, its num_experts / ep experts (split over expert_tp) and the
// attention of an MoE layer: the accounting's parameters per rank.
TEST(MoeLower, ParametersPerRankAreTheAccountings) {
  for (const Case& k : kCases) {
    for (const bool gpt_shape : {false, true}) {
      SCOPED_TRACE(name(k) + (gpt_shape ? " gpt" : " llama"));
      // With shared experts: split over tp like the dense MLP, with the model's biases.
      const Plan plan = lower_case(k, moe_model(gpt_shape, 2));
      const ModelSpec& m = plan.model;
      std::map<int, double> per_layer;
      for (const Program& p : plan.programs) {
        for (const ParamInfo& pi : p.params) {
          if (pi.layer >= 0) per_layer[pi.layer] += static_cast<double>(pi.elements);
        }
      }
      for (int l = 0; l < m.num_hidden_layers; ++l) {
        const double expected = m.is_moe_layer(l)
                                    ? moe_layer_params_per_rank(m, k.tp, k.ep, k.expert_tp)
                                    : layer_params_per_rank(m, k.tp);
        EXPECT_DOUBLE_EQ(per_layer[l], expected) << "layer " << l;
      }
    }
  }
}

// Per MoE layer and micro-batch: the forward's dispatch and combine, and the backward's in
// reverse, on the ep stream over the expert-parallel group, each moving rows x k rows of h
// 16-bit values (uniform routing).
TEST(MoeLower, AllToAllsCarryTheDispatchedRows) {
  for (const Case& k : kCases) {
    SCOPED_TRACE(name(k));
    const Plan plan = lower_case(k);
    const ModelSpec& m = plan.model;
    const double rows = 2.0 * m.seq_length / k.tp;  // micro-batch 2, sp splits rows over tp
    for (const Program& p : plan.programs) {
      std::map<std::pair<int, int>, std::vector<const Task*>> by_layer_mb;
      for (const Task& t : p.tasks) {
        if (t.collective != CollectiveKind::kAllToAll) continue;
        EXPECT_EQ(t.stream, Stream::kEp);
        EXPECT_EQ(t.purpose, Purpose::kEp);
        EXPECT_EQ(t.group.kind, GroupKind::kEp);
        EXPECT_TRUE(m.is_moe_layer(t.layer));
        EXPECT_DOUBLE_EQ(t.bytes, rows * 2 * m.hidden_size * 2);
        by_layer_mb[{t.layer, t.micro_batch}].push_back(&t);
      }
      int moe_layers = 0;
      for (int l = plan.stage_first_layer[p.stage]; l < plan.stage_first_layer[p.stage + 1]; ++l) {
        moe_layers += m.is_moe_layer(l) ? 1 : 0;
      }
      EXPECT_EQ(static_cast<int>(by_layer_mb.size()), moe_layers * plan.num_micro_batches);
      for (const auto& [key, tasks] : by_layer_mb) {
        ASSERT_EQ(tasks.size(), 4u);
        EXPECT_EQ(tasks[0]->phase, Phase::kForward);
        EXPECT_EQ(tasks[0]->tag, 1u);  // dispatch
        EXPECT_EQ(tasks[1]->tag, 2u);  // combine
        EXPECT_EQ(tasks[2]->phase, Phase::kBackward);
        EXPECT_EQ(tasks[2]->tag, 1u);  // the combine's gradient goes the dispatch's way
        EXPECT_EQ(tasks[3]->tag, 2u);
      }
    }
    // The group: the ranks with the same tp, pp and expert-data-parallel index.
    for (int r = 0; r < plan.world_size; ++r) {
      const std::vector<int> group = plan.group_ranks(r, {GroupKind::kEp, 0, 0});
      EXPECT_EQ(static_cast<int>(group.size()), k.ep);
      for (int q : group) {
        EXPECT_EQ(plan.grid().coord(q, Dim::kTp), plan.grid().coord(r, Dim::kTp));
        EXPECT_EQ(plan.grid().coord(q, Dim::kPp), plan.grid().coord(r, Dim::kPp));
      }
    }
  }
}

// Without expert parallelism a rank holds every expert: no all-to-all, the permuted rows feed
// the experts directly, and the work is the same.
TEST(MoeLower, WithoutExpertParallelismNothingIsExchanged) {
  const ModelSpec m = moe_model();
  const StrategySpec s = moe_strategy(2, 1, 1, 1, 1);
  const Plan plan = lower(m, cluster(1, 8), s, 2);
  for (const Task& t : plan.programs[0].tasks) {
    EXPECT_NE(t.collective, CollectiveKind::kAllToAll);
  }
  expect_accounting_flops(plan);
}

// The experts' gradients live in buckets of their own, reduced (and ZeRO-partitioned) over the
// ranks holding the same experts: dp / ep of them, times tp when each tp rank holds whole
// experts (expert_tp 1); the rest of the layer over dp.
TEST(MoeLower, ExpertGradientsReduceOverTheExpertDataParallelGroup) {
  for (const int zero : {0, 1, 2}) {
    for (const Case& k : kCases) {
      SCOPED_TRACE(name(k) + " zero " + std::to_string(zero));
      const ModelSpec m = moe_model();
      StrategySpec s = moe_strategy(k.dp, k.tp, k.pp, k.ep, k.expert_tp);
      s.zero_stage = zero;
      const Plan plan = lower(m, cluster(2, 8), s, k.dp * k.tp * k.pp);
      const int across = k.expert_tp == 1 ? k.tp : 1;
      const int size = k.dp / k.ep * across;
      for (int r = 0; r < plan.world_size; ++r) {
        const std::vector<int> g = plan.group_ranks(r, {GroupKind::kExpertDp, 0, 0});
        EXPECT_EQ(static_cast<int>(g.size()), size);
        for (int q : g) {
          EXPECT_EQ(plan.grid().coord(q, Dim::kEp), plan.grid().coord(r, Dim::kEp));
          if (across == 1) {
            EXPECT_EQ(plan.grid().coord(q, Dim::kTp), plan.grid().coord(r, Dim::kTp));
          }
        }
      }
      int expert_buckets = 0;
      for (const Program& p : plan.programs) {
        for (const BucketInfo& b : p.buckets) {
          bool experts = false, others = false;
          for (int i : b.members) {
            const TensorKind kind = p.params[i].kind;
            const bool e =
                kind == TensorKind::kExpertFc1Weight || kind == TensorKind::kExpertFc2Weight;
            (e ? experts : others) = true;
          }
          EXPECT_FALSE(experts && others) << "a bucket mixes experts with other parameters";
          if (!experts) continue;
          ++expert_buckets;
          if (size > 1) {
            EXPECT_EQ(b.dp_group.kind, GroupKind::kExpertDp);
            EXPECT_EQ(b.zero_stage, zero);
          } else {
            EXPECT_EQ(b.zero_stage, 0);  // one rank: nothing to reduce or partition
          }
        }
        // An expert bucket's reduction runs over its group, as often as the other buckets'.
        for (const Task& t : p.tasks) {
          if (t.kind == TaskKind::kCollective && t.group.kind == GroupKind::kExpertDp) {
            EXPECT_GT(size, 1);
            EXPECT_TRUE(t.purpose == Purpose::kDp || t.purpose == Purpose::kZero);
          }
        }
      }
      EXPECT_GT(expert_buckets, 0);
    }
  }
}

// Context parallelism: each rank routes its 1/cp of the tokens, and the expert group is drawn
// from dp x cp as Megatron-Core draws it (cp first under tp-cp-ep-dp-pp): with dp = cp = ep = 2
// the ep peers are the cp peers and the ranks holding the same experts (which sum their
// gradients) the dp peers; with ep = 4 every data rank holds other experts. The work is still
// the accounting's.
TEST(MoeLower, ContextParallelRoutesTheRanksShareOfTheSequence) {
  const ModelSpec m = moe_model();
  for (const int ep : {2, 4}) {
    SCOPED_TRACE("ep " + std::to_string(ep));
    StrategySpec s = moe_strategy(2, 1, 1, ep, 1);
    s.cp = 2;
    s.attention = AttentionImpl::kFused;
    const Plan plan = lower(m, cluster(1, 8), s, 4);
    int all_to_alls = 0;
    for (const Task& t : plan.programs[0].tasks) {
      if (t.collective == CollectiveKind::kAllToAll) {
        EXPECT_DOUBLE_EQ(t.bytes, 2.0 * m.seq_length / 2 * 2 * m.hidden_size * 2);
        ++all_to_alls;
      }
    }
    EXPECT_GT(all_to_alls, 0);
    expect_accounting_flops(plan);
    for (int r = 0; r < plan.world_size; ++r) {
      const std::vector<int> ep_group = plan.group_ranks(r, {GroupKind::kEp, 0, 0});
      const std::vector<int> g = plan.group_ranks(r, {GroupKind::kExpertDp, 0, 0});
      ASSERT_EQ(static_cast<int>(ep_group.size()), ep);
      ASSERT_EQ(static_cast<int>(g.size()), 4 / ep);  // dp cp / ep
      for (int q : ep_group) {
        if (ep == 2) {
          EXPECT_EQ(plan.grid().coord(q, Dim::kDp), plan.grid().coord(r, Dim::kDp));
        }
      }
      for (int q : g) {
        EXPECT_EQ(plan.grid().coord(q, Dim::kEp), plan.grid().coord(r, Dim::kEp));
        EXPECT_EQ(plan.grid().coord(q, Dim::kCp), plan.grid().coord(r, Dim::kCp));
      }
    }
  }
}

// The GPT-shaped MoE model with a shared expert under ZB-H1: dp 2, pp 2, ep 2.
Plan zero_bubble_plan() {
  StrategySpec s = moe_strategy(2, 1, 2, 2, 1);
  s.global_batch_size = 16;
  s.schedule = Schedule::kZbH1;
  return lower(moe_model(true, 1), cluster(1, 8), s, 4);
}

// Zero-bubble schedules defer the experts' and the router's weight gradients to the W units,
// as a dense block's: the B tasks hold no weight-gradient GEMM, the work is unchanged.
TEST(MoeLower, ZeroBubbleDefersTheExpertsWeightGradients) {
  const Plan plan = zero_bubble_plan();
  int deferred = 0;
  for (const Program& p : plan.programs) {
    for (const Task& t : p.tasks) {
      if (t.kind != TaskKind::kCompute) continue;
      if (t.block != Block::kMoeExperts && t.block != Block::kMoeRouter) continue;
      if (t.phase != Phase::kBackward) continue;
      bool weight = false, input = false;
      for (std::uint32_t i = 0; i < t.op_count; ++i) {
        const OpKind k = p.ops[t.op_begin + i].kind;
        if (k == OpKind::kGroupedLinearBwdWeight || k == OpKind::kLinearBwdWeight) weight = true;
        if (k == OpKind::kGroupedLinearBwdData || k == OpKind::kLinearBwdData) input = true;
      }
      EXPECT_FALSE(weight && input) << "a task mixes B and W ops";
      if (weight) ++deferred;
    }
  }
  // Per stage: one MoE layer of each stage's two (layer 0 is dense) x micro-batches x 2 tasks.
  EXPECT_EQ(deferred, 3 * plan.num_micro_batches * 2);
  expect_accounting_flops(plan);
}

// With shared experts, the router's backward adds their input gradient into its own data
// gradient (a grad_accumulate of another task's buffer): under a zero-bubble schedule in the B
// unit, before the norm's backward reads it, not deferred with the weight gradients. Every
// other accumulation adds what its own task computed.
TEST(MoeLower, ZeroBubbleAddsTheSharedExpertsInputGradientInTheBUnit) {
  const Plan plan = zero_bubble_plan();
  int added = 0;
  for (const Program& p : plan.programs) {
    for (const Task& t : p.tasks) {
      if (t.kind != TaskKind::kCompute || t.phase != Phase::kBackward) continue;
      std::set<std::int32_t> written;
      std::int32_t dx = -1;  // the router's data gradient
      for (std::uint32_t i = 0; i < t.op_count; ++i) {
        const Op& op = p.ops[t.op_begin + i];
        for (int j = 0; op.kind == OpKind::kGradAccumulate && j < op.n_in; ++j) {
          if (written.count(p.input(op, j)) > 0) continue;
          EXPECT_EQ(t.block, Block::kMoeRouter) << p.buffer_name(p.input(op, j));
          EXPECT_EQ(p.output(op, j), dx) << "not in the task of the router's data gradient";
          ++added;
        }
        if (op.kind == OpKind::kLinearBwdData && t.block == Block::kMoeRouter) {
          dx = p.output(op, 0);
        }
        for (int j = 0; j < op.n_out; ++j) written.insert(p.output(op, j));
      }
    }
  }
  EXPECT_EQ(added, 3 * plan.num_micro_batches);  // 3 MoE layers over the two stages
  expect_accounting_flops(plan);
}

// The dispatch by hand: 100 rows, top-2 of 4 experts, ep 2.
TEST(MoeLower, DispatchFollowsTheRouting) {
  ModelSpec m = moe_model();
  StrategySpec s = moe_strategy(2, 1, 1, 2, 1);
  ExpertDispatch d = expert_dispatch(m, s, 100);
  EXPECT_EQ(d.capacity, 0);
  EXPECT_EQ(d.send_rows, 200);
  EXPECT_EQ(d.recv_rows, 200);
  EXPECT_DOUBLE_EQ(d.shares[0], 0.5);
  // Zipf with exponent 1: experts get 1, 1/2, 1/3, 1/4 (/ 25/12): rank 0 holds experts 0 and
  // 1, 0.72 of the rows; it receives 2 x 0.72 x 200 = 288 of them.
  s.expert_routing.kind = ExpertRoutingKind::kZipf;
  s.expert_routing.zipf_exponent = 1.0;
  d = expert_dispatch(m, s, 100);
  EXPECT_EQ(d.send_rows, 200);
  EXPECT_NEAR(d.shares[0], 0.72, 1e-12);
  EXPECT_NEAR(d.shares[1], 0.28, 1e-12);
  EXPECT_EQ(d.recv_rows, 288);
  // Capacity factor 1: 50 rows per expert; the experts would get 96, 48, 32 and 24: 154 kept,
  // 98 of them to rank 0, which receives 196.
  s.expert_capacity_factor = 1.0;
  d = expert_dispatch(m, s, 100);
  EXPECT_EQ(d.capacity, 50);
  EXPECT_EQ(d.send_rows, 154);
  EXPECT_NEAR(d.shares[0], 98.0 / 154, 1e-12);
  EXPECT_EQ(d.recv_rows, 196);
}

// Imbalanced routing: the Plan sizes the experts for the most loaded rank (its received rows),
// carries the shares for the simulator, and keeps the model FLOPs the routed tokens'.
TEST(MoeLower, ImbalancedRoutingSizesTheMostLoadedRank) {
  const ModelSpec m = moe_model();
  StrategySpec s = moe_strategy(2, 1, 1, 2, 1);
  s.expert_routing.kind = ExpertRoutingKind::kZipf;
  s.expert_routing.zipf_exponent = 1.0;
  const Plan plan = lower(m, cluster(1, 8), s, 2);
  ASSERT_EQ(plan.expert_shares.size(), 2u);
  EXPECT_NEAR(plan.expert_shares[0], 0.72, 1e-12);
  const std::int64_t rows = 2 * m.seq_length;  // micro-batch 2
  const ExpertDispatch d = expert_dispatch(m, s, rows);
  bool found = false;
  for (const Buffer& b : plan.programs[0].buffers) {
    if (b.kind != TensorKind::kMoeReceived || b.grad) continue;
    EXPECT_EQ(b.shape[0], d.recv_rows);
    EXPECT_EQ(b.shape[1], m.hidden_size);
    found = true;
  }
  EXPECT_TRUE(found);
  EXPECT_TRUE(plan.totals.flops.model == step_flops(m, s).model);
  EXPECT_TRUE(plan.totals.flops.hardware == plan.totals.flops.model);
}

// What is validated but not lowered yet is refused, naming the field and value.
TEST(MoeLower, RefusesWhatIsNotLoweredYet) {
  const auto refused = [](ModelSpec m, StrategySpec s, int world,
                          const std::vector<std::string>& parts) {
    expect_config_error([&] { lower(m, cluster(2, 8), s, world); }, parts);
  };
  ModelSpec mha = moe_model();
  mha.num_key_value_heads = 4;
  StrategySpec s = moe_strategy(2, 4, 1, 2, 2);
  refused(mha, s, 8, {"strategy.expert_tp = 2", "1 or tp (4)"});
  s = moe_strategy(2, 2, 1, 2, 2);
  s.sequence_parallel = false;
  refused(moe_model(), s, 4, {"strategy.sequence_parallel", "needs sequence_parallel true"});
  s = moe_strategy(2, 1, 1, 2, 1);
  s.zero_stage = 3;
  refused(moe_model(), s, 2, {"strategy.zero_stage = 3", "ZeRO-3", "not lowered yet"});
  s = moe_strategy(2, 1, 1, 2, 1);
  s.tp_comm_overlap = true;
  s.tp = 2;
  s.sequence_parallel = true;
  refused(moe_model(), s, 4, {"strategy.tp_comm_overlap = true", "not lowered yet"});
}

}  // namespace
}  // namespace strata::strategies
