// Strategy schedules; see switch_schedule.hpp and docs/switching.md.
#include "cli/switch_schedule.hpp"

#include <filesystem>
#include <numeric>
#include <utility>

#include "common/error.hpp"
#include "common/json.hpp"

namespace strata::cli {

namespace fs = std::filesystem;

int SwitchSchedule::total_steps() const {
  int total = 0;
  for (const SwitchPhase& p : phases) total += p.steps;
  return total;
}

namespace {

// A phase's strategy JSON: inline, or the file a string names (beside the schedule first,
// then as --strategy resolves it: a path, or a bundled name).
json::Json phase_strategy_json(const json::Json& value, const std::string& field,
                               const std::string& path, std::string* origin) {
  if (value.is_object()) {
    *origin = path + " (" + field + ")";
    return value;
  }
  if (!value.is_string() || value.get<std::string>().empty()) {
    json::fail(field, value, "must be a strategy: a bundled name, a file or a strategy object");
  }
  const std::string ref = value.get<std::string>();
  const fs::path beside = fs::path(path).parent_path() / ref;
  if (fs::path(ref).is_relative() && ref.find('/') != std::string::npos &&
      fs::is_regular_file(beside)) {
    *origin = beside.string();
  } else {
    try {
      *origin = resolve_spec("strategies", field, ref);
    } catch (const ConfigError& e) {
      throw ConfigError(path + ": " + e.what());
    }
  }
  return json::parse_file(*origin);
}

}  // namespace

SwitchSchedule parse_switch_schedule(const json::Json& j, const std::string& path,
                                     const std::vector<Override>& overrides) {
  SwitchSchedule out;
  out.path = path;
  if (!j.is_object()) json::fail("switch", j, "must be an object with \"phases\"");
  json::ObjectReader r(j, "switch");
  out.name = r.get_string_or("name", fs::path(path).stem().string());
  const json::Json& phases = r.get_raw("phases");
  if (!phases.is_array() || phases.empty()) {
    json::fail("switch.phases", phases, "must be a non-empty list of {strategy, steps}");
  }
  r.finish({"name", "phases", "source"});
  int next_step = 1;
  for (std::size_t i = 0; i < phases.size(); ++i) {
    const std::string at = "switch.phases." + std::to_string(i);
    if (!phases[i].is_object()) json::fail(at, phases[i], "must be an object {strategy, steps}");
    json::ObjectReader pr(phases[i], at);
    SwitchPhase phase;
    const long long steps = pr.get_int("steps");
    if (steps < 1 || steps > 1000000000) {
      json::fail(at + ".steps", phases[i]["steps"], "must be a whole number of steps >= 1");
    }
    phase.steps = static_cast<int>(steps);
    std::string origin;
    json::Json sj = phase_strategy_json(pr.get_raw("strategy"), at + ".strategy", path, &origin);
    pr.finish({"strategy", "steps"});
    std::vector<std::string> applied;
    for (const Override& o : overrides) {
      if (o.spec != "strategy") continue;
      apply_override(sj, o);
      applied.push_back(o.text);
    }
    try {
      phase.strategy = strategies::parse_strategy(sj, "strategy");
    } catch (const ConfigError& e) {
      std::string with;
      for (const std::string& a : applied) with += (with.empty() ? " with --set " : ", ") + a;
      throw ConfigError(path + ": " + at + ": " + origin + with + ": " + e.what());
    }
    phase.first_step = next_step;
    next_step += phase.steps;
    out.phases.push_back(std::move(phase));
  }
  return out;
}

SwitchSchedule load_switch_schedule(const std::string& path,
                                    const std::vector<Override>& overrides) {
  if (!fs::is_regular_file(path)) {
    throw ConfigError("--switch = " + path + ": no such file (a strategy schedule: "
                      "docs/switching.md)");
  }
  return parse_switch_schedule(json::parse_file(path), path, overrides);
}

Inputs SwitchInputs::phase_inputs(std::size_t i) const {
  Inputs in = inputs;
  in.strategy = schedule.phases.at(i).strategy;
  return in;
}

SwitchInputs load_switch_inputs(const Args& args) {
  if (args.has("--strategy")) {
    throw UsageError("--strategy and --switch: give one (the schedule of --switch names the "
                     "strategies of its phases)");
  }
  std::vector<Override> overrides;
  for (const std::string& text : args.get_all("--set")) overrides.push_back(parse_override(text));
  SwitchInputs out;
  out.schedule = load_switch_schedule(args.require("--switch"), overrides);
  // The model loads as for one strategy (with the first phase's strategy as the default), then
  // its vocabulary is padded for every phase's tp, so all phases train the same tensors.
  const json::Json first = strategies::to_json(out.schedule.phases.front().strategy);
  out.inputs = load_inputs(args, &first);
  int tp = 1;
  for (const SwitchPhase& p : out.schedule.phases) tp = std::lcm(tp, p.strategy.tp);
  out.inputs.model = strategies::padded_for_tp(out.inputs.model, tp);
  out.inputs.strategy = out.schedule.phases.front().strategy;
  // Both `simulate --switch` and `run --switch` read the schedule here.
  for (const SwitchPhase& p : out.schedule.phases) {
    refuse_federated(p.strategy, "simulate --switch` and `strata run --switch");
  }
  return out;
}

}  // namespace strata::cli
