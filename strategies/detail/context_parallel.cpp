// Context parallelism's attention core (Megatron-Core's --context-parallel-size): each rank of
// the cp group holds two load-balanced chunks of every sequence (chunks r and 2cp-1-r of 2cp),
// so every other block runs on 1/cp of the tokens unchanged; only the attention needs the other
// ranks' keys and values. Two ways to bring them (strategy cp_comm):
//
//   p2p (ring): cp steps; at step i the rank attends to the block of rank (r - i) mod cp while
//       the ring shift of the next block runs on the cp stream; the partial results merge by
//       their log-sum-exp. The backward sends the blocks around again, each with the gradient
//       of its keys and values that every rank adds to, and one last shift brings each block's
//       gradient home (Megatron-Core's AttnFuncWithCPAndKVP2P).
//   all_gather: all ranks' keys and values gathered before the attention; their gradients
//       reduce-scattered back after its backward.
//
// Both re-obtain the keys and values in the backward instead of keeping other ranks' blocks.
// The rank's own k and v are packed out of qkv first (the exchanged tensor is contiguous).
#include "common/error.hpp"
#include "strategies/detail/lowering.hpp"

namespace strata::strategies::detail {

using K = TensorKind;

namespace {

// Instance numbers of the exchanged key/value buffers (names only): forward, recompute and
// backward uses of ring step i get distinct names.
std::uint8_t kv_instance(Phase phase, int step, int cp) {
  const int base = phase == Phase::kForward ? 0 : phase == Phase::kRecompute ? 1 : 2;
  return static_cast<std::uint8_t>(2 + base * cp + step);
}

}  // namespace

TaskId ModelGraph::cp_pack(TaskId after, BufId qkv, int layer, int mb, int chunk, Phase phase,
                           std::uint8_t instance, BufId* kv) {
  const int layout = c_.layout_of(layer);
  const std::int64_t t = c_.tp_of(layout), N = c_.tokens(layout);
  const std::int64_t C = c_.m.hidden_size / t, hk = c_.m.kv_hidden() / t;
  *kv = c_.tensor(K::kAttnKv, layer, mb, instance, c_.act, {N, 2 * hk});
  OpSpec op;
  op.kind = OpKind::kKvPack;
  op.dtype = c_.act;
  op.dims = {N, C, hk, 0, 0, 0};
  op.in = {qkv};
  op.out = {*kv};
  return c_.emit.add(c_.compute_task(phase, Block::kAttnCore, layer, mb, chunk), {op}, {after});
}

TaskId ModelGraph::cp_exchange(CollectiveKind kind, TaskId after, BufId in, BufId out, int layer,
                               int mb, int chunk, Phase phase) {
  const GroupRef group = c_.cp_group(c_.layout_of(layer));
  OpSpec op;
  op.kind = kind == CollectiveKind::kRingShift   ? OpKind::kRingShift
            : kind == CollectiveKind::kAllGather ? OpKind::kAllGather
                                                 : OpKind::kReduceScatter;
  op.dtype = c_.act;
  op.group = group;
  op.in = {in};
  op.out = {out};
  // The message as nccl-tests sizes it: the gathered (or reduced) whole, or the block shifted.
  op.dims[0] = kind == CollectiveKind::kAllGather ? c_.emit.elements(out) : c_.emit.elements(in);
  Task t = c_.collective_task(kind, Purpose::kCp, group, phase, layer, mb, chunk);
  // A ring shift is a grouped send and receive between neighbours: its tag (the task's index,
  // the same on every member of the group, which run one program) matches them.
  if (kind == CollectiveKind::kRingShift) t.tag = static_cast<std::uint32_t>(c_.emit.num_tasks());
  return c_.emit.add(t, {op}, {after});
}

TaskId ModelGraph::cp_attention_forward(TaskId x, int layer, int mb, int chunk, Phase phase,
                                        const Instance& fwd, Instance& inst, TaskId extra) {
  const int layout = c_.layout_of(layer);
  const int cp = c_.s.cp;
  const std::uint8_t number = phase == Phase::kRecompute ? 1 : 0;
  const BufId qkv = inst.at(K::kQkv) != kNoBuf ? inst.at(K::kQkv) : fwd.at(K::kQkv);
  STRATA_CHECK(qkv != kNoBuf, "the attention core needs qkv");
  inst[K::kAttnCtx] = new_tensor(K::kAttnCtx, layer, mb, number);
  inst[K::kAttnLse] = new_tensor(K::kAttnLse, layer, mb, number);
  const BufId ctx = inst[K::kAttnCtx], lse = inst[K::kAttnLse];

  BufId kv = kNoBuf;
  TaskId packed = cp_pack(x, qkv, layer, mb, chunk, phase, kv_instance(phase, 0, cp), &kv);
  const std::int64_t t = c_.tp_of(layout), B = c_.samples(layout), Tq = c_.seq_local();
  OpSpec attn;
  attn.kind = OpKind::kCpAttention;
  attn.dtype = c_.act;
  attn.group = c_.cp_group(layout);
  attn.dims = {B, Tq, c_.m.hidden_size / t, c_.m.num_attention_heads / t, c_.m.kv_hidden() / t, Tq};
  attn.out = {ctx, lse};
  const auto attend = [&](BufId block, int step, std::int64_t Tk, TaskId ready) {
    OpSpec op = attn;
    op.dims[5] = Tk;
    op.param = static_cast<float>(step);  // ring step; -1: every rank's keys, gathered
    if (step > 0) op.flags |= kAccumulate;  // merged into the earlier steps' result
    op.in = {qkv, block};
    return c_.emit.add(c_.compute_task(phase, Block::kAttnCore, layer, mb, chunk), {op},
                       {ready, extra});
  };

  if (c_.s.cp_comm == CpComm::kAllGather) {
    const BufId all = c_.tensor(K::kAttnKvBlock, layer, mb, kv_instance(phase, 0, cp), c_.act,
                                {cp * c_.emit.buf(kv).shape[0], c_.emit.buf(kv).shape[1]});
    const TaskId gathered =
        cp_exchange(CollectiveKind::kAllGather, packed, kv, all, layer, mb, chunk, phase);
    return attend(all, -1, cp * Tq, gathered);
  }
  // The ring: block i arrives while block i-1 is attended to.
  BufId block = kv;
  TaskId ready = packed, last = kNoTask;
  for (int step = 0; step < cp; ++step) {
    BufId next = kNoBuf;
    TaskId arrives = kNoTask;
    if (step + 1 < cp) {
      next = c_.tensor(K::kAttnKvBlock, layer, mb, kv_instance(phase, step + 1, cp), c_.act,
                       {c_.emit.buf(kv).shape[0], c_.emit.buf(kv).shape[1]});
      arrives = cp_exchange(CollectiveKind::kRingShift, ready, block, next, layer, mb, chunk,
                            phase);
    }
    last = attend(block, step, Tq, ready);
    block = next;
    ready = arrives;
  }
  return last;
}

TaskId ModelGraph::cp_attention_backward(TaskId x, int layer, int mb, int chunk, Instance& fwd,
                                         Instance& rc, Instance& bw, TaskId extra) {
  const int layout = c_.layout_of(layer);
  const int cp = c_.s.cp;
  const BufId qkv = saved(K::kQkv, layer, fwd, rc, bw);
  const BufId ctx = saved(K::kAttnCtx, layer, fwd, rc, bw);
  const BufId lse = saved(K::kAttnLse, layer, fwd, rc, bw);
  const BufId dctx = bw.grad_of(K::kAttnCtx);
  STRATA_CHECK(dctx != kNoBuf, "the attention backward needs the context's gradient");
  const BufId dqkv = new_grad(qkv);
  bw.grad_of(K::kQkv) = dqkv;

  BufId kv = kNoBuf;
  const TaskId packed =
      cp_pack(x, qkv, layer, mb, chunk, Phase::kBackward, kv_instance(Phase::kBackward, 0, cp),
              &kv);
  const std::int64_t t = c_.tp_of(layout), B = c_.samples(layout), Tq = c_.seq_local();
  const std::int64_t rows = c_.emit.buf(kv).shape[0], width = c_.emit.buf(kv).shape[1];
  OpSpec attn;
  attn.kind = OpKind::kCpAttentionBwd;
  attn.dtype = c_.act;
  attn.group = c_.cp_group(layout);
  attn.dims = {B, Tq, c_.m.hidden_size / t, c_.m.num_attention_heads / t, c_.m.kv_hidden() / t, Tq};
  // dq into d(qkv)'s q columns, dk and dv into the block's gradient.
  const auto attend = [&](BufId block, BufId dblock, int step, std::int64_t Tk, TaskId ready,
                          TaskId dready, bool accumulate) {
    OpSpec op = attn;
    op.dims[5] = Tk;
    op.param = static_cast<float>(step);
    if (accumulate) op.flags |= kAccumulate;  // dq and the travelling dk, dv are added to
    op.in = {dctx, qkv, block, ctx, lse};
    op.out = {dqkv, dblock};
    return c_.emit.add(c_.compute_task(Phase::kBackward, Block::kAttnCore, layer, mb, chunk), {op},
                       {ready, dready, extra});
  };
  const auto unpack = [&](BufId dkv, TaskId ready) {
    OpSpec op;
    op.kind = OpKind::kKvUnpack;
    op.dtype = c_.act;
    op.dims = {rows, c_.m.hidden_size / t, width / 2, 0, 0, 0};
    op.in = {dkv};
    op.out = {dqkv};
    return c_.emit.add(c_.compute_task(Phase::kBackward, Block::kAttnCore, layer, mb, chunk),
                       {op}, {ready});
  };

  if (c_.s.cp_comm == CpComm::kAllGather) {
    const std::uint8_t n = kv_instance(Phase::kBackward, 0, cp);
    const BufId all = c_.tensor(K::kAttnKvBlock, layer, mb, n, c_.act, {cp * rows, width});
    const TaskId gathered =
        cp_exchange(CollectiveKind::kAllGather, packed, kv, all, layer, mb, chunk,
                    Phase::kBackward);
    const BufId dall = c_.tensor(K::kAttnKvBlock, layer, mb, n, c_.act, {cp * rows, width}, true);
    const TaskId done = attend(all, dall, -1, cp * Tq, gathered, kNoTask, false);
    const BufId dkv = c_.tensor(K::kAttnKv, layer, mb, n, c_.act, {rows, width}, true);
    const TaskId reduced = cp_exchange(CollectiveKind::kReduceScatter, done, dall, dkv, layer, mb,
                                       chunk, Phase::kBackward);
    return unpack(dkv, reduced);
  }
  // The ring again, the rank's own block last: block r-i arrives at step i (i = 1 .. cp-1)
  // with the gradient of its keys and values so far (started by rank r-i+1 at its step 1);
  // this rank adds its share and passes it on, so that every gradient reaches its owner just
  // before the owner's own step: cp-1 shifts of the blocks and cp-1 of their gradients, the
  // all-gather and reduce-scatter volumes of Megatron-Core's documentation.
  BufId block = kv, dblock = kNoBuf;
  TaskId ready = packed, dready = kNoTask;
  for (int step = 1; step <= cp; ++step) {
    const bool own = step == cp;
    const std::uint8_t n = kv_instance(Phase::kBackward, own ? 0 : step, cp);
    BufId next = kv;
    TaskId moved = packed;
    if (!own) {
      next = c_.tensor(K::kAttnKvBlock, layer, mb, n, c_.act, {rows, width});
      moved = cp_exchange(CollectiveKind::kRingShift, ready, block, next, layer, mb, chunk,
                          Phase::kBackward);
    }
    if (step == 1) {
      dblock = c_.tensor(K::kAttnKvBlock, layer, mb, n, c_.act, {rows, width}, true);
    }
    // Step 1 writes dq and a fresh gradient; every later step adds to both.
    const TaskId done = attend(next, dblock, own ? 0 : step, Tq, moved, dready, step > 1);
    if (own) return unpack(dblock, done);
    const BufId dnext =
        c_.tensor(K::kAttnKvBlock, layer, mb, kv_instance(Phase::kBackward, step + 1, cp),
                  c_.act, {rows, width}, true);
    dready = cp_exchange(CollectiveKind::kRingShift, done, dblock, dnext, layer, mb, chunk,
                         Phase::kBackward);
    dblock = dnext;
    block = next;
    ready = moved;
  }
  STRATA_CHECK(false, "the context-parallel ring ended without the rank's own block");
  return kNoTask;
}

}  // namespace strata::strategies::detail
