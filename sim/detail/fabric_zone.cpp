// The flat routing zone and its bundle routes (fabric_zone.hpp).
#include "sim/detail/fabric_zone.hpp"

#include <algorithm>
#include <stdexcept>

#include "common/error.hpp"

namespace strata::sim::detail {

using simgrid::kernel::routing::NetPoint;
using simgrid::kernel::routing::Route;

void FabricZone::attach_rank(int rank, const simgrid::s4u::Host& host, const Attachment& a) {
  STRATA_CHECK(rank == static_cast<int>(ranks_.size()), "ranks attach in order");
  ranks_.push_back(a);
  const unsigned long id = host.get_netpoint()->id();
  if (endpoint_of_netpoint_.size() <= id) endpoint_of_netpoint_.resize(id + 1, -1);
  endpoint_of_netpoint_[id] = rank;
}

void FabricZone::attach_bundle(int rank, const simgrid::s4u::Host& host) {
  STRATA_CHECK(!orbits_.empty() && position_.at(rank) == 0,
               "a bundle host belongs to the first rank of an orbit");
  const unsigned long id = host.get_netpoint()->id();
  if (endpoint_of_netpoint_.size() <= id) endpoint_of_netpoint_.resize(id + 1, -1);
  endpoint_of_netpoint_[id] = -2 - rank;
}

int FabricZone::shift(int rank, int c) const {
  const std::vector<int>& orbit = orbits_[orbit_of_[rank]];
  return orbit[(position_[rank] + c) % orbit.size()];
}

bool FabricZone::set_orbits(const std::vector<std::vector<int>>& orbits, bool rails) {
  const int n = static_cast<int>(ranks_.size());
  if (orbits.empty() || orbits.front().size() < 2) return false;
  const std::size_t k = orbits.front().size();
  std::vector<int> orbit_of(n, -1), position(n, -1);
  for (std::size_t o = 0; o < orbits.size(); ++o) {
    if (orbits[o].size() != k) return false;
    for (std::size_t i = 0; i < k; ++i) {
      const int r = orbits[o][i];
      if (r < 0 || r >= n || orbit_of[r] >= 0) return false;
      if (ranks_[r].node != ranks_[orbits[o].front()].node) return false;  // sigma keeps nodes
      orbit_of[r] = static_cast<int>(o);
      position[r] = static_cast<int>(i);
    }
  }
  if (std::find(orbit_of.begin(), orbit_of.end(), -1) != orbit_of.end()) return false;
  const auto sigma = [&](int r) { return orbits[orbit_of[r]][(position[r] + 1) % k]; };

  // NICs: sigma must map GPUs sharing a NIC to GPUs sharing a NIC, i.e. induce a permutation pi
  // of each node's NICs (with rails, one pi for every node: the rails are shared), and each pi
  // orbit must hold exactly one representative NIC (the NIC of an orbit's first rank).
  const bool network = ranks_.front().nic >= 0;
  int nodes = 0, nics = 0;
  for (const Attachment& a : ranks_) {
    nodes = std::max(nodes, a.node + 1);
    nics = std::max(nics, a.nic + 1);
  }
  std::vector<std::vector<char>> rep(nodes, std::vector<char>(std::max(nics, 1), 0));
  std::vector<char> rep_rail(std::max(nics, 1), 0);
  if (network) {
    std::vector<std::vector<int>> pi(rails ? 1 : nodes, std::vector<int>(nics, -1));
    std::vector<std::vector<char>> used(nodes, std::vector<char>(nics, 0));
    for (int r = 0; r < n; ++r) {
      int& image = pi[rails ? 0 : ranks_[r].node][ranks_[r].nic];
      const int to = ranks_[sigma(r)].nic;
      if (image >= 0 && image != to) return false;
      image = to;
      used[ranks_[r].node][ranks_[r].nic] = 1;
    }
    for (const auto& orbit : orbits) {
      rep[ranks_[orbit.front()].node][ranks_[orbit.front()].nic] = 1;
      rep_rail[ranks_[orbit.front()].nic] = 1;
    }
    // Exactly one representative in the pi orbit of every NIC in use.
    const auto one_rep = [&](const std::vector<int>& p, const std::vector<char>& reps, int u) {
      int m = u, count = 0;
      for (int step = 0; step <= nics; ++step) {
        count += reps[m];
        m = p[m];
        if (m < 0) return false;
        if (m == u) return count == 1;
      }
      return false;
    };
    for (int node = 0; node < nodes; ++node) {
      for (int u = 0; u < nics; ++u) {
        if (!used[node][u]) continue;
        if (!one_rep(pi[rails ? 0 : node], rep[node], u)) return false;
        // A rail's uplink is every node's: its representatives must agree across nodes.
        if (rails && (!one_rep(pi[0], rep_rail, u) || rep[node][u] != rep_rail[u])) return false;
      }
    }
  }
  orbits_ = orbits;
  orbit_of_ = std::move(orbit_of);
  position_ = std::move(position);
  for (int r = 0; r < n; ++r) {
    Attachment& a = ranks_[r];
    a.rep_intra = position_[r] == 0;
    a.rep_nic = !network || rep[a.node][a.nic];
    a.rep_edge = !network || !rails || rep_rail[a.nic];  // a leaf is its own orbit
  }
  return true;
}

template <class F>
void FabricZone::for_each_link(int s, int d, F&& f) const {
  const Attachment& a = ranks_[s];
  const Attachment& b = ranks_[d];
  if (s == d) {
    f(a.loopback, a.rep_intra);
    return;
  }
  if (a.node == b.node) {
    f(a.intra.up, a.rep_intra);
    f(b.intra.down, b.rep_intra);
    return;
  }
  f(a.nic_port.up, a.rep_nic);
  if (a.edge != b.edge) {
    f(a.edge_uplink.up, a.rep_edge);
    f(b.edge_uplink.down, b.rep_edge);
  }
  f(b.nic_port.down, b.rep_nic);
}

int FabricZone::endpoint(const NetPoint* np) const {
  const int e = np->id() < endpoint_of_netpoint_.size() ? endpoint_of_netpoint_[np->id()] : -1;
  if (e == -1) {
    throw std::invalid_argument("strata platform: no route to '" + np->get_name() +
                                "' (not a rank's host)");
  }
  return e;
}

void FabricZone::get_local_route(const NetPoint* src, const NetPoint* dst, Route* into,
                                 double* latency) {
  const int s = endpoint(src);
  const int d = endpoint(dst);
  if (d < 0) {
    throw std::invalid_argument("strata platform: a bundle host ('" + dst->get_name() +
                                "') only sends");
  }
  if (s >= 0) {
    for_each_link(s, d, [&](const simgrid::s4u::Link* link, bool) {
      into->link_list_.push_back(link->get_impl());
      if (latency != nullptr) *latency += link->get_latency();
    });
    return;
  }
  // A bundle: the copies' representative links, the latency of one copy.
  const int x = -2 - s;
  if (latency != nullptr) {
    for_each_link(x, d,
                  [&](const simgrid::s4u::Link* link, bool) { *latency += link->get_latency(); });
  }
  const int k = static_cast<int>(orbits_.front().size());
  for (int c = 0; c < k; ++c) {
    for_each_link(shift(x, c), shift(d, c), [&](const simgrid::s4u::Link* link, bool rep) {
      if (rep) into->link_list_.push_back(link->get_impl());
    });
  }
}

}  // namespace strata::sim::detail
