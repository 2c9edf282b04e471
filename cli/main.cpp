// strata: the command line. Thin glue: parse a subcommand, call the libraries, choose the exit
// code. Library code never exits; errors arrive here as exceptions.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/farm.hpp"
#include "cli/launch.hpp"
#include "common/error.hpp"
#include "common/version.hpp"
#include "executor/comm.hpp"
#include "executor/messenger.hpp"

namespace {

const char* const kHelp = R"(strata - predict and run parallel training strategies

Usage: strata <command> [options]

Commands:
  plan       Lower a model, a cluster and a strategy to a Plan (per-rank programs of ops over
             named tensors that the simulator and the executor both consume) and print its summary: world size,
             groups, tasks, FLOPs per step, bytes per collective, peak memory per rank.
  simulate   Predict one training step on a modelled cluster: replay the Plan in a SimGrid
             discrete-event simulation and report step time, throughput, TFLOP/s per GPU, MFU,
             the pipeline bubble, per-rank time breakdown and memory, and a trace.
  run        Train for real under mpirun: every process is one rank and runs its share of the
             same Plan on the CPU (Eigen kernels, MPI collectives); prints the loss per step
             and tokens/s.
  compare    Join a predicted and a measured trace of the same Plan task by task: the step, the
             idle time, each category of task and the worst-predicted tasks, predicted against
             measured. Given two report.json files: their figures side by side with the
             differences, per pipeline stage.
  sweep      Simulate every combination of a few varied spec fields (--vary strategy.tp=1,2,4),
             one child simulation per point, and write a CSV of their figures and a plot.
  search     Find the fastest strategy for a model on a cluster: a fast estimator ranks every
             strategy of a space (tp, pp, micro-batch, schedule, ZeRO, sp, recompute, buckets,
             per-layer hybrids) under device memory; the best are simulated and re-ranked.
  validate   Close the loop on this machine: profile the Plan's ops and links, simulate it with
             those costs, run it for real under mpirun, and compare the step and every task,
             predicted against measured.
  profile ops
             Time every distinct op of a Plan alone on this machine's CPU (the executor's
             kernels, warm-up apart, rotated inputs) and write profile.json.
  profile links
             Write links.json, the time of collectives over message sizes: measured under
             mpirun through the executor's MPI layer, or imported from nccl-tests output.
  help       Show this help, or `strata help <command>` for a command's options.
  version    Print Strata's version.

Specs are JSON files (docs/specs.md). Each --model/--cluster/--strategy takes a path or the name
of a bundled spec under configs/, for example:

  strata plan --model gpt3-175b --cluster dgx-a100-128n --strategy gpt3-175b-tp8-pp8-dp16

and --set PATH=VALUE changes any field without a new file (--set strategy.tp=4).

Exit codes, the same for every command (cli/README.md):
  0   success
  1   invalid input: a spec, a profile, plan, trace or checkpoint file, or a flag's value; the
      message names the file, the field, the value and the rule broken
  2   usage error: an unknown command or option, a required option or a value missing, a stray
      argument
  3   does not fit: the strategy needs more device memory than a rank has (the message gives
      the per-rank numbers; plan and simulate take --ignore-memory)
  4   runtime failure: valid input, but the work failed while running (a rank, a measurement,
      a child process or an output's write failed, a rank stopped answering, a loss was not
      finite)
  70  internal error: a bug in Strata; please report it with the command line
  130, 143  interrupted by SIGINT or SIGTERM (run and simulate say what was interrupted)
)";

