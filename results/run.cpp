// run.json: the writer and the reader.
#include "results/run.hpp"

#include "results/detail/read.hpp"
#include "strategies/plan_json.hpp"

namespace strata::results {

json::Json run_to_json(const RunRecord& r) {
  json::Json losses = json::Json::array();
  json::Json steps = json::Json::array();
  for (const RunStep& s : r.steps) {
    losses.push_back(s.loss);
    steps.push_back({{"step", s.step},
                     {"loss", s.loss},
                     {"seconds", s.seconds},
                     {"tokens_per_s", s.tokens_per_s}});
  }
  return {{"schema_version", kRunSchemaVersion},
          {"kind", kRunKind},
          {"source", r.source},
          {"model", r.model},
          {"strategy", r.strategy},
          {"cluster", r.cluster},
          {"world_size", r.world_size},
          {"backend", r.backend},
          {"seed", r.seed},
          {"first_step", r.first_step},
          {"lr", r.lr},
          {"data", r.data},
          {"tokens_per_step", r.tokens_per_step},
          {"losses", std::move(losses)},
          {"steps", std::move(steps)},
          {"median_tokens_per_s", r.median_tokens_per_s},
          {"provenance", strategies::provenance_to_json(r.provenance)},
          {"host", r.host},
          {"date", r.date}};
}

namespace {

RunStep read_step(const json::Json& row, const std::string& path, std::size_t) {
  json::ObjectReader r(row, path);
  RunStep s;
  s.step = detail::small_int(r, "step", 1);
  s.loss = r.get_number("loss");
  s.seconds = r.get_number("seconds");
  s.tokens_per_s = r.get_number("tokens_per_s");
  r.finish({});
  return s;
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
        run.seed = static_cast<std::uint64_t>(detail::checked_int(r, "seed", 0, 1LL << 62));
        run.first_step = detail::small_int(r, "first_step", 1);
        run.lr = r.get_number("lr");
        run.data = r.get_string("data");
        run.tokens_per_step = r.get_number("tokens_per_step");
        run.steps = detail::read_list(r.get_raw("steps"), r.field("steps"), read_step);
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
        run.provenance = detail::read_provenance(r);
        run.host = r.get_string("host");
        run.date = r.get_string("date");
        return run;
      });
}

RunRecord read_run(const std::string& path) { return run_from_json(json::parse_file(path), path); }

}  // namespace strata::results
