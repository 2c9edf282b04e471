// Starting a collective's flows as SimGrid activities, for the replay (simulate.cpp) and for
// collectives alone (time_collectives.cpp). Internal to sim/.
#pragma once

#include <simgrid/s4u.hpp>

#include "profiler/link_model.hpp"
#include "sim/collectives.hpp"
#include "sim/platform.hpp"
#include "strategies/spec.hpp"

namespace strata::sim::detail {

// The node map the collective algorithms choose with (profiler::node_map: the first node group's
// fabric stands for every node's), at the cost model's link efficiencies; its ranks are placed as
// the platform placed them.
NodeMap platform_node_map(const strategies::ClusterSpec& cluster, const Platform& platform,
                          const profiler::LinkEfficiencies& links);

// Starts one flow of a collective: a transfer between two hosts (from `flow.from`'s bundle host
// when `bundled`: the flow and its sigma copies, platform.hpp), or a delay on the timer host.
simgrid::s4u::ActivityPtr start_flow_activity(const Platform& platform, const Flow& flow,
                                              bool bundled = false);

}  // namespace strata::sim::detail
