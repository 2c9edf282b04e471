// Data parallelism: the stage's parameters in buckets, their gradients' reduction (all-reduce,
// or ZeRO's reduce-scatter), ZeRO-3's parameter gathers, the end of the step (sequence-parallel
// and tied-embedding gradient sums, the optimizer, the parameter all-gathers).
//
// Buckets are flat buffers holding their parameters (and gradients) back to back, as Megatron's
// grad buffer does, so each collective and each optimizer op acts on one contiguous range. A
// bucket is a run of consecutive "calls" -- the gradients of one layer, of the output
// parameters, of the embedding -- of a chunk's backward, closed at a size cap, a layout change or
// the end of the unit; ZeRO-3 reduces every call on its own (docs/plan.md "Buckets").
//
// ZeRO-3 gathers a module's buckets (a layer, the embedding, the head: FSDP's units) before each
// use, issued collectives.param_prefetch modules ahead of the compute (begin_unit plans a unit's
// uses, gather issues them). Under hybrid sharding ZeRO partitions over the shard group and the
// replicas all-reduce each bucket's part once per step (docs/plan.md "ZeRO-3's gathers").
#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "strategies/detail/lowering.hpp"

namespace strata::strategies::detail {

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// A view of parameter `pi` (its rank's shard, shaped as the kernels read it) at its place in the
// bucket's flat buffer `parent`.
Buffer param_view(const ParamInfo& pi, BufId parent, DType dtype, Role role, bool grad) {
  Buffer v;
  v.kind = pi.kind;
  v.grad = grad;
  v.role = role;
  v.dtype = dtype;
  v.layer = pi.layer;
  v.bucket = pi.bucket;
  const std::int64_t t = pi.shard_parts;
  const std::int64_t rows = pi.shard == Shard::kRows || pi.shard == Shard::kBlockRows ? pi.rows / t
                                                                                      : pi.rows;
  const std::int64_t cols = pi.shard == Shard::kCols ? pi.cols / t : pi.cols;
  v.ndim = pi.cols == 1 ? 1 : 2;
  v.shape = {rows, pi.cols == 1 ? 0 : cols, 0, 0};
  v.view_of = parent;
  v.view_offset = pi.bucket_offset;
  return v;
}

// Under sequence parallelism, whether a parameter's gradient on a rank is a partial sum over
// the rank's rows that the tp group sums: the replicated ones, except an MoE layer's experts
// (whole experts with expert_tp 1 see other tokens on each tp rank, and the expert-data-parallel
// group, which spans tp then, sums them).
bool sequence_partial(const ParamInfo& p) {
  return p.shard == Shard::kReplicated && p.kind != TensorKind::kExpertFc1Weight &&
         p.kind != TensorKind::kExpertFc2Weight;
}

}  // namespace

DataParallel::DataParallel(StageContext& c) : c_(c), p_(c.emit.program()) {
  layout_params();
  plan_buckets();
}

bool DataParallel::shared_embedding_bucket() const {
  return c_.s.zero_stage >= 1 && c_.m.tie_word_embeddings && c_.ends_apart();
}

int DataParallel::add_param(TensorKind kind, int layer, int layout, std::int64_t rows,
                            std::int64_t cols, Shard shard, Init init, double std_dev,
                            bool tied_copy) {
  ParamInfo p;
  p.kind = kind;
  p.layer = static_cast<std::int16_t>(layer);
  p.rows = rows;
  p.cols = cols;
  p.shard = shard;
  p.shard_group = c_.tp_group(layout);
  p.shard_parts = c_.tp_of(layout);
  p.init = init;
  p.init_std = static_cast<float>(std_dev);
  p.tied_copy = tied_copy;
  const std::int64_t t = p.shard_parts;
  p.elements = shard == Shard::kReplicated ? rows * cols
               : shard == Shard::kCols     ? rows * (cols / t)
                                           : (rows / t) * cols;
  p_.params.push_back(p);
  const int index = static_cast<int>(p_.params.size() - 1);
  param_index_[{static_cast<int>(kind), layer}] = index;
  return index;
}

