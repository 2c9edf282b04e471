// Folding by symmetry: orbits and the traffic check (fold.hpp).
#include "sim/detail/fold.hpp"

#include <algorithm>
#include <map>

#include "common/error.hpp"

namespace strata::sim::detail {

using strategies::CollectiveKind;
using strategies::Dim;
using strategies::Plan;
using strategies::Task;
using strategies::TaskKind;

std::vector<std::vector<int>> tp_orbits(const Plan& plan) {
  std::vector<std::vector<int>> orbits;
  for (int r = 0; r < plan.world_size; ++r) {
    if (plan.grid().coord(r, Dim::kTp) == 0) orbits.push_back(plan.grid().group(r, Dim::kTp));
  }
  return orbits;
}

int tp_shift(const Plan& plan, int rank, int c) {
  strategies::Coords x = plan.grid().coords(rank);
  const int t = static_cast<int>(Dim::kTp);
  x[t] = (x[t] + c) % plan.strategy.tp;
  return plan.grid().rank_of(x);
}

bool traffic_is_symmetric(const Plan& plan, const std::vector<char>& active) {
  const int tp = plan.strategy.tp;
  const auto tp_of = [&](int r) { return plan.grid().coord(r, Dim::kTp); };
  for (int r = 0; r < plan.world_size; ++r) {
    if (!active[r]) continue;
    if (tp_of(r) != 0) return false;
    const std::vector<int> orbit = plan.grid().group(r, Dim::kTp);
    std::map<int, bool> whole_orbit;  // by group: the rank's tensor-parallel group itself
    for (const Task& t : plan.program_of(r).tasks) {
      if (t.kind == TaskKind::kSend) {
        const int peer = plan.peer_rank(r, t);
        if (tp_of(peer) != 0) return false;
        for (int c = 1; c < tp; ++c) {
          if (plan.peer_rank(tp_shift(plan, r, c), t) != tp_shift(plan, peer, c)) return false;
        }
        continue;
      }
      if (t.kind != TaskKind::kCollective) continue;
      const int key =
          (static_cast<int>(t.group.kind) << 16) | (t.group.layout << 8) | t.group.layout_from;
      auto seen = whole_orbit.find(key);
      if (seen == whole_orbit.end()) {
        const std::vector<int> group = plan.group_ranks(r, t.group);
        bool ok = true;
        if (group != orbit) {
          for (int m : group) ok = ok && tp_of(m) == 0;
          for (int c = 1; c < tp && ok && group.size() > 1; ++c) {
            std::vector<int> image;
            for (int m : group) image.push_back(tp_shift(plan, m, c));
            ok = plan.group_ranks(tp_shift(plan, r, c), t.group) == image;
          }
        }
        if (!ok) return false;
        seen = whole_orbit.emplace(key, group == orbit && group.size() > 1).first;
      }
      if (seen->second && t.collective == CollectiveKind::kBroadcast) return false;
    }
  }
  return true;
}

std::vector<std::vector<int>> orbit_images(const Plan& plan, const FlowSchedule& s,
                                           const std::vector<int>& ranks) {
  std::map<int, int> from_first;  // destination -> the flow from ranks[0] to it
  for (int f = 0; f < s.size(); ++f) {
    if (!s.flow(f).is_delay() && s.flow(f).from == ranks.front()) from_first[s.flow(f).to] = f;
  }
  std::vector<std::vector<int>> images(s.size());
  const std::vector<int> initial = s.initial();
  for (int f = 0; f < s.size(); ++f) {
    const Flow& flow = s.flow(f);
    if (flow.is_delay() || flow.from == ranks.front()) continue;
    STRATA_CHECK(std::binary_search(initial.begin(), initial.end(), f),
                 "an orbit collective's transfers must all start at once");
    const int c = plan.grid().coord(flow.from, Dim::kTp);
    const auto it = from_first.find(tp_shift(plan, flow.to, plan.strategy.tp - c));
    STRATA_CHECK(it != from_first.end(), "an orbit collective whose flows sigma does not permute");
    images[it->second].push_back(f);
  }
  return images;
}

}  // namespace strata::sim::detail
