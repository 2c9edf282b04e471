// Strict JSON reading: syntax errors with line and column, type and unknown-key errors by path.
#include "common/json.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include "common/error.hpp"

namespace strata::json {

std::string special_file_kind(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec) return "";
  switch (st.type()) {
    case fs::file_type::directory:
      return "a directory";
    case fs::file_type::fifo:
      return "a FIFO (named pipe)";
    case fs::file_type::character:
      return "a character device";
    case fs::file_type::block:
      return "a block device";
    case fs::file_type::socket:
      return "a socket";
    default:
      return "";
  }
}

namespace {

// Cuts a string for an error message to at most `limit` bytes, on a UTF-8 character boundary.
std::string cut(const std::string& s, std::size_t limit) {
  if (s.size() <= limit) return s;
  std::size_t end = limit - 3;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end) + "...";
}

constexpr std::size_t kShowLimit = 60;

// Renders `value` into `out` until `out` holds more than `limit` bytes: the work is bounded by
// the limit (and the nesting depth by kMaxDepth), never by the size of the value.
void render(const Json& value, std::string& out, std::size_t limit, int depth) {
  if (out.size() > limit) return;
  if (depth > kMaxDepth) {
    out += "...";
    return;
  }
  if (value.is_object() || value.is_array()) {
    const bool object = value.is_object();
    out += object ? '{' : '[';
    bool first = true;
    for (auto it = value.begin(); it != value.end(); ++it) {
      if (out.size() > limit) return;
      if (!first) out += ',';
      first = false;
      if (object) {
        out += Json(cut(it.key(), limit + 4)).dump(-1, ' ', false, Json::error_handler_t::replace);
        out += ':';
      }
      render(*it, out, limit, depth + 1);
    }
    out += object ? '}' : ']';
  } else if (value.is_string()) {
    out += Json(cut(value.get_ref<const std::string&>(), limit + 4))
               .dump(-1, ' ', false, Json::error_handler_t::replace);
  } else {
    out += value.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
}

// Walks JSON text token by token, keeping the path of the value being read ("gpu.peak_tflops",
// "node_groups[1].nodes"). Used on text that nlohmann has not parsed (or refused), so it never
// builds a value and never recurses: its work is linear in the text whatever the nesting.
class PathWalker {
 public:
  explicit PathWalker(const std::string& text) : text_(text) {}

  // Byte offset after the last token read, and where that token began.
  std::size_t offset() const { return i_; }
  std::size_t token_start() const { return start_; }
  std::size_t depth() const { return stack_.size(); }

  // Advances over one token. Returns false at the end of the text. `number` is set to the
  // number's text when the token was a number, else cleared.
  bool step(std::string& number) {
    number.clear();
    while (i_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[i_]))) ++i_;
    if (i_ >= text_.size()) return false;
    start_ = i_;
    const char c = text_[i_];
    if (c == '{' || c == '[') {
      stack_.push_back({c == '{', "", 0, c == '{'});
      ++i_;
    } else if (c == '}' || c == ']') {
      if (!stack_.empty()) stack_.pop_back();
      ++i_;
    } else if (c == ',') {
      if (!stack_.empty()) {
        if (stack_.back().object) {
          stack_.back().want_key = true;
        } else {
          ++stack_.back().index;
        }
      }
      ++i_;
    } else if (c == ':') {
      if (!stack_.empty()) stack_.back().want_key = false;
      ++i_;
    } else if (c == '"') {
      std::string s;
      ++i_;
      while (i_ < text_.size() && text_[i_] != '"') {
        if (text_[i_] == '\\' && i_ + 1 < text_.size()) ++i_;
        if (s.size() < kShowLimit + 4) s += text_[i_];
        ++i_;
      }
      ++i_;
      if (!stack_.empty() && stack_.back().object && stack_.back().want_key) stack_.back().key = s;
    } else {
      const std::size_t start = i_;
      while (i_ < text_.size() &&
             std::string_view(",:[]{}\" \t\r\n").find(text_[i_]) == std::string_view::npos) {
        ++i_;
      }
      if (std::isdigit(static_cast<unsigned char>(c)) || c == '-') {
        number = text_.substr(start, std::min<std::size_t>(i_ - start, kShowLimit + 4));
      }
      if (i_ == start) ++i_;
    }
    return true;
  }

  // The path of the value at the current position: "gpu.peak_tflops.bf16", or "" at the top.
  std::string path() const {
    std::string p;
    for (const Frame& f : stack_) {
      if (f.object) {
        if (!p.empty()) p += '.';
        p += f.key;
      } else {
        p += "[" + std::to_string(f.index) + "]";
      }
    }
    return cut(p, 200);
  }

 private:
  struct Frame {
    bool object;
    std::string key;
    long long index;
    bool want_key;
  };
  const std::string& text_;
  std::size_t i_ = 0;
  std::size_t start_ = 0;
  std::vector<Frame> stack_;
};

