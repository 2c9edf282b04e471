// `strata sweep`: simulate every combination of a few varied spec fields, one child
// `strata simulate` per point (one SimGrid engine per process), N at a time; write a CSV row per
// point (its figures, or why it was refused), each point's report.json and an SVG plot.
// defines: kSweepHelp, sweep_command; internally Vary, Point, the CSV and the SVG writers.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/farm.hpp"
#include "cli/launch.hpp"
#include "cli/specs.hpp"
#include "common/error.hpp"
#include "results/report.hpp"

namespace strata::cli {

const char* const kSweepHelp =
    R"(Usage: strata sweep --model M --cluster C --strategy S --vary PATH=V1,V2,... --out DIR
                    [--vary ...] [--set PATH=VALUE ...] [options]

Simulate every combination of the varied fields: each point is the specs with the point's
values set as by --set (docs/specs.md "Overriding fields"), simulated by a child
`strata simulate` (one SimGrid engine per process), --jobs of them at a time. Progress goes to
stderr, one line per finished point.

Required:
  --model M, --cluster C, --strategy S   the specs, as for strata simulate
  --vary PATH=V1,V2,...  a field and its values (comma-separated, each read like a --set
                         value); repeat for more fields: the points are every combination, the
                         first --vary varying slowest
  --out DIR              the output folder (replaced; written as DIR.partial and renamed)

Options:
  --set PATH=VALUE       an override applied to every point (repeatable)
  --gpus N               simulate every point on the first N GPUs (default: each point on as
                         many GPUs as its strategy's dp*tp*pp*cp)
  --nodes N              rescale a uniform cluster to N nodes
  --jobs N               simulations at a time on each rank (default: the host's cores,
                         shared by the ranks on that host)
  --rank-timeout S       under mpirun: a rank silent for S seconds is lost and its point
                         goes to another rank; when rank 0 is silent that long, the others
                         end the job (default 60)
  --efficiencies F, --profile FILES, --links FILES, --exact, --ignore-memory
                         passed to every strata simulate
  --help                 show this help

DIR gets sweep.csv (one row per point: the varied values, status ok / refused / failed, the
child's exit code, step time, tokens/s, model and hardware TFLOP/s per GPU, MFU, the largest
peak memory of any rank and its capacity, and for a point that was refused the error message),
sweep.svg (tokens/s and peak memory per point), timing.csv (the rank, attempts, start and
seconds of each point; the costliest start first), and points/NNN/report.json and
points/NNN/log.txt (the child's output) for each point NNN (from 001, in the CSV's order).

Across machines: `mpirun -np N strata sweep ...` (or srun) spreads the points over the ranks;
rank 0 hands each point to whichever rank has a free slot and writes every file, so DIR and its
sweep.csv are the same as one process's. A rank that dies (with Open MPI's `mpirun
--enable-recovery`; without it mpirun ends the job) or stops answering loses only the point it
was running, which another rank runs again; stderr and timing.csv say so. Specs given as files
must be readable at the same path on every host. docs/distributed.md.

dp is a field of the strategy like any other, not derived from the cluster: varying tp at a
fixed dp changes the number of GPUs a point needs (each point gets that many by default; with
--gpus N the points whose dp*tp*pp*cp is not N are refused). To keep the world fixed, vary dp
with tp, and read the refused combinations as such. A point refused as invalid (exit 1) or as
not fitting in memory (exit 3) is a row of the CSV; the sweep still succeeds. A point that
failed otherwise (a crash, an internal error) makes the sweep exit 4 after writing everything.
)";

