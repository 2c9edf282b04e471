// `strata run`: train for real. Under `mpirun -np N` every process is one rank: it lowers the
// same Plan and the executor interprets its program step by step (executor/). Rank 0 prints the
// loss and throughput of each step and each rank's memory, and writes the outputs. The pieces
// of a run are in training.cpp; this file parses, calls them and reports.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/federated_run.hpp"
#include "cli/ps_run.hpp"
#include "cli/interrupt.hpp"
#include "cli/launch.hpp"
#include "cli/specs.hpp"
#include "cli/training.hpp"
#include "common/error.hpp"
#include "executor/comm.hpp"

namespace strata::cli {

const char* const kRunHelp = R"(Usage: mpirun -np N strata run --model M --strategy S [options]
       mpirun -np N strata run --model M --switch SCHEDULE [options]

Train a model for real with a strategy: every MPI process is one rank and runs its share of the
Plan (the same Plan `strata plan` and `strata simulate` use) on the CPU, with Eigen kernels and
MPI collectives, or on a GPU (--device cuda). N must equal dp * tp * pp of the strategy; without mpirun the world is 1 rank
(and MPI is not used).

Required:
  --model M          model spec file or bundled name (configs/models/), e.g. gpt-tiny
  --strategy S       strategy spec file or bundled name (configs/strategies/), e.g. tiny-dp2
                     (or --switch FILE, below)
  --set PATH=VALUE   override a spec field (repeatable; docs/specs.md "Overriding fields")
  --switch FILE      instead of --strategy: a strategy schedule (phases of a strategy and a
                     number of steps, cli/switch_schedule.hpp): trains each phase in turn, and
                     at each switch moves the training state (parameters, master weights, Adam
                     moments) to the next strategy's ranks in memory, without a checkpoint;
                     every phase needs the same world size; the schedule gives the steps, so
                     not with --steps. Prints each switch (its step, from -> to, measured
                     seconds, bytes sent over the network); --json adds each step's "strategy"
                     and the "switches" (docs/executor.md "Hot switching")

Options:
  --cluster C        cluster spec the Plan is lowered for (default: local-cpu, this machine)
  --steps K          optimizer steps to run (default: 10)
  --seed S           seed of the parameter initialisation and the data order (default: 1234)
  --lr X             AdamW learning rate (default: 0.001; betas 0.9, 0.95, eps 1e-8, no decay)
  --data FILE        training text, read as bytes: token = byte (default: the bundled
                     configs/data/tiny-corpus.txt); the model's vocab_size must be 256. 'random':
                     synthetic uniform tokens for any vocab_size (throughput runs of real
                     models, e.g. GPT-2's 50,257)
  --save DIR         write a checkpoint into DIR after the last step (with --switch, under the
                     last phase's strategy; atomically: a crash
                     mid-write leaves the previous checkpoint intact; every rank file carries
                     an FNV-1a 64 checksum in the manifest, verified on resume)
  --save-every N     also after every N-th step (with --save)
  --keep-last N      keep only the N newest checkpoints in DIR (with --save; default: all)
  --save-on-nan      when a step's loss is NaN or infinite, write the state after that step to
                     DIR/step-NNNNNN-nonfinite for inspection (with --save; never resumed from)
  --resume DIR       continue from DIR's latest checkpoint (written for the same model and
                     seed; under another strategy or world size its tensors are resharded);
                     --steps counts from the start, so a run resumed at step 5 with --steps 10
                     runs steps 6-10 with the uninterrupted run's losses. Resumed at --steps
                     with --save, it writes the loaded state (a checkpoint converted). With
                     --switch, the run continues in the phase of the step after the checkpoint's
  --force-resume     resume even with another --seed, or a model spec whose hash differs, as
                     long as every tensor has the same shape (with --resume)
  --device D         where the tensors live and the ops run: cpu (default; Eigen kernels) or
                     cuda (CUDA kernels and cuBLAS, fp32; every rank on GPU local-rank mod the
                     GPUs it sees; cuda:N puts every rank on GPU N). Collectives and transfers
                     of a host communicator (MPI, or none for one rank) go through host copies
                     (docs/executor.md "On a GPU")
  --comm C           the communicator of the Plan's collectives and transfers: mpi (default:
                     MPI under mpirun, none for one process; device tensors staged through
                     the host) or nccl (with --device cuda: NCCL on the device tensors, its ids
                     exchanged over MPI; fp32 Plans so far)
  --comm-timeout S   stop the run when a collective or transfer has not completed after S
                     seconds (a rank stopped or hung; default 300, 0 waits forever)
  --json FILE        write the losses and timings as JSON ('-' for stdout)
  --trace FILE       write the last step's measured trace.json (every rank; the simulator's
                     format, task ids of the Plan), to set beside `strata simulate --trace`
  --dump-gradients DIR
                     write every rank's reduced gradients of the first step, just before the
                     optimizer, to DIR/rank-NNNNN.json (each a list of pieces of the unsharded
                     parameters; the equivalence tests compare them across strategies)
  --help             show this help

