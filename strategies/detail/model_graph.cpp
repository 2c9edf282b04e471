// The model description: a transformer layer as blocks of forward ops over named tensors, with
// Megatron's tensor-parallel operators at block boundaries; the backward and the recomputation
// are derived from it op by op (never written twice by hand). Also the embedding and the head.
//
// defines:
//   layer_blocks()              the blocks of a layer and their forward ops (GPT and Llama)
//   ModelGraph::block_forward   one block's forward (or recompute) task with its f and g
//   ModelGraph::block_backward  its backward: the conjugate operators and derived ops (split
//                               into B and deferred W tasks under the zero-bubble schedules)
//   ModelGraph::emit_weight     the W tasks a split backward deferred
//   ModelGraph::layer_forward / layer_backward, embedding_*, head_*
//   ModelGraph::fp8_*            strategy fp8: FP8 GEMMs, their casts, weight copies, scaling
#include <algorithm>
#include <memory>
#include <optional>
#include <set>

#include "common/error.hpp"
#include "strategies/detail/lowering.hpp"

namespace strata::strategies::detail {
namespace {

using K = TensorKind;

bool is_param(TensorKind k) { return k <= TensorKind::kLmHeadWeight; }

}  // namespace

// One forward op over symbolic tensors of its layer (parameters included).
struct GraphOp {
  OpKind kind;
  std::vector<TensorKind> in, out;
};

// A block of a layer: its forward ops, the tensor its input "f" gathers (sequence parallelism)
// and the partial sum its output "g" reduces.
struct GraphBlock {
  Block block;
  std::optional<std::pair<TensorKind, TensorKind>> gather;  // rows -> full, before the block
  std::optional<std::pair<TensorKind, TensorKind>> reduce;  // partial -> output, after it
  std::vector<GraphOp> ops;
  std::vector<TensorKind> params;                           // the parameters it owns
};

namespace {

// The blocks of one transformer layer of `m` (pre-norm GPT or Llama), its attention core
// unfused or fused.
std::vector<GraphBlock> layer_blocks(const ModelSpec& m, AttentionImpl attention_impl,
                                     bool context_parallel) {
  const bool ln = m.norm == NormKind::kLayerNorm, b = m.bias, drop = m.dropout;
  const OpKind norm = ln ? OpKind::kLayerNorm : OpKind::kRmsNorm;
  auto with = [](std::vector<TensorKind> v, bool cond, TensorKind k) {
    if (cond) v.push_back(k);
    return v;
  };
  auto norm_op = [&](K x, K w, K bias, K y, K mean, K rstd) {
    GraphOp op{norm, with({x, w}, ln, bias), {}};
    op.out = ln ? std::vector<K>{y, mean, rstd} : std::vector<K>{y, rstd};
    return op;
  };
  const OpKind act = m.hidden_act == Activation::kSwiglu ? OpKind::kSwiglu : OpKind::kGelu;
  std::vector<GraphBlock> out;
  out.push_back({Block::kAttnNorm, {}, {},
                 {norm_op(K::kLayerIn, K::kNormWeight1, K::kNormBias1, K::kNorm1Out,
                          K::kNorm1Mean, K::kNorm1Rstd)},
                 with({K::kNormWeight1}, ln, K::kNormBias1)});
  out.push_back({Block::kAttnQkv, std::pair{K::kNorm1Out, K::kNorm1Full}, {},
                 {{OpKind::kLinear, with({K::kNorm1Full, K::kQkvWeight}, b, K::kQkvBias), {K::kQkv}}},
                 with({K::kQkvWeight}, b, K::kQkvBias)});
  GraphOp attention{OpKind::kAttention, {K::kQkv}, {K::kAttnCtx, K::kAttnProbs}};
  if (drop) attention.out.insert(attention.out.end(), {K::kAttnDropMask, K::kAttnDropOut});
  if (attention_impl == AttentionImpl::kFused) {
    // One kernel: no probabilities or dropout mask kept (FlashAttention regenerates the mask
    // from the RNG state in the backward), one fp32 statistic per query row.
    attention = {OpKind::kFlashAttention, {K::kQkv}, {K::kAttnCtx, K::kAttnLse}};
  }
  // With context parallelism the same tensors, computed over the cp group's keys block by
  // block (context_parallel.cpp lowers it).
  if (context_parallel) attention = {OpKind::kCpAttention, {K::kQkv}, {K::kAttnCtx, K::kAttnLse}};
  out.push_back({Block::kAttnCore, {}, {}, {attention}, {}});
  out.push_back({Block::kAttnOut, {}, std::pair{K::kAttnPartial, K::kAttnOut},
                 {{OpKind::kLinear, {K::kAttnCtx, K::kAttnOutWeight}, {K::kAttnPartial}},
                  {OpKind::kResidualAdd, with({K::kLayerIn}, b, K::kAttnOutBias),
                   with({K::kAttnPartial}, drop, K::kAttnMask)}},
                 with({K::kAttnOutWeight}, b, K::kAttnOutBias)});
  out.push_back({Block::kMlpNorm, {}, {},
                 {norm_op(K::kAttnOut, K::kNormWeight2, K::kNormBias2, K::kNorm2Out,
                          K::kNorm2Mean, K::kNorm2Rstd)},
                 with({K::kNormWeight2}, ln, K::kNormBias2)});
  out.push_back({Block::kMlpFc1, std::pair{K::kNorm2Out, K::kNorm2Full}, {},
                 {{OpKind::kLinear, with({K::kNorm2Full, K::kFc1Weight}, b, K::kFc1Bias), {K::kFc1Out}},
                  {act, {K::kFc1Out}, {K::kMlpAct}}},
                 with({K::kFc1Weight}, b, K::kFc1Bias)});
  out.push_back({Block::kMlpFc2, {}, std::pair{K::kFc2Partial, K::kLayerOut},
                 {{OpKind::kLinear, {K::kMlpAct, K::kFc2Weight}, {K::kFc2Partial}},
                  {OpKind::kResidualAdd, with({K::kAttnOut}, b, K::kFc2Bias),
                   with({K::kFc2Partial}, drop, K::kMlpMask)}},
                 with({K::kFc2Weight}, b, K::kFc2Bias)});
  return out;
}

// The blocks of an MoE layer: the dense layer's, with the MLP (fc1 and fc2) replaced by the
// mixture of experts, which expert_parallel.cpp lowers (router, dispatch, experts, combine).
std::vector<GraphBlock> moe_layer_blocks(const ModelSpec& m, AttentionImpl attention_impl,
                                         bool context_parallel) {
  std::vector<GraphBlock> out = layer_blocks(m, attention_impl, context_parallel);
  out.erase(std::remove_if(out.begin(), out.end(),
                           [](const GraphBlock& b) {
                             return b.block == Block::kMlpFc1 || b.block == Block::kMlpFc2;
                           }),
            out.end());
  out.push_back({Block::kMoeExperts, {}, {}, {},
                 {K::kRouterWeight, K::kExpertFc1Weight, K::kExpertFc2Weight, K::kFc1Weight,
                  K::kFc1Bias, K::kFc2Weight, K::kFc2Bias}});
  return out;
}

OpKind backward_of(OpKind k) {
  switch (k) {
    case OpKind::kLayerNorm: return OpKind::kLayerNormBwd;
    case OpKind::kRmsNorm: return OpKind::kRmsNormBwd;
    case OpKind::kAttention: return OpKind::kAttentionBwd;
    case OpKind::kFlashAttention: return OpKind::kFlashAttentionBwd;
    case OpKind::kGelu: return OpKind::kGeluBwd;
    case OpKind::kSwiglu: return OpKind::kSwigluBwd;
    case OpKind::kResidualAdd: return OpKind::kResidualAddBwd;
    default: break;
  }
  STRATA_CHECK(false, std::string("no single backward op for ") + op_kind_name(k));
  return k;
}

}  // namespace

std::pair<std::vector<OpSpec>, std::vector<OpSpec>> split_weight_gradients(
    const std::vector<OpSpec>& ops) {
  // A gradient accumulation goes with the weight gradients when it adds what these ops
  // computed (the parameters' fresh gradients); one that adds another task's input gradient
  // (an MoE layer's shared experts', into the router's) is an input gradient itself.
  std::set<BufId> written;
  for (const OpSpec& op : ops) written.insert(op.out.begin(), op.out.end());
  std::pair<std::vector<OpSpec>, std::vector<OpSpec>> out;
  for (const OpSpec& op : ops) {
    const bool w =
        op.kind == OpKind::kLinearBwdWeight || op.kind == OpKind::kGroupedLinearBwdWeight ||
        (op.kind == OpKind::kGradAccumulate &&
         std::all_of(op.in.begin(), op.in.end(), [&](BufId b) { return written.count(b) > 0; }));
    (w ? out.second : out.first).push_back(op);
  }
  return out;
}

ModelGraph::ModelGraph(StageContext& c, TensorParallel& tp, DataParallel& dp)
    : c_(c), tp_(tp), dp_(dp),
      blocks_(std::make_shared<const std::vector<GraphBlock>>(
          layer_blocks(c.m, c.s.attention, c.s.cp > 1))),
      moe_blocks_(c.m.is_moe() ? std::make_shared<const std::vector<GraphBlock>>(
                                     moe_layer_blocks(c.m, c.s.attention, c.s.cp > 1))
                               : nullptr) {}

// ---- shapes ---------------------------------------------------------------------------------

// A new buffer for forward tensor `k` of `layer` (or of the head, layer -1) in pass `instance`.
BufId ModelGraph::new_tensor(TensorKind k, int layer, int mb, std::uint8_t instance) {
  const int layout = layer >= 0 ? c_.layout_of(layer) : 0;
  const ModelSpec& m = c_.m;
  const std::int64_t t = c_.tp_of(layout), B = c_.samples(layout), T = c_.seq_local();
  const std::int64_t N = c_.tokens(layout), R = c_.rows(layout), C = m.hidden_size;
  const std::int64_t heads = m.num_attention_heads / t, hk = m.kv_hidden();
  const std::int64_t F = m.intermediate_size / t;
  const std::int64_t up = (m.hidden_act == Activation::kSwiglu ? 2 : 1) * F;
  const DType a = c_.act;
  const bool sp = c_.sp(layout);
  // Strategy fp8: a norm that feeds an FP8 GEMM writes its output quantized (Transformer
  // Engine's LayerNormLinear), and that FP8 copy is what the layer keeps for the backward.
  const DType norm_out = c_.fp8(layer) ? DType::kFp8 : a;
  switch (k) {
    case K::kNorm1Mean: case K::kNorm1Rstd: case K::kNorm2Mean: case K::kNorm2Rstd:
    case K::kFinalNormMean: case K::kFinalNormRstd:
      return c_.tensor(k, layer, mb, instance, DType::kFp32, {R});
    case K::kNorm1Out: case K::kNorm2Out:
      return c_.tensor(k, layer, mb, instance, norm_out, {R, C});
    case K::kLayerIn: case K::kAttnOut: case K::kLayerOut: case K::kFinalNormOut:
      return c_.tensor(k, layer, mb, instance, a, {R, C});
    case K::kNorm1Full: case K::kNorm2Full: case K::kFinalNormFull:
      return c_.tensor(k, layer, mb, instance, a, {N, C});
    case K::kAttnPartial: case K::kFc2Partial:
      // Without sequence parallelism the partial sum is reduced in place: it is the output.
      return c_.tensor(sp ? k : (k == K::kAttnPartial ? K::kAttnOut : K::kLayerOut), layer, mb,
                       instance, a, {N, C});
    case K::kQkv:
      return c_.tensor(k, layer, mb, instance, a, {N, (C + 2 * hk) / t});
    case K::kAttnProbs: case K::kAttnDropOut:
      return c_.tensor(k, layer, mb, instance, a, {B, heads, T, T});
    case K::kAttnDropMask:
      return c_.tensor(k, layer, mb, instance, DType::kUint8, {B, heads, T, T});
    case K::kAttnLse:
      return c_.tensor(k, layer, mb, instance, DType::kFp32, {B, heads, T});
    case K::kAttnCtx:
      return c_.tensor(k, layer, mb, instance, a, {N, C / t});
    case K::kAttnMask: case K::kMlpMask:
      return c_.tensor(k, layer, mb, instance, DType::kUint8, {R, C});
    case K::kFc1Out:
      return c_.tensor(k, layer, mb, instance, a, {N, up});
    case K::kMlpAct:
      return c_.tensor(k, layer, mb, instance, a, {N, F});
    default:
      break;
  }
  STRATA_CHECK(false, std::string("no shape for tensor ") + tensor_kind_name(k));
  return kNoBuf;
}

// The gradient of the tensor held by `b`: same shape, 16-bit (activation precision).
BufId ModelGraph::new_grad(BufId b) {
  Buffer g = c_.emit.buf(b);
  g.grad = true;
  g.role = Role::kWorkspace;
  g.instance = 0;
  g.persistent = false;
  g.view_of = -1;
  g.view_offset = 0;
  g.view_group = {};
  if (g.dtype == DType::kUint8 || g.dtype == DType::kInt32 || g.dtype == DType::kFp8) {
    g.dtype = c_.act;
  }
  return c_.emit.buffer(g);
}

// The sizes of a forward op (or of its backward, which has the same) from its operands.
void ModelGraph::set_dims(OpSpec& op, const std::vector<BufId>& in, const std::vector<BufId>& out,
                          int layer) {
  const int layout = layer >= 0 ? c_.layout_of(layer) : 0;
  const ModelSpec& m = c_.m;
  const std::int64_t t = c_.tp_of(layout);
  const Buffer& x = c_.emit.buf(in[0]);
  switch (op.kind) {
    case OpKind::kLayerNorm: case OpKind::kRmsNorm:
      op.dims = {x.shape[0], x.shape[1], 0, 0, 0, 0};
      op.param = static_cast<float>(m.norm_eps);
      // y quantized to FP8 by the norm kernel (strategy fp8): one byte per element written.
      if (!out.empty() && c_.emit.buf(out[0]).dtype == DType::kFp8) op.dims[2] = 1;
      break;
    case OpKind::kLinear:
      op.dims = {x.shape[0], x.shape[1], c_.emit.buf(out[0]).shape[1], 0, 0, 0};
      break;
    case OpKind::kAttention: case OpKind::kFlashAttention:
      op.dims = {c_.samples(layout), m.seq_length, m.hidden_size / t, m.num_attention_heads / t,
                 m.kv_hidden() / t, 0};
      break;
    case OpKind::kGelu: case OpKind::kSwiglu:
      op.dims = {c_.tokens(layout), m.intermediate_size / t, 0, 0, 0, 0};
      break;
    case OpKind::kResidualAdd:
      op.dims = {x.shape[0], x.shape[1], 0, 0, 0, 0};
      op.group = c_.tp_group(layout);
      if (c_.sp(layout)) op.flags |= kOwnRows;
      break;
    default:
      break;
  }
  const bool attention =
      op.kind == OpKind::kAttention || op.kind == OpKind::kFlashAttention;
  if (m.dropout && (attention || op.kind == OpKind::kResidualAdd)) op.flags |= kDropout;
  if (!m.learned_position_embeddings && attention) op.flags |= kRotary;
}

// ---- forward --------------------------------------------------------------------------------

TaskId ModelGraph::block_forward(const GraphBlock& b, TaskId x, int layer, int mb, int chunk,
                                 Phase phase, Instance& fwd, Instance& inst, TaskId extra) {
  const int layout = c_.layout_of(layer);
  const std::uint8_t number = phase == Phase::kRecompute ? 1 : 0;
  auto read = [&](TensorKind k) -> BufId {
    if (is_param(k)) return dp_.value(k, layer);
    if (inst.at(k) != kNoBuf) return inst.at(k);
    STRATA_CHECK(fwd.at(k) != kNoBuf, std::string("no buffer for ") + tensor_kind_name(k));
    return fwd.at(k);
  };
  if (b.block == Block::kAttnCore && c_.s.cp > 1) {
    return cp_attention_forward(x, layer, mb, chunk, phase, fwd, inst, extra);
  }
  if (b.block == Block::kMoeExperts) {
    return moe_forward(x, layer, mb, chunk, phase, fwd, inst, extra);
  }
  // tp_comm_overlap: the block's all-gather or reduce-scatter runs as a ring beside its GEMM.
  const bool ring = tp_.overlaps(layout) && (b.gather || b.reduce);
  if (b.gather && ring) {  // gathered by the ring (TensorParallel::gather_linear), in FP8 when
                          // the norm quantized its rows (strategy fp8)
    const DType dtype = c_.emit.buf(read(b.gather->first)).dtype == DType::kFp8 ? DType::kFp8 : c_.act;
    inst[b.gather->second] = c_.tensor(b.gather->second, layer, mb, number, dtype,
                                       {c_.tokens(layout), c_.m.hidden_size});
  } else if (b.gather) {
    x = tp_.gather(x, layout, read(b.gather->first), b.gather->second, layer, mb, chunk, phase,
                   number, &inst[b.gather->second]);
  }
  std::vector<OpSpec> ops;
  for (const GraphOp& g : b.ops) {
    OpSpec op;
    op.kind = g.kind;
    op.dtype = c_.act;
    for (TensorKind k : g.in) op.in.push_back(read(k));
    for (TensorKind k : g.out) {
      if (inst.at(k) == kNoBuf) inst[k] = new_tensor(k, layer, mb, number);
      op.out.push_back(inst[k]);  // an existing one is accumulated into (a residual add)
    }
    set_dims(op, op.in, op.out, layer);
    if (op.kind == OpKind::kLinear && c_.fp8(layer)) {
      fp8_linear_forward(op, g, layer, mb, phase, inst, ops);
    }
    ops.push_back(std::move(op));
  }
  const Task task = c_.compute_task(phase, b.block, layer, mb, chunk);
  if (ring) {
    const auto linear = std::find_if(ops.begin(), ops.end(), [](const OpSpec& op) {
      return op.kind == OpKind::kLinear;
    });
    STRATA_CHECK(linear != ops.end(), "tp_comm_overlap: a block with a tp collective and no GEMM");
    const auto li = static_cast<std::size_t>(linear - ops.begin());
    if (b.gather) {
      return tp_.gather_linear(x, extra, layout, read(b.gather->first), ops, li, task, false);
    }
    const Buffer& partial = c_.emit.buf(inst[b.reduce->first]);
    const BufId out = c_.tensor(b.reduce->second, layer, mb, partial.instance, c_.act,
                                {c_.rows(layout), c_.m.hidden_size});
    inst[b.reduce->second] = out;
    return tp_.linear_scatter(x, extra, layout, ops, li, out, task);
  }
  x = c_.emit.add(task, ops, {x, extra});
  if (b.reduce) {
    x = tp_.reduce(x, layout, inst[b.reduce->first], b.reduce->second, layer, mb, chunk, phase,
                   &inst[b.reduce->second]);
  }
  return x;
}

TaskId ModelGraph::layer_forward(TaskId prev, int layer, int mb, int chunk, Phase phase,
                                 Instance& fwd, Instance& rc, BufId* x) {
  const int layout = c_.layout_of(layer);
  Instance& inst = phase == Phase::kRecompute ? rc : fwd;
  // The stored layer input is already in this layer's layout: only a forward reshards.
  if (phase == Phase::kForward) {
    prev = tp_.reshard(prev, c_.incoming_layout(layer), layout, *x, layer, mb, chunk, phase, x);
    fwd[K::kLayerIn] = *x;
  }
  TaskId gathered = kNoTask;
  if (c_.s.zero_stage == 3) {
    gathered = dp_.gather_layer(prev, layer, phase, mb, chunk, phase == Phase::kRecompute ? 1 : 0);
  }
  const std::vector<GraphBlock>& blocks = blocks_of(layer);
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    prev = block_forward(blocks[i], prev, layer, mb, chunk, phase, fwd, inst,
                         i == 0 ? gathered : kNoTask);
  }
  *x = inst[K::kLayerOut];
  return prev;
}

