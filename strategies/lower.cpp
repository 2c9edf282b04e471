// Lowering: specs -> Plan. One program per pipeline stage, built by walking the stage's
// materialised schedule unit by unit and emitting compute, collective, p2p and memory events.
//
// defines:
//   lower()                 validate, build layouts, one ProgramBuilder per stage, totals
//   ProgramBuilder          emits the tasks of one stage: forward and backward units, layers,
//                           tensor-parallel collectives, pipeline transfers, gradient buckets,
//                           ZeRO gathers, optimizer step
//   walk_memory()           peak memory of a program in program order
#include <algorithm>
#include <cmath>
#include <map>

#include "common/error.hpp"
#include "common/hash.hpp"
#include "common/version.hpp"
#include "strategies/accounting.hpp"
#include "strategies/plan.hpp"
#include "strategies/schedule.hpp"

namespace strata::strategies {
namespace {

constexpr std::int64_t kNoDep = -1;

// Bytes moved by a matmul of (M x K) by (K x N) with `elem` bytes per element.
double matmul_bytes(double M, double K, double N, double elem) {
  return elem * (M * K + K * N + M * N);
}

// One pending gradient bucket of a chunk (bytes accumulate until the bucket size).
struct Bucket {
  double bytes = 0;
  int layout = 0;
  std::int64_t producer = kNoDep;  // the task that completes the bucket's last gradient
};

class ProgramBuilder {
 public:
  ProgramBuilder(const Plan& plan, int stage)
      : plan_(plan), m_(plan.model), s_(plan.strategy), stage_(stage) {
    prog_.stage = stage;
    pp_ = s_.pp;
    v_ = s_.virtual_stages;
    elem_ = precision_bytes(s_.precision);
    grad_elem_ = grad_bytes(s_.precision, s_.main_grads_fp32);
    last_on_stream_.fill(kNoDep);
  }

  Program build() {
    const auto order = stage_schedule(s_.schedule, pp_, stage_, plan_.num_micro_batches, v_);
    // The first and last backward units of each chunk: gradient accumulation starts and ends.
    std::vector<std::size_t> first_backward(v_, order.size()), last_backward(v_, 0);
    for (std::size_t i = 0; i < order.size(); ++i) {
      if (order[i].phase != UnitPhase::kBackward) continue;
      last_backward[order[i].chunk] = i;
      first_backward[order[i].chunk] = std::min(first_backward[order[i].chunk], i);
    }
    for (std::size_t i = 0; i < order.size(); ++i) {
      const ScheduleUnit& u = order[i];
      if (u.phase == UnitPhase::kForward) {
        forward_unit(u.micro_batch, u.chunk);
      } else {
        first_round_ = i == first_backward[u.chunk];
        backward_unit(u.micro_batch, u.chunk, i == last_backward[u.chunk]);
      }
    }
    finish_step();
    prog_.dep_begin.push_back(static_cast<std::uint32_t>(prog_.deps.size()));
    std::stable_sort(prog_.mem_events.begin(), prog_.mem_events.end(),
                     [](const MemEvent& a, const MemEvent& b) {
                       if (a.task != b.task) return a.task < b.task;
                       return a.at_start && !b.at_start;
                     });
    static_memory();
    return std::move(prog_);
  }

 private:
  // ---- emission ------------------------------------------------------------------------------
  std::int64_t add(const Task& t, std::initializer_list<std::int64_t> deps) {
    return add(t, std::vector<std::int64_t>(deps));
  }
  std::int64_t add(const Task& t, std::vector<std::int64_t> deps) {
    // Blocking pipeline transfers (collectives.blocking_p2p): the next compute or
    // tensor-parallel task waits for the sends issued before it.
    if (!blocking_sends_.empty() && (t.stream == Stream::kCompute || t.stream == Stream::kTp)) {
      deps.insert(deps.end(), blocking_sends_.begin(), blocking_sends_.end());
      blocking_sends_.clear();
    }
    const auto id = static_cast<std::uint32_t>(prog_.tasks.size());
    prog_.dep_begin.push_back(static_cast<std::uint32_t>(prog_.deps.size()));
    const auto begin = prog_.deps.size();
    auto push = [&](std::int64_t d) {
      if (d < 0) return;
      const auto dep = static_cast<std::uint32_t>(d);
      for (auto k = begin; k < prog_.deps.size(); ++k) {
        if (prog_.deps[k] == dep) return;
      }
      prog_.deps.push_back(dep);
    };
    for (auto d : deps) push(d);
    const auto stream = static_cast<int>(t.stream);
    if (t.stream != Stream::kPp) {
      push(last_on_stream_[stream]);
      last_on_stream_[stream] = id;
    }
    prog_.tasks.push_back(t);
    return id;
  }

  void alloc(std::int64_t task, MemCategory c, double bytes) {
    if (bytes > 0) prog_.mem_events.push_back({static_cast<std::uint32_t>(task), true, c, bytes});
  }
  void release(std::int64_t task, MemCategory c, double bytes) {
    if (bytes > 0) {
      prog_.mem_events.push_back({static_cast<std::uint32_t>(task), false, c, -bytes});
    }
  }

  Task compute(Phase phase, Block block, int layer, int mb, int chunk, double flops,
               double bytes, double elementwise_bytes = 0) const {
    Task t;
    t.kind = TaskKind::kCompute;
    t.stream = Stream::kCompute;
    t.phase = phase;
    t.block = block;
    t.layer = static_cast<std::int16_t>(layer);
    t.micro_batch = mb;
    t.chunk = static_cast<std::int16_t>(chunk);
    t.flops = flops;
    t.bytes = bytes;
    t.elementwise_bytes = elementwise_bytes;
    return t;
  }

