// Lowering internals: how one pipeline stage's program is built. Not part of the public API.
//
// defines:
//   Emitter            tasks, deps and stream order, buffers, ops (emitter.cpp)
//   StageContext       the specs, the stage and their sizes, shared by the passes
//   Instance           one pass over a layer's tensors (forward or recompute) and their buffers
//   TensorParallel     Megatron's f and g operators, sequence parallelism, resharding
//                      (tensor_parallel.cpp)
//   DataParallel       parameters, buckets, gradient reduction, ZeRO (ZeRO-3's prefetched
//                      gathers, hybrid sharding), the optimizer step (data_parallel.cpp)
//   ModelGraph         the model description: blocks and their forward ops; backward and
//                      recompute derived from them (model_graph.cpp); context parallelism's
//                      attention core, ring or all-gather (context_parallel.cpp)
//   build_stage()      the pipeline schedule walked unit by unit (pipeline.cpp)
//   finish_program()   task costs from ops, buffer lifetimes and the memory walk (memory.cpp)
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "strategies/plan.hpp"
#include "strategies/schedule.hpp"

namespace strata::strategies::detail {

using TaskId = std::int64_t;
inline constexpr TaskId kNoTask = -1;
using BufId = std::int32_t;
inline constexpr BufId kNoBuf = -1;

// An op before it is placed in a task: operands as buffer ids.
struct OpSpec {
  OpKind kind = OpKind::kLinear;
  DType dtype = DType::kFp32;
  std::uint8_t flags = 0;
  GroupRef group;
  std::vector<BufId> in, out;
  std::array<std::int64_t, 6> dims{};
  float param = 0;
};

// A block backward's ops in order, split into those of the input gradients and those of the
// weight gradients (the weight-gradient GEMMs, grouped ones included, and the gradient
// accumulation after them): the B and W tasks of a split backward (model_graph.cpp).
std::pair<std::vector<OpSpec>, std::vector<OpSpec>> split_weight_gradients(
    const std::vector<OpSpec>& ops);

// Appends tasks, ops and buffers to one program, chaining each stream's tasks.
class Emitter {
 public:
  explicit Emitter(Program& program);

  BufId buffer(const Buffer& b);
  Buffer& buf(BufId id) { return prog_.buffers[id]; }
  const Buffer& buf(BufId id) const { return prog_.buffers[id]; }
  std::int64_t elements(BufId id) const { return prog_.buffers[id].elements(); }

  // Appends task `t` running `ops` after `deps` (kNoTask entries are ignored) and after the
  // previous task of its stream (pipeline transfers are not chained). With blocking transfers
  // pending, a compute or tensor-parallel task also waits for them.
  TaskId add(Task t, const std::vector<OpSpec>& ops, std::vector<TaskId> deps);
  TaskId last_on(Stream s) const { return last_on_stream_[static_cast<int>(s)]; }
  void block_on(TaskId send) { blocking_sends_.push_back(send); }
  const std::vector<TaskId>& blocking_sends() const { return blocking_sends_; }
  std::size_t num_tasks() const { return prog_.tasks.size(); }
  Program& program() { return prog_; }

 private:
  Program& prog_;
  std::array<TaskId, 6> last_on_stream_{};
  std::vector<TaskId> blocking_sends_;
};

// The specs and the sizes every pass needs, for one stage.
struct StageContext {
  StageContext(const Plan& plan, int stage, Program& program);

  const Plan& plan;
  const ModelSpec& m;
  const StrategySpec& s;
  int stage = 0;
  int pp = 1, v = 1;
  DType act = DType::kBf16;   // activations and weights
  DType grad = DType::kBf16;  // gradients as reduced and stored
  Emitter emit;

