#include "search/search.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>

#include "common/error.hpp"
#include "strategies/accounting.hpp"
#include "strategies/plan.hpp"

namespace strata::search {

using json::Json;
using strategies::Recompute;
using strategies::Schedule;
using strategies::StrategySpec;

namespace {

const std::vector<std::string> kSchedules = {"gpipe", "1f1b", "interleaved-1f1b", "zb-h1",
                                             "zb-h2", "zb-v"};
const std::vector<std::string> kRecomputes = {"none", "selective", "full"};

// A list of positive integers (or one), each checked by `rule` (empty when fine).
// A key's values: its list, or its one value as a list of one; empty when the key is absent.
Json values_of(json::ObjectReader& r, const std::string& key) {
  if (!r.has(key)) return Json::array();
  const Json& v = r.get_raw(key);
  const Json list = v.is_array() ? v : Json::array({v});
  if (list.empty()) json::fail(r.field(key), v, "must list at least one value (or be absent)");
  return list;
}

std::vector<int> int_list(json::ObjectReader& r, const std::string& key, int low, int high) {
  const Json list = values_of(r, key);
  std::vector<int> out;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const Json& e = list[i];
    const std::string path = r.field(key) + "[" + std::to_string(i) + "]";
    if (!e.is_number_integer() || e.get<long long>() < low || e.get<long long>() > high) {
      json::fail(
          path, e,
          "must be an integer in [" + std::to_string(low) + ", " + std::to_string(high) + "]");
    }
    out.push_back(e.get<int>());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<int> name_list(json::ObjectReader& r, const std::string& key,
                           const std::vector<std::string>& names) {
  const Json list = values_of(r, key);
  std::vector<int> out;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const Json& e = list[i];
    const auto it =
        e.is_string() ? std::find(names.begin(), names.end(), e.get<std::string>()) : names.end();
    if (it == names.end()) {
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + ("\"" + n + "\"");
      json::fail(r.field(key) + "[" + std::to_string(i) + "]", e, "must be one of " + known);
    }
    out.push_back(static_cast<int>(it - names.begin()));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string mib_text(double mib) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", mib);
  return b;
}

}  // namespace

Space parse_space(const Json& j, const std::string& what) {
  if (!j.is_object()) json::fail(what, j, "must be a JSON object");
  json::ObjectReader r(j, what);
  Space s;
  s.tp = int_list(r, "tp", 1, 1 << 20);
  s.pp = int_list(r, "pp", 1, 1 << 20);
  s.micro_batch_size = int_list(r, "micro_batch_size", 1, 1 << 20);
  for (int i : name_list(r, "schedule", kSchedules)) s.schedule.push_back(static_cast<Schedule>(i));
  s.virtual_stages = int_list(r, "virtual_stages", 2, 1 << 10);
  s.zero_stage = int_list(r, "zero_stage", 0, 3);
  {
    const Json list = values_of(r, "sequence_parallel");
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (!list[i].is_boolean()) {
        json::fail(r.field("sequence_parallel") + "[" + std::to_string(i) + "]", list[i],
                   "must be true or false");
      }
      const bool b = list[i].get<bool>();
      if (std::find(s.sequence_parallel.begin(), s.sequence_parallel.end(), b) ==
          s.sequence_parallel.end()) {
        s.sequence_parallel.push_back(b);
      }
    }
    std::sort(s.sequence_parallel.begin(), s.sequence_parallel.end());
  }
  for (int i : name_list(r, "recompute", kRecomputes))
    s.recompute.push_back(static_cast<Recompute>(i));
  {
    const Json list = values_of(r, "grad_bucket_MiB");
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (!list[i].is_number() || !(list[i].get<double>() > 0) ||
          !(list[i].get<double>() <= 1 << 20)) {
        json::fail(r.field("grad_bucket_MiB") + "[" + std::to_string(i) + "]", list[i],
                   "must be a number of MiB in (0, 1048576]");
      }
      s.grad_bucket_MiB.push_back(list[i].get<double>());
    }
    std::sort(s.grad_bucket_MiB.begin(), s.grad_bucket_MiB.end());
    s.grad_bucket_MiB.erase(std::unique(s.grad_bucket_MiB.begin(), s.grad_bucket_MiB.end()),
                            s.grad_bucket_MiB.end());
  }
  s.layer_hybrids = r.get_bool_or("layer_hybrids", true);
  s.layer_tp = r.get_bool_or("layer_tp", true);
  s.memory_fraction = r.get_number_or("memory_fraction", 1.0);
  if (!(s.memory_fraction > 0 && s.memory_fraction <= 1)) {
    json::fail(r.field("memory_fraction"), s.memory_fraction,
               "must be in (0, 1]: the share of device memory a candidate may use");
  }
  r.finish({"tp", "pp", "micro_batch_size", "schedule", "virtual_stages", "zero_stage",
            "sequence_parallel", "recompute", "grad_bucket_MiB", "layer_hybrids", "layer_tp",
            "memory_fraction"});
  return s;
}

