// Strict JSON reading: syntax errors with line and column, type and unknown-key errors by path.
#include "common/json.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "common/error.hpp"

namespace strata::json {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open file for reading");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

Json parse(const std::string& text, const std::string& what) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    // e.byte is the 1-based offset of the offending character; turn it into line:column.
    std::size_t line = 1, column = 1;
    const std::size_t end = std::min<std::size_t>(e.byte > 0 ? e.byte - 1 : 0, text.size());
    for (std::size_t i = 0; i < end; ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    std::string reason = e.what();
    const auto colon = reason.find(": ", reason.find("parse error"));
    if (colon != std::string::npos) reason = reason.substr(colon + 2);
    throw ConfigError(what + ": JSON syntax error at line " + std::to_string(line) + ", column " +
                      std::to_string(column) + ": " + reason);
  }
}

Json parse_file(const std::string& path) { return parse(read_file(path), path); }

std::string show(const Json& value) {
  std::string s = value.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

void fail(const std::string& path, const Json& value, const std::string& rule) {
  throw ConfigError(path + " = " + show(value) + ": " + rule);
}

ObjectReader::ObjectReader(const Json& object, std::string path)
    : object_(object), path_(std::move(path)) {
  if (!object_.is_object()) fail(path_, object_, "must be a JSON object");
  // Provenance strings are allowed on every object.
  for (const char* key : {"source", "notes"}) {
    if (object_.contains(key)) {
      const Json& v = object_.at(key);
      if (!v.is_string() && !(v.is_array() && std::all_of(v.begin(), v.end(), [](const Json& x) {
                                return x.is_string();
                              }))) {
        fail(field(key), v, "must be a string (or a list of strings)");
      }
      consumed_.insert(key);
    }
  }
}

bool ObjectReader::has(const std::string& key) const {
  return object_.contains(key) && !object_.at(key).is_null();
}

const Json& ObjectReader::require(const std::string& key) {
  if (!has(key)) throw ConfigError(field(key) + ": required key is missing");
  consumed_.insert(key);
  return object_.at(key);
}

long long ObjectReader::get_int(const std::string& key) {
  const Json& v = require(key);
  if (v.is_number_integer()) return v.get<long long>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::floor(d) == d && std::fabs(d) < 9e15) return static_cast<long long>(d);
  }
  fail(field(key), v, "must be an integer");
}

double ObjectReader::get_number(const std::string& key) {
  const Json& v = require(key);
  if (!v.is_number()) fail(field(key), v, "must be a number");
  const double d = v.get<double>();
  if (!std::isfinite(d)) fail(field(key), v, "must be finite");
  return d;
}

bool ObjectReader::get_bool(const std::string& key) {
  const Json& v = require(key);
  if (!v.is_boolean()) fail(field(key), v, "must be true or false");
  return v.get<bool>();
}

std::string ObjectReader::get_string(const std::string& key) {
  const Json& v = require(key);
  if (!v.is_string()) fail(field(key), v, "must be a string");
  return v.get<std::string>();
}

const Json& ObjectReader::get_raw(const std::string& key) { return require(key); }

ObjectReader ObjectReader::get_object(const std::string& key) {
  return ObjectReader(require(key), field(key));
}

long long ObjectReader::get_int_or(const std::string& key, long long fallback) {
  if (!has(key)) {
    consumed_.insert(key);
    return fallback;
  }
  return get_int(key);
}

double ObjectReader::get_number_or(const std::string& key, double fallback) {
  if (!has(key)) {
    consumed_.insert(key);
    return fallback;
  }
  return get_number(key);
}

bool ObjectReader::get_bool_or(const std::string& key, bool fallback) {
  if (!has(key)) {
    consumed_.insert(key);
    return fallback;
  }
  return get_bool(key);
}

std::string ObjectReader::get_string_or(const std::string& key, const std::string& fallback) {
  if (!has(key)) {
    consumed_.insert(key);
    return fallback;
  }
  return get_string(key);
}

void ObjectReader::finish(const std::vector<std::string>& known_keys) const {
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (consumed_.count(it.key())) continue;
    bool known = false;
    for (const auto& k : known_keys) known = known || (k == it.key());
    if (known) continue;
    std::string list;
    for (const auto& k : known_keys) {
      if (!list.empty()) list += ", ";
      list += k;
    }
    throw ConfigError(field(it.key()) + ": unknown key (known keys: " + list +
                      ", source, notes)");
  }
}

Json count(double value) {
  constexpr double kExact = 9007199254740992.0;  // 2^53
  if (std::floor(value) == value && std::fabs(value) < kExact) {
    return static_cast<long long>(value);
  }
  return value;
}

}  // namespace strata::json
