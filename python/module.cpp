// _strata: the C++ side of the Python package `strata` (python/strata/, docs/python.md): specs
// given as paths, bundled names or JSON text are loaded by cli/specs.hpp exactly as the command
// line loads them and lowered to the Plan summary `strata plan --json` prints (or the whole
// plan.json of `strata plan --out`), and a sweep's inputs checked. No SimGrid here:
// simulations run in a child `strata simulate` (python/strata/__init__.py). Strata's errors
// raise strata.errors' classes, which parse the field, value and rule from the message.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "cli/ps.hpp"
#include "cli/specs.hpp"
#include "common/error.hpp"
#include "common/json.hpp"
#include "common/version.hpp"
#include "strategies/plan_json.hpp"

namespace py = pybind11;

namespace {

using strata::cli::SpecSource;

// A spec as Python passes it: (arg, JSON text or None). With JSON text, `arg` labels it.
using PySpec = std::pair<std::string, std::optional<std::string>>;

SpecSource source(const PySpec& spec) {
  SpecSource s{spec.first, std::nullopt};
  if (spec.second) s.spec = strata::json::parse(*spec.second, spec.first);
  return s;
}

strata::cli::SpecRequest request_of(const PySpec& model, const PySpec& cluster,
                                    const PySpec& strategy,
                                    const std::vector<std::string>& overrides,
                                    std::optional<int> gpus, std::optional<int> nodes) {
  return {source(model), source(cluster), source(strategy), overrides, gpus, nodes};
}

// As plan and simulate load them: a recommendation model too (with a ps strategy).
strata::cli::Inputs load(const PySpec& model, const PySpec& cluster, const PySpec& strategy,
                         const std::vector<std::string>& overrides, std::optional<int> gpus,
                         std::optional<int> nodes) {
  return strata::cli::load_inputs(request_of(model, cluster, strategy, overrides, gpus, nodes),
                                  true);
}

// The summary `strata plan --json` prints for the same inputs, as JSON text: the Plan's, or a
// parameter-server strategy's servers (cli/plan_command.cpp makes the same choice).
std::string plan_summary(const PySpec& model, const PySpec& cluster, const PySpec& strategy,
                         const std::vector<std::string>& overrides, std::optional<int> gpus,
                         std::optional<int> nodes) {
  const strata::cli::Inputs in = load(model, cluster, strategy, overrides, gpus, nodes);
  if (in.strategy.ps) {
    return strata::cli::ps_plan_summary(in, strata::cli::ps_traffic_of(in)).dump(2);
  }
  return strata::strategies::plan_summary(strata::cli::lower_inputs(in, in.world_size)).dump(2);
}

// The full plan.json `strata plan --out` writes for the same inputs, as JSON text (written even
// when a rank is over its memory: plan() returns what does not fit too, with the summary's
// memory "fits" false). A parameter-server strategy has no Plan: UsageError, as for --out.
std::string plan_json(const PySpec& model, const PySpec& cluster, const PySpec& strategy,
                      const std::vector<std::string>& overrides, std::optional<int> gpus,
                      std::optional<int> nodes) {
  const strata::cli::Inputs in = load(model, cluster, strategy, overrides, gpus, nodes);
  if (in.strategy.ps) {
    throw strata::UsageError("programs=True returns a Plan; parameter-server strategy '" +
                             in.strategy.name +
                             "' has none (plan() without programs gives "
                             "its servers)");
  }
  return strata::strategies::plan_to_json(strata::cli::lower_inputs(in, in.world_size)).dump();
}

// The GPUs a strategy fills, dp*tp*pp*cp, after the overrides: `strata sweep`'s world of a point
// without --gpus (cli/sweep_command.cpp loads it the same way: no recommendation model).
int strategy_world(const PySpec& model, const PySpec& cluster, const PySpec& strategy,
                   const std::vector<std::string>& overrides, std::optional<int> gpus,
                   std::optional<int> nodes) {
  return strata::cli::load_inputs(request_of(model, cluster, strategy, overrides, gpus, nodes))
      .strategy.world_size();
}

// What `strata sweep` checks before any point (cli/sweep_command.cpp): the base specs load, the
// strategy is not a parameter server, and each varied path, set to its first value, names a
// field the specs have ("--vary PATH: ..." otherwise). `probes`: "PATH=FIRST" per varied path.
void check_sweep(const PySpec& model, const PySpec& cluster, const PySpec& strategy,
                 const std::vector<std::string>& overrides, std::optional<int> gpus,
                 std::optional<int> nodes, const std::vector<std::string>& probes) {
  const strata::cli::SpecRequest request =
      request_of(model, cluster, strategy, overrides, gpus, nodes);
  strata::cli::refuse_ps(strata::cli::load_inputs(request).strategy, "sweep");
  for (const std::string& probe : probes) {
    strata::cli::SpecRequest one = request;
    one.overrides.push_back(probe);
    try {
      strata::cli::load_inputs(one);
    } catch (const strata::ConfigError& e) {
      const std::string m = e.what();
      if (m.find("unknown key") != std::string::npos || m.rfind("--set ", 0) == 0) {
        throw strata::ConfigError("--vary " + probe.substr(0, probe.find('=')) + ": " + m);
      }
    }
  }
}

// Loads the specs and checks the world size (but for a parameter-server strategy, whose world
// the simulation checks), as `strata simulate` does first: simulate() calls it before starting
// the child, so that a dict's errors name the dict, not a temporary file.
void check_specs(const PySpec& model, const PySpec& cluster, const PySpec& strategy,
                 const std::vector<std::string>& overrides, std::optional<int> gpus,
                 std::optional<int> nodes) {
  const strata::cli::Inputs in = load(model, cluster, strategy, overrides, gpus, nodes);
  if (!in.strategy.ps) strata::cli::check_world_size(in, in.world_size);
}

// Sets the Python error to strata.errors.<name>(message).
void raise_python(const char* name, const char* message) {
  const py::object cls = py::module_::import("strata.errors").attr(name);
  const py::object error = cls(message);
  PyErr_SetObject(cls.ptr(), error.ptr());
}

}  // namespace

