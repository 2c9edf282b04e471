// Executor pieces without MPI: the seeded, strategy-independent initialisation and its tp
// shards, the deterministic data, what the executor refuses, memory measured against the Plan,
// a one-rank training run on the local backend and its collectives.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <tuple>

#include "common/error.hpp"
#include "executor/checkpoint.hpp"
#include "executor/comm.hpp"
#include "executor/data.hpp"
#include "executor/executor.hpp"
#include "executor/memory.hpp"
#include "executor/op_context.hpp"
#include "executor/params.hpp"
#include "kernels/ops.hpp"
#include "strategies/plan.hpp"
#include "tests/kernels/reference.hpp"

namespace {

using namespace strata;
using strategies::Plan;

// STRATA_CONFIG_DIR (as the CLI honours it) where the binary runs on another machine: the
// GPU checks (scripts/gpu-check.sh).
const std::string kConfigs =
    (std::getenv("STRATA_CONFIG_DIR") != nullptr ? std::string(std::getenv("STRATA_CONFIG_DIR"))
                                                 : std::string(STRATA_SOURCE_DIR) + "/configs") +
    "/";

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

// gpt-tiny with 4 experts of width 32 per layer, 2 per token.
strategies::ModelSpec tiny_moe() {
  strategies::ModelSpec m = tiny_model();
  m.moe.num_experts = 4;
  m.moe.num_experts_per_tok = 2;
  m.moe.moe_intermediate_size = 32;
  return m;
}

// The MoE auxiliary loss's weight in the step's loss (and its gradient's scale) is the LM loss's
// per-token weight times the rows one routing rank's loss averages over: the micro-batch's rows
// (N), split over tp under sequence parallelism. 1 / (micro-batches x dp x tp) on every rank.
TEST(ExecutorMoe, TheAuxLossIsWeighedAsTheLmLoss) {
  strategies::ModelSpec m = tiny_moe();
  m.moe.router_aux_loss_coef = 0.01;
  for (const auto& [name, dp, want] : {std::tuple{"tiny-dp2", 2, 1.0 / (2 * 2)},
                                       std::tuple{"tiny-tp2-sp", 2, 1.0 / (2 * 2 * 2)}}) {
    SCOPED_TRACE(name);
    strategies::StrategySpec s = strategy(name);
    s.dp = dp;
    s.ep = 2;
    s.expert_tp = 1;
    const Plan plan = strategies::lower(m, local_cpu(), s, s.world_size());
    const int tp = s.tp;
    for (int r = 0; r < plan.world_size; ++r) {
      EXPECT_DOUBLE_EQ(exec::moe_aux_loss_scale(plan, r), want);
      for (const strategies::Op& op : plan.program_of(r).ops) {
        if (op.kind == strategies::OpKind::kCrossEntropyBwd) {
          EXPECT_NEAR(exec::moe_aux_loss_scale(plan, r), op.param * op.dims[0] / tp, 1e-9);
        }
        if (op.kind == strategies::OpKind::kMoeRouteBwd) {
          EXPECT_FLOAT_EQ(op.param, 0.01f);
        }
      }
    }
  }
}

// The checkpoint checksum against FNV-1a 64's published test vectors (the offset basis for no
// bytes; "a"; "foobar").
TEST(CheckpointChecksum, Fnv1a64MatchesItsTestVectors) {
  EXPECT_EQ(exec::fnv1a64("", 0), 0xcbf29ce484222325ULL);
  EXPECT_EQ(exec::fnv1a64("a", 1), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(exec::fnv1a64("foobar", 6), 0x85944171f73967e8ULL);
  EXPECT_EQ(exec::checkpoint_name(42), "step-000042");
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

// The unsharded values of a parameter from the shards of a t-way group, placed by the documented
// layout (shard_indices).
std::vector<float> reassemble(const strategies::ParamInfo& p, std::uint64_t seed) {
  std::vector<float> full(static_cast<std::size_t>(p.rows * p.cols), -999.0f);
  for (int r = 0; r < p.shard_parts; ++r) {
    const auto idx = exec::shard_indices(p, r);
    const auto v = exec::initial_values(p, r, seed);
    for (std::size_t k = 0; k < idx.size(); ++k) full[idx[k]] = v[k];
  }
  return full;
}

// The tp = 2 shards of every parameter, put back together by the documented layout, are the
// one-rank parameters exactly: every strategy starts from the same model.
TEST(ExecutorInit, TensorParallelShardsReassembleTheUnshardedModel) {
  const Plan one = plan_of("tiny-1rank"), two = plan_of("tiny-tp2");
  std::map<std::string, const strategies::ParamInfo*> sharded;
  for (const auto& p : two.programs[0].params) sharded[p.init_name()] = &p;
  ASSERT_EQ(sharded.size(), one.programs[0].params.size());
  for (const auto& p : one.programs[0].params) {
    SCOPED_TRACE(p.init_name());
    ASSERT_EQ(sharded.count(p.init_name()), 1u);
    const strategies::ParamInfo& q = *sharded[p.init_name()];
    EXPECT_EQ(q.shard_parts, 2);
    EXPECT_EQ(p.shard_parts, 1);
    EXPECT_EQ(reassemble(q, 5), exec::initial_values(p, 0, 5));
  }
}

// An MoE gpt-tiny (layer 0 dense) with one shared expert of width 64: the shared experts'
// parameters (the mlp.* kinds of an MoE layer) are named apart from the dense MLP's and the
// routed experts', and their tp = 2 shards (fc1 by rows, fc2 by columns) put back together are
// the one-rank values: a tp rank starts from the one-rank run's slice.
TEST(ExecutorInit, SharedExpertsAreNamedApartAndTheirShardsReassemble) {
  strategies::ModelSpec m = tiny_moe();
  m.moe.n_shared_experts = 1;
  m.moe.shared_expert_intermediate_size = 64;
  m.moe.first_k_dense_replace = 1;
  const auto one_s = strategy("tiny-1rank"), two_s = strategy("tiny-tp2-sp");
  const Plan one = strategies::lower(m, local_cpu(), one_s, 1);
  const Plan two = strategies::lower(m, local_cpu(), two_s, 2);
  std::map<std::string, const strategies::ParamInfo*> sharded;
  for (const auto& p : two.programs[0].params) sharded[p.init_name()] = &p;
  ASSERT_EQ(sharded.size(), one.programs[0].params.size()) << "a name held twice";
  std::set<std::string> names;
  for (const auto& p : one.programs[0].params) names.insert(p.init_name());
  for (const char* name : {"layers.0.fc1.w", "layers.0.fc2.b", "layers.1.shared_experts.fc1.w",
                           "layers.1.shared_experts.fc1.b", "layers.1.shared_experts.fc2.w",
                           "layers.3.shared_experts.fc2.b", "layers.3.experts.fc1.w"}) {
    EXPECT_EQ(names.count(name), 1u) << name;
  }
  EXPECT_EQ(names.count("layers.1.fc1.w"), 0u);
  int shared = 0;
  for (const auto& p : one.programs[0].params) {
    SCOPED_TRACE(p.init_name());
    ASSERT_EQ(sharded.count(p.init_name()), 1u);
    const strategies::ParamInfo& q = *sharded[p.init_name()];
    EXPECT_EQ(q.shared_expert, p.shared_expert);
    if (!p.shared_expert) continue;
    ++shared;
    EXPECT_GE(p.layer, 1);
    EXPECT_EQ(q.shard_parts, 2);
    EXPECT_EQ(reassemble(q, 5), exec::initial_values(p, 0, 5));
    if (p.kind == strategies::TensorKind::kFc1Weight) {  // drawn under its own name
      const std::string dense = "layers." + std::to_string(p.layer) + ".fc1.w";
      const float first = exec::initial_values(p, 0, 5)[0];
      EXPECT_EQ(first, p.init_std * exec::init_normal(5, p.init_name(), 0));
      EXPECT_NE(first, p.init_std * exec::init_normal(5, dense, 0));
    }
  }
  EXPECT_EQ(shared, 3 * 4);  // 3 MoE layers: fc1 weight and bias, fc2 weight and bias
  // The Plan's JSON carries no flag: reading it back derives it (a router in the layer).
  std::vector<strategies::ParamInfo> params = one.programs[0].params;
  for (auto& p : params) p.shared_expert = false;
  strategies::mark_shared_experts(params);
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(params[i].init_name(), one.programs[0].params[i].init_name());
  }
}

TEST(ExecutorInit, PipelineStagesHoldTheirLayersAndATiedHeadCopy) {
  const Plan pp = plan_of("tiny-pp2-1f1b"), one = plan_of("tiny-1rank");
  auto layers = [](const strategies::Program& p) {
    std::set<int> out;
    for (const auto& q : p.params) out.insert(q.layer);
    return out;
  };
  EXPECT_EQ(layers(pp.programs[0]), (std::set<int>{-1, 0, 1}));
  EXPECT_EQ(layers(pp.programs[1]), (std::set<int>{-1, 2, 3}));
  const strategies::ParamInfo* head = nullptr;
  const strategies::ParamInfo* wte = nullptr;
  for (const auto& q : pp.programs[1].params) {
    if (q.kind == strategies::TensorKind::kLmHeadWeight) head = &q;
  }
  for (const auto& q : one.programs[0].params) {
    if (q.kind == strategies::TensorKind::kWordEmbedding) wte = &q;
    EXPECT_NE(q.kind, strategies::TensorKind::kLmHeadWeight) << "one stage: the head is wte";
  }
  ASSERT_TRUE(head != nullptr && wte != nullptr);
  EXPECT_TRUE(head->tied_copy);
  EXPECT_EQ(exec::initial_values(*head, 0, 5), exec::initial_values(*wte, 0, 5));
  // Parameter counts agree with the Plan's accounting.
  double count = 0;
  for (const auto& q : pp.programs[0].params) count += static_cast<double>(q.elements);
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

// Synthetic tokens (--data random): deterministic, in range, covering the vocabulary about
// uniformly, each target the next token of its sample's stream, batches the concatenation of
// single samples as for a corpus.
TEST(ExecutorData, SyntheticTokensAreDeterministicUniformAndShifted) {
  const std::int64_t vocab = 50257;
  const exec::Corpus c = exec::Corpus::synthetic(vocab, 64, 9);
  EXPECT_EQ(c.path(), "random");
  std::vector<std::int32_t> tok, tgt, tok2, tgt2;
  c.batch(5, 40, tok, tgt);
  c.batch(5, 40, tok2, tgt2);
  EXPECT_EQ(tok, tok2);
  EXPECT_EQ(tgt, tgt2);
  std::vector<int> per_tenth(10, 0);
  for (std::size_t k = 0; k < tok.size(); ++k) {
    ASSERT_GE(tok[k], 0);
    ASSERT_LT(tok[k], vocab);
    per_tenth[static_cast<std::size_t>(tok[k] * 10 / vocab)] += 1;
    if (k % 64 != 63) {
      EXPECT_EQ(tgt[k], tok[k + 1]) << k;
    }
  }
  for (int n : per_tenth) EXPECT_NEAR(n, 256, 64);  // 2,560 draws in ten bins (sd about 15)
  c.batch(6, 1, tok2, tgt2);
  EXPECT_TRUE(std::equal(tok2.begin(), tok2.end(), tok.begin() + 64));
  EXPECT_NE(tok2, std::vector<std::int32_t>(tok.begin(), tok.begin() + 64));
  EXPECT_THROW(exec::Corpus::synthetic(0, 64, 1), ConfigError);
  EXPECT_THROW(exec::Corpus::synthetic(100, 0, 1), ConfigError);
}

TEST(ExecutorData, ShortOrMissingCorpusIsAConfigError) {
  EXPECT_THROW(exec::Corpus(std::vector<std::uint8_t>(32), 32, 1), ConfigError);
  EXPECT_THROW(exec::Corpus("/nonexistent/corpus.txt", 32, 1), ConfigError);
  EXPECT_NO_THROW(exec::Corpus(exec::default_corpus_path(), 32, 1));
}

std::string refusal_of(strategies::StrategySpec s, strategies::ModelSpec m) {
  const Plan plan = strategies::lower(m, local_cpu(), s, s.world_size());
  return exec::refusal(plan, 0);
}

// The executor refuses by what the Plan's programs need (it reads no spec), naming the buffer
// or op and the spec field that would change it.
TEST(ExecutorSupport, RefusesWhatItDoesNotRunYetNamingTheBufferAndTheField) {
  auto s = strategy("tiny-dp2");
  s.precision = strategies::Precision::kFp16;
  const std::string fp16 = refusal_of(s, tiny_model());
  EXPECT_NE(fp16.find("is fp16"), std::string::npos) << fp16;
  EXPECT_NE(fp16.find("\"precision\": \"bf16\" or \"fp32\""), std::string::npos) << fp16;
  s.precision = strategies::Precision::kBf16;
  EXPECT_EQ(refusal_of(s, tiny_model()), "");
  auto m = tiny_model();
  m.dropout = true;
  const std::string dropout = refusal_of(strategy("tiny-dp2"), m);
  EXPECT_NE(dropout.find("dropout"), std::string::npos) << dropout;
  for (const char* name : {"tiny-dp2-tp2-pp2", "tiny-zero3", "tiny-dp2-pp2-zero1",
                           "tiny-dp2-tp2-sp-zero2"}) {
    EXPECT_EQ(exec::refusal(plan_of(name), 0), "") << name;
  }
  // A per-layer tp change is only ops and buffers of the Plan: nothing to refuse.
  s = strategy("tiny-dp2-tp2");
  s.order = {strategies::Dim::kTp, strategies::Dim::kCp, strategies::Dim::kEp,
             strategies::Dim::kDp, strategies::Dim::kPp};
  s.layer_overrides.push_back({0, 1, /*tp=*/1, -1});
  EXPECT_EQ(refusal_of(s, tiny_model()), "");
}

// FP8 GEMMs (strategy fp8) are simulated only: the executor refuses the Plan by its FP8 ops,
// before the 16-bit buffers FP8 training needs, naming the field to change.
TEST(ExecutorSupport, RefusesFp8NamingTheField) {
  auto s = strategy("tiny-dp2");
  s.precision = strategies::Precision::kBf16;
  s.fp8 = strategies::Fp8Format::kHybrid;
  // local-cpu has no FP8 peak: lowering refuses first, naming the field and the device.
  try {
    strategies::lower(tiny_model(), local_cpu(), s, s.world_size());
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("strategy.fp8 = \"hybrid\""), std::string::npos)
        << e.what();
  }
  // A CPU that claimed FP8 tensor cores: the executor's own refusal.
  auto cluster = local_cpu();
  for (auto& g : cluster.node_groups) g.gpu.peak_fp8_flops = 1e12;
  const Plan plan = strategies::lower(tiny_model(), cluster, s, s.world_size());
  const std::string why = exec::refusal(plan, 0);
  EXPECT_NE(why.find("runs in FP8 (strategy \"fp8\")"), std::string::npos) << why;
  EXPECT_NE(why.find("\"fp8\": \"none\""), std::string::npos) << why;
}

// On one rank the executor allocates every tensor of the Plan's buffer table when the Plan
// says: its measured peak is the Plan's, byte for byte, for each recompute mode.
TEST(ExecutorMemory, MeasuredPeakEqualsThePlansOnOneRank) {
  for (strategies::Recompute r : {strategies::Recompute::kNone, strategies::Recompute::kSelective,
                                  strategies::Recompute::kFull}) {
    auto s = strategy("tiny-1rank");
    s.recompute = r;
    const Plan plan = strategies::lower(tiny_model(), local_cpu(), s, 1);
    auto comm = exec::make_local_comm();
    const exec::Corpus corpus(exec::default_corpus_path(), plan.model.seq_length, 1234);
    exec::Executor ex(plan, *comm, corpus, exec::RunOptions{});
    ex.step();
    const exec::MemoryStats& m = ex.interpreter().memory();
    const strategies::MemorySummary& planned = plan.programs[0].memory;
    SCOPED_TRACE(strategies::recompute_name(r));
    EXPECT_EQ(m.peak_bytes, planned.peak_bytes());
    EXPECT_EQ(m.static_bytes.total(), planned.static_bytes.total());
    EXPECT_EQ(m.peak_transient_bytes, planned.peak_dynamic_bytes);
    EXPECT_GT(m.peak_transient_bytes, 0);
    const auto memory = ex.gather_memory();
    ASSERT_EQ(memory.size(), 1u);
    EXPECT_EQ(memory[0].measured.peak_bytes, memory[0].planned_peak_bytes);
  }
}

// The arena is placed once from the Plan: what it holds is its two blocks, the same after
// every step, at least the peak, and the peak set beside the Plan does not count the blocks.
TEST(ExecutorMemory, TheArenaIsPlacedOnceAndHeldAcrossSteps) {
  const Plan plan = plan_of("tiny-1rank");
  auto comm = exec::make_local_comm();
  const exec::Corpus corpus(exec::default_corpus_path(), plan.model.seq_length, 1234);
  exec::Executor ex(plan, *comm, corpus, exec::RunOptions{});
  const exec::Placement& placed = ex.interpreter().arena().placement();
  ASSERT_TRUE(ex.interpreter().arena().planned());
  ex.step();
  const exec::MemoryStats first = ex.interpreter().memory();
  EXPECT_EQ(first.reserved_peak_bytes,
            static_cast<double>(placed.static_bytes + placed.transient_bytes));
  EXPECT_GE(first.reserved_peak_bytes, first.peak_bytes);
  ex.step();
  ex.step();
  const exec::MemoryStats& later = ex.interpreter().memory();
  EXPECT_EQ(later.reserved_peak_bytes, first.reserved_peak_bytes);
  EXPECT_EQ(later.peak_bytes, plan.programs[0].memory.peak_bytes());
  EXPECT_EQ(ex.gather_memory()[0].measured.reserved_peak_bytes, first.reserved_peak_bytes);
}

// The placement never lets two buffers alive at a common task share a byte, keeps every offset
// aligned, and needs little beyond the Plan's peak of live transient bytes: on every rank of
// plans with pipelines, interleaving, recompute, tp, sp, cp and ZeRO-3.
TEST(ExecutorMemory, ThePlacementSeparatesLiveBuffersAndStaysNearThePeak) {
  for (const char* name : {"tiny-1rank", "tiny-pp2-interleaved", "tiny-recompute-full",
                           "tiny-dp2-tp2-pp2-sp", "tiny-cp2-pp2-recompute-full",
                           "tiny-dp2-tp2-zero3"}) {
    SCOPED_TRACE(name);
    const Plan plan = plan_of(name);
    for (const strategies::Program& p : plan.programs) {
      const exec::Placement placed = exec::place_buffers(p);
      struct Item {
        std::uint32_t first, last;
        std::int64_t begin, end;
      };
      std::vector<Item> items;
      double padded = 0;
      for (std::size_t id = 0; id < p.buffers.size(); ++id) {
        const strategies::Buffer& b = p.buffers[id];
        if (b.is_view() || (!b.persistent && b.first_task >= p.tasks.size())) {
          EXPECT_EQ(placed.offset[id], -1);
          continue;
        }
        ASSERT_GE(placed.offset[id], 0) << p.buffer_name(static_cast<std::int32_t>(id));
        EXPECT_EQ(placed.offset[id] % 256, 0);
        EXPECT_EQ(placed.in_static[id], b.persistent);
        const std::size_t block = b.persistent ? placed.static_bytes : placed.transient_bytes;
        EXPECT_LE(placed.offset[id] + static_cast<std::int64_t>(b.bytes()),
                  static_cast<std::int64_t>(block));
        if (b.persistent) continue;
        items.push_back({b.first_task, b.last_task, placed.offset[id],
                         placed.offset[id] + static_cast<std::int64_t>(b.bytes())});
        padded += static_cast<double>((static_cast<std::size_t>(b.bytes()) + 255) / 256 * 256);
      }
      for (std::size_t i = 0; i < items.size(); ++i) {
        for (std::size_t j = i + 1; j < items.size(); ++j) {
          const Item &a = items[i], &c = items[j];
          const bool same_time = a.last >= c.first && c.last >= a.first;
          const bool same_bytes = a.begin < c.end && c.begin < a.end;
          ASSERT_FALSE(same_time && same_bytes) << "buffers " << i << " and " << j;
        }
      }
      EXPECT_GE(static_cast<double>(placed.transient_bytes), p.memory.peak_dynamic_bytes);
      EXPECT_LE(static_cast<double>(placed.transient_bytes),
                1.10 * p.memory.peak_dynamic_bytes + 256.0 * static_cast<double>(items.size()))
          << "of " << padded << " bytes in all";
    }
  }
}

TEST(ExecutorMemory, TheArenaHandsAReleasedBufferToTheNextOfItsSize) {
  const kernels::Stream cpu = kernels::Stream::cpu();
  exec::Arena arena(cpu);
  strategies::Buffer a;
  a.dtype = strategies::DType::kFp32;
  a.ndim = 1;
  a.shape[0] = 1000;
  strategies::Buffer b = a;
  b.shape[0] = 2000;
  void* first = arena.allocate(0, a, false);
  arena.release(0);
  EXPECT_EQ(arena.allocate(1, b, false) == first, false);  // another size: a new buffer
  EXPECT_EQ(arena.allocate(2, a, true), first);            // the same size: the released one
  EXPECT_EQ(static_cast<float*>(first)[999], 0.0f);        // zeroed when asked, reused or not
  EXPECT_EQ(arena.stats().peak_transient_bytes, 12000.0);
  // Held at most: 12,000 bytes live, 32 of padding (4,000 is not a multiple of 64), no cache.
  EXPECT_EQ(arena.stats().reserved_peak_bytes, 12032.0);
}

// bf16 on one rank: 16-bit parameters (rounded from the same initial values), activations and
// gradients, fp32 master weights and moments; the GEMMs, GELU and LayerNorm through their bf16
// kernels, the other ops on widened copies. Ten steps follow the fp32 run's losses within 1e-3
// relative without being them, and the measured peak is the bf16 Plan's.
TEST(ExecutorLocal, Bf16TrainsToTheFp32Losses) {
  auto s = strategy("tiny-1rank");
  s.precision = strategies::Precision::kBf16;
  const Plan bf16 = strategies::lower(tiny_model(), local_cpu(), s, 1);
  const Plan fp32 = plan_of("tiny-1rank");
  auto comm = exec::make_local_comm();
  const exec::Corpus corpus(exec::default_corpus_path(), fp32.model.seq_length, 1234);
  exec::Executor a(fp32, *comm, corpus, exec::RunOptions{});
  exec::Executor b(bf16, *comm, corpus, exec::RunOptions{});
  bool differs = false;
  for (int k = 0; k < 10; ++k) {
    const double la = a.step().loss, lb = b.step().loss;
    EXPECT_NEAR(lb, la, 1e-3 * la) << "step " << k + 1;
    differs = differs || la != lb;
  }
  EXPECT_TRUE(differs);
  EXPECT_EQ(b.interpreter().memory().peak_bytes, bf16.programs[0].memory.peak_bytes());
  EXPECT_LT(bf16.programs[0].memory.peak_bytes(), fp32.programs[0].memory.peak_bytes());
  // The parameters are bf16 and hold the fp32 master weights rounded.
  const strategies::BucketInfo& bucket = bf16.programs[0].buckets.at(0);
  ASSERT_GE(bucket.master, 0);
  const exec::TensorView params = b.interpreter().view(bucket.params);
  const exec::TensorView master = b.interpreter().view(bucket.master);
  ASSERT_EQ(params.dtype, strategies::DType::kBf16);
  for (std::int64_t i = 0; i < params.elements(); i += 97) {
    EXPECT_EQ(params.bf()[i].bits, kernels::to_bf16(master.f32()[i]).bits) << i;
  }
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

// The local backend's broadcast and all-to-all are identities on a world of one: the buffer
// stays, recv becomes send.
TEST(ExecutorLocal, BroadcastAndAllToAllOnOneRankCopy) {
  auto comm = exec::make_local_comm();
  const exec::GroupId g = comm->split({0});
  std::vector<float> buf = {1.f, 2.f, 3.f};
  comm->broadcast(g, buf.data(), buf.size(), 0).wait();
  EXPECT_EQ(buf, (std::vector<float>{1.f, 2.f, 3.f}));
  std::vector<float> recv(3, -1.f);
  comm->all_to_all(g, buf.data(), recv.data(), 3).wait();
  EXPECT_EQ(recv, buf);
}

// On a GPU: the same Plans with every tensor in device memory and every op a CUDA kernel train
// to the CPU executor's losses (fp32 on both: within 1e-4, cuBLAS and Eigen summing in other
// orders; bf16 on the GPU against fp32 on the CPU within 1e-3), hold the Plan's peak byte for byte in the placed arena, capture the same reduced
// gradients, and time every task with events inside the step. Without a GPU, asking for one is
// a ConfigError naming the reason.
TEST(ExecutorCuda, TinyGptTrainsToTheCpuLossesOnAGpu) {
  const Plan plan = plan_of("tiny-1rank");
  auto comm = exec::make_local_comm();
  const exec::Corpus corpus(exec::default_corpus_path(), plan.model.seq_length, 1234);
  exec::RunOptions on_gpu;
  on_gpu.backend = kernels::Backend::kCuda;
  if (kernels::cuda_device_count() == 0) {
    try {
      exec::Executor ex(plan, *comm, corpus, on_gpu);
      FAIL() << "an executor was made on CUDA without a GPU";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("cuda:0 is not available"), std::string::npos)
          << e.what();
    }
  }
  STRATA_SKIP_WITHOUT_CUDA();
  for (const char* name : {"tiny-1rank", "tiny-fused-attention"}) {
    SCOPED_TRACE(name);
    const Plan p = plan_of(name);
    exec::Executor cpu(p, *comm, corpus, exec::RunOptions{});
    exec::Executor gpu(p, *comm, corpus, on_gpu);
    for (int k = 0; k < 5; ++k) {
      const bool capture = k == 0;
      const double a = cpu.step(capture).loss, b = gpu.step(capture).loss;
      EXPECT_NEAR(b, a, 1e-4 * std::abs(a)) << "step " << k + 1;
      if (!capture) continue;
      const auto &ga = cpu.captured_gradients(), &gb = gpu.captured_gradients();
      ASSERT_EQ(ga.size(), gb.size());
      for (std::size_t i = 0; i < ga.size(); ++i) {
        ASSERT_EQ(ga[i].values.size(), gb[i].values.size()) << ga[i].name;
        for (std::size_t j = 0; j < ga[i].values.size(); ++j) {
          ASSERT_NEAR(gb[i].values[j], ga[i].values[j], 1e-4 + 1e-3 * std::abs(ga[i].values[j]))
              << ga[i].name << "[" << j << "]";
        }
      }
    }
    EXPECT_EQ(gpu.interpreter().memory().peak_bytes, p.programs[0].memory.peak_bytes());
    // bf16 on the GPU (cuBLAS's bf16 GEMMs with fp32 accumulation) follows the CPU's fp32
    // losses within bf16's tolerance.
    auto s = strategy(name);
    s.precision = strategies::Precision::kBf16;
    const Plan half = strategies::lower(tiny_model(), local_cpu(), s, 1);
    exec::Executor fp32(p, *comm, corpus, exec::RunOptions{});
    exec::Executor bf16(half, *comm, corpus, on_gpu);
    for (int k = 0; k < 5; ++k) {
      const double a = fp32.step().loss, b = bf16.step().loss;
      EXPECT_NEAR(b, a, 1e-3 * a) << "bf16 step " << k + 1;
    }
    const auto& timings = gpu.last_step_timings();
    ASSERT_EQ(timings.size(), p.programs[0].tasks.size());
    for (std::size_t i = 0; i < timings.size(); ++i) {
      EXPECT_LE(timings[i].start_s, timings[i].end_s);
      if (i > 0) {
        EXPECT_LE(timings[i - 1].end_s, timings[i].start_s + 1e-6);
      }
    }
  }
}

}  // namespace