// The stage's parameters, chunk by chunk: the embedding on the first virtual stage, the layers,
// the final norm and the LM head on the last (Megatron's layout; GPT-2's initialisation).
void DataParallel::layout_params() {
  const ModelSpec& m = c_.m;
  const std::int64_t C = m.hidden_size, F = m.intermediate_size, V = m.vocab_size;
  const std::int64_t hk = m.kv_hidden();
  const double std_dev = 0.02, out_std = 0.02 / std::sqrt(2.0 * m.num_hidden_layers);
  const bool ln = m.norm == NormKind::kLayerNorm, swiglu = m.hidden_act == Activation::kSwiglu;
  for (int chunk = 0; chunk < c_.v; ++chunk) {
    const int vs = c_.virtual_stage(chunk);
    if (vs == 0) {
      add_param(TensorKind::kWordEmbedding, -1, 0, V, C, Shard::kRows, Init::kNormal, std_dev);
      if (m.learned_position_embeddings) {
        add_param(TensorKind::kPositionEmbedding, -1, 0, m.seq_length, C, Shard::kReplicated,
                  Init::kNormal, std_dev);
      }
    }
    for (int l = c_.first_layer(vs); l < c_.end_layer(vs); ++l) {
      const int lay = c_.layout_of(l);
      auto norm = [&](TensorKind w, TensorKind b) {
        add_param(w, l, lay, C, 1, Shard::kReplicated, Init::kOne, 0);
        if (ln) add_param(b, l, lay, C, 1, Shard::kReplicated, Init::kZero, 0);
      };
      norm(TensorKind::kNormWeight1, TensorKind::kNormBias1);
      const int q = add_param(TensorKind::kQkvWeight, l, lay, C + 2 * hk, C, Shard::kBlockRows,
                              Init::kNormal, std_dev);
      p_.params[q].row_blocks = {C, hk, hk};
      if (m.bias) {
        const int qb = add_param(TensorKind::kQkvBias, l, lay, C + 2 * hk, 1, Shard::kBlockRows,
                                 Init::kZero, 0);
        p_.params[qb].row_blocks = {C, hk, hk};
      }
      add_param(TensorKind::kAttnOutWeight, l, lay, C, C, Shard::kCols, Init::kNormal, out_std);
      if (m.bias) add_param(TensorKind::kAttnOutBias, l, lay, C, 1, Shard::kReplicated, Init::kZero, 0);
      norm(TensorKind::kNormWeight2, TensorKind::kNormBias2);
      if (m.is_moe_layer(l)) {
        // The router (replicated) and the rank's num_experts / ep routed experts: split over
        // tp like the dense MLP (fc1 by rows, fc2 by columns) when expert_tp = tp, whole when
        // expert_tp is 1.
        const std::int64_t E = m.moe.num_experts, local = E / c_.s.ep;
        const std::int64_t Fe = m.moe.moe_intermediate_size;
        const bool split = c_.expert_tp() > 1;
        add_param(TensorKind::kRouterWeight, l, lay, E, C, Shard::kReplicated, Init::kNormal,
                  std_dev);
        const Shard up = !split ? Shard::kReplicated : swiglu ? Shard::kBlockRows : Shard::kRows;
        const int e1 = add_param(TensorKind::kExpertFc1Weight, l, lay,
                                 local * (swiglu ? 2 : 1) * Fe, C, up, Init::kNormal, std_dev);
        if (swiglu && split) p_.params[e1].row_blocks = {Fe, Fe, 0};
        add_param(TensorKind::kExpertFc2Weight, l, lay, local * C, Fe,
                  split ? Shard::kCols : Shard::kReplicated, Init::kNormal, out_std);
      }
      // The dense MLP, or an MoE layer's shared experts as one MLP of their summed width
      // (Megatron-Core's SharedExpertMLP: split over tp like the dense one, with its biases).
      const std::int64_t width =
          !m.is_moe_layer(l)
              ? F
              : static_cast<std::int64_t>(m.moe.n_shared_experts) *
                    m.moe.shared_expert_intermediate_size;
      if (width == 0) continue;
      const Shard up_shard = swiglu ? Shard::kBlockRows : Shard::kRows;
      const std::int64_t up = swiglu ? 2 * width : width;
      const int f1 = add_param(TensorKind::kFc1Weight, l, lay, up, C, up_shard, Init::kNormal,
                               std_dev);
      if (swiglu) p_.params[f1].row_blocks = {width, width, 0};
      if (m.bias) {
        const int f1b = add_param(TensorKind::kFc1Bias, l, lay, up, 1, up_shard, Init::kZero, 0);
        if (swiglu) p_.params[f1b].row_blocks = {width, width, 0};
      }
      add_param(TensorKind::kFc2Weight, l, lay, C, width, Shard::kCols, Init::kNormal, out_std);
      if (m.bias) add_param(TensorKind::kFc2Bias, l, lay, C, 1, Shard::kReplicated, Init::kZero, 0);
    }
    if (c_.last_virtual_stage(vs)) {
      add_param(TensorKind::kFinalNormWeight, -1, 0, C, 1, Shard::kReplicated, Init::kOne, 0);
      if (ln) add_param(TensorKind::kFinalNormBias, -1, 0, C, 1, Shard::kReplicated, Init::kZero, 0);
      // An untied head, or Megatron's copy of the tied embedding on the last stage.
      if (!m.tie_word_embeddings || c_.ends_apart()) {
        add_param(TensorKind::kLmHeadWeight, -1, 0, V, C, Shard::kRows, Init::kNormal, std_dev,
                  m.tie_word_embeddings);
      }
    }
  }
  mark_shared_experts(p_.params);  // named apart from a dense MLP (ParamInfo::init_name)
}

