// The failure spec, the step-granular event simulation and its goodput report (failures.hpp).
//
// defines:
//   Rng                    splitmix64: portable draws, so a seed gives the same failures anywhere
//   parse_failure_spec()   the spec, strict (json::ObjectReader), errors "<field> = <v>: <rule>"
//   failure_job()          GPUs' nodes and replicas, checkpoint bytes per node, from the Plan
//   young/daly_interval_s  the two closed forms (docs/failures.md)
//   simulate_trial()       one trial: steps, checkpoint writes, failures, restart or shrink
//   check_failures()       what the spec cannot ask of this job (indices, span, min_dp)
//   simulate_failures()    per rate: the sweep; per (rate, interval): the trials' spread
//   failure_report_to_json(), render_failure_report()   report.json's section, the table
#include "sim/failures.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>

#include "common/error.hpp"
#include "common/units.hpp"

namespace strata::sim {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// The longest span simulated, in steps per trial (each interval of the sweep runs every trial).
constexpr double kMaxSpanSteps = 1e7;

// splitmix64: a portable generator, so a seed gives the same failures on every platform.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double exponential(double rate) { return -std::log1p(-uniform()) / rate; }

 private:
  std::uint64_t state_;
};

double positive_or_zero(json::ObjectReader& r, const std::string& key, double fallback) {
  const double v = r.get_number_or(key, fallback);
  if (!(v >= 0) || !std::isfinite(v))
    json::fail(r.field(key), json::count(v), "must be a finite number >= 0");
  return v;
}

IntervalChoice parse_interval(const json::Json& v, const std::string& path) {
  if (v.is_string() && v.get<std::string>() == "auto") return {};
  if (v.is_number_integer() && v.get<long long>() >= 1) {
    return {IntervalChoice::Kind::kSteps, static_cast<double>(v.get<long long>())};
  }
  if (v.is_object()) {
    json::ObjectReader r(v, path);
    const double s = r.get_number("seconds");
    if (!(s > 0) || !std::isfinite(s)) json::fail(r.field("seconds"), s, "must be > 0");
    r.finish({"seconds"});
    return {IntervalChoice::Kind::kSeconds, s};
  }
  json::fail(path, v, "must be \"auto\", a number of steps >= 1 or {\"seconds\": S > 0}");
}

FailureEvent parse_event(const json::Json& v, const std::string& path) {
  json::ObjectReader r(v, path);
  FailureEvent e;
  const double h = r.get_number("time_h");
  if (!(h >= 0) || !std::isfinite(h)) json::fail(r.field("time_h"), h, "must be >= 0");
  e.time_h = h;
  e.time_s = h * 3600;
  int kinds = 0;
  for (const auto& [key, target] :
       {std::pair{"gpu", FailureTarget::kGpu}, std::pair{"node", FailureTarget::kNode},
        std::pair{"link", FailureTarget::kLink}}) {
    if (!r.has(key)) continue;
    ++kinds;
    const long long i = r.get_int(key);
    if (i < 0 || i > std::numeric_limits<int>::max()) json::fail(r.field(key), i, "must be >= 0");
    e.target = target;
    e.index = static_cast<int>(i);
  }
  if (kinds != 1) json::fail(path, v, "must name exactly one of gpu, node or link");
  r.finish({"time_h", "gpu", "node", "link"});
  return e;
}

const char* target_name(FailureTarget t) {
  return t == FailureTarget::kGpu ? "gpu" : t == FailureTarget::kNode ? "node" : "link";
}

}  // namespace

std::string IntervalChoice::label() const {
  if (kind == Kind::kAuto) return "auto";
  std::ostringstream os;
  os << value << (kind == Kind::kSteps ? " steps" : " s");
  return os.str();
}

