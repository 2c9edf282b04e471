// Internals shared by the results readers: the kind/schema_version check, provenance, arrays of
// numbers, enum names, and the file name in front of every error.
#pragma once

#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/json.hpp"
#include "strategies/plan.hpp"

namespace strata::results::detail {

// Reads `kind` and `schema_version` first, so that a file of another kind is reported as such
// (not as its first missing field): "report.kind = \"strata.trace\": must be \"strata.report\"
// (this is not a report)".
void check_header(json::ObjectReader& r, const std::string& kind, int schema_version,
                  const std::string& what);

strategies::Provenance read_provenance(json::ObjectReader& parent);

// A list at `path`, each element read by `read(element, element_path, index)`; element paths
// name the index ("run.steps[3]").
template <class Read>
auto read_list(const json::Json& list, const std::string& path, Read read) {
  if (!list.is_array()) json::fail(path, list, "must be a list");
  std::vector<decltype(read(list, path, std::size_t{0}))> out;
  for (std::size_t i = 0; i < list.size(); ++i) {
    out.push_back(read(list[i], path + "[" + std::to_string(i) + "]", i));
  }
  return out;
}
std::vector<double> read_numbers(const json::Json& list, const std::string& path);
std::vector<int> read_ints(const json::Json& list, const std::string& path);

// One integer in [lo, hi]; the error names the path and the value.
long long checked_int(json::ObjectReader& r, const std::string& key, long long lo, long long hi);
// An int (a rank, a stage, a size) of at least `lo` and at most 2^30.
int small_int(json::ObjectReader& r, const std::string& key, int lo);

// The enum value whose *_name() is `name` (names come from strategies/plan.hpp); ConfigError
// listing the known names otherwise. Enum values are contiguous from 0; `name_of` answers "?"
// past the last.
template <class Enum>
Enum enum_from_name(const char* (*name_of)(Enum), const std::string& name,
                    const std::string& path) {
  std::string known;
  for (int i = 0; i < 256; ++i) {
    const std::string n = name_of(static_cast<Enum>(i));
    if (n == "?") break;
    if (n == name) return static_cast<Enum>(i);
    known += (known.empty() ? "" : ", ") + n;
  }
  json::fail(path, name, "unknown name (known: " + known + ")");
}

// Runs `read` and puts `file` in front of any ConfigError it throws ("out/report.json: ...").
template <class Read>
auto naming_file(const std::string& file, Read read) -> decltype(read()) {
  try {
    return read();
  } catch (const ConfigError& e) {
    throw ConfigError(file + ": " + e.what());
  }
}

// A whole file whose top-level object is `root` ("report", "run") of `kind` and
// `schema_version`: checks the header, runs `read(reader)` for the rest, refuses keys `read` did
// not take, and names `file` in any error.
template <class Read>
auto read_document(const json::Json& j, const std::string& file, const std::string& root,
                   const std::string& kind, int schema_version, Read read) {
  return naming_file(file, [&] {
    json::ObjectReader r(j, root);
    check_header(r, kind, schema_version, root);
    auto out = read(r);
    r.finish({});
    return out;
  });
}

}  // namespace strata::results::detail
