// Builds the SimGrid platform of a cluster spec (platform.hpp). One flat routing zone
// (detail/fabric_zone.hpp) computes each route from where its two ranks sit, so building is
// linear in the world size and a route query is constant time. Topology, names and the reasons:
// docs/simulator.md, "Platform and network model".
#include "sim/platform.hpp"

#include <xbt/log.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>
#include <vector>
#include <xbt/config.hpp>

#include "common/error.hpp"
#include "sim/detail/fabric_zone.hpp"

namespace strata::sim {

namespace {

namespace sg4 = simgrid::s4u;

using detail::Attachment;
using detail::FabricZone;
using detail::Port;

// A split-duplex link of `bandwidth_Bps` per direction and `latency_s` per direction.
Port make_port(sg4::NetZone* zone, const std::string& name, double bandwidth_Bps,
               double latency_s) {
  sg4::SplitDuplexLink* link = zone->create_split_duplex_link(name, bandwidth_Bps);
  link->set_latency(latency_s);
  Port port{link->get_link_up(), link->get_link_down()};
  port.up->seal();
  port.down->seal();
  return port;
}

const char* intra_link_stem(strategies::IntraFabric kind) {
  switch (kind) {
    case strategies::IntraFabric::kNvSwitch:
      return "nvl";
    case strategies::IntraFabric::kPcie:
      return "pcie";
    case strategies::IntraFabric::kShared:
      return "mem";
  }
  return "intra";
}

// The shortest text that reads back as `v` (0.5, 1e+20, nan).
std::string num(double v) {
  char buffer[32];
  const auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, v);
  return error == std::errc() ? std::string(buffer, end) : std::to_string(v);
}

void require_positive(const std::string& field, double value) {
  if (!(value > 0) || !std::isfinite(value)) {
    throw ConfigError(field + " = " + num(value) + ": must be a finite number > 0");
  }
}

void require_non_negative(const std::string& field, double value) {
  if (!(value >= 0) || !std::isfinite(value)) {
    throw ConfigError(field + " = " + num(value) + ": must be a finite number >= 0");
  }
}

// Everything build_platform needs from the spec, checked before SimGrid is touched.
void validate(const strategies::ClusterSpec& cluster, int world_size,
              const PlatformOptions& options) {
  const int total = cluster.total_gpus();
  if (world_size < 1) {
    throw ConfigError("world_size = " + std::to_string(world_size) + ": must be >= 1");
  }
  if (world_size > total) {
    throw ConfigError("world_size = " + std::to_string(world_size) + ": exceeds the " +
                      std::to_string(total) + " GPUs of cluster '" + cluster.name + "'");
  }
  if (!options.speed_factors.empty() &&
      options.speed_factors.size() != static_cast<std::size_t>(world_size)) {
    throw ConfigError("speed_factors has " + std::to_string(options.speed_factors.size()) +
                      " entries: must be empty or one per rank (world_size = " +
                      std::to_string(world_size) + ")");
  }
  for (auto [name, value] : {std::pair{"links.nvswitch", options.links.nvswitch},
                             std::pair{"links.pcie", options.links.pcie},
                             std::pair{"links.shared", options.links.shared},
                             std::pair{"links.network", options.links.network}}) {
    if (!(value > 0 && value <= 1)) {
      throw ConfigError(std::string(name) + " = " + std::to_string(value) +
                        ": must be in (0, 1], a fraction of the line rate");
    }
  }
  for (std::size_t r = 0; r < options.speed_factors.size(); ++r) {
    require_positive("speed_factors[" + std::to_string(r) + "]", options.speed_factors[r]);
  }
  for (std::size_t g = 0; g < cluster.node_groups.size(); ++g) {
    const strategies::NodeGroup& group = cluster.node_groups[g];
    const std::string at = "cluster.node_groups[" + std::to_string(g) + "]";
    if (group.nodes < 1 || group.gpus_per_node < 1) {
      throw ConfigError(at + ": nodes = " + std::to_string(group.nodes) + ", gpus_per_node = " +
                        std::to_string(group.gpus_per_node) + ": both must be >= 1");
    }
    require_positive(at + ".intra_node.bandwidth_Bps", group.intra_node.bandwidth_Bps);
    require_non_negative(at + ".intra_node.latency_s", group.intra_node.latency_s);
  }
  const strategies::InterNodeSpec& inter = cluster.inter_node;
  const bool multi_node = world_size > cluster.node_groups.front().gpus_per_node;
  if (inter.topology == strategies::InterTopology::kNone) {
    if (multi_node) {
      throw ConfigError(
          "cluster.inter_node.topology = none: world_size = " + std::to_string(world_size) +
          " spans several nodes, which needs an inter-node network");
    }
    return;
  }
  if (inter.nics_per_node < 1) {
    throw ConfigError("cluster.inter_node.nics_per_node = " + std::to_string(inter.nics_per_node) +
                      ": must be >= 1");
  }
  require_positive("cluster.inter_node.nic_bandwidth_Bps", inter.nic_bandwidth_Bps);
  require_non_negative("cluster.inter_node.latency_s", inter.latency_s);
  if (!(inter.oversubscription >= 1) || !std::isfinite(inter.oversubscription)) {
    throw ConfigError("cluster.inter_node.oversubscription = " + num(inter.oversubscription) +
                      ": must be >= 1 (1 = full bisection bandwidth)");
  }
}

}  // namespace

