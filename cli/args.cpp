// Command-line parsing and atomic output for the strata CLI.
#include "cli/args.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/error.hpp"

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
    if (values_.count(arg)) throw UsageError(arg + ": given more than once");
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

void write_output(const std::string& path, const std::string& content) {
  if (path == "-") {
    std::cout << content;
    std::cout.flush();
    return;
  }
  const std::filesystem::path target(path);
  const std::filesystem::path tmp = target.string() + ".tmp-strata";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw ConfigError(path + ": cannot open for writing");
    out << content;
    out.flush();
    if (!out) {
      out.close();
      std::filesystem::remove(tmp);
      throw ConfigError(path + ": write failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, target, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    throw ConfigError(path + ": cannot replace file: " + ec.message());
  }
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

void write_outputs(const std::vector<Output>& outputs) {
  for (const Output& o : outputs) write_output(o.path, o.content);
}

}  // namespace strata::cli
