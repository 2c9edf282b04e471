// Lowering to the Plan: FLOPs add up to the published formulas, the buffers' lifetimes reproduce
// the schedule's in-flight activations (Korthikanti et al.), every collective and transfer is matched across ranks, and
// lowering is deterministic.
#include "strategies/plan.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <tuple>

#include "common/error.hpp"
#include "strategies/accounting.hpp"
#include "strategies/plan_json.hpp"
#include "strategies/schedule.hpp"
#include "test_models.hpp"

namespace strata::strategies {
namespace {

using testing::cluster;
using testing::gpt;
using testing::llama;
using testing::strategy;

Plan lower_on(const ModelSpec& m, const StrategySpec& s) {
  const int world = s.world_size();
  return lower(m, cluster((world + 7) / 8, 8), s, world);
}

// A set of small strategies over a 4-layer GPT, each exercising a different path.
std::vector<std::pair<std::string, StrategySpec>> small_strategies() {
  std::vector<std::pair<std::string, StrategySpec>> out;
  out.emplace_back("dp4", strategy(4, 1, 1, 1, 8));
  out.emplace_back("tp4", strategy(1, 4, 1, 2, 8));
  auto sp = strategy(1, 4, 1, 2, 8);
  sp.sequence_parallel = true;
  out.emplace_back("tp4-sp", sp);
  out.emplace_back("pp4-1f1b", strategy(1, 1, 4, 1, 8));
  out.emplace_back("pp2-gpipe", strategy(1, 1, 2, 1, 4, Schedule::kGPipe));
  out.emplace_back("pp2-interleaved", strategy(1, 1, 2, 1, 4, Schedule::kInterleaved, 2));
  for (int z = 1; z <= 3; ++z) {
    auto zs = strategy(4, 1, 1, 1, 8);
    zs.zero_stage = z;
    out.emplace_back("zero" + std::to_string(z), zs);
  }
  auto full = strategy(2, 2, 2, 1, 8);
  full.recompute = Recompute::kFull;
  out.emplace_back("dp2-tp2-pp2-full", full);
  auto sel = strategy(2, 2, 2, 1, 8);
  sel.recompute = Recompute::kSelective;
  sel.sequence_parallel = true;
  sel.zero_stage = 1;
  out.emplace_back("dp2-tp2-pp2-sel-sp-zero1", sel);
  auto z3 = strategy(2, 2, 2, 1, 8);
  z3.zero_stage = 3;
  z3.recompute = Recompute::kFull;
  out.emplace_back("dp2-tp2-pp2-zero3-full", z3);
  auto nooverlap = strategy(4, 2, 1, 1, 8);
  nooverlap.collectives.overlap_grad_reduce = false;
  nooverlap.collectives.grad_bucket_bytes = 1 << 16;
  out.emplace_back("dp4-tp2-no-overlap", nooverlap);
  auto sg = strategy(1, 2, 2, 1, 4);
  sg.collectives.pp_scatter_gather = true;
  out.emplace_back("tp2-pp2-scatter-gather", sg);
  auto ovr = strategy(2, 2, 2, 2, 8);
  ovr.layer_overrides.push_back({0, 0, 4, -1});
  ovr.layer_overrides.push_back({3, 3, 1, static_cast<int>(Recompute::kFull)});
  out.emplace_back("per-layer-tp", ovr);
  auto uneven = strategy(1, 1, 2, 1, 4);
  uneven.stage_layers = {1, 3};
  out.emplace_back("uneven", uneven);
  auto fused = strategy(2, 2, 2, 1, 8);
  fused.attention = AttentionImpl::kFused;
  fused.recompute = Recompute::kSelective;
  fused.sequence_parallel = true;
  out.emplace_back("dp2-tp2-pp2-fused-sel-sp", fused);
  auto fused_z3 = strategy(4, 1, 1, 1, 8);
  fused_z3.attention = AttentionImpl::kFused;
  fused_z3.zero_stage = 3;
  fused_z3.recompute = Recompute::kFull;
  out.emplace_back("dp4-fused-zero3-full", fused_z3);
  for (int k : {0, 2}) {  // FSDP's prefetch depth (1 is the default, above)
    auto z = strategy(4, 1, 1, 1, 8);
    z.zero_stage = 3;
    z.collectives.param_prefetch = k;
    out.emplace_back("zero3-prefetch" + std::to_string(k), z);
  }
  auto hsdp = strategy(4, 2, 2, 1, 8);  // hybrid sharding: shard groups of 2 over dp 4
  hsdp.zero_stage = 3;
  hsdp.zero_shard_group = 2;
  hsdp.recompute = Recompute::kFull;
  out.emplace_back("dp4-tp2-pp2-zero3-hsdp2-full", hsdp);
  auto hsdp_vpp = strategy(4, 1, 2, 1, 8, Schedule::kInterleaved, 2);
  hsdp_vpp.zero_stage = 3;
  hsdp_vpp.zero_shard_group = 2;
  out.emplace_back("dp4-pp2-interleaved-zero3-hsdp2", hsdp_vpp);
  auto cp = strategy(1, 1, 1, 1, 4);
  cp.cp = 4;
  cp.attention = AttentionImpl::kFused;
  out.emplace_back("cp4-p2p", cp);
  auto cp_ag = strategy(2, 2, 2, 1, 8);
  cp_ag.cp = 2;
  cp_ag.attention = AttentionImpl::kFused;
  cp_ag.cp_comm = CpComm::kAllGather;
  cp_ag.sequence_parallel = true;
  cp_ag.recompute = Recompute::kSelective;
  out.emplace_back("dp2-tp2-pp2-cp2-all-gather-sp-sel", cp_ag);
  auto cp_full = strategy(2, 2, 1, 1, 8);
  cp_full.cp = 2;
  cp_full.attention = AttentionImpl::kFused;
  cp_full.recompute = Recompute::kFull;
  out.emplace_back("dp2-tp2-cp2-p2p-full", cp_full);
  auto cp_z3 = strategy(2, 1, 1, 1, 8);  // ZeRO-3 sharded over dp x cp = 4 ranks
  cp_z3.cp = 2;
  cp_z3.attention = AttentionImpl::kFused;
  cp_z3.zero_stage = 3;
  out.emplace_back("dp2-cp2-zero3", cp_z3);
  auto ring = strategy(2, 4, 1, 2, 8);  // tp_comm_overlap: rings of 3 shifts
  ring.sequence_parallel = true;
  ring.tp_comm_overlap = true;
  out.emplace_back("dp2-tp4-sp-overlap", ring);
  auto ring_pp = strategy(1, 2, 2, 1, 8);
  ring_pp.sequence_parallel = true;
  ring_pp.tp_comm_overlap = true;
  ring_pp.recompute = Recompute::kFull;
  ring_pp.zero_stage = 3;
  out.emplace_back("tp2-pp2-sp-overlap-full-zero3", ring_pp);
  return out;
}

TEST(Lower, PlanFlopsEqualStepFlopsForEveryStrategy) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  for (const auto& [name, s] : small_strategies()) {
    const Plan plan = lower_on(m, s);
    const StepFlops expected = step_flops(m, s);
    EXPECT_TRUE(plan.totals.flops.model == expected.model) << name;
    EXPECT_TRUE(plan.totals.flops.hardware == expected.hardware) << name;
  }
}

TEST(Lower, FullRecomputeGptMatchesMegatronEq3Exactly) {
  // A GPT-3 175B-shaped model on 64 ranks (fewer layers keep the test fast): the sum of every
  // compute task's FLOPs over every rank equals eq. 3 to the last FLOP.
  const ModelSpec m = gpt(16, 12288, 96, 51200, 2048);
  auto s = strategy(2, 8, 4, 1, 16);
  s.recompute = Recompute::kFull;
  const Plan plan = lower_on(m, s);
  EXPECT_TRUE(plan.totals.flops.hardware == megatron_eq3_flops(16, 2048, 16, 12288, 51200));
}

TEST(Lower, DepsPointBackwardAndStreamsAreChained) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  for (const auto& [name, s] : small_strategies()) {
    const Plan plan = lower_on(m, s);
    for (const Program& p : plan.programs) {
      ASSERT_EQ(p.dep_begin.size(), p.tasks.size() + 1) << name;
      std::map<Stream, std::int64_t> last;
      for (std::size_t i = 0; i < p.tasks.size(); ++i) {
        std::set<std::uint32_t> deps(p.deps_of(i), p.deps_of(i) + p.num_deps(i));
        EXPECT_EQ(deps.size(), p.num_deps(i)) << name << ": duplicate dep of task " << i;
        for (auto d : deps) EXPECT_LT(d, i) << name;
        const Stream st = p.tasks[i].stream;
        if (st != Stream::kPp && last.count(st)) {
          EXPECT_TRUE(deps.count(static_cast<std::uint32_t>(last[st])))
              << name << ": task " << i << " not chained on stream " << stream_name(st);
        }
        last[st] = static_cast<std::int64_t>(i);
      }
    }
  }
}