  // Element-wise kernels (docs/accounting.md "Element-wise kernels"). The residual
  // bias-dropout-add after attn_out and mlp_fc2 reads the branch and the residual and writes the
  // sum and the dropout mask, on sequence-parallel shards with SP; backward, dropout reads the
  // gradient and the mask and writes the gradient.
  double residual_bytes(double tokens, Phase phase) const {
    const double mask = m_.dropout ? 1.0 : 0.0;
    const double per_element = phase == Phase::kBackward ? 2.0 * elem_ + mask : 3.0 * elem_ + mask;
    return tokens * m_.hidden_size * per_element;
  }
  // Bias and activation after fc1: read the up-projection outputs (`up` per token), write the
  // activated ffn/t; backward reads the gradient and the saved inputs and writes their gradients.
  double activation_bytes(double tokens, double up, double ffn_shard, Phase phase) const {
    return elem_ * tokens * (phase == Phase::kBackward ? ffn_shard + 2.0 * up : up + ffn_shard);
  }

  // Weight-gradient accumulation (docs/accounting.md "Gradient accumulation"). Unless the
  // weight-gradient GEMM accumulates into the gradient buffer itself, a separate element-wise
  // kernel reads the new 16-bit gradients of the block's `params` parameters and reads and
  // writes their accumulators: every backward (kHook) or every backward after a chunk's first
  // (kAutograd, whose first gradient becomes the accumulator).
  double grad_accumulation_bytes(double params) const {
    if (s_.grad_accumulation == GradAccumulation::kFused) return 0;
    if (s_.grad_accumulation == GradAccumulation::kAutograd && first_round_) return 0;
    return params * (elem_ + 2.0 * grad_elem_);
  }

  Task collective(CollectiveKind kind, Purpose purpose, GroupRef group, Phase phase, int layer,
                  int mb, int chunk, double bytes) const {
    Task t;
    t.kind = TaskKind::kCollective;
    t.stream = purpose == Purpose::kTp || purpose == Purpose::kReshard ? Stream::kTp : Stream::kDp;
    t.phase = phase;
    t.collective = kind;
    t.purpose = purpose;
    t.group = group;
    t.layer = static_cast<std::int16_t>(layer);
    t.micro_batch = mb;
    t.chunk = static_cast<std::int16_t>(chunk);
    t.bytes = bytes;
    return t;
  }

  // ---- shapes --------------------------------------------------------------------------------
  int virtual_stage(int chunk) const { return chunk * pp_ + stage_; }
  int first_layer(int vs) const { return plan_.stage_first_layer[vs]; }
  int end_layer(int vs) const { return plan_.stage_first_layer[vs + 1]; }
  int layout_of(int layer) const { return plan_.layer_layout[layer]; }
  int tp_of_layout(int layout) const { return plan_.layouts[layout].size(Dim::kTp); }
  // Samples per replica per micro-batch under a layout (mbs * dp / layout dp).
  std::int64_t samples_of_layout(int layout) const {
    return static_cast<std::int64_t>(s_.micro_batch_size) * s_.dp /
           plan_.layouts[layout].size(Dim::kDp);
  }
  // Bytes of the hidden-state tensor (b, s, h) of a layout, unsharded.
  double hidden_bytes(int layout) const {
    return static_cast<double>(samples_of_layout(layout)) * m_.seq_length * m_.hidden_size *
           elem_;
  }
  GroupRef tp_group(int layout) const { return {GroupKind::kTp, static_cast<std::uint8_t>(layout), 0}; }
  GroupRef dp_group(int layout) const { return {GroupKind::kDp, static_cast<std::uint8_t>(layout), 0}; }
  // The activation layout flowing into layer `layer` (embedding output is layout 0).
  int incoming_layout(int layer) const { return layer == 0 ? 0 : layout_of(layer - 1); }

  // ---- tensor-parallel communication (Megatron's f / g operators) ----------------------------
  // The reducing side: the forward "g" at a block output and the backward of "f" at a block
  // input. An all-reduce, or a reduce-scatter with sequence parallelism.
  std::int64_t tp_reduce(std::int64_t after, int layout, Phase phase, int layer, int mb,
                         int chunk) {
    if (tp_of_layout(layout) == 1) return after;
    const auto kind = s_.sequence_parallel ? CollectiveKind::kReduceScatter
                                           : CollectiveKind::kAllReduce;
    return add(collective(kind, Purpose::kTp, tp_group(layout), phase, layer, mb, chunk,
                          hidden_bytes(layout)),
               {after});
  }
  // The gathering side: the forward "f" at a block input and the backward of "g" at a block
  // output. Identity, or an all-gather with sequence parallelism.
  std::int64_t tp_gather(std::int64_t after, int layout, Phase phase, int layer, int mb,
                         int chunk) {
    if (tp_of_layout(layout) == 1 || !s_.sequence_parallel) return after;
    return add(collective(CollectiveKind::kAllGather, Purpose::kTp, tp_group(layout), phase,
                          layer, mb, chunk, hidden_bytes(layout)),
               {after});
  }

  // Moving activations from layout `from` to layout `to` (a per-layer tp change). Growing tp
  // merges replicas: all-gather the micro-batch across the ranks that held the same old shard.
  // Shrinking tp splits a replica's micro-batch: a local slice forward, an all-gather of the
  // gradient backward.
  std::int64_t reshard(std::int64_t after, int from, int to, Phase phase, int layer, int mb,
                       int chunk) {
    if (from == to) return after;
    const bool grows = tp_of_layout(to) > tp_of_layout(from);
    const bool backward = phase == Phase::kBackward;
    if (grows == backward) return after;  // a local slice
    const int big = grows ? to : from, small = grows ? from : to;
    const GroupRef g{GroupKind::kReshard, static_cast<std::uint8_t>(big),
                     static_cast<std::uint8_t>(small)};
    return add(collective(CollectiveKind::kAllGather, Purpose::kReshard, g, phase, layer, mb,
                          chunk, hidden_bytes(big)),
               {after});
  }

