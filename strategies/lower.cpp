// Lowering: specs -> Plan. Validates, builds the rank layouts and the stage partition, then one
// program per pipeline stage (detail/pipeline.cpp walks the stage's schedule; the model
// description, tensor and data parallelism are passes in detail/), and totals over all ranks.
//
// defines:
//   check_lowerable()  valid specs not lowered yet (MoE models, some strategy combinations)
//   lower()            validate, layouts, partition, one program per stage, totals
//   compute_totals()   FLOPs, tasks and communication bytes over every rank
#include <algorithm>
#include <map>

#include "common/error.hpp"
#include "common/hash.hpp"
#include "common/version.hpp"
#include "strategies/detail/lowering.hpp"
#include "strategies/plan.hpp"

namespace strata::strategies {

// Totals over all ranks: each stage's program runs on world/pp ranks.
PlanTotals compute_totals(const Plan& plan) {
  PlanTotals out;
  const double ranks_per_stage = static_cast<double>(plan.world_size) / plan.strategy.pp;
  const auto rps = static_cast<FlopCount>(plan.world_size / plan.strategy.pp);
  for (const Program& p : plan.programs) {
    for (const Task& t : p.tasks) {
      out.tasks += ranks_per_stage;
      out.tasks_by_kind[static_cast<int>(t.kind)] += ranks_per_stage;
      if (t.kind == TaskKind::kCompute) {
        const auto f = static_cast<FlopCount>(t.flops);
        if (t.phase != Phase::kRecompute) out.flops.model += f * rps;
        out.flops.hardware += f * rps;
      } else if (t.kind != TaskKind::kRecv) {
        // Count a transfer once (at its sender); a collective once per participating rank.
        const int c = static_cast<int>(t.collective), pu = static_cast<int>(t.purpose);
        out.comm_bytes[c][pu] += t.bytes * ranks_per_stage;
        out.comm_count[c][pu] += ranks_per_stage;
      }
    }
  }
  if (plan.model.is_moe()) {
    // Every rank of a stage runs one program, whose experts are sized for the most loaded
    // expert-parallel rank: the sum over ranks overstates the routed work under imbalanced
    // routing. The model's FLOPs are the routed tokens' (accounting); the recomputed forwards
    // stay the Plan's.
    const FlopCount model = step_flops(plan.model, plan.strategy).model;
    out.flops.hardware = out.flops.hardware - out.flops.model + model;
    out.flops.model = model;
  }
  return out;
}

void check_lowerable(const StrategySpec& s) {
  if (s.cp > 1 && s.zero_shard_group > 0 && s.zero_shard_group < s.dp) {
    throw ConfigError("strategy.cp = " + std::to_string(s.cp) +
                      ": context parallelism with hybrid sharding (zero_shard_group " +
                      std::to_string(s.zero_shard_group) + " < dp " + std::to_string(s.dp) +
                      ") is not lowered yet; use zero_shard_group = dp or cp = 1");
  }
  const auto& order = s.order;
  const auto pos = [&](Dim d) { return std::find(order.begin(), order.end(), d) - order.begin(); };
  const bool pp_outside = pos(Dim::kPp) > pos(Dim::kTp) && pos(Dim::kPp) > pos(Dim::kDp);
  for (std::size_t i = 0; i < s.layer_overrides.size(); ++i) {
    if (s.layer_overrides[i].tp != 0 && s.layer_overrides[i].tp != s.tp && !pp_outside) {
      throw ConfigError("strategy.order = \"" + s.order_string() +
                        "\": per-layer tp overrides need pp after tp and dp in the order, so a "
                        "stage's ranks stay the same when tp and dp trade places");
    }
  }
  if (s.sequence_parallel) {
    for (std::size_t i = 0; i < s.layer_overrides.size(); ++i) {
      if (s.layer_overrides[i].tp != 0 && s.layer_overrides[i].tp != s.tp) {
        throw ConfigError(override_field(s, i) +
                          ".tp = " + std::to_string(s.layer_overrides[i].tp) +
                          ": a per-layer tp change with sequence_parallel is not lowered yet; "
                          "set sequence_parallel false or drop the tp override");
      }
    }
  }
}

// Mixture-of-experts layers are lowered with expert_tp 1 or tp, and without the strategy
// features whose interplay with expert parallelism is not modelled yet.
void check_moe_lowerable(const StrategySpec& s) {
  const auto refuse = [](const std::string& field, const std::string& value,
                         const std::string& why) {
    throw ConfigError(field + " = " + value + ": " + why +
                      " with a mixture-of-experts model is not lowered yet");
  };
  const auto str = [](auto v) { return std::to_string(v); };
  if (s.expert_tp_size() != s.tp && s.expert_tp_size() != 1) {
    refuse("strategy.expert_tp", str(s.expert_tp_size()),
           "an expert_tp other than 1 or tp (" + str(s.tp) + ")");
  }
  if (s.tp > 1 && !s.sequence_parallel) {
    throw ConfigError("strategy.sequence_parallel = false: expert parallelism with tp = " +
                      str(s.tp) + " needs sequence_parallel true (Megatron-Core's rule: each "
                      "tensor-parallel rank routes its own rows)");
  }
  if (s.uses_fp8()) refuse("strategy.fp8", "on", "FP8");
  if (s.tp_comm_overlap) refuse("strategy.tp_comm_overlap", "true", "tp_comm_overlap");
  if (s.zero_stage == 3) refuse("strategy.zero_stage", "3", "ZeRO-3");
  if (s.zero_shard() < s.dp) {
    refuse("strategy.zero_shard_group", str(s.zero_shard()), "hybrid sharding");
  }
  for (std::size_t i = 0; i < s.layer_overrides.size(); ++i) {
    if (s.layer_overrides[i].tp != 0 && s.layer_overrides[i].tp != s.tp) {
      refuse(override_field(s, i) + ".tp", str(s.layer_overrides[i].tp),
             "a per-layer tp");
    }
  }
}

void check_lowerable(const ModelSpec& m, const StrategySpec& s) {
  if (m.is_moe()) check_moe_lowerable(s);
  check_lowerable(s);
}

Plan lower(const ModelSpec& m, const ClusterSpec& c, const StrategySpec& s, int world_size) {
  return lower(m, c, s, world_size, ScheduleCosts{});
}

Plan lower(const ModelSpec& m, const ClusterSpec& given_cluster, const StrategySpec& given,
           int world_size, const ScheduleCosts& costs) {
  const ClusterSpec& c = given_cluster;
  if (world_size < 1) {
    throw ConfigError("world size = " + std::to_string(world_size) + ": must be at least 1");
  }
  if (world_size > c.total_gpus()) {
    throw ConfigError("world size = " + std::to_string(world_size) + ": exceeds cluster '" +
                      c.name + "' (" + std::to_string(c.total_gpus()) + " GPUs)");
  }
  // Per-group strategies: the stages as layer counts and tp overrides, on their node groups.
  const StrategySpec s = expand_stages(m, given);
  const ClusterSpec placed = placed_cluster(c, s, world_size);
  validate(m, s, world_size);
  validate_devices(placed, s, world_size);
  check_lowerable(m, s);

  Plan plan;
  plan.model = m;
  plan.cluster = placed;
  plan.strategy = s;
  plan.world_size = world_size;
  plan.pp = s.pp;
  plan.zero_shard_group = s.zero_shard() < s.dp ? s.zero_shard() : 0;
  plan.experts_across_tp = m.is_moe() && s.expert_tp_size() < s.tp;
  plan.num_micro_batches = s.num_micro_batches();
  plan.virtual_stages = s.virtual_stages;
  plan.schedule_costs = costs;
  if (m.is_moe()) {  // the rows a rank routes: its micro-batch, 1/tp of it under sp
    const std::int64_t rows = static_cast<std::int64_t>(s.micro_batch_size) * m.seq_length /
                              s.cp / (s.sequence_parallel ? s.tp : 1);
    plan.expert_shares = expert_dispatch(m, s, rows).shares;
  }
  plan.model_name = m.name;
  plan.strategy_name = s.name;
  plan.provenance.strata_version = version();
  plan.provenance.model_hash = fnv1a64_hex(to_json(m).dump());
  plan.provenance.cluster_hash = fnv1a64_hex(to_json(c).dump());
  plan.provenance.strategy_hash = fnv1a64_hex(to_json(given).dump());

  // Layouts: the strategy's grid, plus one per distinct layer tp (tp * dp stays fixed).
  plan.layouts.emplace_back(s);
  std::map<int, int> layout_of_tp{{s.tp, 0}};
  for (int l = 0; l < m.num_hidden_layers; ++l) {
    const LayerStrategy ls = layer_strategy(s, l);
    auto it = layout_of_tp.find(ls.tp);
    if (it == layout_of_tp.end()) {
      STRATA_CHECK(plan.layouts.size() < 255, "too many layouts");
      it = layout_of_tp.emplace(ls.tp, static_cast<int>(plan.layouts.size())).first;
      plan.layouts.emplace_back(ls.tp, s.cp, ls.dp, s.pp, 1, s.order);
    }
    plan.layer_layout.push_back(it->second);
  }
  const std::vector<int> partition = stage_partition(m, s);
  plan.stage_first_layer.assign(1, 0);
  for (int n : partition) plan.stage_first_layer.push_back(plan.stage_first_layer.back() + n);
  STRATA_CHECK(plan.stage_first_layer.back() == m.num_hidden_layers, "partition does not sum");

  plan.programs.reserve(s.pp);
  for (int stage = 0; stage < s.pp; ++stage) {
    plan.programs.push_back(detail::build_stage(plan, stage));
  }
  plan.totals = compute_totals(plan);
  return plan;
}

}  // namespace strata::strategies