TEST(Lower, EverySendHasItsReceive) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  for (const auto& [name, s] : small_strategies()) {
    const Plan plan = lower_on(m, s);
    // (from, to, tag) -> bytes, for sends and for receives.
    std::map<std::tuple<int, int, std::uint32_t>, double> sends, recvs;
    for (int r = 0; r < plan.world_size; ++r) {
      for (const Task& t : plan.program_of(r).tasks) {
        if (t.kind == TaskKind::kSend) {
          EXPECT_TRUE(sends.emplace(std::tuple{r, plan.peer_rank(r, t), t.tag}, t.bytes).second);
        } else if (t.kind == TaskKind::kRecv) {
          EXPECT_TRUE(recvs.emplace(std::tuple{plan.peer_rank(r, t), r, t.tag}, t.bytes).second);
        }
      }
    }
    EXPECT_EQ(sends, recvs) << name;
    const int boundaries = s.pp * s.virtual_stages - 1;
    const int units = 2 * plan.num_micro_batches * boundaries;
    EXPECT_EQ(static_cast<int>(sends.size()), units * plan.world_size / s.pp) << name;
  }
}

TEST(Lower, CollectivesMatchAcrossEveryGroup) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  for (const auto& [name, s] : small_strategies()) {
    const Plan plan = lower_on(m, s);
    // For each rank and group, the sequence of (kind, bytes) it issues on that group.
    std::map<std::pair<int, std::vector<int>>, std::vector<std::pair<int, double>>> seq;
    for (int r = 0; r < plan.world_size; ++r) {
      for (const Task& t : plan.program_of(r).tasks) {
        if (t.kind != TaskKind::kCollective) continue;
        const auto ranks = plan.group_ranks(r, t.group);
        EXPECT_TRUE(std::find(ranks.begin(), ranks.end(), r) != ranks.end()) << name;
        seq[{r, ranks}].emplace_back(static_cast<int>(t.collective), t.bytes);
      }
    }
    for (const auto& [key, ops] : seq) {
      for (int other : key.second) {
        const auto it = seq.find({other, key.second});
        ASSERT_NE(it, seq.end()) << name << ": rank " << other << " never joins a group of rank "
                                 << key.first;
        EXPECT_EQ(it->second, ops) << name << ": ranks " << key.first << " and " << other;
      }
    }
  }
}

