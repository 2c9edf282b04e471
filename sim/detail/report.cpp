// The Report of a replayed step: the span arithmetic and the summary figures (report.hpp).
#include "sim/detail/report.hpp"

#include <algorithm>
#include <cstdint>
#include <unordered_map>
#include <utility>

#include "common/error.hpp"

namespace strata::sim {
namespace {

using strategies::Plan;
using strategies::Program;
using strategies::TaskKind;

// Length of the union of [start, end) intervals.
double union_length(std::vector<std::pair<double, double>>& v) {
  std::sort(v.begin(), v.end());
  double total = 0, cur_s = 0, cur_e = -1;
  for (const auto& [s, e] : v) {
    if (s > cur_e) {
      if (cur_e > cur_s) total += cur_e - cur_s;
      cur_s = s;
      cur_e = e;
    } else {
      cur_e = std::max(cur_e, e);
    }
  }
  if (cur_e > cur_s) total += cur_e - cur_s;
  return total;
}

// Length of (a minus b), both unions of intervals.
double difference_length(std::vector<std::pair<double, double>> a,
                         std::vector<std::pair<double, double>> b) {
  auto all = a;
  all.insert(all.end(), b.begin(), b.end());
  return union_length(all) - union_length(b);
}

}  // namespace

results::Report assemble_report(const Plan& plan, const ReplayTimes& times,
                                const SimOptions& options, const profiler::CostModel& cost) {
  results::Report r;
  r.model = plan.model.name;
  r.cluster = plan.cluster.name;
  r.strategy = plan.strategy.name;
  r.provenance = plan.provenance;
  r.world_size = plan.world_size;
  r.global_batch_size = plan.strategy.global_batch_size;
  r.seq_length = plan.model.seq_length;
  r.simulation.simgrid_activities = static_cast<std::int64_t>(times.activities);
  r.simulation.cost_model = cost.name();
  r.simulation.measured_costs = cost.name() == "profiled";
  if (r.simulation.measured_costs) {
    const CostUsage& u = times.usage;
    r.simulation.tasks_measured = u.tasks_measured;
    r.simulation.tasks_modelled = u.tasks_modelled;
    r.simulation.compute_s_measured = u.compute_s_measured;
    r.simulation.compute_s_modelled = u.compute_s_modelled;
    r.simulation.collectives_measured = u.collectives_measured;
    r.simulation.collectives_modelled = u.collectives_modelled;
  }
  for (const strategies::NodeGroup& g : plan.cluster.node_groups) {
    const bool seen = std::any_of(
        r.simulation.device_classes.begin(), r.simulation.device_classes.end(),
        [&](const results::DeviceClassUse& d) { return d.device == g.gpu.name; });
    const std::string name = cost.device_class(g.gpu);
    if (!seen && !name.empty()) r.simulation.device_classes.push_back({g.gpu.name, name});
  }
  r.simulation.fold_data_parallel = options.fold_data_parallel;
  r.simulation.fold_tensor_parallel = options.fold_tensor_parallel;
  r.simulation.aggregate_ring_steps = options.aggregate_ring_steps;
  r.simulation.speed_factors = options.speed_factors;
  const auto& starts = times.starts;
  const auto& ends = times.ends;
  // A folded rank reports what its representative did.
  auto source = [&](int rank) { return times.representative[rank]; };
  for (int rank = 0; rank < plan.world_size; ++rank) {
    r.simulation.simulated_ranks += source(rank) == rank ? 1 : 0;
  }
  // Span sums by source rank: the ranks a representative stands for run its program with its
  // times, so their sums are its own (computed once, not once per folded rank).
  struct Sums {
    double finish_s = 0, compute_s = 0, communication_s = 0, exposed_comm_s = 0;
  };
  std::unordered_map<int, Sums> sums_of_source;
  for (int rank = 0; rank < plan.world_size; ++rank) {
    const Program& p = plan.program_of(rank);
    const int src = source(rank);
    STRATA_CHECK(&plan.program_of(src) == &p, "a folded rank runs another program than its source");
    auto [it, inserted] = sums_of_source.try_emplace(src);
    Sums& sums = it->second;
    if (inserted) {
      std::vector<std::pair<double, double>> compute, comm;
      for (std::size_t i = 0; i < p.tasks.size(); ++i) {
        const std::pair<double, double> span{starts[src][i], ends[src][i]};
        sums.finish_s = std::max(sums.finish_s, span.second);
        if (span.second <= span.first) continue;
        (p.tasks[i].kind == TaskKind::kCompute ? compute : comm).push_back(span);
      }
      sums.compute_s = union_length(compute);
      sums.communication_s = union_length(comm);
      sums.exposed_comm_s = difference_length(comm, compute);
    }
    results::RankTimes t;
    t.stage = plan.stage_of(rank);
    t.finish_s = sums.finish_s;
    t.compute_s = sums.compute_s;
    t.communication_s = sums.communication_s;
    t.exposed_comm_s = sums.exposed_comm_s;
    t.peak_memory_bytes = p.memory.peak_bytes();
    t.capacity_bytes = plan.capacity_bytes(rank);
    r.fits = r.fits && t.peak_memory_bytes <= t.capacity_bytes;
    r.step_time_s = std::max(r.step_time_s, t.finish_s);
    r.ranks.push_back(t);
  }
  double idle = 0;
  for (auto& t : r.ranks) {
    t.idle_s = std::max(0.0, r.step_time_s - t.compute_s - t.exposed_comm_s);
    idle += t.idle_s / r.step_time_s;
  }
  r.bubble_fraction = r.step_time_s > 0 ? idle / plan.world_size : 0;
  if (r.step_time_s > 0) {
    const double tokens =
        static_cast<double>(plan.strategy.global_batch_size) * plan.model.seq_length;
    r.tokens_per_s = tokens / r.step_time_s;
    const double per_gpu = r.step_time_s * plan.world_size;
    r.tflops_per_gpu = strategies::to_double(plan.totals.flops.model) / per_gpu / 1e12;
    r.hardware_tflops_per_gpu = strategies::to_double(plan.totals.flops.hardware) / per_gpu / 1e12;
    double peak = 0;
    for (int rank = 0; rank < plan.world_size; ++rank) {
      peak += plan.cluster.group_of_gpu(rank).gpu.peak_flops(plan.strategy.precision);
    }
    r.mfu = strategies::to_double(plan.totals.flops.model) / r.step_time_s / peak;
  }

  if (options.record_trace) {
    std::vector<int> ranks = options.trace_ranks;
    if (ranks.empty()) {
      for (int stage = 0; stage < plan.strategy.pp; ++stage) {
        for (int rank = 0; rank < plan.world_size; ++rank) {
          if (plan.stage_of(rank) == stage) {
            ranks.push_back(rank);
            break;
          }
        }
      }
    }
    for (int rank : ranks) {
      STRATA_CHECK(rank >= 0 && rank < plan.world_size, "trace rank out of range");
      const int src = source(rank);
      const strategies::Program& p = plan.program_of(src);
      for (std::size_t i = 0; i < starts[src].size(); ++i) {
        // Collectives and receives wait for their peers before their span starts.
        const TaskKind kind = p.tasks[i].kind;
        const bool waits = kind == TaskKind::kCollective || kind == TaskKind::kRecv;
        const double waited = waits ? starts[src][i] - times.issued[src][i] : 0.0;
        r.spans.push_back({rank, static_cast<std::uint32_t>(i), starts[src][i], ends[src][i],
                           std::max(0.0, waited)});
      }
    }
  }
  return r;
}

}  // namespace strata::sim
