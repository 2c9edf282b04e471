// report.json and the report table.
#include "results/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <sstream>

#include "common/units.hpp"
#include "results/detail/read.hpp"
#include "strategies/plan_json.hpp"

namespace strata::results {

double Report::max_peak_memory_bytes() const {
  double peak = 0;
  for (const RankTimes& r : ranks) peak = std::max(peak, r.peak_memory_bytes);
  return peak;
}

double Report::max_capacity_bytes() const {
  double capacity = 0;
  for (const RankTimes& r : ranks) capacity = std::max(capacity, r.capacity_bytes);
  return capacity;
}

json::Json report_to_json(const Report& r) {
  json::Json j;
  j["schema_version"] = kReportSchemaVersion;
  j["kind"] = kReportKind;
  j["provenance"] = strategies::provenance_to_json(r.provenance);
  j["model"] = r.model;
  j["cluster"] = r.cluster;
  j["strategy"] = r.strategy;
  j["world_size"] = r.world_size;
  j["global_batch_size"] = r.global_batch_size;
  j["seq_length"] = r.seq_length;
  j["step_time_s"] = r.step_time_s;
  j["tokens_per_s"] = r.tokens_per_s;
  j["tflops_per_gpu"] = r.tflops_per_gpu;
  j["hardware_tflops_per_gpu"] = r.hardware_tflops_per_gpu;
  j["mfu"] = r.mfu;
  j["bubble_fraction"] = r.bubble_fraction;
  j["fits"] = r.fits;
  const SimulationRecord& s = r.simulation;
  json::Json classes = json::Json::array();
  for (const DeviceClassUse& d : s.device_classes) {
    classes.push_back({{"device", d.device}, {"class", d.efficiency_class}});
  }
  j["simulation"] = {{"cost_model", s.cost_model},
                     {"device_classes", std::move(classes)},
                     {"simulated_ranks", s.simulated_ranks},
                     {"simgrid_activities", s.simgrid_activities},
                     {"fold_data_parallel", s.fold_data_parallel},
                     {"fold_tensor_parallel", s.fold_tensor_parallel},
                     {"aggregate_ring_steps", s.aggregate_ring_steps},
                     {"speed_factors", s.speed_factors}};
  if (s.measured_costs) {  // only with a measured cost model: other reports stay as they were
    j["simulation"]["measured_costs"] = {{"tasks_measured", s.tasks_measured},
                                         {"tasks_modelled", s.tasks_modelled},
                                         {"compute_s_measured", s.compute_s_measured},
                                         {"compute_s_modelled", s.compute_s_modelled},
                                         {"collectives_measured", s.collectives_measured},
                                         {"collectives_modelled", s.collectives_modelled}};
  }
  json::Json ranks = json::Json::array();
  // Byte counts are whole numbers: written as integers (a fractional count would be a bug).
  const auto count = [](double bytes) { return static_cast<std::int64_t>(std::llround(bytes)); };
  for (std::size_t i = 0; i < r.ranks.size(); ++i) {
    const RankTimes& t = r.ranks[i];
    ranks.push_back({{"rank", i},
                     {"stage", t.stage},
                     {"compute_s", t.compute_s},
                     {"communication_s", t.communication_s},
                     {"exposed_communication_s", t.exposed_comm_s},
                     {"idle_s", t.idle_s},
                     {"peak_memory_bytes", count(t.peak_memory_bytes)},
                     {"capacity_bytes", count(t.capacity_bytes)},
                     {"fits", t.fits()}});
  }
  j["ranks"] = std::move(ranks);
  if (!r.failures.is_null()) j["failures"] = r.failures;
  if (!r.switching.is_null()) j["switching"] = r.switching;
  if (!r.federated.is_null()) j["federated"] = r.federated;
  if (!r.ps.is_null()) j["ps"] = r.ps;
  return j;
}

namespace {

constexpr long long kMaxCount = 1LL << 50;

SimulationRecord read_simulation(json::ObjectReader& parent) {
  json::ObjectReader r = parent.get_object("simulation");
  SimulationRecord s;
  s.cost_model = r.get_string("cost_model");
  if (r.has("device_classes")) {  // absent from reports written before it existed
    const json::Json& list = r.get_raw("device_classes");
    if (!list.is_array()) json::fail(r.field("device_classes"), list, "must be an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      json::ObjectReader d(list[i], r.field("device_classes") + "[" + std::to_string(i) + "]");
      s.device_classes.push_back({d.get_string("device"), d.get_string("class")});
      d.finish({});
    }
  }
  s.simulated_ranks = detail::small_int(r, "simulated_ranks", 0);
  s.simgrid_activities = detail::checked_int(r, "simgrid_activities", 0, kMaxCount);
  s.fold_data_parallel = r.get_bool("fold_data_parallel");
  s.fold_tensor_parallel = r.get_bool("fold_tensor_parallel");
  s.aggregate_ring_steps = r.get_bool("aggregate_ring_steps");
  s.speed_factors = detail::read_numbers(r.get_raw("speed_factors"), r.field("speed_factors"));
  if (r.has("measured_costs")) {
    json::ObjectReader m = r.get_object("measured_costs");
    s.measured_costs = true;
    s.tasks_measured = detail::checked_int(m, "tasks_measured", 0, kMaxCount);
    s.tasks_modelled = detail::checked_int(m, "tasks_modelled", 0, kMaxCount);
    s.compute_s_measured = m.get_number("compute_s_measured");
    s.compute_s_modelled = m.get_number("compute_s_modelled");
    s.collectives_measured = detail::checked_int(m, "collectives_measured", 0, kMaxCount);
    s.collectives_modelled = detail::checked_int(m, "collectives_modelled", 0, kMaxCount);
    for (const char* key : {"compute_s_measured", "compute_s_modelled"}) {
      if (m.get_number(key) < 0) json::fail(m.field(key), m.get_number(key), "must be >= 0");
    }
    m.finish({});
  }
  r.finish({});
  return s;
}

RankTimes read_rank(const json::Json& row, const std::string& path, std::size_t index) {
  json::ObjectReader r(row, path);
  const long long rank = r.get_int("rank");
  if (rank != static_cast<long long>(index)) {
    json::fail(r.field("rank"), rank, "must be " + std::to_string(index) + " (rows in rank order)");
  }
  RankTimes t;
  t.stage = detail::small_int(r, "stage", 0);
  t.compute_s = r.get_number("compute_s");
  t.communication_s = r.get_number("communication_s");
  t.exposed_comm_s = r.get_number("exposed_communication_s");
  t.idle_s = r.get_number("idle_s");
  t.peak_memory_bytes = r.get_number("peak_memory_bytes");
  t.capacity_bytes = r.get_number("capacity_bytes");
  if (r.get_bool("fits") != t.fits()) {
    json::fail(r.field("fits"), !t.fits(), "must equal peak_memory_bytes <= capacity_bytes");
  }
  r.finish({});
  return t;
}

}  // namespace

Report report_from_json(const json::Json& j, const std::string& file) {
  return detail::read_document(
      j, file, "report", kReportKind, kReportSchemaVersion, [](json::ObjectReader& r) {
        Report rep;
        rep.provenance = detail::read_provenance(r);
        rep.model = r.get_string("model");
        rep.cluster = r.get_string("cluster");
        rep.strategy = r.get_string("strategy");
        rep.world_size = detail::small_int(r, "world_size", 1);
        rep.global_batch_size = detail::small_int(r, "global_batch_size", 1);
        rep.seq_length = detail::small_int(r, "seq_length", 1);
        rep.step_time_s = r.get_number("step_time_s");
        rep.tokens_per_s = r.get_number("tokens_per_s");
        rep.tflops_per_gpu = r.get_number("tflops_per_gpu");
        rep.hardware_tflops_per_gpu = r.get_number("hardware_tflops_per_gpu");
        rep.mfu = r.get_number("mfu");
        rep.bubble_fraction = r.get_number("bubble_fraction");
        rep.fits = r.get_bool("fits");
        rep.simulation = read_simulation(r);
        rep.ranks = detail::read_list(r.get_raw("ranks"), r.field("ranks"), read_rank);
        if (rep.ranks.size() != static_cast<std::size_t>(rep.world_size)) {
          json::fail(r.field("ranks"), r.get_raw("ranks"),
                     "must hold world_size (" + std::to_string(rep.world_size) + ") rows");
        }
        for (const auto& [key, section] :
             {std::pair{"failures", &rep.failures}, std::pair{"switching", &rep.switching},
              std::pair{"federated", &rep.federated}, std::pair{"ps", &rep.ps}}) {
          if (!r.has(key)) continue;
          *section = r.get_raw(key);
          if (!section->is_object()) json::fail(r.field(key), *section, "must be an object");
        }
        return rep;
      });
}

Report read_report(const std::string& path) {
  return report_from_json(json::parse_file(path), path);
}

std::string render_report(const Report& r) {
  using units::fixed;
  std::ostringstream os;
  os << "Strata simulation: " << r.model << " on " << r.cluster << " (" << r.world_size
     << " GPUs), strategy " << r.strategy << "\n";
  os << "  batch              " << r.global_batch_size << " sequences of " << r.seq_length
     << " tokens\n";
  os << "  step time          " << fixed(r.step_time_s, 4) << " s\n";
  os << "  throughput         " << fixed(r.tokens_per_s, 0) << " tokens/s\n";
  os << "  TFLOP/s per GPU    " << fixed(r.tflops_per_gpu, 1) << " model, "
     << fixed(r.hardware_tflops_per_gpu, 1) << " hardware (with recompute)\n";
  os << "  MFU                " << fixed(100 * r.mfu, 1) << " %\n";
  os << "  bubble             " << fixed(100 * r.bubble_fraction, 1) << " % of the step idle\n";
  os << "  memory             " << (r.fits ? "fits" : "DOES NOT FIT") << "\n";
  for (const DeviceClassUse& d : r.simulation.device_classes) {
    // A measured model prices what it measured and leaves the rest to the roofline's class.
    const std::string model = r.simulation.measured_costs ? "measured, else roofline" : r.simulation.cost_model;
    os << "  priced as          " << d.device << ": " << model << " class '" << d.efficiency_class
       << "'\n";
  }
  const SimulationRecord& sim = r.simulation;
  if (sim.measured_costs) {
    os << "  measured costs     " << sim.tasks_measured << " of "
       << sim.tasks_measured + sim.tasks_modelled << " simulated compute tasks ("
       << fixed(sim.compute_s_measured, 4) << " of "
       << fixed(sim.compute_s_measured + sim.compute_s_modelled, 4) << " s), "
       << sim.collectives_measured << " of " << sim.collectives_measured + sim.collectives_modelled
       << " collectives; the rest from the roofline\n";
  }
  os << "  per pipeline stage (its first rank)\n";
  os << "    stage   compute_s    comm_s  exposed_s    idle_s    peak memory\n";
  int stages = 0;
  for (const RankTimes& t : r.ranks) stages = std::max(stages, t.stage + 1);
  for (int stage = 0; stage < stages; ++stage) {
    const auto first = std::find_if(r.ranks.begin(), r.ranks.end(),
                                    [&](const RankTimes& t) { return t.stage == stage; });
    if (first == r.ranks.end()) continue;
    const RankTimes& t = *first;
    char line[160];
    std::snprintf(line, sizeof line, "    %-5d %11.4f %9.4f %10.4f %9.4f %14s\n", stage,
                  t.compute_s, t.communication_s, t.exposed_comm_s, t.idle_s,
                  units::format_bytes(t.peak_memory_bytes).c_str());
    os << line;
  }
  return os.str();
}

}  // namespace strata::results