bool DataParallel::has(TensorKind kind, int layer) const {
  return param_index_.count({static_cast<int>(kind), layer}) > 0;
}

// The gradient groups of one backward unit of `chunk`, in the order today's reduction sees them
// complete (LM head and final norm, layers last to first, embedding), with the points where a
// bucket must close.
std::vector<DataParallel::Call> DataParallel::calls_of(int chunk) const {
  const int vs = c_.virtual_stage(chunk);
  const bool shared = shared_embedding_bucket();
  std::vector<Call> out;
  auto call = [&](Group g, int layer, std::initializer_list<TensorKind> kinds) {
    Call k;
    k.group = g;
    k.layer = layer;
    k.layout = layer >= 0 ? c_.layout_of(layer) : 0;
    for (TensorKind kind : kinds) {
      const auto it = param_index_.find({static_cast<int>(kind), layer});
      if (it == param_index_.end()) continue;
      k.params.push_back(it->second);
      k.elements += p_.params[it->second].elements;
    }
    out.push_back(std::move(k));
  };
  auto flush = [&] { out.push_back(Call{Group::kFlush, -1, {}, 0, 0, false}); };
  if (c_.last_virtual_stage(vs)) {
    if (shared) {
      flush();
      call(Group::kWord, -1, {TensorKind::kLmHeadWeight});
      flush();
      call(Group::kRestOut, -1, {TensorKind::kFinalNormWeight, TensorKind::kFinalNormBias});
    } else {
      call(Group::kOutput, -1, {TensorKind::kLmHeadWeight, TensorKind::kFinalNormWeight,
                                TensorKind::kFinalNormBias});
    }
  }
  for (int l = c_.end_layer(vs) - 1; l >= c_.first_layer(vs); --l) {
    if (c_.m.is_moe_layer(l)) {  // the experts first, in buckets of their own
      call(Group::kLayer, l, {TensorKind::kExpertFc2Weight, TensorKind::kExpertFc1Weight});
      out.back().experts = true;
    }
    call(Group::kLayer, l,
         {TensorKind::kRouterWeight, TensorKind::kFc2Weight, TensorKind::kFc2Bias,
          TensorKind::kFc1Weight, TensorKind::kFc1Bias, TensorKind::kNormWeight2,
          TensorKind::kNormBias2, TensorKind::kAttnOutWeight, TensorKind::kAttnOutBias,
          TensorKind::kQkvWeight, TensorKind::kQkvBias, TensorKind::kNormWeight1,
          TensorKind::kNormBias1});
  }
  if (vs == 0) {
    if (shared) {
      flush();
      call(Group::kWord, -1, {TensorKind::kWordEmbedding});
      flush();
      if (c_.m.learned_position_embeddings) {
        call(Group::kRestIn, -1, {TensorKind::kPositionEmbedding});
      }
    } else {
      call(Group::kInput, -1, {TensorKind::kWordEmbedding, TensorKind::kPositionEmbedding});
    }
  }
  flush();
  return out;
}

int DataParallel::reduction_size(const Call& k) const {
  return k.experts ? c_.expert_dp_size() : c_.grad_group_size(k.layout);
}

int DataParallel::zero_parts_of(const BucketInfo& b) const {
  if (b.zero_stage == 0) return 1;
  return b.dp_group.kind == GroupKind::kExpertDp ? c_.expert_dp_size()
                                                 : c_.zero_parts(b.dp_group.layout);
}

