// Collectives alone on a platform (simulate.hpp, time_collectives): tests and benchmarks.
#include <unordered_map>
#include <vector>

#include "common/error.hpp"
#include "sim/collectives.hpp"
#include "sim/detail/flows.hpp"
#include "sim/platform.hpp"
#include "sim/simulate.hpp"

namespace strata::sim {

namespace sg4 = simgrid::s4u;
using detail::platform_node_map;
using detail::start_flow_activity;

std::vector<double> time_collectives(const strategies::ClusterSpec& cluster, int world_size,
                                     const std::vector<CollectiveRequest>& requests,
                                     const profiler::CostModel& cost, bool aggregate_ring_steps) {
  sg4::Engine engine("strata-collectives");
  configure_network_model();
  PlatformOptions popts;
  popts.links = cost.link_efficiencies();
  const Platform platform = build_platform(cluster, world_size, popts);
  std::vector<FlowSchedule> schedules;
  const NodeMap nodes = platform_node_map(cluster, platform, popts.links);
  for (const auto& r : requests) {
    FlowDetail detail;
    detail.aggregate_steps = aggregate_ring_steps;
    detail.step_latency_s = profiler::ring_hop_latency(cluster, platform.node_of_rank, r.ranks);
    if (cluster.total_nodes() > 1) detail.nodes = &nodes;
    const profiler::CollectiveChoice choice = profiler::choose_collective(
        r.kind, r.ranks, r.bytes, cluster, popts.links, nodes, detail.nodes, r.algorithm);
    detail.algorithm = choice.algorithm;
    detail.software_latency_s = cost.collective_extra_latency_s(r.kind, r.ranks, r.bytes, cluster,
                                                               choice.software_latency_s);
    if (r.matrix.empty()) {
      schedules.push_back(plan_collective(r.kind, r.ranks, r.bytes, detail));
    } else {
      STRATA_CHECK(r.kind == strategies::CollectiveKind::kAllToAll,
                   "time_collectives: a byte matrix is an all-to-all's");
      schedules.push_back(plan_all_to_all(r.ranks, r.matrix, detail));
    }
  }
  std::vector<double> finished(requests.size(), 0.0);
  std::unordered_map<const sg4::Activity*, std::pair<std::size_t, int>> pending;
  std::vector<sg4::ActivityPtr> live;  // kept alive until the run ends
  auto launch = [&](std::size_t c, int f) {
    sg4::ActivityPtr a = start_flow_activity(platform, schedules[c].flow(f));
    pending.emplace(a.get(), std::pair{c, f});
    live.push_back(a);
  };
  sg4::Activity::on_completion_cb([&](const sg4::Activity& a) {
    const auto it = pending.find(&a);
    if (it == pending.end()) return;
    const auto [c, f] = it->second;
    pending.erase(it);
    for (int next : schedules[c].complete(f)) launch(c, next);
    if (schedules[c].done()) finished[c] = sg4::Engine::get_clock();
  });
  for (std::size_t c = 0; c < schedules.size(); ++c) {
    for (int f : schedules[c].initial()) launch(c, f);
  }
  engine.run();
  for (std::size_t c = 0; c < schedules.size(); ++c) {
    STRATA_CHECK(schedules[c].done(), "collective did not complete");
  }
  return finished;
}

}  // namespace strata::sim
