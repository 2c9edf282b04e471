// Parameter-server strategies on the command line (docs/parameter-server.md): the traffic of the
// inputs, a recommendation model's worker compute time, `strata plan`'s summary, and the
// report document of a recommendation model's `strata simulate`. No SimGrid here; the
// simulation itself runs from simulate_command.cpp in a child process.
#pragma once

#include <string>

#include "cli/args.hpp"
#include "cli/specs.hpp"
#include "profiler/cost_model.hpp"
#include "profiler/efficiency.hpp"
#include "strategies/plan.hpp"
#include "strategies/ps.hpp"

namespace strata::cli {

// The bytes per worker step and server of the inputs' ps strategy: the world is checked (dp =
// workers = the GPUs used), a GPT is validated against the strategy and a recommendation
// model's global batch must split evenly over the workers (ConfigError otherwise).
strategies::PsTraffic ps_traffic_of(const Inputs& in);

// A worker's seconds per step, and how they were derived (report.json's compute_source).
struct WorkerCompute {
  double seconds = 0;
  std::string source;
};
// A recommendation model's worker step from a roofline (docs/parameter-server.md "Worker
// compute"): the MLP's 6 x params x batch FLOPs at the device's peak in the strategy's
// precision times the gemm efficiency (2/6 forward, 4/6 backward efficiency), plus the
// embedding's gather and scatter (batch x F x d fp32 elements read and written each way) at
// its memory bandwidth times the embedding efficiency. The first worker's device prices it.
WorkerCompute rec_worker_compute(const Inputs& in, const profiler::Efficiencies& efficiencies);

// A GPT worker's strategy: the ps strategy with dp = 1, global batch / dp and no ps block,
// lowered on one GPU (its simulated step is the worker's compute).
Inputs one_worker_inputs(const Inputs& in);

// The seconds `cost` gives the optimizer tasks of a one-worker Plan (rank 0's program): the
// local optimizer step that parameter-server training moves to the servers, subtracted from the
// worker's simulated step (with dp = 1 they end the step, on its critical path).
double optimizer_seconds(const strategies::Plan& one_worker, const profiler::CostModel& cost);

// `strata plan` of a ps strategy: the servers, what each holds and what a worker step moves.
json::Json ps_plan_summary(const Inputs& in, const strategies::PsTraffic& traffic);
std::string render_ps_plan_summary(const json::Json& summary);

// The provenance of inputs with a recommendation model (Strata's version, the specs' hashes and
// the overrides), for its report.json and run.json.
strategies::Provenance rec_provenance(const Inputs& in);

// report.json of a recommendation model's `strata simulate` (kind "strata.ps_report", schema
// version 1): the specs' names, provenance and the "ps" section; there is no Plan step.
json::Json rec_ps_report(const Inputs& in, const json::Json& ps_section);

}  // namespace strata::cli