int DataParallel::make_bucket(const std::vector<int>& params, int layout, bool experts) {
  BucketInfo b;
  const int dp = experts ? c_.expert_dp_size() : c_.grad_group_size(layout);
  // A one-rank group reduces nothing: its buckets keep whole gradients and states.
  b.zero_stage = dp > 1 ? c_.s.zero_stage : 0;
  // ZeRO partitions over the data-parallel group, or (hybrid sharding) over the shard group;
  // an MoE layer's experts over the expert-data-parallel group.
  b.dp_group = experts ? c_.expert_dp_group()
               : b.zero_stage >= 1 ? c_.zero_group(layout)
                                   : c_.grad_group(layout);
  const int parts = zero_parts_of(b);
  // ZeRO-3 (DeepSpeed's stage 3): every bucket's parameters are sharded and gathered for each
  // use -- a layer's forward and backward, the embedding's, the head's -- also over a one-rank
  // group (a layout whose dp is 1), where the gather is a copy, as the Plan always priced it.
  b.gathered_per_use = c_.s.zero_stage == 3;
  for (int i : params) b.elements += p_.params[i].elements;
  b.members = params;
  const int id = static_cast<int>(p_.buckets.size());
  const std::int64_t part = ceil_div(b.elements, parts);
  auto flat = [&](TensorKind kind, Role role, DType dtype, std::int64_t n) {
    Buffer buf;
    buf.kind = kind;
    buf.role = role;
    buf.dtype = dtype;
    buf.persistent = true;
    buf.bucket = id;
    buf.shape = {n, 0, 0, 0};
    buf.ndim = 1;
    return c_.emit.buffer(buf);
  };
  auto member_view = [&](int param, BufId parent, bool grad) {
    Buffer v = param_view(p_.params[param], parent, c_.emit.buf(parent).dtype,
                          grad ? Role::kGrad : Role::kParam, grad);
    v.persistent = true;
    return c_.emit.buffer(v);
  };
  std::int64_t offset = 0;
  for (int i : params) {
    p_.params[i].bucket = id;
    p_.params[i].bucket_offset = offset;
    offset += p_.params[i].elements;
  }
  if (b.gathered_per_use) {
    b.params = flat(TensorKind::kBucketParamShard, Role::kParam, c_.act, part);
  } else {
    b.params = flat(TensorKind::kBucketParams, Role::kParam, c_.act, b.elements);
    for (int i : params) p_.params[i].value = member_view(i, b.params, false);
  }
  if (b.zero_stage < 2) {
    b.grads = flat(TensorKind::kBucketGrads, Role::kGrad, c_.grad, b.elements);
    for (int i : params) p_.params[i].grad = member_view(i, b.grads, true);
  } else {
    b.grad_shard = flat(TensorKind::kBucketGradShard, Role::kGrad, c_.grad, part);
  }
  if (c_.act != DType::kFp32) b.master = flat(TensorKind::kBucketMaster, Role::kOptimizer, DType::kFp32, part);
  b.adam_m = flat(TensorKind::kBucketAdamM, Role::kOptimizer, DType::kFp32, part);
  b.adam_v = flat(TensorKind::kBucketAdamV, Role::kOptimizer, DType::kFp32, part);
  p_.buckets.push_back(std::move(b));
  return id;
}

// Runs every chunk's calls through the bucketing rules of grad_ready()/flush() once, so that the
// buckets (and the parameters' places in them) exist before the first op names a parameter.
void DataParallel::plan_buckets() {
  const double cap = c_.s.collectives.grad_bucket_bytes;
  const double g = dtype_bytes(c_.grad);
  for (int chunk = 0; chunk < c_.v; ++chunk) {
    std::vector<Call> calls = calls_of(chunk);
    std::vector<int>& order = unit_buckets_[chunk];
    std::vector<int> open, local;
    int open_layout = 0, local_layout = 0;
    bool open_experts = false, local_experts = false;
    std::int64_t open_elements = 0, local_elements = 0;
    auto close = [&](std::vector<int>& params, std::int64_t& elements, int layout, bool experts,
                     bool counted) {
      if (elements <= 0) return;
      const int id = make_bucket(params, layout, experts);
      if (counted) order.push_back(id);
      params.clear();
      elements = 0;
    };
    for (const Call& k : calls) {
      if (k.group == Group::kFlush) {
        close(open, open_elements, open_layout, open_experts, true);
        close(local, local_elements, local_layout, local_experts, false);
        continue;
      }
      if (c_.s.zero_stage == 3) {  // every call reduces on its own
        const int id = make_bucket(k.params, k.layout, k.experts);
        if (reduction_size(k) > 1) order.push_back(id);
        continue;
      }
      // A one-rank group reduces nothing (grad_ready skips it): its parameters share buckets
      // among themselves only.
      const bool reduced = reduction_size(k) > 1;
      std::vector<int>& params = reduced ? open : local;
      std::int64_t& elements = reduced ? open_elements : local_elements;
      int& layout = reduced ? open_layout : local_layout;
      bool& experts = reduced ? open_experts : local_experts;
      if (elements > 0 && (layout != k.layout || experts != k.experts)) {
        close(params, elements, layout, experts, reduced);
      }
      params.insert(params.end(), k.params.begin(), k.params.end());
      elements += k.elements;
      layout = k.layout;
      experts = k.experts;
      if (static_cast<double>(elements) * g >= cap) {
        close(params, elements, layout, experts, reduced);
      }
    }
    calls_[chunk] = std::move(calls);
  }
}

BufId DataParallel::value(TensorKind kind, int layer) const {
  const auto it = param_index_.find({static_cast<int>(kind), layer});
  STRATA_CHECK(it != param_index_.end(), std::string("no parameter ") + tensor_kind_name(kind) +
                                             " of layer " + std::to_string(layer));
  const ParamInfo& p = p_.params[it->second];
  if (p.value >= 0) return p.value;
  const auto g = gathered_.find({it->second, layer});
  STRATA_CHECK(g != gathered_.end(), std::string("ZeRO-3: ") + tensor_kind_name(kind) +
                                         " of layer " + std::to_string(layer) + " used ungathered");
  return g->second;
}