  // ---- ZeRO-3 parameter gathers --------------------------------------------------------------
  // All-gather of one layer's parameters before it runs. With overlap_param_gather the gather is
  // prefetched (ordered only by the dp stream); otherwise it waits for `after`.
  std::int64_t gather_layer_params(std::int64_t after, int layer, Phase phase, int mb, int chunk) {
    const int layout = layout_of(layer);
    const double bytes = layer_params_per_rank(m_, tp_of_layout(layout)) * elem_;
    const auto id = add(collective(CollectiveKind::kAllGather, Purpose::kZero, dp_group(layout),
                                   phase, layer, mb, chunk, bytes),
                        {s_.collectives.overlap_param_gather ? kNoDep : after});
    alloc(id, MemCategory::kGatheredParams, bytes);
    last_gather_ = id;
    return id;
  }

  // ---- pipeline transfers --------------------------------------------------------------------
  std::uint32_t tag(UnitPhase phase, int dest_vs, int mb) const {
    const auto vstages = static_cast<std::uint32_t>(pp_ * v_);
    return (static_cast<std::uint32_t>(phase) * vstages + static_cast<std::uint32_t>(dest_vs)) *
               static_cast<std::uint32_t>(plan_.num_micro_batches) +
           static_cast<std::uint32_t>(mb);
  }
  // Bytes sent between virtual stages at the boundary after layer `layer`.
  double p2p_bytes(int layer) const {
    const int layout = layout_of(layer);
    const bool split = s_.sequence_parallel || s_.collectives.pp_scatter_gather;
    return hidden_bytes(layout) / (split ? tp_of_layout(layout) : 1);
  }
  std::int64_t p2p(TaskKind kind, UnitPhase phase, int peer_vs, int dest_vs, int boundary_layer,
                   int mb, int chunk, std::int64_t after) {
    Task t;
    t.kind = kind;
    t.stream = Stream::kPp;
    t.phase = phase == UnitPhase::kForward ? Phase::kForward : Phase::kBackward;
    t.purpose = Purpose::kPp;
    t.micro_batch = mb;
    t.chunk = static_cast<std::int16_t>(chunk);
    t.layer = static_cast<std::int16_t>(boundary_layer);
    t.peer_stage = peer_vs % pp_;
    t.tag = tag(phase, dest_vs, mb);
    t.bytes = p2p_bytes(boundary_layer);
    const auto id = add(t, {after});
    // Megatron-LM of 2021 (p2p_communication.py): batch_isend_irecv, wait on every request,
    // then torch.cuda.synchronize(): nothing runs after a send until it has completed. The
    // receive of the same call is already a data dependency of the work that follows it.
    if (kind == TaskKind::kSend && s_.collectives.blocking_p2p) blocking_sends_.push_back(id);
    return id;
  }
  // After receiving a scattered activation (scatter/gather without SP), all-gather it in tp.
  std::int64_t gather_received(std::int64_t after, int boundary_layer, Phase phase, int mb,
                               int chunk) {
    const int layout = layout_of(boundary_layer);
    if (!s_.collectives.pp_scatter_gather || s_.sequence_parallel || tp_of_layout(layout) == 1) {
      return after;
    }
    return add(collective(CollectiveKind::kAllGather, Purpose::kTp, tp_group(layout), phase,
                          boundary_layer, mb, chunk, hidden_bytes(layout)),
               {after});
  }

  // ---- one transformer layer -----------------------------------------------------------------
  // Forward (or recomputed forward) of `layer`; returns the last task. Allocates the layer's
  // stored activations on a forward.
  std::int64_t layer_forward(std::int64_t prev, int layer, int mb, int chunk, Phase phase) {
    const int layout = layout_of(layer);
    const int t = tp_of_layout(layout);
    const auto samples = samples_of_layout(layout);
    const LayerStrategy ls = layer_strategy(s_, layer);
    const LayerFlops f = layer_forward_flops(m_, samples);
    const double T = static_cast<double>(samples) * m_.seq_length;
    const double h = m_.hidden_size, hk = m_.kv_hidden(), ffn = m_.intermediate_size;
    const double norm_tokens = s_.sequence_parallel ? T / t : T;

    // The stored layer input is already in this layer's layout: only a forward reshards.
    if (phase == Phase::kForward) {
      prev = reshard(prev, incoming_layout(layer), layout, phase, layer, mb, chunk);
    }
    std::int64_t gathered = kNoDep;
    if (s_.zero_stage == 3) gathered = gather_layer_params(prev, layer, phase, mb, chunk);

    const auto norm1 = add(compute(phase, Block::kAttnNorm, layer, mb, chunk, 0,
                                   2.0 * elem_ * norm_tokens * h),
                           {prev, gathered});
    if (phase == Phase::kForward) {
      alloc(norm1, MemCategory::kActivation,
            layer_activation_bytes(m_, samples, t, s_.sequence_parallel, ls.recompute).stored);
    } else {
      alloc(norm1, MemCategory::kRecompute,
            layer_activation_bytes(m_, samples, t, s_.sequence_parallel, ls.recompute).recomputed);
    }
    auto x = tp_gather(norm1, layout, phase, layer, mb, chunk);
    x = add(compute(phase, Block::kAttnQkv, layer, mb, chunk, f.qkv / t,
                    matmul_bytes(T, h, (h + 2 * hk) / t, elem_)),
            {x});
    const double score_bytes = elem_ * 2.0 * (m_.num_attention_heads / t) * samples *
                               static_cast<double>(m_.seq_length) * m_.seq_length;
    x = add(compute(phase, Block::kAttnCore, layer, mb, chunk, f.attn_core / t,
                    elem_ * T * (2 * h + 2 * hk) / t + score_bytes),
            {x});
    x = add(compute(phase, Block::kAttnOut, layer, mb, chunk, f.attn_out / t,
                    matmul_bytes(T, h / t, h, elem_), residual_bytes(norm_tokens, phase)),
            {x});
    x = tp_reduce(x, layout, phase, layer, mb, chunk);
    x = add(compute(phase, Block::kMlpNorm, layer, mb, chunk, 0, 2.0 * elem_ * norm_tokens * h),
            {x});
    x = tp_gather(x, layout, phase, layer, mb, chunk);
    const double up = (m_.hidden_act == Activation::kSwiglu ? 2.0 : 1.0) * ffn / t;
    const double fc1_flops = f.mlp / t * (up / (up + ffn / t));
    x = add(compute(phase, Block::kMlpFc1, layer, mb, chunk, fc1_flops,
                    matmul_bytes(T, h, up, elem_), activation_bytes(T, up, ffn / t, phase)),
            {x});
    x = add(compute(phase, Block::kMlpFc2, layer, mb, chunk, f.mlp / t - fc1_flops,
                    matmul_bytes(T, ffn / t, h, elem_), residual_bytes(norm_tokens, phase)),
            {x});
    x = tp_reduce(x, layout, phase, layer, mb, chunk);
    if (gathered != kNoDep && phase == Phase::kForward) {
      release(x, MemCategory::kGatheredParams,
              layer_params_per_rank(m_, t) * elem_);
    }
    return x;
  }

