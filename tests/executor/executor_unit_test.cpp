// Executor pieces without MPI: the seeded, strategy-independent initialisation and its tp
// shards, the deterministic data, the vocabulary-parallel cross-entropy, what the executor
// refuses, and a one-rank training run on the local backend.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "common/error.hpp"
#include "executor/comm.hpp"
#include "executor/data.hpp"
#include "executor/detail/vocab_parallel.hpp"
#include "executor/executor.hpp"
#include "executor/params.hpp"
#include "kernels/ops.hpp"
#include "strategies/plan.hpp"

namespace {

using namespace strata;
using strategies::Plan;

const std::string kConfigs = std::string(STRATA_SOURCE_DIR) + "/configs/";

strategies::ModelSpec tiny_model() {
  return strategies::load_model(kConfigs + "models/gpt-tiny.json");
}
strategies::ClusterSpec local_cpu() {
  return strategies::load_cluster(kConfigs + "clusters/local-cpu.json");
}
strategies::StrategySpec strategy(const std::string& name) {
  return strategies::load_strategy(kConfigs + "strategies/" + name + ".json");
}
Plan plan_of(const std::string& name) {
  const auto s = strategy(name);
  return strategies::lower(tiny_model(), local_cpu(), s, s.world_size());
}

TEST(ExecutorInit, NormalDrawsAreDeterministicAndStandard) {
  double sum = 0, sq = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const float x = exec::init_normal(7, "w", i);
    EXPECT_EQ(x, exec::init_normal(7, "w", i));
    sum += x;
    sq += static_cast<double>(x) * x;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.03);
  EXPECT_NEAR(sq / n, 1.0, 0.03);
  EXPECT_NE(exec::init_normal(7, "w", 0), exec::init_normal(8, "w", 0));
  EXPECT_NE(exec::init_normal(7, "w", 0), exec::init_normal(7, "v", 0));
}

// The tp = 2 shards of every parameter, put back together by the documented layout, are the
// one-rank parameters exactly: every strategy starts from the same model.
TEST(ExecutorInit, TensorParallelShardsReassembleTheUnshardedModel) {
  const Plan one = plan_of("tiny-1rank"), two = plan_of("tiny-tp2");
  exec::RankParams full(one, 0, 5), r0(two, 0, 5), r1(two, 1, 5);
  const auto a = full.all(), b0 = r0.all(), b1 = r1.all();
  ASSERT_EQ(a.size(), b0.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    const exec::Param& p = *a[i];
    SCOPED_TRACE(p.name);
    const auto& s0 = b0[i]->value;
    const auto& s1 = b1[i]->value;
    std::vector<float> joined;
    const std::int64_t R = p.rows, C = p.cols;
    switch (b0[i]->shard) {
      case exec::Shard::kReplicated:
        EXPECT_EQ(s0, p.value);
        EXPECT_EQ(s1, p.value);
        continue;
      case exec::Shard::kRows:
        joined = s0;
        joined.insert(joined.end(), s1.begin(), s1.end());
        break;
      case exec::Shard::kQkvRows:
        for (int part = 0; part < 3; ++part) {
          const auto n = static_cast<std::ptrdiff_t>(R / 3 / 2 * C);
          joined.insert(joined.end(), s0.begin() + part * n, s0.begin() + (part + 1) * n);
          joined.insert(joined.end(), s1.begin() + part * n, s1.begin() + (part + 1) * n);
        }
        break;
      case exec::Shard::kCols:
        for (std::int64_t row = 0; row < R; ++row) {
          const auto w = static_cast<std::ptrdiff_t>(C / 2);
          joined.insert(joined.end(), s0.begin() + row * w, s0.begin() + (row + 1) * w);
          joined.insert(joined.end(), s1.begin() + row * w, s1.begin() + (row + 1) * w);
        }
        break;
    }
    EXPECT_EQ(joined, p.value);
  }
}

