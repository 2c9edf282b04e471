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
ScheduleUnit W(int mb, int chunk = 0) { return {UnitPhase::kWeight, mb, chunk}; }

std::string show(const Order& order) {
  std::string s;
  for (const ScheduleUnit& u : order) {
    s += u.phase == UnitPhase::kForward ? " F" : u.phase == UnitPhase::kBackward ? " B" : " W";
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
      cases.push_back({Schedule::kZbH1, pp, m, 1});
      cases.push_back({Schedule::kZbH2, pp, m, 1});
      cases.push_back({Schedule::kZbV, pp, m, 2});
      for (int v = 1; v <= 4; ++v) {
        cases.push_back({Schedule::kGPipe, pp, m, v});
        if (m % pp == 0) cases.push_back({Schedule::kInterleaved, pp, m, v});
      }
    }
  }
  return cases;
}

std::string describe(const Case& c) {
  const char* names[] = {"gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zb-v"};
  return std::string(names[static_cast<int>(c.kind)]) + " pp=" + std::to_string(c.pp) +
         " m=" + std::to_string(c.m) + " v=" + std::to_string(c.v);
}

// Runs the stages' orders together, each unit as soon as its stage's previous unit and the unit
// it depends on have finished, the latter `transfer` later when it ran on another stage. Chunk c
// of stage s holds virtual stage virtual_stage_of(kind, pp, s, c) (c * pp + s; ZB-V's V). A
// unit's dependency:
//   F(mb) of virtual stage vs: F(mb) of vs - 1 (none for vs = 0);
//   B(mb) of vs: B(mb) of vs + 1, or for the last virtual stage its own F(mb);
//   W(mb) of vs: its own B(mb).
// `cost(stage, unit)` is a unit's time. Returns the makespan, or -1 when some stage can never
// run its next unit (deadlock); `spans`, when given, receives each stage's time from its first
// start to its last finish.
template <typename Cost>
double run_orders(Schedule kind, int pp, int m, int v, const std::vector<Order>& stages, Cost cost,
                  double transfer = 0, std::vector<double>* spans = nullptr) {
  const int vstages = pp * v;
  // finish[phase][vs * m + mb], -1 = not run yet.
  std::vector<std::vector<double>> finish(3, std::vector<double>(vstages * m, -1));
  auto done = [&](UnitPhase p, int vs, int mb) -> double& {
    return finish[static_cast<int>(p)][vs * m + mb];
  };
  auto arrival = [&](UnitPhase p, int from, int to, int mb) {
    const double t = done(p, from, mb);
    if (t < 0) return t;
    return stage_of_virtual(kind, pp, from) == stage_of_virtual(kind, pp, to) ? t : t + transfer;
  };
  std::vector<std::size_t> next(pp, 0);
  std::vector<double> free_at(pp, 0), start(pp, -1);
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < pp; ++s) {
      while (next[s] < stages[s].size()) {
        const ScheduleUnit& u = stages[s][next[s]];
        const int vs = virtual_stage_of(kind, pp, s, u.chunk);
        double ready = 0;
        if (u.phase == UnitPhase::kForward) {
          if (vs > 0) ready = arrival(UnitPhase::kForward, vs - 1, vs, u.micro_batch);
        } else if (u.phase == UnitPhase::kWeight) {
          ready = done(UnitPhase::kBackward, vs, u.micro_batch);
        } else {
          ready = vs == vstages - 1 ? done(UnitPhase::kForward, vs, u.micro_batch)
                                    : arrival(UnitPhase::kBackward, vs + 1, vs, u.micro_batch);
        }
        if (ready < 0) break;
        const double begin = std::max(ready, free_at[s]);
        if (start[s] < 0) start[s] = begin;
        free_at[s] = begin + cost(s, u);
        done(u.phase, vs, u.micro_batch) = free_at[s];
        ++next[s];
        progress = true;
      }
    }
  }
  for (int s = 0; s < pp; ++s) {
    if (next[s] != stages[s].size()) return -1;
  }
  if (spans != nullptr) {
    spans->clear();
    for (int s = 0; s < pp; ++s) spans->push_back(free_at[s] - start[s]);
  }
  return *std::max_element(free_at.begin(), free_at.end());
}

