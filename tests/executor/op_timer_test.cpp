// The op timer (executor/op_timer.hpp): one compute op of a Plan run alone on copies of its
// operands. Behaviour only -- how many runs, that each took some time, which ops are refused,
// how many input sets rotate -- never a timing value. Leaks and out-of-bounds operand views are
// the asan preset's to catch (every op kind of several strategies runs here).
#include "executor/op_timer.hpp"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>
#include <tuple>

#include "common/error.hpp"
#include "strategies/plan.hpp"

namespace {

using namespace strata;
using strategies::OpKind;
using strategies::Plan;
using strategies::TaskKind;

const std::string kConfigs = std::string(STRATA_SOURCE_DIR) + "/configs/";

Plan plan_of(const std::string& name) {
  const auto model = strategies::load_model(kConfigs + "models/gpt-tiny.json");
  const auto cluster = strategies::load_cluster(kConfigs + "clusters/local-cpu.json");
  const auto s = strategies::load_strategy(kConfigs + "strategies/" + name + ".json");
  return strategies::lower(model, cluster, s, s.world_size());
}

// The first (task, op index) of rank `rank`'s program whose op has kind `kind`.
std::pair<std::uint32_t, std::uint32_t> first_op(const Plan& plan, int rank, OpKind kind) {
  const strategies::Program& p = plan.program_of(rank);
  for (std::uint32_t t = 0; t < p.tasks.size(); ++t) {
    for (std::uint32_t k = 0; k < p.tasks[t].op_count; ++k) {
      if (p.ops_of(p.tasks[t])[k].kind == kind) return {t, k};
    }
  }
  ADD_FAILURE() << "no " << strategies::op_kind_name(kind) << " op on rank " << rank;
  return {0, 0};
}

exec::OpTimerOptions quick(int warmup, int repetitions) {
  exec::OpTimerOptions o;
  o.warmup = warmup;
  o.repetitions = repetitions;
  o.max_sets = 2;  // rotated, but few copies to fill: the tests stay fast
  return o;
}

TEST(OpTimer, ReturnsOnePositiveDurationPerRepetition) {
  const Plan plan = plan_of("tiny-1rank");
  const auto [task, op] = first_op(plan, 0, OpKind::kLinear);
  const exec::OpTiming t = exec::time_op(plan, 0, task, op, quick(1, 5));
  ASSERT_EQ(t.seconds.size(), 5u);
  for (double s : t.seconds) EXPECT_GT(s, 0.0);
  EXPECT_GT(t.set_bytes, 0.0);
  EXPECT_GE(t.input_sets, 1);
  EXPECT_EQ(exec::time_op(plan, 0, task, op, quick(0, 1)).seconds.size(), 1u);
}

// Input sets: enough copies of the operands to reach rotate_bytes, within max_sets and
// max_bytes, and always one.
TEST(OpTimer, RotatesAsManyInputSetsAsAskedWithinTheBounds) {
  const Plan plan = plan_of("tiny-1rank");
  const auto [task, op] = first_op(plan, 0, OpKind::kGelu);
  exec::OpTimerOptions o = quick(0, 3);
  const double one = exec::time_op(plan, 0, task, op, o).set_bytes;
  o.rotate_bytes = 10 * one;
  o.max_sets = 64;
  EXPECT_EQ(exec::time_op(plan, 0, task, op, o).input_sets, 10);
  o.max_sets = 4;
  EXPECT_EQ(exec::time_op(plan, 0, task, op, o).input_sets, 4);
  o.max_sets = 64;
  o.max_bytes = 3.5 * one;
  EXPECT_EQ(exec::time_op(plan, 0, task, op, o).input_sets, 3);
  o.max_bytes = 1;
  EXPECT_EQ(exec::time_op(plan, 0, task, op, o).input_sets, 1);
}

// Every compute op kind of strategies with shards, row blocks, rotated views, partitioned
// optimizer states, context-parallel attention and pipeline stages runs alone, on ranks other
// than 0 too (their group index picks the shard).
TEST(OpTimer, TimesEveryComputeOpKindOfManyStrategies) {
  for (const char* name : {"tiny-dp2-tp2", "tiny-tp2-sp-overlap", "tiny-zero3", "tiny-cp2",
                           "tiny-fused-attention", "tiny-pp2-1f1b", "tiny-dp2-tp2-sp-zero2"}) {
    const Plan plan = plan_of(name);
    for (int rank = 0; rank<plan.world_size; rank += plan.world_size> 1 ? plan.world_size - 1 : 1) {
      const strategies::Program& p = plan.program_of(rank);
      std::set<std::tuple<int, int, int>> seen;  // kind, flags, operands
      for (std::uint32_t t = 0; t < p.tasks.size(); ++t) {
        if (p.tasks[t].kind != TaskKind::kCompute) continue;
        for (std::uint32_t k = 0; k < p.tasks[t].op_count; ++k) {
          const strategies::Op& op = p.ops_of(p.tasks[t])[k];
          if (!exec::untimed_reason(op).empty()) continue;
          if (!seen.insert({static_cast<int>(op.kind), op.flags, op.n_in + op.n_out}).second)
            continue;
          SCOPED_TRACE(std::string(name) + " rank " + std::to_string(rank) + " task " +
                       std::to_string(t) + " " + strategies::op_kind_name(op.kind));
          const exec::OpTiming timing = exec::time_op(plan, rank, t, k, quick(0, 2));
          ASSERT_EQ(timing.seconds.size(), 2u);
          EXPECT_GT(timing.seconds[0], 0.0);
        }
      }
      EXPECT_GT(seen.size(), 5u) << name;
    }
  }
}

TEST(OpTimer, RefusesCommunicationTheDataLoaderAndBadIndices) {
  const Plan plan = plan_of("tiny-dp2-tp2");
  const auto [load, load_op] = first_op(plan, 0, OpKind::kLoadBatch);
  try {
    exec::time_op(plan, 0, load, load_op, quick(0, 1));
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("load_batch is the data loader"), std::string::npos)
        << e.what();
  }
  const strategies::Program& p = plan.program_of(0);
  std::uint32_t collective = 0;
  while (p.tasks[collective].kind != TaskKind::kCollective) ++collective;
  EXPECT_THROW(exec::time_op(plan, 0, collective, 0, quick(0, 1)), std::invalid_argument);
  strategies::Op all_reduce;
  all_reduce.kind = OpKind::kAllReduce;
  EXPECT_NE(exec::untimed_reason(all_reduce).find("strata profile links"), std::string::npos);
  const auto [task, op] = first_op(plan, 0, OpKind::kLinear);
  EXPECT_THROW(exec::time_op(plan, 4, task, op, quick(0, 1)), std::invalid_argument);
  EXPECT_THROW(exec::time_op(plan, -1, task, op, quick(0, 1)), std::invalid_argument);
  EXPECT_THROW(exec::time_op(plan, 0, 1u << 30, 0, quick(0, 1)), std::invalid_argument);
  EXPECT_THROW(exec::time_op(plan, 0, task, 99, quick(0, 1)), std::invalid_argument);
  EXPECT_THROW(exec::time_op(plan, 0, task, op, quick(-1, 1)), ConfigError);
  EXPECT_THROW(exec::time_op(plan, 0, task, op, quick(0, 0)), ConfigError);
}