  // The virtual stage chunk `chunk` of this stage holds, and the stage holding virtual stage
  // `vs` (Megatron's interleaved layout, or ZB-V's V: strategies/schedule.hpp).
  int virtual_stage(int chunk) const { return virtual_stage_of(s.schedule, pp, stage, chunk); }
  int stage_of(int vs) const { return stage_of_virtual(s.schedule, pp, vs); }
  // Whether the first and the last virtual stage (the embedding and the head) are on different
  // pipeline ranks: with pp > 1, except under ZB-V, whose stage 0 holds both.
  bool ends_apart() const { return stage_of(0) != stage_of(pp * v - 1); }
  int first_layer(int vs) const { return plan.stage_first_layer[vs]; }
  int end_layer(int vs) const { return plan.stage_first_layer[vs + 1]; }
  bool last_virtual_stage(int vs) const { return vs == pp * v - 1; }
  int layout_of(int layer) const { return plan.layer_layout[layer]; }
  int tp_of(int layout) const { return plan.layouts[layout].size(Dim::kTp); }
  int dp_of(int layout) const { return plan.layouts[layout].size(Dim::kDp); }
  // Samples per replica per micro-batch under a layout (mbs * dp / layout dp).
  std::int64_t samples(int layout) const;
  // Tokens of the micro-batch a rank holds: its samples' sequences, or with context
  // parallelism its 1/cp of each (two load-balanced chunks).
  std::int64_t seq_local() const { return m.seq_length / s.cp; }
  std::int64_t tokens(int layout) const { return samples(layout) * seq_local(); }
  bool sp(int layout) const { return s.sequence_parallel && tp_of(layout) > 1; }
  // Whether layer `layer` runs its linear layers' GEMMs in FP8 (strategy fp8 and its
  // overrides); never outside the layers (the embedding and the LM head stay 16-bit).
  bool fp8(int layer) const { return layer >= 0 && fp8_layers[layer]; }
  std::vector<bool> fp8_layers;  // per model layer
  // Rows of the residual stream a rank holds: all tokens, or 1/tp of them under sequence
  // parallelism.
  std::int64_t rows(int layout) const;
  GroupRef tp_group(int layout) const { return {GroupKind::kTp, std::uint8_t(layout), 0}; }
  GroupRef dp_group(int layout) const { return {GroupKind::kDp, std::uint8_t(layout), 0}; }
  // Hybrid sharding (zero_shard_group < dp): ZeRO partitions over shard groups, whose replicas
  // all-reduce their parts. Otherwise ZeRO partitions over the gradient-reduction group: dp, or
  // dp x cp with context parallelism (Megatron-Core's distributed optimizer shards over it).
  bool hybrid() const { return plan.zero_shard_group > 0; }
  GroupRef zero_group(int layout) const {
    return hybrid() ? GroupRef{GroupKind::kShard, std::uint8_t(layout), 0} : grad_group(layout);
  }
  GroupRef replica_group(int layout) const {
    return {GroupKind::kReplica, std::uint8_t(layout), 0};
  }
  int zero_parts(int layout) const {
    return hybrid() ? plan.zero_shard_group : grad_group_size(layout);
  }
  GroupRef cp_group(int layout) const { return {GroupKind::kCp, std::uint8_t(layout), 0}; }
  // The group that reduces gradients (and shards ZeRO's states): dp, or dp x cp with context
  // parallelism, whose ranks each hold part of every sequence.
  GroupRef grad_group(int layout) const {
    return {s.cp > 1 ? GroupKind::kDpCp : GroupKind::kDp, std::uint8_t(layout), 0};
  }
  int grad_group_size(int layout) const { return dp_of(layout) * s.cp; }
  // Mixture of experts: the expert-parallel group (the ranks holding the other experts) and the
  // expert-data-parallel group (those holding the same experts: dp cp / ep ranks), which
  // reduces the experts' gradients.
  GroupRef ep_group() const { return {GroupKind::kEp, 0, 0}; }
  GroupRef expert_dp_group() const { return {GroupKind::kExpertDp, 0, 0}; }
  int expert_dp_size() const {
    return s.dp * s.cp / s.ep * (plan.experts_across_tp ? s.tp : 1);
  }
  // The routed experts' tensor-parallel degree: tp, or 1 (whole experts on every tp rank).
  int expert_tp() const { return s.expert_tp_size(); }
  // The activation layout flowing into layer `layer` (the embedding output is layout 0).
  int incoming_layout(int layer) const { return layer == 0 ? 0 : layout_of(layer - 1); }