// The stages of schedule `kind` run together with F, B and W costing cost_f, cost_b and cost_w
// (integers, so the makespan is exact) and free communication.
long simulate(Schedule kind, int pp, int m, int v, long cost_f, long cost_b, long cost_w = 1,
              std::vector<long>* spans = nullptr) {
  auto cost = [&](int, const ScheduleUnit& u) {
    return static_cast<double>(u.phase == UnitPhase::kForward    ? cost_f
                               : u.phase == UnitPhase::kBackward ? cost_b
                                                                 : cost_w);
  };
  std::vector<double> times;
  const double makespan = run_orders(kind, pp, m, v, all_stages(kind, pp, m, v), cost, 0, &times);
  if (spans != nullptr) spans->assign(times.begin(), times.end());
  return static_cast<long>(makespan);
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

TEST(Schedule, ZbH1ExactOrders) {
  // 1F1B's warm-up; stage s runs its first s forward-backward pairs without a W (Qi et al. 2024,
  // ZB-H1), then F B W; the cool-down B W; the postponed W's last.
  EXPECT_EQ(stage_schedule(Schedule::kZbH1, 4, 0, 8, 1),
            (Order{F(0), F(1), F(2), F(3), B(0), W(0), F(4), B(1), W(1), F(5), B(2), W(2),
                   F(6), B(3), W(3), F(7), B(4), W(4), B(5), W(5), B(6), W(6), B(7), W(7)}));
  EXPECT_EQ(stage_schedule(Schedule::kZbH1, 4, 1, 8, 1),
            (Order{F(0), F(1), F(2), B(0), F(3), B(1), W(0), F(4), B(2), W(1), F(5), B(3),
                   W(2), F(6), B(4), W(3), F(7), B(5), W(4), B(6), W(5), B(7), W(6), W(7)}));
  EXPECT_EQ(stage_schedule(Schedule::kZbH1, 4, 3, 8, 1),
            (Order{F(0), B(0), F(1), B(1), F(2), B(2), F(3), B(3), W(0), F(4), B(4), W(1),
                   F(5), B(5), W(2), F(6), B(6), W(3), F(7), B(7), W(4), W(5), W(6), W(7)}));
}

TEST(Schedule, ZbH2ExactOrders) {
  // The unit-cost list scheduler with 2 pp - 1 = 7 micro-batches in flight on every stage.
  EXPECT_EQ(stage_schedule(Schedule::kZbH2, 4, 0, 8, 1),
            (Order{F(0), F(1), F(2), F(3), F(4), F(5), F(6), B(0), W(0), B(1), F(7), B(2),
                   W(1), B(3), W(2), B(4), W(3), B(5), W(4), B(6), W(5), W(6), B(7), W(7)}));
  EXPECT_EQ(stage_schedule(Schedule::kZbH2, 4, 1, 8, 1),
            (Order{F(0), F(1), F(2), F(3), F(4), B(0), F(5), B(1), F(6), B(2), W(0), B(3),
                   F(7), B(4), W(1), B(5), W(2), B(6), W(3), W(4), B(7), W(5), W(6), W(7)}));
  EXPECT_EQ(stage_schedule(Schedule::kZbH2, 4, 3, 8, 1),
            (Order{F(0), B(0), F(1), B(1), F(2), B(2), F(3), B(3), F(4), B(4), F(5), B(5),
                   F(6), B(6), W(0), F(7), B(7), W(1), W(2), W(3), W(4), W(5), W(6), W(7)}));
}

TEST(Schedule, ZbVExactOrders) {
  // pp = 2: stage 0 holds virtual stages 0 and 3 (chunks 0 and 1), stage 1 holds 1 and 2.
  EXPECT_EQ(stage_schedule(Schedule::kZbV, 2, 0, 4, 2),
            (Order{F(0, 0), F(1, 0), F(2, 0), F(0, 1), B(0, 1), W(0, 1), F(1, 1), B(0, 0),
                   B(1, 1), W(0, 0), F(3, 0), B(1, 0), W(1, 1), F(2, 1), B(2, 1), W(1, 0),
                   W(2, 1), B(2, 0), W(2, 0), F(3, 1), B(3, 1), W(3, 1), B(3, 0), W(3, 0)}));
  EXPECT_EQ(stage_schedule(Schedule::kZbV, 2, 1, 4, 2),
            (Order{F(0, 0), F(0, 1), F(1, 0), F(1, 1), B(0, 1), B(0, 0), W(0, 1), F(2, 0),
                   B(1, 1), B(1, 0), W(0, 0), F(2, 1), W(1, 1), F(3, 0), B(2, 1), B(2, 0),
                   W(1, 0), F(3, 1), W(2, 1), W(2, 0), B(3, 1), B(3, 0), W(3, 1), W(3, 0)}));
  EXPECT_EQ(virtual_stage_of(Schedule::kZbV, 4, 1, 0), 1);
  EXPECT_EQ(virtual_stage_of(Schedule::kZbV, 4, 1, 1), 6);
  EXPECT_EQ(stage_of_virtual(Schedule::kZbV, 4, 6), 1);
  EXPECT_EQ(stage_of_virtual(Schedule::kZbV, 4, 7), 0);
  EXPECT_EQ(stage_of_virtual(Schedule::kInterleaved, 4, 6), 2);
}

TEST(Schedule, ZeroBubbleBubbles) {
  // F, B and W one unit each (Qi et al. 2024, Table 1 with T_F = T_B = T_W): 1F1B (B and W
  // fused, 2 units) takes 3 m + 3 (pp - 1); ZB-H1's bubble is (pp - 1)(T_F + T_B - T_W), a third
  // of it; ZB-H2 keeps every stage busy from its first unit to its last once m >= 2 pp - 1.
  for (int pp = 1; pp <= 8; ++pp) {
    for (int m = pp; m <= 3 * pp; ++m) {
      SCOPED_TRACE("pp=" + std::to_string(pp) + " m=" + std::to_string(m));
      EXPECT_EQ(simulate(Schedule::kOneFOneB, pp, m, 1, 1, 2), 3L * m + 3 * (pp - 1));
      EXPECT_EQ(simulate(Schedule::kZbH1, pp, m, 1, 1, 1, 1), 3L * m + pp - 1);
      std::vector<long> spans;
      const long h2 = simulate(Schedule::kZbH2, pp, m, 1, 1, 1, 1, &spans);
      if (m >= 2 * pp - 1) {
        EXPECT_EQ(h2, 3L * m + pp - 1);
        for (long span : spans) EXPECT_EQ(span, 3L * m);
      }
      // ZB-V: 6 m chunk units per stage (each chunk's F, B and W take one, half a stage's), and
      // 1F1B's memory; its fill and drain cost pp - 1 chunk units, half ZB-H1's, up to 4 more
      // where the list scheduler's choices collide.
      const long v = simulate(Schedule::kZbV, pp, m, 2, 1, 1, 1, &spans);
      EXPECT_GE(v, 6L * m + pp - 1);
      EXPECT_LE(v, 6L * m + pp - 1 + 4);
    }
  }
}

TEST(Schedule, MaxInFlightCountsUnits) {
  EXPECT_EQ(max_in_flight({}), 0);
  EXPECT_EQ(max_in_flight({F(0), B(0), F(1), B(1)}), 1);
  EXPECT_EQ(max_in_flight({F(0), F(1), B(0), F(2), F(3), B(1), B(2), B(3)}), 3);
  EXPECT_EQ(max_in_flight({F(0, 0), F(0, 1), B(0, 1), B(0, 0)}), 2);
  // With W units a micro-batch is in flight until its W.
  EXPECT_EQ(max_in_flight({F(0), B(0), F(1), W(0), B(1), W(1)}), 2);
}

// --- Sweeps ----------------------------------------------------------------------------------

TEST(Schedule, EveryUnitOnceBackwardAfterForward) {
  for (const Case& c : sweep()) {
    SCOPED_TRACE(describe(c));
    const bool split = splits_backward(c.kind);
    for (int s = 0; s < c.pp; ++s) {
      const Order order = stage_schedule(c.kind, c.pp, s, c.m, c.v);
      ASSERT_EQ(order.size(), (split ? 3u : 2u) * c.m * c.v);
      // Position of each unit, -1 = absent.
      std::vector<std::vector<int>> pos(3, std::vector<int>(c.m * c.v, -1));
      std::vector<int> b_order, w_order;
      for (int i = 0; i < static_cast<int>(order.size()); ++i) {
        const ScheduleUnit& u = order[i];
        ASSERT_TRUE(u.micro_batch >= 0 && u.micro_batch < c.m && u.chunk >= 0 && u.chunk < c.v)
            << show(order);
        ASSERT_TRUE(split || u.phase != UnitPhase::kWeight) << show(order);
        int& slot = pos[static_cast<int>(u.phase)][u.micro_batch * c.v + u.chunk];
        ASSERT_EQ(slot, -1) << "unit twice on stage " << s << ":" << show(order);
        slot = i;
        if (u.phase == UnitPhase::kBackward) b_order.push_back(u.micro_batch);
        if (u.phase == UnitPhase::kWeight) w_order.push_back(u.micro_batch);
      }
      for (int k = 0; k < c.m * c.v; ++k) {
        ASSERT_LT(pos[0][k], pos[1][k]) << "stage " << s << ":" << show(order);
        if (split) {
          ASSERT_LT(pos[1][k], pos[2][k]) << "stage " << s << ":" << show(order);
        }
      }
      // A stage's W's run in the order of its backwards.
      if (split) {
        EXPECT_EQ(w_order, b_order) << "stage " << s << ":" << show(order);
      }
    }
  }
}

TEST(Schedule, AllStagesTogetherFinishWithoutDeadlock) {
  for (const Case& c : sweep()) {
    SCOPED_TRACE(describe(c));
    ASSERT_GT(simulate(c.kind, c.pp, c.m, c.v, 1, 1), 0);
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
        case Schedule::kZbH1:  // 1F1B's stage-0 peak on every stage
          EXPECT_EQ(peak, std::min(c.pp, c.m)) << "stage " << s;
          break;
        case Schedule::kZbH2:
          EXPECT_EQ(peak, std::min(2 * c.pp - 1, c.m)) << "stage " << s;
          break;
        case Schedule::kZbV:  // chunk units: 1F1B's peak of pp micro-batches' layers
          EXPECT_LE(peak, std::min(2 * c.pp, 2 * c.m)) << "stage " << s;
          if (s == 0) {
            EXPECT_EQ(peak, std::min(2 * c.pp, 2 * c.m));
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
      EXPECT_EQ(simulate(Schedule::kOneFOneB, pp, m, 1, tf, tb), expected);
      EXPECT_EQ(simulate(Schedule::kGPipe, pp, m, 1, tf, tb), expected);
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
        EXPECT_EQ(simulate(Schedule::kInterleaved, pp, m, v, 1, 2), expected);
      }
    }
  }
}

