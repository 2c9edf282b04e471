// The times ZB-V's pipeline order is built for: each unit of a lowered Plan priced by a cost
// model, as Qi et al.'s V schedules are built from profiled F, B and W times
// (docs/plan.md "Pipeline schedules", strategies/schedule.hpp ScheduleCosts).
//
// defines: schedule_costs(), lower_priced()
#pragma once

#include "profiler/cost_model.hpp"
#include "strategies/plan.hpp"

namespace strata::profiler {

// Per stage and chunk, the mean over micro-batches of the seconds of the compute-stream tasks of
// its forward, backward and weight-gradient units (the tasks of a unit: Program::unit_begin);
// the transfer time is the mean over the pipeline sends of one stage's program of a send of
// their bytes between the two ranks (a two-rank broadcast on the link face). A schedule without
// W units has each backward's whole time as its backward and W = B: only ZB-V uses them.
strategies::ScheduleCosts schedule_costs(const strategies::Plan& plan, const CostModel& cost);

// strategies::lower() of the strategy with its "auto" stage layers proposed for `cost`
// (stage_split.hpp propose_stage_layers), and for ZB-V lowered again with the stages ordered
// for the times `cost` gives that first Plan's units (schedule_costs()). `plan`, `simulate`
// and `run` lower through it, so the three see one order and one split.
strategies::Plan lower_priced(const strategies::ModelSpec& m, const strategies::ClusterSpec& c,
                              const strategies::StrategySpec& s, int world_size,
                              const CostModel& cost);

}  // namespace strata::profiler
