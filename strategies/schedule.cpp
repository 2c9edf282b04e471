// Per-stage pipeline orders. GPipe, 1F1B and interleaved 1F1B share one shape -- warm-up forwards,
// steady one-forward-one-backward pairs, cool-down backwards -- and differ only in the warm-up
// length and in which (micro-batch, chunk) the k-th forward and the k-th backward unit are. The
// zero-bubble schedules place the W units in that shape (schedule.hpp).
#include "strategies/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <tuple>

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

// The end times of every (virtual stage, micro-batch)'s F and B as units run, and when a unit's
// input is usable on its stage. Chunk c of stage s holds virtual_stage_of(kind, pp, s, c); a
// forward of virtual stage vs needs vs - 1's, a backward vs + 1's (the last one its own forward),
// each arriving `transfer` after it ends when it ran on another stage. Shared by the list
// scheduler and makespan().
class UnitEnds {
 public:
  static constexpr double kNotRun = -1;
  UnitEnds(Schedule kind, int pp, int m, int v, double transfer)
      : kind_(kind),
        pp_(pp),
        m_(m),
        last_(pp * v - 1),
        transfer_(transfer),
        f_(static_cast<std::size_t>(pp) * v * m, kNotRun),
        b_(f_.size(), kNotRun) {}

  void record(UnitPhase phase, int vs, int mb, double end) {
    if (phase == UnitPhase::kForward) f_[at(vs, mb)] = end;
    if (phase == UnitPhase::kBackward) b_[at(vs, mb)] = end;
  }
  // When the input of the F or B unit (vs, mb) is usable on its stage: 0 for the first virtual
  // stage's forwards, kNotRun while its producer has not run. A W's input is its own B, which
  // its stage ran before it: 0.
  double input_ready(UnitPhase phase, int vs, int mb) const {
    if (phase == UnitPhase::kForward) return vs == 0 ? 0 : arrival(vs - 1, f_[at(vs - 1, mb)], vs);
    if (phase == UnitPhase::kBackward) {
      return vs == last_ ? f_[at(vs, mb)] : arrival(vs + 1, b_[at(vs + 1, mb)], vs);
    }
    return 0;
  }

 private:
  std::size_t at(int vs, int mb) const { return static_cast<std::size_t>(vs) * m_ + mb; }
  double arrival(int from, double end, int to) const {
    if (end == kNotRun) return end;
    return stage_of_virtual(kind_, pp_, from) == stage_of_virtual(kind_, pp_, to) ? end
                                                                                  : end + transfer_;
  }

  Schedule kind_;
  int pp_, m_, last_;
  double transfer_;
  std::vector<double> f_, b_;
};

// The choices the list scheduler's rules leave open, tried in turn under costs (Qi et al.'s
// schedulers likewise try several and keep the shortest): which chunk's backward and forward go
// first when several are ready, and how many W's a stage may defer (0: any number) before it
// runs the oldest ahead of everything else, which frees activation memory for the next forwards.
struct ListRules {
  bool backward_high_chunk_first = false;
  bool forward_low_chunk_first = false;
  int max_pending_w = 0;
};