  // Backward of `layer` (recomputing what the recompute mode dropped); returns the last task.
  std::int64_t layer_backward(std::int64_t prev, int layer, int mb, int chunk) {
    const int layout = layout_of(layer);
    const int t = tp_of_layout(layout);
    const auto samples = samples_of_layout(layout);
    const LayerStrategy ls = layer_strategy(s_, layer);
    const LayerFlops f = layer_forward_flops(m_, samples);
    const LayerActivation act =
        layer_activation_bytes(m_, samples, t, s_.sequence_parallel, ls.recompute);
    const double T = static_cast<double>(samples) * m_.seq_length;
    const double h = m_.hidden_size, hk = m_.kv_hidden(), ffn = m_.intermediate_size;
    const double norm_tokens = s_.sequence_parallel ? T / t : T;
    const Phase B = Phase::kBackward;

    std::int64_t gathered = kNoDep;
    std::int64_t recompute_first = kNoDep;
    if (ls.recompute == Recompute::kFull) {
      // Re-run the forward from the stored layer input (its ZeRO-3 gather serves both).
      recompute_first = static_cast<std::int64_t>(prog_.tasks.size());
      prev = layer_forward(prev, layer, mb, chunk, Phase::kRecompute);
      if (s_.zero_stage == 3) gathered = last_gather_;
    } else if (s_.zero_stage == 3) {
      gathered = gather_layer_params(prev, layer, B, mb, chunk);
    }

    const double up = (m_.hidden_act == Activation::kSwiglu ? 2.0 : 1.0) * ffn / t;
    const double fc1_flops = f.mlp / t * (up / (up + ffn / t));
    const BlockParams bp = layer_block_params(m_, t);
    auto x = tp_gather(prev, layout, Phase::kBackward, layer, mb, chunk);
    x = add(compute(B, Block::kMlpFc2, layer, mb, chunk, 2.0 * (f.mlp / t - fc1_flops),
                    2.0 * matmul_bytes(T, ffn / t, h, elem_),
                    residual_bytes(norm_tokens, B) + grad_accumulation_bytes(bp.mlp_fc2)),
            {x, gathered});
    x = add(compute(B, Block::kMlpFc1, layer, mb, chunk, 2.0 * fc1_flops,
                    2.0 * matmul_bytes(T, h, up, elem_),
                    activation_bytes(T, up, ffn / t, B) + grad_accumulation_bytes(bp.mlp_fc1)),
            {x});
    x = tp_reduce(x, layout, Phase::kBackward, layer, mb, chunk);
    x = add(compute(B, Block::kMlpNorm, layer, mb, chunk, 0, 3.0 * elem_ * norm_tokens * h,
                    grad_accumulation_bytes(bp.norm)),
            {x});
    x = tp_gather(x, layout, Phase::kBackward, layer, mb, chunk);
    x = add(compute(B, Block::kAttnOut, layer, mb, chunk, 2.0 * f.attn_out / t,
                    2.0 * matmul_bytes(T, h / t, h, elem_),
                    residual_bytes(norm_tokens, B) + grad_accumulation_bytes(bp.attn_out)),
            {x});
    const double score_bytes = elem_ * 2.0 * (m_.num_attention_heads / t) * samples *
                               static_cast<double>(m_.seq_length) * m_.seq_length;
    if (ls.recompute == Recompute::kSelective) {
      // Recompute the attention core (scores, softmax, dropout) just before its backward.
      const auto rc = add(compute(Phase::kRecompute, Block::kAttnCore, layer, mb, chunk,
                                  f.attn_core / t, elem_ * T * (2 * h + 2 * hk) / t + score_bytes),
                          {x});
      alloc(rc, MemCategory::kRecompute, act.recomputed);
      recompute_first = rc;
      x = rc;
    }
    x = add(compute(B, Block::kAttnCore, layer, mb, chunk, 2.0 * f.attn_core / t,
                    2.0 * (elem_ * T * (2 * h + 2 * hk) / t + score_bytes)),
            {x});
    x = add(compute(B, Block::kAttnQkv, layer, mb, chunk, 2.0 * f.qkv / t,
                    2.0 * matmul_bytes(T, h, (h + 2 * hk) / t, elem_),
                    grad_accumulation_bytes(bp.attn_qkv)),
            {x});
    x = tp_reduce(x, layout, Phase::kBackward, layer, mb, chunk);
    x = add(compute(B, Block::kAttnNorm, layer, mb, chunk, 0, 3.0 * elem_ * norm_tokens * h,
                    grad_accumulation_bytes(bp.norm)),
            {x});
    release(x, MemCategory::kActivation, act.stored);
    if (recompute_first != kNoDep) release(x, MemCategory::kRecompute, act.recomputed);
    if (gathered != kNoDep) {
      release(x, MemCategory::kGatheredParams, layer_params_per_rank(m_, t) * elem_);
    }
    return reshard(x, incoming_layout(layer), layout, B, layer, mb, chunk);
  }

