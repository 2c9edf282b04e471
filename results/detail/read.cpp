// Shared reading helpers of results/ (see detail/read.hpp).
#include "results/detail/read.hpp"

namespace strata::results::detail {

void check_header(json::ObjectReader& r, const std::string& kind, int schema_version,
                  const std::string& what) {
  const std::string k = r.get_string("kind");
  if (k != kind) {
    json::fail(r.field("kind"), k, "must be \"" + kind + "\" (this is not a " + what + ")");
  }
  const long long v = r.get_int("schema_version");
  if (v != schema_version) {
    json::fail(r.field("schema_version"), v,
               "this Strata reads " + what + " schema version " + std::to_string(schema_version));
  }
}

strategies::Provenance read_provenance(json::ObjectReader& parent) {
  json::ObjectReader r = parent.get_object("provenance");
  strategies::Provenance p;
  p.strata_version = r.get_string("strata_version");
  p.model_hash = r.get_string("model_hash");
  p.cluster_hash = r.get_string("cluster_hash");
  p.strategy_hash = r.get_string("strategy_hash");
  if (r.has("overrides")) {
    const json::Json& list = r.get_raw("overrides");
    if (!list.is_array()) json::fail(r.field("overrides"), list, "must be a list of strings");
    for (const json::Json& o : list) {
      if (!o.is_string()) json::fail(r.field("overrides"), o, "must be a string");
      p.overrides.push_back(o.get<std::string>());
    }
  }
  r.finish({});
  return p;
}

std::vector<double> read_numbers(const json::Json& list, const std::string& path) {
  return read_list(list, path, [](const json::Json& v, const std::string& at, std::size_t) {
    if (!v.is_number()) json::fail(at, v, "must be a number");
    return v.get<double>();
  });
}

std::vector<int> read_ints(const json::Json& list, const std::string& path) {
  return read_list(list, path, [](const json::Json& v, const std::string& at, std::size_t) {
    if (!v.is_number_integer()) json::fail(at, v, "must be an integer");
    return v.get<int>();
  });
}

long long checked_int(json::ObjectReader& r, const std::string& key, long long lo, long long hi) {
  const long long v = r.get_int(key);
  if (v < lo || v > hi) {
    json::fail(r.field(key), v,
               "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return v;
}

int small_int(json::ObjectReader& r, const std::string& key, int lo) {
  return static_cast<int>(checked_int(r, key, lo, 1 << 30));
}

}  // namespace strata::results::detail
