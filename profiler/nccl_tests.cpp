// nccl-tests output -> links.json (nccl_tests.hpp). A line-by-line reader: comment lines start
// runs, name the collective, list the ranks and name the columns; every other line is a data row.
#include "profiler/nccl_tests.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "common/version.hpp"

namespace strata::profiler {
namespace {

// The nccl-tests binaries whose curves links.json holds.
const std::vector<std::pair<std::string, LinkCollective>> kBinaries = {
    {"all_reduce_perf", LinkCollective::kAllReduce},
    {"all_gather_perf", LinkCollective::kAllGather},
    {"reduce_scatter_perf", LinkCollective::kReduceScatter},
    {"alltoall_perf", LinkCollective::kAllToAll},
    {"broadcast_perf", LinkCollective::kBroadcast},
    {"sendrecv_perf", LinkCollective::kSendRecv}};

// Bounds that keep every number exact in a double and an int: no real output comes near them.
constexpr long long kMaxBytes = 1LL << 53;
constexpr long long kMaxRank = 1 << 24;

// One run of a test binary: from its first preamble line to the next run's.
struct Run {
  int first_line = 0;
  std::string binary;  // "all_reduce_perf", or "" when the output does not say
  int binary_line = 0;
  std::set<int> ranks;             // from the "#  Rank  N ..." lines
  std::vector<std::string> hosts;  // distinct, in rank-line order
  std::set<std::string> devices;
  std::vector<std::string> columns;  // the column header's names; empty before it
  int header_line = 0;
  std::size_t time_column = 0;  // the first (out-of-place) "time"
  std::vector<LinkPoint> points;

  bool started() const { return !ranks.empty() || !columns.empty() || !points.empty(); }
};

// What the whole output says beyond its runs.
struct Parsed {
  std::vector<Run> runs;
  std::map<std::string, std::string> libraries;
};

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1);
}

