// Hot switching in the simulator (docs/switching.md): the cost of moving the training state
// from one Plan's layout to another's, and the span of a strategy schedule's phases and
// switches that `strata simulate --switch` reports (table and report.json's "switching").
//
// defines: SwitchCost, simulate_switch(), PhaseTime, SwitchingReport, switching_to_json(),
//          render_switching()
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "profiler/cost_model.hpp"
#include "strategies/plan.hpp"

namespace strata::cli {

// One switch: strategies::switch_traffic(a, b) (strategies/switch_traffic.hpp: the source rule)
// and its simulated time.
struct SwitchCost {
  std::string from, to;       // the strategies' names
  double bytes = 0;           // sent over all ranks
  std::size_t transfers = 0;  // (sender, receiver) pairs that move bytes
  double max_send_bytes = 0;  // the largest per-rank send, by rank max_send_rank
  int max_send_rank = 0;
  double max_recv_bytes = 0;  // the largest per-rank receive, by rank max_recv_rank
  int max_recv_rank = 0;
  double seconds = 0;  // simulated: the uneven all-to-all of the byte matrix
};

// The traffic of switching from `a` to `b` (same world), simulated as one uneven all-to-all over
// every rank (sim::time_collectives with the byte matrix; the algorithm the link model chooses,
// nccl-tests' "size" the largest per-rank send) on `a`'s cluster with `cost`'s links, alone on
// the network. The simulation runs in a child process (one SimGrid engine per process): call it
// before this process starts its own. No traffic: 0 s, no simulation.
SwitchCost simulate_switch(const strategies::Plan& a, const strategies::Plan& b,
                           const profiler::CostModel& cost);

// One phase of a schedule: its strategy's simulated step, `steps` times.
struct PhaseTime {
  std::string strategy;
  int steps = 1;
  int first_step = 1;
  double step_time_s = 0;
  double tokens_per_step = 0;  // global batch x sequence length
  double time_s() const { return steps * step_time_s; }
  double tokens_per_s() const { return tokens_per_step / step_time_s; }
};

// A schedule's span: the phases, and switches[i] between phases[i] and phases[i + 1].
struct SwitchingReport {
  std::string schedule;  // its name
  int world_size = 0;
  std::vector<PhaseTime> phases;
  std::vector<SwitchCost> switches;
  int steps() const;
  double tokens() const;
  double time_s() const;  // the phases' steps and the switches
  double tokens_per_s() const { return tokens() / time_s(); }
};

// report.json's "switching" section (keys in docs/switching.md "report.json").
json::Json switching_to_json(const SwitchingReport& r);
// The table `strata simulate --switch` prints.
std::string render_switching(const SwitchingReport& r);

}  // namespace strata::cli
