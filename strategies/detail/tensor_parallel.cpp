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

// ---- tensor-parallel communication overlap (strategy tp_comm_overlap) -----------------------
//
// Transformer Engine's userbuffers as Megatron-Core configures them (--tp-comm-overlap): a
// sequence-parallel all-gather followed by a GEMM, or a GEMM followed by a reduce-scatter, runs
// as tp GEMMs on row chunks beside a ring of tp - 1 shifts to the next rank of the tp group
// ("ring_exchange"; docs/plan.md "Tensor-parallel communication overlap"). Chunk k of rank r is
// the rows of rank (r - k) mod tp for a gather, (r - k - 1) mod tp for a scatter, so every chunk
// but the first (the last, for a scatter) has its rows in flight while the previous one
// computes. A GEMM that runs beside a shift carries the SMs the communication holds in
// Op::param (tp_comm_overlap_sms), which the cost model takes from the device.

namespace strata::strategies::detail {

BufId TensorParallel::part(BufId parent, int layout, int k) {
  const int tp = c_.tp_of(layout);
  Buffer b = c_.emit.buf(parent);
  const std::int64_t rows = b.shape[0] / tp;
  STRATA_CHECK(b.ndim == 2 && rows * tp == b.shape[0], "a ring chunk of a tensor not in row blocks");
  b.persistent = false;
  b.bucket = -1;
  b.shape = {rows, b.shape[1], 0, 0};
  b.view_of = parent;
  b.view_offset = rows * b.shape[1];
  b.view_group = c_.tp_group(layout);
  b.view_rotate = static_cast<std::uint8_t>(((tp - k) % tp + tp) % tp);
  b.first_task = b.last_task = 0;
  return c_.emit.buffer(b);
}

TaskId TensorParallel::ring_shift(TaskId after, int layout, BufId in, BufId out,
                                  const Task& compute) {
  Task t = c_.collective_task(CollectiveKind::kRingShift, Purpose::kTp, c_.tp_group(layout),
                              compute.phase, compute.layer, compute.micro_batch, compute.chunk);
  // A grouped send and receive between neighbours, matched by the task's index (the same on
  // every member of the group, which run one program).
  t.tag = static_cast<std::uint32_t>(c_.emit.num_tasks());
  OpSpec op = comm_op(OpKind::kRingShift, c_.emit.buf(in).dtype, in, out, c_.emit.elements(in));
  op.group = c_.tp_group(layout);
  return c_.emit.add(t, {op}, {after});
}

TaskId TensorParallel::gather_linear(TaskId after, TaskId extra, int layout, BufId rows,
                                     const std::vector<OpSpec>& ops, std::size_t li,
                                     const Task& compute, bool keep_full) {
  const int tp = c_.tp_of(layout);
  const BufId full = ops[li].in[0], y = ops[li].out[0];
  TaskId ready = after, last = kNoTask;
  BufId src = rows;
  if (li > 0) {  // the ops before the GEMM (its casts, a bias gradient) first: the ring may send
                 // what they write
    const std::vector<OpSpec> before(ops.begin(), ops.begin() + static_cast<std::ptrdiff_t>(li));
    ready = c_.emit.add(compute, before, {after, extra});
  }
  for (int k = 0; k < tp; ++k) {
    TaskId shifted = kNoTask;
    BufId next = kNoBuf;
    if (k + 1 < tp) {  // the rows of rank r - k - 1 arrive while chunk k computes
      next = part(full, layout, k + 1);
      shifted = ring_shift(ready, layout, src, next, compute);
    }
    std::vector<OpSpec> step;
    if (k == 0 && keep_full) {  // the rank's own rows into the gathered tensor a later GEMM reads
      step.push_back(comm_op(OpKind::kCopy, c_.emit.buf(rows).dtype, rows, part(full, layout, 0),
                             c_.emit.elements(rows)));
    }
    OpSpec g = ops[li];
    g.in[0] = src;
    g.out[0] = part(y, layout, k);
    g.dims[0] /= tp;
    if (k + 1 < tp) g.param = static_cast<float>(c_.s.tp_comm_overlap_sms);
    step.push_back(g);
    last = c_.emit.add(compute, step, {ready, k == 0 ? extra : kNoTask});
    ready = shifted;
    src = next;
  }
  if (li + 1 < ops.size()) {
    const std::vector<OpSpec> rest(ops.begin() + static_cast<std::ptrdiff_t>(li) + 1, ops.end());
    last = c_.emit.add(compute, rest, {last});
  }
  return last;
}

TaskId TensorParallel::linear_scatter(TaskId after, TaskId extra, int layout,
                                      const std::vector<OpSpec>& ops, std::size_t li, BufId out,
                                      const Task& compute) {
  const int tp = c_.tp_of(layout);
  const BufId x = ops[li].in[0], partial = ops[li].out[0];
  const Buffer& p = c_.emit.buf(partial);
  const std::int64_t rows = p.shape[0] / tp, cols = p.shape[1];
  const DType dtype = p.dtype;
  const TensorKind kind = p.kind;
  const bool grad = p.grad;
  const std::uint8_t base =
      static_cast<std::uint8_t>(3 + (compute.phase == Phase::kRecompute ? tp : 0));
  TaskId shifted = kNoTask, done = kNoTask;
  BufId received = kNoBuf;
  for (int k = 0; k < tp; ++k) {
    const bool own = k + 1 == tp;  // the last chunk is the rank's own rows
    const BufId dst = own ? out : part(partial, layout, k + 1);
    std::vector<OpSpec> step;
    if (k == 0) step.assign(ops.begin(), ops.begin() + static_cast<std::ptrdiff_t>(li));
    OpSpec g = ops[li];
    g.in[0] = part(x, layout, k + 1);
    g.out[0] = dst;
    g.dims[0] /= tp;
    if (k > 0) g.param = static_cast<float>(c_.s.tp_comm_overlap_sms);  // beside shift k - 1
    step.push_back(g);
    done = c_.emit.add(compute, step, {k == 0 ? after : kNoTask, k == 0 ? extra : kNoTask});
    if (k > 0) {  // the partial sums so far, received, added to this rank's
      OpSpec add;
      add.kind = OpKind::kGradAccumulate;
      add.dtype = dtype;
      add.in = {received};
      add.out = {dst};
      add.dims[0] = rows * cols;
      add.dims[1] = dtype_bytes(dtype);
      std::vector<OpSpec> adds = {add};
      if (own) {  // the block's epilogue (the residual add) on the rank's rows, now whole
        for (std::size_t i = li + 1; i < ops.size(); ++i) {
          OpSpec e = ops[i];
          for (BufId& o : e.out) {
            if (o == partial) o = out;
          }
          e.flags = static_cast<std::uint8_t>(e.flags & ~kOwnRows);
          e.group = {};
          adds.push_back(e);
        }
      }
      done = c_.emit.add(compute, adds, {shifted});
    }
    if (!own) {
      received = c_.tensor(kind, compute.layer, compute.micro_batch,
                           static_cast<std::uint8_t>(base + k), dtype, {rows, cols}, grad);
      shifted = ring_shift(done, layout, dst, received, compute);
    }
  }
  return done;
}

}  // namespace strata::strategies::detail