// A transient flat copy of a bucket -- one micro-batch's gradients, or a ZeRO-3 gathered copy
// of its parameters -- with a view per member, which `keep` receives.
template <class Keep>
BufId DataParallel::bucket_copy(int bucket, TensorKind kind, Role role, DType dtype, int mb,
                                std::uint8_t instance, Keep keep) {
  const BucketInfo& b = p_.buckets[bucket];
  Buffer flat;
  flat.kind = kind;
  flat.role = role;
  flat.dtype = dtype;
  flat.bucket = bucket;
  flat.micro_batch = mb;
  flat.instance = instance;
  flat.ndim = 1;
  flat.shape = {b.elements, 0, 0, 0};
  const BufId id = c_.emit.buffer(flat);
  for (int i : b.members) {
    Buffer v = param_view(p_.params[i], id, dtype, role, role == Role::kGrad);
    v.micro_batch = mb;
    v.instance = instance;
    keep(i, c_.emit.buffer(v));
  }
  return id;
}

BufId DataParallel::round_grads(int bucket, int round, int mb) {
  const auto key = std::pair{bucket, round};
  const auto it = round_grads_.find(key);
  if (it != round_grads_.end()) return it->second;
  const BufId id = bucket_copy(bucket, TensorKind::kBucketGrads, Role::kGrad, c_.grad, mb, 0,
                               [&](int param, BufId v) { round_member_[{param, round}] = v; });
  round_grads_.emplace(key, id);
  return id;
}

BufId DataParallel::grad(TensorKind kind, int layer) {
  const auto it = param_index_.find({static_cast<int>(kind), layer});
  STRATA_CHECK(it != param_index_.end(), std::string("no parameter ") + tensor_kind_name(kind));
  const ParamInfo& p = p_.params[it->second];
  if (p.grad >= 0) return p.grad;
  round_grads(p.bucket, round_, mb_);
  return round_member_.at({it->second, round_});
}

// The buckets holding parameters `kinds` of `layer`, each once, in order.
std::vector<int> DataParallel::buckets_of(const std::vector<TensorKind>& kinds, int layer) const {
  std::vector<int> buckets;
  for (TensorKind kind : kinds) {
    const auto it = param_index_.find({static_cast<int>(kind), layer});
    if (it == param_index_.end()) continue;
    const int id = p_.params[it->second].bucket;
    if (std::find(buckets.begin(), buckets.end(), id) == buckets.end()) buckets.push_back(id);
  }
  return buckets;
}

// The modules of a unit in the order its compute uses them (FSDP's units: every layer, and the
// ends; DeepSpeed's per-submodule fetch): forward embedding, layers, head; backward the reverse.
// A layer under full recompute is gathered once for its recompute and backward (the recompute
// runs inside the layer's backward, as FSDP's pre-backward unshard of a checkpointed block).
void DataParallel::begin_unit(bool forward, int mb, int chunk) {
  STRATA_CHECK(next_use_ == uses_.size(), "a unit ended with ZeRO-3 gathers still planned");
  uses_.clear();
  next_use_ = 0;
  unit_mb_ = mb;
  unit_chunk_ = chunk;
  if (c_.s.zero_stage != 3) return;
  const int vs = c_.virtual_stage(chunk);
  const TensorKind head =
      has(TensorKind::kLmHeadWeight, -1) ? TensorKind::kLmHeadWeight : TensorKind::kWordEmbedding;
  const std::vector<TensorKind> embedding{TensorKind::kWordEmbedding,
                                          TensorKind::kPositionEmbedding};
  const std::vector<TensorKind> output{TensorKind::kFinalNormWeight, head};
  auto add = [&](const std::vector<TensorKind>& kinds, int layer, Phase phase,
                 std::uint8_t instance) {
    Use u;
    u.buckets = buckets_of(kinds, layer);
    u.layer = layer;
    u.phase = phase;
    u.instance = instance;
    uses_.push_back(std::move(u));
  };
  const int first = c_.first_layer(vs), end = c_.end_layer(vs);
  const bool last = c_.last_virtual_stage(vs);
  if (forward) {
    if (vs == 0) add(embedding, -1, Phase::kForward, 0);
    for (int l = first; l < end; ++l) add({TensorKind::kNormWeight1}, l, Phase::kForward, 0);
    if (last) add(output, -1, Phase::kForward, 3);
    return;
  }
  if (last) add(output, -1, Phase::kBackward, 4);
  for (int l = end - 1; l >= first; --l) {
    if (layer_strategy(c_.s, l).recompute == Recompute::kFull) {
      add({TensorKind::kNormWeight1}, l, Phase::kRecompute, 1);
    } else {
      add({TensorKind::kNormWeight1}, l, Phase::kBackward, 2);
    }
  }
  if (vs == 0) add(embedding, -1, Phase::kBackward, 2);
}

