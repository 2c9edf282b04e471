// FLOP and memory accounting for one model under one strategy: the published formulas (derivations
// in docs/accounting.md) that the Plan's op costs and buffer tables are tested against.
//
// FLOPs count matmuls only, 2 per multiply-accumulate, as Megatron-LM does (Narayanan et al.
// 2021, eq. 3). Activation memory follows Korthikanti et al. 2022 ("Reducing Activation
// Recomputation in Large Transformer Models", sec. 4), generalised term by term to GQA, SwiGLU
// and dropout-free models so that it reduces exactly to the paper's sbh(34 + 5as/h) for GPT.
#pragma once

#include <cstdint>

#include "strategies/program.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {

// Exact integer FLOP totals: a GPT-3 step is ~4e21 FLOPs, beyond double's exact integers.
__extension__ typedef __int128 FlopCount;
double to_double(FlopCount f);

// Forward matmul FLOPs of one transformer layer for `samples` sequences of the model's length,
// unsharded (divide by tp for one rank). Backward is twice the forward.
struct LayerFlops {
  double qkv = 0;        // 2 T h (h + 2 h_kv)
  double attn_core = 0;  // QK^T and attention-over-values: 4 T s h
  double attn_out = 0;   // 2 T h^2
  double mlp = 0;        // GELU: 4 T h f; SwiGLU: 6 T h f (MoE: the experts a token visits)
  double router = 0;     // MoE layers: 2 T h E; 0 in a dense layer
  double total() const { return qkv + attn_core + attn_out + mlp + router; }
};
// A dense layer (every layer of a dense model; the dense layers of an MoE model).
LayerFlops layer_forward_flops(const ModelSpec& m, std::int64_t samples);
// An MoE layer (docs/accounting.md "Mixture of experts"): attention as a dense layer, the router
// GEMM 2 T h E, and per token its top-k routed experts and every shared expert, each an MLP of
// its width: mlp = c T h (k f_e + n_s f_s) with c = 4 (GELU) or 6 (SwiGLU). Every routed token
// is counted (dropless routing): tokens a capacity factor drops are not subtracted.
LayerFlops moe_layer_forward_flops(const ModelSpec& m, std::int64_t samples);
// Model FLOPs (forward + backward, 3x forward, no recompute) per token of the model's sequence
// length: what MFU counts per trained token, 6 x active parameters plus attention and LM head.
double model_flops_per_token(const ModelSpec& m);
// Forward FLOPs of the LM head (logits) for `samples` sequences: 2 T h V.
double lm_head_forward_flops(const ModelSpec& m, std::int64_t samples);

// Per-step totals for `global_batch` sequences, over all ranks (MoE layers as
// moe_layer_forward_flops; a recomputed MoE layer repeats its router and experts).
struct StepFlops {
  FlopCount model = 0;     // forward + backward (3x forward): what MFU counts
  FlopCount hardware = 0;  // plus recomputed forwards: what the GPUs execute
};
StepFlops step_flops(const ModelSpec& m, const StrategySpec& s);

// Megatron SC'21 eq. (3) in exact integer form:
// 96 B s l h^2 (1 + s/6h + V/16lh) = 96 B s l h^2 + 16 B s^2 l h + 6 B s h V.
FlopCount megatron_eq3_flops(std::int64_t batch, std::int64_t seq, std::int64_t layers,
                             std::int64_t hidden, std::int64_t vocab);

// ---------------------------------------------------------------------------------------------
// Memory

// Bytes of activations one layer keeps from its forward until its backward, for one micro-batch
// of `samples` sequences on one rank of a tp-way group. 16-bit activations, 1-byte dropout masks.
struct LayerActivation {
  double stored = 0;     // kept across the forward/backward gap under the recompute mode
  double recomputed = 0; // re-materialised transiently during backward (0 without recompute)
};
// With fused attention the (s x s) terms give way to one fp32 log-sum-exp per query row and
// head (4 a s b / t). With FP8 GEMMs (Transformer Engine) the linear layers keep one-byte FP8
// copies of their inputs for the weight gradient: the QKV and fc1 inputs (the norms' FP8
// outputs) take 1 byte per element instead of 2, the out-projection and fc2 inputs too, except
// that fused attention keeps its 16-bit output besides (docs/accounting.md "FP8").
LayerActivation layer_activation_bytes(const ModelSpec& m, std::int64_t samples, int tp,
                                       bool sequence_parallel, Recompute recompute,
                                       AttentionImpl attention = AttentionImpl::kUnfused,
                                       Fp8Format fp8 = Fp8Format::kNone);

