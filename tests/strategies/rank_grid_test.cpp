// RankGrid: Megatron's documented 16-GPU layout, hand-computed layouts for other orders and for
// ep, and exhaustive checks against a reference built independently (an odometer for coordinates,
// grouping by key for groups): every small grid under several orders, every order on two grids.
#include "strategies/rank_grid.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <map>
#include <string>
#include <vector>

#include "strategies/spec.hpp"

namespace strata::strategies {
namespace {

using Groups = std::vector<std::vector<int>>;
using Order = std::array<Dim, kNumDims>;

constexpr Order kMegatronOrder = {Dim::kTp, Dim::kCp, Dim::kEp, Dim::kDp, Dim::kPp};

int at(Dim d) { return static_cast<int>(d); }

TEST(RankGrid, MegatronDocumentedExample) {
  // Megatron-LM's parallel_state docstring: 16 GPUs, tp = 2, pp = 4, dp = 2.
  const RankGrid g(/*tp=*/2, /*cp=*/1, /*dp=*/2, /*pp=*/4, /*ep=*/1, kMegatronOrder);
  EXPECT_EQ(g.world_size(), 16);
  EXPECT_EQ(g.all_groups(Dim::kTp),
            (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}}));
  EXPECT_EQ(g.all_groups(Dim::kDp),
            (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}, {8, 10}, {9, 11}, {12, 14}, {13, 15}}));
  EXPECT_EQ(g.all_groups(Dim::kPp),
            (Groups{{0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}}));
  EXPECT_EQ(g.all_groups(Dim::kCp).size(), 16u);
  EXPECT_EQ(g.all_groups(Dim::kEp).size(), 16u);
  // Rank 13: tp 1, dp 0, pp 3.
  EXPECT_EQ(g.coords(13), (Coords{1, 0, 0, 0, 3}));
  EXPECT_EQ(g.rank_of(Coords{1, 0, 0, 0, 3}), 13);
  EXPECT_EQ(g.coord(13, Dim::kPp), 3);
  EXPECT_EQ(g.group(13, Dim::kDp), (std::vector<int>{13, 15}));
  EXPECT_EQ(g.group(13, {Dim::kTp, Dim::kDp}), (std::vector<int>{12, 13, 14, 15}));
  EXPECT_EQ(g.group(13, {Dim::kPp, Dim::kTp}), (std::vector<int>{0, 1, 4, 5, 8, 9, 12, 13}));
}

TEST(RankGrid, DataParallelFastestOrder) {
  // dp-tp-pp (cp, ep trailing): rank = dp + 3 * tp + 6 * pp.
  const RankGrid g(/*tp=*/2, /*cp=*/1, /*dp=*/3, /*pp=*/2, /*ep=*/1,
                   {Dim::kDp, Dim::kTp, Dim::kPp, Dim::kCp, Dim::kEp});
  EXPECT_EQ(g.world_size(), 12);
  EXPECT_EQ(g.all_groups(Dim::kDp), (Groups{{0, 1, 2}, {3, 4, 5}, {6, 7, 8}, {9, 10, 11}}));
  EXPECT_EQ(g.all_groups(Dim::kTp), (Groups{{0, 3}, {1, 4}, {2, 5}, {6, 9}, {7, 10}, {8, 11}}));
  EXPECT_EQ(g.all_groups(Dim::kPp), (Groups{{0, 6}, {1, 7}, {2, 8}, {3, 9}, {4, 10}, {5, 11}}));
  EXPECT_EQ(g.coords(7), (Coords{0, 0, 0, 1, 1}));
  EXPECT_EQ(g.coords(11), (Coords{1, 0, 0, 2, 1}));
  EXPECT_EQ(g.rank_of(Coords{1, 0, 0, 2, 0}), 5);
}