  // A new transient buffer of a layer's tensor (or of `layer` -1).
  BufId tensor(TensorKind kind, int layer, int mb, std::uint8_t instance, DType dtype,
               std::initializer_list<std::int64_t> shape, bool grad = false);
  Task compute_task(Phase phase, Block block, int layer, int mb, int chunk) const;
  Task collective_task(CollectiveKind kind, Purpose purpose, GroupRef group, Phase phase,
                       int layer, int mb, int chunk) const;
};

// The buffers of one pass over a layer's (or the head's) tensors by TensorKind, their
// gradients, and gradient contributions still to be added (the residual stream's).
struct Instance {
  static constexpr int kSize = static_cast<int>(TensorKind::kMoeSharedOut) + 1;  // the last kind
  std::array<BufId, kSize> id, grad, pend, f8;
  Instance() {
    id.fill(kNoBuf);
    grad.fill(kNoBuf);
    pend.fill(kNoBuf);
    f8.fill(kNoBuf);
  }
  BufId& operator[](TensorKind k) { return id[static_cast<int>(k)]; }
  BufId at(TensorKind k) const { return id[static_cast<int>(k)]; }
  BufId& grad_of(TensorKind k) { return grad[static_cast<int>(k)]; }
  BufId& pending(TensorKind k) { return pend[static_cast<int>(k)]; }
  // Strategy fp8: the FP8 copy (cast and transposed) of a tensor a GEMM reads.
  BufId& fp8_of(TensorKind k) { return f8[static_cast<int>(k)]; }
  BufId fp8_at(TensorKind k) const { return f8[static_cast<int>(k)]; }
};

// Megatron's tensor-parallel operators and sequence parallelism (tensor_parallel.cpp). Each
// returns the task after which its result is ready (`after` when nothing was emitted).
class TensorParallel {
 public:
  explicit TensorParallel(StageContext& c) : c_(c) {}
  // "g" at a block output: all-reduce the partial sum in place, or reduce-scatter it into the
  // rank's rows (sequence parallelism). `out` receives the result's buffer.
  TaskId reduce(TaskId after, int layout, BufId partial, TensorKind out_kind, int layer, int mb,
                int chunk, Phase phase, BufId* out, bool grad = false);
  // "f" at a block input: all-gather the rank's rows under sequence parallelism (identity
  // otherwise). `full` receives the gathered buffer (or `rows` itself).
  TaskId gather(TaskId after, int layout, BufId rows, TensorKind full_kind, int layer, int mb,
                int chunk, Phase phase, std::uint8_t instance, BufId* full, bool grad = false);
  // A per-layer tp change between layouts `from` and `to` (an all-gather across the ranks that
  // merge, or a local slice); `out` receives the buffer in the new layout.
  TaskId reshard(TaskId after, int from, int to, BufId in, int layer, int mb, int chunk,
                 Phase phase, BufId* out);
  // The gradient side of a reshard: from the gradient in layout `to` to layout `from`.
  TaskId reshard_grad(TaskId after, int from, int to, BufId grad_in, int layer, int mb, int chunk,
                      BufId* grad_out);

