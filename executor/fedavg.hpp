// Federated averaging executed for real (FedAvg, McMahan et al. 2017; docs/federated.md "Running
// it for real"): sites are groups of R ranks, each site runs one Plan (one site's strategy) on
// its own data with its own Executor, and every K local steps the participating sites average
// their models. The rank at the same position in every site holds the same shards, so the
// ranks of equal site-local rank average their parameters across sites, run by run
// (Executor::parameters()), by a plain all-reduce or by secure aggregation
// (secure_aggregation.hpp), after each site's update is clipped and noised when DP is on
// (dp_noise.hpp). It reads no strategy: the CLI turns strategy.federated into FedAvgOptions and
// each round's participants (cli/federated_run.cpp).
//
// defines: FedAvgOptions, FedAvgRound, site_data_seed, SiteUpdate, site_update, privatise_update,
//   apply_average, FedAvgRank, fedavg_reference
//
// One round r (1 for the first), for every site s (world ranks s R .. s R + R - 1):
//   1. w0 = the site's parameters; K Executor steps on the site's data; u_s = w - w0 (fp32);
//   2. with dp_sigma > 0 (participants): u_s clipped to L2 norm dp_clip over the whole site's
//      update (each element counted once however many ranks hold it), then N(0, (sigma C)^2)
//      added per element from a stream keyed by (seed, round, site, tensor, shard, run), so that
//      replicas inside a site add the same noise;
//   3. U = the sum of u_s over the participants P (plain: a fp32 all-reduce; secure: the exact
//      sum of the fixed-point encodings, decoded); every site, participant or not, sets
//      w = w0 + U / |P| (FedAvg: the server's model goes to every site, so a site that dropped
//      out of a round resumes from the average; its own steps of that round are discarded).
// The optimizer state (AdamW's moments and step count) stays local to each site and is not
// averaged. Losses are each site's own mean over its global batch.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "executor/comm.hpp"
#include "executor/dp_noise.hpp"
#include "executor/executor.hpp"
#include "executor/secure_aggregation.hpp"

namespace strata::exec {

struct FedAvgOptions {
  int sites = 2;
  int local_steps = 1;  // K
  bool secure_aggregation = false;
  // The fixed-point code of secure aggregation: 24 fractional bits (resolution 6e-8, ample for
  // a K-step update) in [-2^20, 2^20].
  FixedPointCode code{24, 1048576.0, false};
  double dp_sigma = 0;  // 0: no DP noise
  double dp_clip = 1.0;
  double dp_delta = 1e-5;
  std::uint64_t seed = 1234;  // the masking secret and the DP noise streams derive from it
};

struct FedAvgRound {
  int round = 0;                  // 1 for the first
  std::vector<int> participants;  // site indices, ascending
  // losses[s][k]: site s's loss at the round's step k (every site trains, participant or not).
  std::vector<std::vector<double>> losses;
  std::vector<double> step_seconds;  // per local step, the slowest rank's (run_round only)
  double aggregation_s = 0;          // wall time of the aggregation, the slowest rank's
  // The payload one participating site puts on the network for the round, all its ranks: 4 bytes
  // per parameter element (plain) or 8 (secure: 64-bit masked words), times the ranks' elements.
  double update_bytes_per_site = 0;
  std::vector<DpReport> dp;  // per participant, in `participants` order (dp_sigma > 0)
};

// The data seed of site `site`: the run's seed for site 0 (so a one-site run sees the data of a
// plain run), then seed + site x 0x9e3779b97f4a7c15 (mod 2^64): a different sample stream per
// site (data.hpp: sample g starts at splitmix64(data seed + g)).
std::uint64_t site_data_seed(std::uint64_t seed, int site);

// This rank's part of its site's model at the round's start, and its update after the steps.
struct SiteUpdate {
  std::vector<float> start;   // w0, the parameter runs concatenated
  std::vector<float> update;  // u = w - w0
};
// The parameter runs of `e` concatenated (Executor::parameters() order).
std::vector<float> flat_parameters(Executor& e);
// u = parameters(e) - start.
std::vector<float> site_update(Executor& e, const std::vector<float>& start);

// Step 2 above, collective over the site (`site_comm`, the group `site_group` of all its ranks):
// clips `update` (this rank's runs of `e`) to the site's norm dp_clip and adds the noise.
DpReport privatise_update(Comm& site_comm, GroupId site_group, Executor& e,
                          std::vector<float>& update, const FedAvgOptions& o, int site, int round);

// Step 3's last part: parameters(e) = start + sum / participants.
void apply_average(Executor& e, const std::vector<float>& start, const std::vector<float>& sum,
                   int participants);

// One rank of a federated run over `world` (sites x R ranks; collective construction).
class FedAvgRank {
 public:
  FedAvgRank(Comm& world, const FedAvgOptions& options);
  // This rank's site's communicator: the Executor of the site runs on it.
  Comm& site_comm() { return *site_comm_; }
  int site() const { return site_; }
  // One round: K steps of `e`, then the aggregation among `participants` (sorted site indices,
  // the same on every rank; at least one). Every rank returns the same record.
  FedAvgRound run_round(Executor& e, int round, const std::vector<int>& participants);

 private:
  GroupId participants_group(const std::vector<int>& participants);
  Comm& world_;
  FedAvgOptions o_;
  int ranks_per_site_ = 1, site_ = 0, position_ = 0;
  std::unique_ptr<Comm> site_comm_;
  GroupId world_group_ = kNoGroup, site_group_ = kNoGroup, position_group_ = kNoGroup;
  std::map<std::vector<int>, GroupId> participant_groups_;
};

// The single-process reference of the same algorithm (for R = 1; with R ranks per site, the R
// ranks of one site): one Executor per site on `comm` (a world of one site's ranks), the sites'
// K steps run one after another, the updates summed in participant order in this process (plain:
// fp32, left to right; secure: the fixed-point encodings summed exactly), then apply_average.
// `participants[r]` are round r + 1's. Returns the rounds; `final` receives this rank's final
// parameters (every site holds the same after a round).
std::vector<FedAvgRound> fedavg_reference(const strategies::ProgramSet& plan, Comm& comm,
                                          const std::vector<const Corpus*>& site_corpora,
                                          const RunOptions& run, const FedAvgOptions& o,
                                          const std::vector<std::vector<int>>& participants,
                                          std::vector<float>* final_parameters);

}  // namespace strata::exec
