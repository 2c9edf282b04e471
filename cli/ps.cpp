// Parameter-server strategies on the command line (ps.hpp).
#include "cli/ps.hpp"

#include <iomanip>
#include <sstream>

#include "common/error.hpp"
#include "common/hash.hpp"
#include "common/version.hpp"
#include "strategies/program_json.hpp"

namespace strata::cli {

namespace {

std::string fixed(double v, int digits) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(digits) << v;
  return o.str();
}

}  // namespace

strategies::PsTraffic ps_traffic_of(const Inputs& in) {
  const strategies::StrategySpec& s = in.strategy;
  STRATA_CHECK(s.ps.has_value(), "ps_traffic_of: a ps strategy");
  check_world_size(in, in.world_size);
  if (!in.rec_model) {
    strategies::validate(in.model, s, in.world_size);
    return strategies::gpt_ps_traffic(in.model, s);
  }
  if (s.global_batch_size % s.dp != 0) {
    json::fail("strategy.global_batch_size", s.global_batch_size,
               "must be divisible by dp = " + std::to_string(s.dp) +
                   " (each worker trains an equal share of the batch)");
  }
  return strategies::rec_ps_traffic(*in.rec_model, s);
}

WorkerCompute rec_worker_compute(const Inputs& in, const profiler::Efficiencies& efficiencies) {
  const strategies::RecModelSpec& m = *in.rec_model;
  const strategies::DeviceSpec& device = in.cluster.group_of_gpu(0).gpu;
  const profiler::DeviceClass& dc = efficiencies.device_class(device);
  const strategies::Precision precision = dc.compute_precision.value_or(in.strategy.precision);
  const double peak = device.peak_flops(precision);
  const profiler::OpEfficiency& gemm = dc.op(profiler::OpClass::kGemm);
  const profiler::OpEfficiency& embedding = dc.op(profiler::OpClass::kEmbedding);
  const double batch = static_cast<double>(in.strategy.global_batch_size) / in.strategy.dp;
  const double params = static_cast<double>(strategies::rec_mlp_params(m));
  const double forward_flops = 2 * params * batch;
  // Forward: gather (read the rows, write the activations); backward: the same bytes back.
  const double gather_bytes = 2.0 * batch * m.sparse_features * m.embedding_dim * 4;
  const double bandwidth = device.memory_bandwidth_Bps;
  WorkerCompute c;
  c.seconds = forward_flops / (peak * gemm.flop_forward) +
              2 * forward_flops / (peak * gemm.flop_backward) +
              gather_bytes / (bandwidth * embedding.memory_forward) +
              gather_bytes / (bandwidth * embedding.memory_backward);
  c.source = "roofline: 6 x " + fixed(params / 1e6, 3) + "M MLP params x " + fixed(batch, 0) +
             " samples at " + fixed(peak / 1e12, 1) + " TFLOP/s (" +
             strategies::precision_name(precision) + ") x gemm efficiency " +
             fixed(gemm.flop_forward, 2) + "/" + fixed(gemm.flop_backward, 2) +
             ", embedding gather and scatter of " + fixed(2 * gather_bytes / 1e6, 2) + " MB at " +
             fixed(bandwidth / 1e9, 0) + " GB/s x " + fixed(embedding.memory_forward, 2) + " (" +
             device.name + ")";
  return c;
}

Inputs one_worker_inputs(const Inputs& in) {
  Inputs one = in;
  one.strategy.dp = 1;
  one.strategy.global_batch_size = in.strategy.global_batch_size / in.strategy.dp;
  one.strategy.ps.reset();
  one.world_size = 1;
  return one;
}

double optimizer_seconds(const strategies::Plan& one_worker, const profiler::CostModel& cost) {
  STRATA_CHECK(one_worker.world_size == 1, "optimizer_seconds: a one-worker Plan");
  const strategies::Program& program = one_worker.program_of(0);
  const strategies::DeviceSpec& device = one_worker.cluster.group_of_gpu(0).gpu;
  double seconds = 0;
  for (const strategies::Task& t : program.tasks) {
    if (t.kind == strategies::TaskKind::kCompute && t.block == strategies::Block::kOptimizer) {
      seconds += cost.compute_seconds(program, t, device, one_worker.strategy.precision);
    }
  }
  return seconds;
}