  // Strategy tp_comm_overlap (tensor_parallel.cpp, "communication overlap"): whether `layout`'s
  // all-gathers and reduce-scatters run as rings beside the GEMMs.
  bool overlaps(int layout) const { return c_.s.tp_comm_overlap && c_.sp(layout); }
  // A block's `ops` whose op `li` (a linear forward or data gradient) reads the all-gather of
  // `rows` (its in[0], not yet written) and writes all rows: the GEMM on tp row chunks, each
  // beside the ring shift that brings the next; ops before li run with the first chunk, ops
  // after it in a task after the last. `keep_full`: the rank's rows are copied into the gathered
  // tensor too (a later op reads it whole). Returns the last task.
  TaskId gather_linear(TaskId after, TaskId extra, int layout, BufId rows,
                       const std::vector<OpSpec>& ops, std::size_t li, const Task& compute,
                       bool keep_full);
  // A block's `ops` whose op `li` (a linear forward) writes the partial sum that the block's
  // reduce-scatter reduces into `out` (the rank's rows): the GEMM on tp row chunks whose partial
  // sums travel the ring, each rank adding its own, so chunk k + 1 computes beside shift k; the
  // ops after li (the residual add) run on `out` at the end. Returns the last task.
  TaskId linear_scatter(TaskId after, TaskId extra, int layout, const std::vector<OpSpec>& ops,
                        std::size_t li, BufId out, const Task& compute);

 private:
  // A view of the rows of rank (r - k) mod tp of `parent` (rank r's own at k = 0).
  BufId part(BufId parent, int layout, int k);
  TaskId ring_shift(TaskId after, int layout, BufId in, BufId out, const Task& compute);

  StageContext& c_;
};

// The parameters of the stage in data-parallel buckets, their gradients' reduction and the
// optimizer step (data_parallel.cpp).
class DataParallel {
 public:
  explicit DataParallel(StageContext& c);

  bool has(TensorKind kind, int layer) const;
  // The buffer holding parameter `kind` of `layer` (-1 outside the layers) for its current use.
  BufId value(TensorKind kind, int layer) const;
  // The buffer the current backward round adds parameter `kind`'s gradient into.
  BufId grad(TensorKind kind, int layer);

  // ZeRO-3: a unit (the forward or the backward of micro-batch `mb` on `chunk`) begins: its
  // modules' parameter uses -- the embedding, each layer, the head -- in compute order, so that
  // gather() can issue them collectives.param_prefetch modules ahead.
  void begin_unit(bool forward, int mb, int chunk);
  // ZeRO-3: the compute of the unit's next module (its parameters `kinds` of `layer`, gathered
  // for `phase` as copy `instance`) starts. Issues the all-gathers of this module and, with
  // overlap_param_gather, of the next param_prefetch modules (each after the compute before this
  // one); without it, this module's only, after `after`. value() then names this module's
  // copies until the next gather. Returns its last all-gather.
  TaskId gather(TaskId after, const std::vector<TensorKind>& kinds, int layer, Phase phase,
                int mb, int chunk, std::uint8_t instance);
  TaskId gather_layer(TaskId after, int layer, Phase phase, int mb, int chunk,
                      std::uint8_t instance);
  TaskId last_gather() const { return last_gather_; }

  // A backward unit of `chunk` begins: round `round` of the chunk (micro-batch `mb`), the
  // chunk's last when `last`.
  void begin_backward(int chunk, int round, int mb, bool last);
  // The gradients of a group of parameters are final at `producer` (today's grad_ready), and a
  // bucket closes (flush): called in the order of calls_of().
  enum class Group { kLayer, kOutput, kInput, kWord, kRestOut, kRestIn, kFlush };
  void grad_ready(TaskId producer, Group g, int layer, int mb, int chunk);
  void flush(int mb, int chunk);
  bool shared_embedding_bucket() const;
  // After the last unit: deferred buckets, tensor-parallel and embedding gradient sums, the
  // optimizer and the parameter all-gathers.
  void finish_step();