FailureSpec parse_failure_spec(const json::Json& j, const std::string& what) {
  json::ObjectReader r(j, what);
  FailureSpec s;
  {
    json::ObjectReader span = r.get_object("span");
    if (span.has("hours") == span.has("steps")) {
      json::fail(r.field("span"), r.get_raw("span"), "must give exactly one of hours or steps");
    }
    if (span.has("hours")) {
      const double h = span.get_number("hours");
      if (!(h > 0) || !std::isfinite(h)) json::fail(span.field("hours"), h, "must be > 0");
      s.span_s = h * 3600;
    } else {
      const long long n = span.get_int("steps");
      if (n < 1) json::fail(span.field("steps"), n, "must be >= 1");
      s.span_steps = n;
    }
    span.finish({"hours", "steps"});
  }
  if (r.has("rate_per_gpu_hour")) {
    const json::Json& v = r.get_raw("rate_per_gpu_hour");
    const json::Json list = v.is_array() ? v : json::Json::array({v});
    if (list.empty()) json::fail(r.field("rate_per_gpu_hour"), v, "must not be empty");
    s.rates_per_gpu_hour.clear();
    for (const json::Json& x : list) {
      if (!x.is_number() || !(x.get<double>() >= 0) || !std::isfinite(x.get<double>())) {
        json::fail(r.field("rate_per_gpu_hour"), x,
                   "must be a number >= 0 (failures per GPU-hour)");
      }
      s.rates_per_gpu_hour.push_back(x.get<double>());
    }
  }
  if (r.has("events")) {
    const json::Json& list = r.get_raw("events");
    if (!list.is_array()) json::fail(r.field("events"), list, "must be an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string path = r.field("events") + "[" + std::to_string(i) + "]";
      s.events.push_back(parse_event(list[i], path));
      if (s.span_s > 0 && s.events.back().time_s >= s.span_s) {
        json::fail(path + ".time_h", json::count(s.events.back().time_h),
                   "must be before the end of the span (span.hours = " +
                       units::fixed(s.span_s / 3600, 3) + ")");
      }
    }
    std::stable_sort(
        s.events.begin(), s.events.end(),
        [](const FailureEvent& a, const FailureEvent& b) { return a.time_s < b.time_s; });
  }
  const std::string reaction = r.get_string_or("reaction", "restart");
  if (reaction == "restart") {
    s.reaction = FailureReaction::kRestart;
  } else if (reaction == "shrink") {
    s.reaction = FailureReaction::kShrink;
  } else {
    json::fail(r.field("reaction"), reaction, "must be \"restart\" or \"shrink\"");
  }
  s.detection_s = positive_or_zero(r, "detection_s", s.detection_s);
  s.restart_s = positive_or_zero(r, "restart_s", s.restart_s);
  if (r.has("shrink")) {
    json::ObjectReader sh = r.get_object("shrink");
    if (s.reaction != FailureReaction::kShrink) {
      json::fail(r.field("shrink"), r.get_raw("shrink"), "needs reaction \"shrink\"");
    }
    const long long min_dp = sh.get_int_or("min_dp", 0);
    if (min_dp < 0 || min_dp > 1 << 20) json::fail(sh.field("min_dp"), min_dp, "must be >= 1");
    s.min_dp = static_cast<int>(min_dp);
    s.replacement_s = positive_or_zero(sh, "replacement_h", s.replacement_s / 3600) * 3600;
    s.rejoin_s = positive_or_zero(sh, "rejoin_s", s.rejoin_s);
    sh.finish({"min_dp", "replacement_h", "rejoin_s"});
  }
  if (r.has("checkpoint")) {
    json::ObjectReader c = r.get_object("checkpoint");
    if (c.has("interval")) {
      const json::Json& v = c.get_raw("interval");
      s.intervals.clear();
      if (v.is_array()) {
        if (v.empty()) json::fail(c.field("interval"), v, "must not be empty");
        for (std::size_t i = 0; i < v.size(); ++i) {
          s.intervals.push_back(
              parse_interval(v[i], c.field("interval") + "[" + std::to_string(i) + "]"));
        }
      } else {
        s.intervals.push_back(parse_interval(v, c.field("interval")));
      }
    }
    if (c.has("cost_s")) s.checkpoint_cost_s = positive_or_zero(c, "cost_s", 0);
    const double gbps = c.get_number_or("write_gb_per_s_per_node", 5);
    if (!(gbps > 0) || !std::isfinite(gbps)) {
      json::fail(c.field("write_gb_per_s_per_node"), gbps, "must be > 0 (GB/s)");
    }
    s.write_bytes_per_s_per_node = gbps * 1e9;
    c.finish({"interval", "cost_s", "write_gb_per_s_per_node"});
  }
  const long long trials = r.get_int_or("trials", s.trials);
  if (trials < 1 || trials > 10000) json::fail(r.field("trials"), trials, "must be 1 .. 10000");
  s.trials = static_cast<int>(trials);
  const long long seed = r.get_int_or("seed", 1);
  if (seed < 0) json::fail(r.field("seed"), seed, "must be >= 0");
  s.seed = static_cast<std::uint64_t>(seed);
  r.finish({"span", "rate_per_gpu_hour", "events", "reaction", "detection_s", "restart_s", "shrink",
            "checkpoint", "trials", "seed"});
  return s;
}