  // ---- units ---------------------------------------------------------------------------------
  void forward_unit(int mb, int chunk) {
    const int vs = virtual_stage(chunk);
    const int first = first_layer(vs), end = end_layer(vs);
    const double samples0 = static_cast<double>(samples_of_layout(0));
    const double T0 = samples0 * m_.seq_length;
    std::int64_t x;
    if (vs > 0) {
      x = p2p(TaskKind::kRecv, UnitPhase::kForward, vs - 1, vs, first - 1, mb, chunk, kNoDep);
      x = gather_received(x, first - 1, Phase::kForward, mb, chunk);
    } else {
      const auto emb = add(compute(Phase::kForward, Block::kEmbedding, -1, mb, chunk, 0,
                                   2.0 * elem_ * T0 * m_.hidden_size),
                           {});
      alloc(emb, MemCategory::kActivation,
            embedding_activation_bytes(m_, samples_of_layout(0), s_.tp, s_.sequence_parallel));
      x = tp_reduce(emb, 0, Phase::kForward, -1, mb, chunk);
    }
    for (int l = first; l < end; ++l) x = layer_forward(x, l, mb, chunk, Phase::kForward);
    if (vs == pp_ * v_ - 1) {
      x = reshard(x, layout_of(m_.num_hidden_layers - 1), 0, Phase::kForward, -1, mb, chunk);
      const auto norm = add(compute(Phase::kForward, Block::kFinalNorm, -1, mb, chunk, 0,
                                    2.0 * elem_ * T0 * m_.hidden_size /
                                        (s_.sequence_parallel ? s_.tp : 1)),
                            {x});
      alloc(norm, MemCategory::kLogits,
            lm_head_activation_bytes(m_, samples_of_layout(0), s_.tp, s_.sequence_parallel));
      x = tp_gather(norm, 0, Phase::kForward, -1, mb, chunk);
      x = add(compute(Phase::kForward, Block::kLmHead, -1, mb, chunk,
                      lm_head_forward_flops(m_, samples_of_layout(0)) / s_.tp,
                      matmul_bytes(T0, m_.hidden_size, m_.vocab_size / s_.tp, elem_) +
                          4.0 * T0 * m_.vocab_size / s_.tp),
              {x});
      if (s_.tp > 1) {
        // Vocabulary-parallel cross-entropy: max, sum of exponentials and target logit (fp32).
        x = add(collective(CollectiveKind::kAllReduce, Purpose::kTp, tp_group(0), Phase::kForward,
                           -1, mb, chunk, 3.0 * 4.0 * T0),
                {x});
      }
    } else {
      p2p(TaskKind::kSend, UnitPhase::kForward, vs + 1, vs + 1, end - 1, mb, chunk, x);
    }
  }

  void backward_unit(int mb, int chunk, bool last_for_chunk) {
    const int vs = virtual_stage(chunk);
    const int first = first_layer(vs), end = end_layer(vs);
    const double T0 = static_cast<double>(samples_of_layout(0)) * m_.seq_length;
    const bool reduce_now = s_.zero_stage >= 2 || last_for_chunk;
    last_round_ = last_for_chunk;
    std::int64_t x;
    if (vs == pp_ * v_ - 1) {
      const double final_norm_params = layer_block_params(m_, s_.tp).norm;
      x = add(compute(Phase::kBackward, Block::kLmHead, -1, mb, chunk,
                      2.0 * lm_head_forward_flops(m_, samples_of_layout(0)) / s_.tp,
                      2.0 * matmul_bytes(T0, m_.hidden_size, m_.vocab_size / s_.tp, elem_) +
                          4.0 * T0 * m_.vocab_size / s_.tp,
                      grad_accumulation_bytes(output_params_per_rank(m_, s_.tp, pp_) -
                                              final_norm_params)),
              {});
      x = tp_reduce(x, 0, Phase::kBackward, -1, mb, chunk);
      x = add(compute(Phase::kBackward, Block::kFinalNorm, -1, mb, chunk, 0,
                      3.0 * elem_ * T0 * m_.hidden_size / (s_.sequence_parallel ? s_.tp : 1),
                      grad_accumulation_bytes(final_norm_params)),
              {x});
      // The output parameters' gradients (LM head and final norm) are complete after the final
      // norm's backward.
      if (reduce_now && shared_embedding_bucket()) {
        embedding_bucket(x, mb, chunk);
        grad_ready(x, output_params_per_rank(m_, s_.tp, pp_) - word_embedding_params(), 0, mb,
                   chunk, /*layer=*/false);
      } else if (reduce_now) {
        grad_ready(x, output_params_per_rank(m_, s_.tp, pp_), 0, mb, chunk, /*layer=*/false);
      }
      release(x, MemCategory::kLogits,
              lm_head_activation_bytes(m_, samples_of_layout(0), s_.tp, s_.sequence_parallel));
      x = reshard(x, layout_of(m_.num_hidden_layers - 1), 0, Phase::kBackward, -1, mb, chunk);
    } else {
      x = p2p(TaskKind::kRecv, UnitPhase::kBackward, vs + 1, vs, end - 1, mb, chunk, kNoDep);
      x = gather_received(x, end - 1, Phase::kBackward, mb, chunk);
    }
    for (int l = end - 1; l >= first; --l) {
      x = layer_backward(x, l, mb, chunk);
      if (reduce_now || s_.zero_stage == 3) {
        grad_ready(x, layer_params_per_rank(m_, tp_of_layout(layout_of(l))), layout_of(l), mb,
                   chunk, /*layer=*/true);
      }
    }
    if (vs > 0) {
      p2p(TaskKind::kSend, UnitPhase::kBackward, vs - 1, vs - 1, first - 1, mb, chunk, x);
    } else {
      x = tp_gather(x, 0, Phase::kBackward, -1, mb, chunk);
      x = add(compute(Phase::kBackward, Block::kEmbedding, -1, mb, chunk, 0,
                      2.0 * elem_ * T0 * m_.hidden_size,
                      grad_accumulation_bytes(input_embedding_params_per_rank(m_, s_.tp))),
              {x});
      release(x, MemCategory::kActivation,
              embedding_activation_bytes(m_, samples_of_layout(0), s_.tp, s_.sequence_parallel));
      if (reduce_now && shared_embedding_bucket()) {
        embedding_bucket(x, mb, chunk);
        const double rest = input_embedding_params_per_rank(m_, s_.tp) - word_embedding_params();
        if (rest > 0) grad_ready(x, rest, 0, mb, chunk, /*layer=*/false);
      } else if (reduce_now) {
        grad_ready(x, input_embedding_params_per_rank(m_, s_.tp), 0, mb, chunk, /*layer=*/false);
      }
    }
    if (reduce_now) flush_bucket(mb, chunk);
  }

