// A communicator over some ranks of another (a federated site's ranks: docs/federated.md "Running
// it for real"): the members are renumbered 0..n-1 in the parent's order, and every operation
// goes to the parent with ranks mapped back. Groups are the parent's: split() is collective over
// the parent's whole world, so every rank of the parent must call it the same number of times in
// the same order, each with its own sub-communicator's group (sites that run the same Plan do
// exactly that). barrier() waits for the members only (a one-float all-reduce over them).
#pragma once

#include <memory>
#include <vector>

#include "executor/comm.hpp"

namespace strata::exec {

// Collective over `parent`'s world: every rank passes its own members (the world ranks of its
// sub-communicator, sorted, containing parent.rank(); disjoint across sub-communicators).
// `parent` must outlive the result.
std::unique_ptr<Comm> make_sub_comm(Comm& parent, const std::vector<int>& members);

}  // namespace strata::exec
