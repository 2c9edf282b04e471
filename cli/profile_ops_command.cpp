// `strata profile ops`: lower the specs to a Plan, time every distinct op of it alone on this
// machine's CPU (profiler/tools/op_bench.hpp, on the executor's op timer) and write profile.json
// (docs/profiles.md "Measuring ops").
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/specs.hpp"
#include "common/error.hpp"
#include "kernels/backend.hpp"
#include "profiler/profile.hpp"
#include "profiler/tools/op_bench.hpp"

namespace strata::cli {

const char* const kProfileOpsHelp =
    R"(Usage: strata profile ops --model M --strategy S --out FILE [options]

Time every distinct op of a Plan on this machine's CPU and write profile.json, the op costs the
simulator's cost model can be set beside. The Plan is lowered as `strata plan` lowers it; an op
is keyed by what changes its work (kind, dtype, flags, operand counts, sizes), so a model of
many layers has the ops of one layer, a micro-batch's worth, and the optimizer's. Each op runs
alone through the executor's dispatch to its kernels, on the first rank that runs it (its group
index picks its shard), on copies of its operands filled with seeded random values and rotated
from run to run so that no run finds its inputs in cache; warm-up runs apart, then timed runs.

Required:
  --model M          model spec file or bundled name (configs/models/), e.g. gpt-tiny
  --strategy S       strategy spec file or bundled name (configs/strategies/), e.g. tiny-dp2-tp2
  --out FILE         the profile.json to write ('-' for stdout), only when every op was timed;
                     checked before any work (not a spec file, its directory writable)

Options:
  --cluster C        cluster spec the Plan is lowered for (default: local-cpu, this machine); the
                     profile is filed under its device name, so it must describe CPUs
  --gpus N           world size (default: the strategy's dp * tp * pp * cp)
  --nodes N          rescale a uniform cluster to N nodes
  --set PATH=VALUE   override a spec field (repeatable; docs/specs.md "Overriding fields")
  --device D         where to time: cpu (default) or cuda (GPU 0, with CUDA events around each
                     op; the cluster must then describe that GPU). Every op but the
                     context-parallel attention has a CUDA kernel (kernels/README.md);
                     one without stops the profile, naming it
  --warmup W         untimed runs per op before the timed ones (default: 2; 0 for none)
  --repetitions R    timed runs per op (default: 30); the profile keeps their median, minimum
                     and maximum
  --trials T         passes over every op, sharing its repetitions, each on freshly allocated
                     inputs (default: 10, at most R): what differs from pass to pass (memory
                     placement, a shared host's speed) lands in each op's spread
  --help             show this help

Not timed: communication (`strata profile links` measures links) and the data loader
(load_batch). What the executor cannot run it cannot time: FP8 and 16-bit strategies, dropout,
rotary positions and GQA are refused, naming the field to change. Prints one line per op on
stderr ("op 3 of 41: linear fp32 dims 64x64x192").

Example:
  strata profile ops --model gpt-tiny --strategy tiny-dp2-tp2 --out profile.json

Exit codes: 0 success, 1 invalid input, 2 usage error, 3 does not fit in memory, 4 runtime
failure, 70 internal error (the table: strata --help, cli/README.md).
)";

namespace {

// --device: the CPU, or CUDA device 0 when this build and machine have one.
kernels::Backend timing_backend(const Args& args) {
  const std::string device = args.get("--device").value_or("cpu");
  if (device == "cpu") return kernels::Backend::kCpu;
  if (device != "cuda") throw ConfigError("--device = " + device + ": must be cpu or cuda");
  if (kernels::cuda_device_count() == 0) {
    throw ConfigError("--device = cuda: no usable CUDA device (" +
                      kernels::cuda_unavailable_reason() + "); time the ops on the CPU");
  }
  return kernels::Backend::kCuda;
}

// "op 3 of 41: linear fp32 dims 64x64x192" (trailing zero sizes left out).
std::string progress_line(std::size_t number, std::size_t count, const profiler::OpKey& key) {
  std::string line = "op " + std::to_string(number) + " of " + std::to_string(count) + ": " +
                     strategies::op_kind_name(key.kind) + " " + strategies::dtype_name(key.dtype);
  std::size_t n = key.dims.size();
  while (n > 1 && key.dims[n - 1] == 0) --n;
  line += " dims ";
  for (std::size_t i = 0; i < n; ++i) line += (i ? "x" : "") + std::to_string(key.dims[i]);
  if (key.flags != 0) line += " flags " + std::to_string(key.flags);
  return line;
}

}  // namespace

int profile_ops_command(const std::vector<std::string>& argv_in) {
  if (asks_for_help(argv_in)) {
    std::cout << kProfileOpsHelp;
    return kExitOk;
  }
  const std::vector<std::string> argv = with_local_cluster(argv_in);
  const Args args(argv, spec_flags_and({"--device", "--warmup", "--repetitions", "--trials", "--out"}), {}, {});
  profiler::OpBenchOptions options;
  options.timer.backend = timing_backend(args);
  const std::string out = args.require("--out");
  check_paths(spec_inputs(args), {{"--out", out}});
  options.timer.warmup = count_flag(args, "--warmup", 0, 2);
  options.timer.repetitions = count_flag(args, "--repetitions", 1, 30);
  options.trials = count_flag(args, "--trials", 1, std::min(10, options.timer.repetitions));
  if (options.trials > options.timer.repetitions) {
    throw ConfigError("--trials = " + std::to_string(options.trials) + ": at most the " +
                      std::to_string(options.timer.repetitions) + " repetitions (--repetitions)");
  }
  Inputs in = load_inputs(args);
  refuse_federated(in.strategy, "profile ops");
  if (!args.has("--gpus")) in.world_size = in.strategy.world_size();
  const strategies::Plan plan = lower_inputs(in, in.world_size);

  options.progress = [](std::size_t number, std::size_t count, const profiler::OpSite& site) {
    std::cerr << progress_line(number, count, site.key) << std::endl;
  };
  const profiler::OpProfile profile = profiler::measure_ops(plan, options);
  write_outputs({{"--out", out, profiler::op_profile_to_json(profile).dump(2) + "\n"}});
  if (out != "-") {
    std::cout << "wrote " << out << ": " << profile.ops.size() << " ops of " << profile.model
              << " / " << profile.strategy << " on " << profile.on.device << ", "
              << profile.repetitions << " timed runs each in " << profile.trials
              << " passes, each after " << profile.warmup << " warm-up\n";
  }
  return kExitOk;
}

}  // namespace strata::cli