 private:
  struct Call {            // one grad_ready() (or flush) of a chunk's backward unit
    Group group = Group::kFlush;
    int layer = -1;
    std::vector<int> params;  // indices into Program::params
    int layout = 0;
    std::int64_t elements = 0;
    bool experts = false;     // an MoE layer's experts: reduced over the expert-dp group
  };
  struct Use {  // ZeRO-3: one use of a module's parameters in the current unit
    std::vector<int> buckets;
    int layer = -1;
    Phase phase = Phase::kNone;
    std::uint8_t instance = 0;
    std::vector<std::pair<int, BufId>> views;  // (parameter, its view in the gathered copy)
    TaskId gather = kNoTask;                   // its last all-gather, once issued
    bool issued = false;
  };
  struct Pending {         // the open bucket
    int bucket = -1;
    std::int64_t elements = 0;
    int layout = 0;
    bool experts = false;
    TaskId producer = kNoTask;
  };
  void layout_params();
  int add_param(TensorKind kind, int layer, int layout, std::int64_t rows, std::int64_t cols,
                Shard shard, Init init, double std_dev, bool tied_copy = false);
  std::vector<Call> calls_of(int chunk) const;
  void plan_buckets();
  int make_bucket(const std::vector<int>& params, int layout, bool experts);
  // The ranks a call's gradients are reduced over: the layout's gradient group, or the
  // expert-data-parallel group for an MoE layer's experts.
  int reduction_size(const Call& k) const;
  // How many parts ZeRO splits bucket `b` into (1 without ZeRO).
  int zero_parts_of(const BucketInfo& b) const;
  const Call& next_call(Group g, int layer);
  void close_open(int mb, int chunk);
  // `layer`: the ZeRO-3 bucket's layer (-1 for a bucket of several or none), for traces.
  void emit_reduction(int bucket, TaskId producer, int mb, int chunk,
                      const std::vector<TaskId>& also_after, int layer = -1);
  BufId round_grads(int bucket, int round, int mb);
  std::vector<int> buckets_of(const std::vector<TensorKind>& kinds, int layer) const;
  void issue(Use& u, TaskId after);
  template <class Keep>
  BufId bucket_copy(int bucket, TensorKind kind, Role role, DType dtype, int mb,
                    std::uint8_t instance, Keep keep);

  StageContext& c_;
  Program& p_;
  std::map<std::pair<int, int>, int> param_index_;  // (kind, layer) -> Program::params
  std::map<int, std::vector<Call>> calls_;          // per chunk
  std::map<int, std::vector<int>> unit_buckets_;    // per chunk: reduced buckets, in order
  std::map<std::pair<int, int>, BufId> gathered_;   // ZeRO-3: (param, layer) -> gathered view
  std::map<std::pair<int, int>, BufId> round_grads_;   // (bucket, round) -> flat gradients
  std::map<std::pair<int, int>, BufId> round_member_;  // (param, round) -> its view in them
  TaskId last_gather_ = kNoTask;
  std::vector<Use> uses_;  // ZeRO-3: the current unit's module uses, in compute order
  std::size_t next_use_ = 0;
  int unit_mb_ = 0, unit_chunk_ = 0;
  int chunk_ = 0, round_ = 0, mb_ = 0;
  std::size_t cursor_ = 0, next_bucket_ = 0;
  bool last_round_ = false;
  Pending open_;
  std::vector<Pending> deferred_;
  std::vector<int> step_gathers_;  // buckets all-gathered after the optimizer step
};

struct GraphBlock;
struct GraphOp;

// The model description and its backward (model_graph.cpp), the embedding and the head
// (model_ends.cpp).
class ModelGraph {
 public:
  ModelGraph(StageContext& c, TensorParallel& tp, DataParallel& dp);

  // The forward (or full recompute) of `layer` from its input `*x` (a forward replaces it with
  // the resharded input when the layout changes); `*x` receives the output. `fwd` holds the
  // layer's forward buffers (filled by the forward, read by a recompute), `rc` the recompute's.
  TaskId layer_forward(TaskId prev, int layer, int mb, int chunk, Phase phase, Instance& fwd,
                       Instance& rc, BufId* x);
  // The backward of `layer` from its output's gradient; recomputes what the recompute mode
  // dropped; `*grad_in` receives its input's gradient. Returns the last task.
  TaskId layer_backward(TaskId prev, int layer, int mb, int chunk, Instance& fwd,
                        BufId grad_out, BufId* grad_in);
  // The first stage's embedding and the last stage's head, forward and backward.
  TaskId embedding_forward(int mb, int chunk, BufId* out);
  TaskId embedding_backward(TaskId prev, int mb, int chunk, BufId grad_out);
  TaskId head_forward(TaskId prev, int mb, int chunk, BufId x);
  TaskId head_backward(int mb, int chunk, BufId* grad_x);
  void set_first_round(bool first) { first_round_ = first; }
  // The zero-bubble schedules (splits_backward): a block's backward leaves its weight-gradient
  // GEMMs, and the gradient accumulation after them, for the W unit of its micro-batch, which
  // emit_weight() emits. The embedding's and the head's backwards are not split.
  void set_split_backward(bool split) { split_ = split; }
  // Emits the W tasks that the backward of (mb, chunk) deferred, in the order of that backward;
  // returns the last W task of each layer.
  std::map<int, TaskId> emit_weight(int mb, int chunk);

