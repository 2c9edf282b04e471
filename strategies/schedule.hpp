// Pipeline schedules materialised per stage: the exact order in which one pipeline rank runs
// its forward and backward units. Simulator and executor iterate this order, never the
// schedule's name (DESIGN.md "The Plan").
//
// ZB-V places its two chunks in a V instead: chunk 0 of stage s holds virtual stage s and chunk 1
// virtual stage 2 pp - 1 - s, so a micro-batch's forward goes down the stages on chunk 0 and
// back up on chunk 1, and stage 0 holds both the first and the last virtual stage
// (virtual_stage_of, stage_of_virtual).
//
// A unit is (phase, micro-batch, chunk). The zero-bubble schedules split a backward in two: a
// kBackward unit then computes the input gradients only (it is what the previous stage waits for)
// and a later kWeight unit the weight gradients of the same (micro-batch, chunk) (Qi et al.,
// "Zero Bubble Pipeline Parallelism", ICLR 2024: B and W). The other schedules have no kWeight
// units: their kBackward computes both.
// `chunk` is the model chunk on this rank (0..v-1 with
// v = virtual stages; always 0 without interleaving). Chunk c on stage s holds virtual stage
// c * pp + s (Megatron's interleaved layout), so the forward of a micro-batch visits
// stage 0 chunk 0, stage 1 chunk 0, ..., stage pp-1 chunk 0, stage 0 chunk 1, ...
#pragma once

#include <cstdint>
#include <vector>

#include "strategies/spec.hpp"

namespace strata::strategies {

enum class UnitPhase : std::uint8_t { kForward, kBackward, kWeight };

struct ScheduleUnit {
  UnitPhase phase = UnitPhase::kForward;
  int micro_batch = 0;
  int chunk = 0;
  bool operator==(const ScheduleUnit&) const = default;
};

// What ZB-V's order assumes each unit takes: per stage and chunk, the
// forward, backward (input gradients) and weight-gradient units' times, and the delay of a
// transfer between stages, in any one time unit (seconds from the cost model: lower_priced()'s
// callers, docs/plan.md "Pipeline schedules"). Empty: every unit takes one time unit and a
// transfer none, the schedules' textbook form.
struct UnitCosts {
  double forward = 1, backward = 1, weight = 1;
  bool operator==(const UnitCosts&) const = default;
};
struct ScheduleCosts {
  std::vector<std::vector<UnitCosts>> unit;  // [stage][chunk]; empty = unit costs
  double transfer = 0;
  double at(int stage, int chunk, UnitPhase phase) const;
  bool operator==(const ScheduleCosts&) const = default;
};

// The order of units on pipeline stage `stage` (0-based) of `pp` stages for `num_micro_batches`
// micro-batches and `virtual_stages` chunks per rank. Each (phase, micro-batch, chunk) appears
// exactly once.
//  - kGPipe: all forwards (micro-batch order), then all backwards (reverse micro-batch order).
//  - kOneFOneB: min(pp - stage - 1, m) warm-up forwards, then alternating one forward / one
//    backward, then the remaining backwards (PipeDream-Flush / Megatron 1F1B). v must be 1.
//  - kInterleaved: Megatron's interleaved 1F1B with v chunks; requires m % pp == 0. Warm-up is
//    min((pp - stage - 1) * 2 + (v - 1) * pp, m * v) units.
//  - kZbH1: ZB-H1. w = min(pp - stage - 1, m) warm-up forwards (1F1B's); then, while forwards
//    remain, a forward and a backward, followed by a W from the stage's (stage + 1)-th pair on;
//    then each remaining backward followed by a W; then the remaining W's. Every stage holds at
//    most min(pp, m) micro-batches between their forward and their W: 1F1B's peak (stage 0's),
//    so the W's a stage postpones fill the cool-down bubble. v must be 1.
//  - kZbH2: ZB-H2. Every stage may hold min(2 pp - 1, m) micro-batches between forward and W,
//    enough to stay busy from its first forward to its last W when F, B and W take equal time.
//    The order is the one a list scheduler gives under unit costs with all stages running
//    together: a free stage runs a backward whose gradient has arrived, else a forward whose
//    input has arrived while fewer than that cap are in flight, else its oldest pending W.
//    v must be 1.
//  - kZbV: ZB-V (Qi et al., arXiv:2401.10241 v2, sec. 6), two chunks per stage in the V
//    layout, v must be 2. The order is the unit-cost list scheduler's again (F, B and W of a
//    chunk one unit each), with every stage holding at most min(2 pp, 2 m) chunk units between
//    forward and W -- 1F1B's peak, pp micro-batches of the stage's layers -- and preferring a
//    forward of chunk 1 (it reaches the loss sooner) and a backward of chunk 0 (it frees the
//    stage below). A step takes 6 m + pp - 1 units when m >= pp, within 4 (schedule tests).
//  In every schedule but ZB-V the W's of a stage run in the order of its backwards, each after
//  its own; in ZB-V each W follows its own backward in the order the backwards ran.
//  With `costs` (non-empty), ZB-V is ordered for those unit and transfer times, as Qi et al.
//  build their V schedules from profiled F, B and W times: the list scheduler runs in time under
//  the same cap (a micro-batch enters only while the cap also holds its later chunk and those of
//  the micro-batches already in, so none is stranded), with each of a few tie-breaking rules, and
//  the shortest of those orders and the unit-cost one under `costs` is kept. A stage whose chunks
//  differ (uneven layer splits, the embedding and the loss) or whose backward takes longer than
//  its W then waits less. The other schedules, ZB-H1 and ZB-H2 the paper's handcrafted ones,
//  ignore `costs`.
// Preconditions are checked with STRATA_CHECK (specs are validated before lowering).
std::vector<ScheduleUnit> stage_schedule(Schedule kind, int pp, int stage, int num_micro_batches,
                                         int virtual_stages,
                                         const ScheduleCosts* costs = nullptr);

// The largest number of (micro-batch, chunk) forwards whose backward (its W, in a schedule that
// has them) has not yet run, over the stage's order: how many micro-batches' activations the
// stage holds at its peak.
int max_in_flight(const std::vector<ScheduleUnit>& order);

// Whether stage_schedule() orders schedule `kind` for given costs (ZB-V; the others ignore them):
// whether a Plan of it is worth pricing and lowering again (profiler/schedule_costs.hpp).
bool ordered_for_costs(Schedule kind);

// Whether schedule `kind` splits backwards into B and W units.
bool splits_backward(Schedule kind);

// The virtual stage that chunk `chunk` of pipeline stage `stage` holds, and the stage holding
// virtual stage `vs`: chunk * pp + stage (Megatron's interleaved layout), or the V of ZB-V.
int virtual_stage_of(Schedule kind, int pp, int stage, int chunk);
int stage_of_virtual(Schedule kind, int pp, int vs);

}  // namespace strata::strategies