FailureSpec load_failure_spec(const std::string& path) {
  const json::Json j = json::parse_file(path);
  try {
    return parse_failure_spec(j);
  } catch (const ConfigError& e) {
    throw ConfigError(path + ": " + e.what());
  }
}

FailureJob failure_job(const strategies::Plan& plan, const strategies::ClusterSpec& cluster,
                       int global_batch_size, int seq_length) {
  FailureJob job;
  job.tokens_per_step = static_cast<double>(global_batch_size) * seq_length;
  job.dp = plan.grid().size(strategies::Dim::kDp);
  int node = 0;
  for (const strategies::NodeGroup& g : cluster.node_groups) {
    for (int n = 0; n < g.nodes; ++n, ++node) {
      for (int i = 0; i < g.gpus_per_node; ++i) {
        if (static_cast<int>(job.node_of_gpu.size()) < plan.world_size) {
          job.node_of_gpu.push_back(node);
        }
      }
    }
  }
  std::map<int, double> bytes_on_node;
  for (int rank = 0; rank < plan.world_size; ++rank) {
    job.replica_of_gpu.push_back(plan.grid().coord(rank, strategies::Dim::kDp));
    const strategies::StaticMemory& m = plan.program_of(rank).memory.static_bytes;
    bytes_on_node[job.node_of_gpu[rank]] += m.params + m.optimizer;
  }
  for (const auto& [n, bytes] : bytes_on_node) {
    job.checkpoint_bytes_per_node = std::max(job.checkpoint_bytes_per_node, bytes);
  }
  return job;
}

std::vector<int> shrink_dps(const FailureSpec& spec, int dp) {
  std::vector<int> dps;
  if (spec.reaction != FailureReaction::kShrink) return dps;
  for (int d = spec.min_dp > 0 ? spec.min_dp : dp - 1; d < dp; ++d) {
    if (d >= 1) dps.push_back(d);
  }
  return dps;
}

double young_interval_s(double checkpoint_s, double mtbf_s) {
  return std::sqrt(2 * checkpoint_s * mtbf_s);
}

double daly_interval_s(double checkpoint_s, double mtbf_s) {
  if (!std::isfinite(mtbf_s)) return kInf;
  if (checkpoint_s >= 2 * mtbf_s) return mtbf_s;
  const double x = std::sqrt(checkpoint_s / (2 * mtbf_s));
  return std::sqrt(2 * checkpoint_s * mtbf_s) * (1 + x / 3 + x * x / 9) - checkpoint_s;
}