Outputs (--json, --trace) and checkpoint directories are checked before any work (writable,
none of them an input, no two outputs on one path) and written all or none at the end. A loss
that is NaN or infinite stops the run at that step with exit code 4, as does a rank that stops
answering (--comm-timeout; a rank that dies stops the run at once). SIGINT or SIGTERM print
the step that was interrupted and the latest checkpoint, and exit 130 or 143.

Prints one line per step: the mean cross-entropy over the global batch, the step's wall time
(slowest rank) and tokens/s, then each rank's peak memory as measured beside the Plan's
prediction. The executor interprets the Plan's programs: GPT models in fp32 or bf16 (fp32
master weights) with dp, ZeRO 1-3,
tp (with or without sequence parallelism, also changing per layer), pp (gpipe, 1f1b,
interleaved-1f1b), cp (ring or all-gather, fused attention), unfused or fused attention and
recompute none/selective/full; anything else is refused with the field
that needs changing, before any work (docs/executor.md).

Example (CI runs as root: add --allow-run-as-root; more ranks than cores: --oversubscribe):
  mpirun -np 2 strata run --model gpt-tiny --strategy tiny-dp2 --steps 10 --json out.json

Federated strategies (docs/federated.md "Running it for real"): with a strategy that has a
"federated" block and a cluster with sites, N = sites x ranks per site (one site's dp*tp*pp*cp);
each site's ranks train the strategy on the site's own data (seed + site x 0x9e3779b97f4a7c15)
and every local_steps steps the participating sites average their models (FedAvg; secure
aggregation and DP noise as the block says; AdamW state stays local). --steps must be a
multiple of local_steps; prints each step's loss per site and each round's participants;
--json adds a "federated" section. fp32 without ZeRO on the CPU; not with --save, --resume,
--trace, --dump-gradients, --device, --comm:
  mpirun -np 3 strata run --model gpt-tiny --cluster local-cpu-sites --strategy tiny-fedavg

Parameter-server strategies (docs/parameter-server.md "Running it for real"): with a
recommendation model and a strategy that has a "ps" block, N = dp workers + ps.servers servers
(the last ranks); workers pull the rows their batch touches and the MLP from the servers that
own them and push their gradients back, servers apply SGD under the block's consistency (bsp,
ssp with its staleness bound, asp). --lr is SGD's (default 0.5), --steps and --seed as above;
prints each step's loss (the workers' mean) and each worker's bytes, rows, waiting and largest
staleness and each server's bytes and updates; --json adds a "ps" section. CPU only; not with
--save, --resume, --trace, --data, --dump-gradients, --switch, --comm; a GPT with a ps strategy
is simulated only:
  mpirun -np 4 strata run --model ctr-tiny --strategy ctr-tiny-ps2 --steps 20

Exit codes: 0 success, 1 invalid input, 2 usage error, 3 does not fit in memory, 4 runtime
failure, 70 internal error (the table: strata --help, cli/README.md).
)";