  // ---- data-parallel gradient reduction ------------------------------------------------------
  // ZeRO with a tied embedding over pipeline stages: the word embedding (first stage) and its
  // copy (last stage) get a bucket of their own, so both are partitioned over dp alike and the
  // embedding all-reduce after the reduction adds matching parts (Megatron-core's separate
  // bucket for the shared embedding).
  bool shared_embedding_bucket() const {
    return s_.zero_stage >= 1 && m_.tie_word_embeddings && pp_ > 1;
  }
  double word_embedding_params() const {
    return static_cast<double>(m_.vocab_size) * m_.hidden_size / s_.tp;
  }
  void embedding_bucket(std::int64_t producer, int mb, int chunk) {
    flush_bucket(mb, chunk);
    grad_ready(producer, word_embedding_params(), 0, mb, chunk, /*layer=*/false);
    flush_bucket(mb, chunk);
  }

  // `params` parameters (per rank) of `layout` got their final gradient for this reduction at
  // task `producer`. ZeRO-3 reduces per layer; otherwise gradients fill buckets.
  void grad_ready(std::int64_t producer, double params, int layout, int mb, int chunk,
                  bool layer) {
    if (plan_.layouts[layout].size(Dim::kDp) == 1) return;
    const double bytes = params * grad_elem_;
    if (s_.zero_stage == 3) {
      add(collective(CollectiveKind::kReduceScatter, Purpose::kZero, dp_group(layout),
                     Phase::kBackward, -1, mb, chunk, bytes),
          {producer});
      // Parameters outside the layers are not gathered before use: they are all-gathered once
      // after the optimizer step, like ZeRO-1's.
      if (!layer && last_round_) param_buckets_.push_back({params, layout});
      return;
    }
    if (open_.bytes > 0 && open_.layout != layout) flush_bucket(mb, chunk);
    open_.bytes += bytes;
    open_.layout = layout;
    open_.producer = producer;
    if (open_.bytes >= s_.collectives.grad_bucket_bytes) flush_bucket(mb, chunk);
  }

  void flush_bucket(int mb, int chunk) {
    if (open_.bytes <= 0) return;
    // The distributed optimizer all-gathers the updated parameters bucket by bucket, with the
    // partition of the gradient buckets of the step's last reduction.
    if (last_round_ && s_.zero_stage >= 1) {
      param_buckets_.push_back({open_.bytes / grad_elem_, open_.layout});
    }
    if (s_.collectives.overlap_grad_reduce || s_.zero_stage == 2) {
      emit_bucket(open_, mb, chunk);
    } else {
      deferred_.push_back(open_);
    }
    open_ = Bucket{};
  }

  void emit_bucket(const Bucket& b, int mb, int chunk,
                   const std::vector<std::int64_t>& also_after = {}) {
    const bool zero = s_.zero_stage >= 1;
    std::vector<std::int64_t> deps{b.producer};
    deps.insert(deps.end(), also_after.begin(), also_after.end());
    add(collective(zero ? CollectiveKind::kReduceScatter : CollectiveKind::kAllReduce,
                   zero ? Purpose::kZero : Purpose::kDp, dp_group(b.layout), Phase::kBackward, -1,
                   mb, chunk, b.bytes),
        std::move(deps));
  }