// --- Preconditions ---------------------------------------------------------------------------

// --- Orders built for unit times --------------------------------------------------------------

// Unit times shaped like a simulated step's (experiments/zero-bubble, per layer: F 1, B 1.3,
// W 0.65): chunks of one or two layers, the head and the loss on the last virtual stage, and
// transfers of 0.02.
ScheduleCosts uneven(Schedule kind, int pp, int v) {
  ScheduleCosts c;
  c.transfer = 0.02;
  for (int s = 0; s < pp; ++s) {
    std::vector<UnitCosts>& stage = c.unit.emplace_back();
    for (int chunk = 0; chunk < v; ++chunk) {
      const int vs = virtual_stage_of(kind, pp, s, chunk);
      const double layers = vs % 3 == 1 ? 2 : 1;
      UnitCosts u{1.0 * layers, 1.3 * layers, 0.65 * layers};
      if (vs == pp * v - 1) u.forward += 1.2, u.backward += 2.6;
      stage.push_back(u);
    }
  }
  return c;
}

double run_with(Schedule kind, int pp, int m, int v, const std::vector<Order>& stages,
                const ScheduleCosts& c) {
  return run_orders(
      kind, pp, m, v, stages,
      [&](int s, const ScheduleUnit& u) { return c.at(s, u.chunk, u.phase); }, c.transfer);
}

