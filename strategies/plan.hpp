// The Plan: a strategy lowered for one model on one cluster, as a per-rank task graph. Both the
// simulator and the executor consume it and never re-derive the strategy (DESIGN.md "The Plan").
//
// Ranks that run the same program share it: every rank of pipeline stage s runs programs[s],
// with its peers and groups resolved from its own coordinates (Plan::group_ranks,
// Plan::peer_rank). A 1024-GPU GPT-3 plan is therefore pp programs, not 1024 task lists.
//
// Task semantics, which every consumer must honour:
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

#include <cstdint>
#include <string>
#include <vector>

#include "strategies/accounting.hpp"
#include "strategies/rank_grid.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {

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
};
enum class CollectiveKind : std::uint8_t {
  kNone,
  kAllReduce,
  kAllGather,
  kReduceScatter,
  kAllToAll,
  kBroadcast,
};
// Why a communication happens (traces and reports group bytes by it).
enum class Purpose : std::uint8_t { kNone, kTp, kDp, kZero, kCp, kEp, kPp, kEmbedding, kReshard };
// Which group a collective runs over; resolved per rank by Plan::group_ranks.
enum class GroupKind : std::uint8_t {
  kNone,
  kTp,         // tensor-parallel group of the layout
  kDp,         // data-parallel group of the layout (gradients, ZeRO)
  kEmbedding,  // first and last pipeline stage, same other coordinates (tied embeddings)
  kReshard,    // ranks of the new tp group holding the same old-tp shard (layer tp change)
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
  std::uint8_t layout = 0;       // index into Plan::layouts
  std::uint8_t layout_from = 0;  // kReshard: the layout of the previous layer
};

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
  double flops = 0;               // compute: matmul FLOPs on this rank
  double bytes = 0;               // compute: bytes moved to/from memory; comm: message size
  // compute: bytes moved by the block's separate memory-bound element-wise kernels (bias +
  // activation after fc1; bias-dropout-add of the residual after attn_out and fc2; a backward's
  // weight-gradient accumulation unless fused), which run after its main kernel rather than
  // overlapping it.
  double elementwise_bytes = 0;
};

enum class MemCategory : std::uint8_t { kActivation, kRecompute, kGatheredParams, kLogits };
const char* mem_category_name(MemCategory c);

// A change of a rank's memory when a task starts (alloc, bytes > 0) or ends (free, bytes < 0).
struct MemEvent {
  std::uint32_t task = 0;
  bool at_start = true;
  MemCategory category = MemCategory::kActivation;
  double bytes = 0;
};

// Peak memory of one program, computed by walking its tasks in program order.
struct MemorySummary {
  StaticMemory static_bytes;       // params, grads, optimizer states (after ZeRO)
  double params_count = 0;         // parameters held by the rank before ZeRO sharding
  double peak_dynamic_bytes = 0;   // activations, recompute buffers, gathered params, logits
  double peak_activation_bytes = 0;  // stored activations alone at the dynamic peak
  std::uint32_t peak_task = 0;     // the task at which the peak is reached
  double peak_bytes() const { return static_bytes.total() + peak_dynamic_bytes; }
};

struct Program {
  int stage = 0;
  std::vector<Task> tasks;
  std::vector<std::uint32_t> dep_begin;  // CSR: deps of task i are deps[dep_begin[i]..[i+1])
  std::vector<std::uint32_t> deps;
  std::vector<MemEvent> mem_events;      // ordered by task
  MemorySummary memory;

  std::size_t num_deps(std::size_t i) const { return dep_begin[i + 1] - dep_begin[i]; }
  const std::uint32_t* deps_of(std::size_t i) const { return deps.data() + dep_begin[i]; }
};

struct Provenance {
  std::string strata_version;
  std::string model_hash;
  std::string cluster_hash;
  std::string strategy_hash;
};

// Totals over every rank of the step.
struct PlanTotals {
  StepFlops flops;                 // summed over the tasks (equals step_flops())
  double tasks = 0;                // tasks over all ranks
  double tasks_by_kind[4] = {};    // by TaskKind
  // Bytes over all ranks by collective kind (index CollectiveKind) and purpose (index Purpose),
  // p2p included under kNone collective with purpose kPp.
  double comm_bytes[6][9] = {};
  double comm_count[6][9] = {};
};

struct Plan {
  ModelSpec model;
  ClusterSpec cluster;
  StrategySpec strategy;
  int world_size = 0;
  int num_micro_batches = 0;
  Provenance provenance;
  std::vector<RankGrid> layouts;    // [0]: the strategy's; more for per-layer tp overrides
  std::vector<int> layer_layout;    // per layer: index into layouts
  std::vector<int> stage_first_layer;  // per virtual stage: first layer; size pp*v + 1
  std::vector<Program> programs;    // one per pipeline stage
  PlanTotals totals;

  const RankGrid& grid() const { return layouts.front(); }
  int stage_of(int rank) const { return grid().coord(rank, Dim::kPp); }
  const Program& program_of(int rank) const { return programs[stage_of(rank)]; }

  // The ranks of `rank`'s group named by `g`, in increasing rank order.
  std::vector<int> group_ranks(int rank, const GroupRef& g) const;
  // The peer of a kSend/kRecv task run by `rank`.
  int peer_rank(int rank, const Task& t) const;
  // Device memory capacity of `rank` (heterogeneous clusters differ per rank).
  double capacity_bytes(int rank) const;
  // A readable, stable name: "fwd.L3.mb2.attn_qkv", "dp.all_reduce.bucket", ...
  std::string task_name(const Task& t) const;
};

// Validates the specs (ConfigError on any broken rule) and lowers them to a Plan for a world of
// `world_size` ranks, which must not exceed the cluster's devices. Lowering does not refuse a
// plan that exceeds device memory: callers check first_rank_over_capacity() and report it.
Plan lower(const ModelSpec& m, const ClusterSpec& c, const StrategySpec& s, int world_size);

// The first rank whose peak exceeds its capacity, or -1 when every rank fits.
int first_rank_over_capacity(const Plan& plan);

}  // namespace strata::strategies
