// Parameter-server training (strategies/ps.hpp): the strategy's ps block and its errors by
// message, the bytes per server of a GPT and of the recommendation model against hand counts,
// and the task graph's dependencies per consistency, exhaustively on small cases.
#include "strategies/ps.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "expect_config_error.hpp"
#include "strategies/spec.hpp"
#include "test_models.hpp"

namespace strata::strategies {
namespace {

using json::Json;
using testing::expect_config_error;
using testing::gpt;

Json strategy(const Json& ps, int dp = 4) {
  return {{"name", "ps-test"},
          {"dp", dp},
          {"micro_batch_size", 1},
          {"global_batch_size", 4 * dp},
          {"ps", ps}};
}

double sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

TEST(PsSpec, ParsesDefaultsAndWritesBack) {
  const StrategySpec s = parse_strategy(strategy({{"servers", 4}}));
  ASSERT_TRUE(s.ps.has_value());
  EXPECT_EQ(s.ps->servers, 4);
  EXPECT_EQ(s.ps->placement, PsPlacement::kSeparate);
  EXPECT_EQ(s.ps->partition, PsPartition::kRange);
  EXPECT_EQ(s.ps->granularity, PsGranularity::kRow);
  EXPECT_EQ(s.ps->consistency, PsConsistency::kBsp);
  EXPECT_DOUBLE_EQ(s.ps->server_memory_bandwidth_Bps, 200e9);
  const StrategySpec ssp = parse_strategy(strategy({{"servers", 2},
                                                    {"placement", "colocated"},
                                                    {"partition", "hash"},
                                                    {"granularity", "tensor"},
                                                    {"consistency", "ssp"},
                                                    {"staleness", 3},
                                                    {"server_memory_bandwidth_GBps", 100},
                                                    {"compute_jitter", 0.2}}));
  const StrategySpec back = parse_strategy(to_json(ssp));
  ASSERT_TRUE(back.ps.has_value());
  EXPECT_EQ(back.ps->staleness, 3);
  EXPECT_EQ(back.ps->placement, PsPlacement::kColocated);
  EXPECT_EQ(back.ps->granularity, PsGranularity::kTensor);
  EXPECT_DOUBLE_EQ(back.ps->server_memory_bandwidth_Bps, 100e9);
  EXPECT_DOUBLE_EQ(back.ps->compute_jitter, 0.2);
}

// Strategies without ps keep their JSON (and hashes): no "ps" key.
TEST(PsSpec, WithoutPsNoKeyIsWritten) {
  Json j = strategy(nullptr);
  j.erase("ps");
  EXPECT_FALSE(to_json(parse_strategy(j)).contains("ps"));
}

TEST(PsSpec, ErrorsNameFieldValueAndRule) {
  const auto parse = [](const Json& ps) { parse_strategy(strategy(ps)); };
  expect_config_error([&] { parse({{"servers", 0}}); }, {"strategy.ps.servers = 0", "from 1"});
  expect_config_error([&] { parse({{"servers", -3}}); }, {"strategy.ps.servers = -3"});
  expect_config_error(
      [&] {
        parse({{"consistency", "ssp"}, {"staleness", 1}});
      },
      {"strategy.ps.servers"});
  expect_config_error(
      [&] {
        parse({{"servers", 2}, {"consistency", "ssp"}, {"staleness", -1}});
      },
      {"strategy.ps.staleness = -1", "from 0"});
  expect_config_error(
      [&] {
        parse({{"servers", 2}, {"staleness", 2}});
      },
      {"strategy.ps.staleness = 2", "only for \"consistency\": \"ssp\"", "\"bsp\""});
  expect_config_error(
      [&] {
        parse({{"servers", 2}, {"consistency", "ssp"}});
      },
      {"strategy.ps.staleness", "required"});
  expect_config_error(
      [&] {
        parse({{"servers", 2}, {"consistency", "eventual"}});
      },
      {"strategy.ps.consistency = \"eventual\"", "\"bsp\", \"ssp\", \"asp\""});
  expect_config_error(
      [&] {
        parse({{"servers", 2}, {"placement", "cloud"}});
      },
      {"strategy.ps.placement = \"cloud\"", "\"separate\", \"colocated\""});
  expect_config_error(
      [&] {
        parse({{"servers", 2}, {"partition", "random"}});
      },
      {"strategy.ps.partition = \"random\""});
  expect_config_error(
      [&] {
        parse({{"servers", 2}, {"granularity", "column"}});
      },
      {"strategy.ps.granularity = \"column\"", "\"tensor\", \"row\""});
  expect_config_error(
      [&] {
        parse({{"servers", 2}, {"compute_jitter", 1.5}});
      },
      {"strategy.ps.compute_jitter = 1.5"});
  expect_config_error(
      [&] {
        parse({{"servers", 2}, {"server_memory_bandwidth_GBps", 0}});
      },
      {"strategy.ps.server_memory_bandwidth_GBps = 0"});
  expect_config_error([&] { parse({{"servers", 2}, {"replicas", 2}}); }, {"replicas"});
  // The workers are plain data-parallel replicas.
  for (const char* dim : {"tp", "pp", "cp"}) {
    Json j = strategy({{"servers", 2}}, 2);
    j[dim] = 2;
    expect_config_error([&] { parse_strategy(j); },
                        {std::string("strategy.") + dim + " = 2", "strategy.ps", "must be 1"});
  }
  Json zero = strategy({{"servers", 2}});
  zero["zero_stage"] = 1;
  expect_config_error([&] { parse_strategy(zero); },
                      {"strategy.zero_stage = 1", "strategy.ps", "must be 0"});
  Json fed = strategy({{"servers", 2}});
  fed["federated"] = {{"local_steps", 2}};
  expect_config_error([&] { parse_strategy(fed); },
                      {"strategy.federated", "strategy.ps and strategy.federated"});
}

PsSpec ps(int servers, PsPartition p = PsPartition::kRange, PsGranularity g = PsGranularity::kRow) {
  PsSpec s;
  s.servers = servers;
  s.partition = p;
  s.granularity = g;
  return s;
}

StrategySpec ps_strategy(const PsSpec& p, int dp, int global_batch) {
  StrategySpec s;
  s.name = "ps";
  s.dp = dp;
  s.global_batch_size = global_batch;
  s.ps = p;
  return s;
}

TEST(PsTraffic, GptPullsEveryParameterAndPushesEveryGradient) {
  const ModelSpec m = gpt(2, 64, 4, 1000, 32);
  std::int64_t elements = 0;
  for (const PsTensor& t : gpt_ps_tensors(m)) elements += t.elements();
  EXPECT_EQ(elements, total_params(m));
  for (auto g : {PsGranularity::kRow, PsGranularity::kTensor}) {
    for (auto p : {PsPartition::kRange, PsPartition::kHash}) {
      StrategySpec s = ps_strategy(ps(3, p, g), 4, 16);
      const PsTraffic t = gpt_ps_traffic(m, s);
      EXPECT_NEAR(sum(t.params), static_cast<double>(total_params(m)), 1e-6);
      // bf16 parameters pulled, bf16 gradients pushed (no main_grads_fp32).
      EXPECT_NEAR(sum(t.pull_bytes), 2.0 * total_params(m), 1e-6);
      EXPECT_NEAR(sum(t.push_bytes), 2.0 * total_params(m), 1e-6);
      // AdamW per applied push: 2 (p + g + 8) = 24 bytes per element; a BSP step reads the 4
      // pushes (4 x 2) and applies once (24).
      EXPECT_NEAR(sum(t.push_update_bytes), 24.0 * total_params(m), 1e-6);
      EXPECT_NEAR(sum(t.step_update_bytes), 32.0 * total_params(m), 1e-6);
    }
  }
  // Row range: every tensor's rows split evenly, so the servers hold nearly equal shares.
  const PsTraffic t = gpt_ps_traffic(m, ps_strategy(ps(4), 4, 16));
  for (double v : t.params) EXPECT_NEAR(v, total_params(m) / 4.0, 60);
  StrategySpec fp32 = ps_strategy(ps(1), 2, 2);
  fp32.main_grads_fp32 = true;
  EXPECT_NEAR(gpt_ps_traffic(m, fp32).push_bytes[0], 4.0 * total_params(m), 1e-6);
}

RecModelSpec rec(std::int64_t rows, RowAccess access) {
  RecModelSpec m;
  m.name = "ctr";
  m.embedding_rows = rows;
  m.embedding_dim = 8;
  m.sparse_features = 2;
  m.dense_features = 3;
  m.mlp = {4};
  m.access = access;
  m.zipf_alpha = 1.05;
  return m;
}

TEST(PsTraffic, RecommendationModelMovesTouchedRows) {
  const RecModelSpec m = rec(2000, RowAccess::kZipf);
  // 4 workers of 8 samples: 16 lookups each.
  const StrategySpec range = ps_strategy(ps(4), 4, 32);
  const PsTraffic t = rec_ps_traffic(m, range);
  const double unique = expected_unique_rows(m, 16);
  EXPECT_NEAR(sum(t.touched_rows), unique, 1e-9);
  // Zipf with a range partition: the hot low ids all live on server 0.
  EXPECT_GT(t.touched_rows[0], t.touched_rows[3]);
  const double mlp = rec_mlp_params(m);  // (2 x 8 + 3) x 4 + 4 + 4 + 1 = 85
  EXPECT_EQ(mlp, 85);
  EXPECT_NEAR(sum(t.pull_bytes), unique * (8 * 4 + 8) + mlp * 4, 1e-6);
  EXPECT_NEAR(sum(t.push_bytes), sum(t.pull_bytes), 1e-9);
  EXPECT_NEAR(sum(t.push_update_bytes), unique * (8 * 12 + 8) + mlp * 12, 1e-6);
  EXPECT_NEAR(sum(t.step_update_bytes),
              4 * sum(t.push_bytes) + expected_unique_rows(m, 64) * 8 * 8 + mlp * 8, 1e-6);
  EXPECT_NEAR(sum(t.params), static_cast<double>(rec_total_params(m)), 1e-6);
  // Hash by row: each row's mass goes to its owner (a table below kExactHeadRows: exact).
  const PsTraffic h = rec_ps_traffic(m, ps_strategy(ps(4, PsPartition::kHash), 4, 32));
  double h_sum = 0;  // Zipf's normaliser, by hand
  for (std::int64_t r = 1; r <= m.embedding_rows; ++r) h_sum += std::pow(r, -1.05);
  std::vector<double> by_owner(4, 0.0);
  for (std::int64_t r = 0; r < m.embedding_rows; ++r) {
    by_owner[ps_row_owner(r, m.embedding_rows, 4, PsPartition::kHash)] +=
        1 - std::pow(1 - std::pow(r + 1.0, -1.05) / h_sum, 16);
  }
  for (int s = 0; s < 4; ++s) EXPECT_NEAR(h.touched_rows[s], by_owner[s], 1e-9);
  // Tensor granularity: the whole table on one server.
  const PsTraffic whole =
      rec_ps_traffic(m, ps_strategy(ps(4, PsPartition::kRange, PsGranularity::kTensor), 4, 32));
  int holders = 0;
  for (double v : whole.touched_rows) holders += v > 0;
  EXPECT_EQ(holders, 1);
  EXPECT_NEAR(sum(whole.touched_rows), unique, 1e-9);
  // Uniform access over a big table: hash spreads the tail evenly.
  const RecModelSpec big = rec(10000000, RowAccess::kUniform);
  const std::vector<double> spread = touched_rows_per_server(big, 1e5, 4, PsPartition::kHash);
  for (double v : spread) EXPECT_NEAR(v, expected_unique_rows(big, 1e5) / 4, 50);
}

// Ancestors of every task (transitive dependencies) as bit rows.
std::vector<std::vector<bool>> ancestors(const PsGraph& g) {
  const std::size_t n = g.tasks.size();
  std::vector<std::vector<bool>> a(n, std::vector<bool>(n, false));
  for (std::size_t i = 0; i < n; ++i) {
    for (int d : g.tasks[i].after) {
      EXPECT_LT(d, static_cast<int>(i)) << "a dependency comes first";
      a[i][d] = true;
      for (std::size_t k = 0; k < n; ++k) {
        if (a[d][k]) a[i][k] = true;
      }
    }
  }
  return a;
}

TEST(PsGraph, DependenciesFollowTheConsistencyModel) {
  for (int W = 1; W <= 3; ++W) {
    for (int S = 1; S <= 2; ++S) {
      for (int steps = 1; steps <= 4; ++steps) {
        for (int c = 0; c < 5; ++c) {  // bsp, ssp 0..2, asp
          PsSpec spec = ps(S);
          spec.consistency = c == 0   ? PsConsistency::kBsp
                             : c == 4 ? PsConsistency::kAsp
                                      : PsConsistency::kSsp;
          spec.staleness = c >= 1 && c <= 3 ? c - 1 : 0;
          PsTraffic t;
          t.workers = W;
          t.servers = S;
          for (auto* v :
               {&t.pull_bytes, &t.push_bytes, &t.push_update_bytes, &t.step_update_bytes}) {
            v->assign(S, 1.0);
          }
          const PsGraph g = ps_task_graph(t, spec, steps);
          const std::string what = "W " + std::to_string(W) + " S " + std::to_string(S) +
                                   " steps " + std::to_string(steps) + " " +
                                   ps_consistency_name(spec.consistency) + " " +
                                   std::to_string(spec.staleness);
          const std::size_t updates = spec.consistency == PsConsistency::kBsp ? 1 : W;
          EXPECT_EQ(g.tasks.size(), static_cast<std::size_t>(steps) *
                                        (W * (2 * S + 2) + S * updates +
                                         (spec.consistency == PsConsistency::kSsp ? 1 : 0)))
              << what;
          const auto a = ancestors(g);
          for (int w = 0; w < W; ++w) {
            for (int tt = 0; tt < steps; ++tt) {
              const auto& before = a[g.compute(w, tt)];
              if (tt > 0) {
                EXPECT_TRUE(before[g.compute(w, tt - 1)]) << what;
              }
              for (int w2 = 0; w2 < W; ++w2) {
                for (int k = 0; k < steps; ++k) {
                  // Worker w2's step k is applied (BSP: the step's update on a server; SSP and
                  // ASP: w2's clock) before w computes step tt exactly when the model requires.
                  bool required = false;
                  if (spec.consistency == PsConsistency::kBsp) required = k < tt;
                  if (spec.consistency == PsConsistency::kSsp) {
                    required = k < tt - spec.staleness;
                  }
                  const int applied =
                      spec.consistency == PsConsistency::kBsp ? g.update(w2, k, 0) : g.clock(w2, k);
                  EXPECT_EQ(before[applied], required)
                      << what << " w " << w << " t " << tt << " step " << k << " of " << w2;
                }
              }
              if (spec.consistency == PsConsistency::kAsp) {
                // Nothing of another worker comes before an ASP worker's compute.
                for (std::size_t i = 0; i < g.tasks.size(); ++i) {
                  if (before[i] && g.tasks[i].worker >= 0) {
                    EXPECT_EQ(g.tasks[i].worker, w) << what;
                  }
                }
              }
              for (int s = 0; s < S; ++s) {
                EXPECT_TRUE(before[g.pull(w, tt, s)]) << what;
                if (tt > 0) {  // the channel to s keeps its order: push, then the next pull
                  EXPECT_TRUE(a[g.pull(w, tt, s)][g.push(w, tt - 1, s)]) << what;
                }
                EXPECT_EQ(a[g.push(w, tt, s)][g.compute(w, tt)], true) << what;
              }
            }
          }
        }
      }
    }
  }
}

TEST(PsGraph, ServersWithoutBytesGetNoTasks) {
  PsTraffic t;
  t.workers = 2;
  t.servers = 3;
  t.pull_bytes = {1, 0, 1};
  t.push_bytes = {1, 0, 1};
  t.push_update_bytes = t.step_update_bytes = {1, 0, 1};
  const PsGraph g = ps_task_graph(t, ps(3), 2);
  EXPECT_EQ(g.pull(0, 0, 1), -1);
  EXPECT_EQ(g.push(1, 1, 1), -1);
  EXPECT_EQ(g.update(0, 1, 1), -1);
  EXPECT_GE(g.pull(1, 1, 2), 0);
  EXPECT_EQ(g.tasks[g.push(1, 1, 2)].kind, PsTaskKind::kPush);
  EXPECT_DOUBLE_EQ(g.tasks[g.push(1, 1, 2)].bytes, 1.0);
}

}  // namespace
}  // namespace strata::strategies
