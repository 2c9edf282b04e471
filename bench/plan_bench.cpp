// Benchmark: lowering GPT-3 175B on 1024 GPUs (tp 8, pp 8, dp 16, 1F1B, global batch 1536,
// micro-batch 1) to a Plan. Prints the median wall time over repetitions, its spread, the task
// counts and the process's peak RSS. Figures only; it asserts nothing.
// Usage: plan_bench [--reps N] [--model M --cluster C --strategy S] [--nodes N]
//        (bundled names or paths; --nodes rescales a uniform cluster)
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "strategies/plan.hpp"

using namespace strata::strategies;

namespace {
std::string spec_path(const std::string& kind, const std::string& name) {
  if (name.find('/') != std::string::npos || name.find(".json") != std::string::npos) return name;
  return std::string(STRATA_CONFIG_DIR) + "/" + kind + "/" + name + ".json";
}
}  // namespace

int main(int argc, char** argv) {
  int reps = 7, nodes = 0;
  std::string model = "gpt3-175b", cluster = "dgx-a100-128n",
              strategy = "gpt3-175b-tp8-pp8-dp16";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--reps") reps = std::max(1, std::stoi(argv[i + 1]));
    else if (flag == "--model") model = argv[i + 1];
    else if (flag == "--cluster") cluster = argv[i + 1];
    else if (flag == "--strategy") strategy = argv[i + 1];
    else if (flag == "--nodes") nodes = std::stoi(argv[i + 1]);
  }
  try {
    const ModelSpec m = load_model(spec_path("models", model));
    ClusterSpec c = load_cluster(spec_path("clusters", cluster));
    if (nodes > 0) c = with_nodes(c, nodes);
    const StrategySpec s = load_strategy(spec_path("strategies", strategy));
    std::vector<double> times;
    double tasks = 0, program_tasks = 0;
    for (int r = 0; r < reps + 1; ++r) {  // the first run is a warm-up
      const auto t0 = std::chrono::steady_clock::now();
      const Plan plan = lower(m, c, s, s.world_size());
      const auto t1 = std::chrono::steady_clock::now();
      if (r > 0) times.push_back(std::chrono::duration<double>(t1 - t0).count());
      tasks = plan.totals.tasks;
      program_tasks = 0;
      for (const auto& p : plan.programs) program_tasks += static_cast<double>(p.tasks.size());
    }
    std::sort(times.begin(), times.end());
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::printf("plan_bench: %s on %s, %s (world %d)\n", m.name.c_str(), c.name.c_str(),
                s.name.c_str(), s.world_size());
    std::printf("  lowering wall time: median %.3f s, min %.3f s, max %.3f s over %d runs\n",
                times[times.size() / 2], times.front(), times.back(), reps);
    std::printf("  tasks: %.0f over all ranks, %.0f materialised in shared programs\n", tasks,
                program_tasks);
    std::printf("  peak RSS: %.1f MiB\n", usage.ru_maxrss / 1024.0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plan_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
