// plan.json and the plan summary. Output is deterministic: no wall-clock times, dates or hosts.
#include "strategies/plan_json.hpp"

#include <algorithm>

#include "strategies/program_json.hpp"

namespace strata::strategies {

namespace {

json::Json layout_json(const RankGrid& g) {
  return {{"tp", g.size(Dim::kTp)}, {"cp", g.size(Dim::kCp)}, {"dp", g.size(Dim::kDp)},
          {"pp", g.size(Dim::kPp)}, {"ep", g.size(Dim::kEp)}, {"order", order_string(g.order())}};
}

// Ranks of pipeline stage `stage`, ascending.
std::vector<int> stage_ranks(const Plan& plan, int stage) {
  std::vector<int> out;
  for (int r = 0; r < plan.world_size; ++r) {
    if (plan.stage_of(r) == stage) out.push_back(r);
  }
  return out;
}

}  // namespace


json::Json plan_to_json(const Plan& plan) {
  json::Json j;
  j["schema_version"] = kPlanSchemaVersion;
  j["kind"] = "strata.plan";
  j["provenance"] = provenance_to_json(plan.provenance);
  j["model"] = to_json(plan.model);
  j["cluster"] = to_json(plan.cluster);
  j["strategy"] = to_json(plan.strategy);
  j["world_size"] = plan.world_size;
  j["num_micro_batches"] = plan.num_micro_batches;
  j["virtual_stages"] = plan.virtual_stages;
  if (!plan.expert_shares.empty()) j["expert_shares"] = plan.expert_shares;
  j["layouts"] = json::Json::array();
  for (const auto& g : plan.layouts) j["layouts"].push_back(layout_json(g));
  j["layer_layout"] = plan.layer_layout;
  j["stage_first_layer"] = plan.stage_first_layer;
  j["task_columns"] = kTaskColumns;
  j["op_columns"] = kOpColumns;
  j["buffer_columns"] = kBufferColumns;
  j["param_columns"] = kParamColumns;
  j["bucket_columns"] = kBucketColumns;
  j["programs"] = json::Json::array();
  for (const Program& p : plan.programs) {
    json::Json pj = program_to_json(p);
    pj["ranks"] = stage_ranks(plan, p.stage);
    j["programs"].push_back(std::move(pj));
  }
  j["summary"] = plan_summary(plan);
  return j;
}

json::Json plan_summary(const Plan& plan) {
  const StrategySpec& s = plan.strategy;
  json::Json j;
  j["schema_version"] = kPlanSchemaVersion;
  j["kind"] = "strata.plan_summary";
  j["provenance"] = provenance_to_json(plan.provenance);
  j["model"] = plan.model.name;
  j["cluster"] = plan.cluster.name;
  j["strategy"] = s.name;
  j["seq_length"] = plan.model.seq_length;
  j["vocab_size"] = plan.model.vocab_size;
  if (plan.model.unpadded_vocab_size > 0) {  // padded for tp (docs/specs.md)
    j["unpadded_vocab_size"] = plan.model.unpadded_vocab_size;
    j["make_vocab_size_divisible_by"] = plan.model.make_vocab_size_divisible_by;
  }
  j["world_size"] = plan.world_size;
  j["degrees"] = {{"dp", s.dp}, {"tp", s.tp}, {"pp", s.pp}, {"cp", s.cp}, {"ep", s.ep}};
  j["order"] = s.order_string();
  j["schedule"] = schedule_name(s.schedule);
  j["virtual_stages"] = s.virtual_stages;
  j["micro_batch_size"] = s.micro_batch_size;
  j["global_batch_size"] = s.global_batch_size;
  j["num_micro_batches"] = plan.num_micro_batches;
  j["zero_stage"] = s.zero_stage;
  // Hybrid sharding only (a shard group smaller than dp), so that other summaries stay as they
  // were.
  if (plan.zero_shard_group > 0) j["zero_shard_group"] = plan.zero_shard_group;
  j["recompute"] = recompute_name(s.recompute);
  j["sequence_parallel"] = s.sequence_parallel;
  // Only when on, so that other summaries stay as they were.
  if (s.tp_comm_overlap) j["tp_comm_overlap_sms"] = s.tp_comm_overlap_sms;
  j["precision"] = precision_name(s.precision);
  j["layer_overrides"] = std::count_if(s.layer_overrides.begin(), s.layer_overrides.end(),
                                       [](const LayerOverride& o) { return o.stage < 0; });
  // A per-group strategy (docs/heterogeneous.md): each stage's layers, tp and node group. Only
  // then, so that other summaries stay as they were.
  if (!s.stages.empty()) {
    json::Json stages = json::Json::array();
    for (int k = 0; k < plan.pp; ++k) {
      const int first = plan.stage_first_layer[static_cast<std::size_t>(k)];
      const LayerStrategy ls = layer_strategy(s, first);
      const NodeGroup& group = plan.cluster.group_of_gpu(first_rank_of_stage(plan, k));
      stages.push_back({{"stage", k},
                        {"layers", plan.stage_first_layer[static_cast<std::size_t>(k) + 1] - first},
                        {"tp", ls.tp},
                        {"dp", ls.dp},
                        {"node_group", group.name},
                        {"device", group.gpu.name}});
    }
    j["stages"] = stages;
  }

  // Groups of rank 0 as an example, plus how many groups of each kind there are.
  const RankGrid& g = plan.grid();
  json::Json groups;
  groups["example_rank"] = 0;
  for (Dim d : {Dim::kTp, Dim::kDp, Dim::kPp, Dim::kCp, Dim::kEp}) {
    groups[dim_name(d)] = {{"size", g.size(d)},
                           {"count", g.world_size() / g.size(d)},
                           {"rank0", g.group(0, d)}};
  }
  j["groups"] = groups;

  j["params"] = {{"total", total_params(plan.model)}};

  const double B = s.global_batch_size;
  j["flops_per_step"] = {
      {"model", json::count(to_double(plan.totals.flops.model))},
      {"hardware", json::count(to_double(plan.totals.flops.hardware))},
      {"megatron_eq3",
       json::count(to_double(megatron_eq3_flops(s.global_batch_size, plan.model.seq_length,
                                                plan.model.num_hidden_layers,
                                                plan.model.hidden_size, plan.model.vocab_size)))},
      {"model_per_token",
       json::count(to_double(plan.totals.flops.model) / (B * plan.model.seq_length))}};

  double max_tasks = 0;
  for (const Program& p : plan.programs) max_tasks = std::max(max_tasks, double(p.tasks.size()));
  const auto count = [](double x) { return static_cast<long long>(x); };
  j["tasks"] = {{"total", count(plan.totals.tasks)},
                {"compute", count(plan.totals.tasks_by_kind[static_cast<int>(TaskKind::kCompute)])},
                {"collective",
                 count(plan.totals.tasks_by_kind[static_cast<int>(TaskKind::kCollective)])},
                {"send", count(plan.totals.tasks_by_kind[static_cast<int>(TaskKind::kSend)])},
                {"recv", count(plan.totals.tasks_by_kind[static_cast<int>(TaskKind::kRecv)])},
                {"per_rank_max", count(max_tasks)},
                {"distinct_programs", plan.programs.size()}};

  json::Json comm = json::Json::array();
  for (int c = 0; c < PlanTotals::kCollectives; ++c) {
    for (int p = 0; p < PlanTotals::kPurposes; ++p) {
      if (plan.totals.comm_count[c][p] == 0) continue;
      comm.push_back({{"kind", collective_name(static_cast<CollectiveKind>(c))},
                      {"purpose", purpose_name(static_cast<Purpose>(p))},
                      {"count", count(plan.totals.comm_count[c][p])},
                      {"bytes", json::count(plan.totals.comm_bytes[c][p])},
                      {"bytes_per_rank", json::count(plan.totals.comm_bytes[c][p] / plan.world_size)}});
    }
  }
  j["communication"] = comm;

  json::Json stages = json::Json::array();
  double max_peak = 0;
  for (const Program& p : plan.programs) {
    const auto ranks = stage_ranks(plan, p.stage);
    double capacity = plan.capacity_bytes(ranks.front());
    for (int r : ranks) capacity = std::min(capacity, plan.capacity_bytes(r));
    const double peak = p.memory.peak_bytes();
    max_peak = std::max(max_peak, peak);
    stages.push_back({{"stage", p.stage},
                      {"ranks", ranks.size()},
                      {"first_rank", ranks.front()},
                      {"params_bytes", json::count(p.memory.static_bytes.params)},
                      {"grads_bytes", json::count(p.memory.static_bytes.grads)},
                      {"optimizer_bytes", json::count(p.memory.static_bytes.optimizer)},
                      {"activation_peak_bytes", json::count(p.memory.peak_activation_bytes)},
                      {"other_static_bytes", json::count(p.memory.static_bytes.other)},
                      {"dynamic_peak_bytes", json::count(p.memory.peak_dynamic_bytes)},
                      {"peak_bytes", json::count(peak)},
                      {"capacity_bytes", json::count(capacity)},
                      {"fits", peak <= capacity}});
  }
  const int over = first_rank_over_capacity(plan);
  j["memory"] = {{"stages", stages},
                 {"max_peak_bytes", json::count(max_peak)},
                 {"fits", over < 0},
                 {"first_rank_over_capacity", over}};
  return j;
}

}  // namespace strata::strategies
