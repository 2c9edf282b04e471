// A small command-line parser for `strata` subcommands: --flag VALUE, --flag=VALUE, boolean
// flags, and flags whose value is optional (--json [FILE]). Usage errors are ConfigErrors.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace strata::cli {

class Args {
 public:
  // `with_value`: flags that take a value; `optional_value`: flags whose value may be omitted
  // (then "-", i.e. stdout); `switches`: boolean flags.
  Args(const std::vector<std::string>& argv, const std::set<std::string>& with_value,
       const std::set<std::string>& optional_value, const std::set<std::string>& switches);

  bool has(const std::string& flag) const { return values_.count(flag) > 0; }
  std::optional<std::string> get(const std::string& flag) const;
  std::string require(const std::string& flag) const;
  // A positive integer flag; ConfigError naming the flag and value otherwise.
  std::optional<int> get_positive_int(const std::string& flag) const;

 private:
  std::map<std::string, std::string> values_;
};

// Whether the arguments ask for a command's help (--help or -h anywhere).
bool asks_for_help(const std::vector<std::string>& argv);

// Writes `content` to `path` atomically (temporary file, then rename), or to stdout for "-".
void write_output(const std::string& path, const std::string& content);

}  // namespace strata::cli
