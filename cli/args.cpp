// Command-line parsing, the checks of input and output paths, and all-or-none output for the
// strata CLI.
#include "cli/args.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/interrupt.hpp"
#include "common/error.hpp"
#include "common/json.hpp"

namespace strata::cli {

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& with_value,
           const std::set<std::string>& optional_value, const std::set<std::string>& switches) {
  for (std::size_t i = 0; i < argv.size(); ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) {
      throw UsageError("argument '" + arg + "': unexpected (options start with --; see --help)");
    }
    std::optional<std::string> inline_value;
    if (const auto eq = arg.find('='); eq != std::string::npos) {
      inline_value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    if (values_.count(arg) && !kRepeatableFlags.count(arg)) {
      throw UsageError(arg + ": given more than once");
    }
    if (switches.count(arg)) {
      if (inline_value) throw UsageError(arg + " = " + *inline_value + ": takes no value");
      values_[arg] = "1";
    } else if (with_value.count(arg)) {
      if (inline_value) {
        values_[arg] = *inline_value;
      } else if (i + 1 < argv.size()) {
        values_[arg] = argv[++i];
      } else {
        throw UsageError(arg + ": missing value");
      }
      if (values_[arg].empty()) throw ConfigError(arg + ": empty value");
      all_values_[arg].push_back(values_[arg]);
    } else if (optional_value.count(arg)) {
      if (inline_value) {
        values_[arg] = *inline_value;
      } else if (i + 1 < argv.size() && argv[i + 1].rfind("--", 0) != 0) {
        values_[arg] = argv[++i];
      } else {
        values_[arg] = "-";
      }
    } else {
      throw UsageError(arg + ": unknown option (see --help)");
    }
  }
}

std::optional<std::string> Args::get(const std::string& flag) const {
  const auto it = values_.find(flag);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> Args::get_all(const std::string& flag) const {
  const auto it = all_values_.find(flag);
  return it == all_values_.end() ? std::vector<std::string>{} : it->second;
}

std::string Args::require(const std::string& flag) const {
  const auto v = get(flag);
  if (!v) throw UsageError(flag + ": required option is missing (see --help)");
  return *v;
}

std::optional<long long> whole_integer(const std::string& text) {
  std::size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used != text.size()) return std::nullopt;
  return n;
}

std::optional<int> Args::get_positive_int(const std::string& flag) const {
  const auto v = get(flag);
  if (!v) return std::nullopt;
  const std::optional<long long> n = whole_integer(*v);
  if (!n || *n < 1 || *n > 1'000'000'000) {
    throw ConfigError(flag + " = " + *v + ": must be a positive integer");
  }
  return static_cast<int>(*n);
}

bool asks_for_help(const std::vector<std::string>& argv) {
  for (const auto& a : argv) {
    if (a == "--help" || a == "-h") return true;
  }
  return false;
}

std::vector<int> parse_rank_list(const std::string& flag, const std::string& text, int world) {
  std::vector<int> out;
  if (text == "all") {
    for (int r = 0; r < world; ++r) out.push_back(r);
    return out;
  }
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    int r = -1;
    try {
      r = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || r < 0 || r >= world) {
      throw ConfigError(flag + " = " + text + ": '" + item + "' is not a rank in [0, " +
                        std::to_string(world - 1) + "] (or use 'all')");
    }
    out.push_back(r);
  }
  return out;
}

std::vector<double> parse_rank_factors(const std::string& flag, const std::string& text,
                                       int world) {
  std::vector<double> factors(world, 1.0);
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto colon = item.find(':');
    int r = -1;
    double f = 0;
    try {
      if (colon != std::string::npos) {
        r = std::stoi(item.substr(0, colon));
        f = std::stod(item.substr(colon + 1));
      }
    } catch (const std::exception&) {
      r = -1;
    }
    // A factor from 1/1000 to 1000 of the rank's speed: beyond it a step takes years or
    // nothing, and the simulator's times lose meaning.
    if (r < 0 || r >= world || !(f >= 1e-3 && f <= 1e3)) {
      throw ConfigError(flag + " = " + text + ": '" + item +
                        "' must be RANK:FACTOR with a rank in [0, " + std::to_string(world - 1) +
                        "] and a factor from 0.001 to 1000");
    }
    factors[r] = f;
  }
  return factors;
}

