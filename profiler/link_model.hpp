// The link face's formulas: alpha-beta times of the collective algorithms the simulator runs
// (ring, hierarchical, tree), the choice among them that NCCL's tuner would make, and the
// group's layout over the nodes that the choice depends on. Pure functions of the cluster spec
// and the link efficiencies, no SimGrid: sim/collectives.hpp builds each algorithm's flows and
// chooses with these, the cost model answers collective_seconds() with them, so the two cannot
// disagree. Derivations: docs/simulator.md "Collectives as flows".
//
// defines: NodeMap, node_map(), Algorithm, algorithm_name(), parse_algorithm(),
//          alpha_beta_seconds(), hierarchical_phases(), hierarchical_seconds(), tree_seconds() and
//          its heap levels, all_to_all_seconds(), members_per_node(), bus_bandwidth_factor(),
//          members_by_node(), NcclCost, nccl_cost(), software_latency_s(), choose_algorithm(),
//          ring_hop_latency(), collective_alpha_beta_seconds(), collective_seconds(),
//          CollectiveChoice, choose_collective()
#pragma once

#include <string>
#include <vector>

#include "profiler/efficiency.hpp"
#include "strategies/plan.hpp"
#include "strategies/spec.hpp"

namespace strata::profiler {

// Where ranks live, for algorithms that treat the node's fabric and the network differently.
struct NodeMap {
  std::vector<int> node_of_rank;   // by rank
  double intra_latency_s = 0;      // one hop inside a node
  double intra_bandwidth_Bps = 0;  // per GPU port, per direction
  double inter_latency_s = 0;      // one hop between nodes
  double inter_bandwidth_Bps = 0;  // per NIC, per direction
  // Collectives pay NCCL's software latency (LinkEfficiencies::nccl_latency on a GPU cluster;
  // CPU clusters run MPI: no NCCL model), and whether its intra-node hops are NVLink (else PCIe).
  bool nccl = false;
  bool intra_nvlink = true;
};

// The node map the collective algorithms choose with, for the first `world_size` GPUs of
// `cluster`: ranks fill the node groups in order, nodes in order, GPUs in order (as the
// simulator's platform places them). The first node group's fabric stands for every node's
// (algorithm choice only; simulated flows see each link's own bandwidth); bandwidths are the
// line rates scaled by `links`.
NodeMap node_map(const strategies::ClusterSpec& cluster, int world_size,
                 const LinkEfficiencies& links);

// The algorithm of a collective. kAuto: what choose_algorithm() takes (for all-reduce,
// all-gather and reduce-scatter the smallest alpha-beta time among those that apply, what NCCL's
// tuner does); the others force one (tests, studies).
//  kRing:         all-reduce, all-gather, reduce-scatter as rings; broadcast as a chain and the
//                 ring shift (their only algorithms).
//  kHierarchical: all-reduce, all-gather, reduce-scatter: rings inside the nodes and across
//                 them (hierarchical_phases); all-to-all: the rail-aligned two-phase exchange
//                 of NCCL's PXN (all_to_all_seconds).
//  kTree:         all-reduce: chains inside the nodes, a binary tree across them.
//  kAllPairs:     all-to-all: every pair's transfer in flight at once (NCCL's grouped
//                 ncclSend/ncclRecv, what ncclAllToAll and nccl-tests' alltoall_perf run).
//  kPairwise:     all-to-all: n-1 rounds; in round r member i sends to member i+r and receives
//                 from member i-r (mod n), once it and its peer finished round r-1 (MPI's
//                 pairwise exchange for long messages).
enum class Algorithm { kAuto, kRing, kHierarchical, kTree, kAllPairs, kPairwise };

// "auto", "ring", "hierarchical", "tree", "all_pairs", "pairwise".
const char* algorithm_name(Algorithm a);
// The algorithm named `name` (as algorithm_name() spells it); ConfigError naming `field`, the
// value and the names accepted otherwise.
Algorithm parse_algorithm(const std::string& name, const std::string& field);

// The alpha-beta time of the flat algorithm of `kind` over n ranks (all-reduce and all-gather /
// reduce-scatter as rings, all-to-all as all pairs at once, broadcast as a chain;
// sim/collectives.hpp) on
// uncontended links of latency `alpha_s` and bandwidth `bandwidth_Bps` per direction (what the
// simulation must reproduce exactly).
double alpha_beta_seconds(strategies::CollectiveKind kind, int n, double bytes, double alpha_s,
                          double bandwidth_Bps);

// One phase of a hierarchical collective: rings inside every node, or rings across the nodes'
// j-th members, of `steps` steps of `chunk` bytes.
struct HierarchicalPhase {
  bool inside_nodes;
  int steps;
  double chunk;
};

// The phases of the hierarchical algorithm over k nodes of m members (S = bytes):
//  all-reduce:     reduce-scatter inside (m-1 steps of S/m), all-reduce across (2(k-1) of
//                  S/(mk)), all-gather inside (m-1 of S/m);
//  reduce-scatter: reduce-scatter inside, then reduce-scatter across (k-1 of S/(mk));
//  all-gather:     all-gather across (k-1 of S/(mk)), then all-gather inside.
// Empty for the other kinds.
std::vector<HierarchicalPhase> hierarchical_phases(strategies::CollectiveKind kind, int k, int m,
                                                   double bytes);

// Alpha-beta time of the hierarchical form of `kind` (all-reduce, all-gather, reduce-scatter)
// of S bytes over k nodes of m members:
//  all-reduce:      2(m-1)(a_in + S/(m B_in)) + 2(k-1)(a_net + S/(m k B_net))
//  all-gather / RS:  (m-1)(a_in + S/(m B_in)) +  (k-1)(a_net + S/(m k B_net))
double hierarchical_seconds(strategies::CollectiveKind kind, int k, int m, double bytes,
                            const NodeMap& nodes);

// Alpha-beta time of the tree all-reduce of S bytes over k > 1 nodes of m members. Reduce: a
// chain inside every node from its last member to its first (the leader), then a binary tree
// over the leaders in heap order (node i's parent is (i-1)/2), one level at a time from the
// deepest; broadcast: the same in reverse. Every hop moves S; the two children of a parent share
// its NIC, so level d (c_d = min(2, nodes at depth d)) takes a_net + c_d S / B_net:
//  2 (m-1)(a_in + S/B_in) + 2 sum_{d=1..floor(log2 k)} (a_net + c_d S/B_net)
// The flows are not pipelined in chunks as NCCL's are, so the tree is only faithful where it
// wins, for latency-bound messages (docs/simulator.md).
double tree_seconds(int k, int m, double bytes, const NodeMap& nodes);

// Alpha-beta time of an all-to-all of S bytes (nccl-tests "size": b = S/n from every member to
// every other) over a group with members_per_node[x] members on its x-th node (one entry: a
// group inside one node), on uncontended links where every member has a NIC of its own (the
// test clusters; members sharing a NIC share its bandwidth in the simulation, not here). With
// c = the fewest members on a node, m = members per node where all nodes hold the same number,
// k = nodes:
//  all pairs, one node:       a_in + (n-1) b/B_in   (n-1 flows share each member's port)
//  all pairs, k > 1 nodes:    max(a_in + (c'-1) b/B_in, a_net + (n-c) b/B_net), c' = the most
//                             members on a node (the intra term only where c' > 1): intra-node
//                             flows use the NVSwitch ports, inter-node flows the NICs
//  pairwise, one node:        (n-1)(a_in + b/B_in)  (one flow per port per round)
//  pairwise, k > 1 nodes:     (n-1)(a_net + b/B_net) (every round has a flow crossing the
//                             network, and each such flow waits for one of the round before;
//                             assumes the network hop is the slower, as on every cluster)
//  hierarchical (k > 1 nodes of m > 1): a_in + (m-1) k b/B_in + a_net + (k-1) m b/B_net
//                             (phase 1 inside the nodes: member (a,j) sends member (a,l) the k
//                             blocks for the l-th members of all nodes, its own node's
//                             included; phase 2 on rail l: (a,l) sends (b,l) the m blocks of
//                             node a for it)
// ConfigError-free: STRATA_CHECK for an algorithm that is not an all-to-all's or a
// hierarchical one over nodes of unequal or single members.
double all_to_all_seconds(Algorithm algorithm, const std::vector<int>& members_per_node,
                          double bytes, const NodeMap& nodes);

// Heap-order levels of a binary tree over k nodes: depth d holds nodes
// [tree_level_begin(d), tree_level_end(d, k)); the deepest level is tree_depth(k).
int tree_depth(int k);
int tree_level_begin(int d);
int tree_level_end(int d, int k);

// nccl-tests' bus-bandwidth factor: busbw = algbw * factor (all-reduce 2(n-1)/n, all-gather and
// reduce-scatter and all-to-all (n-1)/n, broadcast 1).
double bus_bandwidth_factor(strategies::CollectiveKind kind, int n);

// How many of `ranks` (ascending) each node holds, in node order (nodes without a member left
// out).
std::vector<int> members_per_node(const std::vector<int>& ranks, const NodeMap& nodes);

// The group's members (ranks, ascending) per node, if every node holds the same number of them
// and there are at least two nodes; else empty.
std::vector<std::vector<int>> members_by_node(const std::vector<int>& ranks, const NodeMap& nodes);

// NCCL's own estimate of a collective (its tuning model: src/graph/tuning.cc of NCCL 2.7-2.8,
// the library of 2020-21; docs/simulator.md "Collectives as flows"): a latency per call and one
// per ring step or tree level, by algorithm, protocol and hop (NVLink, PCIe, network), plus the
// bytes at the protocol's share of the bandwidth. Of its protocols, LL (low latency, a quarter
// of the bandwidth on rings across nodes or all-reduces, else a third; 1/3.8 on trees) and
// Simple (the full bandwidth) are modelled; LL128 is not. The protocol is the faster of the two,
// as NCCL's tuner picks. `bandwidth_s` is the collective's time at the full bandwidth without
// latencies (the simulated flows' share of it); k nodes of `per_node` members (k = 1: one
// node); `algorithm` kTree for NCCL's tree, anything else for its ring (NCCL has no separate
// hierarchical algorithm: its rings cross each node once per channel).
struct NcclCost {
  bool ll = false;        // the protocol chosen: LL, else Simple
  double latency_s = 0;   // NCCL's latency term for it
  double seconds = 0;     // latency + bytes at the protocol's bandwidth
};
NcclCost nccl_cost(strategies::CollectiveKind kind, Algorithm algorithm, int n, int k,
                   int per_node, double bytes, double bandwidth_s, const NodeMap& nodes);

// The software latency NCCL adds to a collective of `kind` over `ranks` (ascending) whose
// simulated flows take `alpha_beta_s` (of which `bandwidth_s` at the bandwidth) with
// `algorithm`: NCCL's estimate minus the flows' time, never negative (the links' latencies are
// the wire's; NCCL's per-step latencies include its software). 0 where NCCL does not run the
// collective or the link efficiencies leave its model off (CPU clusters; LinkEfficiencies::
// nccl_latency false; ring shifts, all-to-all and broadcast, which are point-to-point
// transfers in NCCL and outside its tuning model).
double software_latency_s(strategies::CollectiveKind kind, Algorithm algorithm,
                          const std::vector<int>& ranks, double bytes, double alpha_beta_s,
                          double bandwidth_s, const NodeMap& nodes);

// The algorithm the simulator runs for `kind` over `ranks` (ascending) when none is forced: the
// ring, unless `nodes` is given and the group spans k > 1 nodes with the same number m of
// members on each, where an all-reduce, all-gather or reduce-scatter runs hierarchically (m > 1)
// and an all-reduce as a tree when that time is strictly smaller than the flat ring's over the
// network (compared in the order ring, hierarchical, tree). The time compared is the alpha-beta
// time plus NCCL's software latency (software_latency_s) where NCCL runs the collective.
// An all-to-all runs as all pairs at once (kAllPairs: what NCCL's all-to-all is, grouped
// send/recv), except over k > 1 nodes of the same m > 1 members with `nodes` given, where it runs
// hierarchically (kHierarchical): NCCL routes a send to a GPU on another rail through the
// NVLink peer on the destination's rail (PXN, on by default since NCCL 2.12, which uses it "as
// much as possible to maximize aggregation", NCCL_P2P_PXN_LEVEL=2). Not by time: on our fabric
// both put the same bytes on the NICs and the relay adds an NVLink hop, so the alpha-beta time
// never favours it; PXN's gain is fewer, larger network messages and rail-local traffic, which
// docs/simulator.md "All-to-all" discusses. Pairwise is forced only.
Algorithm choose_algorithm(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                           double bytes, const NodeMap* nodes);

// The route latency of one hop of a ring over `ranks`: the intra-node latency of their node
// group when they share a node, else the network's.
double ring_hop_latency(const strategies::ClusterSpec& cluster,
                        const std::vector<int>& node_of_rank, const std::vector<int>& ranks);

// The alpha-beta time of the algorithm the simulator chooses for `kind` over `ranks` (ascending
// cluster GPU indices) of `bytes` (nccl-tests "size") on `cluster` with `links`: the tree or
// the hierarchical form at their formulas; the flat algorithm at the intra-node latency and
// bandwidth of the ranks' node group when they share a node, else at the network's. Uncontended
// links: the simulation equals it when nothing else shares the group's links
// (tests/sim "CostModelLinkFace"). 0 for a group of one.
double collective_alpha_beta_seconds(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                                     double bytes, const strategies::ClusterSpec& cluster,
                                     const LinkEfficiencies& links);

// What the simulator runs for that collective on uncontended links: its flows' alpha-beta time
// plus the software latency it adds after them (software_latency_s). The cost model's
// collective_seconds().
double collective_seconds(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                          double bytes, const strategies::ClusterSpec& cluster,
                          const LinkEfficiencies& links);

// What the simulator runs for `kind` over `ranks` (ascending) of `bytes`: the algorithm
// choose_algorithm() takes with `choosing` (nullptr: the ring), and the software latency it adds
// after that algorithm's flows, on `cluster` with `links` (one-node groups use their own node
// group's fabric); `nodes` places the ranks. Chosen once, passed to sim::plan_collective.
struct CollectiveChoice {
  Algorithm algorithm = Algorithm::kRing;
  double software_latency_s = 0;
};
// `forced` (not kAuto) replaces the choice: its flows' time and software latency instead.
CollectiveChoice choose_collective(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                                   double bytes, const strategies::ClusterSpec& cluster,
                                   const LinkEfficiencies& links, const NodeMap& nodes,
                                   const NodeMap* choosing, Algorithm forced = Algorithm::kAuto);

}  // namespace strata::profiler
