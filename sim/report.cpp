// report.json, the report table and trace.json.
#include "sim/report.hpp"

#include <sstream>

#include "common/units.hpp"
#include "strategies/plan_json.hpp"

namespace strata::sim {

using strategies::Plan;
using strategies::Task;
using strategies::TaskKind;

json::Json report_to_json(const Report& r, const Plan& plan) {
  json::Json j;
  j["schema_version"] = kReportSchemaVersion;
  j["kind"] = "strata.report";
  j["provenance"] = strategies::provenance_to_json(r.provenance);
  j["model"] = r.model;
  j["cluster"] = r.cluster;
  j["strategy"] = r.strategy;
  j["world_size"] = r.world_size;
  j["global_batch_size"] = plan.strategy.global_batch_size;
  j["seq_length"] = plan.model.seq_length;
  j["step_time_s"] = r.step_time_s;
  j["tokens_per_s"] = r.tokens_per_s;
  j["tflops_per_gpu"] = r.tflops_per_gpu;
  j["hardware_tflops_per_gpu"] = r.hardware_tflops_per_gpu;
  j["mfu"] = r.mfu;
  j["bubble_fraction"] = r.bubble_fraction;
  j["fits"] = r.fits;
  j["simulation"] = {{"cost_model", r.cost_model},
                     {"simulated_ranks", r.simulated_ranks},
                     {"simgrid_activities", r.events},
                     {"fold_data_parallel", r.options.fold_data_parallel},
                     {"fold_tensor_parallel", r.options.fold_tensor_parallel},
                     {"aggregate_ring_steps", r.options.aggregate_ring_steps},
                     {"speed_factors", r.options.speed_factors}};
  json::Json ranks = json::Json::array();
  for (std::size_t i = 0; i < r.ranks.size(); ++i) {
    const RankTimes& t = r.ranks[i];
    ranks.push_back({{"rank", i},
                     {"stage", plan.stage_of(static_cast<int>(i))},
                     {"compute_s", t.compute_s},
                     {"communication_s", t.communication_s},
                     {"exposed_communication_s", t.exposed_comm_s},
                     {"idle_s", t.idle_s},
                     {"peak_memory_bytes", t.peak_memory_bytes},
                     {"capacity_bytes", t.capacity_bytes},
                     {"fits", t.peak_memory_bytes <= t.capacity_bytes}});
  }
  j["ranks"] = std::move(ranks);
  return j;
}

std::string render_report(const Report& r, const Plan& plan) {
  using units::fixed;
  std::ostringstream os;
  os << "Strata simulation: " << r.model << " on " << r.cluster << " (" << r.world_size
     << " GPUs), strategy " << r.strategy << "\n";
  os << "  step time          " << fixed(r.step_time_s, 4) << " s\n";
  os << "  throughput         " << fixed(r.tokens_per_s, 0) << " tokens/s\n";
  os << "  TFLOP/s per GPU    " << fixed(r.tflops_per_gpu, 1) << " model, "
     << fixed(r.hardware_tflops_per_gpu, 1) << " hardware (with recompute)\n";
  os << "  MFU                " << fixed(100 * r.mfu, 1) << " %\n";
  os << "  bubble             " << fixed(100 * r.bubble_fraction, 1) << " % of the step idle\n";
  os << "  memory             " << (r.fits ? "fits" : "DOES NOT FIT") << "\n";
  os << "  per pipeline stage (its first rank)\n";
  os << "    stage   compute_s    comm_s  exposed_s    idle_s    peak memory\n";
  for (int stage = 0; stage < plan.strategy.pp; ++stage) {
    for (int rank = 0; rank < r.world_size; ++rank) {
      if (plan.stage_of(rank) != stage) continue;
      const RankTimes& t = r.ranks[rank];
      char line[160];
      std::snprintf(line, sizeof line, "    %-5d %11.4f %9.4f %10.4f %9.4f %14s\n", stage,
                    t.compute_s, t.communication_s, t.exposed_comm_s, t.idle_s,
                    units::format_bytes(t.peak_memory_bytes).c_str());
      os << line;
      break;
    }
  }
  return os.str();
}

json::Json trace_to_json(const Report& r, const Plan& plan) {
  return strategies::trace_to_json(plan, r.spans,
                                   {{"schema_version", kReportSchemaVersion},
                                    {"kind", "strata.trace"},
                                    {"source", "simulated"},
                                    {"provenance", strategies::provenance_to_json(r.provenance)}});
}

}  // namespace strata::sim
