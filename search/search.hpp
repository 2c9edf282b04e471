// Strategy search, the explore half (docs/search.md): the space of strategies for one model on a
// world of GPUs, every candidate validated by the rules of a hand-written strategy, priced by the
// fast estimator (estimator.hpp), per-layer recompute and tp chosen per pipeline stage under the
// memory budget, and ranked. The verify half (SimGrid in child processes) is `strata search`'s
// (cli/search_command.cpp): one engine per process.
//
// defines: Space, parse_space(), load_space(), Candidate, ExploreStats, explore(),
//          LayerOption, LayerGroups, choose_layer_groups(), strategy_line(), spearman()
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "profiler/cost_model.hpp"
#include "search/estimator.hpp"
#include "strategies/spec.hpp"

namespace strata::search {

// The values each searched field may take (space.json; every key optional). An empty list means
// the default (docs/search.md "The space"): tp the powers of two up to a node's GPUs, pp the
// powers of two up to the layers, micro-batch sizes 1, 2, 4, 8, every schedule with
// virtual stages 2 and 4, ZeRO 0-3, sequence parallelism off and on, recompute none, selective
// and full, gradient buckets of 25 and 100 MiB, per-layer hybrids on.
struct Space {
  std::vector<int> tp, pp, micro_batch_size;
  std::vector<strategies::Schedule> schedule;
  std::vector<int> virtual_stages;
  std::vector<int> zero_stage;
  std::vector<bool> sequence_parallel;
  std::vector<strategies::Recompute> recompute;
  std::vector<double> grad_bucket_MiB;
  // Per-layer hybrids (Galvatron's per-layer choice): within each pipeline stage, layers may
  // take another recompute mode and (with layer_tp) half or twice the strategy's tp, chosen
  // under the stage's memory budget.
  bool layer_hybrids = true;
  bool layer_tp = true;
  // Candidates' device memory budget as a fraction of the device's (1 = all of it).
  double memory_fraction = 1.0;
};
Space parse_space(const json::Json& j, const std::string& what = "space");
Space load_space(const std::string& path);
json::Json to_json(const Space& space);

struct Candidate {
  strategies::StrategySpec strategy;
  Estimate estimate;
  bool hybrid = false;  // has per-layer overrides
  std::string line;     // strategy_line(strategy)
};

struct ExploreStats {
  long long combinations = 0;  // points of the space
  long long duplicates = 0;    // points equal to another (sp at tp 1, ZeRO at dp 1, GPipe at
                               // pp 1, buckets where nothing is bucketed), skipped
  long long invalid = 0;       // refused by the strategy rules
  long long over_memory = 0;   // valid, but over the memory budget by the estimate
  long long estimated = 0;     // strategies estimated (uniform and hybrid)
  long long hybrids = 0;       // per-layer hybrids among the fitting candidates
  int lowerings = 0;           // mini-Plans the estimator lowered
  double seconds = 0;
  // Up to three example refusals, "tp=3: strategy.tp = 3: must divide ..." (for errors).
  std::vector<std::string> invalid_examples;
  double smallest_peak_bytes = 0;  // of the valid candidates, when none fits
};

// Every fitting candidate, fastest estimate first (ties by strategy_line); `base` gives the
// fields the space does not vary (precision, attention, global batch, ...). `progress` is
// called now and then with (space points done, points). ConfigError when the space holds no
// valid candidate (with examples of why) -- and an empty result, with stats, when candidates
// are valid but none fits.
std::vector<Candidate> explore(const strategies::ModelSpec& model,
                               const strategies::ClusterSpec& cluster, int world_size,
                               const strategies::StrategySpec& base, const Space& space,
                               const profiler::CostModel& cost, ExploreStats& stats,
                               const std::function<void(long long, long long)>& progress = {});

// The per-layer choice of one pipeline stage (docs/search.md "Per-layer hybrids"): `layers`
// identical layers, each run with one of `options` (its time per micro-batch and the memory it
// takes on the stage, in-flight activations included), split into at most two contiguous groups
// -- the first n layers with option a, the rest with option b -- for the least total time, a
// group boundary between different tps costing `reshard_s`, with the bytes within `room`. The
// choice is exact over such splits; over any assignment it is within one layer's time
// difference of the optimum, because the linear relaxation of "least time, with L layers and one
// memory bound" has an optimal vertex with at most two options in use. Ties keep option
// `prefer` for every layer. Nothing when no split fits.
struct LayerOption {
  double time_s = 0;
  double bytes = 0;
  int tp = 1;
};
struct LayerGroups {
  int a = 0, b = 0, n = 0;  // n layers of option a, then layers - n of option b
  double time_s = 0, bytes = 0;
};
std::optional<LayerGroups> choose_layer_groups(const std::vector<LayerOption>& options, int layers,
                                               double room, double reshard_s, int prefer);

// A strategy in one line: "tp4 pp2 dp4 mbs2 1f1b zero1 sp rc=selective bucket=25MiB", with
// per-layer overrides as "L0-7:tp2,rc=full".
std::string strategy_line(const strategies::StrategySpec& s);

// Spearman's rank correlation of two equally long series (average ranks for ties): 1 for fewer
// than two points, 0 when one series is constant.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace strata::search