// ZB-V ordered for the times it will see: every unit once (B after F, W after B, the W's in the
// backwards' order), the same memory cap, and never slower under those times than the unit-cost
// order (the scheduler keeps the shortest of its candidates, that order among them). The
// handcrafted schedules ignore the times.
TEST(Schedule, OrdersForUnitTimesAreValidAndNoSlower) {
  for (int pp = 1; pp <= 6; ++pp) {
    for (int m : {1, pp, 2 * pp + 1, 3 * pp}) {
      for (const Schedule fixed : {Schedule::kZbH1, Schedule::kZbH2, Schedule::kOneFOneB}) {
        const ScheduleCosts c = uneven(fixed, pp, 1);
        for (int s = 0; s < pp; ++s) {
          EXPECT_EQ(stage_schedule(fixed, pp, s, m, 1, &c), stage_schedule(fixed, pp, s, m, 1));
        }
      }
      {
        const Schedule kind = Schedule::kZbV;
        const int v = 2;
        SCOPED_TRACE(describe({kind, pp, m, v}));
        const ScheduleCosts c = uneven(kind, pp, v);
        std::vector<Order> stages;
        for (int s = 0; s < pp; ++s) {
          const Order order = stage_schedule(kind, pp, s, m, v, &c);
          ASSERT_EQ(order.size(), 3u * m * v);
          std::vector<std::vector<int>> pos(3, std::vector<int>(m * v, -1));
          std::vector<int> b_order, w_order;
          for (int i = 0; i < static_cast<int>(order.size()); ++i) {
            const ScheduleUnit& u = order[i];
            int& slot = pos[static_cast<int>(u.phase)][u.micro_batch * v + u.chunk];
            ASSERT_EQ(slot, -1) << show(order);
            slot = i;
            if (u.phase != UnitPhase::kForward) {
              (u.phase == UnitPhase::kBackward ? b_order : w_order)
                  .push_back(u.micro_batch * v + u.chunk);
            }
          }
          for (int k = 0; k < m * v; ++k) {
            ASSERT_LT(pos[0][k], pos[1][k]) << show(order);
            ASSERT_LT(pos[1][k], pos[2][k]) << show(order);
          }
          EXPECT_EQ(w_order, b_order) << show(order);
          EXPECT_LE(max_in_flight(order),
                    kind == Schedule::kZbV ? std::min(2 * pp, 2 * m) : std::min(2 * pp - 1, m));
          stages.push_back(order);
        }
        const double priced = run_with(kind, pp, m, v, stages, c);
        ASSERT_GT(priced, 0) << "the orders deadlock";
        EXPECT_LE(priced, run_with(kind, pp, m, v, all_stages(kind, pp, m, v), c) + 1e-9);
      }
    }
  }
}

