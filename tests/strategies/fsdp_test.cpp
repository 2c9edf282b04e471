// ZeRO-3 as PyTorch FSDP and DeepSpeed stage 3 run it: one all-gather per module (each layer, the
// embedding, the head) per use and one reduce-scatter per module per micro-batch, counted by
// hand; gathers issued collectives.param_prefetch modules ahead, so the gathered parameters
// held grow by one module per step of depth; hybrid sharding (zero_shard_group) over shard and
// replica groups.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "strategies/accounting.hpp"
#include "strategies/plan.hpp"
#include "test_models.hpp"

namespace strata::strategies {
namespace {

using testing::cluster;
using testing::gpt;
using testing::strategy;

Plan lower_on(const ModelSpec& m, const StrategySpec& s) {
  const int world = s.world_size();
  return lower(m, cluster((world + 7) / 8, 8), s, world);
}

StrategySpec fsdp(int dp, int micro_batches, int prefetch) {
  auto s = strategy(dp, 1, 1, 1, dp * micro_batches);
  s.zero_stage = 3;
  s.collectives.param_prefetch = prefetch;
  return s;
}

bool is_gather(const Task& t) {
  return t.collective == CollectiveKind::kAllGather && t.purpose == Purpose::kZero;
}

// GPT with L layers over dp d, m micro-batches, bf16, an untied head (its own module with the
// final norm): per micro-batch 2L + 4 all-gathers -- every layer for its forward and for its
// backward, the embedding and the head for theirs -- each carrying its module's bf16
// parameters, and L + 2 reduce-scatters of the modules' gradients. Full recompute adds none:
// the recompute runs inside the layer's backward, on the parameters its backward reads (FSDP's
// pre-backward unshard of a checkpointed block; DeepSpeed would gather a third time).
TEST(Fsdp, GatherAndReduceScatterCountsAndBytesByHand) {
  const int L = 6, d = 4, mbs = 2;
  ModelSpec m = gpt(L, 256, 8, 512, 64);
  m.tie_word_embeddings = false;
  const double layer = static_cast<double>(layer_params(m));
  const double embedding = 512.0 * 256 + 64.0 * 256;  // word and position tables
  const double head = 512.0 * 256 + 2 * 256;          // LM head and final norm
  for (Recompute r : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    SCOPED_TRACE(recompute_name(r));
    auto s = fsdp(d, mbs, 1);
    s.recompute = r;
    const Plan plan = lower_on(m, s);
    std::map<int, int> layer_gathers, layer_scatters;
    int gathers = 0, scatters = 0, end_gathers = 0, end_scatters = 0;
    double gathered = 0, scattered = 0;
    for (const Task& t : plan.programs[0].tasks) {
      if (is_gather(t)) {
        ++gathers;
        gathered += t.bytes;
        EXPECT_EQ(plan.group_ranks(0, t.group).size(), static_cast<std::size_t>(d));
        if (t.layer >= 0) {
          ++layer_gathers[t.layer];
          EXPECT_DOUBLE_EQ(t.bytes, 2 * layer);
        } else {
          ++end_gathers;
        }
      }
      if (t.collective == CollectiveKind::kReduceScatter) {
        ++scatters;
        scattered += t.bytes;
        if (t.layer >= 0) {
          ++layer_scatters[t.layer];
          EXPECT_DOUBLE_EQ(t.bytes, 2 * layer);
        } else {
          ++end_scatters;
        }
      }
    }
    EXPECT_EQ(gathers, mbs * (2 * L + 4));
    EXPECT_EQ(scatters, mbs * (L + 2));
    EXPECT_EQ(end_gathers, mbs * 4);
    EXPECT_EQ(end_scatters, mbs * 2);
    for (int l = 0; l < L; ++l) {
      EXPECT_EQ(layer_gathers[l], 2 * mbs) << "layer " << l;
      EXPECT_EQ(layer_scatters[l], mbs) << "layer " << l;
    }
    EXPECT_DOUBLE_EQ(gathered, mbs * 2.0 * (2 * L * layer + 2 * embedding + 2 * head));
    EXPECT_DOUBLE_EQ(scattered, mbs * 2.0 * (L * layer + embedding + head));
  }
}

// The compute tasks of one unit, grouped by module, in order: the first task of each.
struct Unit {
  std::vector<std::uint32_t> module_start;  // first compute task of each module
  std::vector<std::uint32_t> gathers;       // the unit's all-gathers, in program order
};

// The forward (or backward) unit of micro-batch 0 of a one-stage plan with an untied head:
// modules embedding, layers, head (forward) or head, layers, embedding (backward).
Unit unit_of(const Program& p, bool forward) {
  Unit u;
  const Phase phase = forward ? Phase::kForward : Phase::kBackward;
  int module_key = -100;  // the module of the previous compute task of the unit
  for (std::uint32_t i = 0; i < p.tasks.size(); ++i) {
    const Task& t = p.tasks[i];
    if (t.micro_batch != 0) continue;
    if (t.kind == TaskKind::kCollective && is_gather(t) &&
        (t.phase == phase || (!forward && t.phase == Phase::kRecompute))) {
      u.gathers.push_back(i);
    }
    if (t.kind != TaskKind::kCompute) continue;
    if (t.phase != phase && !(!forward && t.phase == Phase::kRecompute)) continue;
    // Modules: a layer, the embedding (-1), the head (-2: final norm and LM head).
    const int key = t.layer >= 0 ? t.layer : t.block == Block::kEmbedding ? -1 : -2;
    if (key != module_key) u.module_start.push_back(i);
    module_key = key;
  }
  return u;
}

std::set<std::uint32_t> compute_deps(const Program& p, std::uint32_t i) {
  std::set<std::uint32_t> out;
  for (std::size_t k = 0; k < p.num_deps(i); ++k) {
    const std::uint32_t d = p.deps_of(i)[k];
    if (p.tasks[d].kind == TaskKind::kCompute) out.insert(d);
  }
  return out;
}

// With param_prefetch k, module j's all-gather is issued when module j-k's compute is reached:
// it stands in program order just before that module's first compute task and waits for the
// compute task before it (nothing is gathered at the step's start but the first module's).
TEST(Fsdp, PrefetchIssuesEachGatherWhenTheModuleKAheadIsReached) {
  const int L = 6;
  ModelSpec m = gpt(L, 256, 8, 512, 64);
  m.tie_word_embeddings = false;
  for (int k : {0, 1, 2, 10}) {
    for (bool forward : {true, false}) {
      for (Recompute r : {Recompute::kNone, Recompute::kFull}) {
        SCOPED_TRACE("prefetch " + std::to_string(k) + (forward ? " forward " : " backward ") +
                     recompute_name(r));
        auto s = fsdp(2, 1, k);
        s.recompute = r;
        const Plan plan = lower_on(m, s);
        const Program& p = plan.programs[0];
        const Unit u = unit_of(p, forward);
        ASSERT_EQ(u.module_start.size(), static_cast<std::size_t>(L + 2));
        ASSERT_EQ(u.gathers.size(), static_cast<std::size_t>(L + 2));  // one per module
        for (int j = 0; j < L + 2; ++j) {
          const int issue = std::max(0, j - k);
          const std::uint32_t g = u.gathers[j];
          EXPECT_LT(g, u.module_start[issue]) << "module " << j;
          if (issue > 0) {
            EXPECT_GT(g, u.module_start[issue - 1]) << "module " << j;
          }
          // The compute task before the issuing module's first one.
          std::set<std::uint32_t> want;
          for (std::uint32_t i = u.module_start[issue]; i-- > 0;) {
            if (p.tasks[i].kind == TaskKind::kCompute) {
              want.insert(i);
              break;
            }
          }
          EXPECT_EQ(compute_deps(p, g), want) << "module " << j;
        }
      }
    }
  }
}

// Without overlap_param_gather a gather waits for the task before its use and prefetches
// nothing, whatever param_prefetch says: the memory of prefetch 0.
TEST(Fsdp, NoOverlapMeansNoPrefetch) {
  const ModelSpec m = gpt(6, 256, 8, 512, 64);
  for (int k : {0, 1, 3}) {
    auto s = fsdp(2, 2, k);
    s.collectives.overlap_param_gather = false;
    const Plan plan = lower_on(m, s);
    const Program& p = plan.programs[0];
    for (std::uint32_t i = 0; i < p.tasks.size(); ++i) {
      if (!is_gather(p.tasks[i])) continue;
      // The next compute task reads what it gathered.
      std::uint32_t next = i + 1;
      while (p.tasks[next].kind != TaskKind::kCompute) ++next;
      EXPECT_EQ(p.tasks[next].layer, p.tasks[i].layer) << plan.task_name(p.tasks[i]);
    }
    EXPECT_DOUBLE_EQ(p.memory.peak_bytes(),
                     lower_on(m, fsdp(2, 2, 0)).programs[0].memory.peak_bytes())
        << "prefetch " << k;
  }
}

// The gathered parameters live from their all-gather to their last reader, so the peak holds
// param_prefetch + 1 modules' parameters: one more layer's (bf16) per step of depth, far from
// every layer gathered at once (the unbounded prefetch the Plan had before).
TEST(Fsdp, PeakMemoryGrowsByOneLayerPerStepOfPrefetch) {
  const int L = 8;
  ModelSpec m = gpt(L, 512, 8, 1024, 64);
  const double layer_bytes = 2.0 * static_cast<double>(layer_params(m));
  std::vector<double> peak, held;
  for (int k = 0; k <= 4; ++k) {
    const Plan plan = lower_on(m, fsdp(2, 2, k));
    const MemorySummary& mem = plan.programs[0].memory;
    peak.push_back(mem.peak_bytes());
    held.push_back(mem.peak_by_role[static_cast<int>(Role::kGatheredParams)]);
    std::printf(
        "  prefetch %d: peak %.0f bytes, %.0f of them gathered parameters (a layer: %.0f)\n", k,
        peak.back(), held.back(), layer_bytes);
  }
  for (int k = 0; k + 1 < static_cast<int>(peak.size()); ++k) {
    EXPECT_NEAR(peak[k + 1] - peak[k], layer_bytes, 0.02 * layer_bytes) << "prefetch " << k;
  }
  // The peak of depth 1 (FSDP's default) holds two modules: the head's copy (the tied word
  // embedding and the final norm) and one layer, or two layers.
  const double head_bytes = 2.0 * (1024.0 * 512 + 64.0 * 512 + 2 * 512);
  EXPECT_LE(held[1], std::max(2 * layer_bytes, head_bytes + layer_bytes) + 1);
  EXPECT_LT(held[1], 0.3 * L * layer_bytes);
}

// Hybrid sharding, dp 4 in shard groups of 2 (order tp-dp-pp, tp 2): rank r = tp + 2 dp.
TEST(Hsdp, ShardAndReplicaGroups) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  auto s = strategy(4, 2, 1, 1, 8);
  s.zero_stage = 3;
  s.zero_shard_group = 2;
  const Plan plan = lower_on(m, s);
  EXPECT_EQ(plan.zero_shard_group, 2);
  const GroupRef shard{GroupKind::kShard, 0, 0}, replica{GroupKind::kReplica, 0, 0};
  EXPECT_EQ(plan.group_ranks(0, {GroupKind::kDp, 0, 0}), (std::vector<int>{0, 2, 4, 6}));
  EXPECT_EQ(plan.group_ranks(0, shard), (std::vector<int>{0, 2}));
  EXPECT_EQ(plan.group_ranks(6, shard), (std::vector<int>{4, 6}));
  EXPECT_EQ(plan.group_ranks(3, shard), (std::vector<int>{1, 3}));
  EXPECT_EQ(plan.group_ranks(0, replica), (std::vector<int>{0, 4}));
  EXPECT_EQ(plan.group_ranks(6, replica), (std::vector<int>{2, 6}));
  EXPECT_EQ(plan.group_ranks(5, replica), (std::vector<int>{1, 5}));
  EXPECT_EQ(plan.group_index(6, shard), 1);
  EXPECT_EQ(plan.group_index(4, replica), 1);
  // Full sharding (the key absent, or equal to dp) has no shard groups.
  s.zero_shard_group = 4;
  EXPECT_EQ(lower_on(m, s).zero_shard_group, 0);
}

// Every ZeRO collective runs over the shard group; each bucket's reduced part is all-reduced
// over the replicas once per step, after its last reduce-scatter; state divides by the shard
// group, not dp.
TEST(Hsdp, CollectivesAndMemory) {
  const ModelSpec m = gpt(4, 256, 8, 512, 64);
  for (int shard : {1, 2, 4, 8}) {
    SCOPED_TRACE("zero_shard_group " + std::to_string(shard));
    auto s = fsdp(8, 2, 1);
    s.zero_shard_group = shard;
    const Plan plan = lower_on(m, s);
    const Program& p = plan.programs[0];
    int replica_reduces = 0;
    std::map<int, std::uint32_t> last_scatter;  // bucket -> its last reduce-scatter
    std::set<int> reduced;
    for (std::uint32_t i = 0; i < p.tasks.size(); ++i) {
      const Task& t = p.tasks[i];
      if (t.kind != TaskKind::kCollective) continue;
      const std::size_t members = plan.group_ranks(0, t.group).size();
      if (t.purpose == Purpose::kZero) {
        EXPECT_EQ(members, static_cast<std::size_t>(shard)) << plan.task_name(t);
        EXPECT_EQ(t.group.kind, shard < 8 ? GroupKind::kShard : GroupKind::kDp);
      }
      if (t.collective == CollectiveKind::kReduceScatter) {
        const Op& op = p.ops_of(t)[0];
        last_scatter[p.buffers[p.output(op, 0)].bucket] = i;
      }
      if (t.collective == CollectiveKind::kAllReduce) {
        ++replica_reduces;
        EXPECT_EQ(t.group.kind, GroupKind::kReplica);
        EXPECT_EQ(t.purpose, Purpose::kDp);
        EXPECT_EQ(members, static_cast<std::size_t>(8 / shard));
        const Op& op = p.ops_of(t)[0];
        const int bucket = p.buffers[p.input(op, 0)].bucket;
        reduced.insert(bucket);
        // The whole part (rounded up), after the bucket's last reduce-scatter of the step.
        const std::int64_t part = (p.buckets[bucket].elements + shard - 1) / shard;
        EXPECT_DOUBLE_EQ(t.bytes, 2.0 * part);
        ASSERT_TRUE(last_scatter.count(bucket));
        EXPECT_EQ(t.micro_batch, 1);
        const std::set<std::uint32_t> deps(p.deps_of(i), p.deps_of(i) + p.num_deps(i));
        EXPECT_TRUE(deps.count(last_scatter[bucket]));
      }
    }
    EXPECT_EQ(replica_reduces, shard < 8 ? static_cast<int>(p.buckets.size()) : 0);
    for (const auto& [bucket, task] : last_scatter) {
      EXPECT_EQ(p.tasks[task].micro_batch, 1);
      if (shard < 8) {
        EXPECT_TRUE(reduced.count(bucket)) << "bucket " << bucket;
      }
    }
    // Static memory: parameters, gradients and optimizer states (16 bytes per parameter in
    // mixed precision) divide by the shard group, up to each bucket's part rounding up.
    const double buckets = static_cast<double>(p.buckets.size());
    EXPECT_NEAR(p.memory.static_bytes.total(), p.memory.params_count * 16 / shard,
                buckets * 16 + 8);
    const StaticMemory formula =
        static_memory_bytes(p.memory.params_count, shard, 3, Precision::kBf16, false);
    EXPECT_NEAR(p.memory.static_bytes.total() - p.memory.static_bytes.other, formula.total(),
                buckets * 16);
  }
}

}  // namespace
}  // namespace strata::strategies