TEST(Lower, DeterministicJson) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  const auto s = small_strategies()[9].second;
  EXPECT_EQ(plan_to_json(lower_on(m, s)).dump(), plan_to_json(lower_on(m, s)).dump());
}

TEST(Lower, OneRankOneLayerTaskListByHand) {
  // pp 1, tp 2, one layer, one micro-batch: embedding, 7 layer blocks, final norm and LM head
  // forward; the same backward; the optimizer: 21 compute tasks. TP collectives: embedding
  // output, attention and MLP outputs, cross-entropy forward; LM-head input, MLP and attention
  // inputs backward: 7.
  const ModelSpec m = gpt(1, 256, 8, 512, 64);
  const Plan plan = lower_on(m, strategy(1, 2, 1, 1, 1));
  ASSERT_EQ(plan.programs.size(), 1u);
  int compute = 0, collective = 0;
  for (const Task& t : plan.programs[0].tasks) {
    compute += t.kind == TaskKind::kCompute;
    collective += t.kind == TaskKind::kCollective;
    if (t.kind == TaskKind::kCollective) {
      EXPECT_EQ(t.purpose, Purpose::kTp);
    }
  }
  EXPECT_EQ(compute, 21);
  EXPECT_EQ(collective, 7);
  // Layer all-reduces (2 forward, 2 backward) carry the (b, s, h) activation in bf16.
  double tp_bytes = 0;
  for (const Task& t : plan.programs[0].tasks) {
    if (t.kind == TaskKind::kCollective && t.layer == 0) tp_bytes += t.bytes;
  }
  EXPECT_DOUBLE_EQ(tp_bytes, 4 * 64.0 * 256 * 2);
}

TEST(Lower, ElementwiseKernelsOfALayer) {
  // GPT layer, tp 2, no SP, dropout: fc1's bias-GELU reads and writes T f / t; the residual
  // bias-dropout-add after attn_out and fc2 reads 2 and writes 1 bf16 tensor of T h plus a
  // 1-byte mask; backward GELU reads 2 and writes 1, backward dropout reads 1 + mask, writes 1.
  const ModelSpec m = gpt(1, 256, 8, 512, 64);
  const Plan plan = lower_on(m, strategy(1, 2, 1, 1, 1));
  const double T = 64, h = 256, f = 1024 / 2;
  std::map<std::pair<Block, Phase>, double> ew;
  for (const Task& t : plan.programs[0].tasks) ew[{t.block, t.phase}] += t.elementwise_bytes;
  EXPECT_DOUBLE_EQ((ew[{Block::kMlpFc1, Phase::kForward}]), 2 * 2 * T * f);
  EXPECT_DOUBLE_EQ((ew[{Block::kMlpFc1, Phase::kBackward}]), 2 * 3 * T * f);
  EXPECT_DOUBLE_EQ((ew[{Block::kAttnOut, Phase::kForward}]), T * h * 7);
  EXPECT_DOUBLE_EQ((ew[{Block::kMlpFc2, Phase::kForward}]), T * h * 7);
  EXPECT_DOUBLE_EQ((ew[{Block::kMlpFc2, Phase::kBackward}]), T * h * 5);
  EXPECT_DOUBLE_EQ((ew[{Block::kAttnQkv, Phase::kForward}]), 0.0);
}

// Separate gradient accumulation: each backward task of a block carrying parameters reads the
// new 16-bit gradients and reads and writes the accumulators (fp32 here: 2 + 4 + 4 bytes per
// parameter); over one micro-batch the blocks add up to every parameter of the rank once.
TEST(Lower, SeparateGradientAccumulationTouchesEveryParameterOncePerMicroBatch) {
  const ModelSpec m = gpt(2, 256, 8, 512, 64);
  auto s = strategy(1, 2, 1, 1, 3);  // 3 micro-batches of 1 sample
  s.main_grads_fp32 = true;
  const auto backward_elementwise = [&](GradAccumulation mode) {
    s.grad_accumulation = mode;
    std::map<int, double> by_mb;  // micro-batch -> backward element-wise bytes
    const Plan plan = lower_on(m, s);
    for (const Task& t : plan.programs[0].tasks) {
      if (t.kind == TaskKind::kCompute && t.phase == Phase::kBackward) {
        by_mb[t.micro_batch] += t.elementwise_bytes;
      }
    }
    return by_mb;
  };
  const auto fused = backward_elementwise(GradAccumulation::kFused);
  const auto hook = backward_elementwise(GradAccumulation::kHook);
  const auto autograd = backward_elementwise(GradAccumulation::kAutograd);
  const double params = 2 * layer_params_per_rank(m, 2) + input_embedding_params_per_rank(m, 2) +
                        output_params_per_rank(m, 2, 1);
  ASSERT_EQ(fused.size(), 3u);
  for (int mb = 0; mb < 3; ++mb) {
    EXPECT_NEAR(hook.at(mb) - fused.at(mb), params * 10, 1e-6 * params) << mb;
    EXPECT_NEAR(autograd.at(mb) - fused.at(mb), mb == 0 ? 0.0 : params * 10, 1e-6 * params);
  }
  // The blocks' parameters, on one rank, add up to the model's independent parameter count
  // (tied embeddings: the output side holds only the final norm), for GPT and for Llama (GQA,
  // SwiGLU, RMSNorm, no biases).
  const ModelSpec ll = llama(2, 256, 8, 2, 688, 512, 64);
  for (const ModelSpec& model : {m, ll}) {
    const BlockParams bp = layer_block_params(model, 1);
    const double layer = bp.attn_qkv + bp.attn_out + bp.mlp_fc1 + bp.mlp_fc2 + 2 * bp.norm;
    EXPECT_DOUBLE_EQ(model.num_hidden_layers * layer + input_embedding_params_per_rank(model, 1) +
                         output_params_per_rank(model, 1, 1),
                     static_cast<double>(total_params(model)))
        << model.name;
  }
}

