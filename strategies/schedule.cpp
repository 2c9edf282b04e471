// Per-stage pipeline orders. GPipe, 1F1B and interleaved 1F1B share one shape -- warm-up forwards,
// steady one-forward-one-backward pairs, cool-down backwards -- and differ only in the warm-up
// length and in which (micro-batch, chunk) the k-th forward and the k-th backward unit are. The
// zero-bubble schedules place the W units in that shape (schedule.hpp).
#include "strategies/schedule.hpp"

#include <algorithm>
#include <string>

#include "common/error.hpp"

namespace strata::strategies {
namespace {

ScheduleUnit forward(int micro_batch, int chunk) {
  return {UnitPhase::kForward, micro_batch, chunk};
}
ScheduleUnit backward(int micro_batch, int chunk) {
  return {UnitPhase::kBackward, micro_batch, chunk};
}
ScheduleUnit weight(int micro_batch, int chunk = 0) {
  return {UnitPhase::kWeight, micro_batch, chunk};
}

// `warmup` forwards, then (forward, backward) pairs while forwards remain, then the remaining
// backwards. fwd(k) / bwd(k) name the k-th forward / backward unit, k in [0, total).
template <typename Fwd, typename Bwd>
std::vector<ScheduleUnit> warmup_steady_cooldown(int total, int warmup, Fwd fwd, Bwd bwd) {
  std::vector<ScheduleUnit> order;
  order.reserve(2 * static_cast<std::size_t>(total));
  for (int k = 0; k < warmup; ++k) order.push_back(fwd(k));
  const int steady = total - warmup;
  for (int k = 0; k < steady; ++k) {
    order.push_back(fwd(warmup + k));
    order.push_back(bwd(k));
  }
  for (int k = steady; k < total; ++k) order.push_back(bwd(k));
  return order;
}

// GPipe. With v chunks (not a Megatron schedule, supported for completeness) the forwards go
// chunk-major -- every micro-batch through chunk 0, then through chunk 1, ... -- and the
// backwards are the exact reverse of the forwards, so v = 1 is F0..F(m-1), B(m-1)..B0.
std::vector<ScheduleUnit> gpipe(int m, int v) {
  const int total = m * v;
  auto fwd = [m](int k) { return forward(k % m, k / m); };
  auto bwd = [m, total](int k) { return backward((total - 1 - k) % m, (total - 1 - k) / m); };
  return warmup_steady_cooldown(total, total, fwd, bwd);
}

// PipeDream-Flush / Megatron 1F1B: stage s keeps at most pp - s micro-batches in flight.
std::vector<ScheduleUnit> one_f_one_b(int pp, int stage, int m) {
  const int warmup = std::min(pp - stage - 1, m);
  return warmup_steady_cooldown(
      m, warmup, [](int k) { return forward(k, 0); }, [](int k) { return backward(k, 0); });
}

// Megatron-LM's forward_backward_pipelining_with_interleaving. Units go in groups of pp
// micro-batches: pp forwards of chunk 0, pp of chunk 1, ..., pp of chunk v-1, then the next pp
// micro-batches. Backwards walk the same groups with the chunks reversed. The warm-up is the
// one Megatron uses (2 per downstream stage to pair its sends and receives, plus (v-1)*pp to
// fill the other chunks); with v = 1 this is not 1F1B, it keeps more micro-batches in flight.
std::vector<ScheduleUnit> interleaved(int pp, int stage, int m, int v) {
  const int total = m * v;
  const int warmup = std::min((pp - stage - 1) * 2 + (v - 1) * pp, total);
  auto micro_batch = [pp, v](int k) { return k / (pp * v) * pp + k % pp; };
  auto fwd = [=](int k) { return forward(micro_batch(k), k / pp % v); };
  auto bwd = [=](int k) { return backward(micro_batch(k), v - 1 - k / pp % v); };
  return warmup_steady_cooldown(total, warmup, fwd, bwd);
}

// ZB-H1 (Qi et al. 2024, sec. 3.1 "memory efficient schedule"): 1F1B's forwards and backwards,
// with stage s postponing its first s W's so that every stage holds pp micro-batches, 1F1B's
// peak; the postponed W's run in the cool-down, where 1F1B's stages wait for backwards.
std::vector<ScheduleUnit> zb_h1(int pp, int stage, int m) {
  const int warmup = std::min(pp - stage - 1, m);
  std::vector<ScheduleUnit> order;
  order.reserve(3 * static_cast<std::size_t>(m));
  int f = 0, b = 0, w = 0;
  for (; f < warmup; ++f) order.push_back(forward(f, 0));
  for (int pair = 0; f < m; ++pair) {
    order.push_back(forward(f++, 0));
    order.push_back(backward(b++, 0));
    if (pair >= stage) order.push_back(weight(w++));
  }
  while (b < m) {
    order.push_back(backward(b++, 0));
    order.push_back(weight(w++));
  }
  while (w < m) order.push_back(weight(w++));
  return order;
}

// ZB-H2 (Qi et al. 2024, sec. 3.1 "zero bubble schedule"): every stage may hold 2 pp - 1
// micro-batches, enough to stay busy from its first forward to its last W when F, B and W take
// one time unit each (the paper's parallelogram). The order is the one a list scheduler gives
// under those unit costs, all stages running together: a stage that is free runs a backward
// whose gradient has arrived; else a forward whose input has arrived, if fewer than the cap are
// in flight; else its oldest pending W. Returns every stage's order.
std::vector<std::vector<ScheduleUnit>> zb_h2(int pp, int m) {
  const int cap = std::min(2 * pp - 1, m);
  struct Stage {
    int f = 0, b = 0, w = 0;
    std::vector<long> f_done, b_done;  // finish time of each micro-batch's F and B
    std::vector<ScheduleUnit> order;
  };
  std::vector<Stage> st(static_cast<std::size_t>(pp));
  for (Stage& x : st) {
    x.f_done.assign(static_cast<std::size_t>(m), -1);
    x.b_done.assign(static_cast<std::size_t>(m), -1);
    x.order.reserve(3 * static_cast<std::size_t>(m));
  }
  auto arrived = [](long done, long t) { return done >= 0 && done <= t; };
  int finished = 0;
  const long limit = 3L * m * pp + pp;  // a bound no deadlock-free order reaches
  for (long t = 0; finished < pp; ++t) {
    STRATA_CHECK(t < limit, "zb-h2: the list scheduler made no progress");
    for (int s = 0; s < pp; ++s) {
      Stage& x = st[s];
      if (x.w == m) continue;
      if (x.b < x.f && arrived(s + 1 < pp ? st[s + 1].b_done[x.b] : x.f_done[x.b], t)) {
        x.order.push_back(backward(x.b, 0));
        x.b_done[x.b++] = t + 1;
      } else if (x.f < m && x.f - x.w < cap && (s == 0 || arrived(st[s - 1].f_done[x.f], t))) {
        x.order.push_back(forward(x.f, 0));
        x.f_done[x.f++] = t + 1;
      } else if (x.w < x.b) {
        x.order.push_back(weight(x.w++));
        if (x.w == m) ++finished;
      }
    }
  }
  std::vector<std::vector<ScheduleUnit>> orders;
  for (Stage& x : st) orders.push_back(std::move(x.order));
  return orders;
}

// ZB-V (schedule.hpp): the unit-cost list scheduler over the V layout. Chunk c of stage s holds
// virtual stage vs(s, c); a forward of virtual stage vs needs vs - 1's, a backward vs + 1's (the
// last one its own forward), a W its own backward.
std::vector<std::vector<ScheduleUnit>> zb_v(int pp, int m) {
  const int vstages = 2 * pp;
  const int cap = std::min(2 * pp, 2 * m);
  auto vs_of = [pp](int s, int c) { return c == 0 ? s : 2 * pp - 1 - s; };
  // finish time of (phase, virtual stage, micro-batch), -1 = not run
  std::vector<long> f_done(static_cast<std::size_t>(vstages) * m, -1);
  std::vector<long> b_done(f_done.size(), -1);
  auto at = [m](int vs, int mb) { return static_cast<std::size_t>(vs) * m + mb; };
  struct Stage {
    int f[2] = {0, 0}, b[2] = {0, 0}, in_flight = 0;
    std::vector<ScheduleUnit> pending_w;  // backwards whose W has not run, oldest first
    std::vector<ScheduleUnit> order;
  };
  std::vector<Stage> st(static_cast<std::size_t>(pp));
  auto arrived = [](long done, long t) { return done >= 0 && done <= t; };
  const std::size_t units = 6 * static_cast<std::size_t>(m);
  int finished = 0;
  const long limit = 6L * m * pp + 2L * pp;  // a bound no deadlock-free order reaches
  for (long t = 0; finished < pp; ++t) {
    STRATA_CHECK(t < limit, "zb-v: the list scheduler made no progress");
    for (int s = 0; s < pp; ++s) {
      Stage& x = st[s];
      if (x.order.size() == units) continue;
      ScheduleUnit u;
      bool found = false;
      for (int c : {0, 1}) {  // a backward whose gradient has arrived, chunk 0 first
        const int mb = x.b[c], vs = vs_of(s, c);
        if (found || mb >= x.f[c]) continue;
        const long dep = vs == vstages - 1 ? f_done[at(vs, mb)] : b_done[at(vs + 1, mb)];
        if (arrived(dep, t)) u = backward(mb, c), found = true;
      }
      for (int c : {1, 0}) {  // else a forward whose input has arrived, chunk 1 first
        const int mb = x.f[c], vs = vs_of(s, c);
        if (found || mb >= m || x.in_flight >= cap) continue;
        if (vs == 0 || arrived(f_done[at(vs - 1, mb)], t)) u = forward(mb, c), found = true;
      }
      if (!found && !x.pending_w.empty()) {  // else the oldest pending W
        u = x.pending_w.front();
        x.pending_w.erase(x.pending_w.begin());
        found = true;
      }
      if (!found) continue;
      const int vs = vs_of(s, u.chunk);
      if (u.phase == UnitPhase::kForward) {
        ++x.f[u.chunk];
        ++x.in_flight;
        f_done[at(vs, u.micro_batch)] = t + 1;
      } else if (u.phase == UnitPhase::kBackward) {
        ++x.b[u.chunk];
        b_done[at(vs, u.micro_batch)] = t + 1;
        x.pending_w.push_back(weight(u.micro_batch, u.chunk));
      } else {
        --x.in_flight;
      }
      x.order.push_back(u);
      if (x.order.size() == units) ++finished;
    }
  }
  std::vector<std::vector<ScheduleUnit>> orders;
  for (Stage& x : st) orders.push_back(std::move(x.order));
  return orders;
}

}  // namespace

bool splits_backward(Schedule kind) {
  return kind == Schedule::kZbH1 || kind == Schedule::kZbH2 || kind == Schedule::kZbV;
}

int virtual_stage_of(Schedule kind, int pp, int stage, int chunk) {
  if (kind == Schedule::kZbV) return chunk == 0 ? stage : 2 * pp - 1 - stage;
  return chunk * pp + stage;
}

int stage_of_virtual(Schedule kind, int pp, int vs) {
  if (kind == Schedule::kZbV) return vs < pp ? vs : 2 * pp - 1 - vs;
  return vs % pp;
}

std::vector<ScheduleUnit> stage_schedule(Schedule kind, int pp, int stage, int num_micro_batches,
                                         int virtual_stages) {
  const int m = num_micro_batches;
  const int v = virtual_stages;
  STRATA_CHECK(
      pp >= 1 && stage >= 0 && stage < pp,
      "stage_schedule: stage " + std::to_string(stage) + " outside pp = " + std::to_string(pp));
  STRATA_CHECK(m >= 1 && v >= 1,
               "stage_schedule: need num_micro_batches >= 1 and "
               "virtual_stages >= 1, got " +
                   std::to_string(m) + " and " + std::to_string(v));
  switch (kind) {
    case Schedule::kGPipe:
      return gpipe(m, v);
    case Schedule::kOneFOneB:
      STRATA_CHECK(v == 1, "stage_schedule: 1F1B takes virtual_stages = 1, got " +
                               std::to_string(v) + " (use the interleaved schedule)");
      return one_f_one_b(pp, stage, m);
    case Schedule::kInterleaved:
      STRATA_CHECK(m % pp == 0, "stage_schedule: interleaved 1F1B needs num_micro_batches (" +
                                    std::to_string(m) + ") divisible by pp (" + std::to_string(pp) +
                                    ")");
      return interleaved(pp, stage, m, v);
    case Schedule::kZbH1:
    case Schedule::kZbH2:
      STRATA_CHECK(v == 1, "stage_schedule: the zero-bubble schedules take virtual_stages = 1, "
                           "got " + std::to_string(v));
      return kind == Schedule::kZbH1 ? zb_h1(pp, stage, m) : zb_h2(pp, m)[stage];
    case Schedule::kZbV:
      STRATA_CHECK(v == 2, "stage_schedule: ZB-V takes virtual_stages = 2, got " +
                               std::to_string(v));
      return zb_v(pp, m)[stage];
  }
  STRATA_CHECK(false, "stage_schedule: unknown schedule " + std::to_string(static_cast<int>(kind)));
  return {};
}

int max_in_flight(const std::vector<ScheduleUnit>& order) {
  const bool split = std::any_of(order.begin(), order.end(), [](const ScheduleUnit& u) {
    return u.phase == UnitPhase::kWeight;
  });
  const UnitPhase release = split ? UnitPhase::kWeight : UnitPhase::kBackward;
  int live = 0;
  int peak = 0;
  for (const ScheduleUnit& u : order) {
    if (u.phase == UnitPhase::kForward) ++live;
    if (u.phase == release) --live;
    peak = std::max(peak, live);
  }
  return peak;
}

}  // namespace strata::strategies
