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

std::vector<int> FlowSchedule::sinks() const {
  std::vector<int> out;
  for (int f = 0; f < size(); ++f) {
    if (next_[f].empty()) out.push_back(f);
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

// Runs the phases in order; each starts when the previous one has finished everywhere.
void hierarchical(FlowSchedule& s, CollectiveKind kind,
                  const std::vector<std::vector<int>>& by_node, double bytes, bool aggregate,
                  const NodeMap& nodes) {
  const int k = static_cast<int>(by_node.size());
  const int m = static_cast<int>(by_node.front().size());
  std::vector<int> previous_end;
  for (const profiler::HierarchicalPhase& phase :
       profiler::hierarchical_phases(kind, k, m, bytes)) {
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

// The tree all-reduce of tree_seconds: chains inside the nodes, a binary tree over the leaders,
// each level waiting for the whole previous one.
void tree_all_reduce(FlowSchedule& s, const std::vector<std::vector<int>>& by_node, double bytes) {
  const int k = static_cast<int>(by_node.size());
  const int m = static_cast<int>(by_node.front().size());
  const auto leader = [&](int node) { return by_node[node].front(); };
  std::vector<int> previous;
  for (const auto& node : by_node) {  // reduce inside: member j sends to j-1
    int prev = -1;
    for (int j = m - 1; j > 0; --j) {
      prev = s.add({node[j], node[j - 1], bytes},
                   prev < 0 ? std::vector<int>{} : std::vector<int>{prev});
    }
    if (prev >= 0) previous.push_back(prev);
  }
  const int depth = profiler::tree_depth(k);
  for (int d = depth; d >= 1; --d) {  // reduce up the tree, deepest level first
    std::vector<int> level;
    for (int i = profiler::tree_level_begin(d); i < profiler::tree_level_end(d, k); ++i) {
      level.push_back(s.add({leader(i), leader((i - 1) / 2), bytes}, previous));
    }
    previous = std::move(level);
  }
  for (int d = 1; d <= depth; ++d) {  // broadcast down, the root's children first
    std::vector<int> level;
    for (int i = profiler::tree_level_begin(d); i < profiler::tree_level_end(d, k); ++i) {
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

// All pairs at once: one flow per non-zero off-diagonal entry.
void all_pairs(FlowSchedule& s, const std::vector<int>& ranks, const ByteMatrix& m) {
  const int n = static_cast<int>(ranks.size());
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      if (i != j && m[i][j] > 0) s.add({ranks[i], ranks[j], m[i][j]}, {});
    }
  }
}

// Pairwise exchange: round r = 1..n-1, member i sends m[i][i+r] to member i+r. The transfer waits
// for the last transfer sent and the last received by each of its two ends (a sendrecv per
// round: the receiver posts its receive once it finished its previous round). Zero entries are
// skipped; the "last" transfers then reach back to earlier rounds, so the order holds.
void pairwise(FlowSchedule& s, const std::vector<int>& ranks, const ByteMatrix& m) {
  const int n = static_cast<int>(ranks.size());
  std::vector<int> last_send(n, -1);
  std::vector<int> last_recv(n, -1);
  for (int r = 1; r < n; ++r) {
    std::vector<int> sent(n, -1);  // this round's flows, recorded once the round is built
    for (int i = 0; i < n; ++i) {
      const int j = (i + r) % n;
      if (!(m[i][j] > 0)) continue;
      std::vector<int> deps;
      for (int d : {last_send[i], last_recv[i], last_send[j], last_recv[j]}) {
        if (d >= 0 && std::find(deps.begin(), deps.end(), d) == deps.end()) deps.push_back(d);
      }
      sent[i] = s.add({ranks[i], ranks[j], m[i][j]}, deps);
    }
    for (int i = 0; i < n; ++i) {
      if (sent[i] < 0) continue;
      last_send[i] = sent[i];
      last_recv[(i + r) % n] = sent[i];
    }
  }
}

// The rail-aligned hierarchical all-to-all (collectives.hpp) over k nodes of m members; member
// by_node[a][j] is at position a m + j of the matrix. Phase 1 (NVLink): (a,j) -> (a,l), l != j,
// carries sum_b bytes[(a,j)][(b,l)]; phase 2 (network, rail l): (a,l) -> (b,l), b != a, carries
// sum_j bytes[(a,j)][(b,l)] and starts when every phase-1 flow into (a,l) is done.
void hierarchical_all_to_all(FlowSchedule& s, const std::vector<std::vector<int>>& by_node,
                             const ByteMatrix& m) {
  const int k = static_cast<int>(by_node.size());
  const int per = static_cast<int>(by_node.front().size());
  const auto at = [&](int node, int local) { return node * per + local; };
  std::vector<std::vector<int>> into(k * per);  // phase-1 flows into each relay
  for (int a = 0; a < k; ++a) {
    for (int j = 0; j < per; ++j) {
      for (int l = 0; l < per; ++l) {
        if (l == j) continue;
        double bytes = 0;
        for (int b = 0; b < k; ++b) bytes += m[at(a, j)][at(b, l)];
        if (bytes > 0) into[at(a, l)].push_back(s.add({by_node[a][j], by_node[a][l], bytes}, {}));
      }
    }
  }
  for (int a = 0; a < k; ++a) {
    for (int l = 0; l < per; ++l) {
      for (int b = 0; b < k; ++b) {
        if (b == a) continue;
        double bytes = 0;
        for (int j = 0; j < per; ++j) bytes += m[at(a, j)][at(b, l)];
        if (bytes > 0) s.add({by_node[a][l], by_node[b][l], bytes}, into[at(a, l)]);
      }
    }
  }
}

void all_to_all(FlowSchedule& s, const std::vector<int>& ranks, const ByteMatrix& m,
                const FlowDetail& detail) {
  const Algorithm algorithm =
      detail.algorithm == Algorithm::kAuto
          ? profiler::choose_algorithm(CollectiveKind::kAllToAll, ranks, 0, detail.nodes)
          : detail.algorithm;
  switch (algorithm) {
    case Algorithm::kAllPairs:
      all_pairs(s, ranks, m);
      return;
    case Algorithm::kPairwise:
      pairwise(s, ranks, m);
      return;
    case Algorithm::kHierarchical: {
      std::vector<std::vector<int>> by_node;
      if (detail.nodes != nullptr) by_node = profiler::members_by_node(ranks, *detail.nodes);
      STRATA_CHECK(!by_node.empty() && by_node.front().size() > 1,
                   "a hierarchical all-to-all needs a node map and the same number (> 1) of "
                   "members on each of two or more nodes");
      hierarchical_all_to_all(s, by_node, m);
      return;
    }
    default:
      STRATA_CHECK(false, "an all-to-all runs as all_pairs, pairwise or hierarchical");
  }
}

}  // namespace

namespace {

FlowSchedule algorithm_flows(CollectiveKind kind, const std::vector<int>& ranks, double bytes,
                             const FlowDetail& detail) {
  FlowSchedule s;
  const int n = static_cast<int>(ranks.size());
  if (n <= 1) return s;
  if (kind == CollectiveKind::kAllToAll) {
    all_to_all(s, ranks, profiler::uniform_byte_matrix(n, bytes), detail);
    return s;
  }
  STRATA_CHECK(detail.algorithm != Algorithm::kAllPairs && detail.algorithm != Algorithm::kPairwise,
               "all_pairs and pairwise are all-to-all algorithms");
  const bool ringlike = kind == CollectiveKind::kAllReduce || kind == CollectiveKind::kAllGather ||
                        kind == CollectiveKind::kReduceScatter;
  std::vector<std::vector<int>> by_node;
  if (ringlike && detail.nodes != nullptr)
    by_node = profiler::members_by_node(ranks, *detail.nodes);
  const bool can_hierarchical = !by_node.empty() && by_node.front().size() > 1;
  const bool can_tree = !by_node.empty() && kind == CollectiveKind::kAllReduce;
  const Algorithm algorithm = detail.algorithm == Algorithm::kAuto
                                  ? profiler::choose_algorithm(kind, ranks, bytes, detail.nodes)
                                  : detail.algorithm;
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
    case CollectiveKind::kAllToAll:  // above
      break;
    case CollectiveKind::kRingShift:  // one step: every member to the next, at once
      ring(s, ranks, 1, bytes, false, 0);
      break;
    case CollectiveKind::kBroadcast: {
      int prev = -1;
      for (int i = 0; i + 1 < n; ++i) {
        prev = s.add({ranks[i], ranks[i + 1], bytes},
                     prev < 0 ? std::vector<int>{} : std::vector<int>{prev});
      }
      break;
    }
    case CollectiveKind::kNone:
      STRATA_CHECK(false, "not a collective");
  }
  return s;
}

}  // namespace

namespace {

void add_software_latency(FlowSchedule& s, const FlowDetail& detail) {
  if (detail.software_latency_s > 0 && s.size() > 0) {
    s.add_delay(detail.software_latency_s, s.sinks());
  }
}

}  // namespace

FlowSchedule plan_collective(CollectiveKind kind, const std::vector<int>& ranks, double bytes,
                             const FlowDetail& detail) {
  FlowSchedule s = algorithm_flows(kind, ranks, bytes, detail);
  add_software_latency(s, detail);
  return s;
}

FlowSchedule plan_all_to_all(const std::vector<int>& ranks, const ByteMatrix& bytes,
                             const FlowDetail& detail) {
  const int n = static_cast<int>(ranks.size());
  profiler::check_byte_matrix(bytes, n);
  FlowSchedule s;
  if (n <= 1) return s;
  all_to_all(s, ranks, bytes, detail);
  add_software_latency(s, detail);
  return s;
}

}  // namespace strata::sim