bool parse_int(const std::string& s, long long& out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

bool parse_number(const std::string& s, double& out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && std::isfinite(out);
}

// Reports a line of `file`: "<file>: line 27: '<text>': <rule>".
class LineError {
 public:
  LineError(std::string file, int number, std::string text)
      : file_(std::move(file)), number_(number), text_(trim(text)) {}
  [[noreturn]] void fail(const std::string& rule) const {
    throw ConfigError(file_ + ": line " + std::to_string(number_) + ": '" + text_ + "': " + rule);
  }

 private:
  std::string file_;
  int number_;
  std::string text_;
};

// NCCL's version code as a version: 22807 -> "2.28.7" (since 2.9), 2708 -> "2.7.8" (before).
std::string nccl_version(long long code) {
  const long long major = code >= 10000 ? code / 10000 : code / 1000;
  const long long minor = code >= 10000 ? code % 10000 / 100 : code % 1000 / 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(code % 100);
}

// "# nccl-tests version 2.17.6 nccl-headers=22807 nccl-library=22807".
void read_versions(const std::vector<std::string>& words, Parsed& out) {
  for (std::size_t i = 0; i + 1 < words.size(); ++i) {
    if (words[i] == "nccl-tests" && words[i + 1] == "version" && i + 2 < words.size()) {
      out.libraries["nccl-tests"] = words[i + 2];
    }
  }
  for (const std::string& w : words) {
    long long code = 0;
    if (w.rfind("nccl-library=", 0) == 0 && parse_int(w.substr(13), code) && code > 0) {
      out.libraries["nccl"] = nccl_version(code);
    }
  }
}

// A binary named on a preamble line ("starting: all_reduce_perf", "./build/all_gather_perf").
void read_binary(const std::vector<std::string>& words, const LineError& at, int line, Run& run) {
  for (std::string w : words) {
    w = w.substr(w.find_last_of('/') + 1);  // npos + 1 = 0: the whole word
    if (w.size() <= 5 || w.compare(w.size() - 5, 5, "_perf") != 0) continue;
    if (!run.binary.empty() && run.binary != w) {
      at.fail("names " + w + ", but line " + std::to_string(run.binary_line) + " named " +
              run.binary + " for the same run");
    }
    run.binary = w;
    run.binary_line = line;
  }
}

// "#  Rank  3 Group  0 Pid  4242 on node1 device  3 [0x1b] NVIDIA H100 80GB HBM3"; older
// versions have no "Group".
void read_rank_line(const std::vector<std::string>& words, const LineError& at, Run& run) {
  long long rank = -1;
  std::size_t on = 1;
  while (on < words.size() && words[on] != "on") ++on;
  if (words.size() < 2 || !parse_int(words[1], rank) || rank < 0 || rank > kMaxRank ||
      on + 1 >= words.size()) {
    at.fail("expected a rank line '#  Rank N [Group G] Pid P on HOST device D [BUS] NAME'");
  }
  run.ranks.insert(static_cast<int>(rank));
  const std::string& host = words[on + 1];
  if (std::find(run.hosts.begin(), run.hosts.end(), host) == run.hosts.end()) {
    run.hosts.push_back(host);
  }
  // The device's name follows its bus id "[...]".
  std::size_t bus = on + 2;
  while (bus < words.size() && words[bus].back() != ']') ++bus;
  std::string name;
  for (std::size_t i = bus + 1; i < words.size(); ++i) name += (name.empty() ? "" : " ") + words[i];
  if (!name.empty()) run.devices.insert(name);
}

// One comment line: a run's preamble, its rank lines or its column header; anything else
// (units, "out-of-place", "# Avg bus bandwidth", "# Out of bounds values") is skipped.
void read_comment(const std::string& text, const LineError& at, int line, Parsed& out) {
  const std::vector<std::string> words = split_words(text.substr(text.find('#') + 1));
  if (words.empty()) return;
  const bool preamble = text.find("nccl-tests version") != std::string::npos ||
                        text.find("Collective test starting") != std::string::npos ||
                        words[0] == "nThread";
  if (preamble && out.runs.back().started()) out.runs.push_back(Run{});
  Run& run = out.runs.back();
  if (run.first_line == 0) run.first_line = line;
  read_versions(words, out);
  if (words[0] == "Rank") {
    read_rank_line(words, at, run);
  } else if (words[0] == "size" && std::find(words.begin(), words.end(), "time") != words.end()) {
    const auto time = std::find(words.begin(), words.end(), "time");
    if (words.end() - time < 3) {
      at.fail("a column header must name the columns up to 'time algbw busbw'");
    }
    run.columns = words;
    run.header_line = line;
    run.time_column = static_cast<std::size_t>(time - words.begin());
  } else if (run.points.empty()) {
    read_binary(words, at, line, run);
  }
}

// One data row: size (bytes) in the first column, the out-of-place time (us) in the header's
// first "time" column. Rows of size 0 carry no cost and are skipped.
void read_row(const std::string& text, const LineError& at, Run& run) {
  if (run.columns.empty()) {
    at.fail(
        "a data row before the column header ('#  size  count  type ... time  algbw  busbw "
        "...'), so its time column is unknown; keep nccl-tests' comment lines");
  }
  const std::vector<std::string> words = split_words(text);
  const std::size_t needed = run.time_column + 3;  // ... time algbw busbw
  if (words.size() < needed) {
    std::string names;
    for (std::size_t i = 0; i < needed; ++i) names += (i ? " " : "") + run.columns[i];
    at.fail("expected at least " + std::to_string(needed) + " columns (" + names +
            ", as the header of line " + std::to_string(run.header_line) + " says), found " +
            std::to_string(words.size()));
  }
  long long size = -1;
  if (!parse_int(words[0], size) || size < 0 || size > kMaxBytes) {
    at.fail("size = '" + words[0] + "': expected a whole number of bytes");
  }
  double time_us = 0;
  if (!parse_number(words[run.time_column], time_us) || !(time_us > 0)) {
    at.fail("time (column " + std::to_string(run.time_column + 1) + ") = '" +
            words[run.time_column] + "': expected a number of microseconds > 0");
  }
  if (size == 0) return;
  if (!run.points.empty() && !(static_cast<double>(size) > run.points.back().bytes)) {
    at.fail("size " + std::to_string(size) + " does not exceed the previous row's " +
            std::to_string(static_cast<long long>(run.points.back().bytes)) +
            ": sizes must ascend within a run (concatenated runs each start with their "
            "'# nThread' line)");
  }
  run.points.push_back(LinkPoint{static_cast<double>(size), time_us * 1e-6});
}

Parsed parse_output(const std::string& text, const std::string& file) {
  Parsed out;
  out.runs.emplace_back();
  std::istringstream in(text);
  int line = 0;
  for (std::string s; std::getline(in, s);) {
    ++line;
    const std::string t = trim(s);
    if (t.empty()) continue;
    const LineError at(file, line, t);
    if (t[0] == '#') {
      read_comment(t, at, line, out);
    } else if (t.find(" NCCL INFO ") != std::string::npos ||
               t.find(" NCCL WARN ") != std::string::npos) {
      // NCCL's own log (NCCL_DEBUG) interleaved with the output: only its version is read.
      const auto v = t.find("NCCL version ");
      const auto words = split_words(t.substr(v == std::string::npos ? t.size() : v + 13));
      if (!words.empty() && !out.libraries.count("nccl")) out.libraries["nccl"] = words[0];
    } else {
      if (out.runs.back().first_line == 0) out.runs.back().first_line = line;
      read_row(t, at, out.runs.back());
    }
  }
  if (!out.runs.back().started()) out.runs.pop_back();
  return out;
}

std::string known_collectives() {
  std::string s;
  for (const auto& [binary, c] : kBinaries) {
    s += (s.empty() ? "" : ", ") + std::string(link_collective_name(c)) + " (" + binary + ")";
  }
  return s;
}

// A collective named by links.json name or by binary name; ConfigError naming `what` otherwise.
LinkCollective collective_named(const std::string& name, const std::string& what) {
  for (const auto& [binary, c] : kBinaries) {
    if (name == binary || name == link_collective_name(c)) return c;
  }
  throw ConfigError(what + ": links.json holds no curve of " + name + "; it holds " +
                    known_collectives());
}

// The run's curve: its collective, group size and fabric from the output and the options.
LinkCurve curve_of(const Run& run, const std::string& file, const NcclImportOptions& opts) {
  const std::string where = file + ": the run at line " + std::to_string(run.first_line);
  LinkCurve c;
  if (!run.binary.empty()) {
    c.collective = collective_named(run.binary, file + ": line " + std::to_string(run.binary_line));
    if (!opts.collective.empty() &&
        collective_named(opts.collective, "--collective = " + opts.collective) != c.collective) {
      throw ConfigError(where + " is " + run.binary + ", not " + opts.collective);
    }
  } else if (!opts.collective.empty()) {
    c.collective = collective_named(opts.collective, "--collective = " + opts.collective);
  } else {
    throw ConfigError(where +
                      " does not name its binary (no '# Collective test starting:' "
                      "line, as in older nccl-tests): pass --collective (one of " +
                      known_collectives() + ")");
  }
  c.ranks = static_cast<int>(run.ranks.size());
  if (opts.ranks > 0 && c.ranks > 0 && opts.ranks != c.ranks) {
    throw ConfigError(where + " lists " + std::to_string(c.ranks) + " ranks, not " +
                      std::to_string(opts.ranks));
  }
  if (c.ranks == 0) c.ranks = opts.ranks;
  if (c.ranks == 0) {
    throw ConfigError(where + " lists no '#  Rank N ...' lines: pass --ranks (the group size)");
  }
  if (c.ranks < 2) {
    throw ConfigError(where + " ran on " + std::to_string(c.ranks) +
                      " rank: a link curve needs a group of at least 2");
  }
  if (!opts.fabric.empty()) {
    c.fabric = opts.fabric;
  } else if (run.hosts.size() > 1) {
    c.fabric = "network";
  } else {
    throw ConfigError(
        where + " ran on " +
        (run.hosts.empty() ? std::string("unnamed hosts") : "one host, " + run.hosts[0]) +
        ": pass --fabric with the intra_node fabric its GPUs share (nvswitch, pcie)");
  }
  c.points = run.points;
  if (c.points.size() < 2) {
    throw ConfigError(where + " has " + std::to_string(c.points.size()) +
                      " data rows of size > 0: a curve needs at least two message sizes");
  }
  c.fit = fit_curve(c);
  if (!(c.fit.busbw_Bps > 0)) {
    throw ConfigError(where +
                      ": its times do not grow with the message size, so no bandwidth "
                      "can be fitted (time = latency + bytes x factor / busbw)");
  }
  return c;
}

// MeasuredOn.device: the option, else the one GPU name of every rank line.
std::string device_of(const Parsed& p, const std::string& file, const NcclImportOptions& opts) {
  if (!opts.device.empty()) return opts.device;
  std::set<std::string> names;
  for (const Run& r : p.runs) names.insert(r.devices.begin(), r.devices.end());
  if (names.size() == 1) return *names.begin();
  if (names.empty()) {
    throw ConfigError(file +
                      ": no rank line names a device: pass --device (a cluster spec's "
                      "gpu.name)");
  }
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "'" : ", '") + n + "'";
  throw ConfigError(file + ": the rank lines name several devices (" + list +
                    "): pass --device with the one the curves are for");
}

}  // namespace

