// Pipeline schedules materialised per stage: the exact order in which one pipeline rank runs
// its forward and backward units. Simulator and executor iterate this order, never the
// schedule's name (DESIGN.md "The Plan").
//
// A unit is (phase, micro-batch, chunk). `chunk` is the model chunk on this rank (0..v-1 with
// v = virtual stages; always 0 without interleaving). Chunk c on stage s holds virtual stage
// c * pp + s (Megatron's interleaved layout), so the forward of a micro-batch visits
// stage 0 chunk 0, stage 1 chunk 0, ..., stage pp-1 chunk 0, stage 0 chunk 1, ...
#pragma once

#include <cstdint>
#include <vector>

#include "strategies/spec.hpp"

namespace strata::strategies {

enum class UnitPhase : std::uint8_t { kForward, kBackward };

struct ScheduleUnit {
  UnitPhase phase = UnitPhase::kForward;
  int micro_batch = 0;
  int chunk = 0;
  bool operator==(const ScheduleUnit&) const = default;
};

// The order of units on pipeline stage `stage` (0-based) of `pp` stages for `num_micro_batches`
// micro-batches and `virtual_stages` chunks per rank. Each (phase, micro-batch, chunk) appears
// exactly once.
//  - kGPipe: all forwards (micro-batch order), then all backwards (reverse micro-batch order).
//  - kOneFOneB: min(pp - stage - 1, m) warm-up forwards, then alternating one forward / one
//    backward, then the remaining backwards (PipeDream-Flush / Megatron 1F1B). v must be 1.
//  - kInterleaved: Megatron's interleaved 1F1B with v chunks; requires m % pp == 0. Warm-up is
//    min((pp - stage - 1) * 2 + (v - 1) * pp, m * v) units.
// Preconditions are checked with STRATA_CHECK (specs are validated before lowering).
std::vector<ScheduleUnit> stage_schedule(Schedule kind, int pp, int stage, int num_micro_batches,
                                         int virtual_stages);

// The largest number of (micro-batch, chunk) forwards whose backward has not yet run, over the
// stage's order: how many micro-batches' activations the stage holds at its peak.
int max_in_flight(const std::vector<ScheduleUnit>& order);

}  // namespace strata::strategies