TrialResult simulate_trial(const FailureSpec& spec, const FailureJob& job, double checkpoint_s,
                           int interval_steps, double rate_per_gpu_hour, std::uint64_t seed) {
  Rng rng(seed);
  const int gpus = static_cast<int>(job.node_of_gpu.size());
  const double rate_per_s = rate_per_gpu_hour * gpus / 3600;
  double next_random = rate_per_s > 0 ? rng.exponential(rate_per_s) : kInf;
  std::size_t next_event = 0;
  const auto next_failure = [&] {
    const double e = next_event < spec.events.size() ? spec.events[next_event].time_s : kInf;
    return std::min(e, next_random);
  };
  // The next failure's replicas (pops it).
  const auto pop_failure = [&] {
    std::set<int> replicas;
    const double e = next_event < spec.events.size() ? spec.events[next_event].time_s : kInf;
    if (e <= next_random) {
      const FailureEvent& ev = spec.events[next_event++];
      for (int g = 0; g < gpus; ++g) {
        if (ev.target == FailureTarget::kGpu ? g == ev.index : job.node_of_gpu[g] == ev.index) {
          replicas.insert(job.replica_of_gpu[g]);
        }
      }
    } else {
      replicas.insert(job.replica_of_gpu[rng.next() % static_cast<std::uint64_t>(gpus)]);
      next_random += rng.exponential(rate_per_s);
    }
    return replicas;
  };

  TrialResult r;
  const bool by_time = spec.span_s > 0;
  const int min_dp = spec.min_dp > 0 ? spec.min_dp : job.dp - 1;
  std::vector<double> back_at(job.dp, 0);  // shrink: when an out replica rejoins; 0 = in
  int out = 0;
  double t = 0, since_work = 0, since_time = 0;
  int since_steps = 0;
  const auto done = [&] {
    return by_time ? t >= spec.span_s
                   : r.useful_steps >= static_cast<double>(spec.span_steps) - 1e-9;
  };
  // A failure at f while the job was busy since t (a step or a checkpoint write).
  const auto fail = [&](double f) {
    f = std::max(f, t);
    ++r.failures;
    const std::set<int> hit = pop_failure();
    int new_out = 0;
    for (int rep : hit) new_out += back_at[rep] == 0 ? 1 : 0;
    if (spec.reaction == FailureReaction::kShrink && new_out == 0) return;  // idle GPUs only
    if (spec.reaction == FailureReaction::kShrink && job.dp - out - new_out >= min_dp) {
      for (int rep : hit) {
        if (back_at[rep] == 0) back_at[rep] = f + spec.replacement_s;
      }
      out += new_out;
      r.lost_work_s += f - t;  // the step in flight
      t = f + spec.detection_s;
      r.downtime_s += spec.detection_s;
      return;
    }
    // Restart from the last checkpoint: everything since it is lost.
    r.lost_work_s += since_time + (f - t);
    r.useful_steps -= since_work;
    since_work = since_time = 0;
    since_steps = 0;
    t = f + spec.detection_s + spec.restart_s;
    while (next_failure() < t && !(by_time && next_failure() >= spec.span_s)) {
      ++r.failures;
      const double g = next_failure();
      pop_failure();
      t = g + spec.detection_s + spec.restart_s;
    }
    r.downtime_s += t - f;
    std::fill(back_at.begin(), back_at.end(), 0.0);  // a restart brings the whole job back
    out = 0;
  };

  // A span in steps that failures keep from finishing (an MTBF far below the step) stops at
  // 1000 times its failure-free time: the goodput is then what was done by then.
  const double give_up_s =
      by_time ? kInf
              : 1000.0 * static_cast<double>(spec.span_steps) * (job.step_time_s + checkpoint_s);
  while (!done() && t < give_up_s) {
    if (out > 0) {  // replaced replicas rejoin at this step boundary
      int back = 0;
      for (double& b : back_at) {
        if (b > 0 && b <= t) {
          b = 0;
          ++back;
        }
      }
      if (back > 0) {
        out -= back;
        t += spec.rejoin_s;
        r.downtime_s += spec.rejoin_s;
        continue;
      }
    }
    const int dp_now = job.dp - out;
    const double step = dp_now == job.dp ? job.step_time_s : job.step_time_at_dp.at(dp_now);
    if (next_failure() < t + step && !(by_time && next_failure() >= spec.span_s)) {
      fail(next_failure());
      continue;
    }
    if (by_time && t + step > spec.span_s) break;  // the span ends within this step
    t += step;
    const double work = static_cast<double>(dp_now) / job.dp;
    r.useful_steps += work;
    since_work += work;
    since_time += step;
    if (++since_steps < interval_steps) continue;
    if (by_time && t >= spec.span_s) break;
    if (next_failure() < t + checkpoint_s && !(by_time && next_failure() >= spec.span_s)) {
      // A failure during the write: the write is lost with the steps before it.
      const double f = std::max(t, next_failure());
      r.checkpoint_s += f - t;
      fail(f);
      continue;
    }
    t += checkpoint_s;
    r.checkpoint_s += checkpoint_s;
    since_work = since_time = 0;
    since_steps = 0;
  }
  r.wall_s = by_time ? spec.span_s : t;
  return r;
}

