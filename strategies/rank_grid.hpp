// The rank grid: a pure mapping between global ranks and coordinates in (tp, cp, ep, dp, pp),
// following an order string whose first dimension varies fastest (Megatron's RankGenerator;
// "tp-cp-ep-dp-pp" puts tensor-parallel peers on consecutive ranks, i.e. inside a node).
//
// ep lives inside dp (DESIGN.md "World size"): the world is tp*cp*dp*pp, and the dp coordinate
// splits into an expert-parallel index and an expert-data-parallel index. If "ep" precedes "dp"
// in the order, ep is the inner (fast) part of dp: ep_idx = dp_idx % ep; otherwise it is the
// outer part: ep_idx = dp_idx / (dp / ep).
#pragma once

#include <array>
#include <initializer_list>
#include <vector>

#include "strategies/dims.hpp"

namespace strata::strategies {

struct StrategySpec;

using Coords = std::array<int, kNumDims>;  // indexed by static_cast<int>(Dim)

class RankGrid {
 public:
  // Degrees must be >= 1, ep must divide dp, and `order` must be a permutation of the five dims.
  // Violations are programming errors here (specs are validated before), checked with
  // STRATA_CHECK.
  RankGrid(int tp, int cp, int dp, int pp, int ep, const std::array<Dim, kNumDims>& order);
  // The grid of a strategy (its tp, cp, dp, pp, ep and order).
  explicit RankGrid(const StrategySpec& s);

  int world_size() const { return world_; }
  int size(Dim d) const { return size_[static_cast<int>(d)]; }
  const std::array<Dim, kNumDims>& order() const { return order_; }

  // Coordinates of `rank`; coords[kEp] is derived from coords[kDp] as described above.
  Coords coords(int rank) const;
  // Inverse of coords(); coords[kEp] is ignored (it is implied by coords[kDp]).
  int rank_of(const Coords& c) const;
  int coord(int rank, Dim d) const { return coords(rank)[static_cast<int>(d)]; }

  // The ranks that share every coordinate of `rank` except those in `dims`, ordered by
  // increasing rank. group(r, {kTp}) is r's tensor-parallel group; group(r, {kDp, kCp}) is the
  // gradient-reduction group when cp > 1. For kEp: ranks with the same tp, cp, pp and the same
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
};

}  // namespace strata::strategies
