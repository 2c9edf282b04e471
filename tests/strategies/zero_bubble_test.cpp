// The zero-bubble schedules in the Plan (issue 20): a split backward's B tasks hold no
// weight-gradient GEMM, its W tasks hold exactly those (and the gradient accumulation), each W
// after its B, in the stage's schedule order; the step's work is 1F1B's, task for task; the
// gradient reductions wait for the W's; the activations that W reads stay until it runs.
#include <gtest/gtest.h>

#include <map>
#include <tuple>
#include <vector>

#include "strategies/plan.hpp"
#include "strategies/schedule.hpp"
#include "test_models.hpp"

namespace strata::strategies {
namespace {

using testing::cluster;
using testing::gpt;
using testing::strategy;

bool weight_op(OpKind k) { return k == OpKind::kLinearBwdWeight || k == OpKind::kGradAccumulate; }

// Whether every op of compute task `t` is a weight-gradient op (a W task), or none is.
enum class Kind { kW, kOther, kMixed };
Kind kind_of(const Program& p, const Task& t) {
  int w = 0;
  for (std::uint32_t i = 0; i < t.op_count; ++i) w += weight_op(p.ops[t.op_begin + i].kind);
  if (w == 0) return Kind::kOther;
  return w == static_cast<int>(t.op_count) ? Kind::kW : Kind::kMixed;
}

Plan lower_with(Schedule schedule, int pp, int micro_batches, int dp = 1, int zero = 0) {
  const ModelSpec m = gpt(8, 256, 8, 512, 64);
  StrategySpec s = strategy(dp, 1, pp, 1, dp * micro_batches, schedule);
  s.zero_stage = zero;
  return lower(m, cluster(1, 8), s, s.world_size());
}

TEST(ZeroBubble, BackwardSplitsIntoBAndWTasksInScheduleOrder) {
  for (Schedule sched : {Schedule::kZbH1, Schedule::kZbH2}) {
    SCOPED_TRACE(schedule_name(sched));
    const int pp = 4, m = 8;
    const Plan plan = lower_with(sched, pp, m);
    for (const Program& p : plan.programs) {
      SCOPED_TRACE("stage " + std::to_string(p.stage));
      // (layer, mb, block) -> index of its backward (B) task and of its W task.
      std::map<std::tuple<int, int, int>, std::size_t> b_task, w_task;
      std::vector<int> w_micro_batches;  // the micro-batch of each W unit, in program order
      for (std::size_t i = 0; i < p.tasks.size(); ++i) {
        const Task& t = p.tasks[i];
        // The layers' backwards are split; the head's and the embedding's are not.
        if (t.kind != TaskKind::kCompute || t.phase != Phase::kBackward || t.layer < 0) continue;
        const Kind k = kind_of(p, t);
        ASSERT_NE(k, Kind::kMixed) << plan.task_name(t);
        const auto key = std::tuple{int(t.layer), int(t.micro_batch), int(t.block)};
        if (k == Kind::kW) {
          ASSERT_GE(t.layer, 0) << "a W task outside the layers: " << plan.task_name(t);
          ASSERT_EQ(w_task.count(key), 0u);
          w_task[key] = i;
          if (w_micro_batches.empty() || w_micro_batches.back() != t.micro_batch) {
            w_micro_batches.push_back(t.micro_batch);
          }
        } else if (t.layer >= 0) {
          b_task.emplace(key, i);
        }
      }
      // Each layer's four GEMM blocks (QKV, attention out, fc1, fc2) have a W task, after the
      // block's B task, which it depends on.
      EXPECT_EQ(w_task.size(), static_cast<std::size_t>(8 / pp * m * 4));
      for (const auto& [key, w] : w_task) {
        ASSERT_EQ(b_task.count(key), 1u);
        EXPECT_LT(b_task.at(key), w);
        bool depends = false;
        for (std::size_t d = 0; d < p.num_deps(w); ++d)
          depends |= p.deps_of(w)[d] == b_task.at(key);
        EXPECT_TRUE(depends);
      }
      // The W units run in the order of the schedule's W units.
      std::vector<int> want;
      for (const ScheduleUnit& u : stage_schedule(sched, pp, p.stage, m, 1)) {
        if (u.phase == UnitPhase::kWeight) want.push_back(u.micro_batch);
      }
      EXPECT_EQ(w_micro_batches, want);
    }
  }
}

TEST(ZeroBubble, SameWorkAsOneFOneB) {
  const Plan fused = lower_with(Schedule::kOneFOneB, 4, 8);
  for (Schedule sched : {Schedule::kZbH1, Schedule::kZbH2}) {
    SCOPED_TRACE(schedule_name(sched));
    const Plan split = lower_with(sched, 4, 8);
    for (int s = 0; s < 4; ++s) {
      const Program& a = fused.programs[s];
      const Program& b = split.programs[s];
      double fa = 0, fb = 0, ba = 0, bb = 0;
      std::map<OpKind, int> ops_a, ops_b;
      for (const Task& t : a.tasks) fa += t.flops, ba += t.bytes;
      for (const Task& t : b.tasks) fb += t.flops, bb += t.bytes;
      for (const Op& op : a.ops) ++ops_a[op.kind];
      for (const Op& op : b.ops) ++ops_b[op.kind];
      EXPECT_DOUBLE_EQ(fb, fa) << "stage " << s;
      EXPECT_DOUBLE_EQ(bb, ba) << "stage " << s;
      EXPECT_EQ(ops_b, ops_a) << "stage " << s;
    }
  }
}

// Data parallelism: gradients are reduced after the W's that produce them. ZeRO-2 and 3 reduce
// each micro-batch's gradients: the first reduction follows micro-batch 0's first W. ZeRO-0
// reduces the step's sums during the last W unit (micro-batch m - 1 under ZB-H1), bucket by
// bucket as its layers' W's finish: never before that unit's first W.
TEST(ZeroBubble, GradientReductionsWaitForTheWeightGradients) {
  const int m = 4;
  for (int zero : {0, 2, 3}) {
    SCOPED_TRACE("zero " + std::to_string(zero));
    const Plan plan = lower_with(Schedule::kZbH1, 2, m, 2, zero);
    for (const Program& p : plan.programs) {
      std::size_t first_w0 = p.tasks.size(), first_w_last = p.tasks.size();
      std::size_t first_reduction = p.tasks.size();
      for (std::size_t i = 0; i < p.tasks.size(); ++i) {
        const Task& t = p.tasks[i];
        if (t.kind == TaskKind::kCompute && kind_of(p, t) == Kind::kW) {
          if (t.micro_batch == 0) first_w0 = std::min(first_w0, i);
          if (t.micro_batch == m - 1) first_w_last = std::min(first_w_last, i);
        }
        const bool reduces = t.kind == TaskKind::kCollective &&
                             (t.collective == CollectiveKind::kAllReduce ||
                              t.collective == CollectiveKind::kReduceScatter) &&
                             (t.purpose == Purpose::kDp || t.purpose == Purpose::kZero);
        if (reduces) first_reduction = std::min(first_reduction, i);
      }
      ASSERT_LT(first_reduction, p.tasks.size()) << "stage " << p.stage << " reduces nothing";
      ASSERT_LT(first_w_last, p.tasks.size());
      EXPECT_GT(first_reduction, zero >= 2 ? first_w0 : first_w_last) << "stage " << p.stage;
    }
  }
}

// ZB-H1 keeps min(pp, m) micro-batches in flight on every stage, 1F1B pp - s: the last stage
// holds more activations under ZB-H1 (its deferred W's read them: 4 micro-batches' inputs of the
// GEMMs against 1F1B's one whole micro-batch), the others at least as many; ZB-H2 the most.
TEST(ZeroBubble, DeferredWeightGradientsHoldActivationsLonger) {
  const Plan f1 = lower_with(Schedule::kOneFOneB, 4, 8);
  const Plan h1 = lower_with(Schedule::kZbH1, 4, 8);
  const Plan h2 = lower_with(Schedule::kZbH2, 4, 8);
  auto act = [](const Plan& p, int s) { return p.programs[s].memory.max_activation_bytes; };
  EXPECT_GT(act(h1, 3), 1.5 * act(f1, 3));
  for (int s = 0; s < 4; ++s) {
    EXPECT_GE(act(h1, s), act(f1, s)) << "stage " << s;
    EXPECT_GT(act(h2, s), act(h1, s)) << "stage " << s;
  }
}

// ZB-V's V: stage 0 holds virtual stages 0 and 2 pp - 1, so the embedding and the head; the
// turn between virtual stages pp - 1 and pp stays on the last rank (no transfer); a tied
// embedding is one parameter with no all-reduce; the step's work is 1F1B's.
TEST(ZeroBubble, ZbVPlacesBothEndsOnTheFirstStage) {
  const ModelSpec m = gpt(8, 256, 8, 512, 64);
  StrategySpec s = strategy(1, 1, 4, 1, 8, Schedule::kZbV, 2);
  const Plan v = lower(m, cluster(1, 8), s, 4);
  const Plan f1 = lower_with(Schedule::kOneFOneB, 4, 8);
  double flops_v = 0, flops_f = 0;
  for (const Program& p : v.programs) {
    int head = 0, embedding = 0, to_self = 0, embedding_reduce = 0;
    for (const Task& t : p.tasks) {
      flops_v += t.flops;
      if (t.kind == TaskKind::kCompute && t.block == Block::kLmHead) ++head;
      if (t.kind == TaskKind::kCompute && t.block == Block::kEmbedding) ++embedding;
      if ((t.kind == TaskKind::kSend || t.kind == TaskKind::kRecv) && t.peer_stage == p.stage) {
        ++to_self;
      }
      if (t.purpose == Purpose::kEmbedding) ++embedding_reduce;
    }
    EXPECT_EQ(head > 0, p.stage == 0) << "stage " << p.stage;
    EXPECT_EQ(embedding > 0, p.stage == 0) << "stage " << p.stage;
    EXPECT_EQ(to_self, 0) << "stage " << p.stage;
    EXPECT_EQ(embedding_reduce, 0) << "stage " << p.stage;
    // Chunk 0 of stage s holds layer pair s, chunk 1 layer pair 7 - s (1 layer per chunk: 8
    // layers over 8 virtual stages).
    for (const Task& t : p.tasks) {
      if (t.kind != TaskKind::kCompute || t.layer < 0) continue;
      EXPECT_EQ(t.layer, t.chunk == 0 ? p.stage : 7 - p.stage) << v.task_name(t);
    }
  }
  for (const Program& p : f1.programs) {
    for (const Task& t : p.tasks) flops_f += t.flops;
  }
  EXPECT_DOUBLE_EQ(flops_v, flops_f);
}

}  // namespace
}  // namespace strata::strategies