TEST(Lower, DataParallelGradientBytesEqualTheParameters) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  for (int zero : {0, 1}) {
    auto s = strategy(4, 1, 1, 1, 8);
    s.zero_stage = zero;
    s.collectives.grad_bucket_bytes = 100e3;
    const Plan plan = lower_on(m, s);
    double grads = 0, gathers = 0;
    int buckets = 0;
    for (const Task& t : plan.programs[0].tasks) {
      if (t.kind != TaskKind::kCollective) continue;
      if (t.phase == Phase::kBackward) {
        grads += t.bytes;
        ++buckets;
        EXPECT_EQ(t.collective,
                  zero ? CollectiveKind::kReduceScatter : CollectiveKind::kAllReduce);
      } else {
        gathers += t.bytes;
      }
    }
    const double params = plan.programs[0].memory.params_count;
    EXPECT_DOUBLE_EQ(params, static_cast<double>(total_params(m)));
    EXPECT_DOUBLE_EQ(grads, params * 2);
    EXPECT_DOUBLE_EQ(gathers, zero ? params * 2 : 0.0);
    EXPECT_GT(buckets, 4);  // 100 kB buckets over ~4 MB of gradients
  }
}

TEST(Lower, ZeroThreeGathersEveryLayerForwardAndBackward) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  auto s = strategy(4, 1, 1, 1, 8);  // 2 micro-batches
  s.zero_stage = 3;
  const Plan plan = lower_on(m, s);
  int gathers = 0, step_gathers = 0, scatters = 0;
  double step_gather_bytes = 0;
  for (const Task& t : plan.programs[0].tasks) {
    if (t.collective == CollectiveKind::kAllGather && t.phase == Phase::kStep) {
      ++step_gathers;
      step_gather_bytes += t.bytes;
    } else if (t.collective == CollectiveKind::kAllGather) {
      ++gathers;
    }
    if (t.collective == CollectiveKind::kReduceScatter) ++scatters;
  }
  // Per micro-batch, forward and backward: each layer's bucket, the embedding's, and the head's
  // two (the final norm's, and the tied word embedding's, which is the embedding's bucket).
  EXPECT_EQ(gathers, 2 * 2 * (4 + 1 + 2));
  EXPECT_EQ(scatters, 4 * 2 + 2 * 2);      // per layer, plus LM head and embedding, per mb
  // Nothing is kept whole between steps (DeepSpeed's stage 3).
  EXPECT_EQ(step_gathers, 0);
  EXPECT_DOUBLE_EQ(step_gather_bytes, 0);
  // Static memory is sharded 4 ways entirely: a bucket's part is rounded up to whole elements.
  const auto& mem = plan.programs[0].memory;
  const double buckets = static_cast<double>(plan.programs[0].buckets.size());
  EXPECT_NEAR(mem.static_bytes.total(), mem.params_count * 16 / 4, buckets * 16);
  EXPECT_GE(mem.static_bytes.total(), mem.params_count * 16 / 4);
}

// ZeRO-1/2: the updated parameters are all-gathered after the optimizer with the partition of
// the gradient buckets (one all-gather per bucket of the last reduction, as Megatron's
// distributed optimizer does), so together they cover every parameter once.
TEST(Lower, DistributedOptimizerGathersMirrorTheGradientBuckets) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  for (int zero : {1, 2}) {
    auto s = strategy(4, 1, 1, 1, 8);  // 2 micro-batches
    s.zero_stage = zero;
    s.precision = Precision::kBf16;
    s.main_grads_fp32 = true;
    s.collectives.grad_bucket_bytes = 0.2 * 1024 * 1024;  // several buckets
    const Plan plan = lower_on(m, s);
    int gathers = 0, scatters = 0;
    double gathered = 0, scattered = 0;
    for (const Task& t : plan.programs[0].tasks) {
      if (t.collective == CollectiveKind::kAllGather) {
        ++gathers;
        gathered += t.bytes / 2;  // 16-bit parameters
        EXPECT_EQ(t.phase, Phase::kStep);
      }
      if (t.collective == CollectiveKind::kReduceScatter) {
        ++scatters;
        scattered += t.bytes / 4;  // fp32 gradients
      }
    }
    SCOPED_TRACE(zero);
    EXPECT_GT(gathers, 2);
    EXPECT_DOUBLE_EQ(gathered, plan.programs[0].memory.params_count);
    // ZeRO-1 reduces once per step, ZeRO-2 after every micro-batch's backward.
    EXPECT_EQ(scatters, zero == 1 ? gathers : 2 * gathers);
    EXPECT_DOUBLE_EQ(scattered, (zero == 1 ? 1 : 2) * plan.programs[0].memory.params_count);
  }
}

// ZeRO with the tied embedding over pipeline stages: the word embedding (first stage) and its
// copy (last stage) are each reduce-scattered in a bucket of their own, so the two are
// partitioned over dp alike before the embedding all-reduce adds them.
TEST(Lower, SharedEmbeddingHasItsOwnBucketUnderZero) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  auto s = strategy(2, 1, 2, 1, 8);  // dp 2, pp 2
  s.zero_stage = 1;
  s.precision = Precision::kFp32;
  const Plan plan = lower_on(m, s);
  const double word = 512.0 * 256 * 4;  // V x h fp32 gradients
  for (const Program& p : plan.programs) {
    int alone = 0, embedding = 0;
    for (const Task& t : p.tasks) {
      if (t.collective == CollectiveKind::kReduceScatter && t.bytes == word) ++alone;
      if (t.purpose == Purpose::kEmbedding) {
        ++embedding;
        EXPECT_DOUBLE_EQ(t.bytes, word);
      }
    }
    EXPECT_EQ(alone, 1) << "stage " << p.stage;
    EXPECT_EQ(embedding, 1) << "stage " << p.stage;
  }
}

