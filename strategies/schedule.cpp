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

// The unit-cost list scheduler of ZB-H2 and ZB-V (schedule.hpp): all stages run together, F, B
// and W of a chunk taking one time unit each. A free stage runs a backward whose gradient has
// arrived (lowest chunk first); else a forward whose input has arrived (highest chunk first),
// while fewer than `cap` chunk units are between forward and W; else its oldest pending W.
// Chunk c of stage s holds virtual_stage_of(kind, pp, s, c); a forward of virtual stage vs needs
// vs - 1's, a backward vs + 1's (the last one its own forward). Returns every stage's order.
std::vector<std::vector<ScheduleUnit>> list_schedule(Schedule kind, int pp, int m, int v,
                                                     int cap) {
  const int vstages = pp * v;
  // finish time of (virtual stage, micro-batch)'s F and B, -1 = not run
  std::vector<long> f_done(static_cast<std::size_t>(vstages) * m, -1);
  std::vector<long> b_done(f_done.size(), -1);
  auto at = [m](int vs, int mb) { return static_cast<std::size_t>(vs) * m + mb; };
  struct Stage {
    std::vector<int> f, b;  // next forward and backward micro-batch per chunk
    int in_flight = 0;
    std::vector<ScheduleUnit> pending_w;  // backwards whose W has not run, oldest first
    std::vector<ScheduleUnit> order;
  };
  std::vector<Stage> st(static_cast<std::size_t>(pp));
  for (Stage& x : st) x.f.assign(v, 0), x.b.assign(v, 0);
  auto arrived = [](long done, long t) { return done >= 0 && done <= t; };
  const std::size_t units = 3 * static_cast<std::size_t>(m) * v;
  int finished = 0;
  const long limit = 3L * m * v * pp + vstages;  // a bound no deadlock-free order reaches
  for (long t = 0; finished < pp; ++t) {
    STRATA_CHECK(t < limit, std::string(schedule_name(kind)) +
                                ": the list scheduler made no progress");
    for (int s = 0; s < pp; ++s) {
      Stage& x = st[s];
      if (x.order.size() == units) continue;
      ScheduleUnit u;
      bool found = false;
      for (int c = 0; c < v && !found; ++c) {
        const int mb = x.b[c], vs = virtual_stage_of(kind, pp, s, c);
        if (mb >= x.f[c]) continue;
        const long dep = vs == vstages - 1 ? f_done[at(vs, mb)] : b_done[at(vs + 1, mb)];
        if (arrived(dep, t)) u = backward(mb, c), found = true;
      }
      for (int c = v - 1; c >= 0 && !found && x.in_flight < cap; --c) {
        const int mb = x.f[c], vs = virtual_stage_of(kind, pp, s, c);
        if (mb >= m) continue;
        if (vs == 0 || arrived(f_done[at(vs - 1, mb)], t)) u = forward(mb, c), found = true;
      }
      if (!found && !x.pending_w.empty()) {
        u = x.pending_w.front();
        x.pending_w.erase(x.pending_w.begin());
        found = true;
      }
      if (!found) continue;
      const int vs = virtual_stage_of(kind, pp, s, u.chunk);
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
      if (kind == Schedule::kZbH1) return zb_h1(pp, stage, m);
      // ZB-H2: 2 pp - 1 micro-batches in flight keep every stage busy from its first unit to
      // its last under unit costs (the paper's parallelogram).
      return list_schedule(kind, pp, m, 1, std::min(2 * pp - 1, m))[stage];
    case Schedule::kZbV:
      STRATA_CHECK(v == 2, "stage_schedule: ZB-V takes virtual_stages = 2, got " +
                               std::to_string(v));
      // 2 pp chunk units in flight: 1F1B's peak of pp micro-batches of the stage's layers.
      return list_schedule(kind, pp, m, 2, std::min(2 * pp, 2 * m))[stage];
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
