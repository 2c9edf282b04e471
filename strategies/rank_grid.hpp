// The rank grid: a pure mapping between global ranks and coordinates in (tp, cp, ep, dp, pp),
// following an order string whose first dimension varies fastest (Megatron's RankGenerator;
// "tp-cp-ep-dp-pp" puts tensor-parallel peers on consecutive ranks, i.e. inside a node).
//
// ep lives inside dp x cp, as Megatron-Core draws its expert groups (DESIGN.md "World size": the
// world is tp*cp*dp*pp): the data coordinate m = i + a * o joins cp and dp (i the one of them
// earlier in the order, of size a; with cp = 1, m is the dp index) and splits into an
// expert-parallel index and an expert-data-parallel index. If "ep" precedes "dp" in the order,
// ep is the inner (fast) part: ep_idx = m % ep; otherwise the outer: ep_idx = m / (cp dp / ep).
// Under the default tp-cp-ep-dp-pp an expert group takes cp peers first, then dp peers.
#pragma once

#include <array>
#include <initializer_list>
#include <string>
#include <vector>

#include "strategies/dims.hpp"

namespace strata::strategies {

struct StrategySpec;

using Coords = std::array<int, kNumDims>;  // indexed by static_cast<int>(Dim)

// Why `ep` cannot be carved out of dp x cp under `order` (the rule, for "strategy.ep = N: ..."),
// or "" if it can: ep must divide cp dp, and the part of the data coordinate below the ep digits
// (ep when inner, cp dp / ep when outer) must divide, or be a multiple of, the size of the inner of
// cp and dp, so every expert group is a product of coordinate ranges.
std::string expert_grid_problem(int cp, int dp, int ep, const std::array<Dim, kNumDims>& order);

class RankGrid {
 public:
  // Degrees must be >= 1, expert_grid_problem() must be "", and `order` must be a permutation of
  // the five dims.
  // Violations are programming errors here (specs are validated before), checked with
  // STRATA_CHECK.
  RankGrid(int tp, int cp, int dp, int pp, int ep, const std::array<Dim, kNumDims>& order);
  // The grid of a strategy (its tp, cp, dp, pp, ep and order).
  explicit RankGrid(const StrategySpec& s);

  int world_size() const { return world_; }
  int size(Dim d) const { return size_[static_cast<int>(d)]; }
  const std::array<Dim, kNumDims>& order() const { return order_; }

  // Coordinates of `rank`; coords[kEp] is derived from coords[kCp] and coords[kDp] as above.
  Coords coords(int rank) const;
  // Inverse of coords(); coords[kEp] is ignored (it is implied by coords[kCp] and coords[kDp]).
  int rank_of(const Coords& c) const;
  int coord(int rank, Dim d) const { return coords(rank)[static_cast<int>(d)]; }

  // The ranks that share every coordinate of `rank` except those in `dims`, ordered by
  // increasing rank. group(r, {kTp}) is r's tensor-parallel group; group(r, {kDp, kCp}) is the
  // gradient-reduction group when cp > 1. For kEp: ranks with the same tp, pp and the same
  // expert-data-parallel index.
  std::vector<int> group(int rank, std::initializer_list<Dim> dims) const;
  std::vector<int> group(int rank, Dim d) const { return group(rank, {d}); }

  // Every group of dimension `d`, each once, ordered by their smallest rank.
  std::vector<std::vector<int>> all_groups(Dim d) const;

 private:
  int world_ = 1;
  std::array<int, kNumDims> size_{};    // by Dim
  std::array<int, kNumDims> stride_{};  // by Dim; stride of kEp unused (0)
  std::array<Dim, kNumDims> order_{};
  bool ep_inner_ = true;
  Dim data_inner_ = Dim::kCp;  // the data coordinate's fast dim (cp or dp) and its slow one
  Dim data_outer_ = Dim::kDp;
  // The ep digits of cp and of dp: digit = coordinate / step % size (size 1 where none).
  struct EpAxis {
    int size = 1;
    int step = 1;
  };
  std::array<EpAxis, kNumDims> ep_axis_{};
};

}  // namespace strata::strategies
