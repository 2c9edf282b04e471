// Tensor and sequence parallelism: Megatron's conjugate operators "f" (identity forward,
// all-reduce backward) and "g" (all-reduce forward, identity backward), which sequence
// parallelism turns into all-gather / reduce-scatter pairs (Korthikanti et al. 2022, sec. 4.2.2),
// and the resharding between layers with different tp (Galvatron-style overrides).
#include "common/error.hpp"
#include "strategies/detail/lowering.hpp"

namespace strata::strategies::detail {
namespace {

OpSpec comm_op(OpKind kind, DType dtype, BufId in, BufId out, std::int64_t elements) {
  OpSpec op;
  op.kind = kind;
  op.dtype = dtype;
  op.in = {in};
  op.out = {out};
  op.dims[0] = elements;
  return op;
}

}  // namespace

TaskId TensorParallel::reduce(TaskId after, int layout, BufId partial, TensorKind out_kind,
                              int layer, int mb, int chunk, Phase phase, BufId* out, bool grad) {
  *out = partial;
  if (c_.tp_of(layout) == 1) return after;
  const std::int64_t n = c_.emit.elements(partial);
  const Task t = c_.collective_task(
      c_.sp(layout) ? CollectiveKind::kReduceScatter : CollectiveKind::kAllReduce, Purpose::kTp,
      c_.tp_group(layout), phase, layer, mb, chunk);
  if (!c_.sp(layout)) {
    // All-reduce in place: the partial sums become the sum.
    return c_.emit.add(t, {comm_op(OpKind::kAllReduce, c_.act, partial, partial, n)}, {after});
  }
  const Buffer& p = c_.emit.buf(partial);
  *out = c_.tensor(out_kind, layer, mb, p.instance, c_.act, {c_.rows(layout), c_.m.hidden_size},
                   grad);
  return c_.emit.add(t, {comm_op(OpKind::kReduceScatter, c_.act, partial, *out, n)}, {after});
}

TaskId TensorParallel::gather(TaskId after, int layout, BufId rows, TensorKind full_kind,
                              int layer, int mb, int chunk, Phase phase, std::uint8_t instance,
                              BufId* full, bool grad) {
  *full = rows;
  if (!c_.sp(layout)) return after;
  // Rows quantized to FP8 (strategy fp8: a norm that feeds an FP8 GEMM) are gathered in FP8, as
  // Transformer Engine gathers the quantized input under sequence parallelism.
  const DType dtype = c_.emit.buf(rows).dtype == DType::kFp8 ? DType::kFp8 : c_.act;
  *full = c_.tensor(full_kind, layer, mb, instance, dtype, {c_.tokens(layout), c_.m.hidden_size},
                    grad);
  const Task t = c_.collective_task(CollectiveKind::kAllGather, Purpose::kTp, c_.tp_group(layout),
                                    phase, layer, mb, chunk);
  return c_.emit.add(t, {comm_op(OpKind::kAllGather, dtype, rows, *full, c_.emit.elements(*full))},
                     {after});
}

namespace {

// A view of the rank's slice (its index in `group`) of `parent`'s first dimension.
BufId slice_view(StageContext& c, BufId parent, TensorKind kind, int layer, int mb,
                 const GroupRef& group, std::int64_t rows, bool grad) {
  const Buffer& p = c.emit.buf(parent);
  Buffer b;
  b.kind = kind;
  b.grad = grad;
  b.role = p.role;
  b.dtype = p.dtype;
  b.ndim = 2;
  b.layer = static_cast<std::int16_t>(layer);
  b.micro_batch = mb;
  b.shape = {rows, p.shape[1], 0, 0};
  b.view_of = parent;
  b.view_offset = rows * p.shape[1];
  b.view_group = group;
  return c.emit.buffer(b);
}

}  // namespace

TaskId TensorParallel::reshard(TaskId after, int from, int to, BufId in, int layer, int mb,
                               int chunk, Phase phase, BufId* out) {
  *out = in;
  if (from == to) return after;
  STRATA_CHECK(!c_.s.sequence_parallel, "a tp change with sequence parallelism is not lowered");
  const bool grows = c_.tp_of(to) > c_.tp_of(from);
  const int big = grows ? to : from, small = grows ? from : to;
  const GroupRef g{GroupKind::kReshard, static_cast<std::uint8_t>(big),
                   static_cast<std::uint8_t>(small)};
  if (!grows) {  // the new replicas split the micro-batch: a local slice
    *out = slice_view(c_, in, TensorKind::kResharded, layer, mb, g, c_.tokens(to), false);
    return after;
  }
  // Growing tp merges replicas: all-gather the micro-batch across the ranks that held the same
  // old shard.
  *out = c_.tensor(TensorKind::kResharded, layer, mb, 0, c_.act, {c_.tokens(to), c_.m.hidden_size});
  const Task t = c_.collective_task(CollectiveKind::kAllGather, Purpose::kReshard, g, phase,
                                    layer, mb, chunk);
  return c_.emit.add(
      t, {comm_op(OpKind::kAllGather, c_.act, in, *out, c_.emit.elements(*out))}, {after});
}

TaskId TensorParallel::reshard_grad(TaskId after, int from, int to, BufId grad_in, int layer,
                                    int mb, int chunk, BufId* grad_out) {
  *grad_out = grad_in;
  if (from == to) return after;
  const bool grows = c_.tp_of(to) > c_.tp_of(from);
  const int big = grows ? to : from, small = grows ? from : to;
  const GroupRef g{GroupKind::kReshard, static_cast<std::uint8_t>(big),
                   static_cast<std::uint8_t>(small)};
  const TensorKind kind = c_.emit.buf(grad_in).kind;
  if (grows) {  // the forward gathered: the gradient of this rank's part is a slice
    *grad_out = slice_view(c_, grad_in, kind, layer, mb, g, c_.tokens(from), true);
    return after;
  }
  // The forward sliced: all-gather the gradients of the slices.
  *grad_out = c_.tensor(kind, layer, mb, 0, c_.act, {c_.tokens(from), c_.m.hidden_size}, true);
  const Task t = c_.collective_task(CollectiveKind::kAllGather, Purpose::kReshard, g,
                                    Phase::kBackward, layer, mb, chunk);
  return c_.emit.add(
      t, {comm_op(OpKind::kAllGather, c_.act, grad_in, *grad_out, c_.emit.elements(*grad_out))},
      {after});
}

}  // namespace strata::strategies::detail