// "line L, column C" of a 0-based byte offset.
std::string line_column(const std::string& text, std::size_t offset) {
  std::size_t line = 1, column = 1;
  const std::size_t end = std::min(offset, text.size());
  for (std::size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

// Refuses text nested deeper than kMaxDepth before nlohmann builds (or anyone renders) it.
void check_depth(const std::string& text, const std::string& what) {
  PathWalker walker(text);
  std::string number;
  while (walker.step(number)) {
    if (walker.depth() > static_cast<std::size_t>(kMaxDepth)) {
      throw ConfigError(what + ": JSON nested deeper than " + std::to_string(kMaxDepth) +
                        " levels at " + line_column(text, walker.token_start()) +
                        " (no spec needs more than a few; is this the right file?)");
    }
  }
}

// A number too large for a double (1e999): nlohmann reports it without a position, so find
// it, and name its field.
[[noreturn]] void number_out_of_range(const std::string& text, const std::string& what) {
  PathWalker walker(text);
  std::string number;
  while (walker.step(number)) {
    if (number.empty()) continue;
    const double d = std::strtod(number.c_str(), nullptr);
    if (std::isfinite(d)) continue;
    const std::string path = walker.path();
    throw ConfigError(what + ": " + (path.empty() ? std::string("the value") : path) + " = " +
                      number + " at " + line_column(text, walker.token_start()) +
                      ": number out of range (a JSON number here must be within +-1.8e308)");
  }
  throw ConfigError(what +
                    ": a number is out of range (a JSON number here must be within "
                    "+-1.8e308)");
}

}  // namespace

std::string read_file(const std::string& path) {
  const std::string kind = special_file_kind(path);
  if (!kind.empty()) throw ConfigError(path + " is " + kind + ", not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open file for reading");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw ConfigError(path + ": read error");
  return buffer.str();
}

Json parse(const std::string& text, const std::string& what) {
  check_depth(text, what);
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    // e.byte is the 1-based offset of the offending character.
    const std::size_t at = std::min<std::size_t>(e.byte > 0 ? e.byte - 1 : 0, text.size());
    PathWalker walker(text);
    std::string number;
    while (walker.offset() < at && walker.step(number)) {
    }
    const std::string path = walker.path();
    std::string reason = e.what();
    const auto colon = reason.find(": ", reason.find("parse error"));
    if (colon != std::string::npos) reason = reason.substr(colon + 2);
    throw ConfigError(what + ": JSON syntax error at " + line_column(text, at) +
                      (path.empty() ? "" : " (in " + path + ")") + ": " + cut(reason, 200));
  } catch (const Json::out_of_range&) {
    number_out_of_range(text, what);
  } catch (const Json::exception& e) {
    throw ConfigError(what + ": cannot read as JSON: " + cut(e.what(), 200));
  }
}

Json parse_file(const std::string& path) { return parse(read_file(path), path); }

std::string show(const Json& value) {
  std::string s;
  render(value, s, kShowLimit, 0);
  return cut(s, kShowLimit);
}

std::string show_key(const std::string& key) { return cut(key, kShowLimit); }

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
    throw ConfigError(field(show_key(it.key())) + ": unknown key (known keys: " + list +
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
