// The layer split of a per-group strategy proposed from its node groups' speeds
// (docs/heterogeneous.md "Proposed splits"): a pipeline whose first stages run on H100 nodes and
// the rest on A100 nodes balances when each stage's time, not its layer count, is equal.
//
// defines: StageSpeed, stage_speeds(), balance_layers(), propose_stage_layers()
#pragma once

#include <string>
#include <vector>

#include "profiler/cost_model.hpp"
#include "strategies/plan.hpp"

namespace strata::profiler {

// One pipeline stage's step: seconds per layer (its layers' compute-stream tasks and their
// tensor-parallel collectives, over every micro-batch, divided by its layers) and the seconds
// of its other work (the embedding, the head and loss, the optimizer).
struct StageSpeed {
  double layer_seconds = 0;
  double other_seconds = 0;
};

// Each stage's speed priced by `cost` on its first rank's device (a stage runs the same
// program on every rank).
std::vector<StageSpeed> stage_speeds(const strategies::Plan& plan, const CostModel& cost);

// Layers per stage, each >= 1 and <= max_layers[k] (0: no limit), summing to `layers`, that
// minimise the largest layers[k] * layer_seconds + other_seconds (each layer goes where it
// finishes soonest; exact for this separable objective). Empty when the limits leave no
// split.
std::vector<int> balance_layers(int layers, const std::vector<StageSpeed>& speeds,
                                const std::vector<int>& max_layers);

// The strategy with every "auto" stage's layers proposed: lowered once with an even split to
// price each stage's layer on its device (stage_speeds), balanced (balance_layers), then lowered
// with the proposal and, while a stage's peak memory exceeds its devices', that stage capped at
// one layer fewer and the rest rebalanced. Unchanged without "auto" stages. `why` (optional)
// receives a line for people: the speeds and the split, or why memory moved layers. A split
// that fits nowhere is returned balanced for time (the memory check reports it).
strategies::StrategySpec propose_stage_layers(const strategies::ModelSpec& m,
                                              const strategies::ClusterSpec& c,
                                              const strategies::StrategySpec& s, int world_size,
                                              const CostModel& cost, std::string* why = nullptr);

}  // namespace strata::profiler