// 1F1B with fewer micro-batches than stages (a small global batch on a deep pipeline): stage s
// holds min(m, pp - s) of them, so the first stages hold all of them, like GPipe.
TEST(Lower, OneFOneBWithFewerMicroBatchesThanStages) {
  const ModelSpec m = gpt(8, 256, 8, 512, 64);
  auto s = strategy(1, 1, 4, 1, 2);  // pp 4, 2 micro-batches
  const Plan plan = lower_on(m, s);
  ASSERT_EQ(plan.num_micro_batches, 2);
  for (const Program& p : plan.programs) {
    EXPECT_EQ(max_in_flight(stage_schedule(s.schedule, 4, p.stage, 2, 1)),
              std::min(2, 4 - p.stage))
        << p.stage;
  }
  s.schedule = Schedule::kGPipe;
  const Plan gpipe = lower_on(m, s);
  EXPECT_EQ(gpipe.programs[1].memory.max_activation_bytes,
            plan.programs[1].memory.max_activation_bytes);
}

TEST(Lower, RecomputeTasks) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  for (Recompute r : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    auto s = strategy(1, 1, 2, 1, 4);
    s.recompute = r;
    const Plan plan = lower_on(m, s);
    for (const Program& p : plan.programs) {
      int n = 0;
      for (const Task& t : p.tasks) n += t.phase == Phase::kRecompute;
      const int per_layer = r == Recompute::kFull ? 7 : r == Recompute::kSelective ? 1 : 0;
      EXPECT_EQ(n, per_layer * 2 * 4) << recompute_name(r);  // 2 layers x 4 micro-batches
    }
  }
}

// The LayerNorm statistics a layer keeps for its backward beyond Korthikanti et al.'s count
// (Megatron's fused norm saves them too): mean and rstd, fp32, for both norms, per row held.
double norm_statistics_bytes(const ModelSpec& m, int tp, bool sp) {
  return 2.0 * 2.0 * 4.0 * m.seq_length / (sp ? tp : 1);
}

TEST(Lower, PeakActivationsFollowTheSchedule) {
  // Middle stages hold (in-flight micro-batches) x (layers) x (stored bytes per layer); stage 0
  // adds the embedding-dropout mask per in-flight micro-batch. The buffers' lifetimes give it:
  // the most activation bytes held at any task.
  const ModelSpec m = gpt(8, 256, 8, 512, 64);
  for (Schedule sched : {Schedule::kGPipe, Schedule::kOneFOneB, Schedule::kInterleaved}) {
    for (Recompute r : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
      const int v = sched == Schedule::kInterleaved ? 2 : 1;
      auto s = strategy(1, 2, 4, 1, 8, sched, v);
      s.recompute = r;
      s.sequence_parallel = true;
      const Plan plan = lower_on(m, s);
      const double stats = r == Recompute::kFull ? 0 : norm_statistics_bytes(m, 2, true);
      const double layer = layer_activation_bytes(m, 1, 2, true, r).stored + stats;
      const double emb = embedding_activation_bytes(m, 1, 2, true);
      for (const Program& p : plan.programs) {
        if (p.stage == s.pp - 1) continue;  // the last stage also holds logits
        const int in_flight =
            max_in_flight(stage_schedule(sched, s.pp, p.stage, plan.num_micro_batches, v));
        const double layers_per_chunk = 8.0 / (4 * v);
        double expected = in_flight * layers_per_chunk * layer;
        if (p.stage == 0 && sched != Schedule::kInterleaved) expected += in_flight * emb;
        if (sched == Schedule::kInterleaved) continue;  // chunks mix; checked below
        EXPECT_NEAR(p.memory.max_activation_bytes, expected, 1e-6 * expected)
            << schedule_name(sched) << " " << recompute_name(r) << " stage " << p.stage;
      }
    }
  }
}

TEST(Lower, FusedAttentionKeepsRowStatisticsNotTheScoreMatrix) {
  // The fused attention core stores no (s x s) tensor: per micro-batch and layer it keeps
  // 4 a s b / t bytes of log-sum-exp where the unfused one keeps (2 + 3) a s^2 b / t (softmax
  // output, dropout mask and output). The buffers' lifetimes give the same in-flight count.
  const ModelSpec m = gpt(8, 256, 8, 512, 64);
  for (Recompute r : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    for (bool sp : {false, true}) {
      auto s = strategy(1, 2, 4, 1, 8);
      s.recompute = r;
      s.sequence_parallel = sp;
      s.attention = AttentionImpl::kFused;
      const Plan plan = lower_on(m, s);
      const double stats = r == Recompute::kFull ? 0 : norm_statistics_bytes(m, 2, sp);
      const double layer =
          layer_activation_bytes(m, 1, 2, sp, r, AttentionImpl::kFused).stored + stats;
      for (const Program& p : plan.programs) {
        int flash = 0, lse = 0;
        for (const Buffer& b : p.buffers) {
          EXPECT_NE(b.kind, TensorKind::kAttnProbs);
          EXPECT_NE(b.kind, TensorKind::kAttnDropMask);
          EXPECT_NE(b.kind, TensorKind::kAttnDropOut);
          if (b.kind == TensorKind::kAttnLse) {
            ++lse;
            EXPECT_EQ(b.dtype, DType::kFp32);
            EXPECT_EQ(b.elements(), 1 * (8 / 2) * 64);  // samples x heads / t x s
          }
        }
        for (const Op& o : p.ops) flash += o.kind == OpKind::kFlashAttention;
        // 2 layers per stage x 8 micro-batches, forward and (selective or full) recompute.
        EXPECT_EQ(flash, 2 * 8 * (r == Recompute::kNone ? 1 : 2)) << recompute_name(r);
        EXPECT_EQ(lse, flash);
        if (p.stage == 0 || p.stage == s.pp - 1) continue;  // embedding mask, logits
        const int in_flight =
            max_in_flight(stage_schedule(s.schedule, s.pp, p.stage, plan.num_micro_batches, 1));
        const double expected = in_flight * 2.0 * layer;
        EXPECT_NEAR(p.memory.max_activation_bytes, expected, 1e-6 * expected)
            << recompute_name(r) << " sp " << sp << " stage " << p.stage;
      }
    }
  }
  // Against the unfused core: the difference per stored layer is the quadratic term.
  const LayerActivation unfused = layer_activation_bytes(m, 1, 2, false, Recompute::kNone);
  const LayerActivation fused =
      layer_activation_bytes(m, 1, 2, false, Recompute::kNone, AttentionImpl::kFused);
  EXPECT_DOUBLE_EQ(unfused.stored - fused.stored, (5.0 * 8 * 64 * 64 - 4.0 * 8 * 64) / 2);
}