// The list scheduler of ZB-H2 and ZB-V (schedule.hpp): all stages run together in time, unit
// (stage, chunk, phase) taking costs->at(stage, chunk, phase), or one time unit each without
// costs. A stage free at time t runs a backward whose gradient has arrived (lowest chunk first);
// else a forward whose input has arrived (highest chunk first), while fewer than `cap` chunk
// units are between forward and W (with costs, counting the admitted micro-batches' later
// chunks); else its oldest pending W; else it waits for the next completion. The dependencies
// and transfers are UnitEnds'. Returns every stage's order; empty when the rules deadlock (only
// possible with costs).
std::vector<std::vector<ScheduleUnit>> list_schedule(Schedule kind, int pp, int m, int v, int cap,
                                                     const ScheduleCosts* costs,
                                                     const ListRules& rules = {}) {
  auto cost = [&](int s, const ScheduleUnit& u) {
    return costs == nullptr ? 1.0 : costs->at(s, u.chunk, u.phase);
  };
  const double transfer = costs == nullptr ? 0.0 : costs->transfer;
  UnitEnds ends(kind, pp, m, v, transfer);
  // In time, a stage may take in first chunks faster than their later chunks come back, and
  // fill its cap with micro-batches none of which can go on: with costs, a micro-batch enters
  // (chunk 0) only while the cap holds its later chunks' forwards and those of the micro-batches
  // already in, so every admitted micro-batch reaches the loss (the unit-cost order, in lockstep,
  // needs no such rule and keeps its textbook form).
  const bool reserve = costs != nullptr && v > 1;
  struct Stage {
    std::vector<int> f, b;  // next forward and backward micro-batch per chunk
    int in_flight = 0;
    double free_at = 0;
    bool waiting = false;                 // found nothing at free_at, no later result known yet
    std::vector<ScheduleUnit> pending_w;  // backwards whose W has not run, oldest first
    std::vector<ScheduleUnit> order;
  };
  std::vector<Stage> st(static_cast<std::size_t>(pp));
  for (Stage& x : st) x.f.assign(v, 0), x.b.assign(v, 0);
  std::set<double> events;  // every ready time so far: when a waiting stage may retry
  const std::size_t units = 3 * static_cast<std::size_t>(m) * v;
  for (std::size_t done_units = 0; done_units < units * pp;) {
    int s = -1;  // the unfinished stage free first (not waiting, then the lowest, on a tie)
    auto before = [&](int q, int r) {
      return std::tie(st[q].free_at, st[q].waiting) < std::tie(st[r].free_at, st[r].waiting);
    };
    for (int q = 0; q < pp; ++q) {
      if (st[q].order.size() < units && (s < 0 || before(q, s))) s = q;
    }
    Stage& x = st[s];
    const double t = x.free_at;
    auto arrived = [t](double when) { return when != UnitEnds::kNotRun && when <= t; };
    ScheduleUnit u;
    bool found = false;
    if (rules.max_pending_w > 0 && static_cast<int>(x.pending_w.size()) >= rules.max_pending_w) {
      u = x.pending_w.front();
      x.pending_w.erase(x.pending_w.begin());
      found = true;
    }
    for (int k = 0; k < v && !found; ++k) {
      const int c = rules.backward_high_chunk_first ? v - 1 - k : k;
      const int mb = x.b[c], vs = virtual_stage_of(kind, pp, s, c);
      if (mb >= x.f[c]) continue;
      if (arrived(ends.input_ready(UnitPhase::kBackward, vs, mb))) {
        u = backward(mb, c), found = true;
      }
    }
    for (int k = 0; k < v && !found && x.in_flight < cap; ++k) {
      const int c = rules.forward_low_chunk_first ? k : v - 1 - k;
      const int mb = x.f[c], vs = virtual_stage_of(kind, pp, s, c);
      if (mb >= m) continue;
      if (reserve && c == 0) {  // room for this micro-batch's later chunks, and the admitted ones'
        int reserved = 0;
        for (int later = 1; later < v; ++later) reserved += x.f[0] - x.f[later];
        if (x.in_flight + reserved + v > cap) continue;
      }
      if (arrived(ends.input_ready(UnitPhase::kForward, vs, mb))) {
        u = forward(mb, c), found = true;
      }
    }
    if (!found && !x.pending_w.empty()) {
      u = x.pending_w.front();
      x.pending_w.erase(x.pending_w.begin());
      found = true;
    }
    if (!found) {  // wait for the next result to become ready
      const auto next = events.upper_bound(t);
      if (next != events.end()) {
        x.free_at = *next;
      } else {  // only the stages free at t can still produce one
        if (x.waiting && costs != nullptr) return {};  // these rules deadlock: try others
        STRATA_CHECK(!x.waiting,
                     std::string(schedule_name(kind)) + ": the list scheduler made no progress");
        x.waiting = true;
      }
      continue;
    }
    const int vs = virtual_stage_of(kind, pp, s, u.chunk);
    const double end = t + cost(s, u);
    ends.record(u.phase, vs, u.micro_batch, end);
    if (u.phase == UnitPhase::kForward) {
      ++x.f[u.chunk];
      ++x.in_flight;
    } else if (u.phase == UnitPhase::kBackward) {
      ++x.b[u.chunk];
      x.pending_w.push_back(weight(u.micro_batch, u.chunk));
    } else {
      --x.in_flight;
    }
    events.insert(end);
    events.insert(end + transfer);
    for (Stage& y : st) y.waiting = false;
    x.free_at = end;
    x.order.push_back(u);
    ++done_units;
  }
  std::vector<std::vector<ScheduleUnit>> orders;
  for (Stage& x : st) orders.push_back(std::move(x.order));
  return orders;
}

// The time every stage's order takes under `costs`: each unit starts when its stage is done with
// the one before and its input has arrived (list_schedule's dependencies and transfers).
double makespan(Schedule kind, int pp, int m, int v,
                const std::vector<std::vector<ScheduleUnit>>& orders, const ScheduleCosts& costs) {
  UnitEnds ends(kind, pp, m, v, costs.transfer);
  std::vector<std::size_t> next(static_cast<std::size_t>(pp), 0);
  std::vector<double> free_at(static_cast<std::size_t>(pp), 0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < pp; ++s) {
      const std::vector<ScheduleUnit>& order = orders[static_cast<std::size_t>(s)];
      for (std::size_t& i = next[static_cast<std::size_t>(s)]; i < order.size(); ++i) {
        const ScheduleUnit& u = order[i];
        const int vs = virtual_stage_of(kind, pp, s, u.chunk);
        const double dep = ends.input_ready(u.phase, vs, u.micro_batch);
        if (dep == UnitEnds::kNotRun) break;
        double& t = free_at[static_cast<std::size_t>(s)];
        t = std::max(t, dep) + costs.at(s, u.chunk, u.phase);
        ends.record(u.phase, vs, u.micro_batch, t);
        progress = true;
      }
    }
  }
  for (int s = 0; s < pp; ++s) {
    STRATA_CHECK(next[static_cast<std::size_t>(s)] == orders[static_cast<std::size_t>(s)].size(),
                 "makespan: the orders wait on one another");
  }
  return *std::max_element(free_at.begin(), free_at.end());
}

