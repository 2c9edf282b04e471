// run.json: the writer and the reader.
#include "results/run.hpp"

#include "results/detail/read.hpp"
#include "strategies/plan_json.hpp"

namespace strata::results {

bool RunMemory::operator==(const RunMemory& o) const {
  auto same = [](const strategies::StaticMemory& a, const strategies::StaticMemory& b) {
    return a.params == b.params && a.grads == b.grads && a.optimizer == b.optimizer &&
           a.other == b.other;
  };
  return rank == o.rank && planned_peak_bytes == o.planned_peak_bytes &&
         measured_peak_bytes == o.measured_peak_bytes && same(planned_static, o.planned_static) &&
         same(measured_static, o.measured_static) &&
         measured_peak_transient_bytes == o.measured_peak_transient_bytes &&
         staging_peak_bytes == o.staging_peak_bytes &&
         alignment_padding_bytes == o.alignment_padding_bytes &&
         reserved_peak_bytes == o.reserved_peak_bytes;
}

namespace {

json::Json static_json(const strategies::StaticMemory& s) {
  return {{"params_bytes", s.params},
          {"grads_bytes", s.grads},
          {"optimizer_bytes", s.optimizer},
          {"other_bytes", s.other}};
}

strategies::StaticMemory read_static(json::ObjectReader r) {
  strategies::StaticMemory s;
  s.params = r.get_number("params_bytes");
  s.grads = r.get_number("grads_bytes");
  s.optimizer = r.get_number("optimizer_bytes");
  s.other = r.get_number("other_bytes");
  r.finish({});
  return s;
}

RunMemory read_memory(const json::Json& row, const std::string& path, std::size_t) {
  json::ObjectReader r(row, path);
  RunMemory m;
  m.rank = detail::small_int(r, "rank", 0);
  m.planned_peak_bytes = r.get_number("planned_peak_bytes");
  m.measured_peak_bytes = r.get_number("measured_peak_bytes");
  m.planned_static = read_static(r.get_object("planned_static"));
  m.measured_static = read_static(r.get_object("measured_static"));
  m.measured_peak_transient_bytes = r.get_number("measured_peak_transient_bytes");
  m.staging_peak_bytes = r.get_number("staging_peak_bytes");
  m.alignment_padding_bytes = r.get_number("alignment_padding_bytes");
  m.reserved_peak_bytes = r.get_number_or("reserved_peak_bytes", 0);  // absent before it existed
  r.finish({});
  return m;
}

}  // namespace

json::Json run_to_json(const RunRecord& r) {
  json::Json memory = json::Json::array();
  for (const RunMemory& m : r.memory) {
    memory.push_back({{"rank", m.rank},
                      {"planned_peak_bytes", m.planned_peak_bytes},
                      {"measured_peak_bytes", m.measured_peak_bytes},
                      {"planned_static", static_json(m.planned_static)},
                      {"measured_static", static_json(m.measured_static)},
                      {"measured_peak_transient_bytes", m.measured_peak_transient_bytes},
                      {"staging_peak_bytes", m.staging_peak_bytes},
                      {"alignment_padding_bytes", m.alignment_padding_bytes},
                      {"reserved_peak_bytes", m.reserved_peak_bytes}});
  }
  json::Json losses = json::Json::array();
  json::Json steps = json::Json::array();
  for (const RunStep& s : r.steps) {
    losses.push_back(s.loss);
    steps.push_back({{"step", s.step},
                     {"loss", s.loss},
                     {"seconds", s.seconds},
                     {"tokens_per_s", s.tokens_per_s}});
    if (!s.strategy.empty()) steps.back()["strategy"] = s.strategy;
  }
  json::Json out = {{"schema_version", kRunSchemaVersion},
                    {"kind", kRunKind},
                    {"source", r.source},
                    {"model", r.model},
                    {"strategy", r.strategy},
                    {"cluster", r.cluster},
                    {"world_size", r.world_size},
                    {"backend", r.backend},
                    {"device", r.device},
                    {"seed", r.seed},
                    {"first_step", r.first_step},
                    {"lr", r.lr},
                    {"data", r.data},
                    {"tokens_per_step", r.tokens_per_step},
                    {"losses", std::move(losses)},
                    {"steps", std::move(steps)},
                    {"median_tokens_per_s", r.median_tokens_per_s},
                    {"memory", std::move(memory)},
                    {"provenance", strategies::provenance_to_json(r.provenance)},
                    {"host", r.host},
                    {"date", r.date}};
  if (!r.schedule.empty()) {
    json::Json switches = json::Json::array();
    for (const RunSwitch& w : r.switches) {
      json::Json row = {{"at_step", w.at_step},
                        {"from", w.from},
                        {"to", w.to},
                        {"measured_seconds", w.measured_seconds},
                        {"bytes_sent", w.bytes_sent},
                        {"max_rank_bytes_sent", w.max_rank_bytes_sent}};
      if (w.simulated_seconds >= 0) {
        row["simulated_seconds"] = w.simulated_seconds;
        row["simulated_bytes"] = w.simulated_bytes;
      }
      switches.push_back(std::move(row));
    }
    out["schedule"] = r.schedule;
    out["switches"] = std::move(switches);
  }
  if (!r.federated.is_null()) out["federated"] = r.federated;
  if (!r.ps.is_null()) out["ps"] = r.ps;
  return out;
}

namespace {

RunStep read_step(const json::Json& row, const std::string& path, std::size_t) {
  json::ObjectReader r(row, path);
  RunStep s;
  s.step = detail::small_int(r, "step", 1);
  s.loss = r.get_number("loss");
  s.seconds = r.get_number("seconds");
  s.tokens_per_s = r.get_number("tokens_per_s");
  s.strategy = r.get_string_or("strategy", "");
  r.finish({});
  return s;
}

RunSwitch read_switch(const json::Json& row, const std::string& path, std::size_t) {
  json::ObjectReader r(row, path);
  RunSwitch w;
  w.at_step = detail::small_int(r, "at_step", 1);
  w.from = r.get_string("from");
  w.to = r.get_string("to");
  w.measured_seconds = r.get_number("measured_seconds");
  w.bytes_sent = r.get_number("bytes_sent");
  w.max_rank_bytes_sent = r.get_number("max_rank_bytes_sent");
  w.simulated_seconds = r.get_number_or("simulated_seconds", -1);
  w.simulated_bytes = r.get_number_or("simulated_bytes", -1);
  r.finish({});
  return w;
}

}  // namespace

RunRecord run_from_json(const json::Json& j, const std::string& file) {
  return detail::read_document(
      j, file, "run", kRunKind, kRunSchemaVersion, [](json::ObjectReader& r) {
        RunRecord run;
        run.source = r.get_string("source");
        run.model = r.get_string("model");
        run.strategy = r.get_string("strategy");
        run.cluster = r.get_string("cluster");
        run.world_size = detail::small_int(r, "world_size", 1);
        run.backend = r.get_string("backend");
        run.device = r.get_string_or("device", "cpu");
        run.seed = static_cast<std::uint64_t>(detail::checked_int(r, "seed", 0, 1LL << 62));
        run.first_step = detail::small_int(r, "first_step", 1);
        run.lr = r.get_number("lr");
        run.data = r.get_string("data");
        run.tokens_per_step = r.get_number("tokens_per_step");
        run.steps = detail::read_list(r.get_raw("steps"), r.field("steps"), read_step);
        run.schedule = r.get_string_or("schedule", "");
        if (!run.schedule.empty()) {
          run.switches = detail::read_list(r.get_raw("switches"), r.field("switches"), read_switch);
        }
        for (const auto& [key, member] : {std::pair{"federated", &run.federated},
                                          std::pair{"ps", &run.ps}}) {
          if (!r.has(key)) continue;
          *member = r.get_raw(key);
          if (!member->is_object()) json::fail(r.field(key), *member, "must be an object");
        }
        const std::vector<double> losses =
            detail::read_numbers(r.get_raw("losses"), r.field("losses"));
        if (losses.size() != run.steps.size()) {
          json::fail(r.field("losses"), r.get_raw("losses"),
                     "must hold one loss per step (" + std::to_string(run.steps.size()) + ")");
        }
        for (std::size_t i = 0; i < losses.size(); ++i) {
          if (losses[i] != run.steps[i].loss) {
            json::fail(r.field("losses") + "[" + std::to_string(i) + "]", losses[i],
                       "must equal steps[" + std::to_string(i) + "].loss");
          }
        }
        run.median_tokens_per_s = r.get_number("median_tokens_per_s");
        run.memory = detail::read_list(r.get_raw("memory"), r.field("memory"), read_memory);
        run.provenance = detail::read_provenance(r);
        run.host = r.get_string("host");
        run.date = r.get_string("date");
        return run;
      });
}

RunRecord read_run(const std::string& path) { return run_from_json(json::parse_file(path), path); }

}  // namespace strata::results