int Platform::gpus_per_node(int node) const { return gpus_on_node_count.at(node); }

void configure_network_model() {
  // Quiet first: each configuration change below is itself logged at INFO level.
  xbt_log_control_set("root.thres:warning");
  sg4::Engine::set_config("network/model:CM02");      // no LV08 latency/bandwidth factors
  sg4::Engine::set_config("network/crosstraffic:0");  // no reverse-route ACK load
  sg4::Engine::set_config("network/TCP-gamma:0");     // no TCP window cap on a flow's rate
}

Platform build_platform(const strategies::ClusterSpec& cluster, int world_size,
                        const PlatformOptions& options) {
  validate(cluster, world_size, options);
  STRATA_CHECK(sg4::Engine::has_instance(),
               "build_platform needs a SimGrid Engine: create it, then call "
               "configure_network_model()");
  STRATA_CHECK(sg4::Engine::get_instance()->get_netzone_root() == nullptr,
               "build_platform builds the root zone: call it once per process, before any "
               "other zone");
  STRATA_CHECK(simgrid::config::get_value<std::string>("network/model") == "CM02",
               "call configure_network_model() before build_platform()");

  const strategies::InterNodeSpec& inter = cluster.inter_node;
  const bool has_network = inter.topology != strategies::InterTopology::kNone;
  const bool rails = inter.topology == strategies::InterTopology::kRailOptimized;
  const int nics = has_network ? inter.nics_per_node : 0;
  // Fat tree: a leaf switch takes whole nodes, up to Platform::kNicsPerLeaf NICs.
  const int nodes_per_leaf = has_network ? std::max(1, Platform::kNicsPerLeaf / nics) : 1;
  const int cluster_nodes = cluster.total_nodes();

  auto* impl = new FabricZone("cluster-" + cluster.name);  // owned by the engine (root zone)
  sg4::NetZone* zone = impl->get_iface();

  Platform platform;
  platform.hosts.reserve(world_size);
  platform.node_of_rank.reserve(world_size);
  std::vector<Port> edge_uplinks;  // by edge switch, created on first use
  int rank = 0;
  int node = 0;
  for (const strategies::NodeGroup& group : cluster.node_groups) {
    const strategies::IntraNodeSpec& intra = group.intra_node;
    const std::string stem = intra_link_stem(intra.kind);
    for (int n = 0; n < group.nodes && rank < world_size; ++n, ++node) {
      const std::string node_name = "n" + std::to_string(node);
      platform.first_rank_of_node.push_back(rank);
      platform.gpus_on_node_count.push_back(0);
      std::vector<Port> node_nics;
      for (int local = 0; local < group.gpus_per_node && rank < world_size; ++local, ++rank) {
        const double factor = options.speed_factors.empty() ? 1.0 : options.speed_factors[rank];
        std::vector<double> speeds = {Platform::kHostFlops * factor};
        const int held = options.links.nccl_sms, sms = group.gpu.sms;
        if (held > 0 && sms > held && cluster.comm_overlaps_compute &&
            group.gpu.kind == strategies::DeviceKind::kGpu) {
          for (int k = 1; k * held < sms; ++k) {
            speeds.push_back(speeds.front() * (sms - k * held) / sms);
          }
        }
        sg4::Host* host = zone->create_host("rank" + std::to_string(rank), speeds);
        host->set_property("node", std::to_string(node));
        host->set_property("local_rank", std::to_string(local));
        host->set_property("group", group.name);
        host->set_property("device", group.gpu.name);
        host->seal();

        Attachment a;
        a.node = node;
        // A copy reads and writes every byte: half the memory bandwidth (the intra-node link's
        // when the spec gives none). SimGrid needs some link: an empty route aborts.
        const double copy_Bps = group.gpu.memory_bandwidth_Bps > 0
                                    ? group.gpu.memory_bandwidth_Bps / 2
                                    : intra.bandwidth_Bps;
        a.loopback = zone->create_link("rank" + std::to_string(rank) + "-loopback", copy_Bps);
        a.loopback->set_latency(0)->seal();
        a.intra =
            make_port(zone, node_name + "-" + stem + std::to_string(local),
                      options.links.intra_bandwidth_Bps(group), intra.latency_s / 2);
        if (has_network) {
          const int nic = local % nics;
          if (nic == static_cast<int>(node_nics.size())) {
            node_nics.push_back(make_port(zone, node_name + "-nic" + std::to_string(nic),
                                          inter.nic_bandwidth_Bps * options.links.network,
                                          inter.latency_s / 2));
          }
          a.nic = nic;
          a.nic_port = node_nics[nic];
          a.edge = rails ? nic : node / nodes_per_leaf;
          if (a.edge >= static_cast<int>(edge_uplinks.size())) edge_uplinks.resize(a.edge + 1);
          Port& uplink = edge_uplinks[a.edge];
          if (uplink.up == nullptr) {
            // Physical capacity: every NIC of the cluster under this edge switch, whether or not
            // its GPUs are in the world.
            const int edge_nics =
                rails ? cluster_nodes
                      : std::min(nodes_per_leaf, cluster_nodes - a.edge * nodes_per_leaf) * nics;
            const std::string name = (rails ? "rail" : "leaf") + std::to_string(a.edge) + "-spine";
            uplink = make_port(zone, name,
                               edge_nics * inter.nic_bandwidth_Bps * options.links.network /
                                   inter.oversubscription,
                               0.0);
          }
          a.edge_uplink = uplink;
        }
        impl->attach_rank(rank, *host, a);
        platform.hosts.push_back(host);
        platform.node_of_rank.push_back(node);
        ++platform.gpus_on_node_count.back();
      }
    }
  }
  // Pure delays (e.g. the per-step latency of an aggregated ring): a host with speed 1 and more
  // cores than concurrent delays, so an Exec of d flops lasts d seconds whatever else runs.
  platform.timer = zone->create_host("timer", 1.0);
  platform.timer->set_core_count(Platform::kTimerCores);
  platform.timer->seal();
  // Folding by symmetry: a bundle host beside each orbit's first rank, if the fabric allows it.
  if (!options.orbits.empty() && impl->set_orbits(options.orbits, rails)) {
    platform.bundle_hosts.assign(world_size, nullptr);
    for (const std::vector<int>& orbit : options.orbits) {
      const int x = orbit.front();
      sg4::Host* host =
          zone->create_host("rank" + std::to_string(x) + "-bundle", platform.hosts[x]->get_speed());
      host->seal();
      impl->attach_bundle(x, *host);
      platform.bundle_hosts[x] = host;
    }
  }
  zone->seal();
  return platform;
}

}  // namespace strata::sim
