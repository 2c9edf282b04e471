// Proposed layer splits of per-group strategies; see stage_split.hpp.
#include "profiler/stage_split.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "common/error.hpp"

namespace strata::profiler {

namespace st = strata::strategies;

std::vector<StageSpeed> stage_speeds(const st::Plan& plan, const CostModel& cost) {
  std::vector<StageSpeed> out;
  for (int stage = 0; stage < plan.pp; ++stage) {
    const int rank = st::first_rank_of_stage(plan, stage);
    const st::Program& prog = plan.programs.at(static_cast<std::size_t>(stage));
    const st::DeviceSpec& device = plan.cluster.group_of_gpu(rank).gpu;
    double layer_s = 0, other_s = 0;
    for (const st::Task& t : prog.tasks) {
      double seconds = 0;
      if (t.kind == st::TaskKind::kCompute && t.stream == st::Stream::kCompute) {
        seconds = cost.compute_seconds(prog, t, device, plan.strategy.precision);
      } else if (t.kind == st::TaskKind::kCollective &&
                 (t.purpose == st::Purpose::kTp || t.purpose == st::Purpose::kReshard)) {
        seconds = cost.collective_seconds(t.collective, plan.group_ranks(rank, t.group), t.bytes,
                                          plan.cluster);
      }
      (t.layer >= 0 ? layer_s : other_s) += seconds;
    }
    const int layers = plan.stage_first_layer[static_cast<std::size_t>(stage) + 1] -
                       plan.stage_first_layer[static_cast<std::size_t>(stage)];
    out.push_back({layer_s / std::max(1, layers), other_s});
  }
  return out;
}

std::vector<int> balance_layers(int layers, const std::vector<StageSpeed>& speeds,
                                const std::vector<int>& max_layers) {
  const std::size_t n = speeds.size();
  STRATA_CHECK(max_layers.size() == n, "balance_layers: one limit per stage");
  if (layers < static_cast<int>(n)) return {};
  std::vector<int> out(n, 1);
  for (std::size_t k = 0; k < n; ++k) {
    if (max_layers[k] != 0 && max_layers[k] < 1) return {};
  }
  for (int left = layers - static_cast<int>(n); left > 0; --left) {
    std::size_t best = n;
    double best_end = std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < n; ++k) {
      if (max_layers[k] != 0 && out[k] >= max_layers[k]) continue;
      const double end = (out[k] + 1) * speeds[k].layer_seconds + speeds[k].other_seconds;
      if (end < best_end) {  // ties go to the earlier stage
        best = k;
        best_end = end;
      }
    }
    if (best == n) return {};
    ++out[best];
  }
  return out;
}

namespace {

st::StrategySpec with_layers(st::StrategySpec s, const std::vector<int>& layers) {
  for (std::size_t k = 0; k < layers.size(); ++k) s.stages[k].layers = layers[k];
  return s;
}

std::string split_text(const std::vector<int>& layers) {
  std::string out;
  for (int n : layers) out += (out.empty() ? "" : " + ") + std::to_string(n);
  return out;
}

}  // namespace

st::StrategySpec propose_stage_layers(const st::ModelSpec& m, const st::ClusterSpec& c,
                                      const st::StrategySpec& s, int world_size,
                                      const CostModel& cost, std::string* why) {
  if (!st::has_auto_stage_layers(s)) return s;
  const int pp = static_cast<int>(s.stages.size());
  const int layers = m.num_hidden_layers;
  if (pp != s.pp) return st::expand_stages(m, s);  // throws: one stage per pipeline stage
  if (layers < pp) {
    throw ConfigError("strategy.stages: " + std::to_string(pp) + " stages need at least as many "
                      "layers; the model has " + std::to_string(layers) + " (num_hidden_layers)");
  }
  // A provisional split as even as the layers allow, to price each stage's layer.
  std::vector<int> even(static_cast<std::size_t>(pp), layers / pp);
  for (int k = 0; k < layers % pp; ++k) ++even[static_cast<std::size_t>(k)];
  const st::Plan probe = st::lower(m, c, with_layers(s, even), world_size);
  const std::vector<StageSpeed> speeds = stage_speeds(probe, cost);
  std::vector<int> limits(static_cast<std::size_t>(pp), 0);
  std::vector<int> split = balance_layers(layers, speeds, limits);
  std::string moved;
  // Memory: cap a stage that does not fit at one layer fewer, and rebalance.
  for (int round = 0; round < layers; ++round) {
    const st::Plan plan = st::lower(m, c, with_layers(s, split), world_size);
    int over = -1;
    for (int k = 0; k < pp && over < 0; ++k) {
      const int rank = st::first_rank_of_stage(plan, k);
      if (plan.program_of(rank).memory.peak_bytes() > plan.capacity_bytes(rank)) over = k;
    }
    if (over < 0) break;
    limits[static_cast<std::size_t>(over)] = split[static_cast<std::size_t>(over)] - 1;
    const std::vector<int> next = balance_layers(layers, speeds, limits);
    if (next.empty()) break;  // fits nowhere: the memory check reports it
    moved += "; stage " + std::to_string(over) + " capped at " +
            std::to_string(limits[static_cast<std::size_t>(over)]) + " layers by memory";
    split = next;
  }
  if (why != nullptr) {
    std::string speeds_text;
    char buf[64];
    for (const StageSpeed& sp : speeds) {
      std::snprintf(buf, sizeof buf, "%.3g", sp.layer_seconds * 1e3);
      speeds_text += (speeds_text.empty() ? "" : ", ") + std::string(buf);
    }
    *why = "layers per stage proposed from the node groups' speeds: " + split_text(split) +
           " (ms per layer per step: " + speeds_text + ")" + moved;
  }
  return with_layers(s, split);
}

}  // namespace strata::profiler
