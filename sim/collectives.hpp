// Collectives as the flows of real algorithms. A FlowSchedule is a small DAG of point-to-point
// flows between the group's ranks; the simulator starts each flow when its predecessors are done
// and lets SimGrid share the links, so contention comes from the flow model, not a formula.
// The algorithms' alpha-beta formulas and the choice among them are the cost model's link face
// (profiler/link_model.hpp, pure); this file builds the flows of the algorithm chosen there.
//
// Algorithms (n ranks in the group, S = nccl-tests "size", see strategies/plan.hpp):
//  - all-reduce: ring reduce-scatter then ring all-gather: 2(n-1) steps, each rank sends S/n to
//    its successor per step; a rank's step-k send waits for its step-(k-1) receive and send.
//  - all-gather, reduce-scatter: n-1 ring steps of S/n.
//  - all-to-all (any byte matrix, plan_all_to_all; S/n per pair for plan_collective), three
//    algorithms (profiler::Algorithm, formulas in profiler::all_to_all_seconds):
//    all pairs (the default): every member sends to every other at once, n(n-1) flows, as NCCL's
//      all-to-all does (ncclSend/ncclRecv to every peer inside one ncclGroupStart/End);
//    pairwise: n-1 rounds; in round r member i sends its block to member i+r and receives from
//      member i-r (mod n); the transfer i -> i+r starts when both its ends finished their
//      round r-1 transfers (MPI's pairwise exchange, a sendrecv per round; Thakur, Rabenseifner
//      and Gropp, "Optimization of collective communication operations in MPICH", IJHPCA 2005);
//    hierarchical (k > 1 nodes of the same m > 1 members; the default there): the rail-aligned
//      two-phase exchange of NCCL's PXN (NCCL 2.12). Member (a,j) (node a, local index j)
//      sends member (a,l) of its own node, over NVLink, everything it has for the l-th members
//      of all nodes (its own node's l-th member included: that part is delivered); then (a,l),
//      once all its node's data for rail l is in, sends each (b,l), b != a, over the network
//      what node a has for it: one message per pair of nodes and rail, the NICs used rail to
//      rail. DeepEP's inter-node dispatch runs the same two hops the other way round (RDMA to
//      the same local index on the destination node, then NVLink); the bytes on every link
//      class are the same.
//  - broadcast: a chain from the first rank, S per hop.
// The ring follows the group's rank order, so consecutive ranks of a node are neighbours and a
// group spanning k nodes crosses the network k times per step, as NCCL's rings do.
// For groups spanning nodes (with a NodeMap) all-reduce, all-gather and reduce-scatter may run
// hierarchically, and all-reduce as a tree (NCCL's tree: a chain inside each node, a binary tree
// across the nodes), whichever has the smallest alpha-beta time.
#pragma once

#include <vector>

#include "profiler/expert_routing.hpp"
#include "profiler/link_model.hpp"
#include "strategies/plan.hpp"

namespace strata::sim {

// The formulas and the choice, from the profiler's link model.
using profiler::Algorithm;
using profiler::all_to_all_seconds;
using profiler::alpha_beta_seconds;
using profiler::bus_bandwidth_factor;
using profiler::ByteMatrix;
using profiler::hierarchical_seconds;
using profiler::NodeMap;
using profiler::tree_seconds;

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
  // Flows with no predecessor; flows with no successor.
  std::vector<int> initial() const;
  std::vector<int> sinks() const;
  // Marks `f` done and returns the flows that become ready.
  std::vector<int> complete(int f);
  bool done() const { return completed_ == size(); }

 private:
  std::vector<Flow> flows_;
  std::vector<std::vector<int>> next_;
  std::vector<int> waiting_;
  int completed_ = 0;
};

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
  // An all-to-all runs as all pairs, pairwise or hierarchically (the last with a node map over
  // k > 1 nodes of the same m > 1 members).
  // kAuto takes profiler::choose_algorithm()'s choice. Forcing one that does not apply to the
  // collective or the group is a programming error (STRATA_CHECK).
  const NodeMap* nodes = nullptr;
  Algorithm algorithm = Algorithm::kAuto;
  // NCCL's software latency (profiler::choose_collective): a delay after the last
  // flows, so that the collective takes NCCL's own estimate where that exceeds the flows'.
  double software_latency_s = 0;
};

// The flows of collective `kind` over `ranks` (ascending) for message size `bytes`. Without
// contention they take exactly the chosen algorithm's alpha-beta time (alpha_beta_seconds,
// hierarchical_seconds, tree_seconds; tests/sim), plus detail.software_latency_s.
// An all-to-all is plan_all_to_all with profiler::uniform_byte_matrix(n, bytes).
FlowSchedule plan_collective(strategies::CollectiveKind kind, const std::vector<int>& ranks,
                             double bytes, const FlowDetail& detail = {});

// The flows of an uneven all-to-all (alltoallv) over `ranks` (ascending): member i sends
// bytes[i][j] to member j (positions in `ranks`; profiler::expert_dispatch_bytes builds the
// matrix of a mixture-of-experts dispatch). The diagonal stays with its member (no flow), and
// so does a zero entry (no flow, no latency); a pairwise round keeps its order through the
// transfers it skips. With the uniform matrix and without contention, the flows take
// profiler::all_to_all_seconds() of the chosen algorithm, plus detail.software_latency_s.
// ConfigError (profiler::check_byte_matrix) unless `bytes` is n x n, finite and >= 0.
FlowSchedule plan_all_to_all(const std::vector<int>& ranks, const ByteMatrix& bytes,
                             const FlowDetail& detail = {});

}  // namespace strata::sim