// ---- backward -------------------------------------------------------------------------------

// The buffer a backward reads for forward tensor `k`: re-gathered, recomputed, or stored.
BufId ModelGraph::saved(TensorKind k, int layer, const Instance& fwd, const Instance& rc,
                        const Instance& bw) const {
  if (is_param(k)) return dp_.value(k, layer);
  if (bw.at(k) != kNoBuf) return bw.at(k);
  if (rc.at(k) != kNoBuf) return rc.at(k);
  STRATA_CHECK(fwd.at(k) != kNoBuf, std::string("the backward needs ") + tensor_kind_name(k) +
                                        " of layer " + std::to_string(layer) + ", never stored");
  return fwd.at(k);
}

// Where a backward writes parameter `k`'s gradient. Unless the weight-gradient GEMM accumulates
// in place (grad_accumulation "fused", and autograd's first micro-batch), the block's own
// parameters get a fresh gradient that a separate kernel adds to the accumulator afterwards.
BufId ModelGraph::param_grad(TensorKind k, int layer, const std::vector<TensorKind>& owned,
                             Accumulation& acc) {
  const BufId accumulator = dp_.grad(k, layer);
  const bool separate = c_.s.grad_accumulation == GradAccumulation::kHook ||
                        (c_.s.grad_accumulation == GradAccumulation::kAutograd && !first_round_);
  if (!separate || std::find(owned.begin(), owned.end(), k) == owned.end()) return accumulator;
  Buffer fresh = c_.emit.buf(accumulator);
  fresh.view_of = -1;
  fresh.view_offset = 0;
  fresh.persistent = false;
  fresh.role = Role::kWorkspace;
  fresh.dtype = c_.act;
  fresh.instance = 2;
  const BufId id = c_.emit.buffer(fresh);
  acc.op.in.push_back(id);
  acc.op.out.push_back(accumulator);
  acc.op.dims[0] += c_.emit.elements(id);
  return id;
}

