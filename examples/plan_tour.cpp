// plan_tour: specs -> Plan, and what the Plan is. Loads a model, a cluster and a strategy, lowers
// them, and prints each program (one per pipeline stage): its ranks, its peak memory, and task
// by task the ops with the names and shapes of the buffers they read and write. The simulator
// prices and the executor interprets exactly these ops (docs/architecture.md, docs/plan.md).
//
// Usage: plan_tour [MODEL [CLUSTER [STRATEGY [TASKS]]]]   or   plan_tour --plan FILE [TASKS]
//   bundled names under configs/ or paths; defaults gpt-tiny, local-cpu, tiny-dp2-tp2, 12 tasks
//   per program (0: all). The world is the strategy's dp * tp * pp * cp ranks. A plan.json
//   (`strata plan --out`) is read back instead (results/plan.hpp).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/error.hpp"
#include "common/units.hpp"
#include "results/plan.hpp"
#include "strategies/plan.hpp"

using namespace strata;
using namespace strata::strategies;

namespace {

// A bundled name ("gpt-tiny") or a path ("my/model.json").
std::string spec_path(const std::string& kind, const std::string& name) {
  if (name.find('/') != std::string::npos || name.find(".json") != std::string::npos) return name;
  return std::string(STRATA_CONFIG_DIR) + "/" + kind + "/" + name + ".json";
}

// "L0.attn.qkv.out[mb0] 64x96"
std::string describe(const Program& p, std::int32_t id) {
  const Buffer& b = p.buffers[id];
  std::string s = p.buffer_name(id) + " ";
  for (int i = 0; i < b.ndim; ++i) s += (i ? "x" : "") + std::to_string(b.shape[i]);
  return s;
}

void print_program(const ProgramSet& plan, const Program& p, std::size_t max_tasks) {
  std::string ranks;
  for (int r = 0; r < plan.world_size; ++r) {
    if (plan.stage_of(r) == p.stage) ranks += " " + std::to_string(r);
  }
  std::printf("program %d (pipeline stage %d), ranks%s: %zu tasks, %zu buffers, peak %s at task %u\n",
              p.stage, p.stage, ranks.c_str(), p.tasks.size(), p.buffers.size(),
              units::format_bytes(p.memory.peak_bytes()).c_str(), p.memory.peak_task);
  const std::size_t n = max_tasks == 0 ? p.tasks.size() : std::min(max_tasks, p.tasks.size());
  for (std::size_t i = 0; i < n; ++i) {
    const Task& t = p.tasks[i];
    std::printf("  task %zu %s (%s, stream %s)\n", i, plan.task_name(t).c_str(),
                task_kind_name(t.kind), stream_name(t.stream));
    for (std::uint32_t k = 0; k < t.op_count; ++k) {
      const Op& op = p.ops_of(t)[k];
      std::string in, out;
      for (int j = 0; j < op.n_in; ++j) in += (j ? ", " : "") + describe(p, p.input(op, j));
      for (int j = 0; j < op.n_out; ++j) out += (j ? ", " : "") + describe(p, p.output(op, j));
      std::printf("    %-18s in: %s\n    %-18s out: %s\n", op_kind_name(op.kind),
                  in.empty() ? "-" : in.c_str(), "", out.c_str());
    }
  }
  if (n < p.tasks.size()) std::printf("  ... %zu more tasks\n", p.tasks.size() - n);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 2 && std::string(argv[1]) == "--plan") {  // a saved plan.json
    const Plan plan = results::read_plan(argv[2]);
    for (const Program& p : plan.programs) {
      print_program(plan, p, argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 12);
    }
    return 0;
  }
  const std::string model = argc > 1 ? argv[1] : "gpt-tiny";
  const std::string cluster = argc > 2 ? argv[2] : "local-cpu";
  const std::string strategy = argc > 3 ? argv[3] : "tiny-dp2-tp2";
  char* end = nullptr;
  const long max_tasks = argc > 4 ? std::strtol(argv[4], &end, 10) : 12;
  if (argc > 4 && (*end != '\0' || max_tasks < 0)) {
    std::fprintf(stderr, "plan_tour: TASKS = %s: must be a whole number >= 0\n", argv[4]);
    return 2;
  }
  try {
    const ModelSpec m = load_model(spec_path("models", model));
    const ClusterSpec c = load_cluster(spec_path("clusters", cluster));
    const StrategySpec s = load_strategy(spec_path("strategies", strategy));
    const Plan plan = lower(m, c, s, s.world_size());  // validates, then lowers
    std::printf("plan_tour: %s on %s, strategy %s: %d ranks, %zu program(s), %d micro-batches\n",
                m.name.c_str(), c.name.c_str(), s.name.c_str(), plan.world_size,
                plan.programs.size(), plan.num_micro_batches);
    for (const Program& p : plan.programs) print_program(plan, p, static_cast<std::size_t>(max_tasks));
  } catch (const ConfigError& e) {  // a spec that does not load or validate, names the field
    std::fprintf(stderr, "plan_tour: %s\n", e.what());
    return 1;
  }
  return 0;
}