TEST(RankGrid, ContextParallelSitsBetweenTensorAndData) {
  // tp-cp-ep-dp-pp with tp = cp = dp = 2: rank = tp + 2 * cp + 4 * dp.
  const RankGrid g(/*tp=*/2, /*cp=*/2, /*dp=*/2, /*pp=*/1, /*ep=*/1, kMegatronOrder);
  EXPECT_EQ(g.all_groups(Dim::kCp), (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(g.all_groups(Dim::kDp), (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(g.group(0, {Dim::kDp, Dim::kCp}), (std::vector<int>{0, 2, 4, 6}));
  EXPECT_EQ(g.group(3, {Dim::kCp, Dim::kDp}), (std::vector<int>{1, 3, 5, 7}));
}

TEST(RankGrid, ExpertParallelIsInnerPartOfDpWhenBeforeIt) {
  // tp = 2, dp = 4, ep = 2, ep before dp: dp_idx = rank / 2, ep_idx = dp_idx % 2. This is
  // Megatron's expert generator tp-ep-dp-pp: ep groups of stride tp.
  const RankGrid g(/*tp=*/2, /*cp=*/1, /*dp=*/4, /*pp=*/1, /*ep=*/2, kMegatronOrder);
  EXPECT_EQ(g.world_size(), 8);
  EXPECT_EQ(g.all_groups(Dim::kEp), (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(g.all_groups(Dim::kDp), (Groups{{0, 2, 4, 6}, {1, 3, 5, 7}}));
  EXPECT_EQ(g.coords(6), (Coords{0, 0, 1, 3, 0}));
  EXPECT_EQ(g.coords(4), (Coords{0, 0, 0, 2, 0}));
  EXPECT_EQ(g.group(5, {Dim::kEp, Dim::kTp}), (std::vector<int>{4, 5, 6, 7}));
  // Listing dp as well as ep varies the whole dp coordinate.
  EXPECT_EQ(g.group(5, {Dim::kEp, Dim::kDp}), (std::vector<int>{1, 3, 5, 7}));
}

TEST(RankGrid, ExpertParallelIsOuterPartOfDpWhenAfterIt) {
  // Same sizes, order tp-cp-dp-ep-pp: ep_idx = dp_idx / (dp / ep) = dp_idx / 2.
  const RankGrid g(/*tp=*/2, /*cp=*/1, /*dp=*/4, /*pp=*/1, /*ep=*/2,
                   {Dim::kTp, Dim::kCp, Dim::kDp, Dim::kEp, Dim::kPp});
  EXPECT_EQ(g.all_groups(Dim::kEp), (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(g.coords(6), (Coords{0, 0, 1, 3, 0}));
  EXPECT_EQ(g.coords(2), (Coords{0, 0, 0, 1, 0}));
  EXPECT_EQ(g.coords(4), (Coords{0, 0, 1, 2, 0}));
  // ep last of all still counts as after dp.
  const RankGrid last(/*tp=*/1, /*cp=*/1, /*dp=*/6, /*pp=*/2, /*ep=*/3,
                      {Dim::kPp, Dim::kDp, Dim::kTp, Dim::kCp, Dim::kEp});
  // rank = pp + 2 * dp; ep_idx = dp / 2; edp = dp % 2. Rank 3: pp 1, dp 1 -> ep peers dp 1, 3, 5.
  EXPECT_EQ(last.group(3, Dim::kEp), (std::vector<int>{3, 7, 11}));
}

TEST(RankGrid, ExpertGroupsSpanContextParallelRanksAsMegatronCore) {
  // Megatron-Core's expert generator for tp = expert_tp = 2, cp = 2, dp = 4, ep = 4 is
  // tp-ep-dp-pp over the same ranks (expert-dp = tp cp dp / (expert_tp ep) = 2): expert rank =
  // etp + 2 * (ep + 4 * edp), so its ep groups are {0, 2, 4, 6}, {1, 3, 5, 7}, {8, ..}, {9, ..}.
  const RankGrid g(/*tp=*/2, /*cp=*/2, /*dp=*/4, /*pp=*/1, /*ep=*/4, kMegatronOrder);
  EXPECT_EQ(g.all_groups(Dim::kEp),
            (Groups{{0, 2, 4, 6}, {1, 3, 5, 7}, {8, 10, 12, 14}, {9, 11, 13, 15}}));
  // Rank 6: tp 0, cp 1, dp 1: m = 1 + 2 * 1 = 3, the fourth expert rank.
  EXPECT_EQ(g.coords(6), (Coords{0, 1, 3, 1, 0}));
  // ep = 2 fits inside cp: the ep groups are the cp groups.
  const RankGrid cp2(/*tp=*/2, /*cp=*/2, /*dp=*/2, /*pp=*/1, /*ep=*/2, kMegatronOrder);
  EXPECT_EQ(cp2.all_groups(Dim::kEp), cp2.all_groups(Dim::kCp));
  // ep = cp dp: one group of every data rank.
  const RankGrid all(/*tp=*/1, /*cp=*/2, /*dp=*/2, /*pp=*/2, /*ep=*/4, kMegatronOrder);
  EXPECT_EQ(all.all_groups(Dim::kEp), (Groups{{0, 1, 2, 3}, {4, 5, 6, 7}}));
}

TEST(RankGrid, FromStrategySpec) {
  StrategySpec s;
  s.tp = 2;
  s.pp = 2;
  s.dp = 2;
  s.ep = 2;
  s.order = {Dim::kPp, Dim::kTp, Dim::kEp, Dim::kCp, Dim::kDp};
  const RankGrid g(s);
  EXPECT_EQ(g.world_size(), s.world_size());
  EXPECT_EQ(g.order(), s.order);
  EXPECT_EQ(g.size(Dim::kEp), 2);
  EXPECT_EQ(g.all_groups(Dim::kTp), (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(g.all_groups(Dim::kEp), g.all_groups(Dim::kDp));
}

TEST(RankGrid, EmptyAndFullGroups) {
  const RankGrid g(/*tp=*/2, /*cp=*/2, /*dp=*/2, /*pp=*/2, /*ep=*/2, kMegatronOrder);
  std::vector<int> all(16);
  for (int r = 0; r < 16; ++r) all[r] = r;
  for (int r = 0; r < 16; ++r) {
    EXPECT_EQ(g.group(r, {}), (std::vector<int>{r}));
    EXPECT_EQ(g.group(r, {Dim::kTp, Dim::kCp, Dim::kDp, Dim::kPp}), all);
    EXPECT_EQ(g.group(r, {Dim::kTp, Dim::kCp, Dim::kEp, Dim::kDp, Dim::kPp}), all);
  }
  const RankGrid one(1, 1, 1, 1, 1, kMegatronOrder);
  EXPECT_EQ(one.world_size(), 1);
  EXPECT_EQ(one.all_groups(Dim::kDp), (Groups{{0}}));
}

// --- Exhaustive checks -----------------------------------------------------------------------

struct Degrees {
  int tp, cp, dp, pp, ep;
  int of(Dim d) const {
    switch (d) {
      case Dim::kTp:
        return tp;
      case Dim::kCp:
        return cp;
      case Dim::kEp:
        return ep;
      case Dim::kDp:
        return dp;
      case Dim::kPp:
        return pp;
    }
    return 0;
  }
};

std::string describe(const Degrees& n, const Order& order) {
  std::string s = "tp=" + std::to_string(n.tp) + " cp=" + std::to_string(n.cp) +
                  " dp=" + std::to_string(n.dp) + " pp=" + std::to_string(n.pp) +
                  " ep=" + std::to_string(n.ep) + " order=";
  for (Dim d : order) s += std::to_string(at(d));
  return s;
}

bool ep_before_dp(const Order& order) {
  for (Dim d : order) {
    if (d == Dim::kEp) return true;
    if (d == Dim::kDp) return false;
  }
  return false;
}

// The data coordinate m joining cp and dp, the one earlier in the order the fast digit, and the
// expert-parallel and expert-data-parallel indices carved from it (ep the fast part if inner).
struct DataIndex {
  int ep, edp;
};
DataIndex data_index(const Coords& c, const Degrees& n, const Order& order) {
  const bool cp_first = std::find(order.begin(), order.end(), Dim::kCp) <
                        std::find(order.begin(), order.end(), Dim::kDp);
  const int m = cp_first ? c[at(Dim::kCp)] + n.cp * c[at(Dim::kDp)]
                         : c[at(Dim::kDp)] + n.dp * c[at(Dim::kCp)];
  const int edp = n.cp * n.dp / n.ep;
  if (ep_before_dp(order)) return {m % n.ep, m / n.ep};
  return {m / edp, m % edp};
}

// Reference groups of `d`: ranks bucketed by the coordinates that stay fixed, ordered by their
// smallest rank. For ep the fixed part is (tp, pp, expert-data-parallel index).
Groups reference_groups(const std::vector<Coords>& coords, const Degrees& n, const Order& order,
                        Dim d) {
  std::map<std::array<int, 5>, std::vector<int>> buckets;
  for (int r = 0; r < static_cast<int>(coords.size()); ++r) {
    const Coords& c = coords[r];
    std::array<int, 5> key = {c[at(Dim::kTp)], c[at(Dim::kCp)], c[at(Dim::kDp)], c[at(Dim::kPp)],
                              0};
    if (d == Dim::kEp) {
      key[1] = key[2] = -1;
      key[4] = data_index(c, n, order).edp;
    } else {
      const int pos[] = {0, 1, -1, 2, 3};  // key slot of each Dim
      key[pos[at(d)]] = -1;
    }
    buckets[key].push_back(r);  // ranks arrive ascending
  }
  Groups groups;
  for (auto& [key, ranks] : buckets) groups.push_back(ranks);
  std::sort(groups.begin(), groups.end(),
            [](const std::vector<int>& a, const std::vector<int>& b) { return a[0] < b[0]; });
  return groups;
}

// Checks one grid; returns false at the first mismatch (after recording it).
bool check_grid(const Degrees& n, const Order& order) {
  const RankGrid g(n.tp, n.cp, n.dp, n.pp, n.ep, order);
  const int world = n.tp * n.cp * n.dp * n.pp;
  EXPECT_EQ(g.world_size(), world);
  if (g.world_size() != world) return false;
  for (Dim d : order) EXPECT_EQ(g.size(d), n.of(d));

  // Coordinates against an odometer whose first digit (in order, ep skipped) turns fastest.
  std::vector<Coords> coords(world);
  Coords digits{};
  for (int r = 0; r < world; ++r) {
    Coords c = g.coords(r);
    coords[r] = c;
    for (Dim d : order) {
      if (d == Dim::kEp) continue;
      if (c[at(d)] != digits[at(d)]) {
        ADD_FAILURE() << "rank " << r << " dim " << at(d) << ": " << c[at(d)] << " vs "
                      << digits[at(d)];
        return false;
      }
    }
    const int ep_idx = data_index(c, n, order).ep;
    if (c[at(Dim::kEp)] != ep_idx || g.rank_of(c) != r) {
      ADD_FAILURE() << "rank " << r << ": ep " << c[at(Dim::kEp)] << " rank_of " << g.rank_of(c);
      return false;
    }
    c[at(Dim::kEp)] = (c[at(Dim::kEp)] + 1) % n.ep;  // ignored by rank_of
    if (g.rank_of(c) != r) {
      ADD_FAILURE() << "rank_of looked at the ep coordinate for rank " << r;
      return false;
    }
    for (Dim d : order) {  // advance the odometer
      if (d == Dim::kEp) continue;
      if (++digits[at(d)] < n.of(d)) break;
      digits[at(d)] = 0;
    }
  }

  // Groups of every dim against the reference; each partitions the world into groups of size
  // equal to the degree, and group(r, d) is the one holding r.
  std::array<Groups, kNumDims> groups;
  for (Dim d : order) {
    groups[at(d)] = g.all_groups(d);
    const Groups expected = reference_groups(coords, n, order, d);
    if (groups[at(d)] != expected) {
      ADD_FAILURE() << "all_groups(" << at(d) << ") differs from the reference";
      return false;
    }
    std::vector<int> seen(world, 0);
    for (const std::vector<int>& grp : groups[at(d)]) {
      if (static_cast<int>(grp.size()) != n.of(d)) {
        ADD_FAILURE() << "group size " << grp.size() << " for dim " << at(d);
        return false;
      }
      for (int r : grp) {
        ++seen[r];
        if (g.group(r, d) != grp) {
          ADD_FAILURE() << "group(" << r << ", " << at(d) << ") is not its all_groups entry";
          return false;
        }
      }
    }
    if (std::count(seen.begin(), seen.end(), 1) != world) {
      ADD_FAILURE() << "groups of dim " << at(d) << " do not partition the world";
      return false;
    }
  }

  for (int r = 0; r < world; ++r) {
    // dp x cp is the union of the dp groups of r's cp peers.
    std::vector<int> dp_cp;
    for (int q : g.group(r, Dim::kCp)) {
      for (int p : g.group(q, Dim::kDp)) dp_cp.push_back(p);
    }
    std::sort(dp_cp.begin(), dp_cp.end());
    const std::vector<int> both = g.group(r, {Dim::kDp, Dim::kCp});
    if (both != dp_cp || static_cast<int>(both.size()) != n.dp * n.cp) {
      ADD_FAILURE() << "group(" << r << ", {dp, cp}) is not the union of dp groups over cp";
      return false;
    }
    // ep groups live inside dp x cp groups, and inside dp groups when they fit there (cp = 1).
    const std::vector<int> ep_group = g.group(r, Dim::kEp);
    const std::vector<int> dp_group = g.group(r, Dim::kDp);
    if (!std::includes(both.begin(), both.end(), ep_group.begin(), ep_group.end()) ||
        (n.cp == 1 &&
         !std::includes(dp_group.begin(), dp_group.end(), ep_group.begin(), ep_group.end()))) {
      ADD_FAILURE() << "ep group of rank " << r << " is not inside its dp x cp (dp) group";
      return false;
    }
    // Varying ep with one of cp and dp: the closure of both moves.
    for (Dim d : {Dim::kCp, Dim::kDp}) {
      std::vector<int> closure;
      for (int q : g.group(r, d)) {
        for (int p : g.group(q, Dim::kEp)) {
          for (int o : g.group(p, d)) closure.push_back(o);
        }
      }
      std::sort(closure.begin(), closure.end());
      closure.erase(std::unique(closure.begin(), closure.end()), closure.end());
      if (g.group(r, {Dim::kEp, d}) != closure) {
        ADD_FAILURE() << "group(" << r << ", {ep, " << at(d) << "}) is not the closure";
        return false;
      }
    }
  }
  return true;
}

std::vector<Order> every_order() {
  std::vector<Order> orders;
  Order order = kMegatronOrder;  // tp < cp < ep < dp < pp: the first permutation
  do {
    orders.push_back(order);
  } while (std::next_permutation(order.begin(), order.end()));
  return orders;
}

// Every grid with degrees in 1..4, ep | dp x cp and at most 64 ranks, each under Megatron's order
// and two others (rotating so that every order is used on several grids) where the ep digits nest
// with the inner of cp and dp (expert_grid_problem).
TEST(RankGrid, ExhaustiveSmallGrids) {
  const std::vector<Order> orders = every_order();
  ASSERT_EQ(orders.size(), 120u);
  ASSERT_EQ(orders[0], kMegatronOrder);
  std::vector<int> uses(orders.size(), 0);
  int grid = 0, checked = 0, across_cp = 0;
  for (int tp = 1; tp <= 4; ++tp) {
    for (int cp = 1; cp <= 4; ++cp) {
      for (int dp = 1; dp <= 4; ++dp) {
        for (int pp = 1; pp <= 4; ++pp) {
          if (tp * cp * dp * pp > 64) continue;
          for (int ep = 1; ep <= dp * cp; ++ep) {
            if (dp * cp % ep != 0) continue;
            const Degrees n{tp, cp, dp, pp, ep};
            for (int k : {0, 1 + (2 * grid) % 119, 1 + (2 * grid + 1) % 119}) {
              if (!expert_grid_problem(cp, dp, ep, orders[k]).empty()) continue;
              SCOPED_TRACE(describe(n, orders[k]));
              if (!check_grid(n, orders[k])) return;
              ++uses[k];
              ++checked;
              if (dp % ep != 0) ++across_cp;
            }
            ++grid;
          }
        }
      }
    }
  }
  EXPECT_EQ(grid, 654);
  EXPECT_GT(checked, 1500);
  EXPECT_GT(across_cp, 300) << "grids whose expert groups span cp";
  for (int u : uses) EXPECT_GE(u, 6);
}

// All 120 orders on grids where every dim is non-trivial and the degrees differ, so a stride
// taken from the wrong dim shows; ep splits dp unevenly (3 of 6) so inner and outer differ.
TEST(RankGrid, ExhaustiveEveryOrder) {
  for (const Order& order : every_order()) {
    for (const Degrees& n : {Degrees{3, 2, 4, 2, 2}, Degrees{2, 1, 6, 3, 3}}) {
      SCOPED_TRACE(describe(n, order));
      if (!check_grid(n, order)) return;
    }
  }
}

// --- Preconditions ---------------------------------------------------------------------------

TEST(RankGridDeathTest, RejectsBadConstruction) {
  EXPECT_DEATH(RankGrid(0, 1, 1, 1, 1, kMegatronOrder), "degree must be >= 1");
  EXPECT_DEATH(RankGrid(1, 1, 4, 1, 3, kMegatronOrder),
               "ep \\(3\\) must divide dp x cp \\(4 x 1\\)");
  // cp = 3 and ep = 2 (of dp x cp = 6) do not nest: ep's digits would straddle cp's.
  EXPECT_DEATH(RankGrid(1, 3, 2, 1, 2, kMegatronOrder), "ep \\(2\\) with cp = 3 must split it");
  EXPECT_DEATH(RankGrid(1, 1, 1, 1, 1, {Dim::kTp, Dim::kTp, Dim::kEp, Dim::kDp, Dim::kPp}),
               "not a permutation");
}

TEST(RankGridDeathTest, RejectsOutOfRangeRanksAndCoords) {
  const RankGrid g(2, 1, 2, 1, 1, kMegatronOrder);
  EXPECT_DEATH(g.coords(4), "outside world of 4");
  EXPECT_DEATH(g.group(-1, Dim::kTp), "outside world");
  EXPECT_DEATH(g.rank_of(Coords{2, 0, 0, 0, 0}), "tp coordinate 2");
}

}  // namespace
}  // namespace strata::strategies
