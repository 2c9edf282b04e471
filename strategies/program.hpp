// The executable part of a Plan: per-rank programs of ops over named tensors, and the rank
// topology that resolves their groups and peers. This is what the executor interprets, the
// profiler times and the simulator prices; it carries no spec (DESIGN.md "The Plan"), so no
// consumer can re-derive the strategy from it.
//
// defines: DType, Role, TensorKind, Buffer, OpKind, Op, OpCost / op_cost(), Task, Shard,
//          ParamInfo, BucketInfo, Program, Topology, partition(), ProgramSet, the name functions
//
// Ranks that run the same program share it: every rank of pipeline stage s runs programs[s],
// with its groups and peers resolved from its own coordinates (Topology::group_ranks,
// Topology::peer_rank). A 1024-GPU GPT-3 plan is therefore pp programs, not 1024 task lists.
//
// Buffers (a program's buffer table), which every consumer must honour:
//  - A buffer is one tensor of the rank: a name, a shape (up to 4 dims, row-major), a dtype and
//    a role. Its bytes are elements x dtype size.
//  - Persistent buffers (parameters, their gradient accumulators and optimizer states, the
//    step's loss) live across steps: they are the rank's static memory. Every other buffer is
//    allocated when its first task starts and freed when its last task ends (first_task and
//    last_task, indices into the program). Memory is the sum of the live buffers; the peak is
//    found by walking the tasks in program order (Program::memory).
//  - A view (view_of >= 0) is a window of `elements()` elements at `view_offset` into another
//    buffer (a parameter inside its bucket's flat buffer, ...): it costs no memory and lives as
//    long as its parent. When view_group is set, the offset is view_offset x (the rank's index
//    in that group): the rank's own part (pipeline scatter, resharding), named "<parent>.part"
//    for the pipeline's; with view_rotate, view_offset x ((index + view_rotate) mod the group's
//    size): another member's part (the ring steps of tp_comm_overlap).
//  - Gradient buffers (role kGrad) start every step, or their allocation, at zero.
//
// Ops (a compute task's ops run in order; a collective or transfer is one op):
//  - An op names its kind, dtype, input buffers and output buffers (Program::operands from
//    `operands`: n_in inputs, then n_out outputs) and its sizes (`dims`, documented per kind
//    below). FLOPs and bytes follow from kind and sizes alone, in op_cost(); a task's flops,
//    bytes and elementwise_bytes are the sums over its ops.
//  - Ops that split a tensor over a group (a vocabulary shard, a row block under sequence
//    parallelism) name that group in `group`; the rank's index in it selects the part.
//
// Tasks, which every consumer must honour:
//  - A task starts when all its deps (indices into the same program) have finished. Deps hold
//    both data edges and stream-order edges: consecutive tasks of the compute, tp, cp, ep and dp
//    streams are chained. Pipeline transfers (stream pp) are not chained with each other: each is
//    an independent, non-blocking send or receive (like NCCL's grouped isend/irecv).
//  - A collective is matched across its group by (group kind, layout, occurrence): the n-th
//    collective a rank issues on a given group is the n-th of every other member. All members of
//    a group run the same program except for the embedding group (first and last stage), which
//    has exactly one collective per step.
//  - Sends and receives are matched by (sender, receiver, tag).
//  - Collective `bytes` follow nccl-tests' "size": the buffer for all-reduce and broadcast, the
//    gathered output for all-gather, the input for reduce-scatter and all-to-all.
//  - Task ids are stable: a task's id is its index in its program; the pair (rank, id) names one
//    task of one rank in traces, and the id does not change between identical lowerings.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "strategies/rank_grid.hpp"
#include "strategies/task_span.hpp"

