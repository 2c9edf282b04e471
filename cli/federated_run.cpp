// `strata run` of a federated strategy; see federated_run.hpp and docs/federated.md "Running it
// for real".
#include "cli/federated_run.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "cli/interrupt.hpp"
#include "cli/specs.hpp"
#include "cli/training.hpp"
#include "common/error.hpp"
#include "common/units.hpp"
#include "executor/counter_prg.hpp"
#include "executor/fedavg.hpp"
#include "strategies/federated.hpp"

namespace strata::cli {
namespace {

// The flags of `strata run` a federated run does not take yet (the rest it honours).
const char* const kNotFederated[] = {"--save",   "--resume", "--trace",      "--dump-gradients",
                                     "--device", "--comm",   "--save-every", "--keep-last"};

struct Federated {
  Inputs in;
  strategies::FederatedSpec f;
  std::vector<std::string> sites;
  int ranks_per_site = 1;
  int rounds = 1;
};

// The inputs and every check, before any work (ConfigError naming the field).
Federated check_federated(const Args& args, Inputs in, int world_size) {
  Federated x;
  x.f = *in.strategy.federated;
  for (const char* flag : kNotFederated) {
    if (args.has(flag)) {
      throw ConfigError(std::string(flag) + ": not with a federated strategy ('" +
                        in.strategy.name + "') yet (docs/federated.md \"Running it for real\")");
    }
  }
  strategies::validate_federated(in.cluster, in.strategy);
  x.sites = in.cluster.sites();
  x.ranks_per_site = in.strategy.world_size();
  const int site_gpus = in.cluster.site_gpus(x.sites.front());
  for (const std::string& site : x.sites) {
    if (in.cluster.site_gpus(site) != site_gpus) {
      throw ConfigError("cluster '" + in.cluster.name + "': site '" + site + "' has " +
                        std::to_string(in.cluster.site_gpus(site)) + " ranks and site '" +
                        x.sites.front() + "' " + std::to_string(site_gpus) +
                        ": a federated run averages shard by shard, so every site needs the same "
                        "ranks (sites of different sizes are simulated only)");
    }
  }
  if (x.f.homomorphic_encryption) {
    throw ConfigError("strategy.federated.homomorphic_encryption: priced by `strata simulate` "
                      "only; a run aggregates in the clear or with secure_aggregation");
  }
  if (x.ranks_per_site != site_gpus) {
    throw ConfigError("strategy '" + in.strategy.name + "' needs dp * tp * pp * cp = " +
                      std::to_string(x.ranks_per_site) + " ranks per site; the sites of cluster '" +
                      in.cluster.name + "' have " + std::to_string(site_gpus) + " each");
  }
  const long long world = static_cast<long long>(x.sites.size()) * x.ranks_per_site;
  if (world != world_size) {
    throw ConfigError("world size = " + std::to_string(world_size) +
                      " (mpirun -np): a federated run of strategy '" + in.strategy.name +
                      "' on cluster '" + in.cluster.name + "' needs " +
                      std::to_string(x.sites.size()) + " sites x " +
                      std::to_string(x.ranks_per_site) + " ranks = " + std::to_string(world));
  }
  if (x.f.aggregation == strategies::FederatedAggregation::kSyncDp) {
    throw ConfigError(
        "strategy.federated.aggregation = \"sync_dp\": the simulator's baseline; to "
        "run it, run the strategy without \"federated\" over every site's ranks "
        "(plain data parallelism)");
  }
  const strategies::StrategySpec& s = in.strategy;
  if (s.precision != strategies::Precision::kFp32 || s.zero_stage != 0) {
    throw ConfigError("strategy '" + s.name +
                      "': a federated run averages the fp32 parameters, which are the optimizer's "
                      "weights only with \"precision\": \"fp32\" and "
                      "\"zero_stage\": 0 (precision " +
                      strategies::precision_name(s.precision) + ", zero_stage " +
                      std::to_string(s.zero_stage) + ")");
  }
  const int steps = args.get_positive_int("--steps").value_or(10);
  if (steps % x.f.local_steps != 0) {
    throw ConfigError("--steps = " + std::to_string(steps) +
                      ": must be a multiple of strategy.federated.local_steps (" +
                      std::to_string(x.f.local_steps) + "), a whole number of rounds");
  }
  x.rounds = steps / x.f.local_steps;
  x.in = std::move(in);
  return x;
}

std::string names(const std::vector<std::string>& sites, const std::vector<int>& which) {
  std::string out;
  for (int s : which) out += (out.empty() ? "" : ", ") + sites[static_cast<std::size_t>(s)];
  return out.empty() ? "none" : out;
}

std::vector<int> left_out(int sites, const std::vector<int>& participants) {
  std::vector<int> out;
  for (int s = 0; s < sites; ++s) {
    if (std::find(participants.begin(), participants.end(), s) == participants.end()) {
      out.push_back(s);
    }
  }
  return out;
}

// Rank 0: a round's steps and its aggregation.
void print_round(const Federated& x, const exec::FedAvgRound& r, const exec::FedAvgOptions& o) {
  for (int k = 0; k < o.local_steps; ++k) {
    std::printf("step %4d (round %d)  loss", (r.round - 1) * o.local_steps + k + 1, r.round);
    for (std::size_t s = 0; s < x.sites.size(); ++s) {
      std::printf("  %s %.6f", x.sites[s].c_str(), r.losses[s][static_cast<std::size_t>(k)]);
    }
    std::printf("  (%.3f s)\n", r.step_seconds[static_cast<std::size_t>(k)]);
  }
  const std::vector<int> out = left_out(static_cast<int>(x.sites.size()), r.participants);
  std::printf("round %d: participants %s%s; %s aggregation %.4f s, update %s per site", r.round,
              names(x.sites, r.participants).c_str(),
              out.empty() ? "" : (" (out: " + names(x.sites, out) + ")").c_str(),
              o.secure_aggregation ? "secure" : "plain", r.aggregation_s,
              units::format_bytes(r.update_bytes_per_site).c_str());
  if (!r.dp.empty()) {
    std::printf("; DP sigma %g clip %g: norms", o.dp_sigma, o.dp_clip);
    for (const exec::DpReport& d : r.dp) {
      std::printf(" %.4g->%.4g", d.norm_before, d.norm_after_clip);
    }
  }
  std::printf("\n");
}

json::Json federated_json(const Federated& x, const exec::FedAvgOptions& o,
                          const std::vector<exec::FedAvgRound>& rounds) {
  auto site_names = [&](const std::vector<int>& v) {
    json::Json a = json::Json::array();
    for (int s : v) a.push_back(x.sites[static_cast<std::size_t>(s)]);
    return a;
  };
  json::Json rows = json::Json::array();
  std::vector<double> bytes(x.sites.size(), 0.0);
  std::vector<int> taken(x.sites.size(), 0);
  for (const exec::FedAvgRound& r : rounds) {
    json::Json losses = json::Json::object();
    for (std::size_t s = 0; s < x.sites.size(); ++s) losses[x.sites[s]] = r.losses[s];
    json::Json row = {
        {"round", r.round},
        {"first_step", (r.round - 1) * o.local_steps + 1},
        {"participants", site_names(r.participants)},
        {"left_out", site_names(left_out(static_cast<int>(x.sites.size()), r.participants))},
        {"aggregation_seconds", r.aggregation_s},
        {"update_bytes_per_site", r.update_bytes_per_site},
        {"losses", losses}};
    if (!r.dp.empty()) {
      json::Json dp = json::Json::array();
      for (std::size_t i = 0; i < r.dp.size(); ++i) {
        const exec::DpReport& d = r.dp[i];
        dp.push_back({{"site", x.sites[static_cast<std::size_t>(r.participants[i])]},
                      {"norm_before", d.norm_before},
                      {"norm_after_clip", d.norm_after_clip},
                      {"noise_std", d.noise_std}});
      }
      row["dp"] = dp;
    }
    for (int s : r.participants) {
      bytes[static_cast<std::size_t>(s)] += r.update_bytes_per_site;
      ++taken[static_cast<std::size_t>(s)];
    }
    rows.push_back(std::move(row));
  }
  json::Json per_site = json::Json::array();
  for (std::size_t s = 0; s < x.sites.size(); ++s) {
    per_site.push_back(
        {{"site", x.sites[s]}, {"rounds_taken_part", taken[s]}, {"update_bytes_sent", bytes[s]}});
  }
  json::Json dp = nullptr;
  if (o.dp_sigma > 0) {
    const int most = *std::max_element(taken.begin(), taken.end());
    dp = {{"sigma", o.dp_sigma},
          {"clip", o.dp_clip},
          {"delta", o.dp_delta},
          {"noise_std", o.dp_sigma * o.dp_clip},
          {"classic_epsilon_per_round", exec::classic_gaussian_epsilon(o.dp_sigma, o.dp_delta)},
          {"rdp_epsilon_per_round", exec::rdp_gaussian_epsilon(o.dp_sigma, o.dp_delta, 1)},
          {"rdp_epsilon_total", exec::rdp_gaussian_epsilon(o.dp_sigma, o.dp_delta, most)}};
  }
  return {{"sites", x.sites},
          {"ranks_per_site", x.ranks_per_site},
          {"local_steps", o.local_steps},
          {"aggregation", strategies::federated_aggregation_name(x.f.aggregation)},
          {"executed_as", "all-reduce among the participants' ranks of equal site-local rank"},
          {"secure_aggregation", o.secure_aggregation},
          {"dp", dp},
          {"site_data_seeds", "seed + site x 0x9e3779b97f4a7c15"},
          {"per_site", per_site},
          {"rounds", rows}};
}

}  // namespace

std::vector<int> round_participants(const strategies::ClusterSpec& c,
                                    const strategies::FederatedSpec& f, std::uint64_t seed,
                                    int round) {
  strategies::FederatedSpec g = f;
  g.dropout_probability = 0;
  if (f.dropout_probability > 0) {
    const std::vector<std::string> sites = c.sites();
    std::vector<std::string> drawn;
    std::string keep;
    for (std::size_t i = 0; i < sites.size(); ++i) {
      if (std::find(f.dropout_sites.begin(), f.dropout_sites.end(), sites[i]) !=
          f.dropout_sites.end()) {
        continue;
      }
      if (keep.empty()) keep = sites[i];
      const auto index = (static_cast<std::uint64_t>(round) << 20) + i;
      if (exec::prg_unit(seed, index) <= f.dropout_probability) drawn.push_back(sites[i]);
    }
    if (drawn.size() + f.dropout_sites.size() >= sites.size()) {
      drawn.erase(std::find(drawn.begin(), drawn.end(), keep));
    }
    g.dropout_sites.insert(g.dropout_sites.end(), drawn.begin(), drawn.end());
  }
  return strategies::participating_sites(c, g);
}

std::optional<int> run_if_federated(const Args& args, exec::Comm& world) {
  const bool lead = world.rank() == 0;
  Federated x;
  exec::RunOptions options;
  Training t;
  double timeout_s = 0;
  try {
    Inputs in = load_inputs(args);
    if (!in.strategy.federated) return std::nullopt;
    x = check_federated(args, std::move(in), world.size());
    t.plan = std::make_unique<strategies::Plan>(lower_inputs(x.in, x.ranks_per_site));
    t.steps = x.rounds * x.f.local_steps;
    timeout_s = comm_timeout_s(args);
    // Seed and learning rate as a plain run reads them.
    if (const auto seed = args.get_positive_int("--seed")) {
      options.seed = static_cast<unsigned>(*seed);
    }
    options.adam.lr = static_cast<float>(parse_positive_double(args, "--lr", options.adam.lr));
  } catch (const ConfigError&) {
    if (lead) throw;
    return kExitConfigError;
  }
  t.options = options;
  exec::FedAvgOptions o;
  o.sites = static_cast<int>(x.sites.size());
  o.local_steps = x.f.local_steps;
  o.secure_aggregation = x.f.secure_aggregation;
  o.dp_sigma = x.f.dp_sigma;
  o.dp_clip = x.f.dp_clip;
  o.seed = options.seed;
  // From here on an error may hit one rank only: it stops the whole world (as `strata run`).
  try {
    set_interrupt_phase("federated training");
    exec::FedAvgRank fed(world, o);
    const int site = fed.site();
    const strategies::Plan& plan = *t.plan;
    const std::string data = args.get("--data").value_or(exec::default_corpus_path());
    const std::uint64_t data_seed = exec::site_data_seed(options.seed, site);
    t.corpus = data == "random"
                   ? std::make_unique<exec::Corpus>(exec::Corpus::synthetic(
                         plan.model.vocab_size, plan.model.seq_length, data_seed))
                   : std::make_unique<exec::Corpus>(data, plan.model.seq_length, data_seed);
    exec::Executor e(plan, fed.site_comm(), *t.corpus, options);
    world.set_timeout_s(timeout_s);  // after the groups are made, as a plain run
    if (lead) {
      std::printf(
          "strata run: %s, federated strategy %s: %zu sites x %d rank%s (%s), FedAvg every "
          "%d steps, %d rounds, %s aggregation%s; each site on its own data (seed + site x "
          "0x9e3779b97f4a7c15); AdamW state local to each site\n",
          plan.model.name.c_str(), plan.strategy.name.c_str(), x.sites.size(), x.ranks_per_site,
          x.ranks_per_site == 1 ? "" : "s", world.backend().c_str(), o.local_steps, x.rounds,
          o.secure_aggregation ? "secure" : "plain",
          o.dp_sigma > 0 ? (", DP sigma " + std::to_string(o.dp_sigma)).c_str() : "");
    }
    TrainingResult result;
    std::vector<exec::FedAvgRound> rounds;
    const double tokens =
        static_cast<double>(plan.strategy.global_batch_size) * plan.model.seq_length;
    for (int r = 1; r <= x.rounds; ++r) {
      rounds.push_back(fed.run_round(e, r, round_participants(x.in.cluster, x.f, options.seed, r)));
      const exec::FedAvgRound& round = rounds.back();
      if (lead) print_round(x, round, o);
      for (int k = 0; k < o.local_steps; ++k) {
        double mean = 0;
        for (const auto& l : round.losses) mean += l[static_cast<std::size_t>(k)];
        const double seconds = round.step_seconds[static_cast<std::size_t>(k)];
        result.steps.push_back({(r - 1) * o.local_steps + k + 1,
                                mean / static_cast<double>(o.sites), seconds,
                                seconds > 0 ? tokens / seconds : 0.0, ""});
      }
    }
    result.memory = e.gather_memory();  // site 0's ranks, on world rank 0
    if (o.dp_sigma > 0 && lead) {
      std::printf(
          "DP: sigma %g, clip %g, delta %g: epsilon per round %.4g (Renyi DP), %.4g over "
          "the rounds\n",
          o.dp_sigma, o.dp_clip, o.dp_delta, exec::rdp_gaussian_epsilon(o.dp_sigma, o.dp_delta, 1),
          exec::rdp_gaussian_epsilon(o.dp_sigma, o.dp_delta, x.rounds));
    }
    if (lead) {
      result.federated = federated_json(x, o, rounds);
      report_training(t, result, args, world);
    }
  } catch (const std::exception& e) {
    abort_world(world, e, kExitRuntime);
  }
  return kExitOk;
}

}  // namespace strata::cli
