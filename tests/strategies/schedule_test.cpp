// Pipeline schedules: exact orders for small cases, and for every small (pp, m, v) that each
// unit runs once, that all stages together finish without deadlock, the in-flight bounds, and
// the textbook bubble of the resulting makespan.
#include "strategies/schedule.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace strata::strategies {
namespace {

using Order = std::vector<ScheduleUnit>;

ScheduleUnit F(int mb, int chunk = 0) { return {UnitPhase::kForward, mb, chunk}; }
ScheduleUnit B(int mb, int chunk = 0) { return {UnitPhase::kBackward, mb, chunk}; }

std::string show(const Order& order) {
  std::string s;
  for (const ScheduleUnit& u : order) {
    s += u.phase == UnitPhase::kForward ? " F" : " B";
    s += std::to_string(u.micro_batch) + "." + std::to_string(u.chunk);
  }
  return s;
}

std::vector<Order> all_stages(Schedule kind, int pp, int m, int v) {
  std::vector<Order> stages;
  for (int s = 0; s < pp; ++s) stages.push_back(stage_schedule(kind, pp, s, m, v));
  return stages;
}

// Every (m, v) a schedule accepts for `pp`, for the sweeps below.
struct Case {
  Schedule kind;
  int pp, m, v;
};
std::vector<Case> sweep() {
  std::vector<Case> cases;
  for (int pp = 1; pp <= 8; ++pp) {
    for (int m = 1; m <= 3 * pp; ++m) {
      cases.push_back({Schedule::kOneFOneB, pp, m, 1});
      for (int v = 1; v <= 4; ++v) {
        cases.push_back({Schedule::kGPipe, pp, m, v});
        if (m % pp == 0) cases.push_back({Schedule::kInterleaved, pp, m, v});
      }
    }
  }
  return cases;
}

std::string describe(const Case& c) {
  const char* names[] = {"gpipe", "1f1b", "interleaved"};
  return std::string(names[static_cast<int>(c.kind)]) + " pp=" + std::to_string(c.pp) +
         " m=" + std::to_string(c.m) + " v=" + std::to_string(c.v);
}

// Runs all stages together, each as soon as its own previous unit and the unit it depends on
// have finished (zero-cost communication). A unit's dependency:
//   F(mb, c) on stage s: F(mb, c) on s - 1; on stage 0, F(mb, c - 1) on stage pp - 1 (c > 0);
//   B(mb, c) on stage s: B(mb, c) on s + 1; on stage pp - 1, B(mb, c + 1) on stage 0 (c < v-1),
//   or this stage's own F(mb, v - 1) for the last chunk.
// Returns the makespan, or -1 when some stage can never run its next unit (deadlock).
long simulate(const std::vector<Order>& stages, int m, int v, long cost_f, long cost_b) {
  const int pp = static_cast<int>(stages.size());
  // finish[phase][stage][mb * v + c], -1 = not run yet.
  std::vector<std::vector<std::vector<long>>> finish(
      2, std::vector<std::vector<long>>(pp, std::vector<long>(m * v, -1)));
  auto done = [&](UnitPhase p, int s, int mb, int c) -> long& {
    return finish[static_cast<int>(p)][s][mb * v + c];
  };
  std::vector<std::size_t> next(pp, 0);
  std::vector<long> free_at(pp, 0);
  bool progress = true;
  while (progress) {
    progress = false;
    for (int s = 0; s < pp; ++s) {
      while (next[s] < stages[s].size()) {
        const ScheduleUnit& u = stages[s][next[s]];
        long ready = 0;
        if (u.phase == UnitPhase::kForward) {
          if (s > 0) {
            ready = done(UnitPhase::kForward, s - 1, u.micro_batch, u.chunk);
          } else if (u.chunk > 0) {
            ready = done(UnitPhase::kForward, pp - 1, u.micro_batch, u.chunk - 1);
          }
        } else if (s < pp - 1) {
          ready = done(UnitPhase::kBackward, s + 1, u.micro_batch, u.chunk);
        } else if (u.chunk < v - 1) {
          ready = done(UnitPhase::kBackward, 0, u.micro_batch, u.chunk + 1);
        } else {
          ready = done(UnitPhase::kForward, s, u.micro_batch, u.chunk);
        }
        if (ready < 0) break;
        const long start = std::max(ready, free_at[s]);
        free_at[s] = start + (u.phase == UnitPhase::kForward ? cost_f : cost_b);
        done(u.phase, s, u.micro_batch, u.chunk) = free_at[s];
        ++next[s];
        progress = true;
      }
    }
  }
  for (int s = 0; s < pp; ++s) {
    if (next[s] != stages[s].size()) return -1;
  }
  return *std::max_element(free_at.begin(), free_at.end());
}

// --- Exact orders ----------------------------------------------------------------------------

TEST(Schedule, OneFOneBExactOrders) {
  EXPECT_EQ(stage_schedule(Schedule::kOneFOneB, 4, 0, 8, 1),
            (Order{F(0), F(1), F(2), F(3), B(0), F(4), B(1), F(5), B(2), F(6), B(3), F(7), B(4),
                   B(5), B(6), B(7)}));
  EXPECT_EQ(stage_schedule(Schedule::kOneFOneB, 4, 1, 8, 1),
            (Order{F(0), F(1), F(2), B(0), F(3), B(1), F(4), B(2), F(5), B(3), F(6), B(4), F(7),
                   B(5), B(6), B(7)}));
  EXPECT_EQ(stage_schedule(Schedule::kOneFOneB, 4, 3, 8, 1),
            (Order{F(0), B(0), F(1), B(1), F(2), B(2), F(3), B(3), F(4), B(4), F(5), B(5), F(6),
                   B(6), F(7), B(7)}));
  // Fewer micro-batches than warm-up slots: all forwards, then all backwards.
  EXPECT_EQ(stage_schedule(Schedule::kOneFOneB, 4, 0, 2, 1), (Order{F(0), F(1), B(0), B(1)}));
}

TEST(Schedule, GPipeExactOrders) {
  EXPECT_EQ(stage_schedule(Schedule::kGPipe, 3, 1, 4, 1),
            (Order{F(0), F(1), F(2), F(3), B(3), B(2), B(1), B(0)}));
  // With chunks: chunk-major forwards, backwards the exact reverse.
  EXPECT_EQ(stage_schedule(Schedule::kGPipe, 2, 0, 2, 2),
            (Order{F(0, 0), F(1, 0), F(0, 1), F(1, 1), B(1, 1), B(0, 1), B(1, 0), B(0, 0)}));
}

TEST(Schedule, InterleavedExactOrders) {
  // pp = 2, v = 2, m = 4. Stage 0 warms up (2 - 0 - 1) * 2 + (2 - 1) * 2 = 4 units.
  EXPECT_EQ(stage_schedule(Schedule::kInterleaved, 2, 0, 4, 2),
            (Order{F(0, 0), F(1, 0), F(0, 1), F(1, 1),                    // warm-up
                   F(2, 0), B(0, 1), F(3, 0), B(1, 1), F(2, 1), B(0, 0),  // steady
                   F(3, 1), B(1, 0),                                      //
                   B(2, 1), B(3, 1), B(2, 0), B(3, 0)}));                 // cool-down
  // Stage 1 warms up 2 units.
  EXPECT_EQ(stage_schedule(Schedule::kInterleaved, 2, 1, 4, 2),
            (Order{F(0, 0), F(1, 0), F(0, 1), B(0, 1), F(1, 1), B(1, 1), F(2, 0), B(0, 0), F(3, 0),
                   B(1, 0), F(2, 1), B(2, 1), F(3, 1), B(3, 1), B(2, 0), B(3, 0)}));
  // pp = 3, v = 2, m = 3 on stage 0: warm-up 4 + 3 = 7 > 6 units, so all forwards first.
  EXPECT_EQ(stage_schedule(Schedule::kInterleaved, 3, 0, 3, 2),
            (Order{F(0, 0), F(1, 0), F(2, 0), F(0, 1), F(1, 1), F(2, 1), B(0, 1), B(1, 1), B(2, 1),
                   B(0, 0), B(1, 0), B(2, 0)}));
}

TEST(Schedule, MaxInFlightCountsUnits) {
  EXPECT_EQ(max_in_flight({}), 0);
  EXPECT_EQ(max_in_flight({F(0), B(0), F(1), B(1)}), 1);
  EXPECT_EQ(max_in_flight({F(0), F(1), B(0), F(2), F(3), B(1), B(2), B(3)}), 3);
  EXPECT_EQ(max_in_flight({F(0, 0), F(0, 1), B(0, 1), B(0, 0)}), 2);
}

// --- Sweeps ----------------------------------------------------------------------------------

TEST(Schedule, EveryUnitOnceBackwardAfterForward) {
  for (const Case& c : sweep()) {
    SCOPED_TRACE(describe(c));
    for (int s = 0; s < c.pp; ++s) {
      const Order order = stage_schedule(c.kind, c.pp, s, c.m, c.v);
      ASSERT_EQ(order.size(), 2u * c.m * c.v);
      // Position of each unit, -1 = absent.
      std::vector<int> pos_f(c.m * c.v, -1), pos_b(c.m * c.v, -1);
      for (int i = 0; i < static_cast<int>(order.size()); ++i) {
        const ScheduleUnit& u = order[i];
        ASSERT_TRUE(u.micro_batch >= 0 && u.micro_batch < c.m && u.chunk >= 0 && u.chunk < c.v)
            << show(order);
        int& slot = (u.phase == UnitPhase::kForward ? pos_f : pos_b)[u.micro_batch * c.v + u.chunk];
        ASSERT_EQ(slot, -1) << "unit twice on stage " << s << ":" << show(order);
        slot = i;
      }
      for (int k = 0; k < c.m * c.v; ++k) {
        ASSERT_LT(pos_f[k], pos_b[k]) << "stage " << s << ":" << show(order);
      }
    }
  }
}

TEST(Schedule, AllStagesTogetherFinishWithoutDeadlock) {
  for (const Case& c : sweep()) {
    SCOPED_TRACE(describe(c));
    ASSERT_GT(simulate(all_stages(c.kind, c.pp, c.m, c.v), c.m, c.v, 1, 1), 0);
  }
}

TEST(Schedule, InFlightBounds) {
  for (const Case& c : sweep()) {
    SCOPED_TRACE(describe(c));
    for (int s = 0; s < c.pp; ++s) {
      const int peak = max_in_flight(stage_schedule(c.kind, c.pp, s, c.m, c.v));
      const int total = c.m * c.v;
      const int warmup = std::min((c.pp - s - 1) * 2 + (c.v - 1) * c.pp, total);
      switch (c.kind) {
        case Schedule::kOneFOneB:
          EXPECT_EQ(peak, std::min(c.pp - s, c.m)) << "stage " << s;
          break;
        case Schedule::kGPipe:
          EXPECT_EQ(peak, total) << "stage " << s;
          break;
        case Schedule::kInterleaved:
          EXPECT_EQ(peak, std::min(warmup + 1, total)) << "stage " << s;
          if (s == 0) {
            EXPECT_EQ(peak, std::min((c.pp - 1) * 2 + (c.v - 1) * c.pp + 1, total));
          }
          break;
      }
    }
  }
}

TEST(Schedule, OneFOneBAndGPipeHaveTheTextbookBubble) {
  // Equal stages, forward 1 and backward 2 per micro-batch: (m + pp - 1) * (tF + tB).
  const long tf = 1;
  const long tb = 2;
  for (int pp = 1; pp <= 8; ++pp) {
    for (int m = 1; m <= 3 * pp; ++m) {
      SCOPED_TRACE("pp=" + std::to_string(pp) + " m=" + std::to_string(m));
      const long expected = (m + pp - 1) * (tf + tb);
      EXPECT_EQ(simulate(all_stages(Schedule::kOneFOneB, pp, m, 1), m, 1, tf, tb), expected);
      EXPECT_EQ(simulate(all_stages(Schedule::kGPipe, pp, m, 1), m, 1, tf, tb), expected);
    }
  }
}

TEST(Schedule, InterleavingDividesTheBubbleByV) {
  // Each of the v chunks costs 1/v of the stage: chunk forward 1, backward 2, so a stage's
  // micro-batch costs v * 3 and the bubble is (pp - 1) * (tF + tB) / v = (pp - 1) * 3
  // (Narayanan et al., SC'21, section 2.2.2).
  for (int pp = 1; pp <= 8; ++pp) {
    for (int m = pp; m <= 3 * pp; m += pp) {
      for (int v = 1; v <= 4; ++v) {
        SCOPED_TRACE("pp=" + std::to_string(pp) + " m=" + std::to_string(m) +
                     " v=" + std::to_string(v));
        const long expected = static_cast<long>(m) * v * 3 + (pp - 1) * 3;
        EXPECT_EQ(simulate(all_stages(Schedule::kInterleaved, pp, m, v), m, v, 1, 2), expected);
      }
    }
  }
}

// --- Preconditions ---------------------------------------------------------------------------

TEST(ScheduleDeathTest, RejectsBadArguments) {
  EXPECT_DEATH(stage_schedule(Schedule::kOneFOneB, 4, 0, 8, 2), "1F1B takes virtual_stages = 1");
  EXPECT_DEATH(stage_schedule(Schedule::kInterleaved, 4, 0, 6, 2), "divisible by pp");
  EXPECT_DEATH(stage_schedule(Schedule::kGPipe, 4, 4, 8, 1), "stage 4 outside pp = 4");
  EXPECT_DEATH(stage_schedule(Schedule::kGPipe, 4, -1, 8, 1), "outside pp");
  EXPECT_DEATH(stage_schedule(Schedule::kGPipe, 4, 0, 0, 1), "num_micro_batches >= 1");
  EXPECT_DEATH(stage_schedule(Schedule::kGPipe, 4, 0, 4, 0), "virtual_stages >= 1");
}

}  // namespace
}  // namespace strata::strategies
