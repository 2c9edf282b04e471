// The programs' vocabulary: names, op costs, buffer sizes and names, group resolution.
//
// defines: the *_name() functions, Buffer::elements(), op_cost(), Program::buffer_name(),
//          ParamInfo::init_name(), mark_shared_experts(), Topology::group_ranks/group_index/
//          peer_rank, partition(), ProgramSet::task_name()
#include "strategies/program.hpp"

#include <algorithm>
#include <set>

#include "common/error.hpp"

namespace strata::strategies {

const char* task_kind_name(TaskKind k) {
  switch (k) {
    case TaskKind::kCompute: return "compute";
    case TaskKind::kCollective: return "collective";
    case TaskKind::kSend: return "send";
    case TaskKind::kRecv: return "recv";
  }
  return "?";
}

const char* stream_name(Stream s) {
  switch (s) {
    case Stream::kCompute: return "compute";
    case Stream::kTp: return "tp";
    case Stream::kCp: return "cp";
    case Stream::kEp: return "ep";
    case Stream::kDp: return "dp";
    case Stream::kPp: return "pp";
  }
  return "?";
}

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::kForward: return "forward";
    case Phase::kBackward: return "backward";
    case Phase::kRecompute: return "recompute";
    case Phase::kStep: return "step";
    case Phase::kNone: return "none";
  }
  return "?";
}

const char* block_name(Block b) {
  switch (b) {
    case Block::kNone: return "none";
    case Block::kEmbedding: return "embedding";
    case Block::kAttnNorm: return "attn_norm";
    case Block::kAttnQkv: return "attn_qkv";
    case Block::kAttnCore: return "attn_core";
    case Block::kAttnOut: return "attn_out";
    case Block::kMlpNorm: return "mlp_norm";
    case Block::kMlpFc1: return "mlp_fc1";
    case Block::kMlpFc2: return "mlp_fc2";
    case Block::kFinalNorm: return "final_norm";
    case Block::kLmHead: return "lm_head";
    case Block::kOptimizer: return "optimizer";
    case Block::kMoeRouter: return "moe_router";
    case Block::kMoeExperts: return "moe_experts";
    case Block::kMoeCombine: return "moe_combine";
  }
  return "?";
}

const char* collective_name(CollectiveKind c) {
  switch (c) {
    case CollectiveKind::kNone: return "p2p";
    case CollectiveKind::kAllReduce: return "all_reduce";
    case CollectiveKind::kAllGather: return "all_gather";
    case CollectiveKind::kReduceScatter: return "reduce_scatter";
    case CollectiveKind::kAllToAll: return "all_to_all";
    case CollectiveKind::kBroadcast: return "broadcast";
    case CollectiveKind::kRingShift: return "ring_shift";
  }
  return "?";
}

const char* purpose_name(Purpose p) {
  switch (p) {
    case Purpose::kNone: return "none";
    case Purpose::kTp: return "tp";
    case Purpose::kDp: return "dp";
    case Purpose::kZero: return "zero";
    case Purpose::kCp: return "cp";
    case Purpose::kEp: return "ep";
    case Purpose::kPp: return "pp";
    case Purpose::kEmbedding: return "embedding";
    case Purpose::kReshard: return "reshard";
  }
  return "?";
}

const char* group_kind_name(GroupKind g) {
  switch (g) {
    case GroupKind::kNone: return "none";
    case GroupKind::kTp: return "tp";
    case GroupKind::kDp: return "dp";
    case GroupKind::kCp: return "cp";
    case GroupKind::kDpCp: return "dp_cp";
    case GroupKind::kEmbedding: return "embedding";
    case GroupKind::kReshard: return "reshard";
    case GroupKind::kShard: return "shard";
    case GroupKind::kReplica: return "replica";
    case GroupKind::kEp: return "ep";
    case GroupKind::kExpertDp: return "expert_dp";
  }
  return "?";
}

int dtype_bytes(DType d) {
  switch (d) {
    case DType::kFp32: return 4;
    case DType::kBf16: return 2;
    case DType::kFp16: return 2;
    case DType::kInt32: return 4;
    case DType::kUint8: return 1;
    case DType::kFp64: return 8;
    case DType::kFp8: return 1;
  }
  return 0;
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFp32: return "fp32";
    case DType::kBf16: return "bf16";
    case DType::kFp16: return "fp16";
    case DType::kInt32: return "int32";
    case DType::kUint8: return "uint8";
    case DType::kFp64: return "fp64";
    case DType::kFp8: return "fp8";
  }
  return "?";
}