PYBIND11_MODULE(_strata, m) {
  m.doc() = "Strata's spec loading and lowering (use the package strata, not this module)";
  // Lowering releases the GIL: threads of a notebook may plan in parallel.
  const auto specs = [](py::module_& mod, const char* name, auto function, const char* doc) {
    mod.def(name, function, py::arg("model"), py::arg("cluster"), py::arg("strategy"),
            py::arg("overrides"), py::arg("gpus"), py::arg("nodes"),
            py::call_guard<py::gil_scoped_release>(), doc);
  };
  specs(m, "plan_summary", &plan_summary, "The Plan summary of `strata plan --json`, as JSON");
  specs(m, "check_specs", &check_specs, "Loads the specs; raises what `strata simulate` would");
  specs(m, "plan_json", &plan_json, "The full plan.json of `strata plan --out`, as JSON");
  specs(m, "strategy_world", &strategy_world, "dp*tp*pp*cp of the strategy after the overrides");
  m.def("check_sweep", &check_sweep, py::arg("model"), py::arg("cluster"), py::arg("strategy"),
        py::arg("overrides"), py::arg("gpus"), py::arg("nodes"), py::arg("probes"),
        py::call_guard<py::gil_scoped_release>(), "Raises what `strata sweep` checks first");
  m.def("config_dir", &strata::cli::config_dir, "The folder of the bundled specs");
  m.def("version", &strata::version, "Strata's version (git describe)");
  // Most derived first: UsageError and DoesNotFitError are ConfigErrors.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const strata::UsageError& e) {
      raise_python("UsageError", e.what());
    } catch (const strata::DoesNotFitError& e) {
      raise_python("DoesNotFitError", e.what());
    } catch (const strata::ConfigError& e) {
      raise_python("ConfigError", e.what());
    } catch (const strata::RuntimeFailure& e) {
      raise_python("RuntimeFailure", e.what());
    }
  });
}