TEST(ExecutorInit, PipelineStagesHoldTheirLayersAndATiedHeadCopy) {
  const Plan pp = plan_of("tiny-pp2-1f1b"), one = plan_of("tiny-1rank");
  exec::RankParams s0(pp, 0, 5), s1(pp, 1, 5), full(one, 0, 5);
  EXPECT_TRUE(s0.has_layer(0) && s0.has_layer(1) && !s0.has_layer(2));
  EXPECT_TRUE(s1.has_layer(2) && s1.has_layer(3) && !s1.has_layer(1));
  EXPECT_TRUE(s0.has_embedding() && !s0.has_head());
  EXPECT_TRUE(s1.has_head() && !s1.has_embedding());
  EXPECT_EQ(s1.head().value, full.wte().value);  // Megatron's copy starts equal
  EXPECT_EQ(&full.head(), &full.wte());          // one stage: the head is wte itself
  // Parameter counts agree with the Plan's accounting.
  double count = 0;
  for (exec::Param* p : s0.all()) count += static_cast<double>(p->size());
  EXPECT_DOUBLE_EQ(count, pp.programs[0].memory.params_count);
}

TEST(ExecutorData, SamplesAreDeterministicShiftedByOneAndInRange) {
  std::vector<std::uint8_t> bytes(1000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 7);
  const exec::Corpus c(bytes, 32, 3);
  std::vector<std::int32_t> tok, tgt, tok2, tgt2;
  c.batch(10, 4, tok, tgt);
  c.batch(10, 4, tok2, tgt2);
  EXPECT_EQ(tok, tok2);
  ASSERT_EQ(tok.size(), 4u * 32);
  for (int i = 0; i < 4; ++i) {
    const std::size_t o = c.offset(10 + i);
    EXPECT_LE(o + 32, bytes.size() - 1 + 1);
    for (int j = 0; j < 32; ++j) {
      EXPECT_EQ(tok[i * 32 + j], bytes[o + j]);
      EXPECT_EQ(tgt[i * 32 + j], bytes[o + j + 1]);
    }
  }
  // Batch (first, count) is the concatenation of single samples: replicas and micro-batches
  // that split a global batch read the same tokens as one rank reading all of it.
  c.batch(11, 1, tok2, tgt2);
  EXPECT_TRUE(std::equal(tok2.begin(), tok2.end(), tok.begin() + 32));
}

TEST(ExecutorData, ShortOrMissingCorpusIsAConfigError) {
  EXPECT_THROW(exec::Corpus(std::vector<std::uint8_t>(32), 32, 1), ConfigError);
  EXPECT_THROW(exec::Corpus("/nonexistent/corpus.txt", 32, 1), ConfigError);
  EXPECT_NO_THROW(exec::Corpus(exec::default_corpus_path(), 32, 1));
}

// Two vocabulary shards combined with the kSoftmaxStats reduction give the loss and gradient
// of the unsharded softmax cross-entropy kernel.
TEST(ExecutorVocabParallel, ShardedCrossEntropyMatchesTheKernel) {
  const std::int64_t n = 5, V = 12, half = V / 2;
  std::vector<float> logits(n * V);
  for (std::size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(0.7f * i) * 3.0f;
  const std::vector<std::int32_t> targets = {0, 5, 6, 11, 3};
  const auto stream = kernels::Stream::cpu();
  float ref_loss = 0;
  std::vector<float> lse_ref(n), dref(n * V);
  kernels::cross_entropy_forward(stream, &ref_loss, lse_ref.data(), logits.data(),
                                 targets.data(), n, V);
  kernels::cross_entropy_backward(stream, dref.data(), logits.data(), lse_ref.data(),
                                  targets.data(), n, V);
  std::vector<float> shard[2], stats[2];
  for (int r = 0; r < 2; ++r) {
    for (std::int64_t i = 0; i < n; ++i) {
      shard[r].insert(shard[r].end(), logits.begin() + i * V + r * half,
                      logits.begin() + i * V + (r + 1) * half);
    }
    stats[r].resize(3 * n);
    exec::detail::softmax_stats(stats[r].data(), shard[r].data(), targets.data(), r * half, half,
                                n);
  }
  exec::reduce_into(stats[0].data(), stats[1].data(), stats[0].size(),
                    exec::ReduceOp::kSoftmaxStats);
  std::vector<float> lse(n);
  const double total = exec::detail::cross_entropy_from_stats(lse.data(), stats[0].data(), n);
  EXPECT_NEAR(total / n, ref_loss, 1e-5);
  for (int r = 0; r < 2; ++r) {
    std::vector<float> d(n * half);
    exec::detail::cross_entropy_shard_backward(d.data(), shard[r].data(), lse.data(),
                                               targets.data(), r * half, half, n, 1.0f / n);
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t v = 0; v < half; ++v) {
        EXPECT_NEAR(d[i * half + v], dref[i * V + r * half + v], 1e-6);
      }
    }
  }
}

