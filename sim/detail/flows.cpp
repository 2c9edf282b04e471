// Starting a collective's flows (flows.hpp).
#include "sim/detail/flows.hpp"

#include <algorithm>
#include <cstdint>

#include "common/error.hpp"

namespace strata::sim::detail {

namespace sg4 = simgrid::s4u;

NodeMap platform_node_map(const strategies::ClusterSpec& cluster, const Platform& platform,
                          const profiler::LinkEfficiencies& links) {
  NodeMap m = profiler::node_map(cluster, static_cast<int>(platform.hosts.size()), links);
  STRATA_CHECK(m.node_of_rank == platform.node_of_rank,
               "the link model and the platform place ranks on different nodes");
  return m;
}

sg4::ActivityPtr start_flow_activity(const Platform& platform, const Flow& flow, bool bundled) {
  if (flow.is_delay()) {
    sg4::ExecPtr e = sg4::Exec::init();
    e->set_flops_amount(flow.delay_s);
    e->set_host(platform.timer);
    e->start();
    return e;
  }
  sg4::Host* from = bundled ? platform.bundle_hosts[flow.from] : platform.hosts[flow.from];
  STRATA_CHECK(from != nullptr, "a bundled flow from a rank without a bundle host");
  sg4::CommPtr c = sg4::Comm::sendto_init(from, platform.hosts[flow.to]);
  c->set_payload_size(static_cast<std::uint64_t>(std::max(0.0, flow.bytes)));
  c->start();
  return c;
}

}  // namespace strata::sim::detail