void ModelGraph::finish_accumulation(Accumulation& acc, std::vector<OpSpec>& ops) {
  if (acc.op.in.empty()) return;
  for (OpSpec& op : ops) {
    for (BufId b : op.out) {
      if (std::find(acc.op.in.begin(), acc.op.in.end(), b) != acc.op.in.end()) op.flags |= kOverwrite;
    }
  }
  acc.op.kind = OpKind::kGradAccumulate;
  acc.op.dtype = c_.act;
  acc.op.dims[1] = dtype_bytes(c_.grad);
  ops.push_back(acc.op);
}

// Appends the backward ops of forward op `g` (of block `b`) to `ops`, reading the forward's
// saved tensors and the gradients of its outputs, and recording the gradients of its inputs.
void ModelGraph::derive(const GraphOp& g, const GraphBlock& b, int layer,
                        Instance& fwd, Instance& rc, Instance& bw,
                        Accumulation& acc, std::vector<OpSpec>& ops) {
  auto sv = [&](TensorKind k) { return saved(k, layer, fwd, rc, bw); };
  auto grad_of = [&](TensorKind k) {
    const BufId id = bw.grad_of(k);
    STRATA_CHECK(id != kNoBuf, std::string("no gradient of ") + tensor_kind_name(k));
    return id;
  };
  auto pgrad = [&](TensorKind k) { return param_grad(k, layer, b.params, acc); };
  OpSpec op;
  op.dtype = c_.act;
  switch (g.kind) {
    case OpKind::kLayerNorm:
    case OpKind::kRmsNorm: {
      op.kind = g.kind;
      set_dims(op, {sv(g.in[0])}, {}, layer);
      op.kind = backward_of(g.kind);
      op.param = 0;
      op.in = {grad_of(g.out[0]), sv(g.in[0]), sv(g.in[1])};
      for (std::size_t i = 1; i < g.out.size(); ++i) op.in.push_back(sv(g.out[i]));  // stats
      // The residual stream's other use (the block output's residual add) contributes too.
      const BufId residual = bw.pending(g.in[0]);
      if (residual != kNoBuf) {
        op.in.push_back(residual);
        op.flags |= kResidualGrad;
      }
      const BufId dx = new_grad(sv(g.in[0]));
      op.out = {dx};
      for (std::size_t i = 1; i < g.in.size(); ++i) op.out.push_back(pgrad(g.in[i]));
      bw.grad_of(g.in[0]) = dx;
      ops.push_back(op);
      return;
    }
    case OpKind::kLinear: {
      // dx = dy W and dW += dy^T x: the two GEMMs of a linear layer's backward.
      const BufId dy = grad_of(g.out[0]);
      const Buffer& xb = c_.emit.buf(sv(g.in[0]));
      op.dims = {xb.shape[0], xb.shape[1], c_.emit.buf(dy).shape[1], 0, 0, 0};
      OpSpec data = op, weight = op;
      data.kind = OpKind::kLinearBwdData;
      data.in = {dy, sv(g.in[1])};
      const BufId dx = new_grad(sv(g.in[0]));
      data.out = {dx};
      weight.kind = OpKind::kLinearBwdWeight;
      weight.in = {dy, sv(g.in[0])};
      for (std::size_t i = 1; i < g.in.size(); ++i) weight.out.push_back(pgrad(g.in[i]));
      bw.grad_of(g.in[0]) = dx;
      if (c_.fp8(layer)) {
        fp8_linear_backward(g, layer, data, weight, fwd, rc, bw, ops);
        return;
      }
      ops.push_back(data);
      ops.push_back(weight);
      return;
    }
    case OpKind::kAttention: {
      op.kind = g.kind;
      set_dims(op, {sv(g.in[0])}, {}, layer);
      op.kind = OpKind::kAttentionBwd;
      op.in = {grad_of(g.out[0])};
      for (std::size_t i = 0; i < g.in.size(); ++i) op.in.push_back(sv(g.in[i]));
      for (std::size_t i = 1; i < g.out.size(); ++i) op.in.push_back(sv(g.out[i]));
      const BufId dqkv = new_grad(sv(g.in[0]));
      op.out = {dqkv};
      bw.grad_of(g.in[0]) = dqkv;
      ops.push_back(op);
      return;
    }
    case OpKind::kFlashAttention: {
      // d(qkv) from the context's gradient, qkv, the context and the row statistics.
      op.kind = g.kind;
      set_dims(op, {sv(g.in[0])}, {}, layer);
      op.kind = OpKind::kFlashAttentionBwd;
      op.in = {grad_of(g.out[0]), sv(g.in[0]), sv(g.out[0]), sv(g.out[1])};
      const BufId dqkv = new_grad(sv(g.in[0]));
      op.out = {dqkv};
      bw.grad_of(g.in[0]) = dqkv;
      ops.push_back(op);
      return;
    }
    case OpKind::kGelu:
    case OpKind::kSwiglu: {
      op.kind = g.kind;
      set_dims(op, {sv(g.in[0])}, {}, layer);
      op.kind = backward_of(g.kind);
      op.in = {grad_of(g.out[0]), sv(g.in[0])};
      const BufId dx = new_grad(sv(g.in[0]));
      op.out = {dx};
      bw.grad_of(g.in[0]) = dx;
      ops.push_back(op);
      return;
    }
    case OpKind::kResidualAdd: {
      // out = partial + residual + bias: the output's gradient (the block output's, on the
      // rank's rows) is the residual's too, and gives the bias gradient.
      const BufId dy = grad_of(b.reduce->second);
      op.kind = g.kind;
      set_dims(op, {sv(g.in[0])}, {}, layer);
      op.kind = OpKind::kResidualAddBwd;
      op.in = {dy};
      if (g.out.size() > 1) op.in.push_back(sv(g.out[1]));  // the dropout mask
      if (g.in.size() > 1) op.out.push_back(pgrad(g.in[1]));
      bw.pending(g.in[0]) = dy;
      ops.push_back(op);
      return;
    }
    default:
      break;
  }
  STRATA_CHECK(false, std::string("no backward rule for ") + op_kind_name(g.kind));
}