// The zero-bubble experiment's 1.5B model on 8 stages with 24 micro-batches: its ZB-V chunks hold
// 1 or 2 layers and B takes twice W, so the unit-cost order stalls where an order built for those
// times does not (the experiment's step: 1.53 s against 1.38 s).
TEST(Schedule, ZbVOrderedForItsTimesBeatsTheUnitCostOrder) {
  const int pp = 8, m = 24;
  ScheduleCosts c;  // per stage and chunk, in ms (the roofline's, rounded)
  c.transfer = 0.12;
  for (int s = 0; s < pp; ++s) {
    const UnitCosts one{5.0, 6.5, 3.2}, two{10.0, 13.0, 6.4};
    if (s == 0) c.unit.push_back({one, UnitCosts{10.9, 18.3, 3.2}});  // the head
    if (s > 0 && s < pp - 1) c.unit.push_back({two, one});
    if (s == pp - 1) c.unit.push_back({one, one});
  }
  std::vector<Order> stages;
  for (int s = 0; s < pp; ++s) stages.push_back(stage_schedule(Schedule::kZbV, pp, s, m, 2, &c));
  const double priced = run_with(Schedule::kZbV, pp, m, 2, stages, c);
  const double unit = run_with(Schedule::kZbV, pp, m, 2, all_stages(Schedule::kZbV, pp, m, 2), c);
  EXPECT_LT(priced, 0.95 * unit) << priced << " ms against " << unit << " ms";
}

TEST(ScheduleDeathTest, RejectsBadArguments) {
  EXPECT_DEATH(stage_schedule(Schedule::kOneFOneB, 4, 0, 8, 2), "1F1B takes virtual_stages = 1");
  EXPECT_DEATH(stage_schedule(Schedule::kInterleaved, 4, 0, 6, 2), "divisible by pp");
  EXPECT_DEATH(stage_schedule(Schedule::kGPipe, 4, 4, 8, 1), "stage 4 outside pp = 4");
  EXPECT_DEATH(stage_schedule(Schedule::kGPipe, 4, -1, 8, 1), "outside pp");
  EXPECT_DEATH(stage_schedule(Schedule::kGPipe, 4, 0, 0, 1), "num_micro_batches >= 1");
  EXPECT_DEATH(stage_schedule(Schedule::kGPipe, 4, 0, 4, 0), "virtual_stages >= 1");
  EXPECT_DEATH(stage_schedule(Schedule::kZbH1, 4, 0, 8, 2), "zero-bubble schedules take");
  EXPECT_DEATH(stage_schedule(Schedule::kZbV, 4, 0, 8, 1), "ZB-V takes virtual_stages = 2");
}

}  // namespace
}  // namespace strata::strategies