json::Json ps_plan_summary(const Inputs& in, const strategies::PsTraffic& t) {
  json::Json servers = json::Json::array();
  for (int k = 0; k < t.servers; ++k) {
    servers.push_back({{"server", k},
                       {"params", json::count(t.params[k])},
                       {"pull_bytes_per_worker_step", t.pull_bytes[k]},
                       {"push_bytes_per_worker_step", t.push_bytes[k]},
                       {"update_bytes_per_push", t.push_update_bytes[k]},
                       {"update_bytes_per_bsp_step", t.step_update_bytes[k]}});
    if (!t.touched_rows.empty()) {
      servers.back()["touched_rows_per_worker_step"] = t.touched_rows[k];
    }
  }
  double params = 0;
  for (double p : t.params) params += p;
  return {{"kind", "strata.ps_plan"},
          {"schema_version", 1},
          {"model", in.rec_model ? in.rec_model->name : in.model.name},
          {"model_kind", in.rec_model ? "recommendation" : "gpt"},
          {"cluster", in.cluster.name},
          {"strategy", in.strategy.name},
          {"workers", t.workers},
          {"samples_per_worker_step", t.samples_per_step / t.workers},
          {"params", json::count(params)},
          {"spec", strategies::ps_to_json(*in.strategy.ps)},
          {"per_server", servers}};
}

std::string render_ps_plan_summary(const json::Json& s) {
  std::ostringstream o;
  const json::Json& spec = s["spec"];
  o << "Parameter-server plan: strategy '" << s["strategy"].get<std::string>() << "', model '"
    << s["model"].get<std::string>() << "' (" << s["model_kind"].get<std::string>() << ", "
    << fixed(s["params"].get<double>() / 1e6, 1) << "M params) on cluster '"
    << s["cluster"].get<std::string>() << "'\n";
  o << "  workers           " << s["workers"].get<int>() << " x "
    << s["samples_per_worker_step"].get<double>() << " samples per step\n";
  o << "  servers           " << spec["servers"].get<int>() << " "
    << spec["placement"].get<std::string>() << ", " << spec["granularity"].get<std::string>() << " "
    << spec["partition"].get<std::string>() << " partition, "
    << spec["consistency"].get<std::string>();
  if (spec.contains("staleness")) o << " (staleness " << spec["staleness"].get<int>() << ")";
  o << "\n  server      params   pull MB/w-step  push MB/w-step  update MB/push\n";
  for (const json::Json& row : s["per_server"]) {
    o << "  " << std::setw(6) << row["server"].get<int>() << std::setw(12)
      << fixed(row["params"].get<double>(), 0) << std::setw(16)
      << fixed(row["pull_bytes_per_worker_step"].get<double>() / 1e6, 3) << std::setw(16)
      << fixed(row["push_bytes_per_worker_step"].get<double>() / 1e6, 3) << std::setw(16)
      << fixed(row["update_bytes_per_push"].get<double>() / 1e6, 3) << "\n";
  }
  return o.str();
}

strategies::Provenance rec_provenance(const Inputs& in) {
  strategies::Provenance p;
  p.strata_version = version();
  p.model_hash = fnv1a64_hex(strategies::to_json(*in.rec_model).dump());
  p.cluster_hash = fnv1a64_hex(strategies::to_json(in.cluster).dump());
  p.strategy_hash = fnv1a64_hex(strategies::to_json(in.strategy).dump());
  p.overrides = in.overrides;
  return p;
}

json::Json rec_ps_report(const Inputs& in, const json::Json& ps_section) {
  return {{"kind", "strata.ps_report"},
          {"schema_version", 1},
          {"provenance", strategies::provenance_to_json(rec_provenance(in))},
          {"model", in.rec_model->name},
          {"cluster", in.cluster.name},
          {"strategy", in.strategy.name},
          {"ps", ps_section}};
}

}  // namespace strata::cli
