// The unit times a list-scheduled pipeline is ordered for: schedule_costs() prices each unit of
// a lowered Plan with the cost model (checked against a walk of the program by task phase), and
// lower_priced() orders ZB-V and ZB-H2 for them and leaves the other schedules alone.
#include "profiler/schedule_costs.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "profiler/efficiency.hpp"
#include "profiler/roofline.hpp"
#include "strategies/schedule.hpp"

namespace strata::profiler {
namespace {

namespace st = strata::strategies;

const std::string kGolden = std::string(STRATA_SOURCE_DIR) + "/tests/golden/specs/";

struct Inputs {
  st::ModelSpec model = st::load_model(kGolden + "gpt-golden.json");
  st::ClusterSpec cluster = st::load_cluster(kGolden + "dgx-a100-2n4g.json");
  st::StrategySpec strategy = st::load_strategy(kGolden + "pp4-zb-h1.json");
};

Inputs with_schedule(st::Schedule kind, int v) {
  Inputs in;
  in.strategy.schedule = kind;
  in.strategy.virtual_stages = v;
  return in;
}

RooflineCostModel bundled() {
  return RooflineCostModel(load_efficiencies(default_efficiencies_path()));
}

TEST(ScheduleCosts, PricesEachStagesUnitsWithTheCostModel) {
  const Inputs in = with_schedule(st::Schedule::kZbV, 2);
  const st::Plan plan = st::lower(in.model, in.cluster, in.strategy, 4);
  const RooflineCostModel cost = bundled();
  const st::ScheduleCosts c = schedule_costs(plan, cost);
  ASSERT_EQ(c.unit.size(), 4u);
  const double m = plan.num_micro_batches;
  for (int s = 0; s < 4; ++s) {
    SCOPED_TRACE("stage " + std::to_string(s));
    ASSERT_EQ(c.unit[s].size(), 2u);
    const st::Program& prog = plan.programs[s];
    const st::DeviceSpec& device = plan.cluster.group_of_gpu(s).gpu;
    for (int chunk = 0; chunk < 2; ++chunk) {
      // By task phase: the forwards' compute, and the backwards' (B and W together, recompute
      // included) on the compute stream.
      double forward = 0, backward = 0;
      for (const st::Task& t : prog.tasks) {
        if (t.kind != st::TaskKind::kCompute || t.stream != st::Stream::kCompute) continue;
        if (t.chunk != chunk || t.micro_batch < 0) continue;
        const double sec = cost.compute_seconds(prog, t, device, plan.strategy.precision);
        (t.phase == st::Phase::kForward ? forward : backward) += sec;
      }
      const st::UnitCosts& u = c.unit[s][chunk];
      EXPECT_NEAR(u.forward, forward / m, 1e-9 * forward);
      EXPECT_NEAR(u.backward + u.weight, backward / m, 1e-9 * backward);
      // B holds the input gradients and the attention and element-wise backward; W only the
      // weight-gradient GEMMs: the smaller of the two.
      EXPECT_GT(u.weight, 0);
      EXPECT_GT(u.backward, u.weight);
    }
  }
  // The head and the loss make stage 0's second chunk (the last virtual stage) the longest.
  EXPECT_GT(c.unit[0][1].forward, c.unit[1][1].forward);
  EXPECT_GT(c.transfer, 0);
  EXPECT_LT(c.transfer, c.unit[1][0].forward);
}

TEST(ScheduleCosts, LowerPricedOrdersZbVOnly) {
  const RooflineCostModel cost = bundled();
  const Inputs in = with_schedule(st::Schedule::kZbV, 2);
  const st::Plan unit = st::lower(in.model, in.cluster, in.strategy, 4);
  const st::Plan priced = lower_priced(in.model, in.cluster, in.strategy, 4, cost);
  EXPECT_TRUE(unit.schedule_costs.unit.empty());
  ASSERT_EQ(priced.schedule_costs, schedule_costs(unit, cost));
  for (int s = 0; s < 4; ++s) {
    // The priced Plan's programs walk the priced order: as many units, one task range each, and
    // the same work.
    const auto order = st::stage_schedule(st::Schedule::kZbV, 4, s, priced.num_micro_batches, 2,
                                          &priced.schedule_costs);
    EXPECT_EQ(priced.programs[s].unit_begin.size(), order.size() + 1);
    EXPECT_EQ(priced.programs[s].tasks.size(), unit.programs[s].tasks.size());
  }
  EXPECT_EQ(priced.totals.flops.hardware, unit.totals.flops.hardware);
  // The handcrafted zero-bubble schedules are the paper's orders whatever the times.
  for (const st::Schedule kind : {st::Schedule::kZbH1, st::Schedule::kZbH2}) {
    const Inputs h = with_schedule(kind, 1);
    EXPECT_TRUE(lower_priced(h.model, h.cluster, h.strategy, 4, cost).schedule_costs.unit.empty());
  }
}

}  // namespace
}  // namespace strata::profiler
