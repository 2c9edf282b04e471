// `strata run` of a parameter-server strategy (docs/parameter-server.md "Running it for real"):
// the recommendation model trained for real by MPI ranks as workers and servers
// (executor/ps.hpp). The world of mpirun is dp workers + ps.servers servers (the last ranks);
// rank 0 prints each step's loss and, at the end, every worker's and server's traffic, waiting
// and staleness; --json writes run.json with a "ps" section.
#pragma once

#include <optional>

#include "cli/args.hpp"
#include "cli/specs.hpp"
#include "executor/comm.hpp"
#include "executor/ps.hpp"

namespace strata::cli {

// The executor's model and options for the inputs (a recommendation model, a ps strategy) and
// the command line (--steps, --seed, --lr): plain data the executor reads. ConfigError naming
// the field for what the executor cannot run.
struct PsRunInputs {
  exec::RecModelDims dims;
  exec::PsRunOptions options;
};
PsRunInputs ps_run_inputs(const Inputs& in, const Args& args, int world_size);

// The exit code of a parameter-server run, or nullopt when the strategy has no "ps" block (then
// `strata run` goes on as usual). ConfigError on rank 0 (the others return kExitConfigError)
// for what a parameter-server run does not take, before any step.
std::optional<int> run_if_ps(const Args& args, exec::Comm& world);

}  // namespace strata::cli