// ZB-V's orders: the unit-cost order, or with costs the shortest under them of the unit-cost
// order and the list scheduler's under each ListRules. The last answer is kept: the
// lowering asks once per stage, and the profiler once more.
std::vector<std::vector<ScheduleUnit>> best_orders(Schedule kind, int pp, int m, int v, int cap,
                                                   const ScheduleCosts* costs) {
  if (costs == nullptr) return list_schedule(kind, pp, m, v, cap, nullptr);
  using Key = std::tuple<Schedule, int, int, int, int>;
  static std::mutex mutex;
  static Key last_key;
  static ScheduleCosts last_costs;
  static std::vector<std::vector<ScheduleUnit>> last;
  const Key key{kind, pp, m, v, cap};
  {
    const std::lock_guard<std::mutex> lock(mutex);
    if (!last.empty() && key == last_key && *costs == last_costs) return last;
  }
  std::vector<std::vector<ScheduleUnit>> best = list_schedule(kind, pp, m, v, cap, nullptr);
  double best_time = makespan(kind, pp, m, v, best, *costs);
  for (const bool b_high : {false, true}) {
    for (const bool f_low : {false, true}) {
      for (const int w : {0, 1, 2, 3, 4, 6, 8}) {
        auto orders = list_schedule(kind, pp, m, v, cap, costs, ListRules{b_high, f_low, w});
        if (orders.empty()) continue;
        const double time = makespan(kind, pp, m, v, orders, *costs);
        if (time < best_time) best_time = time, best = std::move(orders);
      }
    }
  }
  const std::lock_guard<std::mutex> lock(mutex);
  last_key = key;
  last_costs = *costs;
  last = best;
  return best;
}

// The costs when they are given for every (stage, chunk) with positive, finite times.
const ScheduleCosts* usable(const ScheduleCosts* costs, int pp, int v) {
  if (costs == nullptr || costs->unit.empty()) return nullptr;
  STRATA_CHECK(static_cast<int>(costs->unit.size()) == pp,
               "stage_schedule: unit costs for " + std::to_string(costs->unit.size()) +
                   " stages, the pipeline has " + std::to_string(pp));
  for (const std::vector<UnitCosts>& stage : costs->unit) {
    STRATA_CHECK(static_cast<int>(stage.size()) == v,
                 "stage_schedule: unit costs for " + std::to_string(stage.size()) +
                     " chunks, the stage has " + std::to_string(v));
    for (const UnitCosts& c : stage) {
      STRATA_CHECK(c.forward > 0 && c.backward > 0 && c.weight > 0 && std::isfinite(c.forward) &&
                       std::isfinite(c.backward) && std::isfinite(c.weight),
                   "stage_schedule: unit costs must be positive and finite");
    }
  }
  STRATA_CHECK(costs->transfer >= 0 && std::isfinite(costs->transfer),
               "stage_schedule: the transfer cost must be >= 0 and finite");
  return costs;
}

}  // namespace

bool ordered_for_costs(Schedule kind) { return kind == Schedule::kZbV; }

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

double ScheduleCosts::at(int stage, int chunk, UnitPhase phase) const {
  const UnitCosts& c = unit.at(static_cast<std::size_t>(stage)).at(static_cast<std::size_t>(chunk));
  return phase == UnitPhase::kForward    ? c.forward
         : phase == UnitPhase::kBackward ? c.backward
                                         : c.weight;
}

std::vector<ScheduleUnit> stage_schedule(Schedule kind, int pp, int stage, int num_micro_batches,
                                         int virtual_stages, const ScheduleCosts* costs) {
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
      return list_schedule(kind, pp, m, 1, std::min(2 * pp - 1, m), nullptr)[stage];
    case Schedule::kZbV:
      STRATA_CHECK(v == 2, "stage_schedule: ZB-V takes virtual_stages = 2, got " +
                               std::to_string(v));
      // 2 pp chunk units in flight: 1F1B's peak of pp micro-batches of the stage's layers.
      return best_orders(kind, pp, m, 2, std::min(2 * pp, 2 * m), usable(costs, pp, v))[stage];
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
