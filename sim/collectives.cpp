// Collective algorithms as flow DAGs; see collectives.hpp.
#include "sim/collectives.hpp"

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
// own step-(k-1) send and for the step-(k-1) chunk it receives from rank i-1. Aggregated: one
// flow per rank with all its steps' bytes, then the folded steps' latency.
void ring(FlowSchedule& s, const std::vector<int>& ranks, int steps, double chunk,
          const FlowDetail& detail) {
  const int n = static_cast<int>(ranks.size());
  if (detail.aggregate_steps) {
    std::vector<int> all;
    for (int i = 0; i < n; ++i) all.push_back(s.add({ranks[i], ranks[(i + 1) % n], steps * chunk}, {}));
    if (steps > 1) s.add_delay((steps - 1) * detail.step_latency_s, all);
    return;
  }
  std::vector<int> prev(n, -1);
  for (int k = 0; k < steps; ++k) {
    std::vector<int> cur(n);
    for (int i = 0; i < n; ++i) {
      std::vector<int> after;
      if (k > 0) after = {prev[i], prev[(i + n - 1) % n]};
      cur[i] = s.add({ranks[i], ranks[(i + 1) % n], chunk}, after);
    }
    prev = cur;
  }
}

}  // namespace

FlowSchedule plan_collective(CollectiveKind kind, const std::vector<int>& ranks, double bytes,
                             const FlowDetail& detail) {
  FlowSchedule s;
  const int n = static_cast<int>(ranks.size());
  if (n <= 1) return s;
  switch (kind) {
    case CollectiveKind::kAllReduce:
      ring(s, ranks, 2 * (n - 1), bytes / n, detail);
      break;
    case CollectiveKind::kAllGather:
    case CollectiveKind::kReduceScatter:
      ring(s, ranks, n - 1, bytes / n, detail);
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
