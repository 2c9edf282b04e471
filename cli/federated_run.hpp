// `strata run` of a federated strategy (docs/federated.md "Running it for real"): the world of
// mpirun is sites x ranks per site; each site's ranks run one site's Plan on the site's own data
// (executor/fedavg.hpp) and every local_steps steps the participating sites average their
// models. Rank 0 prints each step's loss per site and each round's participants and aggregation;
// --json adds a "federated" section to run.json.
#pragma once

#include <optional>
#include <vector>

#include "cli/args.hpp"
#include "executor/comm.hpp"
#include "strategies/spec.hpp"

namespace strata::cli {

// The sites (ClusterSpec::sites() indices) taking part in round `round` (1 for the first): the
// sites not in dropout_sites and, with a dropout probability p, not drawn out this round (site
// i drops when prg_unit(seed, round x 2^20 + i) <= p; never every site: then the first site not
// in dropout_sites stays), of which the first ceil(n x participation) (participating_sites on
// what is left). Deterministic for a seed.
std::vector<int> round_participants(const strategies::ClusterSpec& c,
                                    const strategies::FederatedSpec& f, std::uint64_t seed,
                                    int round);

// The exit code of a federated run, or nullopt when --strategy is not federated (then `strata
// run` goes on as usual). ConfigError (on rank 0; the others return kExitConfigError) for what
// a federated run does not take.
std::optional<int> run_if_federated(const Args& args, exec::Comm& world);

}  // namespace strata::cli