TaskId ModelGraph::block_backward(const GraphBlock& b, const GraphBlock* next, TaskId x, int layer,
                                  int mb, int chunk, Instance& fwd, Instance& rc,
                                  Instance& bw, TaskId extra) {
  const int layout = c_.layout_of(layer);
  // The re-gather of this block's input, issued one block ahead: its weight gradient waits.
  const TaskId regathered = regathered_;
  regathered_ = kNoTask;
  // tp_comm_overlap: the output gradient's all-gather as a ring beside the data-gradient GEMM
  // (Transformer Engine's proj_dgrad and fc2_dgrad), the input gradient's reduce-scatter beside
  // the weight-gradient GEMM (qkv_dgrad and fc1_dgrad, "bulk").
  const bool ring = tp_.overlaps(layout);
  STRATA_CHECK(!(ring && split_), "tp_comm_overlap with a zero-bubble schedule is not lowered");
  BufId rows = kNoBuf;
  if (b.reduce && ring) {  // gathered by the ring (TensorParallel::gather_linear)
    rows = bw.grad_of(b.reduce->second);
    bw.grad_of(b.reduce->first) = c_.tensor(b.reduce->first, layer, mb, 0, c_.act,
                                            {c_.tokens(layout), c_.m.hidden_size}, true);
  } else if (b.reduce) {  // the conjugate of "g": gather the output's gradient (sequence parallelism)
    x = tp_.gather(x, layout, bw.grad_of(b.reduce->second), b.reduce->first, layer, mb, chunk,
                   Phase::kBackward, 0, &bw.grad_of(b.reduce->first), true);
  }
  // The ring goes first on the tp stream; the next block's re-gather after it.
  if (!(b.reduce && ring)) regather(next, layer, mb, chunk, fwd, rc, bw);
  if (recomputed_block(b.block, layer)) {
    // Selective recompute: the attention core again, just before its backward.
    x = block_forward(b, x, layer, mb, chunk, Phase::kRecompute, fwd, rc, kNoTask);
  }
  if (b.block == Block::kAttnCore && c_.s.cp > 1) {
    return cp_attention_backward(x, layer, mb, chunk, fwd, rc, bw, extra);
  }
  if (b.block == Block::kMoeExperts) return moe_backward(x, layer, mb, chunk, fwd, rc, bw, extra);
  Accumulation acc;
  std::vector<OpSpec> ops;
  for (auto it = b.ops.rbegin(); it != b.ops.rend(); ++it) {
    derive(*it, b, layer, fwd, rc, bw, acc, ops);
  }
  finish_accumulation(acc, ops);
  const Task task = c_.compute_task(Phase::kBackward, b.block, layer, mb, chunk);
  if (b.reduce && ring) {
    const auto data = std::find_if(ops.begin(), ops.end(), [](const OpSpec& op) {
      return op.kind == OpKind::kLinearBwdData;
    });
    STRATA_CHECK(data != ops.end(), "tp_comm_overlap: a block with a tp collective and no GEMM");
    // Strategy fp8: the ring carries the output gradient's rows cast to FP8 (as Transformer
    // Engine gathers the quantized tensor), not the 16-bit gradient the cast would read whole.
    for (OpSpec& op : ops) {
      if (op.kind != OpKind::kFp8Cast || op.in[0] != bw.grad_of(b.reduce->first)) continue;
      const BufId r8 = fp8_copy(rows);
      op = fp8_cast(rows, r8, layer, static_cast<int>(op.dims[1]));
      rows = r8;
    }
    x = tp_.gather_linear(x, extra, layout, rows, ops, static_cast<std::size_t>(data - ops.begin()),
                          task, true);
    regather(next, layer, mb, chunk, fwd, rc, bw);
    return x;
  }
  if (b.gather && ring) {
    // The data gradient first; its reduce-scatter runs beside the weight gradient (and the
    // gradient accumulation after it).
    auto [first, second] = split_weight_gradients(ops);
    for (OpSpec& op : second) {
      if (op.kind == OpKind::kLinearBwdWeight) op.param = static_cast<float>(c_.s.tp_comm_overlap_sms);
    }
    x = c_.emit.add(task, first, {x, extra});
    const TaskId reduced = tp_.reduce(x, layout, bw.grad_of(b.gather->second), b.gather->first,
                                      layer, mb, chunk, Phase::kBackward,
                                      &bw.grad_of(b.gather->first), true);
    c_.emit.add(task, second, {x, regathered});
    return reduced;
  }
  if (split_) {
    // B now, W later: the weight-gradient GEMMs read the saved input (re-gathered under sequence
    // parallelism) and the output's gradient, which therefore live until the W unit.
    auto [input, weight] = split_weight_gradients(ops);
    if (!input.empty()) x = c_.emit.add(task, input, {x, extra});
    if (!weight.empty()) weight_tasks_[{chunk, mb}].push_back({task, weight, {x, regathered}});
  } else {
    x = c_.emit.add(task, ops, {x, extra, regathered});
  }
  if (b.gather) {  // the conjugate of "f": reduce the input's gradient
    x = tp_.reduce(x, layout, bw.grad_of(b.gather->second), b.gather->first, layer, mb, chunk,
                   Phase::kBackward, &bw.grad_of(b.gather->first), true);
  }
  return x;
}

