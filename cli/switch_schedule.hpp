// Strategy schedules (docs/switching.md): a run that changes its parallel strategy at step
// boundaries, as Hetu 2.0 switches strategies while training. A schedule file lists phases,
// each a strategy (a bundled name, a file relative to the schedule or to the working
// directory, or an inline strategy object) and the number of steps it trains:
//
//   {"name": "dp4-then-tp2",
//    "phases": [{"strategy": "tiny-dp4", "steps": 3},
//               {"strategy": {"name": "tp2-dp2", "tp": 2, "dp": 2, ...}, "steps": 3}]}
//
// `strata simulate --switch FILE` predicts each phase's step and the resharding traffic of each
// switch; `strata run --switch FILE` trains through the phases and reshards the training state
// in memory at each switch.
#pragma once

#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/specs.hpp"
#include "strategies/spec.hpp"

namespace strata::cli {

struct SwitchPhase {
  strategies::StrategySpec strategy;  // with every --set strategy.PATH=VALUE applied
  int steps = 1;
  int first_step = 1;  // the run's step number (1-based) of the phase's first step
};

struct SwitchSchedule {
  std::string name;
  std::string path;  // the schedule file
  std::vector<SwitchPhase> phases;
  int total_steps() const;
};

// Parses schedule JSON; `path` is the file (phase strategies named by a relative path are looked
// for beside it first), `overrides` the --set overrides whose spec is "strategy", applied to
// every phase's strategy. ConfigError naming the field (`switch.phases.1.steps = 0: ...`): no
// phases, steps < 1, a strategy that is neither a name, a file nor an object, a bad strategy.
SwitchSchedule parse_switch_schedule(const json::Json& j, const std::string& path,
                                     const std::vector<Override>& overrides);
SwitchSchedule load_switch_schedule(const std::string& path,
                                    const std::vector<Override>& overrides = {});

// The model, cluster and world of the command line (--model, --cluster, --gpus, --nodes,
// --set) and the schedule of --switch; `inputs.strategy` is the first phase's strategy.
// --strategy with --switch is a usage error (the schedule names the strategies).
struct SwitchInputs {
  Inputs inputs;
  SwitchSchedule schedule;
  // The Inputs of phase i (inputs with that phase's strategy, the model padded for its tp).
  Inputs phase_inputs(std::size_t i) const;
};
SwitchInputs load_switch_inputs(const Args& args);

}  // namespace strata::cli
