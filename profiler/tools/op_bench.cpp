// The op bench (op_bench.hpp): the Plan's distinct ops, the checks made before any is timed,
// and each op's runs summarised into the profile.
#include "profiler/tools/op_bench.hpp"

#include <algorithm>
#include <set>
#include <string>

#include "common/error.hpp"
#include "common/version.hpp"
#include "executor/interpreter.hpp"
#include "kernels/backend.hpp"

namespace strata::profiler {

using strategies::Program;
using strategies::TaskKind;

namespace {

// The first rank of each stage: the rank whose program's ops are timed.
std::vector<int> first_rank_of_stages(const strategies::ProgramSet& plan) {
  std::vector<int> first(plan.programs.size(), -1);
  for (int r = 0; r < plan.world_size; ++r) {
    const int s = plan.stage_of(r);
    if (s >= 0 && static_cast<std::size_t>(s) < first.size() && first[s] < 0) first[s] = r;
  }
  return first;
}

// The device the ops are measured for: the one device of every rank timed, of the kind they
// are timed on (a CPU for the CPU backend, a GPU for CUDA).
const strategies::DeviceSpec& timed_device(const strategies::Plan& plan,
                                           const std::vector<OpSite>& sites,
                                           kernels::Backend backend) {
  const bool on_cpu = backend == kernels::Backend::kCpu;
  const strategies::DeviceSpec& first = plan.cluster.group_of_gpu(sites.front().rank).gpu;
  for (const OpSite& s : sites) {
    const strategies::DeviceSpec& d = plan.cluster.group_of_gpu(s.rank).gpu;
    if ((d.kind == strategies::DeviceKind::kCpu) != on_cpu) {
      throw ConfigError(
          "cluster '" + plan.cluster.name + "': rank " + std::to_string(s.rank) + " is " +
          (on_cpu ? "a GPU" : "a CPU") + " (" + d.name + "), but ops are timed on " +
          (on_cpu ? "this machine's CPU" : "a CUDA GPU") +
          ": its times would be filed under that device's name; lower the Plan for " +
          (on_cpu ? "a CPU cluster (e.g. local-cpu)" : "the GPU cluster this GPU belongs to"));
    }
    if (d.name != first.name) {
      throw ConfigError("cluster '" + plan.cluster.name +
                        "': the ranks timed hold different "
                        "devices ('" +
                        first.name + "', '" + d.name +
                        "'); a profile is for one "
                        "device: profile a uniform cluster");
    }
  }
  return first;
}

MeasuredOn measured_on(const strategies::DeviceSpec& device, const exec::OpTimerOptions& timer) {
  MeasuredOn on;
  on.device = device.name;
  on.device_kind = timer.backend == kernels::Backend::kCpu ? "cpu" : "gpu";
  if (timer.backend == kernels::Backend::kCuda && kernels::cuda_device_count() > timer.device) {
    on.libraries["cuda_device"] = kernels::cuda_device_properties(timer.device).name;
  }
  on.host = host_name();
  on.date = utc_now_iso8601();
  on.strata_version = version();
  if (const std::string eigen = kernels::eigen_version(); !eigen.empty()) {
    on.libraries["eigen"] = eigen;
  }
  return on;
}

}  // namespace

std::vector<OpSite> distinct_ops(const strategies::ProgramSet& plan) {
  std::vector<OpSite> sites;
  std::set<OpKey> seen;
  const std::vector<int> ranks = first_rank_of_stages(plan);
  for (std::size_t s = 0; s < plan.programs.size(); ++s) {
    if (ranks[s] < 0) continue;  // a program no rank runs
    const Program& p = plan.programs[s];
    for (std::uint32_t t = 0; t < p.tasks.size(); ++t) {
      if (p.tasks[t].kind != TaskKind::kCompute) continue;
      for (std::uint32_t k = 0; k < p.tasks[t].op_count; ++k) {
        const strategies::Op& op = p.ops_of(p.tasks[t])[k];
        if (!exec::untimed_reason(op).empty()) continue;
        const OpKey key = op_key(op);
        if (seen.insert(key).second) sites.push_back({key, ranks[s], t, k});
      }
    }
  }
  return sites;
}

OpMeasurement measurement_of(const OpKey& key, std::vector<double> seconds) {
  STRATA_CHECK(!seconds.empty(), "a measurement needs at least one timed run");
  std::sort(seconds.begin(), seconds.end());
  const std::size_t n = seconds.size();
  OpMeasurement m;
  m.key = key;
  m.min_s = seconds.front();
  m.max_s = seconds.back();
  m.median_s = n % 2 == 1 ? seconds[n / 2] : (seconds[n / 2 - 1] + seconds[n / 2]) / 2;
  m.repetitions = static_cast<int>(n);
  return m;
}

OpProfile measure_ops(const strategies::Plan& plan, const OpBenchOptions& options) {
  const exec::OpTimerOptions& timer = options.timer;
  if (timer.warmup < 0) {
    throw ConfigError("warmup = " + std::to_string(timer.warmup) + ": must be >= 0");
  }
  if (timer.repetitions < 1) {
    throw ConfigError("repetitions = " + std::to_string(timer.repetitions) + ": must be >= 1");
  }
  const std::vector<OpSite> sites = distinct_ops(plan);
  if (sites.empty()) throw ConfigError("the Plan has no compute op to time");
  OpProfile profile;
  profile.on = measured_on(timed_device(plan, sites, timer.backend), timer);
  for (const int rank : first_rank_of_stages(plan)) {
    if (rank < 0) continue;
    if (const std::string why = exec::refusal(plan, rank); !why.empty()) {
      throw ConfigError("the executor cannot run this Plan: " + why);
    }
  }
  if (options.trials < 1 || options.trials > timer.repetitions) {
    throw ConfigError("trials = " + std::to_string(options.trials) + ": must be from 1 to the " +
                      std::to_string(timer.repetitions) + " repetitions");
  }
  profile.warmup = timer.warmup;
  profile.repetitions = timer.repetitions;
  profile.trials = options.trials;
  profile.model = plan.model.name;
  profile.strategy = plan.strategy.name;
  profile.cluster = plan.cluster.name;
  // Trials: every op is timed in each pass, on inputs allocated and filled afresh (other memory,
  // other values), its repetitions shared among the passes; its median and spread are over all
  // of them. What differs between passes (where the inputs landed in memory, a shared host's
  // speed drifting) is then inside each op's spread, as it is between two profiles.
  std::vector<std::vector<double>> seconds(sites.size());
  const std::size_t n = sites.size();
  for (int trial = 0; trial < options.trials; ++trial) {
    exec::OpTimerOptions pass = timer;
    pass.repetitions =
        timer.repetitions / options.trials + (trial < timer.repetitions % options.trials ? 1 : 0);
    pass.seed = timer.seed + static_cast<std::uint64_t>(trial);
    for (std::size_t i = 0; i < n; ++i) {
      const OpSite& s = sites[i];
      if (options.progress) options.progress(trial * n + i + 1, options.trials * n, s);
      exec::OpTiming t = exec::time_op(plan, s.rank, s.task, s.op_index, pass);
      seconds[i].insert(seconds[i].end(), t.seconds.begin(), t.seconds.end());
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    profile.ops.push_back(measurement_of(sites[i].key, std::move(seconds[i])));
  }
  return profile;
}

}  // namespace strata::profiler