namespace {

Spread spread(const std::vector<double>& v) {
  Spread s;
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.stddev += (x - s.mean) * (x - s.mean);
  s.stddev = std::sqrt(s.stddev / static_cast<double>(v.size()));
  return s;
}

struct Trials {
  std::vector<TrialResult> results;
  std::vector<double> goodput;
};

Trials run_trials(const FailureSpec& spec, const FailureJob& job, double checkpoint_s, int interval,
                  double rate) {
  Trials out;
  for (int i = 0; i < spec.trials; ++i) {
    out.results.push_back(simulate_trial(spec, job, checkpoint_s, interval, rate,
                                         spec.seed + static_cast<std::uint64_t>(i)));
    const TrialResult& t = out.results.back();
    out.goodput.push_back(t.useful_steps * job.step_time_s / t.wall_s);
  }
  return out;
}

double mean(const std::vector<double>& v) { return spread(v).mean; }

}  // namespace

void check_failures(const FailureSpec& spec, const FailureJob& job) {
  const int gpus = static_cast<int>(job.node_of_gpu.size());
  const int nodes = gpus == 0 ? 0 : job.node_of_gpu.back() + 1;
  for (std::size_t i = 0; i < spec.events.size(); ++i) {
    const FailureEvent& e = spec.events[i];
    const int limit = e.target == FailureTarget::kGpu ? gpus : nodes;
    const std::string path = "failures.events[" + std::to_string(i) + "]." + target_name(e.target);
    if (e.index >= limit) {
      json::fail(path, e.index,
                 std::string("must be below the job's ") + std::to_string(limit) +
                     (e.target == FailureTarget::kGpu ? " GPUs" : " nodes"));
    }
    const double end = static_cast<double>(spec.span_steps) * job.step_time_s;
    if (spec.span_steps > 0 && job.step_time_s > 0 && e.time_s >= end) {
      json::fail(
          "failures.events[" + std::to_string(i) + "].time_h", json::count(e.time_h),
          "must be before the end of the span (span.steps = " + std::to_string(spec.span_steps) +
              " steps of " + units::fixed(job.step_time_s, 3) +
              " s = " + units::fixed(end / 3600, 3) + " h)");
    }
  }
  if (spec.reaction == FailureReaction::kShrink) {
    if (job.dp < 2) {
      json::fail("failures.reaction", "shrink", "needs dp >= 2 (the strategy's dp is 1)");
    }
    if (spec.min_dp >= job.dp) {
      json::fail("failures.shrink.min_dp", spec.min_dp,
                 "must be below the strategy's dp (" + std::to_string(job.dp) + ")");
    }
  }
}

