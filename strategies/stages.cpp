// Per-group strategies (docs/heterogeneous.md): a strategy's `stages` as lowering reads them
// (expand_stages) and the cluster with its nodes in the stages' order (placed_cluster).
//
// defines: override_field(), has_auto_stage_layers(), expand_stages(), placed_cluster()
#include <algorithm>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/json.hpp"
#include "strategies/dims.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {

namespace {

std::string str(long long v) { return std::to_string(v); }
std::string stage_field(std::size_t k) {
  return "strategy.stages[" + str(static_cast<long long>(k)) + "]";
}

}  // namespace

std::string override_field(const StrategySpec& s, std::size_t i) {
  const int stage = s.layer_overrides.at(i).stage;
  if (stage >= 0) return stage_field(static_cast<std::size_t>(stage));
  return "strategy.layer_overrides[" + str(static_cast<long long>(i)) + "]";
}

bool has_auto_stage_layers(const StrategySpec& s) {
  return std::any_of(s.stages.begin(), s.stages.end(),
                     [](const StageSpec& st) { return st.layers == 0; });
}

StrategySpec expand_stages(const ModelSpec& m, const StrategySpec& given) {
  StrategySpec s = given;
  s.layer_overrides.erase(std::remove_if(s.layer_overrides.begin(), s.layer_overrides.end(),
                                         [](const LayerOverride& o) { return o.stage >= 0; }),
                          s.layer_overrides.end());
  if (s.stages.empty()) return s;
  const json::Json listed = to_json(given)["stages"];
  if (static_cast<int>(s.stages.size()) != s.pp) {
    json::fail("strategy.stages", listed,
               "has " + str(static_cast<long long>(s.stages.size())) +
                   " entries; needs one per pipeline stage (pp = " + str(s.pp) + ")");
  }
  if (s.virtual_stages != 1) {
    json::fail("strategy.stages", listed,
               "per-stage layers and tp need one model chunk per pipeline rank (virtual_stages "
               "is " +
                   str(s.virtual_stages) + "); use stage_layers for interleaved schedules");
  }
  std::vector<int> listed_layers;
  for (const StageSpec& st : s.stages) listed_layers.push_back(st.layers);
  // An expanded strategy (stage_layers from its stages) expands to itself.
  if (!given.stage_layers.empty() && given.stage_layers != listed_layers) {
    json::fail("strategy.stage_layers", json::Json(given.stage_layers),
               "is given with strategy.stages; give the layers in one place (stages[k].layers)");
  }
  s.stage_layers.clear();
  if (has_auto_stage_layers(s)) {
    for (std::size_t k = 0; k < s.stages.size(); ++k) {
      if (s.stages[k].layers != 0) {
        json::fail(stage_field(k) + ".layers", s.stages[k].layers,
                   "some stages' layers are \"auto\": give every stage's layers, or none "
                   "(\"auto\" everywhere, proposed from the node groups' speeds)");
      }
    }
    throw ConfigError(
        "strategy.stages[0].layers = \"auto\": the layer split is proposed from the node groups' "
        "speeds by a cost model (strata plan, simulate, run and validate do it, "
        "profiler::propose_stage_layers); give every stage's layers to lower it here");
  }
  long long sum = 0;
  for (const StageSpec& st : s.stages) sum += st.layers;
  if (sum != m.num_hidden_layers) {
    json::fail("strategy.stages", listed,
               "layers add up to " + str(sum) + "; the model has " + str(m.num_hidden_layers) +
                   " (num_hidden_layers)");
  }
  int first = 0;
  for (std::size_t k = 0; k < s.stages.size(); ++k) {
    const StageSpec& st = s.stages[k];
    s.stage_layers.push_back(st.layers);
    const int last = first + st.layers - 1;
    if (st.tp > 0 && st.tp != s.tp) {
      for (std::size_t i = 0; i < s.layer_overrides.size(); ++i) {
        const LayerOverride& o = s.layer_overrides[i];
        if (o.first <= last && first <= o.last) {
          json::fail(stage_field(k) + ".tp", st.tp,
                     "stage " + str(static_cast<long long>(k)) + " (layers " + str(first) + ".." +
                         str(last) + ") sets its tp, and strategy.layer_overrides[" +
                         str(static_cast<long long>(i)) +
                         "] overrides some of its layers: give a stage's tp, or override its "
                         "layers, not both");
        }
      }
      LayerOverride derived;
      derived.first = first;
      derived.last = last;
      derived.tp = st.tp;
      derived.stage = static_cast<int>(k);
      s.layer_overrides.push_back(derived);
    }
    first = last + 1;
  }
  return s;
}