// Sequence parallelism keeps the rank's rows of a gathered input (Korthikanti et al. 2022,
// sec. 4.2.2): its weight gradient needs it whole again, so it is re-gathered one block ahead of
// the backward that reads it (Megatron overlaps the gather with the data-gradient GEMM).
void ModelGraph::regather(const GraphBlock* next, int layer, int mb, int chunk,
                          Instance& fwd, Instance& rc, Instance& bw) {
  if (next == nullptr || !next->gather || !c_.sp(c_.layout_of(layer))) return;
  const auto [rows, full] = *next->gather;
  regathered_ = tp_.gather(kNoTask, c_.layout_of(layer), saved(rows, layer, fwd, rc, bw), full,
                           layer, mb, chunk, Phase::kBackward, 2, &bw[full]);
}

bool ModelGraph::recomputed_block(Block b, int layer) const {
  return b == Block::kAttnCore && layer_strategy(c_.s, layer).recompute == Recompute::kSelective;
}

std::map<int, TaskId> ModelGraph::emit_weight(int mb, int chunk) {
  std::map<int, TaskId> last;
  const auto it = weight_tasks_.find({chunk, mb});
  if (it == weight_tasks_.end()) return last;
  for (const WeightTask& w : it->second) last[w.task.layer] = c_.emit.add(w.task, w.ops, w.deps);
  weight_tasks_.erase(it);
  return last;
}

