// FedAvg across sites of MPI ranks and its single-process reference; see fedavg.hpp.
#include "executor/fedavg.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "common/error.hpp"
#include "common/hash.hpp"
#include "executor/counter_prg.hpp"
#include "executor/sub_comm.hpp"

namespace strata::exec {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Words through the float-only Comm, bit for bit (bookkeeping, not arithmetic).
template <typename T>
void put(std::vector<float>& out, T v) {
  static_assert(sizeof(T) == 8);
  float f[2];
  std::memcpy(f, &v, 8);
  out.insert(out.end(), f, f + 2);
}
template <typename T>
T get(const float* f) {
  T v;
  std::memcpy(&v, f, 8);
  return v;
}

std::vector<int> iota(int first, int count) {
  std::vector<int> v;
  for (int i = 0; i < count; ++i) v.push_back(first + i);
  return v;
}

// The L2 norm of the site's update, each element counted once: every rank lists, per run, its
// tensor, the share of the tensor it holds and its sum of squares; a tensor's replication is the
// sum of its shares over the site (an integer: each element is held by as many ranks); the norm
// squared is the sum of sums of squares over the replication. Collective over the site.
double site_norm(Comm& c, GroupId g, const std::vector<ParameterSpan>& spans,
                 const std::vector<float>& update) {
  std::vector<float> mine;
  std::size_t at = 0;
  for (const ParameterSpan& s : spans) {
    double sq = 0;
    for (std::int64_t k = 0; k < s.slice.count; ++k) {
      const double x = update[at + static_cast<std::size_t>(k)];
      sq += x * x;
    }
    at += static_cast<std::size_t>(s.slice.count);
    put(mine, fnv1a64(s.slice.tensor));
    put(mine,
        static_cast<double>(s.slice.count) / static_cast<double>(s.slice.rows * s.slice.cols));
    put(mine, sq);
  }
  const int members = c.group_size(g);
  std::vector<float> counts(static_cast<std::size_t>(members));
  const auto n = static_cast<float>(mine.size());
  c.all_gather(g, &n, counts.data(), 1).wait();
  std::vector<int> sizes;
  int total = 0;
  for (float x : counts) {
    sizes.push_back(static_cast<int>(x));
    total += sizes.back();
  }
  std::vector<float> all(static_cast<std::size_t>(total));
  c.all_gather_v(g, mine.data(), all.data(), sizes).wait();
  std::map<std::uint64_t, double> share;
  for (std::size_t i = 0; i < all.size(); i += 6) {
    share[get<std::uint64_t>(&all[i])] += get<double>(&all[i + 2]);
  }
  double sum = 0;
  for (std::size_t i = 0; i < all.size(); i += 6) {
    sum += get<double>(&all[i + 4]) / std::round(share[get<std::uint64_t>(&all[i])]);
  }
  return std::sqrt(sum);
}

// The reference's sum of the participants' updates, as the federated run computes it.
std::vector<float> sum_updates(const std::vector<const std::vector<float>*>& updates,
                               const FedAvgOptions& o) {
  if (o.secure_aggregation) {
    std::vector<std::vector<std::uint64_t>> words;
    for (const auto* u : updates) words.push_back(encode_fixed_point(u->data(), u->size(), o.code));
    return decode_fixed_point(sum_words(words), o.code);
  }
  std::vector<float> sum = *updates.front();
  for (std::size_t i = 1; i < updates.size(); ++i) {
    for (std::size_t k = 0; k < sum.size(); ++k) sum[k] += (*updates[i])[k];
  }
  return sum;
}

double update_bytes(std::size_t elements, int ranks, const FedAvgOptions& o) {
  return static_cast<double>(elements) * ranks * (o.secure_aggregation ? 8.0 : 4.0);
}

}  // namespace

std::uint64_t site_data_seed(std::uint64_t seed, int site) {
  return seed + static_cast<std::uint64_t>(site) * kSplitMix64Gamma;
}

std::vector<float> flat_parameters(Executor& e) {
  std::vector<float> out;
  for (const ParameterSpan& s : e.parameters())
    out.insert(out.end(), s.data, s.data + s.slice.count);
  return out;
}

std::vector<float> site_update(Executor& e, const std::vector<float>& start) {
  std::vector<float> u = flat_parameters(e);
  STRATA_CHECK(u.size() == start.size(), "the parameters kept their size over the round");
  for (std::size_t k = 0; k < u.size(); ++k) u[k] -= start[k];
  return u;
}