FailureReport simulate_failures(const FailureSpec& spec, const FailureJob& job) {
  check_failures(spec, job);
  const int gpus = static_cast<int>(job.node_of_gpu.size());
  STRATA_CHECK(job.step_time_s > 0 && gpus > 0, "simulate_failures: no step time or no GPUs");
  if (spec.span_s > 0 && spec.span_s / job.step_time_s > kMaxSpanSteps) {
    json::fail("failures.span.hours", json::count(spec.span_s / 3600),
               "covers " + units::fixed(spec.span_s / job.step_time_s, 0) + " steps of " +
                   units::fixed(job.step_time_s, 4) + " s; at most " +
                   units::fixed(kMaxSpanSteps, 0) + " steps are simulated per trial");
  }
  if (static_cast<double>(spec.span_steps) > kMaxSpanSteps) {
    json::fail("failures.span.steps", spec.span_steps,
               "must be at most " + units::fixed(kMaxSpanSteps, 0) + " (steps per trial)");
  }
  for (int d : shrink_dps(spec, job.dp)) {
    STRATA_CHECK(job.step_time_at_dp.count(d) == 1, "simulate_failures: no step time at a dp");
  }

  FailureReport rep;
  rep.reaction = spec.reaction == FailureReaction::kRestart ? "restart" : "shrink";
  rep.span_s = spec.span_s;
  rep.span_steps = spec.span_steps;
  rep.step_time_s = job.step_time_s;
  rep.tokens_per_step = job.tokens_per_step;
  rep.checkpoint_cost_derived = spec.checkpoint_cost_s < 0;
  rep.checkpoint_bytes_per_node = job.checkpoint_bytes_per_node;
  rep.checkpoint_s = rep.checkpoint_cost_derived
                         ? job.checkpoint_bytes_per_node / spec.write_bytes_per_s_per_node
                         : spec.checkpoint_cost_s;
  rep.detection_s = spec.detection_s;
  rep.restart_s = spec.restart_s;
  rep.gpus = gpus;
  rep.dp = job.dp;
  rep.explicit_events = static_cast<int>(spec.events.size());
  rep.trials = spec.trials;
  rep.seed = spec.seed;
  rep.step_time_at_dp = job.step_time_at_dp;

  // No interval longer than the span: "never" checkpoints once at its end.
  const double span_steps = spec.span_steps > 0 ? static_cast<double>(spec.span_steps)
                                                : std::ceil(spec.span_s / job.step_time_s);
  const auto to_steps = [&](double seconds) {
    const double steps = std::round(seconds / job.step_time_s);
    return static_cast<int>(std::clamp(steps, 1.0, std::max(1.0, span_steps)));
  };
  for (double rate : spec.rates_per_gpu_hour) {
    const double mtbf_s = rate > 0 ? 3600 / (rate * gpus) : kInf;
    const double young_s = young_interval_s(rep.checkpoint_s, mtbf_s);
    const double daly_s = daly_interval_s(rep.checkpoint_s, mtbf_s);
    const int young_steps = to_steps(young_s);
    // The sweep: Young's interval x 2^(i/4), i = -8 .. 8, whole steps, each once.
    std::vector<std::pair<int, double>> sweep;
    std::set<int> seen;
    for (int i = -8; i <= 8; ++i) {
      const int k = to_steps(young_steps * job.step_time_s * std::pow(2.0, i / 4.0));
      if (!seen.insert(k).second) continue;
      sweep.emplace_back(k, mean(run_trials(spec, job, rep.checkpoint_s, k, rate).goodput));
    }
    const auto best =
        std::max_element(sweep.begin(), sweep.end(),
                         [](const auto& a, const auto& b) { return a.second < b.second; });
    for (const IntervalChoice& choice : spec.intervals) {
      FailureRow row;
      row.rate_per_gpu_hour = rate;
      row.interval_label = choice.label();
      row.interval_steps = choice.kind == IntervalChoice::Kind::kAuto ? to_steps(daly_s)
                           : choice.kind == IntervalChoice::Kind::kSteps
                               ? static_cast<int>(choice.value)
                               : to_steps(choice.value);
      row.mtbf_s = mtbf_s;
      const Trials trials = run_trials(spec, job, rep.checkpoint_s, row.interval_steps, rate);
      std::vector<double> wall, useful, failures, lost, down, ckpt, tokens;
      for (const TrialResult& t : trials.results) {
        wall.push_back(t.wall_s);
        useful.push_back(t.useful_steps);
        failures.push_back(t.failures);
        lost.push_back(t.lost_work_s);
        down.push_back(t.downtime_s);
        ckpt.push_back(t.checkpoint_s);
        tokens.push_back(t.useful_steps * job.tokens_per_step / t.wall_s);
      }
      row.wall_s = spread(wall);
      row.useful_steps = spread(useful);
      row.failures = spread(failures);
      row.lost_work_s = spread(lost);
      row.downtime_s = spread(down);
      row.checkpoint_s = spread(ckpt);
      row.goodput = spread(trials.goodput);
      row.tokens_per_s = spread(tokens);
      row.young_interval_s = young_s;
      row.daly_interval_s = daly_s;
      row.young_interval_steps = young_steps;
      row.sweep = sweep;
      row.best_interval_steps = best->first;
      row.best_goodput = best->second;
      rep.rows.push_back(std::move(row));
    }
  }
  return rep;
}

namespace {

json::Json spread_json(const Spread& s) {
  return {{"mean", s.mean}, {"stddev", s.stddev}, {"min", s.min}, {"max", s.max}};
}

// JSON has no infinity: an infinite MTBF or interval is written as null.
json::Json finite_or_null(double v) { return std::isfinite(v) ? json::Json(v) : json::Json(); }

}  // namespace

