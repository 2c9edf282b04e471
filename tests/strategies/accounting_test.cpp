// FLOP and memory accounting against the published formulas: Megatron SC'21 eq. 3 (and its
// Table 1), Korthikanti et al. 2022 Table 2, and the ZeRO paper's memory figures.
#include "strategies/accounting.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "test_models.hpp"

namespace strata::strategies {
namespace {

using testing::gpt;
using testing::llama;
using testing::strategy;

// Megatron-LM SC'21 (Narayanan et al., arXiv:2104.04473) Table 1, the columns this test uses, as
// in shared/data/published-reference.json (block megatron_sc21_table1); vocab 51200 and sequence
// 2048 for every row. iter_time_s is not printed in the paper: it is derived there as eq. 3 FLOPs
// / (TFLOP/s per GPU x GPUs), from the rounded TFLOP/s, so it agrees to about 0.5%.
struct Table1Row {
  int layers, hidden, heads, global_batch, num_gpus;
  double achieved_tflops_per_gpu, iter_time_s;
};
constexpr Table1Row kTable1[] = {
    {24, 2304, 24, 512, 32, 137, 3.53},        {30, 3072, 32, 512, 64, 138, 3.7},
    {36, 4096, 32, 512, 128, 142, 3.7},        {40, 6144, 48, 1024, 256, 135, 9.4},
    {48, 8192, 64, 1536, 512, 138, 14.45},     {60, 10240, 80, 1792, 1024, 140, 16.06},
    {80, 12288, 96, 2304, 1536, 148, 24.82},   {96, 16384, 128, 2160, 1920, 155, 37.61},
    {105, 20480, 128, 2520, 2520, 163, 54.08}, {128, 25600, 160, 3072, 3072, 163, 102.63}};

TEST(Flops, Eq3IntegerFormEqualsThePaperForm) {
  // 96 B s l h^2 (1 + s/6h + V/16lh), evaluated in long double.
  const std::int64_t B = 1536, s = 2048, l = 96, h = 12288, V = 51200;
  const long double paper =
      96.0L * B * s * l * h * h * (1.0L + s / (6.0L * h) + V / (16.0L * l * h));
  const long double ours = static_cast<long double>(megatron_eq3_flops(B, s, l, h, V));
  EXPECT_NEAR(static_cast<double>(ours / paper), 1.0, 1e-15);
}

TEST(Flops, FullRecomputeHardwareFlopsEqualEq3ExactlyForEveryTable1Row) {
  for (const Table1Row& row : kTable1) {
    const int l = row.layers, h = row.hidden, a = row.heads;
    const int B = row.global_batch;
    ModelSpec m = gpt(l, h, a, 51200, 2048);
    StrategySpec s = strategy(1, 1, 1, 1, B);
    s.recompute = Recompute::kFull;
    const StepFlops f = step_flops(m, s);
    EXPECT_TRUE(f.hardware == megatron_eq3_flops(B, 2048, l, h, 51200)) << "row with h=" << h;
    // Model FLOPs: three passes instead of four over the layers (72 B s l h^2 (1 + s/6h +
    // V/12lh)).
    const FlopCount model = FlopCount(72) * B * 2048 * l * FlopCount(h) * h +
                            FlopCount(12) * B * 2048 * 2048 * l * h +
                            FlopCount(6) * B * 2048 * FlopCount(h) * 51200;
    EXPECT_TRUE(f.model == model);
    // The derived iteration time of the table: eq. 3 / (achieved TFLOP/s x GPUs).
    const double iter = to_double(f.hardware) / (row.achieved_tflops_per_gpu * 1e12 * row.num_gpus);
    EXPECT_NEAR(iter / row.iter_time_s, 1.0, 0.01);
  }
}

TEST(Flops, SelectiveRecomputeAddsOnlyTheAttentionCore) {
  const ModelSpec m = gpt(4, 256, 8, 1024, 512);
  StrategySpec s = strategy(1, 1, 1, 1, 8);
  const StepFlops none = step_flops(m, s);
  s.recompute = Recompute::kSelective;
  const StepFlops sel = step_flops(m, s);
  EXPECT_TRUE(none.model == sel.model);
  EXPECT_TRUE(none.hardware == none.model);
  const FlopCount core = FlopCount(4) * 8 * 512 * 512 * 256 * 4;  // 4 T s h per layer
  EXPECT_TRUE(sel.hardware - sel.model == core);
}

TEST(Flops, LayerFlopsForGqaAndSwiglu) {
  // Llama-2-70B shape: h 8192, 64 heads, 8 kv heads, ffn 28672.
  const ModelSpec m = llama(80, 8192, 64, 8, 28672, 32000, 4096);
  const LayerFlops f = layer_forward_flops(m, 1);
  const double T = 4096, h = 8192, hk = 1024;
  EXPECT_DOUBLE_EQ(f.qkv, 2 * T * h * (h + 2 * hk));
  EXPECT_DOUBLE_EQ(f.attn_out, 2 * T * h * h);
  EXPECT_DOUBLE_EQ(f.mlp, 6 * T * h * 28672);
  EXPECT_DOUBLE_EQ(f.attn_core, 4 * T * 4096 * h);
  EXPECT_DOUBLE_EQ(lm_head_forward_flops(m, 2), 2 * 2 * T * h * 32000);
}

TEST(Memory, LayerActivationsMatchKorthikantiTable2) {
  // GPT-3 175B shape and a smaller one, every tp, with and without sequence parallelism.
  for (const auto& [h, a] : {std::pair{12288, 96}, std::pair{2048, 16}}) {
    const ModelSpec m = gpt(8, h, a, 51200, 2048);
    for (int t : {1, 2, 4, 8}) {
      for (bool sp : {false, true}) {
        for (Recompute r : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
          for (int b : {1, 4}) {
            const double ours = layer_activation_bytes(m, b, t, sp, r).stored;
            const double paper = korthikanti_layer_bytes(2048, b, h, a, t, sp, r);
            EXPECT_NEAR(ours / paper, 1.0, 1e-12)
                << "h=" << h << " t=" << t << " sp=" << sp << " recompute=" << int(r);
          }
        }
      }
    }
  }
}

TEST(Memory, KorthikantiClosedFormsByHand) {
  // s=2048, b=1, h=12288, a=96, t=8: sbh = 25165824.
  const double sbh = 2048.0 * 12288;
  EXPECT_DOUBLE_EQ(korthikanti_layer_bytes(2048, 1, 12288, 96, 1, false, Recompute::kNone),
                   sbh * (34 + 5.0 * 96 * 2048 / 12288));
  EXPECT_DOUBLE_EQ(korthikanti_layer_bytes(2048, 1, 12288, 96, 8, true, Recompute::kSelective),
                   sbh * 34 / 8);
  EXPECT_DOUBLE_EQ(korthikanti_layer_bytes(2048, 1, 12288, 96, 8, false, Recompute::kFull),
                   2 * sbh);
}

TEST(Memory, RecomputedBytesRestoreTheFullLayer) {
  const ModelSpec m = gpt(8, 1024, 16, 51200, 2048);
  for (int t : {1, 4}) {
    for (bool sp : {false, true}) {
      const double full = layer_activation_bytes(m, 2, t, sp, Recompute::kNone).stored;
      const auto sel = layer_activation_bytes(m, 2, t, sp, Recompute::kSelective);
      EXPECT_DOUBLE_EQ(sel.stored + sel.recomputed, full);
      EXPECT_DOUBLE_EQ(layer_activation_bytes(m, 2, t, sp, Recompute::kFull).recomputed, full);
    }
  }
}

TEST(Memory, DropoutFreeSwigluLayer) {
  // No dropout: no masks and no dropout output; SwiGLU keeps gate, up and fc2 input (6 s b f).
  const ModelSpec m = llama(2, 4096, 32, 8, 11008, 32000, 4096);
  const double s = 4096, h = 4096, hk = 1024, f = 11008, a = 32;
  const double expected = 8 * s * h + 2 * s * (h + 2 * hk) + 2 * s * h + 6 * s * f + 2 * a * s * s;
  EXPECT_DOUBLE_EQ(layer_activation_bytes(m, 1, 1, false, Recompute::kNone).stored, expected);
}

TEST(Memory, ZeroPaperFigures) {
  // Rajbhandari et al. 2020, sec. 5 / Figure 1: 7.5B parameters, N_d = 64, K = 12, fp16:
  // baseline 120 GB, P_os 31.4 GB, P_os+g 16.6 GB, P_os+g+p 1.9 GB.
  const double psi = 7.5e9;
  const double expected[] = {120.0, 31.4, 16.6, 1.9};
  for (int stage = 0; stage <= 3; ++stage) {
    const double gb = static_memory_bytes(psi, 64, stage, Precision::kFp16, false).total() / 1e9;
    EXPECT_NEAR(gb, expected[stage], 0.05) << "stage " << stage;
  }
  // fp32 training keeps 4 + 4 + 8 bytes per parameter.
  EXPECT_DOUBLE_EQ(static_memory_bytes(1000, 1, 0, Precision::kFp32, false).total(), 16000);
  // Megatron's fp32 main gradients: 4-byte gradients.
  EXPECT_DOUBLE_EQ(static_memory_bytes(1000, 1, 0, Precision::kBf16, true).grads, 4000);
}

TEST(Memory, ParamsPerRankAddUpToTheLayer) {
  const ModelSpec m = gpt(1, 1024, 16, 51200, 2048);
  // Unsharded: Megatron's 12h^2 + 13h.
  EXPECT_DOUBLE_EQ(layer_params_per_rank(m, 1), 12.0 * 1024 * 1024 + 13.0 * 1024);
  // Under tp, the split parts add up and the replicated parts (norms, row biases) repeat.
  for (int t : {2, 4, 8}) {
    const double replicated = 4.0 * 1024 + 2.0 * 1024;
    EXPECT_DOUBLE_EQ(t * (layer_params_per_rank(m, t) - replicated) + replicated,
                     layer_params_per_rank(m, 1));
  }
  EXPECT_DOUBLE_EQ(input_embedding_params_per_rank(m, 4), 51200.0 * 1024 / 4 + 2048.0 * 1024);
  EXPECT_DOUBLE_EQ(output_params_per_rank(m, 4, 1), 2.0 * 1024);  // tied, one stage: norm only
  EXPECT_DOUBLE_EQ(output_params_per_rank(m, 4, 2), 2.0 * 1024 + 51200.0 * 1024 / 4);
}

// --- mixture of experts ----------------------------------------------------------------------

// `m` with `experts` routed experts of width `width`, top-k, `shared` shared experts of
// `shared_width`, the first `dense` layers dense.
ModelSpec with_experts(ModelSpec m, int experts, int k, int width, int shared, int shared_width,
                       int dense) {
  m.moe.num_experts = experts;
  m.moe.num_experts_per_tok = k;
  m.moe.moe_intermediate_size = width;
  m.moe.n_shared_experts = shared;
  m.moe.shared_expert_intermediate_size = shared_width;
  m.moe.first_k_dense_replace = dense;
  return m;
}

TEST(MoeFlops, LayerByHand) {
  const ModelSpec m = with_experts(llama(4, 256, 8, 2, 1024, 1000, 128), 16, 2, 96, 1, 64, 1);
  const LayerFlops dense = layer_forward_flops(m, 3);
  const LayerFlops moe = moe_layer_forward_flops(m, 3);
  const double T = 3 * 128, h = 256;
  EXPECT_DOUBLE_EQ(dense.router, 0.0);
  EXPECT_DOUBLE_EQ(dense.mlp, 6 * T * h * 1024);
  EXPECT_DOUBLE_EQ(moe.qkv, dense.qkv);
  EXPECT_DOUBLE_EQ(moe.attn_core, dense.attn_core);
  EXPECT_DOUBLE_EQ(moe.attn_out, dense.attn_out);
  EXPECT_DOUBLE_EQ(moe.router, 2 * T * h * 16);
  EXPECT_DOUBLE_EQ(moe.mlp, 6 * T * h * (2 * 96 + 1 * 64));  // top-2 routed + 1 shared
  // The step: one dense layer, three MoE layers, the head; 3x forward.
  const StrategySpec s = strategy(1, 1, 1, 1, 3);
  const StepFlops step = step_flops(m, s);
  const double fwd = dense.total() + 3 * moe.total() + lm_head_forward_flops(m, 3);
  EXPECT_DOUBLE_EQ(to_double(step.model), 3 * fwd);
  EXPECT_TRUE(step.hardware == step.model);
  // Full recompute repeats each layer's own forward, the MoE layers' router and experts too.
  StrategySpec full = s;
  full.recompute = Recompute::kFull;
  const StepFlops rec = step_flops(m, full);
  EXPECT_TRUE(rec.model == step.model);
  EXPECT_DOUBLE_EQ(to_double(rec.hardware - rec.model), dense.total() + 3 * moe.total());
  EXPECT_DOUBLE_EQ(model_flops_per_token(m), 3 * fwd / T);
}

TEST(MoeMemory, ParamsPerRankAddUpToTheLayer) {
  for (const bool gpt_shape : {false, true}) {
    ModelSpec base = gpt_shape ? gpt(4, 64, 4, 256, 32) : llama(4, 64, 8, 2, 160, 256, 32);
    const ModelSpec m = with_experts(base, 8, 2, 96, 2, 48, 0);
    SCOPED_TRACE(gpt_shape ? "gpt" : "llama");
    EXPECT_DOUBLE_EQ(moe_layer_params_per_rank(m, 1, 1, 1),
                     static_cast<double>(moe_layer_params(m)));
    // ep 4, expert_tp 2, tp 2: a rank holds 2 routed experts, each half, without biases
    // (grouped GEMMs); the shared experts with the model's biases.
    const double h = 64, b = m.bias ? 1.0 : 0.0, c = m.hidden_act == Activation::kSwiglu ? 2 : 1;
    const double expert_half = h * c * 96 / 2 + 96 * h / 2;
    // The 2 shared experts are one MLP of width 96: half of it, fc2's one bias whole.
    const double shared_half = (h * c * 96 + b * c * 96) / 2 + 96 * h / 2 + b * h;
    const BlockParams p = layer_block_params(m, 2);
    EXPECT_DOUBLE_EQ(moe_layer_params_per_rank(m, 2, 4, 2),
                     p.attn_qkv + p.attn_out + 2 * p.norm + h * 8 + 2 * expert_half + shared_half);
  }
}

// Mixtral-8x7B per token: 6 x (the matmul weights a token passes through: attention, router,
// two experts, the LM head) + 3 x the attention core (4 s h per layer).
TEST(MoeFlops, Mixtral8x7bPerToken) {
  ModelSpec m = llama(32, 4096, 32, 8, 14336, 32000, 4096);
  m = with_experts(m, 8, 2, 14336, 0, 0, 0);
  const double attention = 2.0 * 4096 * 4096 + 2.0 * 4096 * 1024, router = 4096.0 * 8;
  const double experts = 2 * 3.0 * 4096 * 14336, head = 32000.0 * 4096;
  const double weights = 32 * (attention + router + experts) + head;
  const double core = 3 * 4.0 * 4096 * 4096 * 32;
  EXPECT_DOUBLE_EQ(model_flops_per_token(m), 6 * weights + core);
  EXPECT_DOUBLE_EQ(model_flops_per_token(m), 82'933'972'992.0);
}

// A dense GPT: eq. 3 without its recompute forward of the layers (the head is not recomputed),
// per token: 72 l h^2 + 12 s l h + 6 h V.
TEST(MoeFlops, DenseModelPerTokenIsEq3WithoutRecompute) {
  const ModelSpec m = gpt(24, 2304, 24, 51200, 2048);
  const double l = 24, h = 2304, s = 2048, V = 51200;
  EXPECT_DOUBLE_EQ(model_flops_per_token(m), 72 * l * h * h + 12 * s * l * h + 6 * h * V);
  const double eq3 = to_double(megatron_eq3_flops(1, 2048, 24, 2304, 51200)) / s;
  EXPECT_DOUBLE_EQ(model_flops_per_token(m), (eq3 - 6 * h * V) * 3 / 4 + 6 * h * V);
}

}  // namespace
}  // namespace strata::strategies