int run_command(const std::vector<std::string>& argv_in) {
  if (asks_for_help(argv_in)) {
    std::cout << kRunHelp;
    return kExitOk;
  }
  const std::vector<std::string> argv = with_local_cluster(argv_in);
  // Arguments are checked before MPI starts, so a usage error is one message, not N.
  const Args args(argv, {"--model", "--cluster", "--strategy", "--steps", "--seed", "--lr",
                         "--data", "--json", "--save", "--save-every", "--resume", "--trace",
                         "--dump-gradients", "--keep-last", "--comm-timeout", "--device", "--comm",
                         "--set", "--switch"},
                  {}, {"--force-resume", "--save-on-nan"});
  if (args.has("--switch") && args.has("--steps")) {
    throw UsageError("--steps = " + *args.get("--steps") + " and --switch: give one (the "
                     "schedule of --switch gives the steps of each phase)");
  }
  // SIGINT/SIGTERM: rank 0 says which step was interrupted and the latest checkpoint (installed
  // before MPI starts its threads).
  install_interrupt_handler("run", /*quiet=*/under_mpi_launcher());
  set_interrupt_phase("preparing the run (specs, Plan, parameters)");
  // Under mpirun the world is MPI's; started directly, it is one rank without MPI at all.
  auto comm = exec::built_with_mpi() && under_mpi_launcher() ? exec::make_mpi_comm()
                                                             : exec::make_local_comm();
  const bool lead = comm->rank() == 0;
  set_interrupt_quiet(!lead);
  // A parameter-server strategy: workers and servers (ps_run.hpp); a federated strategy: sites
  // of ranks, FedAvg between them (federated_run.hpp).
  if (!args.has("--switch")) {
    if (const std::optional<int> code = run_if_ps(args, *comm)) return *code;
    if (const std::optional<int> code = run_if_federated(args, *comm)) return *code;
  }

  Training t;
  try {
    t = prepare_training(args, *comm);
  } catch (const ConfigError&) {
    // Every rank validates the same inputs and fails the same way; one of them says so.
    if (lead) throw;
    return kExitConfigError;
  }
  // From here on an error may hit one rank only: it stops the whole world, so no rank waits
  // forever on one that gave up.
  auto fail = [&](const std::exception& e) { abort_world(*comm, e, kExitInternal); };
  try {
    resume(t, args, *comm);
  } catch (const std::exception& e) {
    fail(e);
  }
  // Resumed at --steps with --save: no step to run, the loaded state is written to --save (under
  // another strategy, a checkpoint resharded for it).
  if (t.first_step == t.steps && args.has("--save")) {
    try {
      const std::string to = exec::save_checkpoint(*args.get("--save"), t.steps, *t.plan, *comm,
                                                   t.executor->interpreter(), save_options(t));
      if (lead) {
        std::printf("no step to run: wrote the state of step %d to %s\n", t.steps, to.c_str());
      }
      return kExitOk;
    } catch (const std::exception& e) {
      fail(e);
    }
  }
  if (t.first_step >= t.steps) {
    if (lead) {
      std::fprintf(stderr, "strata run: error: %s = %d: the checkpoint in %s is already at "
                   "step %d; ask for more steps\n",
                   t.schedule ? "--switch: the schedule's steps" : "--steps", t.steps,
                   args.get("--resume")->c_str(), t.first_step);
    }
    return kExitConfigError;
  }
  if (lead) print_banner(t, *comm);
  TrainingResult result;
  try {
    result = train(t, args, *comm);
  } catch (const NonFiniteLoss& e) {
    // Every rank saw the same loss and stopped at the same step; one of them says so.
    if (lead) std::fprintf(stderr, "strata run: error: %s\n", e.what());
    return kExitRuntime;
  } catch (const std::exception& e) {
    fail(e);
  }
  if (lead) report_training(t, result, args, *comm);
  return kExitOk;
}

}  // namespace strata::cli