const char* role_name(Role r) {
  switch (r) {
    case Role::kParam: return "param";
    case Role::kGrad: return "grad";
    case Role::kOptimizer: return "optimizer";
    case Role::kActivation: return "activation";
    case Role::kRecompute: return "recompute";
    case Role::kGatheredParams: return "gathered_params";
    case Role::kLogits: return "logits";
    case Role::kWorkspace: return "workspace";
    case Role::kComm: return "comm";
    case Role::kInput: return "input";
  }
  return "?";
}

const char* shard_name(Shard s) {
  switch (s) {
    case Shard::kReplicated: return "replicated";
    case Shard::kRows: return "rows";
    case Shard::kCols: return "cols";
    case Shard::kBlockRows: return "block_rows";
  }
  return "?";
}

const char* tensor_kind_name(TensorKind k) {
  switch (k) {
    case TensorKind::kNormWeight1: return "attn_norm.weight";
    case TensorKind::kNormBias1: return "attn_norm.bias";
    case TensorKind::kQkvWeight: return "attn.qkv.weight";
    case TensorKind::kQkvBias: return "attn.qkv.bias";
    case TensorKind::kAttnOutWeight: return "attn.out.weight";
    case TensorKind::kAttnOutBias: return "attn.out.bias";
    case TensorKind::kNormWeight2: return "mlp_norm.weight";
    case TensorKind::kNormBias2: return "mlp_norm.bias";
    case TensorKind::kFc1Weight: return "mlp.fc1.weight";
    case TensorKind::kFc1Bias: return "mlp.fc1.bias";
    case TensorKind::kFc2Weight: return "mlp.fc2.weight";
    case TensorKind::kFc2Bias: return "mlp.fc2.bias";
    case TensorKind::kWordEmbedding: return "embedding.word.weight";
    case TensorKind::kPositionEmbedding: return "embedding.position.weight";
    case TensorKind::kFinalNormWeight: return "final_norm.weight";
    case TensorKind::kFinalNormBias: return "final_norm.bias";
    case TensorKind::kLmHeadWeight: return "lm_head.weight";
    case TensorKind::kTokens: return "tokens";
    case TensorKind::kTargets: return "targets";
    case TensorKind::kEmbeddingPartial: return "embedding.partial";
    case TensorKind::kEmbeddingMask: return "embedding.dropout_mask";
    case TensorKind::kEmbeddingOut: return "embedding.out";
    case TensorKind::kLayerIn: return "in";
    case TensorKind::kNorm1Out: return "attn_norm.out";
    case TensorKind::kNorm1Mean: return "attn_norm.mean";
    case TensorKind::kNorm1Rstd: return "attn_norm.rstd";
    case TensorKind::kNorm1Full: return "attn_norm.out.gathered";
    case TensorKind::kQkv: return "attn.qkv.out";
    case TensorKind::kAttnProbs: return "attn.probs";
    case TensorKind::kAttnDropMask: return "attn.dropout_mask";
    case TensorKind::kAttnDropOut: return "attn.dropout_out";
    case TensorKind::kAttnCtx: return "attn.context";
    case TensorKind::kAttnLse: return "attn.lse";
    case TensorKind::kAttnKv: return "attn.kv";
    case TensorKind::kAttnKvBlock: return "attn.kv_block";
    case TensorKind::kAttnPartial: return "attn.out.partial";
    case TensorKind::kAttnMask: return "attn.out.dropout_mask";
    case TensorKind::kAttnOut: return "attn.out";
    case TensorKind::kNorm2Out: return "mlp_norm.out";
    case TensorKind::kNorm2Mean: return "mlp_norm.mean";
    case TensorKind::kNorm2Rstd: return "mlp_norm.rstd";
    case TensorKind::kNorm2Full: return "mlp_norm.out.gathered";
    case TensorKind::kFc1Out: return "mlp.fc1.out";
    case TensorKind::kMlpAct: return "mlp.act";
    case TensorKind::kFc2Partial: return "mlp.fc2.partial";
    case TensorKind::kMlpMask: return "mlp.fc2.dropout_mask";
    case TensorKind::kLayerOut: return "out";
    case TensorKind::kReceived: return "received";
    case TensorKind::kResharded: return "in.resharded";
    case TensorKind::kFinalNormOut: return "final_norm.out";
    case TensorKind::kFinalNormMean: return "final_norm.mean";
    case TensorKind::kFinalNormRstd: return "final_norm.rstd";
    case TensorKind::kFinalNormFull: return "final_norm.out.gathered";
    case TensorKind::kLogitsTensor: return "lm_head.logits";
    case TensorKind::kSoftmaxStats: return "lm_head.softmax_stats";
    case TensorKind::kLoss: return "loss";
    case TensorKind::kFp8Scaling: return "fp8_scaling";
    case TensorKind::kBucketParams: return "params";
    case TensorKind::kBucketGrads: return "grads";
    case TensorKind::kBucketParamShard: return "params.shard";
    case TensorKind::kBucketGradShard: return "grads.shard";
    case TensorKind::kBucketMaster: return "master";
    case TensorKind::kBucketAdamM: return "adam_m";
    case TensorKind::kBucketAdamV: return "adam_v";
    case TensorKind::kBucketGathered: return "params.gathered";
    case TensorKind::kRouterWeight: return "moe.router.weight";
    case TensorKind::kExpertFc1Weight: return "moe.experts.fc1.weight";
    case TensorKind::kExpertFc2Weight: return "moe.experts.fc2.weight";
    case TensorKind::kRouterLogits: return "moe.router.logits";
    case TensorKind::kRouterProbs: return "moe.router.probs";
    case TensorKind::kRouterIndices: return "moe.router.indices";
    case TensorKind::kRouterWeights: return "moe.router.weights";
    case TensorKind::kMoeRowOf: return "moe.row_of";
    case TensorKind::kMoeCounts: return "moe.counts";
    case TensorKind::kMoeRecvCounts: return "moe.received_counts";
    case TensorKind::kMoePermuted: return "moe.permuted";
    case TensorKind::kMoeReceived: return "moe.received";
    case TensorKind::kMoeExpertIn: return "moe.experts.in";
    case TensorKind::kMoeFc1Out: return "moe.experts.fc1.out";
    case TensorKind::kMoeAct: return "moe.experts.act";
    case TensorKind::kMoeExpertOut: return "moe.experts.out";
    case TensorKind::kMoeReturned: return "moe.returned";
    case TensorKind::kMoeCombined: return "moe.combined";
    case TensorKind::kMoeSharedOut: return "moe.shared.out";
  }
  return "?";
}

