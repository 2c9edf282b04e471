// Collective algorithms as flow DAGs; see collectives.hpp.
#include "sim/collectives.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace strata::sim {

using strategies::CollectiveKind;

int FlowSchedule::add(const Flow& f, const std::vector<int>& after) {
  const int id = size();
  flows_.push_back(f);
  next_.emplace_back();
  waiting_.push_back(static_cast<int>(after.size()));
  for (int a : after) {
    STRATA_CHECK(a >= 0 && a < id, "a flow may only wait for earlier flows");
    next_[a].push_back(id);
  }
  return id;
}

std::vector<int> FlowSchedule::initial() const {
  std::vector<int> out;
  for (int f = 0; f < size(); ++f) {
    if (waiting_[f] == 0) out.push_back(f);
  }
  return out;
}

std::vector<int> FlowSchedule::complete(int f) {
  ++completed_;
  std::vector<int> ready;
  for (int n : next_[f]) {
    if (--waiting_[n] == 0) ready.push_back(n);
  }
  return ready;
}

namespace {

// `steps` ring steps of `chunk` bytes: rank i sends to rank i+1; its step-k send waits for its
// own step-(k-1) send and for the step-(k-1) chunk it receives from rank i-1; the first step
// waits for `after`. Aggregated: one flow per rank with all its steps' bytes, then the folded
// steps' latency. Returns the flows whose completion ends the ring.
std::vector<int> ring(FlowSchedule& s, const std::vector<int>& ranks, int steps, double chunk,
                      bool aggregate, double step_latency_s, const std::vector<int>& after = {}) {
  const int n = static_cast<int>(ranks.size());
  if (aggregate) {
    std::vector<int> all;
    for (int i = 0; i < n; ++i) {
      all.push_back(s.add({ranks[i], ranks[(i + 1) % n], steps * chunk}, after));
    }
    if (steps > 1) return {s.add_delay((steps - 1) * step_latency_s, all)};
    return all;
  }
  std::vector<int> prev(n, -1);
  for (int k = 0; k < steps; ++k) {
    std::vector<int> cur(n);
    for (int i = 0; i < n; ++i) {
      std::vector<int> deps = after;
      if (k > 0) deps = {prev[i], prev[(i + n - 1) % n]};
      cur[i] = s.add({ranks[i], ranks[(i + 1) % n], chunk}, deps);
    }
    prev = cur;
  }
  return prev;
}

// The group's members per node, if every node holds the same number of them and there are at
// least two nodes; else empty.
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

// One phase of a hierarchical collective: rings inside every node, or rings across the nodes'
// j-th members, of `steps` steps of `chunk` bytes.
struct Phase {
  bool inside_nodes;
  int steps;
  double chunk;
};

// The phases of the hierarchical algorithm over k nodes of m members (S = bytes):
//  all-reduce:     reduce-scatter inside (m-1 steps of S/m), all-reduce across (2(k-1) of
//                  S/(mk)), all-gather inside (m-1 of S/m);
//  reduce-scatter: reduce-scatter inside, then reduce-scatter across (k-1 of S/(mk));
//  all-gather:     all-gather across (k-1 of S/(mk)), then all-gather inside.
std::vector<Phase> hierarchical_phases(CollectiveKind kind, int k, int m, double bytes) {
  const Phase inside{true, m - 1, bytes / m};
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

// Runs the phases in order; each starts when the previous one has finished everywhere.
void hierarchical(FlowSchedule& s, CollectiveKind kind, const std::vector<std::vector<int>>& by_node,
                  double bytes, bool aggregate, const NodeMap& nodes) {
  const int k = static_cast<int>(by_node.size());
  const int m = static_cast<int>(by_node.front().size());
  std::vector<int> previous_end;
  for (const Phase& phase : hierarchical_phases(kind, k, m, bytes)) {
    std::vector<std::vector<int>> rings;
    if (phase.inside_nodes) {
      rings = by_node;
    } else {
      for (int j = 0; j < m; ++j) {
        rings.emplace_back();
        for (const auto& node : by_node) rings.back().push_back(node[j]);
      }
    }
    const double latency = phase.inside_nodes ? nodes.intra_latency_s : nodes.inter_latency_s;
    std::vector<int> end;
    for (const auto& r : rings) {
      const auto e = ring(s, r, phase.steps, phase.chunk, aggregate, latency, previous_end);
      end.insert(end.end(), e.begin(), e.end());
    }
    previous_end = std::move(end);
  }
}

// Heap-order levels of a binary tree over k nodes: depth d holds [2^d - 1, min(2^(d+1) - 1, k)).
int tree_depth(int k) {
  int d = 0;
  while ((2 << d) - 1 < k) ++d;
  return d;
}
int level_begin(int d) { return (1 << d) - 1; }
int level_end(int d, int k) { return std::min((2 << d) - 1, k); }

// The tree all-reduce of tree_seconds: chains inside the nodes, a binary tree over the leaders,
// each level waiting for the whole previous one.
void tree_all_reduce(FlowSchedule& s, const std::vector<std::vector<int>>& by_node,
                     double bytes) {
  const int k = static_cast<int>(by_node.size());
  const int m = static_cast<int>(by_node.front().size());
  const auto leader = [&](int node) { return by_node[node].front(); };
  std::vector<int> previous;
  for (const auto& node : by_node) {  // reduce inside: member j sends to j-1
    int prev = -1;
    for (int j = m - 1; j > 0; --j) {
      prev = s.add({node[j], node[j - 1], bytes}, prev < 0 ? std::vector<int>{} : std::vector<int>{prev});
    }
    if (prev >= 0) previous.push_back(prev);
  }
  const int depth = tree_depth(k);
  for (int d = depth; d >= 1; --d) {  // reduce up the tree, deepest level first
    std::vector<int> level;
    for (int i = level_begin(d); i < level_end(d, k); ++i) {
      level.push_back(s.add({leader(i), leader((i - 1) / 2), bytes}, previous));
    }
    previous = std::move(level);
  }
  for (int d = 1; d <= depth; ++d) {  // broadcast down, the root's children first
    std::vector<int> level;
    for (int i = level_begin(d); i < level_end(d, k); ++i) {
      level.push_back(s.add({leader((i - 1) / 2), leader(i), bytes}, previous));
    }
    previous = std::move(level);
  }
  for (const auto& node : by_node) {  // broadcast inside: member j sends to j+1
    int prev = -1;
    for (int j = 0; j + 1 < m; ++j) {
      prev = s.add({node[j], node[j + 1], bytes}, prev < 0 ? previous : std::vector<int>{prev});
    }
  }
}

}  // namespace

FlowSchedule plan_collective(CollectiveKind kind, const std::vector<int>& ranks, double bytes,
                             const FlowDetail& detail) {
  FlowSchedule s;
  const int n = static_cast<int>(ranks.size());
  if (n <= 1) return s;
  const bool ringlike = kind == CollectiveKind::kAllReduce ||
                        kind == CollectiveKind::kAllGather || kind == CollectiveKind::kReduceScatter;
  Algorithm algorithm = detail.algorithm == Algorithm::kAuto ? Algorithm::kRing : detail.algorithm;
  std::vector<std::vector<int>> by_node;
  if (ringlike && detail.nodes != nullptr) by_node = members_by_node(ranks, *detail.nodes);
  const bool can_hierarchical = !by_node.empty() && by_node.front().size() > 1;
  const bool can_tree = !by_node.empty() && kind == CollectiveKind::kAllReduce;
  const int k = static_cast<int>(by_node.size());
  const int m = by_node.empty() ? 0 : static_cast<int>(by_node.front().size());
  if (detail.algorithm == Algorithm::kAuto && (can_hierarchical || can_tree)) {
    // Strictly faster only, in the order ring, hierarchical, tree.
    double best = alpha_beta_seconds(kind, n, bytes, detail.nodes->inter_latency_s,
                                     detail.nodes->inter_bandwidth_Bps);
    if (can_hierarchical) {
      const double h = hierarchical_seconds(kind, k, m, bytes, *detail.nodes);
      if (h < best) best = h, algorithm = Algorithm::kHierarchical;
    }
    if (can_tree && tree_seconds(k, m, bytes, *detail.nodes) < best) algorithm = Algorithm::kTree;
  }
  STRATA_CHECK(algorithm != Algorithm::kHierarchical || can_hierarchical,
               "a hierarchical collective needs the same number (> 1) of members on each of "
               "two or more nodes");
  STRATA_CHECK(algorithm != Algorithm::kTree || can_tree,
               "a tree collective is an all-reduce over the same number of members on each of "
               "two or more nodes");
  if (algorithm == Algorithm::kHierarchical) {
    hierarchical(s, kind, by_node, bytes, detail.aggregate_steps, *detail.nodes);
    return s;
  }
  if (algorithm == Algorithm::kTree) {
    tree_all_reduce(s, by_node, bytes);
    return s;
  }
  switch (kind) {
    case CollectiveKind::kAllReduce:
      ring(s, ranks, 2 * (n - 1), bytes / n, detail.aggregate_steps, detail.step_latency_s);
      break;
    case CollectiveKind::kAllGather:
    case CollectiveKind::kReduceScatter:
      ring(s, ranks, n - 1, bytes / n, detail.aggregate_steps, detail.step_latency_s);
      break;
    case CollectiveKind::kAllToAll:
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < n; ++j) {
          if (i != j) s.add({ranks[i], ranks[j], bytes / n}, {});
        }
      }
      break;
    case CollectiveKind::kBroadcast: {
      int prev = -1;
      for (int i = 0; i + 1 < n; ++i) {
        prev = s.add({ranks[i], ranks[i + 1], bytes}, prev < 0 ? std::vector<int>{}
                                                                 : std::vector<int>{prev});
      }
      break;
    }
    case CollectiveKind::kNone:
      STRATA_CHECK(false, "not a collective");
  }
  return s;
}

double hierarchical_seconds(CollectiveKind kind, int k, int m, double bytes,
                            const NodeMap& nodes) {
  double total = 0;
  for (const Phase& p : hierarchical_phases(kind, k, m, bytes)) {
    const double alpha = p.inside_nodes ? nodes.intra_latency_s : nodes.inter_latency_s;
    const double bw = p.inside_nodes ? nodes.intra_bandwidth_Bps : nodes.inter_bandwidth_Bps;
    total += p.steps * (alpha + p.chunk / bw);
  }
  return total;
}

double tree_seconds(int k, int m, double bytes, const NodeMap& nodes) {
  double total = 2.0 * (m - 1) * (nodes.intra_latency_s + bytes / nodes.intra_bandwidth_Bps);
  const int depth = tree_depth(k);
  for (int d = 1; d <= depth; ++d) {
    const int children = std::min(2, level_end(d, k) - level_begin(d));
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
    case CollectiveKind::kNone:
      return 1.0;
  }
  return 1.0;
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
    case CollectiveKind::kNone:
      return 0;
  }
  return 0;
}

}  // namespace strata::sim