TaskId ModelGraph::layer_backward(TaskId prev, int layer, int mb, int chunk, Instance& fwd,
                                  BufId grad_out, BufId* grad_in) {
  const int layout = c_.layout_of(layer);
  Instance rc, bw;
  bw.grad_of(K::kLayerOut) = grad_out;
  TaskId gathered = kNoTask;
  if (layer_strategy(c_.s, layer).recompute == Recompute::kFull) {
    // Re-run the forward from the stored layer input (its ZeRO-3 gather serves both).
    BufId unused = fwd[K::kLayerIn];
    prev = layer_forward(prev, layer, mb, chunk, Phase::kRecompute, fwd, rc, &unused);
    if (c_.s.zero_stage == 3) gathered = dp_.last_gather();
  } else if (c_.s.zero_stage == 3) {
    gathered = dp_.gather_layer(prev, layer, Phase::kBackward, mb, chunk, 2);
  }
  const std::vector<GraphBlock>& blocks = blocks_of(layer);
  for (std::size_t i = blocks.size(); i-- > 0;) {
    const GraphBlock* next = i > 0 ? &blocks[i - 1] : nullptr;
    prev = block_backward(blocks[i], next, prev, layer, mb, chunk, fwd, rc, bw,
                          i + 1 == blocks.size() ? gathered : kNoTask);
  }
  *grad_in = bw.grad_of(K::kLayerIn);
  return tp_.reshard_grad(prev, c_.incoming_layout(layer), layout, *grad_in, layer, mb, chunk,
                          grad_in);
}

}  // namespace strata::strategies::detail