Space load_space(const std::string& path) {
  const Json j = json::parse_file(path);
  try {
    return parse_space(j, "space");
  } catch (const ConfigError& e) {
    throw ConfigError(path + ": " + e.what());
  }
}

Json to_json(const Space& space) {
  Json j = Json::object();
  j["tp"] = space.tp;
  j["pp"] = space.pp;
  j["micro_batch_size"] = space.micro_batch_size;
  Json sched = Json::array();
  for (Schedule s : space.schedule) sched.push_back(kSchedules[static_cast<int>(s)]);
  j["schedule"] = sched;
  j["virtual_stages"] = space.virtual_stages;
  j["zero_stage"] = space.zero_stage;
  Json sp = Json::array();
  for (bool b : space.sequence_parallel) sp.push_back(b);
  j["sequence_parallel"] = sp;
  Json rc = Json::array();
  for (Recompute r : space.recompute) rc.push_back(kRecomputes[static_cast<int>(r)]);
  j["recompute"] = rc;
  j["grad_bucket_MiB"] = space.grad_bucket_MiB;
  j["layer_hybrids"] = space.layer_hybrids;
  j["layer_tp"] = space.layer_tp;
  j["memory_fraction"] = space.memory_fraction;
  return j;
}

std::string strategy_line(const StrategySpec& s) {
  std::string out = "tp" + std::to_string(s.tp) + " pp" + std::to_string(s.pp) + " dp" +
                    std::to_string(s.dp) + " mbs" + std::to_string(s.micro_batch_size) + " " +
                    strategies::schedule_name(s.schedule);
  if (s.schedule == Schedule::kInterleaved) out += " v" + std::to_string(s.virtual_stages);
  out += " zero" + std::to_string(s.zero_stage);
  if (s.sequence_parallel) out += " sp";
  out += std::string(" rc=") + strategies::recompute_name(s.recompute);
  out += " bucket=" + mib_text(s.collectives.grad_bucket_bytes / (1024.0 * 1024.0)) + "MiB";
  for (const strategies::LayerOverride& o : s.layer_overrides) {
    out += " L" + std::to_string(o.first) + "-" + std::to_string(o.last) + ":";
    std::string parts;
    if (o.tp > 0) parts += "tp" + std::to_string(o.tp);
    if (o.recompute >= 0) {
      parts += std::string(parts.empty() ? "" : ",") +
               "rc=" + strategies::recompute_name(static_cast<Recompute>(o.recompute));
    }
    out += parts;
  }
  return out;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  STRATA_CHECK(a.size() == b.size(), "spearman: series of different lengths");
  const std::size_t n = a.size();
  if (n < 2) return 1;
  auto ranks = [n](const std::vector<double>& x) {
    std::vector<std::size_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(),
                     [&](std::size_t i, std::size_t j) { return x[i] < x[j]; });
    std::vector<double> r(n);
    for (std::size_t i = 0; i < n;) {
      std::size_t j = i;
      while (j + 1 < n && x[idx[j + 1]] == x[idx[i]]) ++j;
      for (std::size_t k = i; k <= j; ++k) r[idx[k]] = (i + j) / 2.0 + 1;
      i = j + 1;
    }
    return r;
  };
  const std::vector<double> ra = ranks(a), rb = ranks(b);
  const double mean = (n + 1) / 2.0;
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    sab += (ra[i] - mean) * (rb[i] - mean);
    saa += (ra[i] - mean) * (ra[i] - mean);
    sbb += (rb[i] - mean) * (rb[i] - mean);
  }
  if (saa == 0 || sbb == 0) return 0;
  return sab / std::sqrt(saa * sbb);
}

