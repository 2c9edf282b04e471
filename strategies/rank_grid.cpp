// RankGrid: mixed-radix numbering of ranks over (tp, cp, dp, pp) in the strategy's order, with ep
// carved out of the joint dp x cp coordinate. Groups are enumerated directly (a product of
// coordinate ranges), never found by scanning the world, so building every group is linear in world
// size.
#include "strategies/rank_grid.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>
#include <utility>

#include "common/error.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {
namespace {

int index_of(Dim d) { return static_cast<int>(d); }

constexpr int kTpIdx = static_cast<int>(Dim::kTp);
constexpr int kCpIdx = static_cast<int>(Dim::kCp);
constexpr int kEpIdx = static_cast<int>(Dim::kEp);
constexpr int kDpIdx = static_cast<int>(Dim::kDp);
constexpr int kPpIdx = static_cast<int>(Dim::kPp);

bool valid_dim(Dim d) { return index_of(d) >= 0 && index_of(d) < kNumDims; }

// The data coordinate m = i + a * o joins cp and dp: i is the one of them earlier in the order
// (size a), o the other. Megatron-Core's expert grid (tp-ep-dp-pp with the dense grid's cp folded
// in) draws the expert-parallel group from it: ep_idx = m % ep when "ep" precedes "dp" in the
// order, m / (cp dp / ep) otherwise.
struct DataCoordinate {
  Dim inner = Dim::kCp;
  Dim outer = Dim::kDp;
};

DataCoordinate data_coordinate(const std::array<Dim, kNumDims>& order) {
  for (Dim d : order) {
    if (d == Dim::kCp) return {Dim::kCp, Dim::kDp};
    if (d == Dim::kDp) return {Dim::kDp, Dim::kCp};
  }
  return {};
}

bool ep_precedes_dp(const std::array<Dim, kNumDims>& order) {
  for (Dim d : order) {
    if (d == Dim::kEp) return true;
    if (d == Dim::kDp) return false;
  }
  return false;
}

}  // namespace

std::string expert_grid_problem(int cp, int dp, int ep, const std::array<Dim, kNumDims>& order) {
  const int data = cp * dp;
  if (ep < 1 || data % ep != 0) {
    return "must divide dp x cp (" + std::to_string(dp) + " x " + std::to_string(cp) +
           "): the expert-parallel group is drawn from the data-parallel and context-parallel "
           "ranks";
  }
  // The part of m below the ep digits (ep itself when inner, cp dp / ep when outer) must nest
  // with the inner of cp and dp, so every expert group is a product of coordinate ranges.
  const int low = ep_precedes_dp(order) ? ep : data / ep;
  const DataCoordinate dc = data_coordinate(order);
  const int a = dc.inner == Dim::kCp ? cp : dp;
  if (low % a != 0 && a % low != 0) {
    return std::string("with ") + dim_name(dc.inner) + " = " + std::to_string(a) +
           " must split it evenly (" + std::to_string(low) + " and " + std::to_string(a) +
           " must divide one another): the expert-parallel group is drawn from the ranks of "
           "dp x cp, " +
           dim_name(dc.inner) + " first";
  }
  return {};
}

RankGrid::RankGrid(int tp, int cp, int dp, int pp, int ep, const std::array<Dim, kNumDims>& order)
    : order_(order) {
  STRATA_CHECK(tp >= 1 && cp >= 1 && dp >= 1 && pp >= 1 && ep >= 1,
               "RankGrid: every degree must be >= 1, got tp=" + std::to_string(tp) +
                   " cp=" + std::to_string(cp) + " dp=" + std::to_string(dp) +
                   " pp=" + std::to_string(pp) + " ep=" + std::to_string(ep));
  std::array<bool, kNumDims> seen{};
  for (Dim d : order_) {
    STRATA_CHECK(valid_dim(d) && !seen[index_of(d)], "RankGrid: order " + order_string(order_) +
                                                         " is not a permutation of tp,cp,ep,dp,pp");
    seen[index_of(d)] = true;
  }

  size_[kTpIdx] = tp;
  size_[kCpIdx] = cp;
  size_[kEpIdx] = ep;
  size_[kDpIdx] = dp;
  size_[kPpIdx] = pp;

  const std::string problem = expert_grid_problem(cp, dp, ep, order_);
  STRATA_CHECK(problem.empty(), "RankGrid: ep (" + std::to_string(ep) + ") " + problem);
  ep_inner_ = ep_precedes_dp(order_);
  const DataCoordinate dc = data_coordinate(order_);
  data_inner_ = dc.inner;
  data_outer_ = dc.outer;
  // The ep digits of each data dim: digit = coordinate / step % size (size 1: none).
  const int a = size_[index_of(dc.inner)], data = cp * dp;
  const int low = ep_inner_ ? ep : data / ep;
  auto& inner_axis = ep_axis_[index_of(dc.inner)];
  auto& outer_axis = ep_axis_[index_of(dc.outer)];
  const bool nested = a % low == 0;  // the low part inside the inner dim (else it spans it)
  if (ep_inner_) {
    inner_axis = nested ? EpAxis{low, 1} : EpAxis{a, 1};
    outer_axis = nested ? EpAxis{1, 1} : EpAxis{low / a, 1};
  } else {
    inner_axis = nested ? EpAxis{a / low, low} : EpAxis{1, 1};
    outer_axis = nested ? EpAxis{data / a, 1} : EpAxis{ep, low / a};
  }

  // Strides in order, first dim fastest; ep takes no stride of its own (it lives in dp x cp).
  std::int64_t stride = 1;
  for (Dim d : order_) {
    if (d == Dim::kEp) continue;
    stride_[index_of(d)] = static_cast<int>(stride);
    stride *= size_[index_of(d)];
    STRATA_CHECK(stride <= INT_MAX, "RankGrid: world size overflows int");
  }
  world_ = static_cast<int>(stride);
}