  // ---- end of step ---------------------------------------------------------------------------
  void finish_step() {
    const auto last_compute = last_on_stream_[static_cast<int>(Stream::kCompute)];
    // With blocking transfers the step's last sends complete before the gradient reduction
    // and the optimizer start (Megatron calls them after its pipeline schedule returns).
    const std::vector<std::int64_t> last_sends = blocking_sends_;
    for (Bucket b : deferred_) {
      b.producer = last_compute;
      emit_bucket(b, -1, 0, last_sends);
    }
    if (s_.sequence_parallel && s_.tp > 1) {
      // Sequence parallelism: the replicated parameters' gradients (norms, row-parallel biases,
      // the position table) are partial sums over each rank's slice of the sequence; Megatron
      // all-reduces them over the tp group before the optimizer.
      double replicated = 0;
      for (int c = 0; c < v_; ++c) {
        const int vs = virtual_stage(c);
        replicated += (end_layer(vs) - first_layer(vs)) * layer_replicated_params(m_);
        if (vs == 0 && m_.learned_position_embeddings) {
          replicated += static_cast<double>(m_.seq_length) * m_.hidden_size;
        }
        if (vs == pp_ * v_ - 1) {
          replicated += (m_.norm == NormKind::kLayerNorm ? 2.0 : 1.0) * m_.hidden_size;
        }
      }
      add(collective(CollectiveKind::kAllReduce, Purpose::kTp, tp_group(0), Phase::kStep, -1, -1,
                     0, replicated * grad_elem_),
          {last_compute});
    }
    const bool has_first = stage_ == 0, has_last = stage_ == pp_ - 1;
    if (m_.tie_word_embeddings && pp_ > 1 && (has_first || has_last)) {
      // Megatron keeps the tied word embedding on the first and the last stage and sums their
      // gradients once per step.
      std::vector<std::int64_t> deps{last_compute, last_on_stream_[static_cast<int>(Stream::kDp)]};
      deps.insert(deps.end(), last_sends.begin(), last_sends.end());
      add(collective(CollectiveKind::kAllReduce, Purpose::kEmbedding, {GroupKind::kEmbedding, 0, 0},
                     Phase::kStep, -1, -1, 0,
                     static_cast<double>(m_.vocab_size) * m_.hidden_size / s_.tp * grad_elem_),
          std::move(deps));
    }
    // Optimizer step over the rank's (ZeRO-sharded) parameters: Adam reads and writes the fp32
    // master weights and both moments, reads the gradient and writes the 16-bit weights.
    double sharded = 0;
    for (const auto& [layout, p] : params_by_layout()) {
      sharded += s_.zero_stage >= 1 ? p / plan_.layouts[layout].size(Dim::kDp) : p;
    }
    const double opt_bytes = precision_bytes(s_.precision) == 4 ? 8.0 : 12.0;
    const auto step = add(compute(Phase::kStep, Block::kOptimizer, -1, -1, 0, 0,
                                  sharded * (2.0 * opt_bytes + grad_elem_ + elem_)),
                          {last_compute, last_on_stream_[static_cast<int>(Stream::kDp)],
                           last_on_stream_[static_cast<int>(Stream::kTp)]});
    // Distributed optimizer (ZeRO-1/2; ZeRO-3's parameters outside the layers): all-gather the
    // updated 16-bit parameters, one all-gather per gradient bucket of the last reduction.
    for (const ParamBucket& b : param_buckets_) {
      add(collective(CollectiveKind::kAllGather, Purpose::kZero, dp_group(b.layout), Phase::kStep,
                     -1, -1, 0, b.params * elem_),
          {step});
    }
  }

  // Parameters of this stage per layout (unsharded by ZeRO).
  std::map<int, double> params_by_layout() const {
    std::map<int, double> out;
    for (int c = 0; c < v_; ++c) {
      const int vs = virtual_stage(c);
      for (int l = first_layer(vs); l < end_layer(vs); ++l) {
        out[layout_of(l)] += layer_params_per_rank(m_, tp_of_layout(layout_of(l)));
      }
      if (vs == 0) out[0] += input_embedding_params_per_rank(m_, s_.tp);
      if (vs == pp_ * v_ - 1) out[0] += output_params_per_rank(m_, s_.tp, pp_);
    }
    return out;
  }

  void static_memory() {
    MemorySummary& mem = prog_.memory;
    for (const auto& [layout, p] : params_by_layout()) {
      const StaticMemory sm = static_memory_bytes(p, plan_.layouts[layout].size(Dim::kDp),
                                                  s_.zero_stage, s_.precision, s_.main_grads_fp32);
      mem.static_bytes.params += sm.params;
      mem.static_bytes.grads += sm.grads;
      mem.static_bytes.optimizer += sm.optimizer;
      mem.params_count += p;
    }
    // Walk the program in order: starts of task i, then its ends.
    double now = 0, activations = 0;
    std::size_t e = 0;
    const auto& ev = prog_.mem_events;
    for (std::uint32_t i = 0; i < prog_.tasks.size(); ++i) {
      for (; e < ev.size() && ev[e].task == i && ev[e].at_start; ++e) {
        now += ev[e].bytes;
        if (ev[e].category == MemCategory::kActivation) activations += ev[e].bytes;
      }
      if (now > mem.peak_dynamic_bytes) {
        mem.peak_dynamic_bytes = now;
        mem.peak_activation_bytes = activations;
        mem.peak_task = i;
      }
      for (; e < ev.size() && ev[e].task == i; ++e) {
        now += ev[e].bytes;
        if (ev[e].category == MemCategory::kActivation) activations += ev[e].bytes;
      }
    }
    STRATA_CHECK(e == ev.size(), "memory events out of order");
    STRATA_CHECK(std::abs(now) <= 1e-6 * std::max(1.0, mem.peak_dynamic_bytes),
                 "memory events do not balance: " + std::to_string(now) + " bytes left");
  }