// What the executor cannot run, the timer cannot time: the same refusal, before any work.
TEST(OpTimer, RefusesWhatTheExecutorRefuses) {
  const auto model = strategies::load_model(kConfigs + "models/gpt-tiny.json");
  const auto cluster = strategies::load_cluster(kConfigs + "clusters/local-cpu.json");
  auto s = strategies::load_strategy(kConfigs + "strategies/tiny-1rank.json");
  s.precision = strategies::Precision::kFp16;
  const Plan plan = strategies::lower(model, cluster, s, 1);
  const auto [task, op] = first_op(plan, 0, OpKind::kLinear);
  try {
    exec::time_op(plan, 0, task, op, quick(0, 1));
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("the executor cannot run this Plan"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("\"precision\": \"bf16\""), std::string::npos) << e.what();
  }
}

}  // namespace

// The CUDA path: without a usable GPU (this build machine) it is refused with the reason, before
// any op runs; with one, an op kernels/ has a CUDA kernel for (LayerNorm) is timed with CUDA
// events, and one it has none for (a GEMM) is refused naming the op, until the GPU backend
// exists.
TEST(OpTimer, TheCudaPathTimesWhatHasACudaKernelOrSaysWhyNot) {
  const Plan plan = plan_of("tiny-1rank");
  exec::OpTimerOptions o = quick(1, 3);
  o.backend = kernels::Backend::kCuda;
  const auto [norm_task, norm_op] = first_op(plan, 0, OpKind::kLayerNorm);
  const auto [linear_task, linear_op] = first_op(plan, 0, OpKind::kLinear);
  if (kernels::cuda_device_count() == 0) {
    try {
      exec::time_op(plan, 0, norm_task, norm_op, o);
      FAIL() << "timed on CUDA without a GPU";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("is not available"), std::string::npos) << e.what();
    }
    GTEST_SKIP() << "no CUDA device (" << kernels::cuda_unavailable_reason()
                 << "): the CUDA timings run on a machine with a GPU";
  }
  const exec::OpTiming t = exec::time_op(plan, 0, norm_task, norm_op, o);
  ASSERT_EQ(t.seconds.size(), 3u);
  for (double s : t.seconds) EXPECT_GT(s, 0.0);
  try {
    exec::time_op(plan, 0, linear_task, linear_op, o);
    FAIL() << "a GEMM ran on CUDA: update this test now that it has a kernel";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot run on cuda"), std::string::npos) << e.what();
  }
  o.device = -1;
  EXPECT_THROW(exec::time_op(plan, 0, norm_task, norm_op, o), ConfigError);
}
