// The link face's formulas (link_model.hpp); moved unchanged from sim/collectives.cpp so that
// the cost model and the simulator share them.
#include "profiler/link_model.hpp"

#include <algorithm>
#include <numeric>

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
  m.intra_bandwidth_Bps = links.intra_bandwidth_Bps(cluster.node_groups.front());
  m.inter_latency_s = cluster.inter_node.latency_s;
  m.inter_bandwidth_Bps = cluster.inter_node.nic_bandwidth_Bps * links.network;
  m.nccl = links.nccl_latency && cluster.node_groups.front().gpu.kind == strategies::DeviceKind::kGpu;
  m.intra_nvlink = intra.kind == strategies::IntraFabric::kNvSwitch;
  return m;
}

const char* algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::kAuto:
      return "auto";
    case Algorithm::kRing:
      return "ring";
    case Algorithm::kHierarchical:
      return "hierarchical";
    case Algorithm::kTree:
      return "tree";
    case Algorithm::kAllPairs:
      return "all_pairs";
    case Algorithm::kPairwise:
      return "pairwise";
  }
  return "?";
}

Algorithm parse_algorithm(const std::string& name, const std::string& field) {
  for (Algorithm a : {Algorithm::kAuto, Algorithm::kRing, Algorithm::kHierarchical,
                      Algorithm::kTree, Algorithm::kAllPairs, Algorithm::kPairwise}) {
    if (name == algorithm_name(a)) return a;
  }
  throw ConfigError(field + " = \"" + name +
                    "\": must be one of auto, ring, hierarchical, tree, all_pairs, pairwise");
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

double all_to_all_seconds(Algorithm algorithm, const std::vector<int>& members_per_node,
                          double bytes, const NodeMap& nodes) {
  STRATA_CHECK(!members_per_node.empty(), "all_to_all_seconds: no members");
  const int k = static_cast<int>(members_per_node.size());
  const int n = std::accumulate(members_per_node.begin(), members_per_node.end(), 0);
  if (n <= 1) return 0;
  const double b = bytes / n;
  const auto [fewest, most] = std::minmax_element(members_per_node.begin(), members_per_node.end());
  const double a_in = nodes.intra_latency_s;
  const double b_in = nodes.intra_bandwidth_Bps;
  const double a_net = nodes.inter_latency_s;
  const double b_net = nodes.inter_bandwidth_Bps;
  switch (algorithm) {
    case Algorithm::kAllPairs: {
      if (k == 1) return a_in + (n - 1) * b / b_in;
      const double net = a_net + (n - *fewest) * b / b_net;
      return *most > 1 ? std::max(net, a_in + (*most - 1) * b / b_in) : net;
    }
    case Algorithm::kPairwise:
      return k == 1 ? (n - 1) * (a_in + b / b_in) : (n - 1) * (a_net + b / b_net);
    case Algorithm::kHierarchical: {
      const int m = *most;
      STRATA_CHECK(k > 1 && m > 1 && *fewest == m,
                   "a hierarchical all-to-all needs the same number (> 1) of members on each of "
                   "two or more nodes");
      return a_in + (m - 1) * k * b / b_in + a_net + (k - 1) * m * b / b_net;
    }
    default:
      STRATA_CHECK(false, "an all-to-all runs as all_pairs, pairwise or hierarchical");
  }
  return 0;
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

std::vector<int> members_per_node(const std::vector<int>& ranks, const NodeMap& nodes) {
  std::vector<int> out;
  int last = -1;
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    const int node = nodes.node_of_rank[ranks[i]];
    if (i == 0 || node != last) out.push_back(0);
    ++out.back();
    last = node;
  }
  return out;
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

namespace {

// NCCL 2.7-2.8's tuning model (src/graph/tuning.cc, ncclTopoTuneModel), in microseconds, for
// the protocols modelled: [tree, ring][LL, Simple]. baseLat: per call; hwLat: per ring step or
// tree level, by hop [NVLink, PCIe, network].
constexpr double kBaseLatUs[2][2] = {{4.4, 0.0}, {3.6, 8.4}};
constexpr double kHwLatUs[3][2][2] = {{{0.52, 28.0}, {0.47, 3.4}},
                                      {{1.0, 28.0}, {1.0, 5.7}},
                                      {{5.0, 50.0}, {2.7, 9.6}}};

int floor_log2(int k) {
  int d = 0;
  while ((2 << d) <= k) ++d;
  return d;
}

bool ncclish(CollectiveKind kind) {
  return kind == CollectiveKind::kAllReduce || kind == CollectiveKind::kAllGather ||
         kind == CollectiveKind::kReduceScatter;
}

// The map with latencies 0: an algorithm's time at the bandwidth alone.
NodeMap without_latency(NodeMap nodes) {
  nodes.intra_latency_s = 0;
  nodes.inter_latency_s = 0;
  return nodes;
}

// The alpha-beta time of `algorithm` (hierarchical or tree; the ring over the network) and its
// bandwidth share, for groups spanning k nodes of m members.
struct Timing {
  Algorithm algorithm = Algorithm::kRing;
  double alpha_beta_s = 0;
  double bandwidth_s = 0;
};

Timing spanning_timing(CollectiveKind kind, Algorithm algorithm, int n, int k, int m,
                       double bytes, const NodeMap& nodes) {
  const NodeMap bare = without_latency(nodes);
  switch (algorithm) {
    case Algorithm::kHierarchical:
      return {algorithm, hierarchical_seconds(kind, k, m, bytes, nodes),
              hierarchical_seconds(kind, k, m, bytes, bare)};
    case Algorithm::kTree:
      return {algorithm, tree_seconds(k, m, bytes, nodes), tree_seconds(k, m, bytes, bare)};
    default:
      return {Algorithm::kRing,
              alpha_beta_seconds(kind, n, bytes, nodes.inter_latency_s, nodes.inter_bandwidth_Bps),
              alpha_beta_seconds(kind, n, bytes, 0, nodes.inter_bandwidth_Bps)};
  }
}

}  // namespace

NcclCost nccl_cost(CollectiveKind kind, Algorithm algorithm, int n, int k, int per_node,
                   double bytes, double bandwidth_s, const NodeMap& nodes) {
  const int a = algorithm == Algorithm::kTree ? 0 : 1;
  const int intra_hw = nodes.intra_nvlink ? 0 : 1;
  const bool all_reduce = kind == CollectiveKind::kAllReduce;
  const int steps = all_reduce ? 2 * (n - 1) : n - 1;
  const int inter_steps = k > 1 ? (all_reduce ? 2 * (k - 1) : k - 1) : 0;
  NcclCost best;
  for (int p = 0; p < 2; ++p) {  // LL, Simple
    const bool ll = p == 0;
    const double intra = kHwLatUs[intra_hw][a][p] * (ll && k > 1 ? 1.8 : 1.0);
    const double inter = kHwLatUs[2][a][p];
    double latency = kBaseLatUs[a][p];
    if (a == 1) {
      latency += (steps - inter_steps) * intra + inter_steps * inter;
      // "Plateau effect of ring" (ncclTopoGetAlgoTime): large multi-node ring all-reduces.
      if (!ll && k > 1 && all_reduce && bytes >= n / 16.0 * 65536) latency *= 1.9;
    } else {
      latency += 2 * ((per_node - 1) * intra + floor_log2(k) * inter);
    }
    const double share = !ll ? 1.0 : a == 0 ? 3.8 : (k > 1 || all_reduce) ? 4.0 : 3.0;
    const double seconds = latency * 1e-6 + share * bandwidth_s;
    if (p == 0 || seconds < best.seconds) best = {ll, latency * 1e-6, seconds};
  }
  return best;
}

double software_latency_s(CollectiveKind kind, Algorithm algorithm, const std::vector<int>& ranks,
                          double bytes, double alpha_beta_s, double bandwidth_s,
                          const NodeMap& nodes) {
  const int n = static_cast<int>(ranks.size());
  if (!nodes.nccl || !ncclish(kind) || n <= 1) return 0;
  int k = 1;
  for (std::size_t i = 1; i < ranks.size(); ++i) {
    if (nodes.node_of_rank[ranks[i]] != nodes.node_of_rank[ranks[i - 1]]) ++k;
  }
  const NcclCost c = nccl_cost(kind, algorithm, n, k, std::max(1, n / k), bytes, bandwidth_s, nodes);
  return std::max(0.0, c.seconds - alpha_beta_s);
}

Algorithm choose_algorithm(CollectiveKind kind, const std::vector<int>& ranks, double bytes,
                           const NodeMap* nodes) {
  const int n = static_cast<int>(ranks.size());
  if (kind == CollectiveKind::kAllToAll) {
    if (n <= 1 || nodes == nullptr) return Algorithm::kAllPairs;
    const std::vector<std::vector<int>> by_node = members_by_node(ranks, *nodes);
    return !by_node.empty() && by_node.front().size() > 1 ? Algorithm::kHierarchical
                                                          : Algorithm::kAllPairs;
  }
  const bool ringlike = kind == CollectiveKind::kAllReduce || kind == CollectiveKind::kAllGather ||
                        kind == CollectiveKind::kReduceScatter;
  if (n <= 1 || !ringlike || nodes == nullptr) return Algorithm::kRing;
  const std::vector<std::vector<int>> by_node = members_by_node(ranks, *nodes);
  const bool can_hierarchical = !by_node.empty() && by_node.front().size() > 1;
  const bool can_tree = !by_node.empty() && kind == CollectiveKind::kAllReduce;
  if (!can_hierarchical && !can_tree) return Algorithm::kRing;
  const int k = static_cast<int>(by_node.size());
  const int m = static_cast<int>(by_node.front().size());
  // The time with NCCL's software latency, strictly faster only, in the order ring,
  // hierarchical, tree.
  const auto total = [&](Algorithm a) {
    const Timing t = spanning_timing(kind, a, n, k, m, bytes, *nodes);
    return t.alpha_beta_s +
           software_latency_s(kind, a, ranks, bytes, t.alpha_beta_s, t.bandwidth_s, *nodes);
  };
  Algorithm algorithm = Algorithm::kRing;
  double best = total(Algorithm::kRing);
  if (can_hierarchical) {
    const double h = total(Algorithm::kHierarchical);
    if (h < best) best = h, algorithm = Algorithm::kHierarchical;
  }
  if (can_tree && total(Algorithm::kTree) < best) algorithm = Algorithm::kTree;
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

namespace {

// The algorithm of `kind` over `ranks` and its alpha-beta time as the simulator runs it
// (choose_algorithm with `choosing`; a one-node group at its node group's own fabric).
Timing collective_timing(CollectiveKind kind, const std::vector<int>& ranks, double bytes,
                         const strategies::ClusterSpec& cluster, const LinkEfficiencies& links,
                         const NodeMap& nodes, const NodeMap* choosing,
                         Algorithm forced = Algorithm::kAuto) {
  const int n = static_cast<int>(ranks.size());
  const Algorithm algorithm =
      forced != Algorithm::kAuto ? forced : choose_algorithm(kind, ranks, bytes, choosing);
  if (kind == CollectiveKind::kAllToAll) {
    // A group inside one node runs at its node group's own fabric.
    NodeMap fabric = nodes;
    const std::vector<int> counts = members_per_node(ranks, nodes);
    if (counts.size() == 1) {
      const strategies::NodeGroup& group = cluster.group_of_gpu(ranks.front());
      fabric.intra_latency_s = group.intra_node.latency_s;
      fabric.intra_bandwidth_Bps = links.intra_bandwidth_Bps(group);
    }
    return {algorithm, all_to_all_seconds(algorithm, counts, bytes, fabric),
            all_to_all_seconds(algorithm, counts, bytes, without_latency(fabric))};
  }
  if (algorithm == Algorithm::kHierarchical || algorithm == Algorithm::kTree) {
    const auto by_node = members_by_node(ranks, nodes);
    const int k = static_cast<int>(by_node.size());
    const int m = static_cast<int>(by_node.front().size());
    return spanning_timing(kind, algorithm, n, k, m, bytes, nodes);
  }
  const int node = nodes.node_of_rank[ranks.front()];
  const bool one_node =
      std::all_of(ranks.begin(), ranks.end(), [&](int r) { return nodes.node_of_rank[r] == node; });
  if (one_node) {
    const strategies::NodeGroup& group = cluster.group_of_gpu(ranks.front());
    const double bw = links.intra_bandwidth_Bps(group);
    return {Algorithm::kRing, alpha_beta_seconds(kind, n, bytes, group.intra_node.latency_s, bw),
            alpha_beta_seconds(kind, n, bytes, 0, bw)};
  }
  return spanning_timing(kind, Algorithm::kRing, n, 0, 0, bytes, nodes);
}

NodeMap checked_map(const std::vector<int>& ranks, const strategies::ClusterSpec& cluster,
                    const LinkEfficiencies& links) {
  STRATA_CHECK(std::is_sorted(ranks.begin(), ranks.end()) && ranks.front() >= 0 &&
                   ranks.back() < cluster.total_gpus(),
               "collective_seconds: ranks must be ascending GPU indices of the cluster");
  // Only the group's ranks are looked up: the map need not reach past the last of them.
  return node_map(cluster, ranks.back() + 1, links);
}

}  // namespace

double collective_alpha_beta_seconds(CollectiveKind kind, const std::vector<int>& ranks,
                                     double bytes, const strategies::ClusterSpec& cluster,
                                     const LinkEfficiencies& links) {
  if (ranks.size() <= 1) return 0;
  const NodeMap nodes = checked_map(ranks, cluster, links);
  const NodeMap* choosing = cluster.total_nodes() > 1 ? &nodes : nullptr;
  return collective_timing(kind, ranks, bytes, cluster, links, nodes, choosing).alpha_beta_s;
}

CollectiveChoice choose_collective(CollectiveKind kind, const std::vector<int>& ranks, double bytes,
                                   const strategies::ClusterSpec& cluster,
                                   const LinkEfficiencies& links, const NodeMap& nodes,
                                   const NodeMap* choosing, Algorithm forced) {
  if (ranks.size() <= 1) return {};
  const Timing t = collective_timing(kind, ranks, bytes, cluster, links, nodes, choosing, forced);
  return {t.algorithm, software_latency_s(kind, t.algorithm, ranks, bytes, t.alpha_beta_s,
                                          t.bandwidth_s, nodes)};
}

double collective_seconds(CollectiveKind kind, const std::vector<int>& ranks, double bytes,
                          const strategies::ClusterSpec& cluster, const LinkEfficiencies& links) {
  if (ranks.size() <= 1) return 0;
  const NodeMap nodes = checked_map(ranks, cluster, links);
  const NodeMap* choosing = cluster.total_nodes() > 1 ? &nodes : nullptr;
  const Timing t = collective_timing(kind, ranks, bytes, cluster, links, nodes, choosing);
  return t.alpha_beta_s +
         software_latency_s(kind, t.algorithm, ranks, bytes, t.alpha_beta_s, t.bandwidth_s, nodes);
}

}  // namespace strata::profiler
