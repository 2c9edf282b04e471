// A mixture-of-experts step simulated end to end: the expert-parallel all-to-alls carry the
// routing's byte matrices (uneven under Zipf-like routing, which also sizes the most loaded
// rank's experts), so imbalance slows the step; folding data-parallel replicas (the default)
// gives the replay of every rank. Every simulation runs in a forked child.
#include <gtest/gtest.h>

#include <vector>

#include "profiler/roofline.hpp"
#include "results/report.hpp"
#include "sim/simulate.hpp"
#include "sim_test_util.hpp"
#include "tests/strategies/test_models.hpp"

namespace strata::sim {
namespace {

using strategies::ExpertRoutingKind;

// 4 GELU layers of h 512 (every one MoE: 8 experts of width 2048, top-2) over 8 GPUs of two
// 4-GPU nodes, dp 8 with ep 8: one expert per rank, so the all-to-alls cross the network.
strategies::Plan moe_plan(ExpertRoutingKind routing) {
  strategies::ModelSpec m = strategies::testing::gpt(4, 512, 8, 1024, 512);
  m.dropout = false;
  m.moe.num_experts = 8;
  m.moe.num_experts_per_tok = 2;
  m.moe.moe_intermediate_size = 2048;
  strategies::StrategySpec s = strategies::testing::strategy(8, 1, 1, 2, 32);
  s.ep = 8;
  s.precision = strategies::Precision::kBf16;
  s.attention = strategies::AttentionImpl::kFused;
  s.expert_routing.kind = routing;
  s.expert_routing.zipf_exponent = 1.0;
  return strategies::lower(m, strategies::testing::cluster(2, 4), s, 8);
}

std::vector<double> step(const strategies::Plan& plan, bool exact) {
  const profiler::RooflineCostModel cost(
      profiler::load_efficiencies(profiler::default_efficiencies_path()));
  SimOptions o;
  o.fold_data_parallel = o.fold_tensor_parallel = !exact;
  o.bundle_symmetric_flows = o.aggregate_ring_steps = !exact;
  return testing::in_child([&] {
    const results::Report r = simulate(plan, cost, o);
    std::vector<double> out{r.step_time_s};
    for (const auto& rank : r.ranks) out.push_back(rank.communication_s);
    return out;
  });
}

TEST(MoeStep, ImbalancedRoutingSlowsTheStep) {
  const std::vector<double> uniform = step(moe_plan(ExpertRoutingKind::kUniform), false);
  const std::vector<double> zipf = step(moe_plan(ExpertRoutingKind::kZipf), false);
  ASSERT_GE(uniform.size(), 2u);
  ASSERT_GE(zipf.size(), 2u);
  // Expert 0 gets 1 / H_8 = 0.368 of the routed rows instead of 1/8: its rank's expert GEMMs
  // are 2.9x larger, and so is what it receives.
  EXPECT_GT(zipf[0], 1.3 * uniform[0]);
  EXPECT_GT(zipf[1], uniform[1]);  // rank 0's communication (it holds expert 0)
}

TEST(MoeStep, FoldedReplayEqualsTheExactOne) {
  for (const ExpertRoutingKind routing : {ExpertRoutingKind::kUniform, ExpertRoutingKind::kZipf}) {
    const strategies::Plan plan = moe_plan(routing);
    const std::vector<double> folded = step(plan, false);
    const std::vector<double> exact = step(plan, true);
    ASSERT_FALSE(folded.empty());
    ASSERT_FALSE(exact.empty());
    EXPECT_NEAR(folded[0], exact[0], 0.01 * exact[0]);
  }
}

}  // namespace
}  // namespace strata::sim