int count_flag(const Args& args, const std::string& flag, int min, int fallback) {
  const auto v = args.get(flag);
  if (!v) return fallback;
  const std::optional<long long> n = whole_integer(*v);
  if (!n || *n < min || *n > 1'000'000) {
    throw ConfigError(flag + " = " + *v + ": must be an integer from " + std::to_string(min) +
                      " to 1000000");
  }
  return static_cast<int>(*n);
}

std::vector<std::string> comma_list(const std::string& flag, const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    if (item.empty()) throw ConfigError(flag + " = " + text + ": an empty item in the list");
    out.push_back(item);
    at = comma + 1;
  }
  return out;
}

std::vector<NamedPath> flag_paths(const Args& args, const std::vector<std::string>& flags) {
  std::vector<NamedPath> out;
  for (const std::string& flag : flags) {
    const auto v = args.get(flag);
    if (!v) continue;
    if (flag != "--profile" && flag != "--links") {
      out.push_back({flag, *v});
      continue;
    }
    for (const std::string& p : comma_list(flag, *v)) out.push_back({flag, p});
  }
  return out;
}

namespace {

namespace fs = std::filesystem;

// The path with "." and "..", symlinks of its existing part and a relative start resolved.
fs::path canonical_path(const std::string& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(fs::absolute(p, ec), ec);
  if (ec) return fs::absolute(p).lexically_normal();
  return c;
}

bool same_file(const std::string& a, const std::string& b) {
  if (canonical_path(a) == canonical_path(b)) return true;
  std::error_code ec;
  return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec) && !ec;
}

// `path` lies inside directory `dir` (both canonical).
bool inside(const fs::path& path, const fs::path& dir) {
  auto d = dir.begin();
  auto p = path.begin();
  for (; d != dir.end(); ++d, ++p) {
    if (d->empty()) continue;  // a trailing separator
    if (p == path.end() || *p != *d) return false;
  }
  return true;
}

}  // namespace

std::filesystem::path results_directory(const std::string& flag, const std::string& given) {
  std::filesystem::path out = std::filesystem::path(given).lexically_normal();
  while (!out.empty() && !out.has_filename() && out != out.root_path()) out = out.parent_path();
  if (out.empty() || out == "." || out == ".." || out == out.root_path()) {
    throw ConfigError(flag + " = " + given + ": name a folder of its own to write (it is replaced "
                      "as a whole)");
  }
  return out;
}

std::optional<std::string> path_inside(const std::string& path, const std::string& dir) {
  const fs::path p = canonical_path(path), d = canonical_path(dir);
  if (!inside(p, d) || p == d) return std::nullopt;
  return p.lexically_relative(d).string();
}

namespace {

std::string quoted(const NamedPath& p) { return p.flag + " = " + p.path; }

// The directory `path` goes into must exist and be writable.
void check_writable_parent(const NamedPath& out) {
  const fs::path parent = canonical_path(out.path).parent_path();
  std::error_code ec;
  if (!fs::is_directory(parent, ec)) {
    throw ConfigError(quoted(out) + ": cannot be written: its directory " + parent.string() +
                      (fs::exists(parent, ec) ? " is not a directory" : " does not exist"));
  }
  if (::access(parent.c_str(), W_OK) != 0) {
    throw ConfigError(quoted(out) + ": cannot be written: no permission to write in " +
                      parent.string());
  }
}

}  // namespace

void check_paths(const std::vector<NamedPath>& inputs, const std::vector<NamedPath>& outputs,
                 const std::vector<NamedPath>& output_dirs) {
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const NamedPath& o = outputs[i];
    for (std::size_t j = 0; j < i; ++j) {
      const NamedPath& other = outputs[j];
      if (o.path == "-" ? other.path == "-" : other.path != "-" && same_file(o.path, other.path)) {
        throw ConfigError(quoted(o) + ": the same path as " + quoted(other) +
                          (o.path == "-" ? " (both to stdout)" : "") +
                          "; two outputs of one command need two paths");
      }
    }
    if (o.path == "-") continue;
    for (const NamedPath& in : inputs) {
      if (same_file(o.path, in.path)) {
        throw ConfigError(quoted(o) + ": the same file as the input " + quoted(in) +
                          ", which writing it would overwrite; choose another output path");
      }
    }
    std::error_code ec;
    if (fs::is_directory(o.path, ec)) {
      throw ConfigError(quoted(o) + ": is a directory; give a file path");
    }
    check_writable_parent(o);
  }
  for (const NamedPath& d : output_dirs) {
    for (const NamedPath& in : inputs) {
      if (same_file(d.path, in.path)) {
        throw ConfigError(quoted(d) + ": the same path as the input " + quoted(in) +
                          "; choose another output directory");
      }
    }
    for (const NamedPath& o : outputs) {
      if (o.path != "-" && same_file(d.path, o.path)) {
        throw ConfigError(quoted(d) + ": the same path as " + quoted(o));
      }
    }
    std::error_code ec;
    if (fs::exists(d.path, ec)) {
      if (!fs::is_directory(d.path, ec)) {
        throw ConfigError(quoted(d) + ": exists and is not a directory");
      }
      if (::access(d.path.c_str(), W_OK) != 0) {
        throw ConfigError(quoted(d) + ": no permission to write in it");
      }
      continue;
    }
    // Created when written: its nearest existing ancestor must be a writable directory.
    fs::path up = canonical_path(d.path).parent_path();
    while (!up.empty() && !fs::exists(up, ec) && up != up.root_path()) up = up.parent_path();
    if (!fs::is_directory(up, ec)) {
      throw ConfigError(quoted(d) + ": cannot be created: " + up.string() + " is not a directory");
    }
    if (::access(up.c_str(), W_OK) != 0) {
      throw ConfigError(quoted(d) + ": cannot be created: no permission to write in " +
                        up.string());
    }
  }
}