namespace strata::strategies::detail {

// ---- FP8 (strategy fp8) -----------------------------------------------------------------------
//
// Transformer Engine's delayed-scaling recipe on Hopper (TE's Linear and LayerNormLinear,
// transformer_engine/pytorch/module/linear.py; docs/accounting.md "FP8"): each GEMM of a layer's
// linear layer reads FP8 copies of its inputs and writes a 16-bit output. A norm that feeds one
// quantizes its own output; any other input is cast with its transpose, and the transpose is
// what the layer keeps for the weight gradient. The weights are cast with their transposes at the
// step's first micro-batch and cached for the others (TE's is_first_microbatch). The backward
// casts the output gradient with its transpose (E5M2 under "hybrid") and transposes the norm's
// FP8 output for the weight gradient.

BufId ModelGraph::fp8_copy(BufId of) {
  Buffer b = c_.emit.buf(of);
  b.dtype = DType::kFp8;
  b.role = Role::kWorkspace;
  b.persistent = false;
  b.view_of = -1;
  b.view_offset = 0;
  b.view_group = {};
  b.bucket = -1;
  return c_.emit.buffer(b);
}

// The layer's amax histories and scales: per linear layer (QKV, out-projection, fc1, fc2) five
// FP8 tensors (forward: input, weight, output; backward: output gradient, input gradient), each
// with its history and a scale and inverse scale (fp32), as TE's fp8_meta keeps them.
BufId ModelGraph::fp8_scaling(int layer) {
  const auto it = fp8_scaling_.find(layer);
  if (it != fp8_scaling_.end()) return it->second;
  Buffer b;
  b.kind = TensorKind::kFp8Scaling;
  b.persistent = true;
  b.role = Role::kParam;
  b.dtype = DType::kFp32;
  b.ndim = 3;
  b.layer = static_cast<std::int16_t>(layer);
  b.shape = {4, 5, static_cast<std::int64_t>(c_.s.fp8_amax_history_len) + 2, 0};
  return fp8_scaling_[layer] = c_.emit.buffer(b);
}

// The persistent FP8 copies of weight `k`: row-wise for the forward GEMM and column-wise (its
// transpose) for the data gradient, both kept across micro-batches.
BufId ModelGraph::fp8_weight(TensorKind k, int layer, BufId w) {
  const auto key = std::pair{static_cast<int>(k), layer};
  const auto it = fp8_weights_.find(key);
  if (it != fp8_weights_.end()) return it->second;
  STRATA_CHECK(w != kNoBuf, std::string("the FP8 copy of ") + tensor_kind_name(k) +
                                " is used before its forward made it");
  const Buffer& src = c_.emit.buf(w);
  Buffer b;
  b.kind = k;
  b.persistent = true;
  b.role = Role::kParam;
  b.dtype = DType::kFp8;
  b.layer = static_cast<std::int16_t>(layer);
  if (src.ndim == 2) {
    b.ndim = 3;
    b.shape = {2, src.shape[0], src.shape[1], 0};
  } else {
    b.ndim = 2;
    b.shape = {2, src.elements(), 0, 0};
  }
  return fp8_weights_[key] = c_.emit.buffer(b);
}

OpSpec ModelGraph::fp8_cast(BufId in, BufId out, int layer, int copies) {
  OpSpec op;
  op.kind = OpKind::kFp8Cast;
  op.dtype = c_.emit.buf(in).dtype;
  op.in = {in};
  op.out = {out};
  // A quantization records the tensor's amax; a transpose of an FP8 tensor does not.
  if (op.dtype != DType::kFp8) op.out.push_back(fp8_scaling(layer));
  op.dims = {c_.emit.elements(in), copies, 0, 0, 0, 0};
  return op;
}

void ModelGraph::fp8_linear_forward(OpSpec& op, const GraphOp& g, int layer, int mb, Phase phase,
                                    Instance& inst, std::vector<OpSpec>& ops) {
  if (c_.emit.buf(op.in[0]).dtype != DType::kFp8) {
    const BufId x8 = fp8_copy(op.in[0]);
    ops.push_back(fp8_cast(op.in[0], x8, layer, 2));
    inst.fp8_of(g.in[0]) = x8;
    op.in[0] = x8;
  }
  const BufId w8 = fp8_weight(g.in[1], layer, op.in[1]);
  if (phase == Phase::kForward && mb == 0) ops.push_back(fp8_cast(op.in[1], w8, layer, 2));
  op.in[1] = w8;
  op.dtype = DType::kFp8;
  op.dims[3] = dtype_bytes(c_.act);
}

void ModelGraph::fp8_linear_backward(const GraphOp& g, int layer, OpSpec& data, OpSpec& weight,
                                     const Instance& fwd, const Instance& rc, const Instance& bw,
                                     std::vector<OpSpec>& ops) {
  const BufId dy = data.in[0];
  const BufId dy8 = fp8_copy(dy);
  ops.push_back(fp8_cast(dy, dy8, layer, 2));
  data.in = {dy8, fp8_weight(g.in[1], layer)};
  data.dtype = DType::kFp8;
  data.dims[3] = dtype_bytes(c_.act);
  ops.push_back(data);
  // The input's column-wise copy: the forward's cast made it (re-made by a full recompute);
  // a norm's FP8 output (or its re-gather under sequence parallelism) is transposed here.
  const TensorKind k = g.in[0];
  BufId x8 = bw.fp8_at(k);
  if (x8 == kNoBuf) x8 = rc.fp8_at(k);
  if (x8 == kNoBuf) x8 = fwd.fp8_at(k);
  if (x8 == kNoBuf) {
    const BufId x = weight.in[1];
    STRATA_CHECK(c_.emit.buf(x).dtype == DType::kFp8,
                 std::string("no FP8 copy of ") + tensor_kind_name(k) + " for its weight gradient");
    x8 = fp8_copy(x);
    ops.push_back(fp8_cast(x, x8, layer, 1));
  }
  weight.in = {dy8, x8};
  weight.dtype = DType::kFp8;
  weight.dims[3] = dtype_bytes(c_.act);
  ops.push_back(weight);
}

}  // namespace strata::strategies::detail