DpReport privatise_update(Comm& site_comm, GroupId site_group, Executor& e,
                          std::vector<float>& update, const FedAvgOptions& o, int site, int round) {
  const std::vector<ParameterSpan> spans = e.parameters();
  DpReport r;
  r.norm_before = site_norm(site_comm, site_group, spans, update);
  if (r.norm_before > o.dp_clip) {
    const double factor = o.dp_clip / r.norm_before;
    for (float& x : update) x = static_cast<float>(x * factor);
  }
  r.norm_after_clip = site_norm(site_comm, site_group, spans, update);
  // Noise run by run, each from its own stream: the same elements (replicas) get the same noise.
  const std::uint64_t base =
      prg_word(o.seed ^ 0xd1b54a32d192ed03ULL,
               static_cast<std::uint64_t>(round) << 20 | static_cast<std::uint64_t>(site));
  std::size_t at = 0;
  for (const ParameterSpan& s : spans) {
    GaussianMechanism m;
    m.clip_norm = o.dp_clip;
    m.noise_multiplier = o.dp_sigma;
    m.delta = o.dp_delta;
    m.seed =
        prg_word(base ^ fnv1a64(s.slice.tensor), static_cast<std::uint64_t>(s.slice.index) << 40 |
                                                     static_cast<std::uint64_t>(s.slice.begin));
    // The whole update is within the clip already, so this run is too: only the noise acts.
    apply_gaussian_mechanism(update.data() + at, static_cast<std::size_t>(s.slice.count), m);
    at += static_cast<std::size_t>(s.slice.count);
  }
  r.sigma = o.dp_sigma;
  r.clip_norm = o.dp_clip;
  r.delta = o.dp_delta;
  r.noise_std = o.dp_sigma * o.dp_clip;
  r.classic_epsilon = classic_gaussian_epsilon(o.dp_sigma, o.dp_delta);
  r.classic_bound_holds = r.classic_epsilon < 1.0;
  r.rdp_epsilon = rdp_gaussian_epsilon(o.dp_sigma, o.dp_delta, 1);
  return r;
}

void apply_average(Executor& e, const std::vector<float>& start, const std::vector<float>& sum,
                   int participants) {
  const auto n = static_cast<float>(participants);
  std::size_t at = 0;
  for (const ParameterSpan& s : e.parameters()) {
    for (std::int64_t k = 0; k < s.slice.count; ++k, ++at) s.data[k] = start[at] + sum[at] / n;
  }
  STRATA_CHECK(at == start.size(), "the average covers every parameter");
}

FedAvgRank::FedAvgRank(Comm& world, const FedAvgOptions& options) : world_(world), o_(options) {
  if (o_.sites < 2 || world.size() % o_.sites != 0) {
    throw ConfigError("world size = " + std::to_string(world.size()) + " (mpirun -np): a " +
                      "federated run needs sites x ranks per site with " +
                      std::to_string(o_.sites) + " sites");
  }
  ranks_per_site_ = world.size() / o_.sites;
  site_ = world.rank() / ranks_per_site_;
  position_ = world.rank() % ranks_per_site_;
  world_group_ = world.split(iota(0, world.size()));
  site_comm_ = make_sub_comm(world, iota(site_ * ranks_per_site_, ranks_per_site_));
  site_group_ = world.split(iota(site_ * ranks_per_site_, ranks_per_site_));
  std::vector<int> position;
  for (int s = 0; s < o_.sites; ++s) position.push_back(s * ranks_per_site_ + position_);
  position_group_ = world.split(position);
}

// The ranks of position_ in the participating sites; a split (collective over the world) the
// first time a set is seen. Every rank sees the same sets in the same order.
GroupId FedAvgRank::participants_group(const std::vector<int>& participants) {
  const auto found = participant_groups_.find(participants);
  if (found != participant_groups_.end()) return found->second;
  std::vector<int> mine;
  bool in = false;
  for (int s : participants) {
    mine.push_back(s * ranks_per_site_ + position_);
    in = in || s == site_;
  }
  const GroupId g = world_.split(in ? mine : std::vector<int>{});
  participant_groups_[participants] = g;
  return g;
}