struct OutputFiles::Entry {
  std::string flag, path, temporary;
  int slot = -1;            // in the interrupt handler's table
  std::ofstream file;       // for a path
  std::ostringstream text;  // for "-"
  std::ostream& stream() { return path == "-" ? static_cast<std::ostream&>(text) : file; }
};

OutputFiles::OutputFiles() = default;

OutputFiles::~OutputFiles() {
  for (const auto& e : entries_) {
    if (e->temporary.empty()) continue;
    if (e->file.is_open()) e->file.close();
    std::error_code ec;
    fs::remove(e->temporary, ec);
    forget_temporary(e->slot);
  }
}

std::ostream& OutputFiles::open(const std::string& flag, const std::string& path) {
  auto e = std::make_unique<Entry>();
  e->flag = flag;
  e->path = path;
  if (path != "-") {
    static int counter = 0;
    const fs::path target(path);
    // Hidden, beside the target (the rename stays within one file system), unique per process.
    e->temporary = (target.parent_path() /
                    ("." + target.filename().string() + ".strata-" + std::to_string(::getpid()) +
                     "-" + std::to_string(++counter) + ".tmp"))
                       .string();
    e->slot = remember_temporary(e->temporary);
    e->file.open(e->temporary, std::ios::binary | std::ios::trunc);
    if (!e->file) {
      const std::string why = std::strerror(errno);
      forget_temporary(e->slot);
      e->temporary.clear();
      throw OutputError(flag + " = " + path + ": cannot be written (" + why +
                        "); no output was written");
    }
  }
  entries_.push_back(std::move(e));
  return entries_.back()->stream();
}

void OutputFiles::add(const std::string& flag, const std::string& path,
                      const std::string& content) {
  open(flag, path) << content;
}

void OutputFiles::commit() {
  // Fault injection for the tests (cli/README.md): STRATA_TEST_FAIL_OUTPUT=FLAG makes
  // writing that flag's output fail, as a full disk would.
  const char* fail = std::getenv("STRATA_TEST_FAIL_OUTPUT");
  for (const auto& e : entries_) {
    if (e->path == "-") continue;
    if (fail != nullptr && e->flag == fail) e->file.setstate(std::ios::badbit);
    e->file.flush();
    const bool written = static_cast<bool>(e->file);
    e->file.close();
    if (!written || e->file.fail()) {
      throw OutputError(e->flag + " = " + e->path +
                        ": writing it failed (disk full or file system error); none of this "
                        "command's outputs was written");
    }
  }
  for (const auto& e : entries_) {
    if (e->path == "-") continue;
    std::error_code ec;
    fs::rename(e->temporary, e->path, ec);
    if (ec) {
      throw OutputError(e->flag + " = " + e->path + ": cannot replace the file: " + ec.message());
    }
    forget_temporary(e->slot);
    e->temporary.clear();
  }
  for (const auto& e : entries_) {
    if (e->path == "-") std::cout << e->text.str();
  }
  std::cout.flush();
}

void write_outputs(const std::vector<Output>& outputs) {
  OutputFiles files;
  for (const Output& o : outputs) files.add(o.flag, o.path, o.content);
  files.commit();
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c == '\n' ? ' ' : c);
  return out + "\"";
}

std::string shortest_number(double v) { return json::Json(v).dump(); }

}  // namespace strata::cli
