// Strategy fp8 lowered to the Plan: each linear layer of a layer becomes FP8 GEMMs with their
// casts (Transformer Engine's delayed-scaling recipe), the ends stay 16-bit, FLOPs are unchanged,
// and the buffers keep what TE keeps: one-byte FP8 copies of the GEMM inputs for the weight
// gradient, persistent FP8 weight copies and the scaling state (docs/accounting.md "FP8").
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "expect_config_error.hpp"
#include "strategies/accounting.hpp"
#include "strategies/plan.hpp"
#include "strategies/schedule.hpp"
#include "test_models.hpp"

namespace strata::strategies {
namespace {

using testing::gpt;
using testing::llama;
using testing::strategy;

// The test cluster with H100's FP8 peak (the A100 of testing::cluster() has none).
Plan lower_fp8(const ModelSpec& m, const StrategySpec& s) {
  ClusterSpec c = testing::cluster((s.world_size() + 7) / 8, 8);
  c.node_groups[0].gpu.name = "H100-SXM5-80GB";
  c.node_groups[0].gpu.peak_fp8_flops = 1979e12;
  return lower(m, c, s, s.world_size());
}

StrategySpec with_fp8(StrategySpec s, Fp8Format f = Fp8Format::kHybrid) {
  s.fp8 = f;
  return s;
}

// The ops of the compute task (phase, block, layer, micro-batch) of a program, by kind.
std::vector<OpKind> ops_of(const Program& p, Phase phase, Block block, int layer, int mb) {
  for (const Task& t : p.tasks) {
    if (t.kind != TaskKind::kCompute || t.phase != phase || t.block != block || t.layer != layer ||
        t.micro_batch != mb) {
      continue;
    }
    std::vector<OpKind> out;
    for (std::uint32_t i = 0; i < t.op_count; ++i) out.push_back(p.ops[t.op_begin + i].kind);
    return out;
  }
  ADD_FAILURE() << "no task " << phase_name(phase) << " " << block_name(block);
  return {};
}

const Op* first_op(const Program& p, Phase phase, Block block, int layer, int mb, OpKind k) {
  for (const Task& t : p.tasks) {
    if (t.kind != TaskKind::kCompute || t.phase != phase || t.block != block || t.layer != layer ||
        t.micro_batch != mb) {
      continue;
    }
    for (std::uint32_t i = 0; i < t.op_count; ++i) {
      if (p.ops[t.op_begin + i].kind == k) return &p.ops[t.op_begin + i];
    }
  }
  return nullptr;
}

// Norm statistics kept beyond Korthikanti's count (as lower_test.cpp): mean and rstd, fp32.
double norm_statistics_bytes(const ModelSpec& m, int tp, bool sp) {
  return 2.0 * 2.0 * 4.0 * m.seq_length / (sp ? tp : 1);
}

TEST(Fp8Lower, LayerOpsByHand) {
  // One GPT layer, tp 2, two micro-batches. Forward: the norms write their output in FP8 (TE's
  // LayerNormLinear); the out-projection and fc2 cast their 16-bit inputs with the transpose;
  // every weight is cast (with its transpose) at the step's first micro-batch only. Backward:
  // each GEMM block casts its output gradient, and the norm-fed ones transpose the FP8 input
  // for the weight gradient.
  const ModelSpec m = gpt(1, 256, 8, 512, 64);
  const Plan plan = lower_fp8(m, with_fp8(strategy(1, 2, 1, 1, 2)));
  const Program& p = plan.programs[0];
  using O = OpKind;
  const Phase F = Phase::kForward, B = Phase::kBackward;
  EXPECT_EQ(ops_of(p, F, Block::kAttnNorm, 0, 0), std::vector<O>{O::kLayerNorm});
  EXPECT_EQ(ops_of(p, F, Block::kAttnQkv, 0, 0), (std::vector<O>{O::kFp8Cast, O::kLinear}));
  EXPECT_EQ(ops_of(p, F, Block::kAttnQkv, 0, 1), std::vector<O>{O::kLinear});
  EXPECT_EQ(ops_of(p, F, Block::kAttnOut, 0, 0),
            (std::vector<O>{O::kFp8Cast, O::kFp8Cast, O::kLinear, O::kResidualAdd}));
  EXPECT_EQ(ops_of(p, F, Block::kAttnOut, 0, 1),
            (std::vector<O>{O::kFp8Cast, O::kLinear, O::kResidualAdd}));
  EXPECT_EQ(ops_of(p, F, Block::kMlpFc1, 0, 0),
            (std::vector<O>{O::kFp8Cast, O::kLinear, O::kGelu}));
  EXPECT_EQ(ops_of(p, F, Block::kMlpFc2, 0, 1),
            (std::vector<O>{O::kFp8Cast, O::kLinear, O::kResidualAdd}));
  EXPECT_EQ(ops_of(p, B, Block::kAttnQkv, 0, 1),
            (std::vector<O>{O::kFp8Cast, O::kLinearBwdData, O::kFp8Cast, O::kLinearBwdWeight}));
  EXPECT_EQ(
      ops_of(p, B, Block::kAttnOut, 0, 0),
      (std::vector<O>{O::kResidualAddBwd, O::kFp8Cast, O::kLinearBwdData, O::kLinearBwdWeight}));
  EXPECT_EQ(ops_of(p, B, Block::kMlpFc1, 0, 0),
            (std::vector<O>{O::kGeluBwd, O::kFp8Cast, O::kLinearBwdData, O::kFp8Cast,
                            O::kLinearBwdWeight}));
  // The LM head and the embedding stay 16-bit.
  const Op* head = first_op(p, F, Block::kLmHead, -1, 0, O::kLinear);
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(head->dtype, DType::kBf16);
  for (const Op& o : p.ops) {
    if (o.kind == O::kEmbedding || o.kind == O::kEmbeddingBwd) {
      EXPECT_EQ(o.dtype, DType::kBf16);
    }
  }

  // Sizes and bytes of the QKV forward GEMM: M = 64 tokens, K = 256, N = 3 * 256 / 2.
  const Op* qkv = first_op(p, F, Block::kAttnQkv, 0, 1, O::kLinear);
  ASSERT_NE(qkv, nullptr);
  EXPECT_EQ(qkv->dtype, DType::kFp8);
  EXPECT_EQ(qkv->dims[3], 2);  // its output, bf16
  const double M = 64, K = 256, N = 384;
  EXPECT_DOUBLE_EQ(op_cost(*qkv).flops, 2 * M * K * N);
  EXPECT_DOUBLE_EQ(op_cost(*qkv).bytes, M * K + K * N + 2 * M * N);
  const Op* wgrad = first_op(p, B, Block::kAttnQkv, 0, 1, O::kLinearBwdWeight);
  ASSERT_NE(wgrad, nullptr);
  EXPECT_DOUBLE_EQ(op_cost(*wgrad).bytes, M * N + M * K + 2 * K * N);
  // The out-projection's input cast: the context (64 x 128) read in bf16, written twice in FP8.
  const Op* cast = first_op(p, F, Block::kAttnOut, 0, 1, O::kFp8Cast);
  ASSERT_NE(cast, nullptr);
  EXPECT_EQ(cast->dtype, DType::kBf16);
  EXPECT_DOUBLE_EQ(op_cost(*cast).elementwise_bytes, 64.0 * 128 * (2 + 2));
  // The norm writes its output in FP8: reads 2 bytes, writes 1 per element.
  const Op* norm = first_op(p, F, Block::kAttnNorm, 0, 0, O::kLayerNorm);
  ASSERT_NE(norm, nullptr);
  EXPECT_DOUBLE_EQ(op_cost(*norm).bytes, 64.0 * 256 * (2 + 1));

  // The buffers: FP8 copies are named after their tensor.
  // (Names need not be unique: the backward's transpose of a norm's FP8 output is named as the
  // output; `roles` has every buffer's role under its name.)
  std::map<std::string, const Buffer*> by_name;
  std::multimap<std::string, Role> roles;
  for (std::size_t i = 0; i < p.buffers.size(); ++i) {
    const std::string name = p.buffer_name(static_cast<std::int32_t>(i));
    by_name.emplace(name, &p.buffers[i]);
    roles.emplace(name, p.buffers[i].role);
  }
  auto has_role = [&](const std::string& name, Role r) {
    const auto [first, last] = roles.equal_range(name);
    for (auto it = first; it != last; ++it) {
      if (it->second == r) return true;
    }
    return false;
  };
  for (const char* name : {"L0.attn.qkv.weight.fp8", "L0.attn.out.weight.fp8",
                           "L0.mlp.fc1.weight.fp8", "L0.mlp.fc2.weight.fp8"}) {
    ASSERT_TRUE(by_name.count(name)) << name;
    EXPECT_TRUE(by_name[name]->persistent);
    EXPECT_EQ(by_name[name]->role, Role::kParam);
  }
  EXPECT_EQ(by_name["L0.attn.qkv.weight.fp8"]->elements(), 2 * 384 * 256);  // row- and column-wise
  ASSERT_TRUE(by_name.count("L0.fp8_scaling"));
  EXPECT_EQ(by_name["L0.fp8_scaling"]->elements(), 4 * 5 * (1024 + 2));
  EXPECT_TRUE(has_role("L0.attn_norm.out.fp8[mb0]", Role::kActivation));
  EXPECT_TRUE(has_role("L0.attn_norm.out.fp8[mb0]", Role::kWorkspace));  // the transpose
  EXPECT_TRUE(has_role("L0.mlp.act.fp8[mb0]", Role::kActivation));
  // The 16-bit fc2 input is no longer kept: its last reader is the forward's cast.
  EXPECT_FALSE(has_role("L0.mlp.act[mb0]", Role::kActivation));
  EXPECT_TRUE(has_role("L0.mlp.act[mb0]", Role::kWorkspace));
}

TEST(Fp8Lower, FlopsAreTheModelsWhateverTheFormat) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  auto s = strategy(2, 2, 2, 1, 8);
  s.recompute = Recompute::kFull;
  for (Fp8Format f : {Fp8Format::kHybrid, Fp8Format::kE4m3}) {
    const Plan plan = lower_fp8(m, with_fp8(s, f));
    EXPECT_TRUE(plan.totals.flops.model == step_flops(m, s).model) << fp8_format_name(f);
    EXPECT_TRUE(plan.totals.flops.hardware == step_flops(m, s).hardware) << fp8_format_name(f);
  }
}

TEST(Fp8Lower, WeightsAreCastOncePerStepAndChunk) {
  // TE casts a weight at the first micro-batch of the step (is_first_microbatch) and reuses the
  // copy: 4 weight casts per layer and chunk, whatever the number of micro-batches or recompute.
  const ModelSpec m = gpt(8, 256, 8, 512, 64);
  auto s = strategy(1, 1, 2, 1, 8, Schedule::kInterleaved, 2);
  s.recompute = Recompute::kFull;
  const Plan plan = lower_fp8(m, with_fp8(s));
  for (const Program& p : plan.programs) {
    int weight_casts = 0;
    for (const Op& o : p.ops) {
      if (o.kind != OpKind::kFp8Cast) continue;
      const Buffer& in = p.buffers[p.input(o, 0)];
      if (in.kind == TensorKind::kQkvWeight || in.kind == TensorKind::kAttnOutWeight ||
          in.kind == TensorKind::kFc1Weight || in.kind == TensorKind::kFc2Weight) {
        ++weight_casts;
      }
    }
    EXPECT_EQ(weight_casts, 4 * 4) << "stage " << p.stage;  // 4 layers per stage
  }
}

TEST(Fp8Lower, SequenceParallelGathersTheNormOutputInFp8) {
  // TE quantizes before the sequence-parallel all-gather (and re-gathers the FP8 rows for the
  // weight gradient): the QKV and fc1 input gathers carry one byte per element.
  const ModelSpec m = gpt(1, 256, 8, 512, 64);
  auto s = strategy(1, 2, 1, 1, 1);
  s.sequence_parallel = true;
  const Plan bf16 = lower_fp8(m, s);
  const Plan fp8 = lower_fp8(m, with_fp8(s));
  auto gather_bytes = [](const Program& p) {
    double total = 0;
    for (const Task& t : p.tasks) {
      if (t.collective == CollectiveKind::kAllGather && t.layer == 0) total += t.bytes;
    }
    return total;
  };
  // Forward: 2 gathers of the norm outputs; backward: their 2 re-gathers and the 2 gathers of
  // the output gradients (16-bit) of the row-parallel blocks.
  const double T = 64, h = 256;
  EXPECT_DOUBLE_EQ(gather_bytes(bf16.programs[0]), 6 * T * h * 2);
  EXPECT_DOUBLE_EQ(gather_bytes(fp8.programs[0]), 4 * T * h * 1 + 2 * T * h * 2);
}

// The Plan keeps per layer what TE keeps, for every recompute mode with and without sequence
// parallelism and for both attention cores: layer_activation_bytes(..., fp8) times the layers
// and micro-batches in flight (middle stages; the buffers' lifetimes give the count).
TEST(Fp8Lower, PeakActivationsAreTheFp8Formula) {
  const ModelSpec m = gpt(8, 256, 8, 512, 64);
  for (AttentionImpl att : {AttentionImpl::kUnfused, AttentionImpl::kFused}) {
    for (Recompute r : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
      for (bool sp : {false, true}) {
        auto s = strategy(1, 2, 4, 1, 8);
        s.recompute = r;
        s.sequence_parallel = sp;
        s.attention = att;
        const Plan plan = lower_fp8(m, with_fp8(s));
        const double stats = r == Recompute::kFull ? 0 : norm_statistics_bytes(m, 2, sp);
        const double layer =
            layer_activation_bytes(m, 1, 2, sp, r, att, Fp8Format::kHybrid).stored + stats;
        for (const Program& p : plan.programs) {
          if (p.stage == 0 || p.stage == s.pp - 1) continue;  // embedding mask, logits
          const int in_flight =
              max_in_flight(stage_schedule(s.schedule, s.pp, p.stage, plan.num_micro_batches, 1));
          const double expected = in_flight * 2.0 * layer;
          EXPECT_NEAR(p.memory.max_activation_bytes, expected, 1e-6 * expected)
              << attention_name(att) << " " << recompute_name(r) << " sp " << sp << " stage "
              << p.stage;
        }
      }
    }
  }
}

TEST(Fp8Lower, PerLayerActivationBytesAgainstAHandCount) {
  // GPT, s 64, b 1, h 256, a 8, t 2, no SP, unfused attention. Korthikanti's 16-bit layer keeps
  // sbh (10 + 24/t + 5as/(ht)). With FP8 GEMMs (TE keeps FP8 copies of the GEMM inputs for the
  // weight gradient) four inputs shrink from 2 bytes to 1 per element: the QKV and fc1 inputs
  // (sbh each), the out-projection input (sbh/t) and fc2's input (sbf/t = 4sbh/t): sbh (2 + 5/t)
  // fewer bytes, sbh (8 + 19/t + 5as/(ht)) in all.
  const ModelSpec m = gpt(2, 256, 8, 512, 64);
  const double s = 64, b = 1, h = 256, a = 8, t = 2, sbh = s * b * h;
  const double bf16 = layer_activation_bytes(m, 1, 2, false, Recompute::kNone).stored;
  const double fp8 = layer_activation_bytes(m, 1, 2, false, Recompute::kNone,
                                            AttentionImpl::kUnfused, Fp8Format::kHybrid)
                         .stored;
  EXPECT_DOUBLE_EQ(bf16, korthikanti_layer_bytes(64, 1, 256, 8, 2, false, Recompute::kNone));
  EXPECT_DOUBLE_EQ(bf16 - fp8, sbh * (2 + 5 / t));
  EXPECT_DOUBLE_EQ(fp8, sbh * (8 + 19 / t + 5 * a * s / (h * t)));
  // With sequence parallelism everything is split by t: Korthikanti's sbh/t (34 + 5as/h) less
  // the same 2 + 5.
  EXPECT_DOUBLE_EQ(layer_activation_bytes(m, 1, 2, true, Recompute::kNone, AttentionImpl::kUnfused,
                                          Fp8Format::kHybrid)
                       .stored,
                   sbh / t * (27 + 5 * a * s / h));
  // The Plan's own count, buffer by buffer, on a one-stage plan with one micro-batch: the
  // activations held at the end of the forward of both layers.
  auto st = strategy(1, 2, 1, 1, 1);
  const Plan p16 = lower_fp8(m, st);
  const Plan p8 = lower_fp8(m, with_fp8(st));
  // Beyond the layers: the embedding's mask and the final norm's input (the last layer's
  // output, 2 sbh; the head's other tensors are role logits).
  const double stats = norm_statistics_bytes(m, 2, false);
  const double ends = embedding_activation_bytes(m, 1, 2, false) + 2 * sbh;
  EXPECT_DOUBLE_EQ(p16.programs[0].memory.max_activation_bytes, 2 * (bf16 + stats) + ends);
  EXPECT_DOUBLE_EQ(p8.programs[0].memory.max_activation_bytes, 2 * (fp8 + stats) + ends);
  // With fused attention the 16-bit context stays (FlashAttention's backward reads it) beside
  // the out-projection's FP8 copy: sbh/t more than unfused's FP8 saving on that tensor.
  const double fused8 = layer_activation_bytes(m, 1, 2, false, Recompute::kNone,
                                               AttentionImpl::kFused, Fp8Format::kHybrid)
                            .stored;
  const double fused16 =
      layer_activation_bytes(m, 1, 2, false, Recompute::kNone, AttentionImpl::kFused).stored;
  EXPECT_DOUBLE_EQ(fused16 - fused8, sbh * (2 + 4 / t) - sbh / t);
}

TEST(Fp8Lower, StaticMemoryHoldsTheFp8WeightsAndScalingState) {
  // Per layer: the FP8 weights row- and column-wise (2 bytes per weight element of the four
  // linear layers, biases excluded) and 4 x 5 x (history + 2) fp32 of scaling state.
  const ModelSpec m = llama(4, 512, 8, 4, 1376, 1024, 128);
  auto s = strategy(1, 2, 2, 1, 4);
  auto f = with_fp8(s);
  f.fp8_amax_history_len = 16;
  const Plan p16 = lower_fp8(m, s), p8 = lower_fp8(m, f);
  const double h = 512, hk = 256, ff = 1376, t = 2;
  const double weights = (h * (h + 2 * hk) + h * h + h * 2 * ff + ff * h) / t;
  EXPECT_DOUBLE_EQ(fp8_layer_static_bytes(m, 2, 16), 2 * weights + 4 * 5 * 18 * 4);
  for (int stage = 0; stage < 2; ++stage) {
    const StaticMemory& a = p16.programs[stage].memory.static_bytes;
    const StaticMemory& b = p8.programs[stage].memory.static_bytes;
    EXPECT_DOUBLE_EQ(b.params - a.params, 2 * fp8_layer_static_bytes(m, 2, 16)) << stage;
    EXPECT_DOUBLE_EQ(b.grads, a.grads);
    EXPECT_DOUBLE_EQ(b.optimizer, a.optimizer);
  }
}

TEST(Fp8Lower, OverriddenLayersStay16Bit) {
  // Megatron-Core's --first-last-layers-bf16: layers 0 and 3 without FP8.
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  auto s = with_fp8(strategy(1, 1, 1, 1, 1));
  s.layer_overrides.push_back({0, 0, 0, -1, static_cast<int>(Fp8Format::kNone)});
  s.layer_overrides.push_back({3, 3, 0, -1, static_cast<int>(Fp8Format::kNone)});
  const Plan plan = lower_fp8(m, s);
  std::map<int, int> fp8_gemms;
  for (const Task& t : plan.programs[0].tasks) {
    for (std::uint32_t i = 0; i < t.op_count; ++i) {
      fp8_gemms[t.layer] += plan.programs[0].ops[t.op_begin + i].dtype == DType::kFp8 &&
                            plan.programs[0].ops[t.op_begin + i].kind != OpKind::kFp8Cast;
    }
  }
  EXPECT_EQ(fp8_gemms[0], 0);
  EXPECT_EQ(fp8_gemms[1], 12);  // 4 linear layers x (forward, data and weight gradients)
  EXPECT_EQ(fp8_gemms[2], 12);
  EXPECT_EQ(fp8_gemms[3], 0);
  EXPECT_EQ(fp8_gemms[-1], 0);  // the ends
}

TEST(Fp8Lower, RefusedWithoutAnFp8Peak) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  // The test cluster's A100 has no FP8 tensor cores: the error names the field and the device.
  testing::expect_config_error(
      [&] { lower(m, testing::cluster(1, 8), with_fp8(strategy(1, 1, 1, 1, 1)), 1); },
      {"strategy.fp8 = \"hybrid\"", "has no FP8 peak", "cluster.gpu.peak_tflops.fp8"});
}

}  // namespace
}  // namespace strata::strategies
