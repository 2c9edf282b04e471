// RankGrid: mixed-radix numbering of ranks over (tp, cp, dp, pp) in the strategy's order, with ep
// carved out of the dp coordinate. Groups are enumerated directly (a product of coordinate
// ranges), never found by scanning the world, so building every group is linear in world size.
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

// The dp coordinate is (ep index, expert-data-parallel index) in mixed radix; which part is the
// fast one depends on whether ep precedes dp in the order.
int ep_index(int dp_idx, int dp, int ep, bool ep_inner) {
  return ep_inner ? dp_idx % ep : dp_idx / (dp / ep);
}
int edp_index(int dp_idx, int dp, int ep, bool ep_inner) {
  return ep_inner ? dp_idx / ep : dp_idx % (dp / ep);
}
int dp_index(int ep_idx, int edp_idx, int dp, int ep, bool ep_inner) {
  return ep_inner ? edp_idx * ep + ep_idx : ep_idx * (dp / ep) + edp_idx;
}

}  // namespace

RankGrid::RankGrid(int tp, int cp, int dp, int pp, int ep, const std::array<Dim, kNumDims>& order)
    : order_(order) {
  STRATA_CHECK(tp >= 1 && cp >= 1 && dp >= 1 && pp >= 1 && ep >= 1,
               "RankGrid: every degree must be >= 1, got tp=" + std::to_string(tp) +
                   " cp=" + std::to_string(cp) + " dp=" + std::to_string(dp) +
                   " pp=" + std::to_string(pp) + " ep=" + std::to_string(ep));
  STRATA_CHECK(dp % ep == 0, "RankGrid: ep (" + std::to_string(ep) + ") must divide dp (" +
                                 std::to_string(dp) + ")");
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

  // Strides in order, first dim fastest; ep takes no stride of its own (it lives inside dp).
  std::int64_t stride = 1;
  bool dp_seen = false;
  for (Dim d : order_) {
    if (d == Dim::kEp) {
      ep_inner_ = !dp_seen;
      continue;
    }
    if (d == Dim::kDp) dp_seen = true;
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
  c[kEpIdx] = ep_index(c[kDpIdx], size_[kDpIdx], size_[kEpIdx], ep_inner_);
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
  // steps along the varying axes. Varying only the ep part of dp is an axis of ep values whose
  // step is dp's stride times the radix below ep inside dp (1 if ep is inner, dp/ep if outer).
  const int dp = size_[kDpIdx];
  const int ep = size_[kEpIdx];
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
    } else if (d == Dim::kDp && vary[kEpIdx]) {
      base += dp_index(0, edp_index(c[i], dp, ep, ep_inner_), dp, ep, ep_inner_) * stride_[i];
      axis_size[num_axes] = ep;
      axis_step[num_axes++] = stride_[i] * (ep_inner_ ? 1 : dp / ep);
      group_size *= ep;
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
