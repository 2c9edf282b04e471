// plan.json's reader (the writer is strategies/plan_json.cpp).
#include "results/plan.hpp"

#include <cmath>

#include "common/error.hpp"
#include "results/detail/read.hpp"
#include "strategies/plan_json.hpp"
#include "strategies/program_json.hpp"

namespace strata::results {

using strategies::Plan;

Plan plan_from_json(const json::Json& j, const std::string& file) {
  json::ObjectReader r(j, file + ": plan");
  detail::check_header(r, "strata.plan", strategies::kPlanSchemaVersion, "plan");
  Plan plan;
  plan.provenance = detail::read_provenance(r);
  plan.model = strategies::parse_model(r.get_raw("model"), file + ": plan.model");
  plan.cluster = strategies::parse_cluster(r.get_raw("cluster"), file + ": plan.cluster");
  plan.strategy = strategies::parse_strategy(r.get_raw("strategy"), file + ": plan.strategy");
  plan.world_size = detail::small_int(r, "world_size", 1);
  plan.num_micro_batches = detail::small_int(r, "num_micro_batches", 1);
  plan.virtual_stages = detail::small_int(r, "virtual_stages", 1);
  if (r.has("expert_shares")) {
    const json::Json& shares = r.get_raw("expert_shares");
    double sum = 0;
    if (shares.is_array()) {
      for (const json::Json& v : shares) {
        if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1) {
          json::fail(r.field("expert_shares"), shares, "must be a list of numbers in [0, 1]");
        }
        plan.expert_shares.push_back(v.get<double>());
        sum += v.get<double>();
      }
    }
    if (!shares.is_array() || static_cast<int>(shares.size()) != plan.strategy.ep ||
        std::abs(sum - 1.0) > 1e-6) {
      json::fail(r.field("expert_shares"), shares,
                 "must hold one share per expert-parallel rank (ep = " +
                     std::to_string(plan.strategy.ep) + "), summing to 1");
    }
  }
  plan.pp = plan.strategy.pp;
  plan.zero_shard_group =
      plan.strategy.zero_shard() < plan.strategy.dp ? plan.strategy.zero_shard() : 0;
  plan.experts_across_tp = plan.model.is_moe() && plan.strategy.expert_tp_size() < plan.strategy.tp;
  plan.model_name = plan.model.name;
  plan.strategy_name = plan.strategy.name;
  const std::string order = plan.strategy.order_string();
  const json::Json& layouts = r.get_raw("layouts");
  if (!layouts.is_array() || layouts.empty()) {
    json::fail(r.field("layouts"), layouts, "must be a non-empty list");
  }
  for (std::size_t i = 0; i < layouts.size(); ++i) {
    json::ObjectReader l(layouts[i], r.field("layouts") + "[" + std::to_string(i) + "]");
    const int tp = detail::small_int(l, "tp", 1), cp = detail::small_int(l, "cp", 1);
    const int dp = detail::small_int(l, "dp", 1), pp = detail::small_int(l, "pp", 1);
    const int ep = detail::small_int(l, "ep", 1);
    if (l.get_string("order") != order) {
      json::fail(l.field("order"), l.get_raw("order"), "must be the strategy's order " + order);
    }
    if (tp * cp * dp * pp != plan.world_size || pp != plan.strategy.pp || dp % ep != 0) {
      json::fail(l.path(), layouts[i],
                 "must split the world of " + std::to_string(plan.world_size) +
                     " ranks with the strategy's pp and ep dividing dp");
    }
    l.finish({"tp", "cp", "dp", "pp", "ep", "order"});
    plan.layouts.emplace_back(tp, cp, dp, pp, ep, plan.strategy.order);
  }
  plan.layer_layout = detail::read_ints(r.get_raw("layer_layout"), r.field("layer_layout"));
  plan.stage_first_layer =
      detail::read_ints(r.get_raw("stage_first_layer"), r.field("stage_first_layer"));
  for (int l : plan.layer_layout) {
    if (l < 0 || l >= static_cast<int>(plan.layouts.size())) {
      json::fail(r.field("layer_layout"), l, "must name one of the layouts");
    }
  }
  // The column lists describe the rows of every program: they must be the reader's.
  const std::vector<std::pair<const char*, const std::vector<std::string>*>> columns = {
      {"task_columns", &strategies::kTaskColumns}, {"op_columns", &strategies::kOpColumns},
      {"buffer_columns", &strategies::kBufferColumns},
      {"param_columns", &strategies::kParamColumns},
      {"bucket_columns", &strategies::kBucketColumns}};
  for (const auto& [key, want] : columns) {
    const json::Json& got = r.get_raw(key);
    if (got != json::Json(*want)) {
      json::fail(r.field(key), got, "must be " + json::Json(*want).dump() + " (schema 2)");
    }
  }
  const json::Json& programs = r.get_raw("programs");
  if (!programs.is_array() || static_cast<int>(programs.size()) != plan.strategy.pp) {
    json::fail(r.field("programs"), programs,
               "must hold one program per pipeline stage (" + std::to_string(plan.strategy.pp) +
                   ")");
  }
  for (std::size_t i = 0; i < programs.size(); ++i) {
    const std::string what = r.field("programs") + "[" + std::to_string(i) + "]";
    // (its "ranks" are derived from the layouts)
    plan.programs.push_back(strategies::program_from_json(programs[i], what));
    if (plan.programs.back().stage != static_cast<int>(i)) {
      throw ConfigError(what + ".stage = " + std::to_string(plan.programs.back().stage) +
                        ": must be " + std::to_string(i));
    }
  }
  r.accept("summary");  // derived: plan_summary() of the Plan read
  r.finish({});
  plan.totals = strategies::compute_totals(plan);
  return plan;
}

Plan read_plan(const std::string& path) { return plan_from_json(json::parse_file(path), path); }

}  // namespace strata::results
