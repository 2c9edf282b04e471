// A mixture-of-experts feed-forward block with expert parallelism (Megatron-Core's MoELayer
// with the all-to-all token dispatcher; docs/plan.md "Mixture of experts"). On each rank:
//
//   router     logits = x W_r^T over the rank's rows (its tokens, 1/cp of each sequence with
//              context parallelism, 1/tp of them under sequence parallelism), softmax, the
//              top k experts and their weights; the rows copied out grouped by expert (the
//              permutation; a capacity drops the surplus)
//   dispatch   an all-to-all over the expert-parallel group: each rank receives the rows for
//              its num_experts / ep experts (with the per-expert counts); with expert_tp > 1 an
//              all-gather over the experts' tp group gives every shard of an expert all its rows
//   experts    grouped GEMMs: fc1, the activation, fc2 (row segments per source and expert)
//   combine    with expert_tp > 1 a reduce-scatter of fc2's partial sums, then the all-to-all
//              back, and the weighted sum of each token's k expert outputs plus the residual
//
// The backward runs the same path in reverse (the all-to-alls swap directions). The Plan sizes
// the dispatched tensors with the expected rows of the strategy's expert_routing
// (expert_dispatch: the most loaded rank's, since all ranks of a stage share one program), and
// ProgramSet::expert_shares carries the imbalance to the simulator's all-to-all byte matrices.
#include "common/error.hpp"
#include "strategies/detail/lowering.hpp"