namespace strata::strategies {

// ---------------------------------------------------------------------------------------------
// Task vocabulary

enum class TaskKind : std::uint8_t { kCompute, kCollective, kSend, kRecv };
enum class Stream : std::uint8_t { kCompute, kTp, kCp, kEp, kDp, kPp };
enum class Phase : std::uint8_t { kForward, kBackward, kRecompute, kStep, kNone };
enum class Block : std::uint8_t {
  kNone,
  kEmbedding,
  kAttnNorm,
  kAttnQkv,
  kAttnCore,
  kAttnOut,
  kMlpNorm,
  kMlpFc1,   // includes the activation (GELU or SwiGLU)
  kMlpFc2,
  kFinalNorm,
  kLmHead,   // logits and cross-entropy loss
  kOptimizer,
  // later additions: a mixture-of-experts feed-forward block (expert_parallel.cpp)
  kMoeRouter,   // router GEMM, top-k and the tokens' permutation by expert
  kMoeExperts,  // the rank's experts: grouped fc1, the activation, grouped fc2
  kMoeCombine,  // the weighted sum of each token's expert outputs, plus the residual
};
enum class CollectiveKind : std::uint8_t {
  kNone,
  kAllReduce,
  kAllGather,
  kReduceScatter,
  kAllToAll,
  kBroadcast,
  kRingShift,  // every member sends its buffer to the next in group order (context parallelism)
};
// Why a communication happens (traces and reports group bytes by it).
enum class Purpose : std::uint8_t { kNone, kTp, kDp, kZero, kCp, kEp, kPp, kEmbedding, kReshard };
// Which group a collective (or an op's shard index) runs over; resolved per rank by
// Topology::group_ranks.
enum class GroupKind : std::uint8_t {
  kNone,
  kTp,         // tensor-parallel group of the layout
  kDp,         // data-parallel group of the layout (gradients, ZeRO, the data a replica reads)
  kEmbedding,  // first and last pipeline stage, same other coordinates (tied embeddings)
  kReshard,    // ranks of the new tp group holding the same old-tp shard (layer tp change)
  kShard,      // hybrid sharding: the ZeRO shard group, Topology::zero_shard_group consecutive
               // ranks of the data-parallel group of the layout
  kReplica,    // hybrid sharding: the ranks of the data-parallel group holding the same shard
               // (the same index in their shard groups)
  kCp,         // context-parallel group: the ranks holding the other parts of the sequences
  kDpCp,       // dp x cp: the gradient-reduction group with context parallelism (Megatron's)
  kEp,         // expert-parallel group: the ranks holding the other experts (inside dp x cp)
  kExpertDp,   // expert-data-parallel group: the ranks holding the same experts (dp cp / ep
               // of them, times tp when Topology::experts_across_tp)
};

const char* task_kind_name(TaskKind k);
const char* stream_name(Stream s);
const char* phase_name(Phase p);
const char* block_name(Block b);
const char* collective_name(CollectiveKind c);
const char* purpose_name(Purpose p);
const char* group_kind_name(GroupKind g);

struct GroupRef {
  GroupKind kind = GroupKind::kNone;
  std::uint8_t layout = 0;       // index into Topology::layouts
  std::uint8_t layout_from = 0;  // kReshard: the layout of the previous layer
  bool operator==(const GroupRef&) const = default;
};

// ---------------------------------------------------------------------------------------------
// Buffers

// kFp8: one byte per element, E4M3 or E5M2 (which one is the recipe's, not the buffer's): FP8
// copies of GEMM inputs and weights (strategy fp8).
enum class DType : std::uint8_t { kFp32, kBf16, kFp16, kInt32, kUint8, kFp64, kFp8 };
int dtype_bytes(DType d);
const char* dtype_name(DType d);

// What a buffer holds; memory reports group bytes by it.
enum class Role : std::uint8_t {
  kParam,           // parameters (16-bit or fp32 weights; ZeRO-3: the rank's shard)
  kGrad,            // gradients: accumulators, bucket buffers, gradients in flight
  kOptimizer,       // fp32 master weights and Adam moments (ZeRO: the rank's part)
  kActivation,      // kept from a forward to its backward
  kRecompute,       // re-materialised during the backward
  kGatheredParams,  // ZeRO-3: a layer's parameters gathered for one use
  kLogits,          // the last stage's head tensors (final-norm output, logits, statistics)
  kWorkspace,       // produced and consumed within a block: partial sums, gathered inputs,
                    // activation gradients
  kComm,            // communication buffers: received slices, resharded inputs
  kInput,           // token ids and targets
};
inline constexpr int kNumRoles = 10;
const char* role_name(Role r);

// The tensor a buffer holds, without its layer, micro-batch and instance (the name vocabulary of
// docs/plan.md). Parameters first; kGradient marks the gradient of a tensor (Buffer::grad).
enum class TensorKind : std::uint8_t {
  // parameters (per layer unless noted)
  kNormWeight1, kNormBias1, kQkvWeight, kQkvBias, kAttnOutWeight, kAttnOutBias,
  kNormWeight2, kNormBias2, kFc1Weight, kFc1Bias, kFc2Weight, kFc2Bias,
  kWordEmbedding, kPositionEmbedding, kFinalNormWeight, kFinalNormBias, kLmHeadWeight,
  // data
  kTokens, kTargets,
  // the residual stream and a layer's tensors
  kEmbeddingPartial, kEmbeddingMask, kEmbeddingOut,
  kLayerIn,        // a stage's received layer input
  kNorm1Out, kNorm1Mean, kNorm1Rstd, kNorm1Full,
  kQkv, kAttnProbs, kAttnDropMask, kAttnDropOut, kAttnCtx,
  kAttnLse,        // fused attention: log-sum-exp of each query row's scores (fp32)
  kAttnKv,         // context parallelism: the rank's keys and values packed (N, 2 h_kv)
  kAttnKvBlock,    // another rank's keys and values (ring step) or all ranks' (gathered)
  kAttnPartial, kAttnMask, kAttnOut,
  kNorm2Out, kNorm2Mean, kNorm2Rstd, kNorm2Full,
  kFc1Out, kMlpAct,
  kFc2Partial, kMlpMask, kLayerOut,
  kReceived,       // the received part of a boundary tensor (pipeline scatter/gather)
  kResharded,      // a layer input gathered or sliced for another tp layout
  // the head
  kFinalNormOut, kFinalNormMean, kFinalNormRstd, kFinalNormFull,
  kLogitsTensor, kSoftmaxStats, kLoss,
  // data parallelism: one bucket of parameters and their gradients
  kBucketParams, kBucketGrads, kBucketParamShard, kBucketGradShard,
  kBucketMaster, kBucketAdamM, kBucketAdamV, kBucketGathered,
  // later additions, appended so that earlier values keep their numbers
  kFp8Scaling,  // strategy fp8: a layer's delayed-scaling state (amax histories, scales)
  // mixture of experts (per MoE layer): parameters, then tensors
  kRouterWeight,     // (E, C), replicated
  kExpertFc1Weight,  // (E_local, up / expert_tp, C): the rank's experts' fc1 (gate and up)
  kExpertFc2Weight,  // (E_local, C, F / expert_tp)
  kRouterLogits,     // (R, E)
  kRouterProbs,      // (R, E) fp32 softmax over the experts
  kRouterIndices,    // (R, k) int32: each row's experts, highest probability first
  kRouterWeights,    // (R, k) fp32: their combine weights
  kMoeRowOf,         // (R, k) int32: the dispatched row of each choice, -1 when dropped
  kMoeCounts,        // (E) int32: rows sent to each expert
  kMoeRecvCounts,    // (ep, E_local) int32: rows received from each source for each expert
  kMoePermuted,      // (S, C): the rank's rows grouped by expert (the dispatch's input)
  kMoeReceived,      // (S_recv, C): rows received for the rank's experts
  kMoeExpertIn,      // (expert_tp S_recv, C): received rows gathered over expert_tp
  kMoeFc1Out, kMoeAct,
  kMoeExpertOut,     // (expert_tp S_recv, C): the experts' output (partial sums over expert_tp)
  kMoeReturned,      // (S_recv, C): reduce-scattered over expert_tp (the combine's input)
  kMoeCombined,      // (S, C): the rank's rows back from the experts, in dispatch order
  kMoeSharedOut,     // (R, C): the shared experts' output on the rank's rows
};
const char* tensor_kind_name(TensorKind k);

// A buffer of the program's table (see the header comment for lifetimes and views).
struct Buffer {
  TensorKind kind = TensorKind::kLayerIn;
  bool grad = false;               // the gradient of `kind`
  bool persistent = false;         // lives across steps (static memory)
  Role role = Role::kWorkspace;
  DType dtype = DType::kFp32;
  std::uint8_t ndim = 1;
  std::uint8_t instance = 0;       // 0 forward; 1 recompute; 2+ further uses (ZeRO-3 gathers)
  std::int16_t layer = -1;         // transformer layer, -1 when none
  std::int32_t micro_batch = -1;   // -1 when none
  std::int32_t bucket = -1;        // data-parallel bucket of a parameter, gradient or state
  std::array<std::int64_t, 4> shape{};
  std::int32_t view_of = -1;       // parent buffer of a view
  std::int64_t view_offset = 0;    // elements (times the rank's index in view_group when set)
  GroupRef view_group;
  // With view_group: the part taken is (the rank's index + view_rotate) mod the group's size,
  // not the index itself (tp_comm_overlap's ring steps: slot r - k of a gathered tensor).
  std::uint8_t view_rotate = 0;
  std::uint32_t first_task = 0;    // transient buffers: allocated when this task starts
  std::uint32_t last_task = 0;     //   and freed when this one ends

