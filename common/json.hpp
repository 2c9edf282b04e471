// Strict JSON reading for specs: every key consumed or reported unknown, every type checked,
// every error a ConfigError naming the field path and the value ("strategy.tp = 3.5: ...").
#pragma once

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace strata::json {

using Json = nlohmann::json;

// The deepest nesting of arrays and objects that parse() accepts. Specs need 4 or 5 levels;
// the limit keeps hostile input (a 100,000-deep array) from reaching recursive code.
inline constexpr int kMaxDepth = 64;

// What `path` is when it exists but is not a regular file ("a directory", "a FIFO (named pipe)",
// "a character device", ...), else "".
std::string special_file_kind(const std::string& path);

// Reads a whole file; ConfigError naming the path when it cannot be opened, or saying what it is
// when it is not a regular file ("/tmp is a directory, not a regular file").
std::string read_file(const std::string& path);

// Parses `text`; every failure is a ConfigError naming `what` (usually the file path):
// a syntax error "<what>: JSON syntax error at line L, column C (in <field>): <reason>",
// nesting deeper than kMaxDepth, or a number beyond a double's range
// "<what>: gpu.peak_tflops.bf16 = 1e999 at line L, column C: number out of range ...".
Json parse(const std::string& text, const std::string& what);
Json parse_file(const std::string& path);

// A short rendering of a value for error messages (strings quoted, long values cut). Its work
// is bounded by the length of the rendering, whatever the size or depth of the value.
std::string show(const Json& value);
// A key for an error message, cut like show() cuts values.
std::string show_key(const std::string& key);

// A count (bytes, FLOPs, elements) as JSON: an integer when it is a whole number that a double
// holds exactly (below 2^53), else the number itself. Counts are whole; "1747968" reads as one.
Json count(double value);

// Reads one JSON object strictly. Keys "source" and "notes" (provenance strings) are always
// accepted; any key not read through this reader is reported by finish().
class ObjectReader {
 public:
  ObjectReader(const Json& object, std::string path);

  bool has(const std::string& key) const;
  std::string field(const std::string& key) const { return path_ + "." + key; }
  const std::string& path() const { return path_; }

  // Required values; the type is checked (an integer must be a whole number, a bool a bool).
  long long get_int(const std::string& key);
  double get_number(const std::string& key);
  bool get_bool(const std::string& key);
  std::string get_string(const std::string& key);
  const Json& get_raw(const std::string& key);
  ObjectReader get_object(const std::string& key);

  // Optional values with defaults.
  long long get_int_or(const std::string& key, long long fallback);
  double get_number_or(const std::string& key, double fallback);
  bool get_bool_or(const std::string& key, bool fallback);
  std::string get_string_or(const std::string& key, const std::string& fallback);

  // Marks a key as understood without reading it (e.g. a key read by another parser).
  void accept(const std::string& key) { consumed_.insert(key); }

  // Throws ConfigError for the first key that was never read, listing the known keys.
  void finish(const std::vector<std::string>& known_keys) const;

 private:
  const Json& require(const std::string& key);
  const Json& object_;
  std::string path_;
  std::set<std::string> consumed_;
};

// "<path> = <value>: <rule>" -- the one shape of every spec error.
[[noreturn]] void fail(const std::string& path, const Json& value, const std::string& rule);

}  // namespace strata::json
