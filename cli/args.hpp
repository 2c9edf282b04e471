// A small command-line parser for `strata` subcommands: --flag VALUE, --flag=VALUE, boolean
// flags, and flags whose value is optional (--json [FILE]); integers, counts, rank lists,
// per-rank factors and comma-separated lists; the paths a command reads and writes checked
// before any work, and its output files written all or none. Usage errors are ConfigErrors naming
// the flag and value.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <stdexcept>
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

// A file (or directory) a command reads or writes, by the flag that names it ("--trace",
// "PREDICTED" for a positional argument).
struct NamedPath {
  std::string flag;
  std::string path;
};

// `flags`' values as paths, skipping flags that are absent; the lists of --profile and --links
// are split at their commas (--profile a.json,b.json is two inputs).
std::vector<NamedPath> flag_paths(const Args& args, const std::vector<std::string>& flags);

// Before any work: ConfigError when an output is one of the inputs or when two outputs share a
// path (naming both flags and the path; paths compared canonically: "./a.json" and "a.json",
// a symlink and its target, hard links), when an output is a directory, or when its directory
// does not exist or is not writable. "-" (stdout) is no file, but two outputs cannot both be it.
// `output_dirs` are directories a command writes into (--save DIR): each must not be an input
// file or an output's path, and must be a writable directory or creatable in a writable parent.
void check_paths(const std::vector<NamedPath>& inputs, const std::vector<NamedPath>& outputs,
                 const std::vector<NamedPath>& output_dirs = {});

// A results directory a command replaces as a whole (sweep, validate): "DIR/" is the folder DIR
// itself (its staging folder, DIR.partial, lies beside it, not inside); "", ".", ".." and "/"
// are refused (a ConfigError naming `flag`), since replacing them would replace their parent.
std::filesystem::path results_directory(const std::string& flag, const std::string& given);

// Whether `path` lies inside directory `dir`, compared canonically (the path inside the
// directory, relative to it, or nothing).
std::optional<std::string> path_inside(const std::string& path, const std::string& dir);

// The failure to write an output that had passed check_paths (a full disk, a directory made
// read-only meanwhile): main() exits with kExitRuntime (4), not as invalid input.
class OutputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// All the outputs of one command, written as one: each is written (or streamed) into a
// temporary file beside its path, in the same directory, and only when every one has been
// written completely does commit() rename them onto their paths. A failure before or during
// commit's writing leaves none of them and every existing file at those paths untouched;
// temporaries are removed by the destructor (and by the interrupt handler, cli/interrupt.hpp).
// Outputs to "-" are buffered and printed at commit, after the files.
class OutputFiles {
 public:
  OutputFiles();
  ~OutputFiles();
  OutputFiles(const OutputFiles&) = delete;
  OutputFiles& operator=(const OutputFiles&) = delete;

  // A stream for `flag`'s output at `path`, to write (or stream) the content into.
  std::ostream& open(const std::string& flag, const std::string& path);
  // open() and write `content`.
  void add(const std::string& flag, const std::string& path, const std::string& content);
  // Checks every stream, closes it and renames every temporary onto its path. OutputError naming
  // the flag and path that failed; then none of the outputs is left.
  void commit();

 private:
  struct Entry;
  std::vector<std::unique_ptr<Entry>> entries_;
};

// A CSV cell: as is, or quoted (quotes doubled, newlines as spaces) when it holds a comma, a
// quote or a newline.
std::string csv_field(const std::string& s);
// A double as its shortest round-trip text (as report.json writes it).
std::string shortest_number(double v);

// A command's output file and its whole content.
struct Output {
  std::string flag;
  std::string path;
  std::string content;
};
// Writes every output through one OutputFiles (all or none). Commands serialise their outputs
// and call this last, after every check, so that a failing command writes nothing.
void write_outputs(const std::vector<Output>& outputs);

}  // namespace strata::cli