// All-gathers the buckets of use `u` into fresh copies, after `after` (and the dp stream).
void DataParallel::issue(Use& u, TaskId after) {
  for (int id : u.buckets) {
    const BucketInfo& b = p_.buckets[id];
    STRATA_CHECK(b.gathered_per_use, "a gather of parameters outside a ZeRO-3 bucket");
    const BufId gathered =
        bucket_copy(id, TensorKind::kBucketGathered, Role::kGatheredParams, c_.act, unit_mb_,
                    u.instance, [&](int param, BufId v) { u.views.emplace_back(param, v); });
    OpSpec op;
    op.kind = OpKind::kAllGather;
    op.dtype = c_.act;
    op.flags = kPartitioned;
    op.group = b.dp_group;
    op.in = {b.params};
    op.out = {gathered};
    op.dims[0] = b.elements;
    const Task t = c_.collective_task(CollectiveKind::kAllGather, Purpose::kZero, b.dp_group,
                                      u.phase, u.layer, unit_mb_, unit_chunk_);
    u.gather = c_.emit.add(t, {op}, {after});
  }
  u.issued = true;
}

TaskId DataParallel::gather(TaskId after, const std::vector<TensorKind>& kinds, int layer,
                            Phase phase, int mb, int chunk, std::uint8_t instance) {
  STRATA_CHECK(next_use_ < uses_.size() && mb == unit_mb_ && chunk == unit_chunk_,
               "a ZeRO-3 gather outside its unit's planned uses");
  const std::size_t i = next_use_++;
  {
    const Use& u = uses_[i];
    STRATA_CHECK(u.layer == layer && u.phase == phase && u.instance == instance &&
                     u.buckets == buckets_of(kinds, layer),
                 "ZeRO-3 gathers out of their planned order");
  }
  if (c_.s.collectives.overlap_param_gather) {
    // Issued when module i's compute is reached (after the compute before it), together with
    // the modules up to param_prefetch ahead that are not yet issued: at most param_prefetch + 1
    // modules' gathered parameters are live while module i computes.
    const TaskId reached = c_.emit.last_on(Stream::kCompute);
    const std::size_t end =
        std::min(uses_.size(), i + 1 + static_cast<std::size_t>(c_.s.collectives.param_prefetch));
    for (std::size_t j = i; j < end; ++j) {
      if (!uses_[j].issued) issue(uses_[j], reached);
    }
  } else {
    issue(uses_[i], after);  // no overlap: after the task before the use
  }
  const Use& u = uses_[i];
  for (const auto& [param, view] : u.views) gathered_[{param, p_.params[param].layer}] = view;
  last_gather_ = u.gather;
  return u.gather;
}

TaskId DataParallel::gather_layer(TaskId after, int layer, Phase phase, int mb, int chunk,
                                  std::uint8_t instance) {
  return gather(after, {TensorKind::kNormWeight1}, layer, phase, mb, chunk, instance);
}

void DataParallel::begin_backward(int chunk, int round, int mb, bool last) {
  STRATA_CHECK(open_.elements == 0, "a bucket left open across backward units");
  chunk_ = chunk;
  round_ = round;
  mb_ = mb;
  last_round_ = last;
  cursor_ = 0;
  next_bucket_ = 0;
}

const DataParallel::Call& DataParallel::next_call(Group g, int layer) {
  const std::vector<Call>& calls = calls_.at(chunk_);
  STRATA_CHECK(cursor_ < calls.size() && calls[cursor_].group == g && calls[cursor_].layer == layer,
               "gradient reduction calls out of the planned order");
  return calls[cursor_++];
}

// Every planned call of (g, layer) in turn: one, or an MoE layer's two (its experts, then the
// rest).
void DataParallel::grad_ready(TaskId producer, Group g, int layer, int mb, int chunk) {
  const std::vector<Call>& calls = calls_.at(chunk_);
  do {
    const Call& k = next_call(g, layer);
    if (reduction_size(k) == 1) continue;  // nothing to reduce
    if (c_.s.zero_stage == 3) {
      const int bucket = unit_buckets_.at(chunk_).at(next_bucket_++);
      emit_reduction(bucket, producer, mb, chunk, {}, layer);
      continue;
    }
    if (open_.elements > 0 && (open_.layout != k.layout || open_.experts != k.experts)) {
      close_open(mb, chunk);
    }
    open_.elements += k.elements;
    open_.layout = k.layout;
    open_.experts = k.experts;
    open_.producer = producer;
    if (static_cast<double>(open_.elements) * dtype_bytes(c_.grad) >=
        c_.s.collectives.grad_bucket_bytes) {
      close_open(mb, chunk);
    }
  } while (cursor_ < calls.size() && calls[cursor_].group == g && calls[cursor_].layer == layer);
}

