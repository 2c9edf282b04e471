// Hot switching in the simulator; see switching.hpp and docs/switching.md.
#include "cli/switching.hpp"

#include <cstdio>
#include <numeric>
#include <sstream>

#include "cli/child_process.hpp"
#include "common/units.hpp"
#include "sim/simulate.hpp"
#include "strategies/switch_traffic.hpp"

namespace strata::cli {

SwitchCost simulate_switch(const strategies::Plan& a, const strategies::Plan& b,
                           const profiler::CostModel& cost) {
  const strategies::SwitchTraffic t = strategies::switch_traffic(a, b);
  SwitchCost c;
  c.from = a.strategy.name;
  c.to = b.strategy.name;
  c.bytes = t.total_bytes;
  c.transfers = t.entries.size();
  c.max_send_bytes = t.max_send_bytes();
  c.max_send_rank = t.max_send_rank;
  c.max_recv_bytes = t.max_recv_bytes();
  c.max_recv_rank = t.max_recv_rank;
  if (t.entries.empty()) return c;
  sim::CollectiveRequest request;
  request.kind = strategies::CollectiveKind::kAllToAll;
  request.ranks.resize(static_cast<std::size_t>(a.world_size));
  std::iota(request.ranks.begin(), request.ranks.end(), 0);
  request.bytes = c.max_send_bytes;
  request.matrix = t.matrix();
  c.seconds = numbers_in_child("the simulation of the switch " + c.from + " -> " + c.to, [&] {
                return sim::time_collectives(a.cluster, a.world_size, {request}, cost);
              }).at(0);
  return c;
}

int SwitchingReport::steps() const {
  int n = 0;
  for (const PhaseTime& p : phases) n += p.steps;
  return n;
}

double SwitchingReport::tokens() const {
  double n = 0;
  for (const PhaseTime& p : phases) n += p.steps * p.tokens_per_step;
  return n;
}

double SwitchingReport::time_s() const {
  double s = 0;
  for (const PhaseTime& p : phases) s += p.time_s();
  for (const SwitchCost& c : switches) s += c.seconds;
  return s;
}

json::Json switching_to_json(const SwitchingReport& r) {
  json::Json phases = json::Json::array(), switches = json::Json::array();
  for (const PhaseTime& p : r.phases) {
    phases.push_back({{"strategy", p.strategy},
                      {"steps", p.steps},
                      {"first_step", p.first_step},
                      {"step_time_s", p.step_time_s},
                      {"time_s", p.time_s()},
                      {"tokens_per_step", p.tokens_per_step},
                      {"tokens_per_s", p.tokens_per_s()}});
  }
  for (std::size_t i = 0; i < r.switches.size(); ++i) {
    const SwitchCost& c = r.switches[i];
    switches.push_back({{"from", c.from},
                        {"to", c.to},
                        {"after_step", r.phases[i + 1].first_step - 1},
                        {"bytes", c.bytes},
                        {"transfers", c.transfers},
                        {"max_send_bytes", c.max_send_bytes},
                        {"max_send_rank", c.max_send_rank},
                        {"max_recv_bytes", c.max_recv_bytes},
                        {"max_recv_rank", c.max_recv_rank},
                        {"time_s", c.seconds}});
  }
  return {{"schedule", r.schedule},      {"world_size", r.world_size},
          {"phases", std::move(phases)}, {"switches", std::move(switches)},
          {"steps", r.steps()},          {"tokens", r.tokens()},
          {"time_s", r.time_s()},        {"tokens_per_s", r.tokens_per_s()}};
}

std::string render_switching(const SwitchingReport& r) {
  using units::fixed;
  using units::format_bytes;
  std::ostringstream os;
  char line[256];
  os << "Strategy schedule " << r.schedule << " (" << r.world_size << " GPUs, " << r.steps()
     << " steps)\n";
  os << "  phase   steps      step_s       phase_s      tokens/s  strategy\n";
  for (std::size_t i = 0; i < r.phases.size(); ++i) {
    const PhaseTime& p = r.phases[i];
    std::snprintf(line, sizeof line, "  %-5zu %7d %11.4f %13.4f %13.0f  %s\n", i, p.steps,
                  p.step_time_s, p.time_s(), p.tokens_per_s(), p.strategy.c_str());
    os << line;
  }
  if (!r.switches.empty()) {
    os << "  switch  after_step   bytes moved   largest send (rank)   simulated_s  from -> to\n";
  }
  for (std::size_t i = 0; i < r.switches.size(); ++i) {
    const SwitchCost& c = r.switches[i];
    const std::string largest =
        format_bytes(c.max_send_bytes) + " (" + std::to_string(c.max_send_rank) + ")";
    std::snprintf(line, sizeof line, "  %-6zu %11d %13s %21s %13.6f  %s -> %s\n", i,
                  r.phases[i + 1].first_step - 1, format_bytes(c.bytes).c_str(), largest.c_str(),
                  c.seconds, c.from.c_str(), c.to.c_str());
    os << line;
  }
  os << "  span: " << fixed(r.time_s(), 4) << " s (switches included), "
     << fixed(r.tokens_per_s(), 0) << " tokens/s\n";
  return os.str();
}

}  // namespace strata::cli