 private:
  struct Accumulation {  // the separate gradient-accumulation kernel of a block's backward
    OpSpec op;
  };
  BufId new_tensor(TensorKind k, int layer, int mb, std::uint8_t instance);
  BufId new_grad(BufId b);
  void set_dims(OpSpec& op, const std::vector<BufId>& in, const std::vector<BufId>& out,
                int layer);
  TaskId block_forward(const GraphBlock& b, TaskId x, int layer, int mb, int chunk, Phase phase,
                       Instance& fwd, Instance& inst, TaskId extra);
  BufId saved(TensorKind k, int layer, const Instance& fwd, const Instance& rc,
              const Instance& bw) const;
  BufId param_grad(TensorKind k, int layer, const std::vector<TensorKind>& owned,
                   Accumulation& acc);
  void finish_accumulation(Accumulation& acc, std::vector<OpSpec>& ops);
  void derive(const GraphOp& g, const GraphBlock& b, int layer, Instance& fwd,
              Instance& rc, Instance& bw, Accumulation& acc, std::vector<OpSpec>& ops);
  // Strategy fp8 (model_graph.cpp, "FP8"): the forward and backward of a linear layer as FP8
  // GEMMs with their casts; the persistent FP8 weight copies and scaling state of a layer.
  void fp8_linear_forward(OpSpec& op, const GraphOp& g, int layer, int mb, Phase phase,
                          Instance& inst, std::vector<OpSpec>& ops);
  void fp8_linear_backward(const GraphOp& g, int layer, OpSpec& data, OpSpec& weight,
                           const Instance& fwd, const Instance& rc, const Instance& bw,
                           std::vector<OpSpec>& ops);
  OpSpec fp8_cast(BufId in, BufId out, int layer, int copies);
  BufId fp8_copy(BufId of);
  BufId fp8_weight(TensorKind k, int layer, BufId w = kNoBuf);
  BufId fp8_scaling(int layer);
  TaskId block_backward(const GraphBlock& b, const GraphBlock* next, TaskId x, int layer, int mb,
                        int chunk, Instance& fwd, Instance& rc, Instance& bw, TaskId extra);
  void regather(const GraphBlock* next, int layer, int mb, int chunk, Instance& fwd,
                Instance& rc, Instance& bw);
  bool recomputed_block(Block b, int layer) const;
  // Context parallelism (context_parallel.cpp): the attention core of the rank's queries
  // against every rank's keys, exchanged around the cp ring or all-gathered; forward (or
  // recompute) writes the context and lse into `inst`, backward the gradient of qkv into `bw`.
  TaskId cp_attention_forward(TaskId x, int layer, int mb, int chunk, Phase phase,
                              const Instance& fwd, Instance& inst, TaskId extra);
  TaskId cp_attention_backward(TaskId x, int layer, int mb, int chunk, Instance& fwd,
                               Instance& rc, Instance& bw, TaskId extra);
  // The rank's keys and values packed out of qkv, in a new buffer (one compute task).
  TaskId cp_pack(TaskId after, BufId qkv, int layer, int mb, int chunk, Phase phase,
                 std::uint8_t instance, BufId* kv);
  // One exchange of the cp group: a ring shift of `in` (to the next rank, from the previous) or
  // an all-gather / reduce-scatter; returns the task.
  TaskId cp_exchange(CollectiveKind kind, TaskId after, BufId in, BufId out, int layer, int mb,
                     int chunk, Phase phase);
  // Mixture of experts (expert_parallel.cpp): an MoE layer's feed-forward block -- router,
  // dispatch all-to-all, the rank's experts, combine all-to-all, weighted sum plus residual --
  // forward (or recompute) into `inst`, backward into `bw` (the gradient of the norm's output,
  // and the residual's pending gradient).
  TaskId moe_forward(TaskId x, int layer, int mb, int chunk, Phase phase, const Instance& fwd,
                     Instance& inst, TaskId extra);
  TaskId moe_backward(TaskId x, int layer, int mb, int chunk, Instance& fwd, Instance& rc,
                      Instance& bw, TaskId extra);
  TaskId backward_task(Block block, int layer, int mb, int chunk, const std::vector<OpSpec>& ops,
                       std::vector<TaskId> after, TaskId weights = kNoTask);
  // An MoE layer's shared experts (one MLP of their summed width, split over tp like the dense
  // one), beside the routed experts: forward from the norm's output rows after `after` into
  // `*out` (the rank's rows, before the fc2 bias); backward from the layer output's gradient
  // into `*grad_in` (the rank's rows of the norm output's gradient).
  TaskId shared_forward(TaskId after, int layer, int mb, int chunk, Phase phase,
                        const Instance& fwd, Instance& inst, BufId* out);
  TaskId shared_backward(TaskId after, int layer, int mb, int chunk, Instance& fwd, Instance& rc,
                         Instance& bw, BufId dy, BufId* grad_in);
  // One all-to-all over the expert-parallel group (tag 1: the dispatch direction, 2: the
  // combine's), or with `tp_kind` an all-gather / reduce-scatter over the experts' tp group.
  TaskId moe_exchange(CollectiveKind kind, int direction, TaskId after,
                      std::vector<BufId> in, std::vector<BufId> out, int layer, int mb,
                      int chunk, Phase phase);
  BufId loss_buffer();
  // The LM head's weight (its own, or the tied word embedding) and, under ZeRO-3, the gathers
  // of it and the final norm for one use.
  TensorKind head_weight() const;
  TaskId gather_head(TaskId after, Phase phase, int mb, int chunk, std::uint8_t instance);