FedAvgRound FedAvgRank::run_round(Executor& e, int round, const std::vector<int>& participants) {
  STRATA_CHECK(!participants.empty(), "a round has at least one participant");
  FedAvgRound r;
  r.round = round;
  r.participants = participants;
  const std::vector<float> start = flat_parameters(e);
  std::vector<double> losses, seconds_of_step;
  for (int k = 0; k < o_.local_steps; ++k) {
    const StepResult step = e.step();
    losses.push_back(step.loss);
    seconds_of_step.push_back(step.seconds);
  }

  const GroupId group = participants_group(participants);
  world_.barrier();
  const double t0 = now_s();
  const bool in = group != kNoGroup;
  std::vector<float> update = site_update(e, start);
  DpReport dp;
  if (in && o_.dp_sigma > 0)
    dp = privatise_update(*site_comm_, site_group_, e, update, o_, site_, round);
  if (in && o_.secure_aggregation) {
    secure_all_reduce(world_, group, update.data(), update.size(), o_.code,
                      MaskingKeys{o_.seed, static_cast<std::uint64_t>(round)});
  } else if (in) {
    world_.all_reduce(group, update.data(), update.size(), ReduceOp::kSum).wait();
  }
  // The sites that sat out take the sum from the first participant (its index among all sites
  // is its rank in the position group).
  if (participants.size() < static_cast<std::size_t>(o_.sites)) {
    world_.broadcast(position_group_, update.data(), update.size(), participants.front()).wait();
  }
  apply_average(e, start, update, static_cast<int>(participants.size()));
  const auto seconds = static_cast<float>(now_s() - t0);

  // Bookkeeping: every rank's losses, time, element count and DP report, on every rank.
  std::vector<float> mine;
  for (double l : losses) put(mine, l);
  for (double x : seconds_of_step) put(mine, x);
  put(mine, static_cast<double>(seconds));
  put(mine, static_cast<double>(update.size()));
  for (double x :
       {dp.norm_before, dp.norm_after_clip, dp.noise_std, dp.classic_epsilon, dp.rdp_epsilon}) {
    put(mine, x);
  }
  std::vector<float> all(mine.size() * static_cast<std::size_t>(world_.size()));
  world_.all_gather(world_group_, mine.data(), all.data(), mine.size()).wait();
  r.losses.assign(static_cast<std::size_t>(o_.sites), {});
  r.step_seconds.assign(static_cast<std::size_t>(o_.local_steps), 0.0);
  double elements = 0;
  for (int w = 0; w < world_.size(); ++w) {
    const float* f = all.data() + static_cast<std::size_t>(w) * mine.size();
    const int site = w / ranks_per_site_;
    std::size_t i = 0;
    for (int k = 0; k < o_.local_steps; ++k, i += 2) {
      if (w % ranks_per_site_ == 0)
        r.losses[static_cast<std::size_t>(site)].push_back(get<double>(f + i));
    }
    for (int k = 0; k < o_.local_steps; ++k, i += 2) {
      double& most = r.step_seconds[static_cast<std::size_t>(k)];
      most = std::max(most, get<double>(f + i));
    }
    r.aggregation_s = std::max(r.aggregation_s, get<double>(f + i));
    if (site == 0) elements += get<double>(f + i + 2);
    i += 4;
    if (o_.dp_sigma > 0 && w % ranks_per_site_ == 0 &&
        std::find(participants.begin(), participants.end(), site) != participants.end()) {
      DpReport d;
      d.norm_before = get<double>(f + i);
      d.norm_after_clip = get<double>(f + i + 2);
      d.noise_std = get<double>(f + i + 4);
      d.classic_epsilon = get<double>(f + i + 6);
      d.rdp_epsilon = get<double>(f + i + 8);
      d.sigma = o_.dp_sigma;
      d.clip_norm = o_.dp_clip;
      d.delta = o_.dp_delta;
      d.classic_bound_holds = d.classic_epsilon < 1.0;
      r.dp.push_back(d);
    }
  }
  r.update_bytes_per_site = update_bytes(static_cast<std::size_t>(elements), 1, o_);
  return r;
}

std::vector<FedAvgRound> fedavg_reference(const strategies::ProgramSet& plan, Comm& comm,
                                          const std::vector<const Corpus*>& site_corpora,
                                          const RunOptions& run, const FedAvgOptions& o,
                                          const std::vector<std::vector<int>>& participants,
                                          std::vector<float>* final_parameters) {
  STRATA_CHECK(static_cast<int>(site_corpora.size()) == o.sites, "one corpus per site");
  std::vector<std::unique_ptr<Executor>> sites;
  for (const Corpus* c : site_corpora) {
    sites.push_back(std::make_unique<Executor>(plan, comm, *c, run));
  }
  const GroupId all = comm.split(iota(0, comm.size()));
  std::vector<FedAvgRound> rounds;
  for (std::size_t i = 0; i < participants.size(); ++i) {
    FedAvgRound r;
    r.round = static_cast<int>(i) + 1;
    r.participants = participants[i];
    std::vector<std::vector<float>> starts, updates;
    for (int s = 0; s < o.sites; ++s) {
      Executor& e = *sites[static_cast<std::size_t>(s)];
      starts.push_back(flat_parameters(e));
      r.losses.emplace_back();
      for (int k = 0; k < o.local_steps; ++k) r.losses.back().push_back(e.step().loss);
      updates.push_back(site_update(e, starts.back()));
    }
    std::vector<const std::vector<float>*> summed;
    for (int s : r.participants) {
      auto& u = updates[static_cast<std::size_t>(s)];
      if (o.dp_sigma > 0) {
        r.dp.push_back(
            privatise_update(comm, all, *sites[static_cast<std::size_t>(s)], u, o, s, r.round));
      }
      summed.push_back(&u);
    }
    const std::vector<float> sum = sum_updates(summed, o);
    for (int s = 0; s < o.sites; ++s) {
      apply_average(*sites[static_cast<std::size_t>(s)], starts[static_cast<std::size_t>(s)], sum,
                    static_cast<int>(r.participants.size()));
    }
    // Summed over the site's ranks, as the federated run reports it.
    float elements = static_cast<float>(sum.size());
    comm.all_reduce(all, &elements, 1, ReduceOp::kSum).wait();
    r.update_bytes_per_site = update_bytes(static_cast<std::size_t>(elements), 1, o);
    rounds.push_back(std::move(r));
  }
  if (final_parameters != nullptr) *final_parameters = flat_parameters(*sites.front());
  return rounds;
}

}  // namespace strata::exec
