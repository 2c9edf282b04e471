// The Plan: a strategy lowered for one model on one cluster. Its executable part (per-rank
// programs of ops over named tensors, and the rank topology) is a ProgramSet (program.hpp),
// which the executor interprets, the profiler times and the simulator prices; the Plan adds the
// specs it was lowered from and totals over every rank (DESIGN.md "The Plan").
//
// Lowering (lower.cpp and detail/) is a model description -- blocks and their forward ops, from
// which backward and recompute are derived -- followed by one pass per concern: tensor and
// sequence parallelism, the pipeline schedule, data parallelism with buckets and ZeRO, and
// recomputation; memory follows from the buffers' lifetimes (docs/plan.md).
#pragma once

#include <vector>

#include "strategies/accounting.hpp"
#include "strategies/program.hpp"
#include "strategies/rank_grid.hpp"
#include "strategies/schedule.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {

// Totals over every rank of the step.
struct PlanTotals {
  StepFlops flops;                 // summed over the tasks (equals step_flops())
  double tasks = 0;                // tasks over all ranks
  double tasks_by_kind[4] = {};    // by TaskKind
  // Bytes over all ranks by collective kind (index CollectiveKind) and purpose (index Purpose),
  // p2p included under kNone collective with purpose kPp.
  static constexpr int kCollectives = static_cast<int>(CollectiveKind::kRingShift) + 1;
  static constexpr int kPurposes = static_cast<int>(Purpose::kReshard) + 1;
  double comm_bytes[kCollectives][kPurposes] = {};
  double comm_count[kCollectives][kPurposes] = {};
};

struct Plan : ProgramSet {
  ModelSpec model;
  ClusterSpec cluster;
  StrategySpec strategy;
  std::vector<int> layer_layout;       // per layer: index into layouts
  std::vector<int> stage_first_layer;  // per virtual stage: first layer; size pp*v + 1
  // The unit times ZB-V's stages were ordered for (schedule.hpp); empty: unit costs.
  // lower_priced() (profiler/schedule_costs.hpp) fills it from a cost model.
  ScheduleCosts schedule_costs;
  PlanTotals totals;

  // Device memory capacity of `rank` (heterogeneous clusters differ per rank).
  double capacity_bytes(int rank) const;
};

// Validates the specs (ConfigError on any broken rule) and lowers them to a Plan for a world of
// `world_size` ranks, which must not exceed the cluster's devices. Lowering does not refuse a
// plan that exceeds device memory: callers check first_rank_over_capacity() and report it.
Plan lower(const ModelSpec& m, const ClusterSpec& c, const StrategySpec& s, int world_size);
// The same with ZB-V's stages ordered for `costs` (schedule.hpp stage_schedule; ignored by the
// other schedules, and empty means unit costs).
Plan lower(const ModelSpec& m, const ClusterSpec& c, const StrategySpec& s, int world_size,
           const ScheduleCosts& costs);

// What lower() refuses beyond validate(): valid strategies it does not lower yet (context
// parallelism with hybrid sharding, per-layer tp changes with sequence parallelism or with pp
// not outermost). ConfigError naming the field.
void check_lowerable(const StrategySpec& s);
// The same, and what a mixture-of-experts model is not lowered with yet (shared experts; with
// experts: expert_tp other than 1 or tp, tp > 1 without sequence parallelism, FP8,
// tp_comm_overlap, ZeRO-3, hybrid sharding, per-layer tp), naming the field.
void check_lowerable(const ModelSpec& m, const StrategySpec& s);

// FLOPs, tasks and communication bytes over every rank (each stage's program runs on
// world / pp ranks); lower() fills Plan::totals with it, readers of plan.json too.
PlanTotals compute_totals(const Plan& plan);

// The first rank of pipeline stage `stage` (every other coordinate 0): the rank whose device
// stands for the stage (its program and, on a placed cluster, its node group).
int first_rank_of_stage(const Plan& plan, int stage);

// The first rank whose peak exceeds its capacity, or -1 when every rank fits.
int first_rank_over_capacity(const Plan& plan);

}  // namespace strata::strategies