// Runs `command` and turns its exceptions into exit codes.
int dispatch(const std::string& command, const std::vector<std::string>& args) {
  try {
    // Fault injection for the tests of the internal-error path (exit 70), which no valid or
    // invalid input should reach.
    if (std::getenv("STRATA_TEST_INTERNAL_ERROR") != nullptr) {
      throw std::logic_error("STRATA_TEST_INTERNAL_ERROR is set");
    }
    if (command == "version" || command == "--version") {
      std::cout << "strata " << strata::version() << "\n";
      return strata::cli::kExitOk;
    }
    if (command == "help") {
      if (args[0] == "plan") {
        std::cout << strata::cli::kPlanHelp;
        return strata::cli::kExitOk;
      }
      if (args[0] == "run") {
        std::cout << strata::cli::kRunHelp;
        return strata::cli::kExitOk;
      }
      if (args[0] == "compare") {
        std::cout << strata::cli::kCompareHelp;
        return strata::cli::kExitOk;
      }
      if (args[0] == "profile" && args.size() > 1 && args[1] == "ops") {
        std::cout << strata::cli::kProfileOpsHelp;
        return strata::cli::kExitOk;
      }
      if (args[0] == "profile" && args.size() > 1 && args[1] == "links") {
        std::cout << strata::cli::kProfileLinksHelp;
        return strata::cli::kExitOk;
      }
#if STRATA_HAVE_SIMGRID
      if (args[0] == "simulate") {
        std::cout << strata::cli::kSimulateHelp;
        return strata::cli::kExitOk;
      }
      if (args[0] == "validate") {
        std::cout << strata::cli::kValidateHelp;
        return strata::cli::kExitOk;
      }
      if (args[0] == "sweep") {
        std::cout << strata::cli::kSweepHelp;
        return strata::cli::kExitOk;
      }
      if (args[0] == "search") {
        std::cout << strata::cli::kSearchHelp;
        return strata::cli::kExitOk;
      }
#endif
      std::cerr << "strata: no command '" << args[0] << "' (see strata --help)\n";
      return strata::cli::kExitUsage;
    }
    if (command == "plan") return strata::cli::plan_command(args);
    if (command == "run") return strata::cli::run_command(args);
    if (command == "compare") return strata::cli::compare_command(args);
    if (command == "profile") {
      if (!args.empty() && args[0] == "ops") {
        return strata::cli::profile_ops_command({args.begin() + 1, args.end()});
      }
      if (!args.empty() && args[0] == "links") {
        return strata::cli::profile_links_command({args.begin() + 1, args.end()});
      }
      std::cerr << "Usage: strata profile ops|links [options] (see strata profile ops --help, "
                   "strata profile links --help)\n";
      return strata::cli::kExitUsage;
    }
    if (command == "simulate" || command == "validate" || command == "sweep" ||
        command == "search") {
#if STRATA_HAVE_SIMGRID
      if (command == "sweep") return strata::cli::sweep_command(args);
      if (command == "search") return strata::cli::search_command(args);
      return command == "simulate" ? strata::cli::simulate_command(args)
                                   : strata::cli::validate_command(args);
#else
      std::cerr << "strata " << command << ": this build has no simulator (SimGrid was not found or "
                   "STRATA_WITH_SIMGRID=OFF); install libsimgrid-dev and reconfigure\n";
      return strata::cli::kExitUsage;
#endif
    }
    std::cerr << "strata: unknown command '" << command << "' (see strata --help)\n";
    return strata::cli::kExitUsage;
  } catch (const strata::cli::OutputError& e) {
    std::cerr << "strata " << command << ": error: " << e.what() << "\n";
    return strata::cli::kExitRuntime;
  } catch (const strata::UsageError& e) {
    std::cerr << "strata " << command << ": usage error: " << e.what() << "\n";
    return strata::cli::kExitUsage;
  } catch (const strata::DoesNotFitError& e) {
    std::cerr << "strata " << command << ": error: " << e.what() << "\n";
    return strata::cli::kExitOutOfMemory;
  } catch (const strata::ConfigError& e) {
    std::cerr << "strata " << command << ": error: " << e.what() << "\n";
    return strata::cli::kExitConfigError;
  } catch (const strata::RuntimeFailure& e) {
    std::cerr << "strata " << command << ": runtime failure: " << e.what() << "\n";
    return strata::cli::kExitRuntime;
  } catch (const std::exception& e) {
    std::cerr << "strata " << command << ": internal error (a bug in Strata; please report it "
                 "with the command line): " << e.what() << "\n";
    return strata::cli::kExitInternal;
  } catch (...) {
    std::cerr << "strata " << command << ": internal error (a bug in Strata; please report it "
                 "with the command line): an exception of unknown type\n";
    return strata::cli::kExitInternal;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" ||
      (args[0] == "help" && args.size() == 1)) {
    std::cout << kHelp;
    return args.empty() ? strata::cli::kExitUsage : strata::cli::kExitOk;
  }
  const std::string command = args[0];
  args.erase(args.begin());
#if STRATA_HAVE_SIMGRID
  // sweep and search under an MPI launcher (docs/distributed.md): rank 0 runs the command and
  // hands its simulations to every rank; the others only serve them.
  if ((command == "sweep" || command == "search") && strata::cli::under_mpi_launcher() &&
      strata::exec::built_with_mpi() && !strata::cli::asks_for_help(args)) {
    std::unique_ptr<strata::exec::Messenger> world;
    try {
      world = strata::exec::make_mpi_messenger();
    } catch (const std::exception& e) {
      std::cerr << "strata " << command << ": runtime failure: " << e.what() << "\n";
      return strata::cli::kExitRuntime;
    }
    if (world->size() > 1) {
      if (world->rank() != 0) {
        return strata::cli::farm_serve(std::move(world), strata::cli::farm_serve_timeout(args));
      }
      strata::cli::farm_attach(std::move(world));
      const int code = dispatch(command, args);
      strata::cli::farm_detach(code);
      return code;
    }
  }
#endif
  return dispatch(command, args);
}
