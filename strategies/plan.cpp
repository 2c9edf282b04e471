// Plan helpers: enum names, per-rank resolution of groups and peers, task names.
#include "strategies/plan.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace strata::strategies {

const char* task_kind_name(TaskKind k) {
  switch (k) {
    case TaskKind::kCompute: return "compute";
    case TaskKind::kCollective: return "collective";
    case TaskKind::kSend: return "send";
    case TaskKind::kRecv: return "recv";
  }
  return "?";
}

const char* stream_name(Stream s) {
  switch (s) {
    case Stream::kCompute: return "compute";
    case Stream::kTp: return "tp";
    case Stream::kCp: return "cp";
    case Stream::kEp: return "ep";
    case Stream::kDp: return "dp";
    case Stream::kPp: return "pp";
  }
  return "?";
}

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::kForward: return "forward";
    case Phase::kBackward: return "backward";
    case Phase::kRecompute: return "recompute";
    case Phase::kStep: return "step";
    case Phase::kNone: return "none";
  }
  return "?";
}

const char* block_name(Block b) {
  switch (b) {
    case Block::kNone: return "none";
    case Block::kEmbedding: return "embedding";
    case Block::kAttnNorm: return "attn_norm";
    case Block::kAttnQkv: return "attn_qkv";
    case Block::kAttnCore: return "attn_core";
    case Block::kAttnOut: return "attn_out";
    case Block::kMlpNorm: return "mlp_norm";
    case Block::kMlpFc1: return "mlp_fc1";
    case Block::kMlpFc2: return "mlp_fc2";
    case Block::kFinalNorm: return "final_norm";
    case Block::kLmHead: return "lm_head";
    case Block::kOptimizer: return "optimizer";
  }
  return "?";
}

const char* collective_name(CollectiveKind c) {
  switch (c) {
    case CollectiveKind::kNone: return "p2p";
    case CollectiveKind::kAllReduce: return "all_reduce";
    case CollectiveKind::kAllGather: return "all_gather";
    case CollectiveKind::kReduceScatter: return "reduce_scatter";
    case CollectiveKind::kAllToAll: return "all_to_all";
    case CollectiveKind::kBroadcast: return "broadcast";
  }
  return "?";
}

const char* purpose_name(Purpose p) {
  switch (p) {
    case Purpose::kNone: return "none";
    case Purpose::kTp: return "tp";
    case Purpose::kDp: return "dp";
    case Purpose::kZero: return "zero";
    case Purpose::kCp: return "cp";
    case Purpose::kEp: return "ep";
    case Purpose::kPp: return "pp";
    case Purpose::kEmbedding: return "embedding";
    case Purpose::kReshard: return "reshard";
  }
  return "?";
}

const char* group_kind_name(GroupKind g) {
  switch (g) {
    case GroupKind::kNone: return "none";
    case GroupKind::kTp: return "tp";
    case GroupKind::kDp: return "dp";
    case GroupKind::kEmbedding: return "embedding";
    case GroupKind::kReshard: return "reshard";
  }
  return "?";
}

const char* mem_category_name(MemCategory c) {
  switch (c) {
    case MemCategory::kActivation: return "activation";
    case MemCategory::kRecompute: return "recompute";
    case MemCategory::kGatheredParams: return "gathered_params";
    case MemCategory::kLogits: return "logits";
  }
  return "?";
}

std::vector<int> Plan::group_ranks(int rank, const GroupRef& g) const {
  STRATA_CHECK(rank >= 0 && rank < world_size, "rank out of range");
  switch (g.kind) {
    case GroupKind::kNone:
      return {rank};
    case GroupKind::kTp:
      return layouts.at(g.layout).group(rank, Dim::kTp);
    case GroupKind::kDp:
      return layouts.at(g.layout).group(rank, Dim::kDp);
    case GroupKind::kEmbedding: {
      Coords c = grid().coords(rank);
      const int pp_index = static_cast<int>(Dim::kPp);
      c[pp_index] = 0;
      const int first = grid().rank_of(c);
      c[pp_index] = strategy.pp - 1;
      const int last = grid().rank_of(c);
      if (first == last) return {first};
      return {std::min(first, last), std::max(first, last)};
    }
    case GroupKind::kReshard: {
      const RankGrid& big = layouts.at(g.layout);
      const RankGrid& small = layouts.at(g.layout_from);
      const int shard = small.coord(rank, Dim::kTp);
      std::vector<int> out;
      for (int q : big.group(rank, Dim::kTp)) {
        if (small.coord(q, Dim::kTp) == shard) out.push_back(q);
      }
      STRATA_CHECK(static_cast<int>(out.size()) == big.size(Dim::kTp) / small.size(Dim::kTp),
                   "reshard group size does not match the tp ratio");
      return out;
    }
  }
  return {rank};
}

int Plan::peer_rank(int rank, const Task& t) const {
  STRATA_CHECK(t.kind == TaskKind::kSend || t.kind == TaskKind::kRecv, "not a p2p task");
  Coords c = grid().coords(rank);
  c[static_cast<int>(Dim::kPp)] = t.peer_stage;
  return grid().rank_of(c);
}

double Plan::capacity_bytes(int rank) const {
  return cluster.group_of_gpu(rank).gpu.memory_bytes;
}

std::string Plan::task_name(const Task& t) const {
  std::string name;
  switch (t.kind) {
    case TaskKind::kCompute:
      name = std::string(t.phase == Phase::kForward     ? "fwd"
                         : t.phase == Phase::kBackward  ? "bwd"
                         : t.phase == Phase::kRecompute ? "recompute"
                                                        : "step");
      break;
    case TaskKind::kCollective:
      name = std::string(purpose_name(t.purpose)) + "." + collective_name(t.collective);
      break;
    case TaskKind::kSend:
    case TaskKind::kRecv:
      name = std::string("pp.") + task_kind_name(t.kind) + "." +
             (t.phase == Phase::kForward ? "act" : "grad") + ".stage" +
             std::to_string(t.peer_stage);
      break;
  }
  if (t.layer >= 0) name += ".L" + std::to_string(t.layer);
  if (t.micro_batch >= 0) name += ".mb" + std::to_string(t.micro_batch);
  if (strategy.virtual_stages > 1 && t.micro_batch >= 0) name += ".c" + std::to_string(t.chunk);
  if (t.kind == TaskKind::kCompute) name += std::string(".") + block_name(t.block);
  return name;
}

}  // namespace strata::strategies
