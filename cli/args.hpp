// A small command-line parser for `strata` subcommands: --flag VALUE, --flag=VALUE, boolean
// flags, and flags whose value is optional (--json [FILE]); integers, counts, rank lists,
// per-rank factors and comma-separated lists; output files written atomically. Usage errors are ConfigErrors naming the flag and value.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace strata::cli {

// Flags that may be given more than once (`--set`, `--vary`): get() returns the last value,
// get_all() every value in order.
inline const std::set<std::string> kRepeatableFlags = {"--set", "--vary"};

class Args {
 public:
  // `with_value`: flags that take a value; `optional_value`: flags whose value may be omitted
  // (then "-", i.e. stdout); `switches`: boolean flags.
  Args(const std::vector<std::string>& argv, const std::set<std::string>& with_value,
       const std::set<std::string>& optional_value, const std::set<std::string>& switches);

  bool has(const std::string& flag) const { return values_.count(flag) > 0; }
  std::optional<std::string> get(const std::string& flag) const;
  // Every value of a repeatable flag, in the order given (empty when absent).
  std::vector<std::string> get_all(const std::string& flag) const;
  std::string require(const std::string& flag) const;
  // A positive integer flag; ConfigError naming the flag and value otherwise.
  std::optional<int> get_positive_int(const std::string& flag) const;

 private:
  std::map<std::string, std::string> values_;
  std::map<std::string, std::vector<std::string>> all_values_;
};

// `text` as an integer when all of it is one (std::stoll's syntax, in range), else nothing:
// the parsing under every integer flag; callers check their own range and name it.
std::optional<long long> whole_integer(const std::string& text);

// `flag`'s value as a count from `min` to 1000000 (warm-up runs, repetitions, passes), or
// `fallback` when absent; ConfigError naming the flag, the value and the range otherwise.
int count_flag(const Args& args, const std::string& flag, int min, int fallback);

// Whether the arguments ask for a command's help (--help or -h anywhere).
bool asks_for_help(const std::vector<std::string>& argv);

// `flag`'s value as ranks of a world of `world`: "all" or comma-separated ranks ("0,8,16").
std::vector<int> parse_rank_list(const std::string& flag, const std::string& text, int world);
// `flag`'s value as per-rank factors: "RANK:FACTOR[,RANK:FACTOR...]" with factors > 0; every
// rank not named gets 1.
std::vector<double> parse_rank_factors(const std::string& flag, const std::string& text, int world);

// `flag`'s value as a comma-separated list of non-empty items ("a.json,b.json").
std::vector<std::string> comma_list(const std::string& flag, const std::string& text);

// Writes `content` to `path` atomically (temporary file, then rename), or to stdout for "-".
void write_output(const std::string& path, const std::string& content);

// A command's output file and its whole content.
struct Output {
  std::string path;
  std::string content;
};
// Writes every output, in order. Commands serialise all their outputs first and call this last,
// after every check, so that a failing command writes nothing.
void write_outputs(const std::vector<Output>& outputs);

}  // namespace strata::cli