namespace {

namespace fs = std::filesystem;

struct Vary {
  std::string path;                 // "strategy.tp"
  std::string label;                // "tp" (the last key, or the path when two share it)
  std::vector<std::string> values;  // as given
};

struct Point {
  std::vector<std::string> values;  // one per Vary
  std::string dir;                  // points/NNN
  int exit_code = -1;
  std::string error;                // refused or failed: the child's message
  results::Report report;
};

std::string label_of(const std::vector<Vary>& varies, const Point& p) {
  std::string out;
  for (std::size_t i = 0; i < varies.size(); ++i) {
    out += (i ? " " : "") + varies[i].label + "=" + p.values[i];
  }
  return out;
}

std::vector<Vary> parse_varies(const Args& args) {
  std::vector<Vary> varies;
  for (const std::string& text : args.get_all("--vary")) {
    const std::size_t eq = text.find('=');
    if (eq == std::string::npos) {
      throw ConfigError("--vary " + text + ": expected PATH=V1,V2,... (e.g. --vary strategy.tp=1,2,4)");
    }
    Vary v;
    v.path = text.substr(0, eq);
    v.values = comma_list("--vary " + v.path, text.substr(eq + 1));
    parse_override(v.path + "=" + v.values.front());  // the path's syntax and spec
    for (const Vary& w : varies) {
      if (w.path == v.path) throw ConfigError("--vary " + text + ": " + v.path + " is varied twice");
    }
    varies.push_back(v);
  }
  if (varies.empty()) throw ConfigError("--vary: required option is missing (see --help)");
  for (Vary& v : varies) {
    const std::size_t dot = v.path.rfind('.');
    v.label = v.path.substr(dot + 1);
  }
  for (Vary& v : varies) {
    const std::string last = v.path.substr(v.path.rfind('.') + 1);
    if (std::count_if(varies.begin(), varies.end(), [&](const Vary& w) {
          return w.path.substr(w.path.rfind('.') + 1) == last;
        }) > 1) {
      v.label = v.path;
    }
  }
  return varies;
}

// Every combination, the first Vary slowest.
std::vector<Point> combinations(const std::vector<Vary>& varies) {
  std::size_t count = 1;
  for (const Vary& v : varies) {
    count *= v.values.size();
    if (count > 10000) throw ConfigError("--vary: more than 10000 points; sweep fewer values");
  }
  std::vector<Point> points(count);
  for (std::size_t n = 0; n < count; ++n) {
    std::size_t rest = n;
    points[n].values.resize(varies.size());
    for (std::size_t i = varies.size(); i-- > 0;) {
      points[n].values[i] = varies[i].values[rest % varies[i].values.size()];
      rest /= varies[i].values.size();
    }
    char name[32];
    std::snprintf(name, sizeof name, "points/%03zu", n + 1);
    points[n].dir = name;
  }
  return points;
}


std::string status_of(const Point& p) {
  if (p.exit_code == kExitOk) return "ok";
  if (p.exit_code == kExitConfigError || p.exit_code == kExitOutOfMemory) return "refused";
  return "failed";
}

std::string sweep_csv(const std::vector<Vary>& varies, const std::vector<Point>& points) {
  std::string out = "point";
  for (const Vary& v : varies) out += "," + csv_field(v.path);
  out += ",status,exit_code,step_time_s,tokens_per_s,tflops_per_gpu,hardware_tflops_per_gpu,mfu,"
         "max_peak_memory_bytes,capacity_bytes,error\n";
  for (std::size_t n = 0; n < points.size(); ++n) {
    const Point& p = points[n];
    out += std::to_string(n + 1);
    for (const std::string& v : p.values) out += "," + csv_field(v);
    out += "," + status_of(p) + "," + std::to_string(p.exit_code);
    if (p.exit_code == kExitOk) {
      const results::Report& r = p.report;
      for (double v : {r.step_time_s, r.tokens_per_s, r.tflops_per_gpu, r.hardware_tflops_per_gpu,
                       r.mfu}) {
        out += "," + shortest_number(v);
      }
      out += "," + json::count(r.max_peak_memory_bytes()).dump() + "," +
             json::count(r.max_capacity_bytes()).dump();
      out += ",\n";
    } else {
      out += ",,,,,,,," + csv_field(p.error) + "\n";
    }
  }
  return out;
}

std::string xml_text(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

// Two bar panels over the points: tokens/s, and the largest peak memory per rank (GiB) with
// the device capacity as a line. Refused and failed points are marked instead of a bar.
std::string sweep_svg(const std::vector<Vary>& varies, const std::vector<Point>& points,
                      const std::string& title) {
  const double bar_w = 36, left = 90, top = 40, panel_h = 180, gap = 90;
  const double width = std::max(520.0, left + 30 + bar_w * static_cast<double>(points.size()));
  const double height = top + 2 * panel_h + 2 * gap + 10;
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" font-family=\"sans-serif\" font-size=\"11\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << left << "\" y=\"20\" font-size=\"14\">" << xml_text(title) << "</text>\n";
  struct Panel {
    std::string name;
    double scale;  // value units per plotted unit
    bool memory;
  };
  const Panel panels[2] = {{"tokens/s", 1.0, false}, {"max peak memory per rank (GiB)", 1 << 30, true}};
  for (int k = 0; k < 2; ++k) {
    const double y0 = top + k * (panel_h + gap);  // panel top
    const double base = y0 + panel_h;
    double max_v = 0;
    for (const Point& p : points) {
      if (p.exit_code != kExitOk) continue;
      const double v =
          panels[k].memory
              ? std::max(p.report.max_peak_memory_bytes(), p.report.max_capacity_bytes())
              : p.report.tokens_per_s;
      max_v = std::max(max_v, v / panels[k].scale);
    }
    if (max_v <= 0) max_v = 1;
    s << "<text x=\"10\" y=\"" << y0 + 10 << "\">" << xml_text(panels[k].name) << "</text>\n"
      << "<line x1=\"" << left << "\" y1=\"" << base << "\" x2=\"" << width - 20 << "\" y2=\""
      << base << "\" stroke=\"black\"/>\n"
      << "<line x1=\"" << left << "\" y1=\"" << y0 << "\" x2=\"" << left << "\" y2=\"" << base
      << "\" stroke=\"black\"/>\n";
    for (int t = 0; t <= 4; ++t) {
      const double v = max_v * t / 4, y = base - panel_h * t / 4;
      char tick[32];
      std::snprintf(tick, sizeof tick, "%.3g", v);
      s << "<text x=\"" << left - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">" << tick
        << "</text>\n";
    }
    for (std::size_t n = 0; n < points.size(); ++n) {
      const Point& p = points[n];
      const double x = left + 10 + bar_w * static_cast<double>(n);
      if (p.exit_code != kExitOk) {
        s << "<text x=\"" << x + bar_w / 2 - 4 << "\" y=\"" << base - 6 << "\" fill=\"#b00\">"
          << "&#215;<title>" << xml_text(label_of(varies, p) + ": " + status_of(p) + ": " + p.error)
          << "</title></text>\n";
      } else {
        const double v =
            (panels[k].memory ? p.report.max_peak_memory_bytes() : p.report.tokens_per_s) /
            panels[k].scale;
        const double h = panel_h * v / max_v;
        s << "<rect x=\"" << x << "\" y=\"" << base - h << "\" width=\"" << bar_w - 8
          << "\" height=\"" << h << "\" fill=\"" << (panels[k].memory ? "#7a5" : "#47a")
          << "\"><title>" << xml_text(label_of(varies, p)) << ": " << v << "</title></rect>\n";
        if (panels[k].memory) {
          const double cy = base - panel_h * (p.report.max_capacity_bytes() / panels[k].scale) / max_v;
          s << "<line x1=\"" << x - 2 << "\" y1=\"" << cy << "\" x2=\"" << x + bar_w - 6
            << "\" y2=\"" << cy << "\" stroke=\"#b00\"/>\n";
        }
      }
      // The point's values, rotated under the axis.
      const double lx = x + bar_w / 2 - 2, ly = base + 12;
      s << "<text x=\"" << lx << "\" y=\"" << ly << "\" transform=\"rotate(40 " << lx << " " << ly
        << ")\">" << xml_text(label_of(varies, p)) << "</text>\n";
    }
  }
  s << "<text x=\"" << left << "\" y=\"" << height - 4
    << "\" fill=\"#b00\">&#215; refused or failed point; red line: device memory</text>\n";
  s << "</svg>\n";
  return s.str();
}

}  // namespace

int sweep_command(const std::vector<std::string>& argv) {
  if (asks_for_help(argv)) {
    std::cout << kSweepHelp;
    return kExitOk;
  }
  const Args args(argv,
                  spec_flags_and({"--vary", "--out", "--jobs", "--rank-timeout", "--efficiencies",
                                  "--profile", "--links"}),
                  {}, {"--exact", "--ignore-memory"});
  const std::vector<Vary> varies = parse_varies(args);
  const fs::path out = results_directory("--out", args.require("--out"));
  std::vector<Point> points = combinations(varies);

  // The base specs load here, so a missing file or a bad --set stops before any simulation;
  // so does a --vary path the spec does not have (its first value shows it).
  const Inputs base = load_inputs(args);
  refuse_ps(base.strategy, "sweep");
  for (const Vary& v : varies) {
    std::vector<std::string> probe = argv;
    probe.insert(probe.end(), {"--set", v.path + "=" + v.values.front()});
    try {
      load_inputs(Args(probe, spec_flags_and({"--vary", "--out", "--jobs", "--rank-timeout",
                                              "--efficiencies", "--profile", "--links"}),
                       {}, {"--exact", "--ignore-memory"}));
    } catch (const ConfigError& e) {
      const std::string m = e.what();
      if (m.find("unknown key") != std::string::npos || m.rfind("--set ", 0) == 0) {
        throw ConfigError("--vary " + v.path + ": " + m);
      }
    }
  }

  // The child's command line, less the point's own overrides and --gpus.
  std::vector<std::string> common = {self_executable(), "simulate"};
  for (const char* flag : {"--model", "--cluster", "--strategy", "--nodes", "--efficiencies",
                           "--profile", "--links"}) {
    if (const auto v = args.get(flag)) common.insert(common.end(), {flag, *v});
  }
  for (const std::string& s : args.get_all("--set")) common.insert(common.end(), {"--set", s});
  for (const char* flag : {"--exact", "--ignore-memory"}) {
    if (args.has(flag)) common.push_back(flag);
  }

  const fs::path staging = out.string() + ".partial";
  fs::remove_all(staging);
  std::vector<FarmJob> jobs;
  std::vector<std::string> labels;
  for (const Point& p : points) {
    fs::create_directories(staging / p.dir);
    std::vector<std::string> child = common;
    for (std::size_t i = 0; i < varies.size(); ++i) {
      child.insert(child.end(), {"--set", varies[i].path + "=" + p.values[i]});
    }
    // Each point's world: --gpus, else what its strategy needs (a point whose specs do not
    // load gets none, and the child says why); its cost orders the hand-out.
    std::optional<std::string> gpus = args.get("--gpus");
    double cost = 0;
    std::vector<std::string> mine = {"--model", *args.get("--model"), "--cluster",
                                     *args.get("--cluster"), "--strategy",
                                     *args.get("--strategy")};
    for (std::size_t i = 1; i + 1 < child.size(); ++i) {
      if (child[i] == "--set" || child[i] == "--nodes") {
        mine.insert(mine.end(), {child[i], child[i + 1]});
      }
    }
    try {
      const Inputs in = load_inputs(Args(mine, kSpecFlags, {}, {}));
      if (!gpus) gpus = std::to_string(in.strategy.world_size());
      cost = simulation_cost(in.model, in.strategy);
    } catch (const std::exception&) {
    }
    if (gpus) child.insert(child.end(), {"--gpus", *gpus});
    child.insert(child.end(), {"--json", "{dir}/report.json"});
    jobs.push_back({child, {}, (staging / p.dir).string(), cost});
    labels.push_back(p.dir.substr(p.dir.rfind('/') + 1));
  }

  const std::vector<FarmOutcome> outcomes = farm_run(
      jobs, farm_options(args, "sweep"), [](std::size_t) { return true; },
      [&](std::size_t n, const FarmOutcome& o) {
        Point& p = points[n];
        const fs::path dir = staging / p.dir;
        p.exit_code = o.exit_code;
        p.error = o.lost;
        std::string line;
        if (p.exit_code == kExitOk) {
          try {
            p.report = results::read_report((dir / "report.json").string());
            char step[64];
            std::snprintf(step, sizeof step, "%.4g s/step", p.report.step_time_s);
            line = step;
          } catch (const std::exception& e) {
            p.exit_code = kExitInternal;
            p.error = e.what();
          }
        }
        if (p.exit_code != kExitOk) {
          if (p.error.empty()) p.error = child_message((dir / "log.txt").string(), "simulate");
          line = status_of(p) + " (exit " + std::to_string(p.exit_code) + "): " + p.error;
        }
        std::cerr << "point " << n + 1 << " of " << points.size() << ": " << label_of(varies, p)
                  << ": " << line << std::endl;
      });

  const std::string title = "strata sweep: " + base.model.name + " on " + base.cluster.name +
                            ", " + base.strategy.name;
  write_outputs({{"--out", (staging / "sweep.csv").string(), sweep_csv(varies, points)},
                 {"--out", (staging / "sweep.svg").string(), sweep_svg(varies, points, title)},
                 {"--out", (staging / "timing.csv").string(),
                  farm_timing_csv(labels, outcomes)}});
  fs::remove_all(out);
  fs::rename(staging, out);

  int ok = 0, refused = 0, failed = 0;
  for (const Point& p : points) {
    const std::string s = status_of(p);
    (s == "ok" ? ok : s == "refused" ? refused : failed)++;
  }
  std::cout << "wrote " << (out / "sweep.csv").string() << " and " << (out / "sweep.svg").string()
            << ": " << points.size() << " points, " << ok << " simulated, " << refused
            << " refused" << (failed ? ", " + std::to_string(failed) + " failed" : "") << "\n";
  if (failed) {
    std::cerr << "strata sweep: error: " << failed << " point(s) failed (not refused); see "
              << (out / "points").string() << "/NNN/log.txt\n";
    return kExitRuntime;
  }
  return kExitOk;
}

}  // namespace strata::cli