TEST(Lower, FusedAttentionCountsFlopsAsFlashAttentionDoes) {
  // Per sequence and head of width d, FlashAttention counts 4 s^2 d FLOPs forward (two s x s x d
  // matmuls), halved for the causal mask, and 2.5 x that backward (the scores recomputed; Dao
  // 2023, arXiv:2307.08691 sec. 4.1). The model keeps the whole square and 2x backward (the
  // same as the unfused core, so MFU does not depend on the kernel). GPT: s 64, h 256, 8 heads of
  // 32, tp 2 (4 heads, 128 query channels per rank), micro-batch 1.
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  auto s = strategy(1, 2, 1, 1, 2);
  s.attention = AttentionImpl::kFused;
  const Plan plan = lower_on(m, s);
  int fwd = 0, bwd = 0;
  const double per_head_model = 4.0 * 64 * 64 * 32, heads = 4;
  for (const Op& o : plan.programs[0].ops) {
    if (o.kind != OpKind::kFlashAttention && o.kind != OpKind::kFlashAttentionBwd) continue;
    const OpCost c = op_cost(o);
    if (o.kind == OpKind::kFlashAttention) {
      ++fwd;
      EXPECT_DOUBLE_EQ(c.flops, heads * per_head_model);
      EXPECT_DOUBLE_EQ(c.kernel_flops, heads * per_head_model / 2);
      // q, k, v read and the context written (bf16), the fp32 statistic written.
      EXPECT_DOUBLE_EQ(c.bytes, 2.0 * 64 * (4 * 128) + 4.0 * heads * 64);
    } else {
      ++bwd;
      EXPECT_DOUBLE_EQ(c.flops, 2 * heads * per_head_model);
      EXPECT_DOUBLE_EQ(c.kernel_flops, 2.5 * heads * per_head_model / 2);
    }
  }
  EXPECT_EQ(fwd, 4 * 2);  // 4 layers x 2 micro-batches
  EXPECT_EQ(bwd, 4 * 2);
  // The totals are the model's, as unfused.
  auto unfused = s;
  unfused.attention = AttentionImpl::kUnfused;
  EXPECT_EQ(plan.totals.flops.model, lower_on(m, unfused).totals.flops.model);
}

TEST(Lower, ContextParallelRingMovesMegatronCoresVolumes) {
  // Megatron-Core's context parallelism (docs/user-guide/features/context_parallel.md): the keys
  // and values are all-gathered in the forward (each rank stores only its chunk's), gathered
  // again in the backward, and their gradients reduce-scattered, all as point-to-point rings.
  // Per layer and micro-batch of N local tokens: a ring of cp-1 shifts of the rank's k and v
  // (N x 2 h_kv) forward, cp-1 again backward plus cp-1 shifts of their gradient. The
  // all-gather form moves the same bytes as nccl-tests sizes them: cp N 2 h_kv gathered.
  const ModelSpec m = gpt(4, 256, 8, 512, 64);  // s 64: 2cp = 8 chunks of 8 tokens
  for (CpComm comm : {CpComm::kP2p, CpComm::kAllGather}) {
    auto s = strategy(1, 1, 1, 1, 2);
    s.cp = 4;
    s.attention = AttentionImpl::kFused;
    s.cp_comm = comm;
    const Plan plan = lower_on(m, s);
    const double N = 64.0 / 4, kv = 2.0 * N * 256 * 2;  // bf16 k and v of the rank's tokens
    const double per_layer_mb = 4.0 * 2;                  // 4 layers x 2 micro-batches
    const int ring = static_cast<int>(CollectiveKind::kRingShift);
    const int ag = static_cast<int>(CollectiveKind::kAllGather);
    const int rs = static_cast<int>(CollectiveKind::kReduceScatter);
    const int cp = static_cast<int>(Purpose::kCp);
    const auto& bytes = plan.totals.comm_bytes;
    const auto& count = plan.totals.comm_count;
    if (comm == CpComm::kP2p) {
      // Counted once per rank (4 ranks): 3 forward + 3 backward block shifts + 3 gradient shifts.
      EXPECT_DOUBLE_EQ(count[ring][cp], 4 * per_layer_mb * 9);
      EXPECT_DOUBLE_EQ(bytes[ring][cp], 4 * per_layer_mb * 9 * kv);
      EXPECT_EQ(count[ag][cp], 0);
    } else {
      EXPECT_DOUBLE_EQ(count[ag][cp], 4 * per_layer_mb * 2);  // forward and backward
      EXPECT_DOUBLE_EQ(bytes[ag][cp], 4 * per_layer_mb * 2 * 4 * kv);
      EXPECT_DOUBLE_EQ(bytes[rs][cp], 4 * per_layer_mb * 4 * kv);
      EXPECT_EQ(count[ring][cp], 0);
    }
    // Every rank runs 1/cp of each attention's work: the kernels' FLOPs are a quarter of the
    // one-rank plan's, and the model FLOPs add up to the same step.
    auto one = s;
    one.cp = 1;
    const Plan whole = lower_on(m, one);
    double kernel = 0, kernel_whole = 0;
    for (const Op& o : plan.programs[0].ops) kernel += op_cost(o).kernel_flops;
    for (const Op& o : whole.programs[0].ops) kernel_whole += op_cost(o).kernel_flops;
    EXPECT_NEAR(kernel / kernel_whole, 0.25, 1e-12) << cp_comm_name(comm);
    EXPECT_EQ(plan.totals.flops.model, whole.totals.flops.model);
    // Activations: every stored tensor holds a quarter of the tokens. The keys and values of
    // other ranks are not kept from the forward to the backward.
    EXPECT_NEAR(plan.programs[0].memory.max_activation_bytes /
                    whole.programs[0].memory.max_activation_bytes,
                0.25, 0.02)
        << cp_comm_name(comm);
  }
}

