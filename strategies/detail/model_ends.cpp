// The ends of the model: the first virtual stage's data and vocabulary-parallel embedding, and
// the last one's final norm, LM head and vocabulary-parallel cross-entropy (Megatron's
// VocabParallelEmbedding and vocab_parallel_cross_entropy), forward and backward.
#include "common/error.hpp"
#include "strategies/detail/lowering.hpp"

namespace strata::strategies::detail {
namespace {
using K = TensorKind;
}  // namespace

BufId ModelGraph::loss_buffer() {
  if (loss_ != kNoBuf) return loss_;
  Buffer b;
  b.kind = K::kLoss;
  b.role = Role::kLogits;
  b.dtype = DType::kFp64;  // the step's loss, summed over micro-batches
  b.persistent = true;
  b.shape = {1, 0, 0, 0};
  loss_ = c_.emit.buffer(b);
  return loss_;
}

// ZeRO-3's gathered copies are numbered by use: 0 and 2 the embedding's (or a layer's) forward
// and backward, 1 a recompute, 3 and 4 the head's, so a bucket the embedding and a tied head
// both gather gets a name per use.
TensorKind ModelGraph::head_weight() const {
  return dp_.has(K::kLmHeadWeight, -1) ? K::kLmHeadWeight : K::kWordEmbedding;
}

TaskId ModelGraph::gather_head(TaskId after, Phase phase, int mb, int chunk,
                               std::uint8_t instance) {
  if (c_.s.zero_stage != 3) return kNoTask;
  return dp_.gather(after, {K::kFinalNormWeight, head_weight()}, -1, phase, mb, chunk, instance);
}

TaskId ModelGraph::embedding_forward(int mb, int chunk, BufId* out) {
  const ModelSpec& m = c_.m;
  Instance& e = ends_[{chunk, mb}];
  const std::vector<TensorKind> params{K::kWordEmbedding, K::kPositionEmbedding};
  const TaskId gathered = c_.s.zero_stage == 3
                              ? dp_.gather(kNoTask, params, -1, Phase::kForward, mb, chunk, 0)
                              : kNoTask;
  const std::int64_t B = c_.samples(0), T = m.seq_length, N = c_.tokens(0), C = m.hidden_size;
  const std::int64_t Tl = c_.seq_local();
  const bool sp = c_.sp(0);
  // The micro-batch's samples: this replica's share of the global batch, in micro-batch order;
  // with context parallelism (dims[4] = cp) the rank's two chunks of each.
  const std::int64_t cp = c_.s.cp > 1 ? c_.s.cp : 0;
  OpSpec load;
  load.kind = OpKind::kLoadBatch;
  load.dtype = DType::kInt32;
  load.group = c_.dp_group(0);
  load.dims = {B, Tl, mb * B, static_cast<std::int64_t>(c_.plan.num_micro_batches) * B, cp, 0};
  e[K::kTokens] = c_.tensor(K::kTokens, -1, mb, 0, DType::kInt32, {B, Tl});
  c_.emit.buf(e[K::kTokens]).role = Role::kInput;
  load.out = {e[K::kTokens]};
  if (c_.last_virtual_stage(c_.virtual_stage(chunk))) {
    e[K::kTargets] = c_.tensor(K::kTargets, -1, mb, 0, DType::kInt32, {B, Tl});
    c_.emit.buf(e[K::kTargets]).role = Role::kInput;
    load.out.push_back(e[K::kTargets]);
  }
  // Each rank looks up its vocabulary shard (the other rows are 0) and adds the positions where
  // the reduction that follows counts them once.
  OpSpec emb;
  emb.kind = OpKind::kEmbedding;
  emb.dtype = c_.act;
  emb.group = c_.tp_group(0);
  emb.flags = sp ? kOwnRows : 0;
  emb.dims = {N, C, m.vocab_size / c_.tp_of(0), T, cp, 0};  // cp: positions of the chunks
  emb.in = {e[K::kTokens], dp_.value(K::kWordEmbedding, -1)};
  if (dp_.has(K::kPositionEmbedding, -1)) emb.in.push_back(dp_.value(K::kPositionEmbedding, -1));
  const BufId partial =
      c_.tensor(sp ? K::kEmbeddingPartial : K::kEmbeddingOut, -1, mb, 0, c_.act, {N, C});
  emb.out = {partial};
  if (m.dropout) {
    emb.flags |= kDropout;
    e[K::kEmbeddingMask] = c_.tensor(K::kEmbeddingMask, -1, mb, 0, DType::kUint8, {c_.rows(0), C});
    emb.out.push_back(e[K::kEmbeddingMask]);
  }
  const TaskId x = c_.emit.add(c_.compute_task(Phase::kForward, Block::kEmbedding, -1, mb, chunk),
                               {load, emb}, {gathered});
  return tp_.reduce(x, 0, partial, K::kEmbeddingOut, -1, mb, chunk, Phase::kForward, out);
}

TaskId ModelGraph::embedding_backward(TaskId prev, int mb, int chunk, BufId grad_out) {
  const ModelSpec& m = c_.m;
  Instance& e = ends_[{chunk, mb}];
  const TaskId gathered =
      c_.s.zero_stage == 3
          ? dp_.gather(prev, {K::kWordEmbedding, K::kPositionEmbedding}, -1, Phase::kBackward, mb,
                       chunk, 2)
          : kNoTask;
  BufId full = kNoBuf;
  TaskId x = tp_.gather(prev, 0, grad_out, K::kEmbeddingPartial, -1, mb, chunk,
                        Phase::kBackward, 0, &full, true);
  const std::vector<TensorKind> owned{K::kWordEmbedding, K::kPositionEmbedding};
  Accumulation acc;
  OpSpec op;
  op.kind = OpKind::kEmbeddingBwd;
  op.dtype = c_.act;
  op.group = c_.tp_group(0);
  op.flags = c_.sp(0) ? kOwnRows : 0;
  op.dims = {c_.tokens(0), m.hidden_size, m.vocab_size / c_.tp_of(0), m.seq_length,
             c_.s.cp > 1 ? c_.s.cp : 0, 0};
  // The word shard's gradient from every row, the positions' from the rank's rows.
  op.in = {full, e[K::kTokens], grad_out};
  if (m.dropout) {
    op.flags |= kDropout;
    op.in.push_back(e[K::kEmbeddingMask]);
  }
  op.out = {param_grad(K::kWordEmbedding, -1, owned, acc)};
  if (dp_.has(K::kPositionEmbedding, -1)) {
    op.out.push_back(param_grad(K::kPositionEmbedding, -1, owned, acc));
  }
  std::vector<OpSpec> ops{op};
  finish_accumulation(acc, ops);
  return c_.emit.add(c_.compute_task(Phase::kBackward, Block::kEmbedding, -1, mb, chunk), ops,
                     {x, gathered});
}

TaskId ModelGraph::head_forward(TaskId prev, int mb, int chunk, BufId x) {
  const ModelSpec& m = c_.m;
  Instance& h = ends_[{chunk, mb}];
  const bool ln = m.norm == NormKind::kLayerNorm;
  const std::int64_t B = c_.samples(0), N = c_.tokens(0), R = c_.rows(0), C = m.hidden_size;
  const std::int64_t vshard = m.vocab_size / c_.tp_of(0);
  auto head_tensor = [&](K kind, DType dtype, std::initializer_list<std::int64_t> shape) {
    const BufId id = c_.tensor(kind, -1, mb, 0, dtype, shape);
    c_.emit.buf(id).role = Role::kLogits;
    return id;
  };
  h[K::kLayerOut] = x;  // the final norm's input
  const TensorKind weight = head_weight();
  const TaskId gathered = gather_head(prev, Phase::kForward, mb, chunk, 3);
  OpSpec norm;
  norm.kind = ln ? OpKind::kLayerNorm : OpKind::kRmsNorm;
  norm.dtype = c_.act;
  norm.dims = {R, C, 0, 0, 0, 0};
  norm.param = static_cast<float>(m.norm_eps);
  norm.in = {x, dp_.value(K::kFinalNormWeight, -1)};
  if (ln) norm.in.push_back(dp_.value(K::kFinalNormBias, -1));
  h[K::kFinalNormOut] = head_tensor(K::kFinalNormOut, c_.act, {R, C});
  norm.out = {h[K::kFinalNormOut]};
  if (ln) {
    h[K::kFinalNormMean] = head_tensor(K::kFinalNormMean, DType::kFp32, {R});
    norm.out.push_back(h[K::kFinalNormMean]);
  }
  h[K::kFinalNormRstd] = head_tensor(K::kFinalNormRstd, DType::kFp32, {R});
  norm.out.push_back(h[K::kFinalNormRstd]);
  TaskId t = c_.emit.add(c_.compute_task(Phase::kForward, Block::kFinalNorm, -1, mb, chunk),
                         {norm}, {prev, gathered});
  t = tp_.gather(t, 0, h[K::kFinalNormOut], K::kFinalNormFull, -1, mb, chunk, Phase::kForward, 0,
                 &h[K::kFinalNormFull]);
  std::vector<OpSpec> ops;
  if (h.at(K::kTargets) == kNoBuf) {  // the first stage loaded them when it is this one
    OpSpec load;
    load.kind = OpKind::kLoadBatch;
    load.dtype = DType::kInt32;
    load.group = c_.dp_group(0);
    load.dims = {B, c_.seq_local(), mb * B,
                 static_cast<std::int64_t>(c_.plan.num_micro_batches) * B,
                 c_.s.cp > 1 ? c_.s.cp : 0, 0};
    h[K::kTargets] = c_.tensor(K::kTargets, -1, mb, 0, DType::kInt32, {B, c_.seq_local()});
    c_.emit.buf(h[K::kTargets]).role = Role::kInput;
    load.out = {h[K::kTargets]};
    ops.push_back(load);
  }
  OpSpec logits;
  logits.kind = OpKind::kLinear;
  logits.dtype = c_.act;
  logits.dims = {N, C, vshard, 0, 0, 0};
  logits.in = {h[K::kFinalNormFull], dp_.value(weight, -1)};
  h[K::kLogitsTensor] = head_tensor(K::kLogitsTensor, DType::kFp32, {N, vshard});
  logits.out = {h[K::kLogitsTensor]};
  // Vocabulary-parallel cross-entropy: per row the maximum, the sum of exponentials and the
  // target's logit, all-reduced over tp; the loss and the logits' gradient follow backward.
  OpSpec stats;
  stats.kind = OpKind::kSoftmaxStats;
  stats.dtype = DType::kFp32;
  stats.group = c_.tp_group(0);
  stats.dims = {N, vshard, 0, 0, 0, 0};
  stats.in = {h[K::kLogitsTensor], h[K::kTargets]};
  h[K::kSoftmaxStats] = head_tensor(K::kSoftmaxStats, DType::kFp32, {N, 3});
  stats.out = {h[K::kSoftmaxStats]};
  ops.push_back(logits);
  ops.push_back(stats);
  t = c_.emit.add(c_.compute_task(Phase::kForward, Block::kLmHead, -1, mb, chunk), ops, {t});
  if (c_.tp_of(0) > 1) {
    OpSpec ar;
    ar.kind = OpKind::kAllReduce;
    ar.dtype = DType::kFp32;
    ar.flags = kSoftmaxReduce;
    ar.group = c_.tp_group(0);
    ar.in = ar.out = {h[K::kSoftmaxStats]};
    ar.dims[0] = 3 * N;
    t = c_.emit.add(c_.collective_task(CollectiveKind::kAllReduce, Purpose::kTp, c_.tp_group(0),
                                       Phase::kForward, -1, mb, chunk),
                    {ar}, {t});
  }
  return t;
}

TaskId ModelGraph::head_backward(int mb, int chunk, BufId* grad_x) {
  const ModelSpec& m = c_.m;
  Instance& h = ends_[{chunk, mb}];
  const bool ln = m.norm == NormKind::kLayerNorm;
  const std::int64_t N = c_.tokens(0), C = m.hidden_size, vshard = m.vocab_size / c_.tp_of(0);
  // Sequence parallelism kept the rank's rows of the final norm's output: gather them again
  // for the LM head's weight gradient.
  const TensorKind weight = head_weight();
  const TaskId gathered = gather_head(kNoTask, Phase::kBackward, mb, chunk, 4);
  Instance bw;
  const TaskId regathered =
      tp_.gather(kNoTask, 0, h[K::kFinalNormOut], K::kFinalNormFull, -1, mb, chunk,
                 Phase::kBackward, 2, &bw[K::kFinalNormFull]);
  const BufId full = c_.sp(0) ? bw[K::kFinalNormFull] : h[K::kFinalNormFull];
  const std::vector<TensorKind> owned{K::kLmHeadWeight};
  Accumulation acc;
  // d(step loss)/d(logits): the step's loss is the mean over micro-batches and replicas of each
  // micro-batch's mean over its tokens; the data-parallel reduction then sums the replicas.
  OpSpec ce;
  ce.kind = OpKind::kCrossEntropyBwd;
  ce.dtype = DType::kFp32;
  ce.group = c_.tp_group(0);
  ce.dims = {N, vshard, 0, 0, 0, 0};
  // With context parallelism a rank holds 1/cp of each sequence's tokens, and the data-parallel
  // reduction (over dp x cp) sums the cp ranks' parts too.
  ce.param = static_cast<float>(
      1.0 / (static_cast<double>(N) * c_.plan.num_micro_batches * c_.s.dp * c_.s.cp));
  ce.in = {h[K::kLogitsTensor], h[K::kSoftmaxStats], h[K::kTargets]};
  const BufId dlogits = new_grad(h[K::kLogitsTensor]);
  c_.emit.buf(dlogits).dtype = DType::kFp32;
  ce.out = {dlogits, loss_buffer()};
  OpSpec data;
  data.kind = OpKind::kLinearBwdData;
  data.dtype = c_.act;
  data.dims = {N, C, vshard, 0, 0, 0};
  OpSpec wgrad = data;
  data.in = {dlogits, dp_.value(weight, -1)};
  const BufId dfull = new_grad(full);
  data.out = {dfull};
  wgrad.kind = OpKind::kLinearBwdWeight;
  wgrad.in = {dlogits, full};
  wgrad.out = {param_grad(weight, -1, owned, acc)};
  std::vector<OpSpec> ops{ce, data, wgrad};
  finish_accumulation(acc, ops);
  TaskId t = c_.emit.add(c_.compute_task(Phase::kBackward, Block::kLmHead, -1, mb, chunk), ops,
                         {regathered, gathered});
  BufId dnorm = kNoBuf;
  t = tp_.reduce(t, 0, dfull, K::kFinalNormOut, -1, mb, chunk, Phase::kBackward, &dnorm, true);
  Accumulation norm_acc;
  const std::vector<TensorKind> norm_owned{K::kFinalNormWeight, K::kFinalNormBias};
  OpSpec norm;
  norm.kind = ln ? OpKind::kLayerNormBwd : OpKind::kRmsNormBwd;
  norm.dtype = c_.act;
  norm.dims = {c_.rows(0), C, 0, 0, 0, 0};
  norm.in = {dnorm, h[K::kLayerOut], dp_.value(K::kFinalNormWeight, -1)};
  if (ln) norm.in.push_back(h[K::kFinalNormMean]);
  norm.in.push_back(h[K::kFinalNormRstd]);
  *grad_x = new_grad(h[K::kLayerOut]);
  norm.out = {*grad_x, param_grad(K::kFinalNormWeight, -1, norm_owned, norm_acc)};
  if (ln) norm.out.push_back(param_grad(K::kFinalNormBias, -1, norm_owned, norm_acc));
  std::vector<OpSpec> norm_ops{norm};
  finish_accumulation(norm_acc, norm_ops);
  return c_.emit.add(c_.compute_task(Phase::kBackward, Block::kFinalNorm, -1, mb, chunk),
                     norm_ops, {t});
}

}  // namespace strata::strategies::detail
