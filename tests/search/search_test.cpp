// The search's library: the space file, the estimator against the Plan it stands for, the
// per-layer hybrids and the ranking (search/).
#include "search/search.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "profiler/roofline.hpp"
#include "strategies/plan.hpp"
#include "strategies/schedule.hpp"

namespace strata::search {
namespace {

using strategies::Recompute;
using strategies::Schedule;

std::string config(const std::string& rel) {
  return std::string(STRATA_SOURCE_DIR) + "/configs/" + rel;
}

profiler::RooflineCostModel roofline() {
  return profiler::RooflineCostModel(
      profiler::load_efficiencies(profiler::default_efficiencies_path()));
}

std::string error_of(const json::Json& j) {
  try {
    parse_space(j);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Space, ReadsListsAndSingleValues) {
  const Space s = parse_space(json::Json::parse(
      R"({"tp": [4, 1, 4], "pp": 2, "schedule": ["interleaved-1f1b", "1f1b"], "recompute": "full",
          "sequence_parallel": [true], "grad_bucket_MiB": [100, 25], "layer_tp": false,
          "memory_fraction": 0.5})"));
  EXPECT_EQ(s.tp, (std::vector<int>{1, 4}));
  EXPECT_EQ(s.pp, (std::vector<int>{2}));
  EXPECT_EQ(s.schedule, (std::vector<Schedule>{Schedule::kOneFOneB, Schedule::kInterleaved}));
  EXPECT_EQ(s.recompute, (std::vector<Recompute>{Recompute::kFull}));
  EXPECT_EQ(s.sequence_parallel, (std::vector<bool>{true}));
  EXPECT_EQ(s.grad_bucket_MiB, (std::vector<double>{25, 100}));
  EXPECT_TRUE(s.layer_hybrids);
  EXPECT_FALSE(s.layer_tp);
  EXPECT_DOUBLE_EQ(s.memory_fraction, 0.5);
  EXPECT_TRUE(s.micro_batch_size.empty());  // the default
}

TEST(Space, ErrorsNameTheFieldTheValueAndTheRule) {
  EXPECT_NE(
      error_of(json::Json::parse(R"({"tp": [2, 0]})")).find("space.tp[1] = 0: must be an integer"),
      std::string::npos);
  EXPECT_NE(error_of(json::Json::parse(R"({"schedule": ["zero-bubble"]})"))
                .find("space.schedule[0] = \"zero-bubble\": must be one of \"gpipe\""),
            std::string::npos);
  EXPECT_NE(error_of(json::Json::parse(R"({"pp": []})")).find("space.pp = []: must list"),
            std::string::npos);
  EXPECT_NE(
      error_of(json::Json::parse(R"({"memory_fraction": 1.5})")).find("space.memory_fraction"),
      std::string::npos);
  EXPECT_NE(error_of(json::Json::parse(R"({"tensor_parallel": [2]})")).find("tensor_parallel"),
            std::string::npos);
  EXPECT_NE(error_of(json::Json::parse(R"({"zero_stage": [4]})")).find("space.zero_stage[0] = 4"),
            std::string::npos);
}

TEST(Estimator, InFlightIsTheScheduleWalkInClosedForm) {
  for (Schedule k : {Schedule::kGPipe, Schedule::kOneFOneB, Schedule::kInterleaved, Schedule::kZbH1,
                     Schedule::kZbH2}) {
    for (int pp : {1, 2, 4, 8}) {
      for (int m : {1, 3, 8, 16, 24}) {
        for (int v : {1, 2, 3}) {
          if ((k == Schedule::kInterleaved) != (v > 1)) continue;
          if (k == Schedule::kInterleaved && (pp < 2 || m % pp != 0)) continue;
          for (int stage = 0; stage < pp; ++stage) {
            EXPECT_EQ(in_flight(k, pp, stage, m, v),
                      strategies::max_in_flight(strategies::stage_schedule(k, pp, stage, m, v)))
                << strategies::schedule_name(k) << " pp " << pp << " stage " << stage << " m " << m
                << " v " << v;
          }
        }
      }
    }
  }
}

// The estimator's peak memory per stage is the Plan's (its buffers' walk) within a few percent
// for a model whose layers dominate, across schedules, ZeRO stages and recompute.
TEST(Estimator, PeakMemoryFollowsThePlan) {
  const auto model = strategies::load_model(config("models/gpt3-6.7b.json"));
  const auto cluster = strategies::load_cluster(config("clusters/dgx-a100-128n.json"));
  const auto cost = roofline();
  struct Case {
    int tp, pp, dp, mbs;
    Schedule schedule;
    int v, zero;
    bool sp;
    Recompute rc;
  };
  const std::vector<Case> cases = {
      {8, 1, 1, 1, Schedule::kOneFOneB, 1, 0, true, Recompute::kSelective},
      {4, 2, 1, 2, Schedule::kOneFOneB, 1, 0, false, Recompute::kNone},
      {2, 2, 2, 1, Schedule::kInterleaved, 2, 1, true, Recompute::kFull},
      {1, 1, 8, 1, Schedule::kOneFOneB, 1, 3, false, Recompute::kNone},
      {2, 4, 1, 1, Schedule::kGPipe, 1, 0, false, Recompute::kFull},
  };
  for (const Case& c : cases) {
    strategies::StrategySpec s;
    s.name = "t";
    s.tp = c.tp, s.pp = c.pp, s.dp = c.dp, s.micro_batch_size = c.mbs;
    s.global_batch_size = 16 * c.mbs * c.dp;
    s.schedule = c.schedule, s.virtual_stages = c.v, s.zero_stage = c.zero;
    s.sequence_parallel = c.sp, s.recompute = c.rc;
    const int world = s.world_size();
    Estimator est(model, cluster, world, cost);
    const Estimate e = est.estimate(s);
    const strategies::Plan plan = strategies::lower(model, cluster, s, world);
    ASSERT_EQ(e.stage_peak_bytes.size(), static_cast<std::size_t>(c.pp));
    for (int r = 0; r < c.pp; ++r) {
      const double planned = plan.programs[r].memory.peak_bytes();
      EXPECT_NEAR(e.stage_peak_bytes[r] / planned, 1.0, 0.05)
          << strategy_line(s) << " stage " << r << ": estimate " << e.stage_peak_bytes[r]
          << ", Plan " << planned;
    }
    EXPECT_GT(e.step_s, 0);
    EXPECT_GE(e.pipeline_s, e.bubble_s);
  }
}

// More micro-batches per step cost proportionally more; a pipeline adds its bubble; recompute
// costs time and saves memory.
TEST(Estimator, RespondsToTheStrategyAsTheScheduleSays) {
  const auto model = strategies::load_model(config("models/gpt3-6.7b.json"));
  const auto cluster = strategies::load_cluster(config("clusters/dgx-a100-128n.json"));
  const auto cost = roofline();
  Estimator est(model, cluster, 8, cost);
  strategies::StrategySpec s;
  s.name = "t";
  s.tp = 8;
  s.global_batch_size = 8;
  const Estimate e8 = est.estimate(s);
  s.global_batch_size = 16;
  const Estimate e16 = est.estimate(s);
  EXPECT_NEAR(e16.pipeline_s / e8.pipeline_s, 2.0, 1e-9);
  s.recompute = Recompute::kFull;
  const Estimate full = est.estimate(s);
  EXPECT_GT(full.step_s, e16.step_s * 1.2);
  EXPECT_LT(full.peak_bytes, e16.peak_bytes);
  s.recompute = Recompute::kNone;
  s.tp = 4;
  s.pp = 2;
  const Estimate piped = est.estimate(s);
  EXPECT_GT(piped.bubble_s, 0);
  EXPECT_NEAR(piped.bubble_s / piped.pipeline_s, 1.0 / (16 + 1), 0.03);  // (pp-1)/(m+pp-1)
  EXPECT_GT(est.lowerings(), 0);
}

TEST(Explore, RanksValidFittingCandidatesFastestFirst) {
  const auto model = strategies::load_model(config("models/gpt3-6.7b.json"));
  const auto cluster = strategies::load_cluster(config("clusters/dgx-a100-128n.json"));
  const auto cost = roofline();
  strategies::StrategySpec base;
  base.name = "base";
  base.global_batch_size = 64;
  Space space;
  space.memory_fraction = 0.4;  // makes memory bind: recompute and hybrids are needed
  ExploreStats stats;
  const std::vector<Candidate> ranked = explore(model, cluster, 16, base, space, cost, stats);
  ASSERT_FALSE(ranked.empty());
  EXPECT_GT(stats.over_memory, 0);
  EXPECT_GT(stats.hybrids, 0);
  const double budget = 0.4 * cluster.group_of_gpu(0).gpu.memory_bytes;
  for (std::size_t i = 0; i < ranked.size(); ++i) {
    const Candidate& c = ranked[i];
    EXPECT_LE(c.estimate.peak_bytes, budget) << c.line;
    EXPECT_NO_THROW(
        strategies::validate(strategies::padded_for_tp(model, c.strategy.tp), c.strategy, 16))
        << c.line;
    EXPECT_NO_THROW(strategies::check_lowerable(c.strategy)) << c.line;
    EXPECT_EQ(c.hybrid, !c.strategy.layer_overrides.empty());
    EXPECT_EQ(c.strategy.global_batch_size, 64);
    if (i > 0) {
      EXPECT_LE(ranked[i - 1].estimate.step_s, c.estimate.step_s);
    }
  }
  // The same inputs give the same ranking.
  ExploreStats again;
  const std::vector<Candidate> second = explore(model, cluster, 16, base, space, cost, again);
  ASSERT_EQ(second.size(), ranked.size());
  for (std::size_t i = 0; i < ranked.size(); ++i) EXPECT_EQ(second[i].line, ranked[i].line);
}

TEST(Explore, ASpaceWithoutAValidStrategyIsAnErrorWithExamples) {
  const auto model = strategies::load_model(config("models/gpt-tiny.json"));
  const auto cluster = strategies::load_cluster(config("clusters/dgx-a100-128n.json"));
  const auto cost = roofline();
  strategies::StrategySpec base;
  base.global_batch_size = 16;
  Space space = parse_space(json::Json::parse(R"({"tp": [8], "pp": [1]})"));
  ExploreStats stats;
  try {
    explore(model, cluster, 8, base, space, cost, stats);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("the search space holds no valid strategy for gpt-tiny on 8 GPUs"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("strategy.tp = 8"), std::string::npos) << m;  // 4 heads: tp 8 cannot split
  }
}

// Against every assignment of options to layers (brute force over the counts): the two-group
// choice fits, is the exact optimum over two groups, and is within one layer's time difference
// of the optimum over any number of groups.
TEST(LayerGroups, MatchesBruteForceWithinTheBound) {
  std::uint64_t state = 12345;
  auto uniform = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) / 9007199254740992.0;
  };
  for (int trial = 0; trial < 200; ++trial) {
    const int layers = 1 + trial % 7;
    std::vector<LayerOption> options(3);
    for (auto& o : options) o = {1 + uniform(), 1 + 3 * uniform(), 1};
    const double room = layers * (1.5 + 2 * uniform());
    double any_best = -1, two_best = -1;
    for (int x = 0; x <= layers; ++x) {
      for (int y = 0; x + y <= layers; ++y) {
        const int z = layers - x - y;
        const double bytes = x * options[0].bytes + y * options[1].bytes + z * options[2].bytes;
        if (bytes > room) continue;
        const double t = x * options[0].time_s + y * options[1].time_s + z * options[2].time_s;
        if (any_best < 0 || t < any_best) any_best = t;
        if ((x == 0 || y == 0 || z == 0) && (two_best < 0 || t < two_best)) two_best = t;
      }
    }
    const std::optional<LayerGroups> g = choose_layer_groups(options, layers, room, 0, 0);
    ASSERT_EQ(g.has_value(), any_best >= 0) << "trial " << trial;
    if (!g) continue;
    EXPECT_LE(g->bytes, room);
    EXPECT_NEAR(g->time_s, two_best, 1e-9) << "trial " << trial;
    double spread = 0;
    for (const auto& a : options) {
      for (const auto& b : options) spread = std::max(spread, a.time_s - b.time_s);
    }
    EXPECT_LE(g->time_s, any_best + spread + 1e-9) << "trial " << trial;
  }
  // A tp change between the groups costs its resharding; ties keep the preferred option.
  const std::vector<LayerOption> two = {{1.0, 10, 2}, {1.0, 10, 1}};
  const auto kept = choose_layer_groups(two, 4, 100, 0.5, 1);
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->a, 1);
  EXPECT_EQ(kept->b, 1);
  const std::vector<LayerOption> split = {{1.0, 30, 2}, {2.0, 10, 1}};
  const auto mixed = choose_layer_groups(split, 4, 80, 0.5, 0);  // 4 x 30 does not fit
  ASSERT_TRUE(mixed);
  EXPECT_EQ(mixed->n, 2);  // 2 x 30 + 2 x 10 = 80
  EXPECT_DOUBLE_EQ(mixed->time_s, 2 * 1.0 + 2 * 2.0 + 0.5);
  EXPECT_FALSE(choose_layer_groups(split, 4, 39, 0, 0));
}

TEST(Spearman, RanksWithTies) {
  EXPECT_DOUBLE_EQ(spearman({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0);
  EXPECT_DOUBLE_EQ(spearman({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0);
  EXPECT_DOUBLE_EQ(spearman({1}, {5}), 1.0);
  EXPECT_DOUBLE_EQ(spearman({1, 2, 3}, {7, 7, 7}), 0.0);
  // Ties take their average rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4).
  EXPECT_NEAR(spearman({1, 2, 2, 3}, {1, 2, 3, 4}), 4.5 / std::sqrt(4.5 * 5.0), 1e-12);
}

}  // namespace
}  // namespace strata::search
