// Folding by symmetry (docs/simulator.md "Scale"): the tensor-parallel orbits handed to the
// platform, and whether a plan's traffic is symmetric under them, so that each folded flow and
// its tensor-parallel peers' copies can run as one bundle (sim/platform.hpp, bundle_hosts).
// Internal to sim/.
#pragma once

#include <vector>

#include "sim/collectives.hpp"
#include "strategies/plan.hpp"

namespace strata::sim::detail {

// The tensor-parallel groups of the plan's layout, each in tp-coordinate order (sigma: tp
// coordinate + 1 mod tp, the other coordinates unchanged).
std::vector<std::vector<int>> tp_orbits(const strategies::Plan& plan);

// sigma^c(rank): `rank` with its tp coordinate advanced by c (mod tp).
int tp_shift(const strategies::Plan& plan, int rank, int c);

// Whether every flow the folded replay starts has its tensor-parallel peers' copies as sigma
// images, so that the copies can be bundled: the `active` ranks (the representatives) all have
// tp coordinate 0; each pipeline send goes to a rank of tp coordinate 0 and sigma^c of the
// sender sends to sigma^c of its peer; each collective's group is either the sender's whole
// tensor-parallel group, in a kind whose flows sigma permutes (all-reduce, all-gather,
// reduce-scatter, all-to-all: not a broadcast chain), or a group of tp coordinate 0 only whose
// sigma^c image is the group sigma^c of the rank names. Reads each active rank's program once.
bool traffic_is_symmetric(const strategies::Plan& plan, const std::vector<char>& active);

// A collective over one tensor-parallel group (`ranks`, in tp order), whose flows sigma permutes
// among themselves: every transfer a -> b is sigma^c of the transfer ranks[0] -> sigma^-c(b)
// (c: a's tp coordinate), which runs as a bundle for it. Returns, for each flow from ranks[0],
// the flows it stands for (empty for the others). Those transfers start together (an aggregated
// ring, an all-to-all), so each image completes with the transfer that stands for it; checked.
std::vector<std::vector<int>> orbit_images(const strategies::Plan& plan, const FlowSchedule& s,
                                           const std::vector<int>& ranks);

}  // namespace strata::sim::detail