namespace strata::strategies::detail {

using K = TensorKind;

namespace {

// The sizes of an MoE layer's tensors on one rank.
struct MoeShape {
  std::int64_t R = 0;         // rows routed (the rank's residual-stream rows)
  std::int64_t C = 0;         // hidden size
  std::int64_t E = 0, k = 0;  // routed experts, experts per token
  std::int64_t local = 0;     // experts on the rank (num_experts / ep)
  std::int64_t t = 1;         // the experts' tensor-parallel degree (= tp)
  std::int64_t F = 0, up = 0; // an expert's ffn width on the rank, and its fc1 output's
  std::int64_t S = 0;         // rows dispatched
  std::int64_t recv = 0;      // rows received (the most loaded rank's)
  std::int64_t M = 0;         // rows through the experts: recv gathered over expert_tp
  std::int64_t segments = 0;  // row segments of the grouped GEMMs: (tp source, ep source,
                              // expert), each expert's weight used by every source's segment
  std::int64_t capacity = 0;
};

MoeShape moe_shape(const StageContext& c, int layer) {
  const int layout = c.layout_of(layer);
  const ModelSpec& m = c.m;
  MoeShape z;
  z.R = c.rows(layout);
  z.C = m.hidden_size;
  z.E = m.moe.num_experts;
  z.k = m.moe.num_experts_per_tok;
  z.local = z.E / c.s.ep;
  z.t = c.expert_tp();
  z.F = m.moe.moe_intermediate_size / z.t;
  z.up = (m.hidden_act == Activation::kSwiglu ? 2 : 1) * z.F;
  const ExpertDispatch d = expert_dispatch(m, c.s, z.R);
  z.S = d.send_rows;
  z.recv = d.recv_rows;
  z.capacity = d.capacity;
  z.M = z.t * z.recv;
  z.segments = z.t * c.s.ep * z.local;
  return z;
}

OpSpec make_op(OpKind kind, DType dtype, std::vector<BufId> in, std::vector<BufId> out,
               std::array<std::int64_t, 6> dims) {
  OpSpec op;
  op.kind = kind;
  op.dtype = dtype;
  op.in = std::move(in);
  op.out = std::move(out);
  op.dims = dims;
  return op;
}

}  // namespace

TaskId ModelGraph::moe_exchange(CollectiveKind kind, int direction, TaskId after,
                                std::vector<BufId> in, std::vector<BufId> out, int layer, int mb,
                                int chunk, Phase phase) {
  const bool a2a = kind == CollectiveKind::kAllToAll;
  // The experts' tp group is the layer's (expert_tp = tp whenever it exceeds 1).
  const GroupRef group = a2a ? c_.ep_group() : c_.tp_group(c_.layout_of(layer));
  OpSpec op;
  op.kind = a2a                                    ? OpKind::kAllToAll
            : kind == CollectiveKind::kAllGather ? OpKind::kAllGather
                                                 : OpKind::kReduceScatter;
  op.dtype = c_.act;
  op.group = group;
  // nccl-tests' size: the gathered output of an all-gather, the input otherwise.
  op.dims[0] = kind == CollectiveKind::kAllGather ? c_.emit.elements(out[0])
                                                  : c_.emit.elements(in[0]);
  op.in = std::move(in);
  op.out = std::move(out);
  Task t = c_.collective_task(kind, a2a ? Purpose::kEp : Purpose::kTp, group, phase, layer, mb,
                              chunk);
  t.tag = static_cast<std::uint32_t>(direction);
  return c_.emit.add(t, {op}, {after});
}

TaskId ModelGraph::moe_forward(TaskId x, int layer, int mb, int chunk, Phase phase,
                               const Instance& fwd, Instance& inst, TaskId extra) {
  const MoeShape z = moe_shape(c_, layer);
  const ModelSpec& m = c_.m;
  const DType a = c_.act;
  const std::uint8_t n = phase == Phase::kRecompute ? 1 : 0;
  const auto read = [&](K k) {
    const BufId id = inst.at(k) != kNoBuf ? inst.at(k) : fwd.at(k);
    STRATA_CHECK(id != kNoBuf, std::string("the MoE block needs ") + tensor_kind_name(k));
    return id;
  };
  const auto make = [&](K k, DType dtype, std::initializer_list<std::int64_t> shape) {
    return inst[k] = c_.tensor(k, layer, mb, n, dtype, shape);
  };
  const BufId xin = read(K::kNorm2Out), residual = read(K::kAttnOut);

  // Router: logits, top-k, the permutation by expert.
  const BufId logits = make(K::kRouterLogits, a, {z.R, z.E});
  const BufId probs = make(K::kRouterProbs, DType::kFp32, {z.R, z.E});
  const BufId idx = make(K::kRouterIndices, DType::kInt32, {z.R, z.k});
  const BufId w = make(K::kRouterWeights, DType::kFp32, {z.R, z.k});
  const BufId permuted = make(K::kMoePermuted, a, {z.S, z.C});
  const BufId row_of = make(K::kMoeRowOf, DType::kInt32, {z.R, z.k});
  const BufId counts = make(K::kMoeCounts, DType::kInt32, {z.E});
  OpSpec route = make_op(OpKind::kMoeRoute, a, {logits}, {probs, idx, w},
                         {z.R, z.E, z.k, m.moe.norm_topk_prob ? 1 : 0, 0, 0});
  route.param = static_cast<float>(m.moe.router_aux_loss_coef);
  TaskId t = c_.emit.add(
      c_.compute_task(phase, Block::kMoeRouter, layer, mb, chunk),
      {make_op(OpKind::kLinear, a, {xin, dp_.value(K::kRouterWeight, layer)}, {logits},
               {z.R, z.C, z.E, 0, 0, 0}),
       route,
       make_op(OpKind::kMoePermute, a, {xin, idx, w}, {permuted, row_of, counts},
               {z.R, z.C, z.E, z.k, z.S, z.capacity})},
      {x, extra});

  // The shared experts beside the routed ones (their all-gather runs with the dispatch).
  BufId shared = kNoBuf;
  const TaskId shared_done =
      m.moe.n_shared_experts > 0 ? shared_forward(t, layer, mb, chunk, phase, fwd, inst, &shared)
                                 : kNoTask;

  // Dispatch: rows to the experts' ranks, then (expert_tp > 1) gathered over the tp group.
  const std::int64_t ep = c_.s.ep;
  // With ep 1 the rank holds every expert: the permuted rows are its experts' input as they are.
  BufId received = permuted, recv_counts = counts;
  if (ep > 1) {
    received = make(K::kMoeReceived, a, {z.recv, z.C});
    recv_counts = c_.tensor(K::kMoeRecvCounts, layer, mb, n, DType::kInt32, {ep, z.local});
    t = moe_exchange(CollectiveKind::kAllToAll, 1, t, {permuted, counts},
                     {received, recv_counts}, layer, mb, chunk, phase);
  } else {
    inst[K::kMoeReceived] = received;
  }
  BufId expert_in = received;
  if (z.t > 1) {
    expert_in = make(K::kMoeExpertIn, a, {z.M, z.C});
    const BufId all = c_.tensor(K::kMoeRecvCounts, layer, mb, static_cast<std::uint8_t>(n + 2),
                                DType::kInt32, {z.t, ep, z.local});
    t = moe_exchange(CollectiveKind::kAllGather, 0, t, {received, recv_counts}, {expert_in, all},
                     layer, mb, chunk, phase);
    recv_counts = all;
  } else {
    inst[K::kMoeExpertIn] = received;
  }
  inst[K::kMoeRecvCounts] = recv_counts;

  // The rank's experts.
  const BufId fc1 = make(K::kMoeFc1Out, a, {z.M, z.up});
  const BufId act = make(K::kMoeAct, a, {z.M, z.F});
  const BufId out = z.t > 1 ? make(K::kMoeExpertOut, a, {z.M, z.C})
                            : make(K::kMoeReturned, a, {z.recv, z.C});
  const OpKind activation = m.hidden_act == Activation::kSwiglu ? OpKind::kSwiglu : OpKind::kGelu;
  t = c_.emit.add(
      c_.compute_task(phase, Block::kMoeExperts, layer, mb, chunk),
      {make_op(OpKind::kGroupedLinear, a,
               {expert_in, dp_.value(K::kExpertFc1Weight, layer), recv_counts}, {fc1},
               {z.M, z.C, z.up, z.segments, z.local, 0}),
       make_op(activation, a, {fc1}, {act}, {z.M, z.F, 0, 0, 0, 0}),
       make_op(OpKind::kGroupedLinear, a, {act, dp_.value(K::kExpertFc2Weight, layer), recv_counts},
               {out}, {z.M, z.F, z.C, z.segments, z.local, 0})},
      {t});

  // Combine: partial sums reduce-scattered (expert_tp > 1), the rows sent back, weighted and
  // added to the residual.
  BufId returned = out;
  if (z.t > 1) {
    returned = make(K::kMoeReturned, a, {z.recv, z.C});
    t = moe_exchange(CollectiveKind::kReduceScatter, 0, t, {out}, {returned}, layer, mb, chunk,
                     phase);
  }
  BufId combined = returned;
  if (ep > 1) {
    combined = make(K::kMoeCombined, a, {z.S, z.C});
    t = moe_exchange(CollectiveKind::kAllToAll, 2, t, {returned}, {combined}, layer, mb, chunk,
                     phase);
  } else {
    inst[K::kMoeCombined] = combined;
  }
  const BufId y = make(K::kLayerOut, a, {z.R, z.C});
  std::vector<OpSpec> ops{
      make_op(OpKind::kMoeUnpermute, a, {combined, row_of, w}, {y}, {z.R, z.C, z.k, z.S, 0, 0}),
      make_op(OpKind::kResidualAdd, a, {residual}, {y}, {z.R, z.C, 0, 0, 0, 0})};
  if (shared != kNoBuf) {  // the shared experts' output and fc2's bias, added
    std::vector<BufId> in{shared};
    if (m.bias) in.push_back(dp_.value(K::kFc2Bias, layer));
    ops.push_back(make_op(OpKind::kResidualAdd, a, in, {y}, {z.R, z.C, 0, 0, 0, 0}));
  }
  return c_.emit.add(c_.compute_task(phase, Block::kMoeCombine, layer, mb, chunk), ops,
                     {t, shared_done});
}

TaskId ModelGraph::shared_forward(TaskId after, int layer, int mb, int chunk, Phase phase,
                                  const Instance& fwd, Instance& inst, BufId* out) {
  const int layout = c_.layout_of(layer);
  const ModelSpec& m = c_.m;
  const DType a = c_.act;
  const std::uint8_t n = phase == Phase::kRecompute ? 1 : 0;
  const std::int64_t t = c_.tp_of(layout), N = c_.tokens(layout), C = m.hidden_size;
  const std::int64_t F =
      static_cast<std::int64_t>(m.moe.n_shared_experts) * m.moe.shared_expert_intermediate_size / t;
  const std::int64_t up = (m.hidden_act == Activation::kSwiglu ? 2 : 1) * F;
  const BufId rows = inst.at(K::kNorm2Out) != kNoBuf ? inst.at(K::kNorm2Out) : fwd.at(K::kNorm2Out);
  BufId full = kNoBuf;
  after = tp_.gather(after, layout, rows, K::kNorm2Full, layer, mb, chunk, phase, n, &full);
  inst[K::kNorm2Full] = full;
  const BufId fc1 = inst[K::kFc1Out] = c_.tensor(K::kFc1Out, layer, mb, n, a, {N, up});
  const BufId act = inst[K::kMlpAct] = c_.tensor(K::kMlpAct, layer, mb, n, a, {N, F});
  const BufId partial = inst[K::kFc2Partial] = c_.tensor(K::kFc2Partial, layer, mb, n, a, {N, C});
  std::vector<BufId> in1{full, dp_.value(K::kFc1Weight, layer)};
  if (m.bias) in1.push_back(dp_.value(K::kFc1Bias, layer));
  const OpKind activation = m.hidden_act == Activation::kSwiglu ? OpKind::kSwiglu : OpKind::kGelu;
  after = c_.emit.add(c_.compute_task(phase, Block::kMlpFc1, layer, mb, chunk),
                      {make_op(OpKind::kLinear, a, in1, {fc1}, {N, C, up, 0, 0, 0}),
                       make_op(activation, a, {fc1}, {act}, {N, F, 0, 0, 0, 0})},
                      {after});
  after = c_.emit.add(c_.compute_task(phase, Block::kMlpFc2, layer, mb, chunk),
                      {make_op(OpKind::kLinear, a, {act, dp_.value(K::kFc2Weight, layer)},
                               {partial}, {N, F, C, 0, 0, 0})},
                      {after});
  after = tp_.reduce(after, layout, partial, K::kMoeSharedOut, layer, mb, chunk, phase, out);
  inst[K::kMoeSharedOut] = *out;
  return after;
}

TaskId ModelGraph::shared_backward(TaskId after, int layer, int mb, int chunk, Instance& fwd,
                                   Instance& rc, Instance& bw, BufId dy, BufId* grad_in) {
  const int layout = c_.layout_of(layer);
  const ModelSpec& m = c_.m;
  const DType a = c_.act;
  const auto sv = [&](K k) { return saved(k, layer, fwd, rc, bw); };
  const std::vector<TensorKind> owned{K::kFc1Weight, K::kFc1Bias, K::kFc2Weight, K::kFc2Bias};
  const Buffer& fc1 = c_.emit.buf(sv(K::kFc1Out));
  const std::int64_t N = fc1.shape[0], up = fc1.shape[1], C = m.hidden_size;
  const std::int64_t F = c_.emit.buf(sv(K::kMlpAct)).shape[1];
  // The output's gradient gathered (sequence parallelism), and the input rows re-gathered for
  // fc1's weight gradient, as a dense MLP's backward does.
  BufId dfull = kNoBuf, full = kNoBuf;
  after = tp_.gather(after, layout, dy, K::kFc2Partial, layer, mb, chunk, Phase::kBackward, 0,
                     &dfull, true);
  const TaskId regathered = tp_.gather(after, layout, sv(K::kNorm2Out), K::kNorm2Full, layer, mb,
                                       chunk, Phase::kBackward, 2, &full);
  const BufId dact = c_.tensor(K::kMlpAct, layer, mb, 0, a, {N, F}, true);
  const BufId dfc1 = c_.tensor(K::kFc1Out, layer, mb, 0, a, {N, up}, true);
  const BufId dx = c_.tensor(K::kNorm2Full, layer, mb, 0, a, {N, C}, true);
  Accumulation fc2_acc;
  std::vector<OpSpec> ops{
      make_op(OpKind::kLinearBwdData, a, {dfull, dp_.value(K::kFc2Weight, layer)}, {dact},
              {N, F, C, 0, 0, 0}),
      make_op(OpKind::kLinearBwdWeight, a, {dfull, sv(K::kMlpAct)},
              {param_grad(K::kFc2Weight, layer, owned, fc2_acc)}, {N, F, C, 0, 0, 0})};
  finish_accumulation(fc2_acc, ops);
  after = backward_task(Block::kMlpFc2, layer, mb, chunk, ops, {after});
  Accumulation fc1_acc;
  std::vector<BufId> wgrads{param_grad(K::kFc1Weight, layer, owned, fc1_acc)};
  if (m.bias) wgrads.push_back(param_grad(K::kFc1Bias, layer, owned, fc1_acc));
  const OpKind activation =
      m.hidden_act == Activation::kSwiglu ? OpKind::kSwigluBwd : OpKind::kGeluBwd;
  ops = {make_op(activation, a, {dact, sv(K::kFc1Out)}, {dfc1}, {N, F, 0, 0, 0, 0}),
         make_op(OpKind::kLinearBwdData, a, {dfc1, dp_.value(K::kFc1Weight, layer)}, {dx},
                 {N, C, up, 0, 0, 0}),
         make_op(OpKind::kLinearBwdWeight, a, {dfc1, full}, wgrads, {N, C, up, 0, 0, 0})};
  finish_accumulation(fc1_acc, ops);
  after = backward_task(Block::kMlpFc1, layer, mb, chunk, ops, {after}, regathered);
  return tp_.reduce(after, layout, dx, K::kNorm2Out, layer, mb, chunk, Phase::kBackward, grad_in,
                    true);
}

TaskId ModelGraph::moe_backward(TaskId x, int layer, int mb, int chunk, Instance& fwd,
                                Instance& rc, Instance& bw, TaskId extra) {
  const MoeShape z = moe_shape(c_, layer);
  const DType a = c_.act;
  const auto sv = [&](K k) { return saved(k, layer, fwd, rc, bw); };
  const auto grad = [&](K k, std::initializer_list<std::int64_t> shape, DType dtype) {
    return bw.grad_of(k) = c_.tensor(k, layer, mb, 0, dtype, shape, true);
  };
  const BufId dy = bw.grad_of(K::kLayerOut);
  STRATA_CHECK(dy != kNoBuf, "the MoE backward needs its output's gradient");
  const std::vector<TensorKind> owned{K::kRouterWeight, K::kExpertFc1Weight,
                                      K::kExpertFc2Weight, K::kFc2Bias};

  // Combine: the residual's gradient passes on; the rows' and the weights' gradients.
  const BufId w = sv(K::kRouterWeights), row_of = sv(K::kMoeRowOf);
  const BufId dcombined = grad(K::kMoeCombined, {z.S, z.C}, a);
  const BufId dw = grad(K::kRouterWeights, {z.R, z.k}, DType::kFp32);
  const bool shared = c_.m.moe.n_shared_experts > 0;
  Accumulation bias;
  std::vector<OpSpec> combine{
      make_op(OpKind::kResidualAddBwd, a, {dy}, {}, {z.R, z.C, 0, 0, 0, 0}),
      make_op(OpKind::kMoeUnpermuteBwd, a, {dy, sv(K::kMoeCombined), row_of, w}, {dcombined, dw},
              {z.R, z.C, z.k, z.S, 0, 0})};
  if (shared && c_.m.bias) {  // the shared experts' fc2 bias
    combine.front().out.push_back(param_grad(K::kFc2Bias, layer, owned, bias));
  }
  finish_accumulation(bias, combine);
  TaskId t = c_.emit.add(c_.compute_task(Phase::kBackward, Block::kMoeCombine, layer, mb, chunk),
                         combine, {x, extra});
  bw.pending(K::kAttnOut) = dy;
  // The shared experts' backward, beside the routed experts' all-to-alls.
  BufId dx_shared = kNoBuf;
  const TaskId shared_done =
      shared ? shared_backward(t, layer, mb, chunk, fwd, rc, bw, dy, &dx_shared) : kNoTask;
  const bool ep = c_.s.ep > 1;  // else no all-to-all: the rows stay on the rank
  BufId dreturned = dcombined;
  if (ep) {
    dreturned = grad(K::kMoeReturned, {z.recv, z.C}, a);
    t = moe_exchange(CollectiveKind::kAllToAll, 1, t, {dcombined}, {dreturned}, layer, mb, chunk,
                     Phase::kBackward);
  }
  BufId dout = dreturned;
  if (z.t > 1) {
    dout = grad(K::kMoeExpertOut, {z.M, z.C}, a);
    t = moe_exchange(CollectiveKind::kAllGather, 0, t, {dreturned}, {dout}, layer, mb, chunk,
                     Phase::kBackward);
  }

  // The experts: data and weight gradients of fc2, the activation, fc1.
  const BufId counts = sv(K::kMoeRecvCounts), expert_in = sv(K::kMoeExpertIn);
  const BufId w1 = dp_.value(K::kExpertFc1Weight, layer);
  const BufId w2 = dp_.value(K::kExpertFc2Weight, layer);
  const BufId dact = grad(K::kMoeAct, {z.M, z.F}, a);
  const BufId dfc1 = grad(K::kMoeFc1Out, {z.M, z.up}, a);
  const BufId din = grad(K::kMoeExpertIn, {z.M, z.C}, a);
  const OpKind activation =
      c_.m.hidden_act == Activation::kSwiglu ? OpKind::kSwigluBwd : OpKind::kGeluBwd;
  const std::array<std::int64_t, 6> g1{z.M, z.C, z.up, z.segments, z.local, 0};
  const std::array<std::int64_t, 6> g2{z.M, z.F, z.C, z.segments, z.local, 0};
  Accumulation experts;
  std::vector<OpSpec> ops{
      make_op(OpKind::kGroupedLinearBwdData, a, {dout, w2, counts}, {dact}, g2),
      make_op(OpKind::kGroupedLinearBwdWeight, a, {dout, sv(K::kMoeAct), counts},
              {param_grad(K::kExpertFc2Weight, layer, owned, experts)}, g2),
      make_op(activation, a, {dact, sv(K::kMoeFc1Out)}, {dfc1}, {z.M, z.F, 0, 0, 0, 0}),
      make_op(OpKind::kGroupedLinearBwdData, a, {dfc1, w1, counts}, {din}, g1),
      make_op(OpKind::kGroupedLinearBwdWeight, a, {dfc1, expert_in, counts},
              {param_grad(K::kExpertFc1Weight, layer, owned, experts)}, g1)};
  finish_accumulation(experts, ops);
  t = backward_task(Block::kMoeExperts, layer, mb, chunk, ops, {t});

  // Dispatch in reverse: (expert_tp > 1) reduce-scattered, then the rows sent home.
  BufId dreceived = din;
  if (z.t > 1) {
    dreceived = grad(K::kMoeReceived, {z.recv, z.C}, a);
    t = moe_exchange(CollectiveKind::kReduceScatter, 0, t, {din}, {dreceived}, layer, mb, chunk,
                     Phase::kBackward);
  }
  BufId dpermuted = dreceived;
  if (ep) {
    dpermuted = grad(K::kMoePermuted, {z.S, z.C}, a);
    t = moe_exchange(CollectiveKind::kAllToAll, 2, t, {dreceived}, {dpermuted}, layer, mb, chunk,
                     Phase::kBackward);
  }

  // Router: the logits' gradient through the top-k weights (and the auxiliary loss), the
  // router GEMM's two gradients, and the permutation's gradient added into dx.
  const BufId xin = sv(K::kNorm2Out);
  const BufId dlogits = grad(K::kRouterLogits, {z.R, z.E}, a);
  const BufId dx = c_.tensor(K::kNorm2Out, layer, mb, 0, a, {z.R, z.C}, true);
  bw.grad_of(K::kNorm2Out) = dx;
  OpSpec route = make_op(OpKind::kMoeRouteBwd, a, {dw, sv(K::kRouterProbs),
                                                   sv(K::kRouterIndices)},
                         {dlogits}, {z.R, z.E, z.k, c_.m.moe.norm_topk_prob ? 1 : 0, 0, 0});
  route.param = static_cast<float>(c_.m.moe.router_aux_loss_coef);
  OpSpec permute = make_op(OpKind::kMoePermuteBwd, a, {dpermuted, row_of}, {dx},
                           {z.R, z.C, z.E, z.k, z.S, z.capacity});
  permute.flags = kAccumulate;
  Accumulation router;
  ops = {route,
         make_op(OpKind::kLinearBwdData, a, {dlogits, dp_.value(K::kRouterWeight, layer)}, {dx},
                 {z.R, z.C, z.E, 0, 0, 0}),
         make_op(OpKind::kLinearBwdWeight, a, {dlogits, xin},
                 {param_grad(K::kRouterWeight, layer, owned, router)}, {z.R, z.C, z.E, 0, 0, 0}),
         permute};
  if (dx_shared != kNoBuf) {  // the shared experts' part of the input gradient, added
    ops.push_back(make_op(OpKind::kGradAccumulate, a, {dx_shared}, {dx},
                          {z.R * z.C, dtype_bytes(a), 0, 0, 0, 0}));
  }
  finish_accumulation(router, ops);
  // After the shared experts' gradient too (reduce-scattered on the tp stream under sp).
  return backward_task(Block::kMoeRouter, layer, mb, chunk, ops, {t, shared_done});
}

// A backward task of the MoE block after `after` (its weight gradients also after `weights`:
// a re-gathered input); under a zero-bubble schedule its weight gradients are left to the W
// unit of its micro-batch, as a dense block's are.
TaskId ModelGraph::backward_task(Block block, int layer, int mb, int chunk,
                                 const std::vector<OpSpec>& ops, std::vector<TaskId> after,
                                 TaskId weights) {
  const Task task = c_.compute_task(Phase::kBackward, block, layer, mb, chunk);
  if (!split_) {
    after.push_back(weights);
    return c_.emit.add(task, ops, std::move(after));
  }
  auto [input, weight] = split_weight_gradients(ops);
  const TaskId x = c_.emit.add(task, input, std::move(after));
  if (!weight.empty()) weight_tasks_[{chunk, mb}].push_back({task, weight, {x, weights}});
  return x;
}

}  // namespace strata::strategies::detail