json::Json failure_report_to_json(const FailureReport& r) {
  json::Json at_dp = json::Json::array();
  for (const auto& [dp, s] : r.step_time_at_dp) at_dp.push_back({{"dp", dp}, {"step_time_s", s}});
  json::Json rows = json::Json::array();
  for (const FailureRow& row : r.rows) {
    json::Json sweep = json::Json::array();
    for (const auto& [k, g] : row.sweep) sweep.push_back({{"interval_steps", k}, {"goodput", g}});
    rows.push_back({{"rate_per_gpu_hour", row.rate_per_gpu_hour},
                    {"interval", row.interval_label},
                    {"interval_steps", row.interval_steps},
                    {"interval_s", row.interval_steps * r.step_time_s},
                    {"mtbf_s", finite_or_null(row.mtbf_s)},
                    {"wall_s", spread_json(row.wall_s)},
                    {"useful_steps", spread_json(row.useful_steps)},
                    {"failures", spread_json(row.failures)},
                    {"lost_work_s", spread_json(row.lost_work_s)},
                    {"downtime_s", spread_json(row.downtime_s)},
                    {"checkpoint_s", spread_json(row.checkpoint_s)},
                    {"goodput", spread_json(row.goodput)},
                    {"effective_tokens_per_s", spread_json(row.tokens_per_s)},
                    {"young_interval_s", finite_or_null(row.young_interval_s)},
                    {"daly_interval_s", finite_or_null(row.daly_interval_s)},
                    {"young_interval_steps", row.young_interval_steps},
                    {"best_interval_steps", row.best_interval_steps},
                    {"best_goodput", row.best_goodput},
                    {"sweep", std::move(sweep)}});
  }
  json::Json j = {{"reaction", r.reaction},
                  {"gpus", r.gpus},
                  {"dp", r.dp},
                  {"step_time_s", r.step_time_s},
                  {"tokens_per_step", r.tokens_per_step},
                  {"checkpoint_s", r.checkpoint_s},
                  {"checkpoint_cost_derived", r.checkpoint_cost_derived},
                  {"checkpoint_bytes_per_node", r.checkpoint_bytes_per_node},
                  {"detection_s", r.detection_s},
                  {"restart_s", r.restart_s},
                  {"explicit_events", r.explicit_events},
                  {"trials", r.trials},
                  {"seed", r.seed},
                  {"step_time_at_dp", std::move(at_dp)},
                  {"rows", std::move(rows)}};
  if (r.span_s > 0) {
    j["span_hours"] = r.span_s / 3600;
  } else {
    j["span_steps"] = r.span_steps;
  }
  return j;
}

std::string render_failure_report(const FailureReport& r) {
  using units::fixed;
  std::ostringstream os;
  os << "Failures (" << r.reaction << ", " << r.trials << " trials from seed " << r.seed << ", "
     << (r.span_s > 0 ? fixed(r.span_s / 3600, 1) + " h" : std::to_string(r.span_steps) + " steps")
     << ", " << r.gpus << " GPUs, dp " << r.dp << ")\n";
  os << "  step time          " << fixed(r.step_time_s, 4) << " s without failures\n";
  for (const auto& [dp, s] : r.step_time_at_dp) {
    os << "  step at dp " << dp << "       " << fixed(s, 4) << " s (shrunk)\n";
  }
  os << "  checkpoint         " << fixed(r.checkpoint_s, 2) << " s"
     << (r.checkpoint_cost_derived
             ? " (" + units::format_bytes(r.checkpoint_bytes_per_node) + " per node)"
             : "")
     << "; detection " << fixed(r.detection_s, 1) << " s, restart " << fixed(r.restart_s, 1)
     << " s\n";
  os << "  rate/GPU-h  interval       steps  failures  lost_h  down_h  ckpt_h  goodput (sd)"
        "     tokens/s   young  daly  best (goodput)\n";
  for (const FailureRow& row : r.rows) {
    char line[320];
    std::snprintf(line, sizeof line,
                  "  %-10.3g %-12s %7d %9.1f %7.2f %7.2f %7.2f %7.4f (%.4f) %11.0f %7d %5d %5d "
                  "(%.4f)\n",
                  row.rate_per_gpu_hour, row.interval_label.c_str(), row.interval_steps,
                  row.failures.mean, row.lost_work_s.mean / 3600, row.downtime_s.mean / 3600,
                  row.checkpoint_s.mean / 3600, row.goodput.mean, row.goodput.stddev,
                  row.tokens_per_s.mean, row.young_interval_steps,
                  std::isfinite(row.daly_interval_s)
                      ? static_cast<int>(std::lround(row.daly_interval_s / r.step_time_s))
                      : -1,
                  row.best_interval_steps, row.best_goodput);
    os << line;
  }
  return os.str();
}

}  // namespace strata::sim