TEST(Lower, TpCommOverlapRingsMoveWhatTheCollectivesMoved) {
  // Transformer Engine's ring exchange (docs/plan.md "Tensor-parallel communication overlap"):
  // per layer and micro-batch the forward's two all-gathers (before QKV and fc1) and two
  // reduce-scatters (after the out-projection and fc2) and the backward's two all-gathers of the
  // output gradients become rings of tp - 1 shifts of one rank's rows each, which is what a ring
  // all-gather or reduce-scatter sends per rank: (tp - 1) / tp of the gathered size. The
  // backward's re-gathers and its two reduce-scatters stay collectives (beside the GEMMs).
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  auto base = strategy(1, 4, 1, 2, 8);
  base.sequence_parallel = true;
  auto s = base;
  s.tp_comm_overlap = true;
  s.tp_comm_overlap_sms = 3;
  const Plan plan = lower_on(m, s), without = lower_on(m, base);
  const int ring = static_cast<int>(CollectiveKind::kRingShift);
  const int ag = static_cast<int>(CollectiveKind::kAllGather);
  const int rs = static_cast<int>(CollectiveKind::kReduceScatter);
  const int tp = static_cast<int>(Purpose::kTp);
  const auto &c = plan.totals.comm_count, &c0 = without.totals.comm_count;
  const auto &b = plan.totals.comm_bytes, &b0 = without.totals.comm_bytes;
  const double ranks = 4, layer_mbs = 4.0 * 4;  // 4 layers x 4 micro-batches, on each rank
  EXPECT_DOUBLE_EQ(c0[ag][tp] - c[ag][tp], ranks * layer_mbs * 4);
  EXPECT_DOUBLE_EQ(c0[rs][tp] - c[rs][tp], ranks * layer_mbs * 2);
  EXPECT_DOUBLE_EQ(c[ring][tp], ranks * layer_mbs * 6 * 3);
  EXPECT_EQ(c0[ring][tp], 0);
  const double rows = 2.0 * 64 / 4 * 256 * 2;  // bf16 rows of the rank: 32 tokens x 256
  EXPECT_DOUBLE_EQ(b[ring][tp], ranks * layer_mbs * 6 * 3 * rows);
  EXPECT_DOUBLE_EQ(b[ring][tp], 0.75 * ((b0[ag][tp] - b[ag][tp]) + (b0[rs][tp] - b[rs][tp])));
  // The same work: every GEMM's FLOPs are in its chunks.
  EXPECT_EQ(plan.totals.flops.hardware, without.totals.flops.hardware);
  // The GEMMs beside a shift carry the SMs communication holds: per layer and micro-batch,
  // 3 chunks of each forward ring (4 rings), 3 of each backward ring (2), and the two weight
  // gradients beside the backward's reduce-scatters.
  int overlapped = 0;
  for (const Op& o : plan.programs[0].ops) {
    if (o.param == 3.0f && (o.kind == OpKind::kLinear || o.kind == OpKind::kLinearBwdData ||
                            o.kind == OpKind::kLinearBwdWeight)) {
      ++overlapped;
    }
  }
  EXPECT_EQ(overlapped, layer_mbs * (4 * 3 + 2 * 3 + 2));
  // A ring step's chunk is another rank's rows: the views rotate through the group.
  std::set<int> rotations;
  for (const Buffer& buf : plan.programs[0].buffers) {
    if (buf.is_view() && buf.view_group.kind == GroupKind::kTp) rotations.insert(buf.view_rotate);
  }
  EXPECT_EQ(rotations, (std::set<int>{0, 1, 2, 3}));
}

TEST(Lower, OneFOneBFirstStageHoldsWhatKorthikantiSays) {
  // With 1F1B the first stage holds pp micro-batches of L/pp layers: the activations of L layers
  // (Korthikanti sec. 4.2.3), 34 s b h L / t with selective recompute and sequence parallelism.
  const ModelSpec m = gpt(16, 1024, 16, 51200, 2048);
  auto s = strategy(1, 4, 4, 1, 16);
  s.recompute = Recompute::kSelective;
  s.sequence_parallel = true;
  const Plan plan = lower_on(m, s);
  const double korthikanti = 16 * korthikanti_layer_bytes(2048, 1, 1024, 16, 4, true,
                                                          Recompute::kSelective);
  const double mask = 4 * embedding_activation_bytes(m, 1, 4, true);
  const double stats = 16 * norm_statistics_bytes(m, 4, true);
  EXPECT_NEAR(plan.programs[0].memory.max_activation_bytes, korthikanti + mask + stats, 1.0);
}

