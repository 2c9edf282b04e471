// A simulation priced by measured op costs (ProfiledCostModel): with every op of the Plan in the
// profile, every simulated compute task that runs an op is priced by it and the report says so;
// with the profile's times doubled the compute doubles; an empty profile leaves the roofline's
// step unchanged; report.json carries the counts and reads back. Every simulation runs in a
// forked child (one SimGrid engine per process).
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "profiler/profiled_cost_model.hpp"
#include "results/report.hpp"
#include "sim/simulate.hpp"
#include "sim_test_util.hpp"
#include "tests/strategies/test_models.hpp"

namespace strata::sim {
namespace {

profiler::RooflineCostModel roofline() {
  return profiler::RooflineCostModel(
      profiler::load_efficiencies(profiler::default_efficiencies_path()));
}

// A profile of every distinct op of `plan` on its device, each at `scale` x the roofline's
// price of the op alone.
profiler::OpProfile synthetic_profile(const strategies::Plan& plan, double scale) {
  profiler::OpProfile p;
  const auto& device = plan.cluster.node_groups[0].gpu;
  p.on.device = device.name;
  p.on.device_kind = "gpu";
  p.repetitions = 1;
  std::set<profiler::OpKey> seen;
  for (const strategies::Program& prog : plan.programs) {
    for (const strategies::Task& t : prog.tasks) {
      if (t.kind != strategies::TaskKind::kCompute) continue;
      for (std::uint32_t i = 0; i < t.op_count; ++i) {
        const strategies::Op& op = prog.ops[t.op_begin + i];
        if (op.kind == strategies::OpKind::kLoadBatch || !seen.insert(profiler::op_key(op)).second) {
          continue;
        }
        const double s = scale * roofline().op_seconds(op, device, plan.strategy.precision);
        p.ops.push_back({profiler::op_key(op), s, s, s, 1});
      }
    }
  }
  return p;
}

std::vector<double> run(const strategies::Plan& plan, const std::vector<profiler::OpProfile>& ops) {
  return testing::in_child([&] {
    const profiler::ProfiledCostModel cost(roofline(), plan.cluster, ops,
                                           std::vector<std::string>(ops.size(), "p.json"), {}, {});
    const results::Report r = simulate(plan, cost);
    const auto back = results::report_from_json(results::report_to_json(r));
    return std::vector<double>{r.step_time_s,
                               static_cast<double>(r.simulation.tasks_measured),
                               static_cast<double>(r.simulation.tasks_modelled),
                               r.simulation.compute_s_measured,
                               r.simulation.compute_s_modelled,
                               r.ranks[0].compute_s,
                               back.simulation == r.simulation ? 1.0 : 0.0};
  });
}

TEST(ProfiledReplay, MeasuredOpsPriceTheTasksAndTheReportSaysSo) {
  const auto m = strategies::testing::gpt(2, 256, 8, 512, 64);
  auto s = strategies::testing::strategy(2, 2, 1, 1, 4);
  // A GPU without its SM count: compute beside a collective keeps the whole GPU
  // (links.nccl_sms), so rank 0's compute spans are exactly the priced times.
  strategies::ClusterSpec c = strategies::testing::cluster(1, 8);
  c.node_groups[0].gpu.sms = 0;
  const strategies::Plan plan = strategies::lower(m, c, s, 4);
  const auto once = run(plan, {synthetic_profile(plan, 1.0)});
  const auto twice = run(plan, {synthetic_profile(plan, 2.0)});
  const auto none = run(plan, {});
  ASSERT_EQ(once.size(), 7u);
  ASSERT_EQ(twice.size(), 7u);
  ASSERT_EQ(none.size(), 7u);
  // Every task with an op is measured; only the data loader's tasks (no device work) are not.
  EXPECT_GT(once[1], 0);
  EXPECT_EQ(once[4], 0.0);
  EXPECT_EQ(once[1], twice[1]);
  // Twice the measured times: twice the compute.
  EXPECT_NEAR(twice[3] / once[3], 2.0, 1e-12);
  EXPECT_NEAR(twice[5] / once[5], 2.0, 1e-9);
  // No measurement at all: every task from the roofline.
  EXPECT_EQ(none[1], 0.0);
  EXPECT_EQ(none[2], once[1] + once[2]);
  EXPECT_EQ(once[6], 1.0);  // report.json round trip keeps the counts
}

}  // namespace
}  // namespace strata::sim
