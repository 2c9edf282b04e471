// Many child simulations at once, on this machine or across the ranks of an MPI world: the
// engine of `strata sweep` and `strata search` (one SimGrid engine per process, so each point is
// a child `strata simulate`). docs/distributed.md.
//
// Without an MPI launcher (or with one rank) the jobs run on this process's threads, `jobs` at a
// time. Under `mpirun -np N` (or srun) rank 0 runs the command and coordinates: it hands each
// job to whichever rank has a free slot (its own threads included), so long jobs do not hold
// back the rest, and writes every job's files into the job's folder on rank 0; the other ranks
// only serve (farm_serve), each running its share in a temporary folder and sending the files
// back. A rank that sends nothing for rank_timeout_s (heartbeats go every second) is lost: its
// jobs go back to the queue for another rank (at most max_attempts tries each) and the loss is
// reported; when rank 0 itself is silent that long, the serving ranks end the world. Results do
// not depend on which rank ran a job.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace strata::exec {
class Messenger;
}
namespace strata::strategies {
struct ModelSpec;
struct StrategySpec;
}

namespace strata::cli {

struct FarmJob {
  // The child's command line; "{dir}" at the start of a word stands for the job's folder.
  std::vector<std::string> argv;
  // Files written into the folder before the child starts (name, contents).
  std::vector<std::pair<std::string, std::string>> inputs;
  // The job's folder on rank 0 (it exists): where the child's files end, log.txt among them
  // (its first line "$ <command line>", then the child's stdout and stderr).
  std::string dir;
  // A relative estimate of the child's time (simulation_cost): the costliest jobs are handed
  // out first, so that a long one does not start last and hold up the end (equal costs keep
  // their order). Outcomes stay in the jobs' order.
  double cost = 0;
};

struct FarmOutcome {
  int exit_code = -1;  // the child's (128 + signal when killed); -1: not started
  double started_s = 0;  // when the last attempt was handed out, from the start of farm_run
  double seconds = 0;    // the child's wall time (the last attempt)
  int rank = 0;        // the rank that ran it (the last attempt)
  int attempts = 0;
  std::string lost;    // when no attempt finished: why (exit_code is then kExitRuntime)
};

struct FarmOptions {
  std::string command;              // "sweep": for messages
  std::optional<int> jobs;          // per rank; default: the host's cores / its ranks
  double rank_timeout_s = 60;
  int max_attempts = 3;
};

// --jobs N and --rank-timeout S of sweep and search (ConfigError for bad values).
class Args;
FarmOptions farm_options(const Args& args, const std::string& command);

// Called on rank 0 once per job, serialised, after its files are in its folder.
using FarmDone = std::function<void(std::size_t, const FarmOutcome&)>;
// Called on rank 0 before a job starts; false leaves it not started (exit_code -1).
using FarmMayStart = std::function<bool(std::size_t)>;

// How long a simulation of `strategy` takes, relatively: the micro-batches of a step times the
// layers (each micro-batch crosses each layer forward and backward; data- and tensor-parallel
// peers are folded into one rank, so neither counts).
double simulation_cost(const strategies::ModelSpec& model,
                       const strategies::StrategySpec& strategy);

// Runs every job; returns their outcomes in order.
std::vector<FarmOutcome> farm_run(const std::vector<FarmJob>& jobs, const FarmOptions& options,
                                  const FarmMayStart& may_start, const FarmDone& done);

// The number of ranks farm_run spreads over (1 without a world).
int farm_ranks();

// main(): rank 0 of a world of several ranks gives it here before running the command...
void farm_attach(std::unique_ptr<exec::Messenger> world);
// ...and ends it after, with the command's exit code: the other ranks are told to stop; when a
// rank was lost this ends the world (MPI_Abort with `code`), since MPI_Finalize would wait for
// the lost rank forever. Returns otherwise.
void farm_detach(int code);
// Every other rank: serves jobs until rank 0 says stop; returns the process's exit code. Rank 0
// sends a heartbeat every second from farm_attach on: when it is silent for rank0_timeout_s
// (it died, or hangs), this rank ends the world (MPI_Abort) rather than wait forever.
int farm_serve(std::unique_ptr<exec::Messenger> world, double rank0_timeout_s);
// rank0_timeout_s of a serving rank: the command line's --rank-timeout S (its value, as rank 0
// reads it; rank 0 refuses a bad one and stops everyone), else the default.
double farm_serve_timeout(const std::vector<std::string>& args);

// DIR/timing.csv: per job its label, rank, attempts, started_s, seconds and why it was lost:
// where, when and how long each job ran, for the scaling estimate of docs/distributed.md.
std::string farm_timing_csv(const std::vector<std::string>& labels,
                            const std::vector<FarmOutcome>& outcomes);

}  // namespace strata::cli
