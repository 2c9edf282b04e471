#include "profiler/schedule_costs.hpp"

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "profiler/stage_split.hpp"
#include "strategies/schedule.hpp"

namespace strata::profiler {

namespace st = strata::strategies;

st::ScheduleCosts schedule_costs(const st::Plan& plan, const CostModel& cost) {
  const st::StrategySpec& s = plan.strategy;
  const int v = std::max(1, plan.virtual_stages);
  const int m = plan.num_micro_batches;
  st::ScheduleCosts out;
  double transfer_s = 0;
  int transfers = 0;
  for (int stage = 0; stage < plan.pp; ++stage) {
    const st::Program& prog = plan.programs.at(static_cast<std::size_t>(stage));
    const int rank = st::first_rank_of_stage(plan, stage);
    const st::DeviceSpec& device = plan.cluster.group_of_gpu(rank).gpu;
    const std::vector<st::ScheduleUnit> order =
        st::stage_schedule(s.schedule, plan.pp, stage, m, v, &plan.schedule_costs);
    STRATA_CHECK(prog.unit_begin.size() == order.size() + 1,
                 "schedule_costs: the program's units do not match its schedule");
    // sums[chunk][phase]
    std::vector<std::array<double, 3>> sums(static_cast<std::size_t>(v), {0, 0, 0});
    for (std::size_t i = 0; i < order.size(); ++i) {
      double seconds = 0;
      for (std::uint32_t k = prog.unit_begin[i]; k < prog.unit_begin[i + 1]; ++k) {
        const st::Task& t = prog.tasks[k];
        if (t.kind == st::TaskKind::kCompute && t.stream == st::Stream::kCompute) {
          seconds += cost.compute_seconds(prog, t, device, s.precision);
        } else if (stage == 0 && t.kind == st::TaskKind::kSend && t.purpose == st::Purpose::kPp) {
          const int peer = plan.peer_rank(rank, t);
          const std::vector<int> pair = {std::min(rank, peer), std::max(rank, peer)};
          transfer_s +=
              cost.collective_seconds(st::CollectiveKind::kBroadcast, pair, t.bytes, plan.cluster);
          ++transfers;
        }
      }
      sums[static_cast<std::size_t>(order[i].chunk)][static_cast<int>(order[i].phase)] += seconds;
    }
    std::vector<st::UnitCosts>& stage_costs = out.unit.emplace_back();
    for (const auto& sum : sums) {
      st::UnitCosts c;
      c.forward = sum[0] / m;
      c.backward = sum[1] / m;
      c.weight = st::splits_backward(s.schedule) ? sum[2] / m : c.backward;
      stage_costs.push_back(c);
    }
  }
  out.transfer = transfers > 0 ? transfer_s / transfers : 0;
  // A unit that costs nothing (no compute task) still takes a moment: the scheduler needs
  // positive times. The smallest positive time stands in.
  double smallest = 0;
  for (const auto& stage : out.unit) {
    for (const st::UnitCosts& c : stage) {
      for (double x : {c.forward, c.backward, c.weight}) {
        if (x > 0 && (smallest == 0 || x < smallest)) smallest = x;
      }
    }
  }
  for (auto& stage : out.unit) {
    for (st::UnitCosts& c : stage) {
      for (double* x : {&c.forward, &c.backward, &c.weight}) *x = *x > 0 ? *x : smallest;
    }
  }
  if (smallest == 0) return {};  // nothing priced: unit costs
  return out;
}

st::Plan lower_priced(const st::ModelSpec& m, const st::ClusterSpec& c,
                      const st::StrategySpec& given, int world_size, const CostModel& cost) {
  // A per-group strategy's "auto" layers, proposed from its groups' speeds under `cost`.
  const st::StrategySpec s = propose_stage_layers(m, c, given, world_size, cost);
  st::Plan plan = st::lower(m, c, s, world_size);
  if (!st::ordered_for_costs(s.schedule)) return plan;
  const st::ScheduleCosts costs = schedule_costs(plan, cost);
  if (costs.unit.empty()) return plan;
  return st::lower(m, c, s, world_size, costs);
}

}  // namespace strata::profiler