RankGrid::RankGrid(const StrategySpec& s) : RankGrid(s.tp, s.cp, s.dp, s.pp, s.ep, s.order) {}

Coords RankGrid::coords(int rank) const {
  STRATA_CHECK(rank >= 0 && rank < world_, "RankGrid::coords: rank " + std::to_string(rank) +
                                               " outside world of " + std::to_string(world_));
  Coords c{};
  for (Dim d : order_) {
    if (d == Dim::kEp) continue;
    const int i = index_of(d);
    c[i] = rank / stride_[i] % size_[i];
  }
  const int a = size_[index_of(data_inner_)];
  const int m = c[index_of(data_inner_)] + a * c[index_of(data_outer_)];
  const int ep = size_[kEpIdx];
  c[kEpIdx] = ep_inner_ ? m % ep : m / (size_[kCpIdx] * size_[kDpIdx] / ep);
  return c;
}

int RankGrid::rank_of(const Coords& c) const {
  int rank = 0;
  for (Dim d : order_) {
    if (d == Dim::kEp) continue;
    const int i = index_of(d);
    STRATA_CHECK(c[i] >= 0 && c[i] < size_[i],
                 std::string("RankGrid::rank_of: ") + dim_name(d) + " coordinate " +
                     std::to_string(c[i]) + " outside [0, " + std::to_string(size_[i]) + ")");
    rank += c[i] * stride_[i];
  }
  return rank;
}

std::vector<int> RankGrid::group(int rank, std::initializer_list<Dim> dims) const {
  const Coords c = coords(rank);
  std::array<bool, kNumDims> vary{};
  for (Dim d : dims) {
    STRATA_CHECK(valid_dim(d), "RankGrid::group: invalid dim " + std::to_string(index_of(d)));
    vary[index_of(d)] = true;
  }

  // The group is `base` (`rank` with every varying coordinate at 0) plus every combination of
  // steps along the varying axes. Varying ep (and not all of the data dim) varies the ep digits
  // of cp and dp: an axis of `size` values whose step is the dim's stride times the digit's.
  int base = 0;
  std::array<int, kNumDims> axis_size{};
  std::array<int, kNumDims> axis_step{};
  int num_axes = 0;
  int group_size = 1;
  for (Dim d : order_) {
    if (d == Dim::kEp) continue;
    const int i = index_of(d);
    if (vary[i]) {
      axis_size[num_axes] = size_[i];
      axis_step[num_axes++] = stride_[i];
      group_size *= size_[i];
    } else if (vary[kEpIdx] && ep_axis_[i].size > 1) {
      const EpAxis& e = ep_axis_[i];
      base += (c[i] - c[i] / e.step % e.size * e.step) * stride_[i];
      axis_size[num_axes] = e.size;
      axis_step[num_axes++] = stride_[i] * e.step;
      group_size *= e.size;
    } else {
      base += c[i] * stride_[i];
    }
  }
  std::vector<int> ranks;
  ranks.reserve(group_size);
  ranks.push_back(base);
  for (int a = 0; a < num_axes; ++a) {
    const std::size_t n = ranks.size();
    for (int v = 1; v < axis_size[a]; ++v) {
      for (std::size_t j = 0; j < n; ++j) ranks.push_back(ranks[j] + v * axis_step[a]);
    }
  }
  std::sort(ranks.begin(), ranks.end());
  return ranks;
}

std::vector<std::vector<int>> RankGrid::all_groups(Dim d) const {
  // Groups of one dim partition the world, so the smallest rank not yet covered always starts
  // the next group: scanning ranks upward yields each group once, ordered by smallest rank.
  std::vector<std::vector<int>> groups;
  std::vector<bool> covered(world_, false);
  for (int r = 0; r < world_; ++r) {
    if (covered[r]) continue;
    std::vector<int> g = group(r, d);
    for (int q : g) covered[q] = true;
    groups.push_back(std::move(g));
  }
  return groups;
}

}  // namespace strata::strategies
