// The flat routing zone of a Strata platform (sim/platform.cpp builds it): a route follows from
// where its two ranks attach to the fabric, with no route table, and a bundle host's route stands
// for the copies of a flow under a symmetry of the fabric (folding by symmetry,
// docs/simulator.md "Scale"). Internal to sim/.
#pragma once

#include <simgrid/kernel/routing/NetPoint.hpp>
#include <simgrid/kernel/routing/NetZoneImpl.hpp>
#include <simgrid/s4u.hpp>
#include <string>
#include <vector>

namespace strata::sim::detail {

// The two directions of a split-duplex link: `up` leaves its owner (a GPU, a NIC, an edge
// switch) towards the switch above it, `down` comes back.
struct Port {
  simgrid::s4u::Link* up = nullptr;
  simgrid::s4u::Link* down = nullptr;
};

// Where one rank attaches to the fabric.
struct Attachment {
  int node = -1;
  // A rank to itself: a copy in the device's memory.
  simgrid::s4u::Link* loopback = nullptr;
  // GPU <-> the node's NVSwitch (or PCIe switch).
  Port intra;
  // The GPU's NIC (index `nic` on its node, -1 without a network) <-> its edge switch; shared by
  // the GPUs of that NIC.
  int nic = -1;
  Port nic_port;
  // Edge switch: the leaf (fat tree) or the rail (rail-optimized), and its uplink to the spine.
  int edge = -1;
  Port edge_uplink;
  // Folding by symmetry: whether this rank's port (and loopback), its NIC and its edge uplink
  // are the representatives of their orbits (FabricZone::set_orbits). All true otherwise.
  bool rep_intra = true, rep_nic = true, rep_edge = true;
};

// A routing zone with no route table: the route between two ranks follows from their
// attachments. SimGrid's stock zones either store N^2 routes (full), cost O(V^3) to seal
// (Floyd), or pick arbitrarily among paths of equal link count (Dijkstra: the NVSwitch path and
// a NIC path between two GPUs of one node both have two links). None fits a fabric with a NIC per
// GPU and thousands of GPUs.
//
// Routes: a rank to itself [its loopback]; same node [src port up, dst port down]; different
// nodes [src NIC up, (src edge uplink up, dst edge uplink down when the edge switches differ),
// dst NIC down]. Latency is the sum of the links' latencies, as SimGrid expects.
//
// Folding by symmetry. set_orbits() takes disjoint orbits of ranks, each listed in cyclic order
// [x_0, ..., x_{k-1}], that cover the world; sigma maps x_i to x_{i+1 mod k}. The fabric is
// symmetric under sigma when every orbit lies on one node and sigma, acting on the GPUs, maps
// GPUs that share a NIC to GPUs that share a NIC (with rails: the same NIC permutation on every
// node), so that it maps every link onto a link of the same bandwidth and latency. Each link
// orbit then gets one representative: the port of x_0, the NIC of an x_0, every leaf uplink
// (sigma keeps nodes, hence leaves), the rail of an x_0's NIC; set_orbits() checks that each
// link orbit has exactly one. A route from bundle host x (an orbit's x_0) to rank y stands for
// the k flows sigma^c(x) -> sigma^c(y): it holds every representative link once for each copy
// whose route crosses it (SimGrid then counts that link's use by the flow that many times: a
// consumption weight), and its latency is the route x -> y's. When everything that loads the
// fabric is a set of such bundles, the max-min shares of the unfolded flows are sigma-symmetric,
// so each copy runs at its bundle's rate and every representative link carries exactly what it
// would carry unfolded.
class FabricZone final : public simgrid::kernel::routing::NetZoneImpl {
 public:
  explicit FabricZone(const std::string& name) : NetZoneImpl(name) {}

  // Rank `rank` runs on `host` and attaches as `a`; ranks are attached in order 0, 1, ...
  void attach_rank(int rank, const simgrid::s4u::Host& host, const Attachment& a);
  // Sets the orbits of sigma and the representative links when the fabric is symmetric under
  // sigma (see above); returns false, changing nothing, when it is not (or the orbits do not
  // partition the attached ranks into orbits of one size k >= 2). `rails`: edge switches are
  // rails (one per NIC index) rather than leaves of whole nodes.
  bool set_orbits(const std::vector<std::vector<int>>& orbits, bool rails);
  // `host` is the bundle host of rank `rank`, the first of its orbit (after set_orbits()).
  void attach_bundle(int rank, const simgrid::s4u::Host& host);

 protected:
  void get_local_route(const simgrid::kernel::routing::NetPoint* src,
                       const simgrid::kernel::routing::NetPoint* dst,
                       simgrid::kernel::routing::Route* into, double* latency) override;

 private:
  // Calls f(link, is_representative) for each link of the route from rank s to rank d.
  template <class F>
  void for_each_link(int s, int d, F&& f) const;
  int shift(int rank, int c) const;  // sigma^c(rank)
  // Rank of a rank's host (>= 0), or -2 - rank for a bundle host; throws for other netpoints.
  int endpoint(const simgrid::kernel::routing::NetPoint* np) const;

  std::vector<Attachment> ranks_;
  std::vector<int> endpoint_of_netpoint_;  // by netpoint id; -1: none
  std::vector<std::vector<int>> orbits_;
  std::vector<int> orbit_of_, position_;  // by rank
};

}  // namespace strata::sim::detail