void DataParallel::flush(int mb, int chunk) {
  next_call(Group::kFlush, -1);
  close_open(mb, chunk);
}

void DataParallel::close_open(int mb, int chunk) {
  if (open_.elements <= 0) return;
  const int bucket = unit_buckets_.at(chunk_).at(next_bucket_++);
  STRATA_CHECK(p_.buckets[bucket].elements == open_.elements, "a bucket differs from its plan");
  // The distributed optimizer all-gathers the updated parameters bucket by bucket, with the
  // partition of the gradient buckets of the step's last reduction.
  if (last_round_ && c_.s.zero_stage >= 1) step_gathers_.push_back(bucket);
  Pending b = open_;
  b.bucket = bucket;
  open_ = Pending{};
  if (c_.s.collectives.overlap_grad_reduce || c_.s.zero_stage == 2) {
    emit_reduction(bucket, b.producer, mb, chunk, {});
  } else {
    deferred_.push_back(b);
  }
}

void DataParallel::emit_reduction(int bucket, TaskId producer, int mb, int chunk,
                                  const std::vector<TaskId>& also_after, int layer) {
  const BucketInfo& b = p_.buckets[bucket];
  std::vector<TaskId> deps{producer};
  deps.insert(deps.end(), also_after.begin(), also_after.end());
  OpSpec op;
  op.dtype = c_.grad;
  op.group = b.dp_group;
  op.dims[0] = b.elements;
  if (b.zero_stage == 0) {
    op.kind = OpKind::kAllReduce;
    op.in = op.out = {b.grads};
    c_.emit.add(c_.collective_task(CollectiveKind::kAllReduce, Purpose::kDp, b.dp_group,
                                   Phase::kBackward, -1, mb, chunk),
                {op}, deps);
    return;
  }
  op.kind = OpKind::kReduceScatter;
  op.flags = kPartitioned;
  if (b.zero_stage == 1) {  // into the rank's part of the same buffer (Megatron's, in place)
    op.in = op.out = {b.grads};
  } else {                  // each micro-batch's gradients, added into the rank's part
    const BufId grads = round_grads(bucket, round_, mb_);
    if (c_.s.sequence_parallel && c_.s.tp > 1) {
      // Sequence parallelism: the replicated parameters' gradients are partial sums over the
      // rank's rows; summed over tp before the reduction splits them (Megatron sums them once
      // per step; its buckets are never reduced per micro-batch).
      OpSpec ar;
      ar.kind = OpKind::kAllReduce;
      ar.dtype = c_.grad;
      ar.group = c_.tp_group(0);
      for (int i : b.members) {
        if (!sequence_partial(p_.params[i])) continue;
        const BufId v = round_member_.at({i, round_});
        ar.in.push_back(v);
        ar.dims[0] += c_.emit.elements(v);
      }
      ar.out = ar.in;
      if (!ar.in.empty()) {
        deps.push_back(c_.emit.add(c_.collective_task(CollectiveKind::kAllReduce, Purpose::kTp,
                                                      c_.tp_group(0), Phase::kBackward, -1, mb,
                                                      chunk),
                                   {ar}, {producer}));
      }
    }
    op.flags |= kAccumulate;
    op.in = {grads};
    op.out = {b.grad_shard};
  }
  const TaskId scattered =
      c_.emit.add(c_.collective_task(CollectiveKind::kReduceScatter, Purpose::kZero, b.dp_group,
                                     Phase::kBackward, layer, mb, chunk),
                  {op}, deps);
  if (b.dp_group.kind == GroupKind::kShard && last_round_) {
    // Hybrid sharding: the shard group's reduced part, accumulated over the step's
    // micro-batches, is summed over the replicas holding the same part, once per step after the
    // bucket's last reduce-scatter (DeepSpeed MiCS's second hop at the accumulation boundary;
    // PyTorch's HYBRID_SHARD all-reduces after every reduce-scatter, the same with one
    // micro-batch per step).
    OpSpec ar;
    ar.kind = OpKind::kAllReduce;
    ar.dtype = c_.grad;
    ar.in = ar.out = {b.grad_shard};
    ar.dims[0] = c_.emit.elements(b.grad_shard);
    const GroupRef replicas = c_.replica_group(b.dp_group.layout);
    c_.emit.add(c_.collective_task(CollectiveKind::kAllReduce, Purpose::kDp, replicas,
                                   Phase::kBackward, layer, mb, chunk),
                {ar}, {scattered});
  }
}

