// _strata: the C++ side of the Python package `strata` (python/strata/, docs/python.md): specs
// given as paths, bundled names or JSON text are loaded by cli/specs.hpp exactly as the command
// line loads them and lowered to the Plan summary `strata plan --json` prints. No SimGrid here:
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

strata::cli::Inputs load(const PySpec& model, const PySpec& cluster, const PySpec& strategy,
                         const std::vector<std::string>& overrides, std::optional<int> gpus,
                         std::optional<int> nodes) {
  const strata::cli::SpecRequest request{
      source(model), source(cluster), source(strategy), overrides, gpus, nodes};
  return strata::cli::load_inputs(request, true);
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
