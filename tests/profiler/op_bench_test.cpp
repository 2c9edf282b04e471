// The op bench of `strata profile ops` (profiler/tools/op_bench.hpp): every distinct op of a Plan
// timed once into a profile that reads back. Behaviour only, never a timing value.
#include "profiler/tools/op_bench.hpp"

#include <gtest/gtest.h>

#include <set>

#include "common/error.hpp"
#include "profiler/profile.hpp"
#include "strategies/plan.hpp"

namespace {

using namespace strata;
using profiler::OpKey;
using strategies::Plan;

const std::string kConfigs = std::string(STRATA_SOURCE_DIR) + "/configs/";

Plan plan_of(const std::string& strategy, const std::string& cluster = "local-cpu") {
  const auto m = strategies::load_model(kConfigs + "models/gpt-tiny.json");
  const auto c = strategies::load_cluster(kConfigs + "clusters/" + cluster + ".json");
  const auto s = strategies::load_strategy(kConfigs + "strategies/" + strategy + ".json");
  return strategies::lower(m, c, s, s.world_size());
}

// Every op key of every program's compute tasks but the data loader's.
std::set<OpKey> keys_of(const Plan& plan) {
  std::set<OpKey> keys;
  for (const strategies::Program& p : plan.programs) {
    for (const strategies::Task& t : p.tasks) {
      if (t.kind != strategies::TaskKind::kCompute) continue;
      for (std::uint32_t k = 0; k < t.op_count; ++k) {
        const strategies::Op& op = p.ops_of(t)[k];
        if (op.kind != strategies::OpKind::kLoadBatch) keys.insert(profiler::op_key(op));
      }
    }
  }
  return keys;
}

profiler::OpBenchOptions quick() {
  profiler::OpBenchOptions o;
  o.timer.warmup = 0;
  o.timer.repetitions = 2;
  o.timer.max_sets = 2;  // rotated, but few copies to fill: the test stays fast
  o.trials = 2;          // one timed run of each op per pass
  return o;
}

TEST(OpBench, DistinctOpsAreEveryKeyOfThePlanOnceWhereItFirstAppears) {
  for (const char* name : {"tiny-dp2-tp2", "tiny-pp2-1f1b"}) {
    const Plan plan = plan_of(name);
    const auto sites = profiler::distinct_ops(plan);
    std::set<OpKey> keys;
    for (const auto& s : sites) {
      EXPECT_TRUE(keys.insert(s.key).second) << name << ": a key twice";
      const strategies::Program& p = plan.program_of(s.rank);
      ASSERT_LT(s.task, p.tasks.size());
      ASSERT_LT(s.op_index, p.tasks[s.task].op_count);
      EXPECT_EQ(profiler::op_key(p.ops_of(p.tasks[s.task])[s.op_index]), s.key);
      // The first rank of its stage.
      for (int r = 0; r < s.rank; ++r) EXPECT_NE(plan.stage_of(r), plan.stage_of(s.rank)) << name;
    }
    EXPECT_EQ(keys, keys_of(plan)) << name;
  }
}

TEST(OpBench, MeasurementIsMedianMinAndMaxOfTheRuns) {
  const OpKey key;
  const auto odd = profiler::measurement_of(key, {3e-6, 1e-6, 2e-6});
  EXPECT_DOUBLE_EQ(odd.median_s, 2e-6);
  EXPECT_DOUBLE_EQ(odd.min_s, 1e-6);
  EXPECT_DOUBLE_EQ(odd.max_s, 3e-6);
  EXPECT_EQ(odd.repetitions, 3);
  const auto even = profiler::measurement_of(key, {4e-6, 1e-6, 3e-6, 2e-6});
  EXPECT_DOUBLE_EQ(even.median_s, 2.5e-6);
  EXPECT_EQ(even.repetitions, 4);
}

// The profile of tiny-dp2-tp2: every distinct op of the Plan exactly once, timed in each of two
// passes (its repetitions shared among them), figures ordered and positive, provenance filled,
// and the file round-trips through the strict reader.
TEST(OpBench, ProfilesEveryDistinctOpOnceAndRoundTrips) {
  const Plan plan = plan_of("tiny-dp2-tp2");
  std::size_t calls = 0, count = 0;
  auto options = quick();
  options.progress = [&](std::size_t number, std::size_t n, const profiler::OpSite&) {
    EXPECT_EQ(number, ++calls);
    count = n;
  };
  const profiler::OpProfile p = profiler::measure_ops(plan, options);
  const std::set<OpKey> keys = keys_of(plan);
  ASSERT_EQ(p.ops.size(), keys.size());
  EXPECT_EQ(calls, 2 * keys.size());
  EXPECT_EQ(count, 2 * keys.size());
  EXPECT_EQ(p.trials, 2);
  std::set<OpKey> seen;
  for (const auto& m : p.ops) {
    EXPECT_TRUE(seen.insert(m.key).second);
    EXPECT_GT(m.min_s, 0.0);
    EXPECT_LE(m.min_s, m.median_s);
    EXPECT_LE(m.median_s, m.max_s);
    EXPECT_EQ(m.repetitions, 2);
  }
  EXPECT_EQ(seen, keys);
  EXPECT_EQ(p.warmup, 0);
  EXPECT_EQ(p.repetitions, 2);
  EXPECT_EQ(p.model, "gpt-tiny");
  EXPECT_EQ(p.strategy, "tiny-dp2-tp2");
  EXPECT_EQ(p.cluster, "local-cpu");
  EXPECT_EQ(p.on.device, plan.cluster.group_of_gpu(0).gpu.name);
  EXPECT_EQ(p.on.device_kind, "cpu");
  EXPECT_FALSE(p.on.host.empty());
  EXPECT_FALSE(p.on.date.empty());
  EXPECT_FALSE(p.on.strata_version.empty());

  const json::Json j = profiler::op_profile_to_json(p);
  const profiler::OpProfile back = profiler::op_profile_from_json(j, "profile.json");
  ASSERT_EQ(back.ops.size(), p.ops.size());
  for (std::size_t i = 0; i < p.ops.size(); ++i) {
    EXPECT_EQ(back.ops[i].key, p.ops[i].key);
    EXPECT_DOUBLE_EQ(back.ops[i].median_s, p.ops[i].median_s);
  }
  EXPECT_EQ(profiler::op_profile_to_json(back), j);
}

TEST(OpBench, RefusesAGpuClusterAndWhatTheExecutorRefusesBeforeTiming) {
  bool timed = false;
  auto options = quick();
  options.progress = [&](std::size_t, std::size_t, const profiler::OpSite&) { timed = true; };
  try {
    profiler::measure_ops(plan_of("tiny-1rank", "dgx-a100-128n"), options);
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("is a GPU"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("local-cpu"), std::string::npos) << e.what();
  }
  auto m = strategies::load_model(kConfigs + "models/gpt-tiny.json");
  m.dropout = true;
  const auto s = strategies::load_strategy(kConfigs + "strategies/tiny-1rank.json");
  const Plan dropout =
      strategies::lower(m, strategies::load_cluster(kConfigs + "clusters/local-cpu.json"), s, 1);
  try {
    profiler::measure_ops(dropout, options);
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("the executor cannot run this Plan"), std::string::npos)
        << e.what();
  }
  options.trials = 3;  // more passes than the 2 repetitions
  EXPECT_THROW(profiler::measure_ops(plan_of("tiny-1rank"), options), ConfigError);
  options.trials = 1;
  options.timer.repetitions = 0;
  EXPECT_THROW(profiler::measure_ops(plan_of("tiny-1rank"), options), ConfigError);
  EXPECT_FALSE(timed);
}

}  // namespace