  std::int64_t elements() const;
  double bytes() const { return static_cast<double>(elements()) * dtype_bytes(dtype); }
  bool is_view() const { return view_of >= 0; }
};

// ---------------------------------------------------------------------------------------------
// Ops
//
// dims per kind (N tokens, R rows held of the residual stream, C channels; "shard" = this
// rank's part; "(acc)" = added into; operands in brackets are optional):
//   kLoadBatch         dims {B samples, T, first-sample offset of the micro-batch, samples per
//                      replica}; out {tokens (B,T) int32, targets (B,T) int32} (either may be
//                      absent; the buffers' kinds say which); group = the data-parallel group
//                      whose index picks the replica's samples
//   kEmbedding         dims {N, C, V shard rows, T}; in {tokens, word shard, [positions]};
//                      out {partial (N,C), [dropout mask]}. Rows whose token lies in the rank's
//                      vocabulary shard (group index x V shard) get its row, the others 0.
//                      Positions are added where the reduction that follows counts them once
//                      (flag kOwnRows: the rank's row block of the group; else group index 0).
//   kEmbeddingBwd      dims as kEmbedding; in {gradient (N,C), tokens, gradient of the rank's
//                      rows (R,C), [mask]}; out {word grad shard (acc), [position grad (acc)]}
//   kLayerNorm         dims {R, C, y bytes}; in {x, weight, bias}; out {y, mean (R), rstd (R)};
//                      param eps; dims[2] = bytes per element of y when it is not op.dtype's
//                      (1: y quantized to FP8 in the same kernel, Transformer Engine's
//                      LayerNormLinear), else 0
//   kLayerNormBwd      dims {R, C}; in {dy, x, weight, mean, rstd, [residual grad]};
//                      out {dx, weight grad (acc), bias grad (acc)}; with flag kResidualGrad
//                      dx = the norm's input gradient plus the residual gradient
//   kRmsNorm(Bwd)      as the LayerNorm ops, without bias and mean
//   kLinear            dims {M, K, N}; in {x (M,K), weight (N,K), [bias (N)]}; out {y (M,N)}
//   kLinearBwdData     dims {M, K, N}; in {dy (M,N), weight}; out {dx (M,K)}
//   kLinearBwdWeight   dims {M, K, N}; in {dy, x}; out {weight grad (acc), [bias grad (acc)]}
//                      With op.dtype kFp8 (strategy fp8) the three are FP8 GEMMs: their matrix
//                      inputs are FP8 copies (x, its transpose, the weight's, dy's; kFp8Cast) and
//                      dims[3] = bytes per element of the output (the 16-bit y, dx or dW)
//   kAttention         dims {B, T, C shard (queries), heads shard, C shard (keys, values)};
//                      in {qkv (N, C + 2 Ckv shard)}; out {ctx (N, C shard), probs
//                      (B, heads, T, T), [dropout mask, dropout output]}; flag kRotary: rotary
//                      position embeddings on q and k
//   kAttentionBwd      dims as kAttention; in {dctx, qkv, probs, [mask, dropout output]};
//                      out {dqkv}
//   kKvPack            dims {N, C shard, kv channels shard}; in {qkv}; out {kv (N, 2 kv)}: the
//                      rank's k and v copied out (context parallelism's message)
//   kKvUnpack          dims as kKvPack; in {d(kv)}; out {dqkv}: written into its k, v columns
//   kCpAttention       dims {B, Tq, C shard, heads shard, kv channels shard, Tk}; in {qkv,
//                      kv block (B Tk, 2 kv)}; out {ctx, lse}; group cp; param = ring step i
//                      (the block of group rank r - i) or -1 (all ranks' blocks, rank-major);
//                      flag kAccumulate: merged into ctx and lse by their log-sum-exp
//   kCpAttentionBwd    dims as kCpAttention; in {dctx, qkv, kv block, ctx, lse}; out {dqkv
//                      (its q columns), d(kv block)}; flag kAccumulate: both added to
//   kGelu/kSwiglu      dims {N, F shard}; in {x (N, F or 2F)}; out {y (N, F)}
//                      (+Bwd: in {dy, x}; out {dx})
//   kResidualAdd       dims {R, C}; in {residual (R,C), [bias (C)]}; out {y (N,C) (acc),
//                      [dropout mask]}: y's rows are the partial sum of a tensor-parallel
//                      reduction, and the residual and bias are added where that reduction counts
//                      them once (flag kOwnRows: into the rank's row block; else group index 0)
//   kResidualAddBwd    dims {R, C}; in {dy (R,C), [mask]}; out {[bias grad (acc)]}
//   kSoftmaxStats      dims {N, V shard}; in {logits, targets}; out {stats (N,3)}: per row
//                      max, sum of exponentials and the target's logit where it lies in the
//                      rank's vocabulary shard (group index x V shard)
//   kCrossEntropyBwd   dims {N, V shard}; in {logits, stats, targets}; out {dlogits, loss
//                      (acc, fp64; on group index 0)}; param = d(step loss)/d(logit)'s scale
//   kFp8Cast           dims {n elements, copies c}; in {x}; out {x8 (fp8), the layer's
//                      scaling state}: x quantized to FP8 with its tensor's delayed scale, its amax
//                      recorded in the scaling state; written c times: 1 a plain cast, 2 the row-
//                      and column-wise (transposed) copies of Transformer Engine's fused
//                      cast-transpose (Hopper's FP8 GEMMs need both). An FP8 x is transposed.
//                      Element-wise: reads n e (e: op.dtype, x's), writes n c bytes
//   kCopy              dims {n elements}; in {x}; out {y}: y = x (element-wise, op.dtype)
//   kGradAccumulate    dims {n, accumulator dtype bytes}; in {new gradients}; out {their
//                      accumulators}, pairwise: accumulator += new
//   kAdamW             dims {elements of the bucket, dp group size, gradient dtype bytes,
//                      optimizer bytes per element (8, or 12 with fp32 master weights)};
//                      in {grads}; out {params, adam m, adam v, [master]}; with flag
//                      kPartitioned the rank updates its part of the bucket (partition()): an
//                      operand holding the whole bucket is read at the part's offset, one
//                      holding a part (rounded up) from 0
//   kMoeRoute          dims {R, E, k, normalize}; in {logits (R,E)}; out {probs (R,E) fp32,
//                      indices (R,k) int32, weights (R,k) fp32}: softmax over the experts, the
//                      k most probable (ties: the lower index), their probabilities as weights
//                      (normalize 1: divided by their sum); param = the auxiliary loss's
//                      coefficient (Switch's load-balancing loss on the rank's rows)
//   kMoeRouteBwd       dims as kMoeRoute; in {d(weights), probs, indices}; out {d(logits)}
//   kMoePermute        dims {R, C, E, k, S rows out, capacity per expert (0: dropless)};
//                      in {x (R,C), indices, weights}; out {rows (S,C), row of each choice
//                      (R,k) int32, -1 when dropped, counts (E) int32}: rows grouped by expert
//                      (expert order, then token order); a full expert keeps its highest-weight
//                      tokens
//   kMoePermuteBwd     dims as kMoePermute; in {d(rows), row of}; out {dx (R,C)}; flag
//                      kAccumulate: added into dx
//   kMoeUnpermute      dims {R, C, k, S}; in {rows (S,C), row of, weights}; out {y (R,C)}:
//                      y = the weighted sum of each token's expert outputs (written: the
//                      layer's output, to which a residual add then adds the residual)
//   kMoeUnpermuteBwd   dims as kMoeUnpermute; in {dy (R,C), rows, row of, weights};
//                      out {d(rows) (S,C), d(weights) (R,k)}
//   kGroupedLinear     dims {M rows, K, N, segments, G experts}; in {x (M,K), weights
//                      (G,N,K), counts (segments) int32}; out {y (M,N)}: consecutive row
//                      segments, segment s through expert s mod G (rows after the last: 0)
//   kGroupedLinearBwdData / BwdWeight   dims as kGroupedLinear; in {dy, weights, counts} /
//                      {dy, x, counts}; out {dx} / {weight grads (G,N,K) (acc)}
//   kAllToAll          dims {message elements (the input: nccl-tests' "size")}; in {rows,
//                      [counts]}; out {rows, [counts]}: group ep; task tag 1 = the dispatch
//                      direction (each member sends its rows grouped by destination), 2 = the
//                      combine's (the rows go back); ProgramSet::expert_shares gives the byte
//                      matrix (routing imbalance)
//   Parameter-gradient outputs are accumulated into unless flag kOverwrite says they are
//   written (fresh gradients of a separate accumulation kernel).
//   kAllReduce, kAllGather, kReduceScatter, kSend, kRecv, kRingShift (every member sends its
//                      buffer to the next in group order, receives the previous one's)
//                      dims {message elements (nccl-tests' "size")}; in {buffers read}, out
//                      {buffers written} (an all-reduce in place: the same); flags kPartitioned
//                      (ZeRO's uneven parts of a bucket), kAccumulate (a reduce-scatter adds
//                      into its output), kSoftmaxReduce (combines softmax statistics)
enum class OpKind : std::uint8_t {
  kLoadBatch,
  kEmbedding, kEmbeddingBwd,
  kLayerNorm, kLayerNormBwd, kRmsNorm, kRmsNormBwd,
  kLinear, kLinearBwdData, kLinearBwdWeight,
  kAttention, kAttentionBwd,
  kFlashAttention, kFlashAttentionBwd,  // fused (strategy attention "fused")
  // Context parallelism: k and v packed out of qkv (and the gradient back), the fused attention
  // of the rank's queries against one key block (a ring step) or all ranks' keys (gathered).
  kKvPack, kKvUnpack, kCpAttention, kCpAttentionBwd,
  kGelu, kGeluBwd, kSwiglu, kSwigluBwd,
  kResidualAdd, kResidualAddBwd,
  kSoftmaxStats, kCrossEntropyBwd,
  kGradAccumulate,
  kAdamW,
  // communication (one per collective, send or receive task)
  kAllReduce, kAllGather, kReduceScatter, kSend, kRecv, kRingShift,
  // later additions, appended so that earlier values keep their numbers
  kFp8Cast,  // strategy fp8: quantize (and transpose) a GEMM input (element-wise)
  kCopy,     // an element-wise copy (tp_comm_overlap: the rank's rows into a gathered buffer)
  // mixture of experts (expert_parallel.cpp)
  kMoeRoute, kMoeRouteBwd, kMoePermute, kMoePermuteBwd, kMoeUnpermute, kMoeUnpermuteBwd,
  kGroupedLinear, kGroupedLinearBwdData, kGroupedLinearBwdWeight,
  kAllToAll,
};
const char* op_kind_name(OpKind k);

// Op flags.
inline constexpr std::uint8_t kOwnRows = 1;       // row block of the group index
inline constexpr std::uint8_t kOverwrite = 2;     // parameter gradients written, not added
inline constexpr std::uint8_t kPartitioned = 4;   // the rank's part of a bucket (ZeRO)
inline constexpr std::uint8_t kSoftmaxReduce = 8; // all-reduce combining softmax statistics
inline constexpr std::uint8_t kAccumulate = 16;   // reduce-scatter adds into its output
inline constexpr std::uint8_t kDropout = 32;      // dropout on the op's output (masks in/out)
inline constexpr std::uint8_t kResidualGrad = 64; // a norm backward adds a residual gradient
inline constexpr std::uint8_t kRotary = 128;      // attention with rotary position embeddings

struct Op {
  OpKind kind = OpKind::kLinear;
  DType dtype = DType::kFp32;      // the precision it computes or communicates in
  std::uint8_t flags = 0;
  std::uint8_t n_in = 0, n_out = 0;
  GroupRef group;
  std::uint32_t operands = 0;      // first of n_in + n_out buffer ids in Program::operands
  std::array<std::int64_t, 6> dims{};
  float param = 0;                 // eps (norms), scale (cross-entropy backward)
};

// FLOPs and bytes of one op from its kind and sizes (docs/accounting.md, docs/plan.md):
// `flops` counts matmul FLOPs; `bytes` the main kernel's memory traffic; `elementwise_bytes`
// that of separate memory-bound kernels (activations, residual adds, gradient accumulation),
// which run after the main kernel rather than overlapping it.
struct OpCost {
  double flops = 0;
  double bytes = 0;
  double elementwise_bytes = 0;
  // The FLOPs the kernel executes, in the convention of the measurements its efficiency comes
  // from, where that differs from `flops` (the model's count); 0 = `flops`. Fused attention:
  // FlashAttention's benchmark count, the causal half of the scores and a backward of 2.5
  // forwards (it recomputes the scores), against the model's whole square and 2 forwards.
  double kernel_flops = 0;
};
OpCost op_cost(const Op& op);

// ---------------------------------------------------------------------------------------------
// Tasks and programs

struct Task {
  TaskKind kind = TaskKind::kCompute;
  Stream stream = Stream::kCompute;
  Phase phase = Phase::kNone;
  Block block = Block::kNone;
  CollectiveKind collective = CollectiveKind::kNone;
  Purpose purpose = Purpose::kNone;
  GroupRef group;
  std::int16_t layer = -1;        // transformer layer, -1 when none
  std::int16_t chunk = 0;         // model chunk on this rank (interleaving)
  std::int32_t micro_batch = -1;  // -1 when none (optimizer, gradient sync)
  std::int32_t peer_stage = -1;   // kSend/kRecv: pipeline stage of the peer
  std::uint32_t tag = 0;          // kSend/kRecv: matches a send with its receive
  std::uint32_t op_begin = 0;     // ops [op_begin, op_begin + op_count) of Program::ops
  std::uint32_t op_count = 0;
  // Sums over the task's ops (op_cost): matmul FLOPs on this rank, bytes moved by the main
  // kernels (communication: the message size), bytes of the separate element-wise kernels.
  double flops = 0;
  double bytes = 0;
  double elementwise_bytes = 0;
};

// How a parameter tensor is split over the tensor-parallel group of its layout (Megatron's
// layout, PyTorch's (OUT, IN) weights): whole on every rank, by rows (column-parallel weights
// and their biases, the vocabulary-parallel embedding), by columns (row-parallel weights), or by
// rows within each block of a fused weight (q, k and v of QKV; gate and up of SwiGLU).
enum class Shard : std::uint8_t { kReplicated, kRows, kCols, kBlockRows };
enum class Init : std::uint8_t { kNormal, kZero, kOne };
const char* shard_name(Shard s);

// A parameter tensor of the program: its unsharded shape and split, its initialisation (element
// i of the unsharded tensor is a pure function of (seed, init_name(), i): executor/params.hpp),
// and where its value and gradient live.
struct ParamInfo {
  TensorKind kind = TensorKind::kQkvWeight;
  std::int16_t layer = -1;
  std::int64_t rows = 0, cols = 1;              // unsharded (vectors: cols 1)
  Shard shard = Shard::kReplicated;
  std::array<std::int64_t, 3> row_blocks{};     // kBlockRows: the rows of each block (0: none)
  GroupRef shard_group;                         // the tp group of its layout
  int shard_parts = 1;                          // that group's size
  Init init = Init::kZero;
  float init_std = 0;
  bool tied_copy = false;    // the last stage's copy of a tied word embedding (initialised alike)
  // An MoE layer's shared experts (kFc1Weight..kFc2Bias beside a router): named apart from a
  // dense MLP's and the routed experts' ("layers.3.shared_experts.fc1.w"). Not a column of the
  // Plan's JSON: mark_shared_experts() derives it from the table.
  bool shared_expert = false;
  std::int32_t bucket = -1;                     // its data-parallel bucket
  std::int64_t bucket_offset = 0;               // its first element in the bucket's flat buffers
  std::int64_t elements = 0;                    // elements on this rank
  std::int32_t value = -1;   // persistent value (a view into the bucket), -1 when gathered per use
  std::int32_t grad = -1;    // persistent gradient accumulator, -1 when reduced per micro-batch
  // The initialisation name: "layers.3.qkv.w", "wte", "lnf.b", ...
  std::string init_name() const;
};

// Sets ParamInfo::shared_expert on the MLP parameters (kFc1Weight..kFc2Bias) of every layer that
// has a router in `params`, and clears it elsewhere.
void mark_shared_experts(std::vector<ParamInfo>& params);

// A data-parallel bucket: parameters reduced together, stored in flat buffers so that the
// collectives and the optimizer act on one contiguous range (Megatron's grad buffer). ZeRO
// partitions a bucket over its data-parallel group with partition().
struct BucketInfo {
  std::int64_t elements = 0;
  // The group ZeRO partitions the bucket over (partition() by its size and the rank's index in
  // it): the data-parallel group, or under hybrid sharding the shard group (kShard), whose
  // replicas all-reduce their reduced parts over the replica group (kReplica).
  GroupRef dp_group;
  int zero_stage = 0;
  bool gathered_per_use = false;   // ZeRO-3 layer bucket: a parameter shard, gathered for each use
  std::int32_t params = -1;        // flat parameters, or the rank's shard when gathered per use
  std::int32_t grads = -1;         // persistent flat gradients (ZeRO 0 and 1), else -1
  std::int32_t grad_shard = -1;    // ZeRO 2 and 3: the rank's reduced part, accumulated
  std::int32_t master = -1, adam_m = -1, adam_v = -1;  // optimizer states (ZeRO >= 1: the part)
  std::vector<std::int32_t> members;  // indices into Program::params, in flat order
};

// Static memory (persistent buffers) by what they hold.
struct StaticMemory {
  double params = 0;
  double grads = 0;
  double optimizer = 0;
  double other = 0;  // the step's loss
  double total() const { return params + grads + optimizer + other; }
};

// Peak memory of one program, from its buffers' lifetimes walked in program order.
struct MemorySummary {
  StaticMemory static_bytes;        // persistent buffers: parameters, gradients, optimizer
  double params_count = 0;          // parameters held by the rank before ZeRO sharding
  double peak_dynamic_bytes = 0;    // transient buffers at the peak
  std::array<double, kNumRoles> peak_by_role{};  // transient bytes by role at the peak
  double peak_activation_bytes = 0;  // = peak_by_role[kActivation]
  double max_activation_bytes = 0;   // the most activations held at any task
  std::uint32_t peak_task = 0;      // the task at which the peak is reached
  double peak_bytes() const { return static_bytes.total() + peak_dynamic_bytes; }
};

// One stage's program.
struct Program {
  int stage = 0;
  std::vector<Task> tasks;
  std::vector<std::uint32_t> dep_begin;  // CSR: deps of task i are deps[dep_begin[i]..[i+1])
  std::vector<std::uint32_t> deps;
  std::vector<Op> ops;
  std::vector<std::int32_t> operands;    // buffer ids of the ops
  std::vector<Buffer> buffers;
  std::vector<ParamInfo> params;
  std::vector<BucketInfo> buckets;
  MemorySummary memory;
  // The pipeline order's units (stage_schedule): the first task of each, in order, then one past
  // the last unit's last task (the optimizer step follows). Derived data, not in program.json.
  std::vector<std::uint32_t> unit_begin;