ClusterSpec placed_cluster(const ClusterSpec& c, const StrategySpec& s, int world_size) {
  const bool any = std::any_of(s.stages.begin(), s.stages.end(),
                               [](const StageSpec& st) { return !st.node_group.empty(); });
  if (!any) return c;
  for (std::size_t k = 0; k < s.stages.size(); ++k) {
    if (s.stages[k].node_group.empty()) {
      json::fail(stage_field(k), to_json(s)["stages"][k],
                 "names no node_group while other stages do: place every stage or none");
    }
  }
  if (s.order.back() != Dim::kPp) {
    json::fail("strategy.order", s.order_string(),
               "stages placed on node groups need pp last (outermost), so that each stage's "
               "ranks are consecutive GPUs");
  }
  const int per_stage = world_size / s.pp;
  // GPUs each group has handed out so far.
  std::vector<int> used(c.node_groups.size(), 0);
  ClusterSpec out = c;
  out.node_groups.clear();
  std::vector<int> chunks(c.node_groups.size(), 0);  // groups emitted per source group
  auto group_index = [&](std::size_t k) {
    const std::string& name = s.stages[k].node_group;
    for (std::size_t g = 0; g < c.node_groups.size(); ++g) {
      if (c.node_groups[g].name == name) return g;
    }
    std::string names;
    for (const NodeGroup& g : c.node_groups) names += (names.empty() ? "" : ", ") + g.name;
    json::fail(stage_field(k) + ".node_group", name,
               "the cluster '" + c.name + "' has no such node group (it has: " + names + ")");
  };
  // Emits `gpus` GPUs of group g (whole nodes) as the next group of the placed cluster.
  auto emit = [&](std::size_t g, int gpus) {
    NodeGroup part = c.node_groups[g];
    part.nodes = gpus / part.gpus_per_node;
    if (chunks[g] > 0) part.name += " (" + str(chunks[g] + 1) + ")";
    ++chunks[g];
    used[g] += gpus;
    if (part.nodes > 0) out.node_groups.push_back(part);
  };
  std::size_t k = 0;
  while (k < s.stages.size()) {
    const std::size_t g = group_index(k);
    std::size_t end = k;  // the run of consecutive stages on group g
    while (end < s.stages.size() && s.stages[end].node_group == s.stages[k].node_group) ++end;
    const NodeGroup& group = c.node_groups[g];
    const int gpus = static_cast<int>(end - k) * per_stage;
    const int have = group.nodes * group.gpus_per_node - used[g];
    if (gpus > have) {
      json::fail(stage_field(k) + ".node_group", group.name,
                 "stages " + str(static_cast<long long>(k)) + ".." +
                     str(static_cast<long long>(end - 1)) + " need " + str(gpus) + " GPUs (" +
                     str(per_stage) + " each) but node group '" + group.name + "' has " +
                     str(have) + (used[g] > 0 ? " left" : "") + " (" + str(group.nodes) +
                     " nodes of " + str(group.gpus_per_node) + ")");
    }
    if (gpus % group.gpus_per_node != 0 && end < s.stages.size()) {
      json::fail(stage_field(end) + ".node_group", s.stages[end].node_group,
                 "stages " + str(static_cast<long long>(k)) + ".." +
                     str(static_cast<long long>(end - 1)) + " on '" + group.name + "' use " +
                     str(gpus) + " GPUs, not whole nodes of " + str(group.gpus_per_node) +
                     ": a change of node group must fall on a node boundary");
    }
    emit(g, (gpus + group.gpus_per_node - 1) / group.gpus_per_node * group.gpus_per_node);
    k = end;
  }
  for (std::size_t g = 0; g < c.node_groups.size(); ++g) {
    const int left = c.node_groups[g].nodes * c.node_groups[g].gpus_per_node - used[g];
    if (left > 0) emit(g, left);
  }
  return out;
}

}  // namespace strata::strategies
