// The link face's formulas (link_model.hpp); moved unchanged from sim/collectives.cpp so that
// the cost model and the simulator share them.
#include "profiler/link_model.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace strata::profiler {

using strategies::CollectiveKind;

NodeMap node_map(const strategies::ClusterSpec& cluster, int world_size,
                 const LinkEfficiencies& links) {
  NodeMap m;
  m.node_of_rank.reserve(std::max(0, world_size));
  int node = 0;
  for (const strategies::NodeGroup& group : cluster.node_groups) {
    for (int n = 0; n < group.nodes && static_cast<int>(m.node_of_rank.size()) < world_size;
         ++n, ++node) {
      for (int g = 0;
           g < group.gpus_per_node && static_cast<int>(m.node_of_rank.size()) < world_size; ++g) {
        m.node_of_rank.push_back(node);
      }
    }
  }
  STRATA_CHECK(static_cast<int>(m.node_of_rank.size()) == world_size,
               "node_map: world_size exceeds the cluster's GPUs");
  const auto& intra = cluster.node_groups.front().intra_node;
  m.intra_latency_s = intra.latency_s;
  m.intra_bandwidth_Bps = intra.bandwidth_Bps * links.intra(intra.kind);
  m.inter_latency_s = cluster.inter_node.latency_s;
  m.inter_bandwidth_Bps = cluster.inter_node.nic_bandwidth_Bps * links.network;
  return m;
}

double alpha_beta_seconds(CollectiveKind kind, int n, double bytes, double alpha_s,
                          double bandwidth_Bps) {
  if (n <= 1) return 0;
  switch (kind) {
    case CollectiveKind::kAllReduce:
      return 2.0 * (n - 1) * (alpha_s + bytes / n / bandwidth_Bps);
    case CollectiveKind::kAllGather:
    case CollectiveKind::kReduceScatter:
      return (n - 1) * (alpha_s + bytes / n / bandwidth_Bps);
    case CollectiveKind::kAllToAll:
      // n-1 flows share each rank's up link: (n-1) S/n through one link after one latency.
      return alpha_s + (n - 1) * (bytes / n) / bandwidth_Bps;
    case CollectiveKind::kBroadcast:
      return (n - 1) * (alpha_s + bytes / bandwidth_Bps);
    case CollectiveKind::kRingShift:  // every member sends its whole buffer once, at once
      return alpha_s + bytes / bandwidth_Bps;
    case CollectiveKind::kNone:
      return 0;
  }
  return 0;
}

std::vector<HierarchicalPhase> hierarchical_phases(CollectiveKind kind, int k, int m,
                                                   double bytes) {
  const HierarchicalPhase inside{true, m - 1, bytes / m};
  switch (kind) {
    case CollectiveKind::kAllReduce:
      return {inside, {false, 2 * (k - 1), bytes / m / k}, inside};
    case CollectiveKind::kReduceScatter:
      return {inside, {false, k - 1, bytes / m / k}};
    case CollectiveKind::kAllGather:
      return {{false, k - 1, bytes / m / k}, inside};
    default:
      return {};
  }
}

double hierarchical_seconds(CollectiveKind kind, int k, int m, double bytes, const NodeMap& nodes) {
  double total = 0;
  for (const HierarchicalPhase& p : hierarchical_phases(kind, k, m, bytes)) {
    const double alpha = p.inside_nodes ? nodes.intra_latency_s : nodes.inter_latency_s;
    const double bw = p.inside_nodes ? nodes.intra_bandwidth_Bps : nodes.inter_bandwidth_Bps;
    total += p.steps * (alpha + p.chunk / bw);
  }
  return total;
}

int tree_depth(int k) {
  int d = 0;
  while ((2 << d) - 1 < k) ++d;
  return d;
}
int tree_level_begin(int d) { return (1 << d) - 1; }
int tree_level_end(int d, int k) { return std::min((2 << d) - 1, k); }

double tree_seconds(int k, int m, double bytes, const NodeMap& nodes) {
  double total = 2.0 * (m - 1) * (nodes.intra_latency_s + bytes / nodes.intra_bandwidth_Bps);
  const int depth = tree_depth(k);
  for (int d = 1; d <= depth; ++d) {
    const int children = std::min(2, tree_level_end(d, k) - tree_level_begin(d));
    total += 2.0 * (nodes.inter_latency_s + children * bytes / nodes.inter_bandwidth_Bps);
  }
  return total;
}

double bus_bandwidth_factor(CollectiveKind kind, int n) {
  switch (kind) {
    case CollectiveKind::kAllReduce:
      return 2.0 * (n - 1) / n;
    case CollectiveKind::kAllGather:
    case CollectiveKind::kReduceScatter:
    case CollectiveKind::kAllToAll:
      return static_cast<double>(n - 1) / n;
    case CollectiveKind::kBroadcast:
    case CollectiveKind::kRingShift:
    case CollectiveKind::kNone:
      return 1.0;
  }
  return 1.0;
}