  std::size_t num_deps(std::size_t i) const { return dep_begin[i + 1] - dep_begin[i]; }
  const std::uint32_t* deps_of(std::size_t i) const { return deps.data() + dep_begin[i]; }
  const Op* ops_of(const Task& t) const { return ops.data() + t.op_begin; }
  std::int32_t input(const Op& op, int i) const { return operands[op.operands + i]; }
  std::int32_t output(const Op& op, int i) const { return operands[op.operands + op.n_in + i]; }
  // "L12.mlp.fc1.weight", "L3.attn.qkv.out[mb2]", "bucket4.grads", ...
  std::string buffer_name(std::int32_t id) const;
};

// The ranks and their groups: which program a rank runs and whom its groups and transfers name.
struct Topology {
  int world_size = 0;
  int pp = 1;
  std::vector<RankGrid> layouts;  // [0]: the strategy's; more for per-layer tp overrides
  // Hybrid sharding: the size of a kShard group in data-parallel ranks of layout 0 (the
  // strategy's zero_shard_group); 0 = the whole data-parallel group.
  int zero_shard_group = 0;
  // Mixture of experts with expert_tp 1 under tp > 1: each tensor-parallel rank holds whole
  // experts, so the ranks holding the same experts (kExpertDp) span the tp group too.
  bool experts_across_tp = false;