  const Plan& plan_;
  const ModelSpec& m_;
  const StrategySpec& s_;
  int stage_;
  int pp_ = 1, v_ = 1;
  double elem_ = 2, grad_elem_ = 2;
  Program prog_;
  std::array<std::int64_t, 6> last_on_stream_{};
  std::int64_t last_gather_ = kNoDep;
  Bucket open_;
  std::vector<Bucket> deferred_;
  // The buckets of the step's last gradient reduction (per chunk), for the parameter
  // all-gathers after the optimizer step.
  struct ParamBucket {
    double params = 0;
    int layout = 0;
  };
  std::vector<ParamBucket> param_buckets_;
  bool last_round_ = false;   // emitting the last backward unit of a chunk
  bool first_round_ = false;  // emitting the first backward unit of a chunk
  std::vector<std::int64_t> blocking_sends_;  // blocking_p2p: sends the next task waits for
};

// Totals over all ranks: each stage's program runs on world/pp ranks.
PlanTotals compute_totals(const Plan& plan) {
  PlanTotals out;
  const double ranks_per_stage = static_cast<double>(plan.world_size) / plan.strategy.pp;
  const auto rps = static_cast<FlopCount>(plan.world_size / plan.strategy.pp);
  for (const Program& p : plan.programs) {
    for (const Task& t : p.tasks) {
      out.tasks += ranks_per_stage;
      out.tasks_by_kind[static_cast<int>(t.kind)] += ranks_per_stage;
      if (t.kind == TaskKind::kCompute) {
        const auto f = static_cast<FlopCount>(t.flops);
        if (t.phase != Phase::kRecompute) out.flops.model += f * rps;
        out.flops.hardware += f * rps;
      } else if (t.kind != TaskKind::kRecv) {
        // Count a transfer once (at its sender); a collective once per participating rank.
        const int c = static_cast<int>(t.collective), pu = static_cast<int>(t.purpose);
        out.comm_bytes[c][pu] += t.bytes * ranks_per_stage;
        out.comm_count[c][pu] += ranks_per_stage;
      }
    }
  }
  return out;
}

}  // namespace

Plan lower(const ModelSpec& m, const ClusterSpec& c, const StrategySpec& s, int world_size) {
  if (world_size < 1) {
    throw ConfigError("world size = " + std::to_string(world_size) + ": must be at least 1");
  }
  if (world_size > c.total_gpus()) {
    throw ConfigError("world size = " + std::to_string(world_size) + ": exceeds cluster '" +
                      c.name + "' (" + std::to_string(c.total_gpus()) + " GPUs)");
  }
  validate(m, s, world_size);
  if (s.cp > 1) {
    throw ConfigError("strategy.cp = " + std::to_string(s.cp) +
                      ": context parallelism is validated but not lowered to a Plan yet; use cp 1");
  }
  const auto& order = s.order;
  const auto pos = [&](Dim d) { return std::find(order.begin(), order.end(), d) - order.begin(); };
  const bool pp_outside = pos(Dim::kPp) > pos(Dim::kTp) && pos(Dim::kPp) > pos(Dim::kDp);
  for (std::size_t i = 0; i < s.layer_overrides.size(); ++i) {
    if (s.layer_overrides[i].tp != 0 && s.layer_overrides[i].tp != s.tp && !pp_outside) {
      throw ConfigError("strategy.order = \"" + s.order_string() +
                        "\": per-layer tp overrides need pp after tp and dp in the order, so a "
                        "stage's ranks stay the same when tp and dp trade places");
    }
  }
  if (s.sequence_parallel) {
    for (std::size_t i = 0; i < s.layer_overrides.size(); ++i) {
      if (s.layer_overrides[i].tp != 0 && s.layer_overrides[i].tp != s.tp) {
        throw ConfigError("strategy.layer_overrides[" + std::to_string(i) +
                          "].tp = " + std::to_string(s.layer_overrides[i].tp) +
                          ": a per-layer tp change with sequence_parallel is not lowered yet; "
                          "set sequence_parallel false or drop the tp override");
      }
    }
  }

  Plan plan;
  plan.model = m;
  plan.cluster = c;
  plan.strategy = s;
  plan.world_size = world_size;
  plan.num_micro_batches = s.num_micro_batches();
  plan.provenance.strata_version = version();
  plan.provenance.model_hash = fnv1a64_hex(to_json(m).dump());
  plan.provenance.cluster_hash = fnv1a64_hex(to_json(c).dump());
  plan.provenance.strategy_hash = fnv1a64_hex(to_json(s).dump());

  // Layouts: the strategy's grid, plus one per distinct layer tp (tp * dp stays fixed).
  plan.layouts.emplace_back(s);
  std::map<int, int> layout_of_tp{{s.tp, 0}};
  for (int l = 0; l < m.num_hidden_layers; ++l) {
    const LayerStrategy ls = layer_strategy(s, l);
    auto it = layout_of_tp.find(ls.tp);
    if (it == layout_of_tp.end()) {
      STRATA_CHECK(plan.layouts.size() < 255, "too many layouts");
      it = layout_of_tp.emplace(ls.tp, static_cast<int>(plan.layouts.size())).first;
      plan.layouts.emplace_back(ls.tp, s.cp, ls.dp, s.pp, 1, s.order);
    }
    plan.layer_layout.push_back(it->second);
  }
  const std::vector<int> partition = stage_partition(m, s);
  plan.stage_first_layer.assign(1, 0);
  for (int n : partition) plan.stage_first_layer.push_back(plan.stage_first_layer.back() + n);
  STRATA_CHECK(plan.stage_first_layer.back() == m.num_hidden_layers, "partition does not sum");

  plan.programs.reserve(s.pp);
  for (int stage = 0; stage < s.pp; ++stage) {
    plan.programs.push_back(ProgramBuilder(plan, stage).build());
  }
  plan.totals = compute_totals(plan);
  return plan;
}

int first_rank_over_capacity(const Plan& plan) {
  for (int r = 0; r < plan.world_size; ++r) {
    if (plan.program_of(r).memory.peak_bytes() > plan.capacity_bytes(r)) return r;
  }
  return -1;
}

}  // namespace strata::strategies