std::vector<std::vector<int>> members_by_node(const std::vector<int>& ranks, const NodeMap& nodes) {
  std::vector<std::vector<int>> out;
  for (int r : ranks) {
    const int node = nodes.node_of_rank[r];
    if (out.empty() || nodes.node_of_rank[out.back().front()] != node) {
      out.emplace_back();
    }
    out.back().push_back(r);
  }
  if (out.size() < 2) return {};
  for (const auto& v : out) {
    if (v.size() != out.front().size()) return {};
  }
  // Ranks are ascending and a node's ranks are contiguous, so each node appears once.
  return out;
}

Algorithm choose_algorithm(CollectiveKind kind, const std::vector<int>& ranks, double bytes,
                           const NodeMap* nodes) {
  const int n = static_cast<int>(ranks.size());
  const bool ringlike = kind == CollectiveKind::kAllReduce || kind == CollectiveKind::kAllGather ||
                        kind == CollectiveKind::kReduceScatter;
  if (n <= 1 || !ringlike || nodes == nullptr) return Algorithm::kRing;
  const std::vector<std::vector<int>> by_node = members_by_node(ranks, *nodes);
  const bool can_hierarchical = !by_node.empty() && by_node.front().size() > 1;
  const bool can_tree = !by_node.empty() && kind == CollectiveKind::kAllReduce;
  if (!can_hierarchical && !can_tree) return Algorithm::kRing;
  const int k = static_cast<int>(by_node.size());
  const int m = static_cast<int>(by_node.front().size());
  // Strictly faster only, in the order ring, hierarchical, tree.
  Algorithm algorithm = Algorithm::kRing;
  double best =
      alpha_beta_seconds(kind, n, bytes, nodes->inter_latency_s, nodes->inter_bandwidth_Bps);
  if (can_hierarchical) {
    const double h = hierarchical_seconds(kind, k, m, bytes, *nodes);
    if (h < best) best = h, algorithm = Algorithm::kHierarchical;
  }
  if (can_tree && tree_seconds(k, m, bytes, *nodes) < best) algorithm = Algorithm::kTree;
  return algorithm;
}

double ring_hop_latency(const strategies::ClusterSpec& cluster,
                        const std::vector<int>& node_of_rank, const std::vector<int>& ranks) {
  const int node = node_of_rank[ranks.front()];
  for (int r : ranks) {
    if (node_of_rank[r] != node) return cluster.inter_node.latency_s;
  }
  return cluster.group_of_gpu(ranks.front()).intra_node.latency_s;
}

double collective_alpha_beta_seconds(CollectiveKind kind, const std::vector<int>& ranks,
                                     double bytes, const strategies::ClusterSpec& cluster,
                                     const LinkEfficiencies& links) {
  const int n = static_cast<int>(ranks.size());
  if (n <= 1) return 0;
  STRATA_CHECK(std::is_sorted(ranks.begin(), ranks.end()) && ranks.front() >= 0 &&
                   ranks.back() < cluster.total_gpus(),
               "collective_seconds: ranks must be ascending GPU indices of the cluster");
  // Only the group's ranks are looked up: the map need not reach past the last of them.
  const NodeMap nodes = node_map(cluster, ranks.back() + 1, links);
  const NodeMap* choosing = cluster.total_nodes() > 1 ? &nodes : nullptr;
  const Algorithm algorithm = choose_algorithm(kind, ranks, bytes, choosing);
  if (algorithm == Algorithm::kHierarchical || algorithm == Algorithm::kTree) {
    const auto by_node = members_by_node(ranks, nodes);
    const int k = static_cast<int>(by_node.size());
    const int m = static_cast<int>(by_node.front().size());
    return algorithm == Algorithm::kTree ? tree_seconds(k, m, bytes, nodes)
                                         : hierarchical_seconds(kind, k, m, bytes, nodes);
  }
  const int node = nodes.node_of_rank[ranks.front()];
  const bool one_node =
      std::all_of(ranks.begin(), ranks.end(), [&](int r) { return nodes.node_of_rank[r] == node; });
  if (one_node) {
    const strategies::IntraNodeSpec& intra = cluster.group_of_gpu(ranks.front()).intra_node;
    return alpha_beta_seconds(kind, n, bytes, intra.latency_s,
                              intra.bandwidth_Bps * links.intra(intra.kind));
  }
  return alpha_beta_seconds(kind, n, bytes, nodes.inter_latency_s, nodes.inter_bandwidth_Bps);
}

}  // namespace strata::profiler