void DataParallel::finish_step() {
  STRATA_CHECK(next_use_ == uses_.size(), "the step ended with ZeRO-3 gathers still planned");
  const TaskId last_compute = c_.emit.last_on(Stream::kCompute);
  // With blocking transfers the step's last sends complete before the gradient reduction and
  // the optimizer start (Megatron calls them after its pipeline schedule returns).
  const std::vector<TaskId> last_sends = c_.emit.blocking_sends();
  for (const Pending& b : deferred_) emit_reduction(b.bucket, last_compute, -1, 0, last_sends);
  if (c_.s.sequence_parallel && c_.s.tp > 1 && c_.s.zero_stage < 2) {
    // Sequence parallelism: the replicated parameters' gradients (norms, row-parallel biases,
    // the position table) are partial sums over each rank's slice of the sequence; Megatron
    // all-reduces them over the tp group before the optimizer.
    OpSpec ar;
    ar.kind = OpKind::kAllReduce;
    ar.dtype = c_.grad;
    ar.group = c_.tp_group(0);
    for (const ParamInfo& p : p_.params) {
      if (!sequence_partial(p)) continue;
      ar.in.push_back(p.grad);
      ar.dims[0] += p.elements;
    }
    ar.out = ar.in;
    c_.emit.add(c_.collective_task(CollectiveKind::kAllReduce, Purpose::kTp, c_.tp_group(0),
                                   Phase::kStep, -1, -1, 0),
                {ar}, {last_compute});
  }
  const bool has_first = c_.stage == c_.stage_of(0);
  const bool has_last = c_.stage == c_.stage_of(c_.pp * c_.v - 1);
  if (c_.m.tie_word_embeddings && c_.ends_apart() && (has_first || has_last)) {
    // Megatron keeps the tied word embedding on the first and the last stage and sums their
    // gradients once per step (under ZeRO >= 2, the reduced parts, which both partition alike).
    const TensorKind word = has_first ? TensorKind::kWordEmbedding : TensorKind::kLmHeadWeight;
    const ParamInfo& p = p_.params[param_index_.at({static_cast<int>(word), -1})];
    OpSpec ar;
    ar.kind = OpKind::kAllReduce;
    ar.dtype = c_.grad;
    ar.group = {GroupKind::kEmbedding, 0, 0};
    ar.in = {p.grad >= 0 ? p.grad : p_.buckets[p.bucket].grad_shard};
    ar.out = ar.in;
    ar.dims[0] = c_.emit.elements(ar.in.front());
    std::vector<TaskId> deps{last_compute, c_.emit.last_on(Stream::kDp)};
    deps.insert(deps.end(), last_sends.begin(), last_sends.end());
    c_.emit.add(c_.collective_task(CollectiveKind::kAllReduce, Purpose::kEmbedding, ar.group,
                                   Phase::kStep, -1, -1, 0),
                {ar}, std::move(deps));
  }
  // The optimizer over the rank's (ZeRO-partitioned) parameters, bucket by bucket: Adam reads
  // and writes the fp32 master weights and both moments, reads the gradient and writes the
  // weights.
  std::vector<OpSpec> adam;
  for (const BucketInfo& b : p_.buckets) {
    OpSpec op;
    op.kind = OpKind::kAdamW;
    op.dtype = c_.act;
    op.group = b.dp_group;
    op.flags = b.zero_stage >= 1 ? kPartitioned : 0;
    op.in = {b.zero_stage >= 2 ? b.grad_shard : b.grads};
    op.out = {b.params, b.adam_m, b.adam_v};
    if (b.master >= 0) op.out.push_back(b.master);
    const int layout = b.dp_group.layout;
    const int group = b.dp_group.kind == GroupKind::kExpertDp ? c_.expert_dp_size()
                                                              : c_.grad_group_size(layout);
    op.dims = {b.elements, b.zero_stage >= 1 ? zero_parts_of(b) : group, dtype_bytes(c_.grad),
               c_.act == DType::kFp32 ? 8 : 12, 0, 0};
    adam.push_back(op);
  }
  const TaskId step = c_.emit.add(
      c_.compute_task(Phase::kStep, Block::kOptimizer, -1, -1, 0), adam,
      {last_compute, c_.emit.last_on(Stream::kDp), c_.emit.last_on(Stream::kTp)});
  // Distributed optimizer (ZeRO-1/2; ZeRO-3 gathers before each use instead): all-gather the
  // updated parameters, one all-gather per gradient bucket of the last reduction.
  for (int bucket : step_gathers_) {
    const BucketInfo& b = p_.buckets[bucket];
    OpSpec op;
    op.kind = OpKind::kAllGather;
    op.dtype = c_.act;
    op.flags = kPartitioned;
    op.group = b.dp_group;
    op.in = op.out = {b.params};
    op.dims[0] = b.elements;
    c_.emit.add(c_.collective_task(CollectiveKind::kAllGather, Purpose::kZero, b.dp_group,
                                   Phase::kStep, -1, -1, 0),
                {op}, {step});
  }
}

}  // namespace strata::strategies::detail
