// FLOP and memory formulas; see accounting.hpp for the contract and docs/accounting.md for the
// derivations.
#include "strategies/accounting.hpp"

#include "common/error.hpp"

namespace strata::strategies {

double to_double(FlopCount f) { return static_cast<double>(f); }

LayerFlops layer_forward_flops(const ModelSpec& m, std::int64_t samples) {
  const double s = m.seq_length, h = m.hidden_size, f = m.intermediate_size, hk = m.kv_hidden();
  const double tokens = static_cast<double>(samples) * s;
  LayerFlops out;
  out.qkv = 2.0 * tokens * h * (h + 2.0 * hk);
  out.attn_core = 4.0 * tokens * s * h;  // scores (T x s per head) and values, over all heads
  out.attn_out = 2.0 * tokens * h * h;
  out.mlp = (m.hidden_act == Activation::kSwiglu ? 6.0 : 4.0) * tokens * h * f;
  return out;
}

LayerFlops moe_layer_forward_flops(const ModelSpec& m, std::int64_t samples) {
  STRATA_CHECK(m.is_moe(), "moe_layer_forward_flops needs a model with experts");
  LayerFlops out = layer_forward_flops(m, samples);
  const MoeSpec& e = m.moe;
  const double tokens = static_cast<double>(samples) * m.seq_length, h = m.hidden_size;
  const double c = m.hidden_act == Activation::kSwiglu ? 6.0 : 4.0;
  out.mlp = c * tokens * h *
            (static_cast<double>(e.num_experts_per_tok) * e.moe_intermediate_size +
             static_cast<double>(e.n_shared_experts) * e.shared_expert_intermediate_size);
  out.router = 2.0 * tokens * h * e.num_experts;
  return out;
}

double lm_head_forward_flops(const ModelSpec& m, std::int64_t samples) {
  return 2.0 * static_cast<double>(samples) * m.seq_length * m.hidden_size * m.vocab_size;
}

namespace {
// Integer forward FLOPs of one layer for `samples` sequences (exact for the totals).
FlopCount layer_forward_flops_exact(const ModelSpec& m, std::int64_t samples) {
  const FlopCount T = static_cast<FlopCount>(samples) * m.seq_length;
  const FlopCount s = m.seq_length, h = m.hidden_size, f = m.intermediate_size, hk = m.kv_hidden();
  const FlopCount mlp_factor = m.hidden_act == Activation::kSwiglu ? 6 : 4;
  return 2 * T * h * (h + 2 * hk) + 4 * T * s * h + 2 * T * h * h + mlp_factor * T * h * f;
}

// The same for an MoE layer: attention, router, top-k routed and all shared experts.
FlopCount moe_layer_forward_flops_exact(const ModelSpec& m, std::int64_t samples) {
  const MoeSpec& e = m.moe;
  const FlopCount T = static_cast<FlopCount>(samples) * m.seq_length;
  const FlopCount s = m.seq_length, h = m.hidden_size, hk = m.kv_hidden();
  const FlopCount mlp_factor = m.hidden_act == Activation::kSwiglu ? 6 : 4;
  const FlopCount expert_width =
      static_cast<FlopCount>(e.num_experts_per_tok) * e.moe_intermediate_size +
      static_cast<FlopCount>(e.n_shared_experts) * e.shared_expert_intermediate_size;
  return 2 * T * h * (h + 2 * hk) + 4 * T * s * h + 2 * T * h * h + 2 * T * h * e.num_experts +
         mlp_factor * T * h * expert_width;
}

// Forward FLOPs of every layer and the LM head for `samples` sequences.
FlopCount forward_flops_exact(const ModelSpec& m, std::int64_t samples) {
  const FlopCount head_fwd =
      static_cast<FlopCount>(2) * samples * m.seq_length * m.hidden_size * m.vocab_size;
  const FlopCount layer_fwd = layer_forward_flops_exact(m, samples);
  if (!m.is_moe()) return layer_fwd * m.num_hidden_layers + head_fwd;
  const int moe_layers = m.num_moe_layers();
  return layer_fwd * (m.num_hidden_layers - moe_layers) +
         moe_layer_forward_flops_exact(m, samples) * moe_layers + head_fwd;
}
}  // namespace

double model_flops_per_token(const ModelSpec& m) {
  return to_double(3 * forward_flops_exact(m, 1)) / m.seq_length;
}

StepFlops step_flops(const ModelSpec& m, const StrategySpec& s) {
  StepFlops out;
  const std::int64_t B = s.global_batch_size;
  const FlopCount layer_fwd = layer_forward_flops_exact(m, B);
  const FlopCount moe_fwd = m.is_moe() ? moe_layer_forward_flops_exact(m, B) : 0;
  out.model = 3 * forward_flops_exact(m, B);
  out.hardware = out.model;
  // Recomputed forwards, layer by layer (overrides may change the mode per layer).
  const FlopCount T = static_cast<FlopCount>(B) * m.seq_length;
  for (int l = 0; l < m.num_hidden_layers; ++l) {
    switch (layer_strategy(s, l).recompute) {
      case Recompute::kNone:
        break;
      case Recompute::kSelective:
        out.hardware += 4 * T * m.seq_length * m.hidden_size;  // the attention core only
        break;
      case Recompute::kFull:
        out.hardware += m.is_moe_layer(l) ? moe_fwd : layer_fwd;
        break;
    }
  }
  return out;
}

FlopCount megatron_eq3_flops(std::int64_t batch, std::int64_t seq, std::int64_t layers,
                             std::int64_t hidden, std::int64_t vocab) {
  const FlopCount B = batch, s = seq, l = layers, h = hidden, V = vocab;
  return 96 * B * s * l * h * h + 16 * B * s * s * l * h + 6 * B * s * h * V;
}

LayerActivation layer_activation_bytes(const ModelSpec& m, std::int64_t samples, int tp,
                                       bool sequence_parallel, Recompute recompute,
                                       AttentionImpl attention, Fp8Format fp8) {
  STRATA_CHECK(tp >= 1, "tp must be positive");
  const double s = m.seq_length, b = static_cast<double>(samples), h = m.hidden_size;
  const double a = m.num_attention_heads, hk = m.kv_hidden(), f = m.intermediate_size;
  const double t = tp;
  const double sbh = s * b * h;
  const double mask = m.dropout ? 1.0 : 0.0;  // one byte per element

  const bool f8 = fp8 != Fp8Format::kNone;
  // Replicated across the tp group (split by t with sequence parallelism): both norms' inputs
  // (2 + 2), the QKV and fc1 inputs (2 + 2; FP8: 1 + 1), and the two residual-dropout masks
  // (1 + 1).
  const double replicated = sbh * ((f8 ? 6.0 : 8.0) + 2.0 * mask);
  // Split by t: Q, K, V kept for the attention backward, the out-projection input (FP8: its
  // FP8 copy), the MLP's inner activations (GELU: its input and fc2's input; SwiGLU: gate, up and
  // fc2's input; FP8: fc2's input in 1 byte).
  const bool swiglu = m.hidden_act == Activation::kSwiglu;
  const double mlp_inner = (swiglu ? (f8 ? 5.0 : 6.0) : (f8 ? 3.0 : 4.0)) * s * b * f;
  const double out_input = (f8 ? 1.0 : 2.0) * sbh;
  const double split = 2.0 * s * b * (h + 2.0 * hk) + out_input + mlp_inner;
  // Split by t, s^2 per head: softmax output (2), and with dropout its mask (1) and output (2).
  // Fused attention keeps one fp32 statistic per query row and head instead, and under FP8 also
  // its 16-bit output, which its backward reads (without FP8 that output is the out-projection
  // input, counted above). Selective recompute re-makes all of these with the core.
  const double quadratic = attention == AttentionImpl::kFused
                               ? 4.0 * a * s * b + (f8 ? 2.0 * sbh : 0.0)
                               : (2.0 + 3.0 * mask) * a * s * s * b;

  const double rep = sequence_parallel ? replicated / t : replicated;
  const double full = rep + (split + quadratic) / t;
  LayerActivation out;
  switch (recompute) {
    case Recompute::kNone:
      out.stored = full;
      break;
    case Recompute::kSelective:
      out.stored = rep + split / t;
      out.recomputed = quadratic / t;
      break;
    case Recompute::kFull:
      out.stored = 2.0 * sbh / (sequence_parallel ? t : 1.0);  // the layer input
      out.recomputed = full;
      break;
  }
  return out;
}

double korthikanti_layer_bytes(std::int64_t s_, std::int64_t b_, std::int64_t h_,
                               std::int64_t a_, int t_, bool sequence_parallel,
                               Recompute recompute) {
  const double s = s_, b = b_, h = h_, a = a_, t = t_;
  const double sbh = s * b * h;
  switch (recompute) {
    case Recompute::kNone:
      return sequence_parallel ? sbh / t * (34.0 + 5.0 * a * s / h)
                               : sbh * (10.0 + 24.0 / t + 5.0 * a * s / (h * t));
    case Recompute::kSelective:
      return sequence_parallel ? sbh * 34.0 / t : sbh * (10.0 + 24.0 / t);
    case Recompute::kFull:
      return sequence_parallel ? 2.0 * sbh / t : 2.0 * sbh;
  }
  return 0;
}

double embedding_activation_bytes(const ModelSpec& m, std::int64_t samples, int tp, bool sp) {
  if (!m.dropout) return 0;
  const double sbh = static_cast<double>(m.seq_length) * samples * m.hidden_size;
  return sp ? sbh / tp : sbh;
}

double lm_head_activation_bytes(const ModelSpec& m, std::int64_t samples, int tp, bool sp) {
  const double sb = static_cast<double>(m.seq_length) * samples;
  const double inputs = 4.0 * sb * m.hidden_size / (sp ? tp : 1);
  return inputs + 4.0 * sb * m.vocab_size / tp;
}

BlockParams layer_block_params(const ModelSpec& m, int tp) {
  const double h = m.hidden_size, f = m.intermediate_size, hk = m.kv_hidden(), t = tp;
  const double up = (m.hidden_act == Activation::kSwiglu ? 2.0 : 1.0) * f;  // fc1 outputs
  const double b = m.bias ? 1.0 : 0.0;
  BlockParams p;
  p.attn_qkv = (h * (h + 2.0 * hk) + b * (h + 2.0 * hk)) / t;  // column-parallel, bias split
  p.attn_out = h * h / t + b * h;                              // row-parallel, bias whole
  p.mlp_fc1 = (h * up + b * up) / t;
  p.mlp_fc2 = f * h / t + b * h;
  p.norm = (m.norm == NormKind::kLayerNorm ? 2.0 : 1.0) * h;
  return p;
}

double layer_params_per_rank(const ModelSpec& m, int tp) {
  const BlockParams p = layer_block_params(m, tp);
  return p.attn_qkv + p.attn_out + p.mlp_fc1 + p.mlp_fc2 + 2.0 * p.norm;  // two norms
}

namespace {
// One MLP of width f on one rank of a t-way group: fc1 (gate and up) column-parallel with its
// bias split, fc2 row-parallel with its bias whole.
double mlp_params_per_rank(const ModelSpec& m, double f, int t, bool bias = true) {
  const double h = m.hidden_size, b = m.bias && bias ? 1.0 : 0.0;
  const double up = (m.hidden_act == Activation::kSwiglu ? 2.0 : 1.0) * f;
  return (h * up + b * up) / t + f * h / t + b * h;
}
}  // namespace

double moe_layer_params_per_rank(const ModelSpec& m, int tp, int ep, int expert_tp) {
  STRATA_CHECK(m.is_moe() && tp >= 1 && ep >= 1 && expert_tp >= 1 && m.moe.num_experts % ep == 0,
               "moe_layer_params_per_rank needs an MoE model and ep dividing num_experts");
  const MoeSpec& e = m.moe;
  const BlockParams p = layer_block_params(m, tp);
  const double router = static_cast<double>(m.hidden_size) * e.num_experts;
  return p.attn_qkv + p.attn_out + 2.0 * p.norm + router +
         static_cast<double>(e.num_experts / ep) *
             mlp_params_per_rank(m, e.moe_intermediate_size, expert_tp, false) +
         (e.n_shared_experts > 0
              ? mlp_params_per_rank(
                    m, static_cast<double>(e.n_shared_experts) * e.shared_expert_intermediate_size,
                    tp)
              : 0.0);
}

double layer_replicated_params(const ModelSpec& m) {
  const double h = m.hidden_size;
  const double row_parallel_biases = m.bias ? 2.0 * h : 0.0;
  return row_parallel_biases + (m.norm == NormKind::kLayerNorm ? 4.0 : 2.0) * h;  // two norms
}

double input_embedding_params_per_rank(const ModelSpec& m, int tp) {
  double p = static_cast<double>(m.vocab_size) * m.hidden_size / tp;
  if (m.learned_position_embeddings) p += static_cast<double>(m.seq_length) * m.hidden_size;
  return p;
}

double output_params_per_rank(const ModelSpec& m, int tp, int pp) {
  double p = (m.norm == NormKind::kLayerNorm ? 2.0 : 1.0) * m.hidden_size;
  if (!m.tie_word_embeddings || pp > 1) p += static_cast<double>(m.vocab_size) * m.hidden_size / tp;
  return p;
}

double fp8_layer_static_bytes(const ModelSpec& m, int tp, int amax_history_len) {
  const double h = m.hidden_size, f = m.intermediate_size, hk = m.kv_hidden(), t = tp;
  const double up = (m.hidden_act == Activation::kSwiglu ? 2.0 : 1.0) * f;
  const double weights = (h * (h + 2.0 * hk) + h * h + h * up + f * h) / t;
  return 2.0 * weights + 4.0 * 5.0 * (amax_history_len + 2.0) * 4.0;
}

int grad_bytes(Precision precision, bool main_grads_fp32) {
  return main_grads_fp32 ? 4 : precision_bytes(precision);
}

StaticMemory static_memory_bytes(double params, int dp, int zero_stage, Precision precision,
                                 bool main_grads_fp32) {
  STRATA_CHECK(dp >= 1 && zero_stage >= 0 && zero_stage <= 3, "bad dp or zero stage");
  const double n = dp;
  const double optimizer_per_param = precision == Precision::kFp32 ? 8.0 : 12.0;
  StaticMemory out;
  out.params = params * precision_bytes(precision) / (zero_stage >= 3 ? n : 1.0);
  out.grads = params * grad_bytes(precision, main_grads_fp32) / (zero_stage >= 2 ? n : 1.0);
  out.optimizer = params * optimizer_per_param / (zero_stage >= 1 ? n : 1.0);
  return out;
}

}  // namespace strata::strategies
