// Plan helpers beyond the programs: device capacity per rank, a stage's first rank and the first
// rank over capacity.
#include "strategies/plan.hpp"

namespace strata::strategies {

double Plan::capacity_bytes(int rank) const {
  return cluster.group_of_gpu(rank).gpu.memory_bytes;
}

int first_rank_of_stage(const Plan& plan, int stage) {
  Coords c{};
  c[static_cast<int>(Dim::kPp)] = stage;
  return plan.grid().rank_of(c);
}

int first_rank_over_capacity(const Plan& plan) {
  for (int r = 0; r < plan.world_size; ++r) {
    if (plan.program_of(r).memory.peak_bytes() > plan.capacity_bytes(r)) return r;
  }
  return -1;
}

}  // namespace strata::strategies