const char* op_kind_name(OpKind k) {
  switch (k) {
    case OpKind::kLoadBatch: return "load_batch";
    case OpKind::kEmbedding: return "embedding";
    case OpKind::kEmbeddingBwd: return "embedding_bwd";
    case OpKind::kLayerNorm: return "layer_norm";
    case OpKind::kLayerNormBwd: return "layer_norm_bwd";
    case OpKind::kRmsNorm: return "rms_norm";
    case OpKind::kRmsNormBwd: return "rms_norm_bwd";
    case OpKind::kLinear: return "linear";
    case OpKind::kLinearBwdData: return "linear_bwd_data";
    case OpKind::kLinearBwdWeight: return "linear_bwd_weight";
    case OpKind::kAttention: return "attention";
    case OpKind::kAttentionBwd: return "attention_bwd";
    case OpKind::kFlashAttention: return "flash_attention";
    case OpKind::kFlashAttentionBwd: return "flash_attention_bwd";
    case OpKind::kKvPack: return "kv_pack";
    case OpKind::kKvUnpack: return "kv_unpack";
    case OpKind::kCpAttention: return "cp_attention";
    case OpKind::kCpAttentionBwd: return "cp_attention_bwd";
    case OpKind::kGelu: return "gelu";
    case OpKind::kGeluBwd: return "gelu_bwd";
    case OpKind::kSwiglu: return "swiglu";
    case OpKind::kSwigluBwd: return "swiglu_bwd";
    case OpKind::kResidualAdd: return "residual_add";
    case OpKind::kResidualAddBwd: return "residual_add_bwd";
    case OpKind::kSoftmaxStats: return "softmax_stats";
    case OpKind::kCrossEntropyBwd: return "cross_entropy_bwd";
    case OpKind::kGradAccumulate: return "grad_accumulate";
    case OpKind::kAdamW: return "adamw";
    case OpKind::kFp8Cast: return "fp8_cast";
    case OpKind::kCopy: return "copy";
    case OpKind::kMoeRoute: return "moe_route";
    case OpKind::kMoeRouteBwd: return "moe_route_bwd";
    case OpKind::kMoePermute: return "moe_permute";
    case OpKind::kMoePermuteBwd: return "moe_permute_bwd";
    case OpKind::kMoeUnpermute: return "moe_unpermute";
    case OpKind::kMoeUnpermuteBwd: return "moe_unpermute_bwd";
    case OpKind::kGroupedLinear: return "grouped_linear";
    case OpKind::kGroupedLinearBwdData: return "grouped_linear_bwd_data";
    case OpKind::kGroupedLinearBwdWeight: return "grouped_linear_bwd_weight";
    case OpKind::kAllToAll: return "all_to_all";
    case OpKind::kAllReduce: return "all_reduce";
    case OpKind::kAllGather: return "all_gather";
    case OpKind::kReduceScatter: return "reduce_scatter";
    case OpKind::kSend: return "send";
    case OpKind::kRecv: return "recv";
    case OpKind::kRingShift: return "ring_shift";
  }
  return "?";
}