void expect_refused(strategies::StrategySpec s, strategies::ModelSpec m, const std::string& what) {
  const Plan plan = strategies::lower(m, local_cpu(), s, s.world_size());
  try {
    exec::check_supported(plan);
    ADD_FAILURE() << "not refused: " << what;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST(ExecutorSupport, RefusesWhatItDoesNotRunYetNamingTheField) {
  auto s = strategy("tiny-dp2");
  s.precision = strategies::Precision::kBf16;
  expect_refused(s, tiny_model(), "strategy.precision = \"bf16\"");
  auto m = tiny_model();
  m.dropout = true;
  expect_refused(strategy("tiny-dp2"), m, "model.dropout = true");
  EXPECT_NO_THROW(exec::check_supported(plan_of("tiny-dp2-tp2-pp2")));
  EXPECT_NO_THROW(exec::check_supported(plan_of("tiny-zero3")));
  EXPECT_NO_THROW(exec::check_supported(plan_of("tiny-dp2-pp2-zero1")));
  EXPECT_NO_THROW(exec::check_supported(plan_of("tiny-dp2-tp2-sp-zero2")));
  s = strategy("tiny-tp2");
  s.layer_overrides.push_back({0, 1, /*tp=*/1, -1});
  expect_refused(s, tiny_model(), "strategy.layer_overrides[0].tp = 1");
}

// One rank on the local backend: ten steps lower the loss from about ln(256).
TEST(ExecutorLocal, OneRankTrainsAndTheLossFalls) {
  const Plan plan = plan_of("tiny-1rank");
  auto comm = exec::make_local_comm();
  const exec::Corpus corpus(exec::default_corpus_path(), plan.model.seq_length, 1234);
  exec::Executor ex(plan, *comm, corpus, exec::RunOptions{});
  std::vector<double> losses;
  for (int k = 0; k < 10; ++k) losses.push_back(ex.step().loss);
  EXPECT_NEAR(losses.front(), std::log(256.0), 0.1);
  EXPECT_LT(losses.back(), losses.front() - 0.5);
  for (double l : losses) EXPECT_TRUE(std::isfinite(l));
  EXPECT_EQ(ex.steps_done(), 10);
  EXPECT_EQ(ex.last_step_timings().size(), plan.programs[0].tasks.size());
}

// The same run twice gives bit-identical losses (no hidden state, deterministic reductions).
TEST(ExecutorLocal, RunsAreReproducible) {
  const Plan plan = plan_of("tiny-1rank");
  auto comm = exec::make_local_comm();
  const exec::Corpus corpus(exec::default_corpus_path(), plan.model.seq_length, 1234);
  exec::Executor a(plan, *comm, corpus, exec::RunOptions{});
  exec::Executor b(plan, *comm, corpus, exec::RunOptions{});
  for (int k = 0; k < 3; ++k) EXPECT_EQ(a.step().loss, b.step().loss);
}

TEST(ExecutorLocal, WorldSizeMismatchIsRefusedBeforeAnyWork) {
  const Plan plan = plan_of("tiny-dp2");
  auto comm = exec::make_local_comm();
  const exec::Corpus corpus(exec::default_corpus_path(), plan.model.seq_length, 1234);
  try {
    exec::Executor ex(plan, *comm, corpus, exec::RunOptions{});
    FAIL() << "a 1-rank world ran a 2-rank plan";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("world size = 1"), std::string::npos) << e.what();
  }
}

}  // namespace
