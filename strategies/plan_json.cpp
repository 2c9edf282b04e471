// plan.json and the plan summary. Output is deterministic: no wall-clock times, dates or hosts.
#include "strategies/plan_json.hpp"

#include <algorithm>

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

json::Json provenance_to_json(const Provenance& p) {
  return {{"strata_version", p.strata_version},
          {"model_hash", p.model_hash},
          {"cluster_hash", p.cluster_hash},
          {"strategy_hash", p.strategy_hash}};
}

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
  j["layouts"] = json::Json::array();
  for (const auto& g : plan.layouts) j["layouts"].push_back(layout_json(g));
  j["layer_layout"] = plan.layer_layout;
  j["stage_first_layer"] = plan.stage_first_layer;
  j["task_columns"] = {"kind",  "stream", "phase", "block",      "collective", "purpose",
                       "group", "layout", "layout_from", "layer", "chunk",     "micro_batch",
                       "peer_stage", "tag", "flops", "bytes", "elementwise_bytes"};
  j["programs"] = json::Json::array();
  for (const Program& p : plan.programs) {
    json::Json pj;
    pj["stage"] = p.stage;
    pj["ranks"] = stage_ranks(plan, p.stage);
    json::Json tasks = json::Json::array();
    for (const Task& t : p.tasks) {
      tasks.push_back({task_kind_name(t.kind), stream_name(t.stream), phase_name(t.phase),
                       block_name(t.block), collective_name(t.collective),
                       purpose_name(t.purpose), group_kind_name(t.group.kind), t.group.layout,
                       t.group.layout_from, t.layer, t.chunk, t.micro_batch, t.peer_stage, t.tag,
                       t.flops, t.bytes, t.elementwise_bytes});
    }
    pj["tasks"] = std::move(tasks);
    pj["deps_begin"] = p.dep_begin;
    pj["deps"] = p.deps;
    json::Json events = json::Json::array();
    for (const MemEvent& e : p.mem_events) {
      events.push_back({e.task, e.at_start ? "start" : "end", mem_category_name(e.category),
                        e.bytes});
    }
    pj["mem_event_columns"] = {"task", "when", "category", "bytes"};
    pj["mem_events"] = std::move(events);
    pj["memory"] = {{"params_bytes", p.memory.static_bytes.params},
                    {"grads_bytes", p.memory.static_bytes.grads},
                    {"optimizer_bytes", p.memory.static_bytes.optimizer},
                    {"peak_dynamic_bytes", p.memory.peak_dynamic_bytes},
                    {"peak_activation_bytes", p.memory.peak_activation_bytes},
                    {"peak_task", p.memory.peak_task},
                    {"peak_bytes", p.memory.peak_bytes()}};
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
  j["world_size"] = plan.world_size;
  j["degrees"] = {{"dp", s.dp}, {"tp", s.tp}, {"pp", s.pp}, {"cp", s.cp}, {"ep", s.ep}};
  j["order"] = s.order_string();
  j["schedule"] = schedule_name(s.schedule);
  j["virtual_stages"] = s.virtual_stages;
  j["micro_batch_size"] = s.micro_batch_size;
  j["global_batch_size"] = s.global_batch_size;
  j["num_micro_batches"] = plan.num_micro_batches;
  j["zero_stage"] = s.zero_stage;
  j["recompute"] = recompute_name(s.recompute);
  j["sequence_parallel"] = s.sequence_parallel;
  j["precision"] = precision_name(s.precision);
  j["layer_overrides"] = s.layer_overrides.size();

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
      {"model", to_double(plan.totals.flops.model)},
      {"hardware", to_double(plan.totals.flops.hardware)},
      {"megatron_eq3", to_double(megatron_eq3_flops(s.global_batch_size, plan.model.seq_length,
                                                    plan.model.num_hidden_layers,
                                                    plan.model.hidden_size,
                                                    plan.model.vocab_size))},
      {"model_per_token", to_double(plan.totals.flops.model) / (B * plan.model.seq_length)}};

  double max_tasks = 0;
  for (const Program& p : plan.programs) max_tasks = std::max(max_tasks, double(p.tasks.size()));
  j["tasks"] = {{"total", plan.totals.tasks},
                {"compute", plan.totals.tasks_by_kind[static_cast<int>(TaskKind::kCompute)]},
                {"collective", plan.totals.tasks_by_kind[static_cast<int>(TaskKind::kCollective)]},
                {"send", plan.totals.tasks_by_kind[static_cast<int>(TaskKind::kSend)]},
                {"recv", plan.totals.tasks_by_kind[static_cast<int>(TaskKind::kRecv)]},
                {"per_rank_max", max_tasks},
                {"distinct_programs", plan.programs.size()}};

  json::Json comm = json::Json::array();
  for (int c = 0; c < 6; ++c) {
    for (int p = 0; p < 9; ++p) {
      if (plan.totals.comm_count[c][p] == 0) continue;
      comm.push_back({{"kind", collective_name(static_cast<CollectiveKind>(c))},
                      {"purpose", purpose_name(static_cast<Purpose>(p))},
                      {"count", plan.totals.comm_count[c][p]},
                      {"bytes", plan.totals.comm_bytes[c][p]},
                      {"bytes_per_rank", plan.totals.comm_bytes[c][p] / plan.world_size}});
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
                      {"params_bytes", p.memory.static_bytes.params},
                      {"grads_bytes", p.memory.static_bytes.grads},
                      {"optimizer_bytes", p.memory.static_bytes.optimizer},
                      {"activation_peak_bytes", p.memory.peak_activation_bytes},
                      {"dynamic_peak_bytes", p.memory.peak_dynamic_bytes},
                      {"peak_bytes", peak},
                      {"capacity_bytes", capacity},
                      {"fits", peak <= capacity}});
  }
  const int over = first_rank_over_capacity(plan);
  j["memory"] = {{"stages", stages},
                 {"max_peak_bytes", max_peak},
                 {"fits", over < 0},
                 {"first_rank_over_capacity", over}};
  return j;
}

}  // namespace strata::strategies