std::int64_t Buffer::elements() const {
  std::int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

OpCost op_cost(const Op& op) {
  const double e = dtype_bytes(op.dtype);
  const auto d = [&](int i) { return static_cast<double>(op.dims[i]); };
  const bool dropout = (op.flags & kDropout) != 0;
  OpCost c;
  switch (op.kind) {
    case OpKind::kLoadBatch:
      break;
    case OpKind::kEmbedding:
    case OpKind::kEmbeddingBwd:
      c.bytes = 2.0 * e * d(0) * d(1);  // read the rows (or the gradient), write the output
      break;
    case OpKind::kLayerNorm:
    case OpKind::kRmsNorm:
      if (d(2) > 0) {
        c.bytes = (e + d(2)) * d(0) * d(1);  // read x, write y quantized (strategy fp8)
      } else {
        c.bytes = 2.0 * e * d(0) * d(1);  // read x, write y
      }
      break;
    case OpKind::kLayerNormBwd:
    case OpKind::kRmsNormBwd:
      c.bytes = 3.0 * e * d(0) * d(1);  // read dy and x, write dx
      break;
    case OpKind::kLinear:
    case OpKind::kLinearBwdData:
    case OpKind::kLinearBwdWeight:
      // One GEMM of (M x K) by (K x N): 2 M K N FLOPs; its three matrices once each.
      c.flops = 2.0 * d(0) * d(1) * d(2);
      if (op.dtype == DType::kFp8) {
        // FP8 inputs (one byte), the output in dims[3]'s precision: y (M x N) forward, dx
        // (M x K) for the data gradient, dW (K x N) for the weight gradient.
        const double mk = d(0) * d(1), kn = d(1) * d(2), mn = d(0) * d(2);
        const double out = op.kind == OpKind::kLinear          ? mn
                           : op.kind == OpKind::kLinearBwdData ? mk
                                                               : kn;
        c.bytes = (mk + kn + mn - out) + d(3) * out;
      } else {
        c.bytes = e * (d(0) * d(1) + d(1) * d(2) + d(0) * d(2));
      }
      break;
    case OpKind::kAttention:
    case OpKind::kAttentionBwd: {
      // Scores QK^T and the weighted sum over values: 4 T s C FLOPs for T tokens of sequences
      // of s, C = the query width; read q, k and v, write the context, and write then read the
      // (heads x s x s) scores of each sequence. The backward does both twice.
      const double tokens = d(0) * d(1);
      const double twice = op.kind == OpKind::kAttentionBwd ? 2.0 : 1.0;
      c.flops = twice * 4.0 * tokens * d(1) * d(2);
      c.bytes = twice * (e * tokens * (2.0 * d(2) + 2.0 * d(4)) + e * 2.0 * d(3) * d(0) * d(1) * d(1));
      break;
    }
    case OpKind::kFlashAttention:
    case OpKind::kFlashAttentionBwd: {
      // The model's FLOPs as for the unfused op (the whole score square; backward 2x). The
      // kernel (FlashAttention, causal) computes the lower triangle: 2 T s C forward, and its
      // backward recomputes the scores, 2.5x the forward (Dao 2023, arXiv:2307.08691, and
      // flash-attention's benchmarks count it so). Memory: q, k, v and the context once, the
      // fp32 log-sum-exp per query row (heads x s per sequence) instead of the score matrix; the
      // backward reads q, k, v, the context, its gradient and the statistic and writes d(qkv).
      const double tokens = d(0) * d(1);
      const bool bwd = op.kind == OpKind::kFlashAttentionBwd;
      const double lse = 4.0 * d(0) * d(3) * d(1);
      c.flops = (bwd ? 2.0 : 1.0) * 4.0 * tokens * d(1) * d(2);
      c.kernel_flops = (bwd ? 2.5 : 1.0) * 2.0 * tokens * d(1) * d(2);
      c.bytes = e * tokens * (bwd ? 4.0 * d(2) + 4.0 * d(4) : 2.0 * d(2) + 2.0 * d(4)) + lse;
      break;
    }
    case OpKind::kGelu:
    case OpKind::kSwiglu: {
      const double up = (op.kind == OpKind::kSwiglu ? 2.0 : 1.0) * d(1);
      c.elementwise_bytes = e * d(0) * (up + d(1));  // read the up projection, write F
      break;
    }
    case OpKind::kGeluBwd:
    case OpKind::kSwigluBwd: {
      const double up = (op.kind == OpKind::kSwigluBwd ? 2.0 : 1.0) * d(1);
      c.elementwise_bytes = e * d(0) * (d(1) + 2.0 * up);  // read dy and x, write dx
      break;
    }
    case OpKind::kResidualAdd:
      // Bias-dropout-add: read the branch and the residual, write the sum (and the mask).
      c.elementwise_bytes = d(0) * d(1) * (3.0 * e + (dropout ? 1.0 : 0.0));
      break;
    case OpKind::kResidualAddBwd:
      c.elementwise_bytes = d(0) * d(1) * (2.0 * e + (dropout ? 1.0 : 0.0));
      break;
    case OpKind::kSoftmaxStats:
    case OpKind::kCrossEntropyBwd:
      c.bytes = 4.0 * d(0) * d(1);  // the fp32 logits of the shard
      break;
    case OpKind::kCopy:
      c.elementwise_bytes = 2.0 * e * d(0);  // read x, write y
      break;
    case OpKind::kFp8Cast:
      // Read x once (delayed scaling: the scale is from earlier steps, no amax pass first),
      // write the FP8 copies.
      c.elementwise_bytes = d(0) * (e + d(1));
      break;
    case OpKind::kGradAccumulate:
      // Read the new 16-bit gradient, read and write the accumulator (dims[1] bytes each).
      c.elementwise_bytes = d(0) * (e + 2.0 * d(1));
      break;
    case OpKind::kAdamW: {
      // Read and write the master weights and both moments, read the gradient, write the
      // (16-bit) weights, for the rank's share of the bucket's elements.
      const double elements = (op.flags & kPartitioned) != 0 ? d(0) / d(1) : d(0);
      c.bytes = elements * (2.0 * d(3) + d(2) + e);
      break;
    }
    case OpKind::kKvPack:
    case OpKind::kKvUnpack:
      // Copy k and v (N x 2 h_kv of the rank) out of qkv, or their gradient back into d(qkv).
      c.elementwise_bytes = 2.0 * e * d(0) * 2.0 * d(2);
      break;
    case OpKind::kCpAttention:
    case OpKind::kCpAttentionBwd: {
      // The rank's B x Tq queries against B x Tk keys (dims[5]): one ring step's block or all
      // ranks' gathered keys. Model FLOPs as the unfused core over that rectangle; the kernel
      // executes half of it either way (the load-balanced chunks see half of every block:
      // docs/accounting.md "Context parallelism"), the backward 2.5x its forward.
      const bool bwd = op.kind == OpKind::kCpAttentionBwd;
      const double q_tokens = d(0) * d(1), k_tokens = d(0) * d(5);
      const double square = 4.0 * q_tokens * d(5) * d(2);
      const double lse = 4.0 * d(0) * d(3) * d(1);
      const bool merge = (op.flags & kAccumulate) != 0;
      c.flops = (bwd ? 2.0 : 1.0) * square;
      c.kernel_flops = (bwd ? 2.5 : 1.0) * 0.5 * square;
      if (bwd) {  // read q, k, v, context, its gradient, lse; write dq (added to), dk, dv
        c.bytes = e * (q_tokens * 4.0 * d(2) + k_tokens * 4.0 * d(4)) + lse;
      } else {    // read q, k, v; write (or merge into) the context and lse
        c.bytes = e * (q_tokens * (merge ? 3.0 : 2.0) * d(2) + k_tokens * 2.0 * d(4)) +
                  (merge ? 2.0 : 1.0) * lse;
      }
      break;
    }
    case OpKind::kMoeRoute:
    case OpKind::kMoeRouteBwd:
      // Read the logits (or the weights' gradient and the probabilities), write the
      // probabilities (or the logits' gradient) in fp32; the k indices and weights.
      c.elementwise_bytes = d(0) * (d(1) * (e + 4.0) + 8.0 * d(2));
      break;
    case OpKind::kMoePermute:
    case OpKind::kMoePermuteBwd:
    case OpKind::kMoeUnpermute:
    case OpKind::kMoeUnpermuteBwd: {
      // A gather or scatter of rows: read and write the dispatched rows once (the unpermute
      // reads the token rows it adds into; its backward also reads the rows for d(weights)).
      const bool un = op.kind == OpKind::kMoeUnpermute || op.kind == OpKind::kMoeUnpermuteBwd;
      const double rows = un ? d(3) : d(4), tokens = d(0) * d(1);
      const double extra = op.kind == OpKind::kMoeUnpermute      ? 2.0 * tokens
                           : op.kind == OpKind::kMoeUnpermuteBwd ? tokens + rows * d(1)
                                                                 : tokens;
      c.elementwise_bytes = e * (rows * d(1) + extra);
      break;
    }
    case OpKind::kGroupedLinear:
    case OpKind::kGroupedLinearBwdData:
    case OpKind::kGroupedLinearBwdWeight:
      // The rank's experts' GEMMs over their rows: 2 M K N FLOPs in all; the rows' matrices
      // once and every expert's weight once.
      c.flops = 2.0 * d(0) * d(1) * d(2);
      c.bytes = e * (d(0) * d(1) + d(4) * d(1) * d(2) + d(0) * d(2));
      break;
    case OpKind::kAllReduce:
    case OpKind::kAllGather:
    case OpKind::kReduceScatter:
    case OpKind::kSend:
    case OpKind::kRecv:
    case OpKind::kRingShift:
    case OpKind::kAllToAll:
      c.bytes = e * d(0);  // nccl-tests' "size" (see the task contract in program.hpp)
      break;
  }
  return c;
}

std::string ParamInfo::init_name() const {
  // The names the executor has always initialised with (tests/reference/ mirrors them).
  const std::string l = "layers." + std::to_string(layer) + ".";
  if (shared_expert) {  // an MoE layer's shared experts: one MLP of their summed width
    switch (kind) {
      case TensorKind::kFc1Weight: return l + "shared_experts.fc1.w";
      case TensorKind::kFc1Bias: return l + "shared_experts.fc1.b";
      case TensorKind::kFc2Weight: return l + "shared_experts.fc2.w";
      case TensorKind::kFc2Bias: return l + "shared_experts.fc2.b";
      default: break;
    }
  }
  switch (kind) {
    case TensorKind::kNormWeight1: return l + "ln1.w";
    case TensorKind::kNormBias1: return l + "ln1.b";
    case TensorKind::kQkvWeight: return l + "qkv.w";
    case TensorKind::kQkvBias: return l + "qkv.b";
    case TensorKind::kAttnOutWeight: return l + "proj.w";
    case TensorKind::kAttnOutBias: return l + "proj.b";
    case TensorKind::kNormWeight2: return l + "ln2.w";
    case TensorKind::kNormBias2: return l + "ln2.b";
    case TensorKind::kFc1Weight: return l + "fc1.w";
    case TensorKind::kFc1Bias: return l + "fc1.b";
    case TensorKind::kFc2Weight: return l + "fc2.w";
    case TensorKind::kFc2Bias: return l + "fc2.b";
    case TensorKind::kWordEmbedding: return "wte";
    case TensorKind::kPositionEmbedding: return "wpe";
    case TensorKind::kFinalNormWeight: return "lnf.w";
    case TensorKind::kFinalNormBias: return "lnf.b";
    case TensorKind::kLmHeadWeight: return tied_copy ? "wte" : "lm_head.w";
    // Mixture of experts: the router; the rank's experts as a whole (the executor initialises
    // each expert by its own name, layers.L.experts.e.fc1.w: executor/params.hpp).
    case TensorKind::kRouterWeight: return l + "router.w";
    case TensorKind::kExpertFc1Weight: return l + "experts.fc1.w";
    case TensorKind::kExpertFc2Weight: return l + "experts.fc2.w";
    default: break;
  }
  return tensor_kind_name(kind);
}

void mark_shared_experts(std::vector<ParamInfo>& params) {
  std::set<int> moe_layers;
  for (const ParamInfo& p : params) {
    if (p.kind == TensorKind::kRouterWeight) moe_layers.insert(p.layer);
  }
  for (ParamInfo& p : params) {
    p.shared_expert = p.kind >= TensorKind::kFc1Weight && p.kind <= TensorKind::kFc2Bias &&
                      moe_layers.count(p.layer) > 0;
  }
}

std::string Program::buffer_name(std::int32_t id) const {
  STRATA_CHECK(id >= 0 && static_cast<std::size_t>(id) < buffers.size(), "no such buffer");
  const Buffer& b = buffers[id];
  // The rank's part of a pipeline tensor that crosses the stages in parts (scatter/gather).
  if (b.is_view() && b.view_group.kind == GroupKind::kTp) {
    // tp_comm_overlap's ring chunks: another member's part.
    const std::string rotate = b.view_rotate != 0 ? "+" + std::to_string(b.view_rotate) : "";
    return buffer_name(b.view_of) + ".part" + rotate;
  }
  std::string name;
  if (b.bucket >= 0 && (b.kind >= TensorKind::kBucketParams && b.kind <= TensorKind::kBucketGathered)) {
    name = "bucket" + std::to_string(b.bucket) + ".";
  } else if (b.layer >= 0) {
    name = "L" + std::to_string(b.layer) + ".";
  }
  name += tensor_kind_name(b.kind);
  if (b.grad) name += ".grad";
  if (b.dtype == DType::kFp8) name += ".fp8";  // an FP8 copy (strategy fp8)
  if (b.micro_batch >= 0) name += "[mb" + std::to_string(b.micro_batch) + "]";
  if (b.instance == 1) {
    name += "@recompute";
  } else if (b.instance > 1) {
    name += "@" + std::to_string(b.instance);
  }
  return name;
}

std::vector<int> Topology::group_ranks(int rank, const GroupRef& g) const {
  STRATA_CHECK(rank >= 0 && rank < world_size, "rank out of range");
  switch (g.kind) {
    case GroupKind::kNone:
      return {rank};
    case GroupKind::kTp:
      return layouts.at(g.layout).group(rank, Dim::kTp);
    case GroupKind::kDp:
      return layouts.at(g.layout).group(rank, Dim::kDp);
    case GroupKind::kCp:
      return layouts.at(g.layout).group(rank, Dim::kCp);
    case GroupKind::kDpCp:
      return layouts.at(g.layout).group(rank, {Dim::kDp, Dim::kCp});
    case GroupKind::kEp:
      return layouts.at(g.layout).group(rank, Dim::kEp);
    case GroupKind::kExpertDp: {  // the data-parallel ranks with the rank's expert index
      const RankGrid& grid = layouts.at(g.layout);
      const int ep = grid.coord(rank, Dim::kEp);
      std::vector<int> out;
      // With context parallelism the cp ranks hold the same experts for other tokens too.
      const std::vector<int> ranks = experts_across_tp
                                         ? grid.group(rank, {Dim::kDp, Dim::kCp, Dim::kTp})
                                         : grid.group(rank, {Dim::kDp, Dim::kCp});
      for (int q : ranks) {
        if (grid.coord(q, Dim::kEp) == ep) out.push_back(q);
      }
      return out;
    }
    case GroupKind::kEmbedding: {
      Coords c = grid().coords(rank);
      const int pp_index = static_cast<int>(Dim::kPp);
      c[pp_index] = 0;
      const int first = grid().rank_of(c);
      c[pp_index] = pp - 1;
      const int last = grid().rank_of(c);
      if (first == last) return {first};
      return {std::min(first, last), std::max(first, last)};
    }
    case GroupKind::kReshard: {
      const RankGrid& big = layouts.at(g.layout);
      const RankGrid& small = layouts.at(g.layout_from);
      const int shard = small.coord(rank, Dim::kTp);
      std::vector<int> out;
      for (int q : big.group(rank, Dim::kTp)) {
        if (small.coord(q, Dim::kTp) == shard) out.push_back(q);
      }
      STRATA_CHECK(static_cast<int>(out.size()) == big.size(Dim::kTp) / small.size(Dim::kTp),
                   "reshard group size does not match the tp ratio");
      return out;
    }
    case GroupKind::kShard:
    case GroupKind::kReplica: {
      // The data-parallel group in data-parallel index order (ranks grow with it), cut into
      // shard groups of consecutive indices; a replica group takes one index of each.
      const std::vector<int> dp = layouts.at(g.layout).group(rank, Dim::kDp);
      const int n = static_cast<int>(dp.size());
      const int size = zero_shard_group > 0 ? zero_shard_group : n;
      STRATA_CHECK(g.layout == 0 && n % size == 0,
                   "shard groups exist in layout 0 only, and divide its data-parallel group");
      const int i = static_cast<int>(std::find(dp.begin(), dp.end(), rank) - dp.begin());
      std::vector<int> out;
      for (int k = 0; k < n; ++k) {
        const bool member =
            g.kind == GroupKind::kShard ? k / size == i / size : k % size == i % size;
        if (member) out.push_back(dp[k]);
      }
      return out;
    }
  }
  return {rank};
}

int Topology::group_index(int rank, const GroupRef& g) const {
  if (g.kind == GroupKind::kNone) return 0;
  const std::vector<int> ranks = group_ranks(rank, g);
  const auto it = std::find(ranks.begin(), ranks.end(), rank);
  STRATA_CHECK(it != ranks.end(), "a rank outside its own group");
  return static_cast<int>(it - ranks.begin());
}

int Topology::peer_rank(int rank, const Task& t) const {
  STRATA_CHECK(t.kind == TaskKind::kSend || t.kind == TaskKind::kRecv, "not a p2p task");
  Coords c = grid().coords(rank);
  c[static_cast<int>(Dim::kPp)] = t.peer_stage;
  return grid().rank_of(c);
}

Part partition(std::int64_t elements, int parts, int index) {
  STRATA_CHECK(parts >= 1 && index >= 0 && index < parts, "bad partition index");
  const std::int64_t base = elements / parts, extra = elements % parts;
  Part p;
  p.count = base + (index < extra ? 1 : 0);
  p.offset = index * base + std::min<std::int64_t>(index, extra);
  return p;
}

std::string ProgramSet::task_name(const Task& t) const {
  std::string name;
  switch (t.kind) {
    case TaskKind::kCompute:
      name = std::string(t.phase == Phase::kForward     ? "fwd"
                         : t.phase == Phase::kBackward  ? "bwd"
                         : t.phase == Phase::kRecompute ? "recompute"
                                                        : "step");
      break;
    case TaskKind::kCollective:
      name = std::string(purpose_name(t.purpose)) + "." + collective_name(t.collective);
      break;
    case TaskKind::kSend:
    case TaskKind::kRecv:
      name = std::string("pp.") + task_kind_name(t.kind) + "." +
             (t.phase == Phase::kForward ? "act" : "grad") + ".stage" +
             std::to_string(t.peer_stage);
      break;
  }
  if (t.layer >= 0) name += ".L" + std::to_string(t.layer);
  if (t.micro_batch >= 0) name += ".mb" + std::to_string(t.micro_batch);
  if (virtual_stages > 1 && t.micro_batch >= 0) name += ".c" + std::to_string(t.chunk);
  if (t.kind == TaskKind::kCompute) name += std::string(".") + block_name(t.block);
  return name;
}

}  // namespace strata::strategies
