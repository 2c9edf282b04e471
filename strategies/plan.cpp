// Plan helpers beyond the programs: device capacity per rank and the first rank over it.
#include "strategies/plan.hpp"

namespace strata::strategies {

double Plan::capacity_bytes(int rank) const {
  return cluster.group_of_gpu(rank).gpu.memory_bytes;
}

int first_rank_over_capacity(const Plan& plan) {
  for (int r = 0; r < plan.world_size; ++r) {
    if (plan.program_of(r).memory.peak_bytes() > plan.capacity_bytes(r)) return r;
  }
  return -1;
}

}  // namespace strata::strategies