  const RankGrid& grid() const { return layouts.front(); }
  int stage_of(int rank) const { return grid().coord(rank, Dim::kPp); }
  // The ranks of `rank`'s group named by `g`, in increasing rank order.
  std::vector<int> group_ranks(int rank, const GroupRef& g) const;
  // `rank`'s index in its group `g` (0 for kNone).
  int group_index(int rank, const GroupRef& g) const;
  // The peer of a kSend/kRecv task run by `rank`.
  int peer_rank(int rank, const Task& t) const;
};

// A partition of `elements` over `parts` members, the first elements % parts of them holding
// one more: member i's first element and count. The data-parallel partition of ZeRO.
struct Part {
  std::int64_t offset = 0, count = 0;
};
Part partition(std::int64_t elements, int parts, int index);

struct Provenance {
  std::string strata_version;
  std::string model_hash;
  std::string cluster_hash;
  std::string strategy_hash;
  // The command line's `--set PATH=VALUE` overrides applied to the spec files, in order (the
  // hashes are of the specs after them); written only when there are some.
  std::vector<std::string> overrides;
};

// Everything a consumer needs to run or price the programs, without the specs.
struct ProgramSet : Topology {
  std::vector<Program> programs;  // one per pipeline stage
  int num_micro_batches = 0;
  int virtual_stages = 1;         // model chunks per pipeline rank (task names)
  // Mixture of experts: the share of a rank's dispatched rows that goes to the experts of
  // expert-parallel index j, j = 0 .. ep-1 (summing to 1; from the strategy's expert_routing
  // after capacity drops); empty for a dense model. The all-to-alls' byte matrices: in the
  // dispatch direction member i sends (its rows) x share[j] to member j.
  std::vector<double> expert_shares;
  std::string model_name, strategy_name;
  Provenance provenance;

  const Program& program_of(int rank) const { return programs[stage_of(rank)]; }
  // A readable, stable name: "fwd.L3.mb2.attn_qkv", "dp.all_reduce", ...
  std::string task_name(const Task& t) const;
};

}  // namespace strata::strategies