  StageContext& c_;
  TensorParallel& tp_;
  DataParallel& dp_;
  std::shared_ptr<const std::vector<GraphBlock>> blocks_;  // the layer's description
  std::shared_ptr<const std::vector<GraphBlock>> moe_blocks_;  // an MoE layer's
  const std::vector<GraphBlock>& blocks_of(int layer) const {
    return c_.m.is_moe_layer(layer) ? *moe_blocks_ : *blocks_;
  }
  bool first_round_ = false;
  struct WeightTask {  // a block's deferred weight gradients (set_split_backward)
    Task task;
    std::vector<OpSpec> ops;
    std::vector<TaskId> deps;
  };
  bool split_ = false;
  std::map<std::pair<int, int>, std::vector<WeightTask>> weight_tasks_;  // (chunk, mb) -> W
  TaskId regathered_ = kNoTask;  // the last re-gather (regather()), for the block that reads it
  // (chunk, mb) -> the embedding's and the head's buffers (tokens, targets, head tensors)
  std::map<std::pair<int, int>, Instance> ends_;
  BufId loss_ = kNoBuf;
  std::map<std::pair<int, int>, BufId> fp8_weights_;  // (kind, layer) -> FP8 weight copies
  std::map<int, BufId> fp8_scaling_;                 // layer -> its delayed-scaling state
};

// Builds the program of `stage` (pipeline.cpp).
Program build_stage(const Plan& plan, int stage);

// Task costs from their ops, buffer lifetimes from their uses, roles of stored activations and
// the memory walk (memory.cpp).
void finish_program(Program& p);

}  // namespace strata::strategies::detail
