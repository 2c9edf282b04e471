// `strata plan`: load specs, lower to a Plan, print the summary (text or JSON), optionally write
// plan.json. Nothing is written unless the whole command succeeds.
#include <iostream>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "cli/ps.hpp"
#include "cli/specs.hpp"
#include "common/error.hpp"
#include "results/plan_summary.hpp"
#include "strategies/plan_json.hpp"

namespace strata::cli {

const char* const kPlanHelp = R"(Usage: strata plan --model M --cluster C --strategy S [options]

Lower a model, a cluster and a parallel strategy to a Plan and print its summary.

Required:
  --model M          model spec: a JSON file (ours or a Hugging Face config.json), or the name
                     of a bundled one in configs/models/ (e.g. gpt3-175b, llama2-7b,
                     mixtral-8x7b: mixture of experts, with the strategy's ep)
  --cluster C        cluster spec file or bundled name (e.g. dgx-a100-128n, dgx-h100-128n)
  --strategy S       strategy spec file or bundled name (e.g. gpt3-175b-tp8-pp8-dp16)

Options:
  --gpus N           world size: use the first N GPUs of the cluster (default: all of them);
                     must equal dp*tp*pp*cp of the strategy
  --nodes N          rescale a uniform cluster to N nodes before planning
  --set PATH=VALUE   override a spec field, e.g. --set strategy.tp=4 (repeatable; checked like
                     the file; docs/specs.md "Overriding fields: --set")
  --out FILE         write the full Plan (every program's tasks, ops and buffers) as JSON;
                     '-' writes it to stdout
  --json [FILE]      print the summary as JSON instead of text (to FILE, or stdout)
  --ignore-memory    exit 0 even when a rank's peak memory exceeds its device memory
  --quiet            no progress line while lowering (shown on stderr only when it is a
                     terminal)
  --help             show this help

Outputs are checked before any work (none may be an input or share another output's path;
their directories must be writable) and written all or none: a failure leaves none of them.

The summary lists the world size and groups, tasks per kind, FLOPs per step (model FLOPs and
hardware FLOPs including recomputation), bytes per collective kind and purpose, and the peak
memory of every pipeline stage (parameters, gradients, optimizer states, activations) against
the device's capacity. A strategy that does not fit prints the per-stage numbers and exits 3.

A parameter-server strategy (strategy.ps; docs/parameter-server.md), with a GPT or a
recommendation model (family "recommendation"), prints the servers instead: the parameters each
holds and the bytes a worker step pulls and pushes (--json: that summary; --out: refused, there
is no Plan).

Exit codes: 0 success, 1 invalid input, 2 usage error, 3 does not fit in memory, 4 runtime
failure, 70 internal error (the table: strata --help, cli/README.md).
)";

int plan_command(const std::vector<std::string>& argv) {
  if (asks_for_help(argv)) {
    std::cout << kPlanHelp;
    return kExitOk;
  }
  const Args args(argv, spec_flags_and({"--out"}), {"--json"}, {"--ignore-memory", "--quiet"});
  check_paths(spec_inputs(args), flag_paths(args, {"--out", "--json"}));
  Progress progress("plan", args.has("--quiet"));
  progress.phase("lowering the specs to a Plan");
  const Inputs in = load_inputs(args, nullptr, true);
  if (in.strategy.ps) {
    if (args.has("--out")) {
      throw UsageError("--out writes a Plan; parameter-server strategy '" + in.strategy.name +
                       "' has a PS task graph instead (strata simulate runs it)");
    }
    const json::Json summary = ps_plan_summary(in, ps_traffic_of(in));
    progress.clear();
    if (const auto path = args.get("--json")) {
      write_outputs({{"--json", *path, summary.dump(2) + "\n"}});
    } else {
      std::cout << render_ps_plan_summary(summary);
    }
    return kExitOk;
  }
  const strategies::Plan plan = lower_inputs(in, in.world_size);
  progress.clear();
  const json::Json summary = strategies::plan_summary(plan);
  const int over = strategies::first_rank_over_capacity(plan);
  const bool ok = over < 0 || args.has("--ignore-memory");

  std::vector<Output> outputs;
  if (const auto path = args.get("--out"); path && ok) {
    outputs.push_back({"--out", *path, strategies::plan_to_json(plan).dump() + "\n"});
  }
  // A summary that says "does not fit" still goes to stdout; a file is written only on success.
  if (const auto path = args.get("--json"); path && (ok || *path == "-")) {
    outputs.push_back({"--json", *path, summary.dump(2) + "\n"});
  }
  write_outputs(outputs);
  if (!args.has("--json")) std::cout << results::render_plan_summary(summary);
  if (over >= 0) {
    std::cerr << "strata plan: " << (ok ? "warning" : "error") << ": " << over_capacity(plan, over)
              << "; reduce memory (recompute, ZeRO, more tp/pp) or pass --ignore-memory\n";
  }
  return ok ? kExitOk : kExitOutOfMemory;
}

}  // namespace strata::cli
