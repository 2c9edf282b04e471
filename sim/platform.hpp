// The SimGrid platform of a cluster spec: one host per GPU (rank), NVSwitch inside a node, NICs,
// and the inter-node fabric, with the network model configured so that every link delivers
// exactly the bandwidth and latency its spec states (docs/simulator.md).
//
// One SimGrid engine per process (DESIGN.md "Conventions"): create the Engine, call
// configure_network_model() before anything else, then build_platform() once.
#pragma once

#include <simgrid/s4u.hpp>
#include <string>
#include <vector>

#include "profiler/efficiency.hpp"
#include "strategies/spec.hpp"

namespace strata::sim {

// Sets network/model:CM02, network/crosstraffic:0, network/TCP-gamma:0 (and quiets SimGrid's
// INFO logging). Must run after the Engine is created and before any zone is built.
void configure_network_model();

struct PlatformOptions {
  // Per-rank speed factors (a straggler has a factor < 1: its compute takes 1/factor as long).
  // Empty = all 1. Size must be the world size otherwise.
  std::vector<double> speed_factors;
  // Fractions of the line rate collectives reach (NCCL's protocol overhead): intra-node port
  // links by fabric, and every network link. simulate() and time_collectives() take them from
  // the cost model's link face (CostModel::link_efficiencies); default: line rate.
  profiler::LinkEfficiencies links{};
  // Folding by symmetry (docs/simulator.md "Scale"): disjoint orbits of ranks, each in cyclic
  // order [x_0, ..., x_{k-1}], all of one size k >= 2 and together covering the world (the
  // replay passes the tensor-parallel groups); sigma maps x_i to x_{i+1 mod k}. Empty = none.
  std::vector<std::vector<int>> orbits{};
};

struct Platform {
  // Hosts by rank. Rank r runs on the cluster's r-th GPU (node groups in order, nodes in order,
  // GPUs in order). Every host's speed is kHostFlops * speed factor, so an Exec of
  // (seconds * kHostFlops) flops lasts `seconds / factor`. Where collectives hold SMs
  // (links.nccl_sms n > 0, a GPU with sms > n, comm_overlaps_compute), a host has pstates
  // k = 0, 1, ..., floor((sms - 1) / n): that speed x (sms - k n) / sms, its compute's share
  // while k collectives of its rank run (the replay sets it).
  std::vector<simgrid::s4u::Host*> hosts;
  static constexpr double kHostFlops = 1e12;
  // Node index of each rank (for hierarchical collectives).
  std::vector<int> node_of_rank;
  // Ranks per node (the node's GPUs that belong to the world).
  int gpus_per_node(int node) const;
  std::vector<int> gpus_on_node_count;
  // Ranks are contiguous per node: node n holds ranks [first_rank_of_node[n],
  // first_rank_of_node[n] + gpus_per_node(n)). Nodes are those with at least one rank.
  std::vector<int> first_rank_of_node;
  int num_nodes() const { return static_cast<int>(first_rank_of_node.size()); }
  // Fat tree: a leaf switch holds whole nodes, up to this many NICs (at least one node).
  static constexpr int kNicsPerLeaf = 32;
  // A host outside the world for pure delays: an Exec of d flops on it lasts d seconds, with up
  // to kTimerCores delays at once. It has no network routes.
  simgrid::s4u::Host* timer = nullptr;
  static constexpr int kTimerCores = 1 << 24;
  // With PlatformOptions::orbits, when the fabric is symmetric under sigma (every orbit on one
  // node, and GPUs sharing a NIC mapped to GPUs sharing a NIC; sim/detail/fabric_zone.hpp):
  // bundle_hosts[x] for the first rank x of each orbit (nullptr for the other ranks), a second
  // host of rank x that only sends. A transfer of S bytes from bundle_hosts[x] to rank y is one
  // flow standing for the k transfers of S bytes sigma^c(x) -> sigma^c(y): its route holds each
  // orbit's representative link (x_0's port, an x_0's NIC, a leaf uplink, an x_0's rail) once
  // per copy that crosses it, and the latency of x -> y. When every flow on the fabric is such a
  // bundle, each copy runs at the bundle's rate and each representative link carries what the
  // k copies would. Empty when there are no orbits or the fabric is not symmetric.
  std::vector<simgrid::s4u::Host*> bundle_hosts;
};

// Builds the platform for the first `world_size` GPUs of `cluster`:
//  - inside a node: each GPU has a split-duplex link to the node's NVSwitch (bandwidth =
//    intra_node.bandwidth per direction, latency = intra_node.latency / 2), so a GPU-to-GPU route
//    is [src up, dst down] with the spec's latency and bandwidth; "pcie" fabrics the same way;
//  - between nodes: GPU i of a node reaches the network through NIC (i % nics_per_node): a
//    split-duplex link of nic_bandwidth per direction. NICs attach to leaf switches of a fat tree
//    whose uplinks carry (sum of NIC bandwidth under the leaf) / oversubscription; for
//    "rail-optimized" NIC r of every node attaches to rail switch r, and rails meet at a spine.
//    An inter-node route's latency totals inter_node.latency (half on each NIC link; switch
//    links have none), so every flow sharing a link has the same route latency (CM02 shares
//    bandwidth in inverse proportion to it). An inter-node route never uses the NVSwitch links.
//  - a rank to itself: its own "rank<r>-loopback" link (half the device memory bandwidth).
// Hosts are "rank<r>" with properties node, local_rank, group and device. Link names, routes and
// costs: docs/simulator.md, "Platform and network model".
// ConfigError (naming field, value and rule) if world_size is < 1 or exceeds the cluster, if
// speed_factors has the wrong size or a factor <= 0, or if a multi-node world has no network.
// Needs the Engine and configure_network_model() first; call once per process.
Platform build_platform(const strategies::ClusterSpec& cluster, int world_size,
                        const PlatformOptions& options = {});

}  // namespace strata::sim