// Korthikanti et al. 2022, Table 2, per layer, in bytes, for GPT (the published closed forms
// used to test layer_activation_bytes).
double korthikanti_layer_bytes(std::int64_t s, std::int64_t b, std::int64_t h, std::int64_t a,
                               int t, bool sequence_parallel, Recompute recompute);

// Activations outside the layers, per micro-batch on one rank.
// First stage: the embedding-dropout mask (sbh/t bytes with sequence parallelism, else sbh).
double embedding_activation_bytes(const ModelSpec& m, std::int64_t samples, int tp, bool sp);
// Last stage: final-norm and LM-head inputs (2sbh each, /t with SP) and fp32 logits (4sbV/t).
double lm_head_activation_bytes(const ModelSpec& m, std::int64_t samples, int tp, bool sp);

// Parameters held by one rank for one layer under tp: weights and column-parallel biases are
// split, row-parallel biases and norms are replicated (Megatron's layout).
double layer_params_per_rank(const ModelSpec& m, int tp);
// The same parameters by the block that owns them (layer_params_per_rank is their sum): the
// weights and biases of each linear layer, and one norm's weights (each layer has two norms).
struct BlockParams {
  double attn_qkv = 0, attn_out = 0, mlp_fc1 = 0, mlp_fc2 = 0, norm = 0;
};
BlockParams layer_block_params(const ModelSpec& m, int tp);
// Parameters one rank holds for one MoE layer (docs/accounting.md "Mixture of experts"):
// attention and norms as layer_params_per_rank under tp, the router (h x E) whole on every
// rank, num_experts / ep routed experts each split over expert_tp (column-parallel up, row-
// parallel down with its bias whole), and the shared experts split over tp like the dense MLP.
double moe_layer_params_per_rank(const ModelSpec& m, int tp, int ep, int expert_tp);
// The part of those every rank of the tp group holds whole: both norms and the row-parallel
// biases. Under sequence parallelism each rank computes their gradients from its slice of the
// sequence, so they are all-reduced over the tp group once per step.
double layer_replicated_params(const ModelSpec& m);
// Vocabulary-parallel word embedding (V h / t) and, for learned positions, the replicated
// position table (s h).
double input_embedding_params_per_rank(const ModelSpec& m, int tp);
// Final norm plus the LM head (V h / t) when untied or when pp > 1 (Megatron keeps a copy of a
// tied embedding on the last stage and all-reduces its gradient with the first).
double output_params_per_rank(const ModelSpec& m, int tp, int pp);

// Strategy fp8: what one layer keeps in static memory on one rank of a tp-way group beyond its
// parameters: the FP8 copies of its four linear weights, row- and column-wise (2 bytes per
// weight element; not the biases), and the delayed-scaling state (4 linear layers x 5 FP8
// tensors x (amax history + scale + inverse scale), fp32).
double fp8_layer_static_bytes(const ModelSpec& m, int tp, int amax_history_len);

// Parameters, gradients and optimizer states for P parameters on one rank under ZeRO
// (Rajbhandari et al. 2020): 16-bit params and grads, fp32 master + Adam m and v (12 bytes) in
// mixed precision; fp32 training keeps 4-byte params and grads and 8 bytes of Adam state.
StaticMemory static_memory_bytes(double params, int dp, int zero_stage, Precision precision,
                                 bool main_grads_fp32);

// Bytes per element of gradients as reduced and stored.
int grad_bytes(Precision precision, bool main_grads_fp32);

}  // namespace strata::strategies