TEST(Lower, InterleavedFirstStageHoldsWhatKorthikantiSays) {
  // Interleaving with v chunks: the first stage holds the activations of L (1 + (pp-1)/(pp v))
  // layers (Korthikanti sec. 4.2.3). A dropout-free model keeps the embedding out of the count.
  ModelSpec m = gpt(16, 1024, 16, 51200, 2048);
  m.dropout = false;
  for (int v : {2, 4}) {
    auto s = strategy(1, 2, 4, 1, 8, Schedule::kInterleaved, v);
    const Plan plan = lower_on(m, s);
    const double layer = layer_activation_bytes(m, 1, 2, false, Recompute::kNone).stored +
                         norm_statistics_bytes(m, 2, false);
    const double layers_held = 16.0 * (1.0 + 3.0 / (4.0 * v));
    EXPECT_NEAR(plan.programs[0].memory.max_activation_bytes / layer, layers_held, 1e-9)
        << "v = " << v;
  }
}

TEST(Lower, PerLayerTensorParallelismReshards) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  auto s = strategy(2, 2, 2, 2, 8);
  s.layer_overrides.push_back({0, 0, 4, -1});
  const Plan plan = lower_on(m, s);
  ASSERT_EQ(plan.layouts.size(), 2u);
  EXPECT_EQ(plan.layouts[1].size(Dim::kTp), 4);
  EXPECT_EQ(plan.layouts[1].size(Dim::kDp), 1);
  int reshards = 0;
  for (const Task& t : plan.programs[0].tasks) {
    if (t.purpose != Purpose::kReshard) continue;
    ++reshards;
    EXPECT_EQ(plan.group_ranks(0, t.group).size(), 2u);
    // The gathered micro-batch: 2 replicas x 2 samples of (s, h) in bf16.
    EXPECT_DOUBLE_EQ(t.bytes, 4 * 64.0 * 256 * 2);
  }
  // Entering layer 0 (tp 2 -> 4) gathers forward; leaving it (4 -> 2) gathers the gradient.
  EXPECT_EQ(reshards, 2 * plan.num_micro_batches);
}

TEST(Lower, RefusesWhatItCannotLower) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  EXPECT_THROW(lower(m, cluster(1, 8), strategy(16, 1, 1, 1, 16), 16), ConfigError);
  auto cp = strategy(1, 1, 1, 1, 4);
  cp.cp = 2;
  EXPECT_THROW(lower(m, cluster(1, 8), cp, 2), ConfigError);  // unfused attention
  EXPECT_THROW(lower(m, cluster(1, 8), strategy(2, 1, 1, 1, 4), 4), ConfigError);
  // Context parallelism with hybrid sharding: named, with what to change.
  auto cp_hsdp = strategy(4, 1, 1, 1, 8);
  cp_hsdp.cp = 2;
  cp_hsdp.attention = AttentionImpl::kFused;
  cp_hsdp.zero_stage = 3;
  cp_hsdp.zero_shard_group = 2;
  try {
    lower(m, cluster(1, 8), cp_hsdp, 8);
    ADD_FAILURE() << "cp with hybrid sharding was lowered";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("strategy.cp = 2: context parallelism with hybrid "
                                         "sharding (zero_shard_group 2 < dp 4)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Lower, Llama7bOnEightGpus) {
  const ModelSpec m = llama(32, 4096, 32, 32, 11008, 32000, 4096);
  auto s = strategy(4, 2, 1, 1, 64);
  s.zero_stage = 1;
  s.recompute = Recompute::kSelective;
  const Plan plan = lower_on(m, s);
  EXPECT_EQ(plan.world_size, 8);
  // tp ranks together hold every parameter once, plus tp-1 extra copies of the replicated
  // RMSNorm weights (two per layer and the final one).
  const double replicated = 32 * 2 * 4096.0 + 4096.0;
  EXPECT_DOUBLE_EQ(2 * plan.programs[0].memory.params_count - replicated,
                   static_cast<double>(total_params(m)));
  EXPECT_TRUE(plan.totals.flops.model == step_flops(m, s).model);
  EXPECT_LT(first_rank_over_capacity(plan), 0);
}

// Mixture-of-experts models are validated, then lowered (moe_lower_test.cpp has the details);
// validation comes first.
TEST(Lower, MoeModelIsValidatedThenLowered) {
  ModelSpec m = testing::llama(2, 64, 4, 4, 128, 256, 32);
  m.moe.num_experts = 4;
  m.moe.num_experts_per_tok = 2;
  m.moe.moe_intermediate_size = 64;
  const ClusterSpec c = testing::cluster(1, 8);
  StrategySpec s = testing::strategy(2, 1, 1, 1, 4);
  s.ep = 2;
  EXPECT_NO_THROW(validate(m, s, 2));
  EXPECT_NO_THROW((void)lower(m, c, s, 2));  // tests/strategies/moe_lower_test.cpp
  // Validation comes first: an invalid ep is named as such.
  s.ep = 3;
  s.dp = 3;
  s.global_batch_size = 3;
  EXPECT_THROW((void)lower(m, c, s, 3), ConfigError);
  s.dp = 2;
  s.ep = 1;
  s.global_batch_size = 4;
  m.moe = MoeSpec{};
  EXPECT_NO_THROW((void)lower(m, c, s, 2));  // the same model, dense, lowers
}

}  // namespace
}  // namespace strata::strategies