std::optional<LayerGroups> choose_layer_groups(const std::vector<LayerOption>& options, int layers,
                                               double room, double reshard_s, int prefer) {
  std::optional<LayerGroups> best;
  const int count = static_cast<int>(options.size());
  for (int a = 0; a < count; ++a) {
    for (int b = a; b < count; ++b) {
      const LayerOption& oa = options[a];
      const LayerOption& ob = options[b];
      for (int n = a == b ? layers : 1; n <= layers; ++n) {
        const double used = n * oa.bytes + (layers - n) * ob.bytes;
        if (used > room) continue;
        double t = n * oa.time_s + (layers - n) * ob.time_s;
        if (n < layers && oa.tp != ob.tp) t += reshard_s;
        // Ties keep the preferred option alone, then the earlier pair and larger first group.
        const bool preferred = a == b && a == prefer;
        if (!best || t < best->time_s * (1 - 1e-12) ||
            (preferred && t <= best->time_s * (1 + 1e-12))) {
          best = LayerGroups{a, b, n, t, used};
        }
      }
    }
  }
  return best;
}

namespace {

// The defaults of docs/search.md "The space", for this model and world.
Space with_defaults(Space s, const strategies::ModelSpec& m, const strategies::ClusterSpec& c,
                    int world) {
  if (s.tp.empty()) {
    const int node = c.node_groups.front().gpus_per_node;
    for (int t = 1; t <= std::min(node, world); t *= 2) s.tp.push_back(t);
  }
  if (s.pp.empty()) {
    for (int p = 1; p <= std::min(m.num_hidden_layers, world); p *= 2) s.pp.push_back(p);
  }
  if (s.micro_batch_size.empty()) s.micro_batch_size = {1, 2, 4, 8};
  if (s.schedule.empty())
    s.schedule = {Schedule::kGPipe, Schedule::kOneFOneB, Schedule::kInterleaved};
  if (s.virtual_stages.empty()) s.virtual_stages = {2, 4};
  if (s.zero_stage.empty()) s.zero_stage = {0, 1, 2, 3};
  if (s.sequence_parallel.empty()) s.sequence_parallel = {false, true};
  if (s.recompute.empty())
    s.recompute = {Recompute::kNone, Recompute::kSelective, Recompute::kFull};
  if (s.grad_bucket_MiB.empty()) s.grad_bucket_MiB = {25, 100};
  return s;
}

bool better(const Candidate& a, const Candidate& b) {
  if (a.estimate.step_s != b.estimate.step_s) return a.estimate.step_s < b.estimate.step_s;
  return a.line < b.line;
}

// One layer option of a per-layer hybrid.
struct Option {
  int tp = 1;
  Recompute recompute = Recompute::kNone;
  double time_s = 0;  // forward + backward per micro-batch
  double static_bytes = 0;
  double stored_bytes = 0;
  double transient_bytes = 0;
};

// The per-layer hybrid of a structure (uniform tp, no recompute in `s`): within each pipeline
// rank, the first n of its layers take option a and the rest option b, the pair and n chosen
// for the least time under the rank's memory budget. With one memory constraint over identical
// layers the linear relaxation's optimum uses at most two options, so two groups per stage lose
// little against a full dynamic program, and the choice is exact for them. Returns the overrides,
// or none when the uniform strategy is the choice everywhere.
std::vector<strategies::LayerOverride> hybrid_overrides(const strategies::ModelSpec& m,
                                                        const StrategySpec& s, const Space& space,
                                                        Estimator& estimator,
                                                        const Estimate& uniform, double budget) {
  const int pp = s.pp, v = s.virtual_stages, layers = m.num_hidden_layers;
  std::vector<Option> options;
  std::vector<int> tps = {s.tp};
  // Per-layer tp changes with sequence parallelism, or in a mixture-of-experts model, are not
  // lowered (check_lowerable).
  if (space.layer_tp && !s.sequence_parallel && !m.is_moe()) {
    for (int t : {s.tp / 2, s.tp * 2}) {
      const long long devices = static_cast<long long>(s.tp) * s.dp;
      if (t < 1 || devices % t != 0) continue;
      const long long layer_dp = devices / t;
      if ((static_cast<long long>(s.micro_batch_size) * s.dp) % layer_dp != 0) continue;
      if (m.num_attention_heads % t || m.num_key_value_heads % t || m.intermediate_size % t)
        continue;
      if (s.sequence_parallel && m.seq_length % t) continue;
      tps.push_back(t);
    }
  }
  for (int t : tps) {
    const int layer_dp = s.tp * s.dp / t;
    const int samples = s.micro_batch_size * s.dp / layer_dp;
    for (Recompute rc : space.recompute) {
      const LayerCost& c = estimator.layer_cost(s, t, samples, rc);
      options.push_back({t, rc, c.forward_s + c.backward_s, estimator.layer_static_bytes(s, t),
                         c.stored_bytes, c.transient_bytes});
    }
  }
  // The uniform strategy's first option (the strategy's tp and recompute) as the reference.
  const Option* base = nullptr;
  for (const Option& o : options) {
    if (o.tp == s.tp && o.recompute == s.recompute) base = &o;
  }
  STRATA_CHECK(base != nullptr, "hybrid_overrides: the strategy's own option is missing");
  double max_transient_extra = 0;
  for (const Option& o : options) {
    max_transient_extra = std::max(max_transient_extra, o.transient_bytes - base->transient_bytes);
  }
  const std::vector<int> partition = strategies::stage_partition(m, s);
  std::vector<std::vector<int>> rank_layers(pp);
  {
    int l = 0;
    for (int vs = 0; vs < pp * v; ++vs) {
      for (int i = 0; i < partition[vs]; ++i) rank_layers[vs % pp].push_back(l++);
    }
  }
  // A tp change between two groups reshards a micro-batch's layer input forward and backward
  // (priced at the largest ratio of tps in the options).
  int ratio = 1;
  for (const Option& o : options) ratio = std::max({ratio, o.tp / s.tp, s.tp / o.tp});
  const double reshard_s =
      2 * estimator.collective_s(strategies::CollectiveKind::kAllGather, 0, 1, ratio,
                                 static_cast<double>(s.micro_batch_size) * m.seq_length *
                                     m.hidden_size * strategies::precision_bytes(s.precision));
  std::vector<int> choice(layers, -1);
  const int base_index = static_cast<int>(base - options.data());
  bool any = false;
  for (int r = 0; r < pp; ++r) {
    const int n_layers = static_cast<int>(rank_layers[r].size());
    const int k = in_flight(s.schedule, pp, r, s.num_micro_batches(), v);
    auto mem = [&](const Option& o) { return o.static_bytes + k * o.stored_bytes / v; };
    const double fixed = uniform.stage_peak_bytes[r] - n_layers * mem(*base) + max_transient_extra;
    const double room = budget - fixed;
    std::vector<LayerOption> costs;
    for (const Option& o : options) costs.push_back({o.time_s, mem(o), o.tp});
    const std::optional<LayerGroups> g =
        choose_layer_groups(costs, n_layers, room, reshard_s, base_index);
    if (!g) return {};  // not even the uniform strategy fits this rank
    const int best_a = g->a, best_b = g->b, best_n = g->n;
    for (int i = 0; i < n_layers; ++i) {
      choice[rank_layers[r][i]] = i < best_n ? best_a : best_b;
      if (choice[rank_layers[r][i]] != base_index) any = true;
    }
  }
  if (!any) return {};
  std::vector<strategies::LayerOverride> out;
  for (int l = 0; l < layers;) {
    int e = l;
    while (e + 1 < layers && choice[e + 1] == choice[l]) ++e;
    if (choice[l] != base_index) {
      const Option& o = options[choice[l]];
      strategies::LayerOverride ov;
      ov.first = l;
      ov.last = e;
      ov.tp = o.tp != s.tp ? o.tp : 0;
      ov.recompute = o.recompute != s.recompute ? static_cast<int>(o.recompute) : -1;
      out.push_back(ov);
    }
    l = e + 1;
  }
  return out;
}

}  // namespace

