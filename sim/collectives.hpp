// Collectives as the flows of real algorithms. A FlowSchedule is a small DAG of point-to-point
// flows between the group's ranks; the simulator starts each flow when its predecessors are done
// and lets SimGrid share the links, so contention comes from the flow model, not a formula.
//
// Algorithms (n ranks in the group, S = nccl-tests "size", see strategies/plan.hpp):
//  - all-reduce: ring reduce-scatter then ring all-gather: 2(n-1) steps, each rank sends S/n to
//    its successor per step; a rank's step-k send waits for its step-(k-1) receive and send.
//  - all-gather, reduce-scatter: n-1 ring steps of S/n.
//  - all-to-all: every rank sends S/n to every other rank at once.
//  - broadcast: a chain from the first rank, S per hop.
// The ring follows the group's rank order, so consecutive ranks of a node are neighbours and a
// group spanning k nodes crosses the network k times per step, as NCCL's rings do.
// For groups spanning nodes (with a NodeMap) all-reduce, all-gather and reduce-scatter may run
// hierarchically, and all-reduce as a tree (NCCL's tree: a chain inside each node, a binary tree
// across the nodes), whichever has the smallest alpha-beta time.
#pragma once

#include <vector>

#include "strategies/plan.hpp"

namespace strata::sim {

// A transfer of `bytes` from rank `from` to rank `to`; or, when from < 0, a pure delay of
// `delay_s` seconds (the latency of ring steps folded into one transfer).
struct Flow {
  int from = 0;
  int to = 0;
  double bytes = 0;
  double delay_s = 0;
  bool is_delay() const { return from < 0; }
};

class FlowSchedule {
 public:
  // Adds a flow that starts when all of `after` (earlier flow indices) are done.
  int add(const Flow& f, const std::vector<int>& after);
  int add_delay(double seconds, const std::vector<int>& after) {
    return add({-1, -1, 0, seconds}, after);
  }

  const Flow& flow(int f) const { return flows_[f]; }
  int size() const { return static_cast<int>(flows_.size()); }
  // Flows with no predecessor.
  std::vector<int> initial() const;
  // Marks `f` done and returns the flows that become ready.
  std::vector<int> complete(int f);
  bool done() const { return completed_ == size(); }

 private:
  std::vector<Flow> flows_;
  std::vector<std::vector<int>> next_;
  std::vector<int> waiting_;
  int completed_ = 0;
};

// Where ranks live, for algorithms that treat the node's fabric and the network differently.
struct NodeMap {
  std::vector<int> node_of_rank;   // by rank
  double intra_latency_s = 0;      // one hop inside a node
  double intra_bandwidth_Bps = 0;  // per GPU port, per direction
  double inter_latency_s = 0;      // one hop between nodes
  double inter_bandwidth_Bps = 0;  // per NIC, per direction
};

// The algorithm of a collective. kAuto: the smallest alpha-beta time among those that apply
// (what NCCL's tuner does); the others force one (tests, studies).
enum class Algorithm { kAuto, kRing, kHierarchical, kTree };

// How much detail a collective's flows keep, and what the algorithm choice may use.
struct FlowDetail {
  // Fold a ring's steps: each rank sends its whole share (steps x S/n) to its successor in one
  // flow, all at once, followed by a delay of (steps - 1) x step_latency_s for the latencies of
  // the folded steps. Every link carries the same bytes as in the stepwise ring and, without
  // contention, the time is identical (tests/sim: compact vs full); it takes n flows instead
  // of n x steps.
  bool aggregate_steps = false;
  double step_latency_s = 0;  // the route latency of one ring hop
  // With a node map, an all-reduce, all-gather or reduce-scatter over a group with m > 1
  // members on each of k > 1 nodes may run hierarchically (rings inside the nodes and rings
  // across the nodes' j-th members, each through its own NIC; hierarchical_seconds) --
  // whichever of that and the flat ring has the smaller alpha-beta time, as NCCL's tuner would.
  // An all-reduce over m >= 1 members on each of k > 1 nodes may also run as a tree
  // (tree_seconds), which pays log2(k) network latencies instead of the ring's 2(n-1).
  const NodeMap* nodes = nullptr;
  Algorithm algorithm = Algorithm::kAuto;
};

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

// The flows of collective `kind` over `ranks` (ascending) for message size `bytes`.
FlowSchedule plan_collective(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                             double bytes, const FlowDetail& detail = {});

// nccl-tests' bus-bandwidth factor: busbw = algbw * factor (all-reduce 2(n-1)/n, all-gather and
// reduce-scatter and all-to-all (n-1)/n, broadcast 1).
double bus_bandwidth_factor(strategies::CollectiveKind kind, int n);

// The alpha-beta time of the algorithm above on uncontended links of latency `alpha_s` and
// bandwidth `bandwidth_Bps` per direction (what the simulation must reproduce exactly).
double alpha_beta_seconds(strategies::CollectiveKind kind, int n, double bytes, double alpha_s,
                          double bandwidth_Bps);

}  // namespace strata::sim
