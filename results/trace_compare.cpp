// Prediction against measurement, task by task (trace_compare.hpp).
#include "results/trace_compare.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "common/error.hpp"

namespace strata::results {

namespace {

using strategies::TaskKind;

// The provenance hash `key` of a trace's otherData ("" when absent).
std::string hash_of(const Trace& t, const char* key) {
  const json::Json& o = t.other_data;
  if (!o.contains("provenance") || !o["provenance"].contains(key)) return "";
  return o["provenance"][key].get<std::string>();
}

struct RankSpan {
  double start = std::numeric_limits<double>::infinity();
  double end = -std::numeric_limits<double>::infinity();
  double compute = 0;  // busy time of the compute stream (its lanes do not overlap)
};

std::map<int, RankSpan> spans(const Trace& t, const std::set<int>& ranks) {
  std::map<int, RankSpan> out;
  for (const TraceEvent& e : t.events) {
    if (!ranks.count(e.rank)) continue;
    RankSpan& s = out[e.rank];
    s.start = std::min(s.start, e.start_s);
    s.end = std::max(s.end, e.start_s + e.duration_s);
    if (e.kind == TaskKind::kCompute) s.compute += e.duration_s;
  }
  return out;
}

double relative(double predicted, double measured) {
  return measured > 0 ? predicted / measured - 1 : std::numeric_limits<double>::quiet_NaN();
}

std::string percent(double e) {
  if (!std::isfinite(e)) return "     n/a";
  char b[32];
  std::snprintf(b, sizeof b, "%+7.1f%%", 100 * e);
  return b;
}

}  // namespace

std::string task_category(const TraceEvent& e) {
  switch (e.kind) {
    case TaskKind::kCompute:
      return std::string("compute ") + strategies::block_name(e.block) + " " +
             strategies::phase_name(e.phase);
    case TaskKind::kCollective:
      return std::string(strategies::collective_name(e.collective)) + " " +
             strategies::purpose_name(e.purpose);
    case TaskKind::kSend:
      return "send pp";
    case TaskKind::kRecv:
      return "recv pp";
  }
  return "?";
}

TraceComparison compare_traces(const Trace& predicted, const Trace& measured,
                               const std::string& predicted_file, const std::string& measured_file) {
  TraceComparison c;
  c.predicted_file = predicted_file;
  c.measured_file = measured_file;
  for (const char* key : {"model_hash", "strategy_hash"}) {
    const std::string p = hash_of(predicted, key), m = hash_of(measured, key);
    if (p != m) {
      throw ConfigError(measured_file + ": otherData.provenance." + key + " = \"" + m +
                        "\": not the " + key + " of " + predicted_file + " (\"" + p +
                        "\"): the traces are of different Plans; compare traces of the same "
                        "model and strategy");
    }
  }
  std::set<int> in_p, in_m;
  for (const TraceEvent& e : predicted.events) in_p.insert(e.rank);
  for (const TraceEvent& e : measured.events) in_m.insert(e.rank);
  std::set<int> ranks;
  std::set_intersection(in_p.begin(), in_p.end(), in_m.begin(), in_m.end(),
                        std::inserter(ranks, ranks.begin()));
  if (ranks.empty()) {
    throw ConfigError(measured_file + ": no rank of it is in " + predicted_file +
                      " (trace the same ranks: strata simulate --trace-ranks all)");
  }
  c.ranks.assign(ranks.begin(), ranks.end());

  std::map<std::pair<int, std::uint32_t>, const TraceEvent*> by_task_p, by_task_m;
  for (const TraceEvent& e : predicted.events) {
    if (ranks.count(e.rank)) by_task_p[{e.rank, e.task}] = &e;
  }
  for (const TraceEvent& e : measured.events) {
    if (ranks.count(e.rank)) by_task_m[{e.rank, e.task}] = &e;
  }
  std::map<std::string, CategoryComparison> categories;
  for (const auto& [key, p] : by_task_p) {
    const auto m = by_task_m.find(key);
    if (m == by_task_m.end()) {
      c.only_predicted.push_back(key);
      continue;
    }
    // As measured: from the call to its return, so a simulated collective or receive counts
    // the wait for its peers that its span leaves out.
    TaskComparison t{key.first, key.second, p->name, task_category(*p),
                     p->duration_s + p->waited_s, m->second->duration_s};
    CategoryComparison& cat = categories[t.category];
    cat.category = t.category;
    ++cat.tasks;
    cat.predicted_s += t.predicted_s;
    cat.measured_s += t.measured_s;
    c.tasks.push_back(std::move(t));
  }
  for (const auto& [key, m] : by_task_m) {
    if (!by_task_p.count(key)) c.only_measured.push_back(key);
  }
  for (auto& [name, cat] : categories) c.categories.push_back(cat);
  std::stable_sort(c.categories.begin(), c.categories.end(),
                   [](const CategoryComparison& a, const CategoryComparison& b) {
                     return a.measured_s > b.measured_s;
                   });

  const auto sp = spans(predicted, ranks), sm = spans(measured, ranks);
  const auto step = [](const std::map<int, RankSpan>& s) {
    double start = std::numeric_limits<double>::infinity(), end = -start;
    for (const auto& [r, x] : s) {
      start = std::min(start, x.start);
      end = std::max(end, x.end);
    }
    return end - start;
  };
  c.predicted_step_s = step(sp);
  c.measured_step_s = step(sm);
  for (int r : c.ranks) {
    c.predicted_idle_s += std::max(0.0, c.predicted_step_s - sp.at(r).compute);
    c.measured_idle_s += std::max(0.0, c.measured_step_s - sm.at(r).compute);
  }
  c.predicted_idle_s /= static_cast<double>(c.ranks.size());
  c.measured_idle_s /= static_cast<double>(c.ranks.size());
  return c;
}

namespace {

// The joined tasks by absolute difference, largest first.
std::vector<const TaskComparison*> worst_tasks(const TraceComparison& c, int n) {
  std::vector<const TaskComparison*> out;
  for (const TaskComparison& t : c.tasks) out.push_back(&t);
  std::stable_sort(out.begin(), out.end(), [](const TaskComparison* a, const TaskComparison* b) {
    return std::abs(a->predicted_s - a->measured_s) > std::abs(b->predicted_s - b->measured_s);
  });
  if (static_cast<int>(out.size()) > n) out.resize(static_cast<std::size_t>(std::max(0, n)));
  return out;
}

json::Json error_json(double predicted, double measured) {
  const double e = relative(predicted, measured);
  return std::isfinite(e) ? json::Json(e) : json::Json(nullptr);
}

}  // namespace

json::Json comparison_to_json(const TraceComparison& c, int worst) {
  json::Json cats = json::Json::array();
  for (const CategoryComparison& x : c.categories) {
    cats.push_back({{"category", x.category},
                    {"tasks", x.tasks},
                    {"predicted_s", x.predicted_s},
                    {"measured_s", x.measured_s},
                    {"error", error_json(x.predicted_s, x.measured_s)}});
  }
  json::Json tasks = json::Json::array();
  for (const TaskComparison* t : worst_tasks(c, worst)) {
    tasks.push_back({{"rank", t->rank},
                     {"task", t->task},
                     {"name", t->name},
                     {"category", t->category},
                     {"predicted_s", t->predicted_s},
                     {"measured_s", t->measured_s},
                     {"error", error_json(t->predicted_s, t->measured_s)}});
  }
  const auto pairs = [](const std::vector<std::pair<int, std::uint32_t>>& v) {
    json::Json a = json::Json::array();
    for (const auto& [r, t] : v) a.push_back({{"rank", r}, {"task", t}});
    return a;
  };
  return {{"kind", "strata.trace_comparison"},
          {"schema_version", 1},
          {"predicted", c.predicted_file},
          {"measured", c.measured_file},
          {"ranks", c.ranks},
          {"step", {{"predicted_s", c.predicted_step_s},
                    {"measured_s", c.measured_step_s},
                    {"error", error_json(c.predicted_step_s, c.measured_step_s)}}},
          {"compute_idle", {{"predicted_s", c.predicted_idle_s},
                            {"measured_s", c.measured_idle_s},
                            {"error", error_json(c.predicted_idle_s, c.measured_idle_s)}}},
          {"categories", cats},
          {"joined_tasks", c.tasks.size()},
          {"worst_tasks", tasks},
          {"only_predicted", pairs(c.only_predicted)},
          {"only_measured", pairs(c.only_measured)}};
}

std::string comparison_csv(const TraceComparison& c) {
  std::ostringstream os;
  os << "rank,task,name,category,predicted_s,measured_s,error\n";
  char line[64];
  for (const TaskComparison& t : c.tasks) {
    os << t.rank << "," << t.task << ",\"" << t.name << "\"," << t.category << ",";
    std::snprintf(line, sizeof line, "%.9g,%.9g,", t.predicted_s, t.measured_s);
    os << line;
    const double e = relative(t.predicted_s, t.measured_s);
    if (std::isfinite(e)) {
      std::snprintf(line, sizeof line, "%.6f", e);
      os << line;
    }
    os << "\n";
  }
  return os.str();
}

std::string render_comparison(const TraceComparison& c, int worst) {
  std::ostringstream os;
  char line[256];
  os << "Strata compare: " << c.predicted_file << " (predicted) against " << c.measured_file
     << " (measured), " << c.ranks.size() << " rank(s), " << c.tasks.size() << " tasks joined\n";
  os << "                                         predicted      measured    error\n";
  std::snprintf(line, sizeof line, "  %-36s %11.6f s %11.6f s %s\n", "step", c.predicted_step_s,
                c.measured_step_s, percent(relative(c.predicted_step_s, c.measured_step_s)).c_str());
  os << line;
  std::snprintf(line, sizeof line, "  %-36s %11.6f s %11.6f s %s\n", "idle (compute stream, mean)",
                c.predicted_idle_s, c.measured_idle_s,
                percent(relative(c.predicted_idle_s, c.measured_idle_s)).c_str());
  os << line;
  os << "  by category (sums over the joined tasks)\n";
  for (const CategoryComparison& x : c.categories) {
    const std::string name = x.category + " (" + std::to_string(x.tasks) + ")";
    std::snprintf(line, sizeof line, "    %-34s %11.6f s %11.6f s %s\n", name.c_str(),
                  x.predicted_s, x.measured_s,
                  percent(relative(x.predicted_s, x.measured_s)).c_str());
    os << line;
  }
  const auto w = worst_tasks(c, worst);
  if (!w.empty()) os << "  worst-predicted tasks (largest |predicted - measured|)\n";
  for (const TaskComparison* t : w) {
    std::snprintf(line, sizeof line, "    rank %-3d task %-6u %11.6f s %11.6f s %s  %s\n", t->rank,
                  t->task, t->predicted_s, t->measured_s,
                  percent(relative(t->predicted_s, t->measured_s)).c_str(), t->name.c_str());
    os << line;
  }
  if (!c.only_predicted.empty() || !c.only_measured.empty()) {
    os << "  only in one trace: " << c.only_predicted.size() << " predicted, "
       << c.only_measured.size() << " measured tasks\n";
  }
  return os.str();
}

}  // namespace strata::results