std::vector<Candidate> explore(const strategies::ModelSpec& model,
                               const strategies::ClusterSpec& cluster, int world_size,
                               const StrategySpec& base, const Space& given,
                               const profiler::CostModel& cost, ExploreStats& stats,
                               const std::function<void(long long, long long)>& progress) {
  const auto start = std::chrono::steady_clock::now();
  const Space space = with_defaults(given, model, cluster, world_size);
  Estimator estimator(model, cluster, world_size, cost);
  const double budget = cluster.group_of_gpu(0).gpu.memory_bytes * space.memory_fraction;
  std::vector<Candidate> out;
  stats = ExploreStats{};
  stats.smallest_peak_bytes = 0;

  // The structures: everything but recompute (chosen per structure, uniformly and per layer).
  struct Structure {
    int tp, pp, mbs, schedule, v, zero, sp;
    double bucket_mib;
  };
  std::vector<Structure> structures;
  for (int tp : space.tp) {
    for (int pp : space.pp) {
      for (int mbs : space.micro_batch_size) {
        for (Schedule sched : space.schedule) {
          const std::vector<int> vs = sched == Schedule::kInterleaved ? space.virtual_stages
                                      : sched == Schedule::kZbV       ? std::vector<int>{2}
                                                                      : std::vector<int>{1};
          for (int v : vs) {
            for (int zero : space.zero_stage) {
              for (bool sp : space.sequence_parallel) {
                for (double bucket : space.grad_bucket_MiB) {
                  structures.push_back(
                      {tp, pp, mbs, static_cast<int>(sched), v, zero, sp ? 1 : 0, bucket});
                }
              }
            }
          }
        }
      }
    }
  }
  const long long points = static_cast<long long>(structures.size()) * space.recompute.size();
  stats.combinations = points;
  long long done = 0;
  auto note_invalid = [&](const StrategySpec& s, const std::string& why) {
    ++stats.invalid;
    if (stats.invalid_examples.size() < 3) {
      stats.invalid_examples.push_back(strategy_line(s) + ": " + why);
    }
  };
  for (std::size_t i = 0; i < structures.size(); ++i) {
    const Structure& st = structures[i];
    if (progress && i % 256 == 0) progress(done, points);
    done += static_cast<long long>(space.recompute.size());
    StrategySpec s = base;
    s.tp = st.tp;
    s.pp = st.pp;
    s.cp = 1;
    s.ep = 1;
    s.order = StrategySpec{}.order;
    s.micro_batch_size = st.mbs;
    s.schedule = static_cast<Schedule>(st.schedule);
    s.virtual_stages = st.v;
    s.zero_stage = st.zero;
    s.zero_shard_group = 0;
    s.sequence_parallel = st.sp != 0;
    s.tp_comm_overlap = false;
    s.collectives.grad_bucket_bytes = st.bucket_mib * 1024 * 1024;
    s.layer_overrides.clear();
    s.stage_layers.clear();
    const long long per_replica = static_cast<long long>(st.tp) * st.pp;
    if (world_size % per_replica != 0) {
      s.dp = 0;
      for (Recompute rc : space.recompute) {
        s.recompute = rc;
        note_invalid(s, "tp*pp = " + std::to_string(per_replica) + " does not divide the " +
                            std::to_string(world_size) + " GPUs");
      }
      continue;
    }
    s.dp = static_cast<int>(world_size / per_replica);
    // Points equal to another: sequence parallelism needs tp > 1, ZeRO needs dp > 1, GPipe and
    // 1F1B are one schedule without a pipeline, and the bucket size matters only where
    // gradients are bucketed (dp > 1, ZeRO below 3).
    const bool duplicate =
        (s.sequence_parallel && s.tp == 1) || (s.zero_stage > 0 && s.dp == 1) ||
        (s.schedule == Schedule::kGPipe && s.pp == 1 &&
         std::find(space.schedule.begin(), space.schedule.end(), Schedule::kOneFOneB) !=
             space.schedule.end()) ||
        (st.bucket_mib != space.grad_bucket_MiB.front() && (s.dp == 1 || s.zero_stage == 3));
    if (duplicate) {
      stats.duplicates += static_cast<long long>(space.recompute.size());
      continue;
    }
    const strategies::ModelSpec padded = strategies::padded_for_tp(model, s.tp);
    Estimate uniform_base;
    bool have_base = false;
    for (Recompute rc : space.recompute) {
      s.recompute = rc;
      s.name = "search";
      try {
        strategies::validate(padded, s, world_size);
        strategies::validate_devices(cluster, s, world_size);
        strategies::check_lowerable(padded, s);
      } catch (const ConfigError& e) {
        note_invalid(s, e.what());
        continue;
      }
      const Estimate est = estimator.estimate(s);
      ++stats.estimated;
      if (!have_base) {
        uniform_base = est;
        have_base = true;
      }
      if (est.peak_bytes > budget) {
        ++stats.over_memory;
        if (stats.smallest_peak_bytes == 0 || est.peak_bytes < stats.smallest_peak_bytes) {
          stats.smallest_peak_bytes = est.peak_bytes;
        }
        continue;
      }
      out.push_back({s, est, false, strategy_line(s)});
    }
    if (!have_base || !space.layer_hybrids) continue;
    // The per-layer hybrid, from the first recompute mode of the space as the strategy's own.
    s.recompute = space.recompute.front();
    std::vector<strategies::LayerOverride> overrides =
        hybrid_overrides(model, s, space, estimator, uniform_base, budget);
    if (overrides.empty()) continue;
    s.layer_overrides = std::move(overrides);
    try {
      strategies::validate(padded, s, world_size);
      strategies::check_lowerable(padded, s);
    } catch (const ConfigError&) {
      continue;  // a hybrid the rules refuse is simply not a candidate
    }
    const Estimate est = estimator.estimate(s);
    ++stats.estimated;
    if (est.peak_bytes > budget) {
      ++stats.over_memory;
      continue;
    }
    ++stats.hybrids;
    out.push_back({s, est, true, strategy_line(s)});
  }
  if (progress) progress(points, points);
  std::sort(out.begin(), out.end(), better);
  stats.lowerings = estimator.lowerings();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (out.empty() && stats.estimated == 0) {
    std::string message = "the search space holds no valid strategy for " + model.name + " on " +
                          std::to_string(world_size) + " GPUs (" + std::to_string(points) +
                          " points: " + std::to_string(stats.invalid) +
                          " refused by the strategy rules, " + std::to_string(stats.duplicates) +
                          " duplicates)";
    for (const std::string& e : stats.invalid_examples) message += "; " + e;
    throw ConfigError(message);
  }
  return out;
}

}  // namespace strata::search