LinkProfile import_nccl_tests(const std::string& text, const std::string& file,
                              const NcclImportOptions& opts) {
  const Parsed parsed = parse_output(text, file);
  if (parsed.runs.empty()) throw ConfigError(file + ": no nccl-tests output (no data rows)");
  LinkProfile p;
  p.backend = "nccl-tests";
  for (const Run& run : parsed.runs) {
    LinkCurve c = curve_of(run, file, opts);
    for (const LinkCurve& other : p.curves) {
      if (other.collective == c.collective && other.ranks == c.ranks && other.fabric == c.fabric) {
        throw ConfigError(file + ": the run at line " + std::to_string(run.first_line) +
                          " measures " + link_collective_name(c.collective) + " over " +
                          std::to_string(c.ranks) + " ranks on " + c.fabric + " again");
      }
    }
    p.curves.push_back(std::move(c));
  }
  p.on.device = device_of(parsed, file, opts);
  p.on.device_kind = "gpu";
  const auto& hosts = parsed.runs.front().hosts;
  p.on.host = hosts.empty() ? "unknown" : hosts.front();
  p.on.date = utc_now_iso8601();
  p.on.strata_version = version();
  p.on.libraries = parsed.libraries;
  if (!p.on.libraries.count("nccl")) p.on.libraries["nccl"] = "unknown";
  return p;
}

}  // namespace strata::profiler
