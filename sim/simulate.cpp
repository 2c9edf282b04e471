// Plan replay: lazily turns ready tasks into SimGrid activities (never pre-building the DAG,
// which is quadratic in SimGrid 3.32) and drives everything from Activity completion callbacks,
// with no actors.
//
// defines:
//   Replayer            per-rank dep counters, the ready worklist, the program-order gate
//                       (comm_overlaps_compute false), launch/finish of each kind, the SMs
//                       a rank's collectives in flight hold (hold_sms: its host's pstate)
//   Instance            one collective across its group: arrivals, then its algorithm's flows
//                       (with folding by symmetry as bundles, detail/fold.hpp)
//   simulate()          engine, platform (links from the cost model's link face), replay; the
//                       report is assembled in detail/report.cpp
// (time_collectives() is in time_collectives.cpp, the flows' start in detail/flows.cpp.)
#include "sim/simulate.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <tuple>
#include <unordered_map>

#include "common/error.hpp"
#include "profiler/link_model.hpp"
#include "sim/collectives.hpp"
#include "sim/detail/flows.hpp"
#include "sim/detail/fold.hpp"
#include "sim/detail/report.hpp"
#include "sim/platform.hpp"

namespace strata::sim {
namespace {

namespace sg4 = simgrid::s4u;
using detail::platform_node_map;
using detail::start_flow_activity;
using strategies::CollectiveKind;
using strategies::Plan;
using strategies::Program;
using strategies::Task;
using strategies::TaskKind;

// Successor lists of a program (the Plan stores predecessors), shared by its ranks.
struct Successors {
  std::vector<std::uint32_t> begin;
  std::vector<std::uint32_t> list;
};

Successors successors_of(const Program& p) {
  Successors s;
  std::vector<std::uint32_t> count(p.tasks.size() + 1, 0);
  for (std::size_t i = 0; i < p.tasks.size(); ++i) {
    for (std::size_t k = 0; k < p.num_deps(i); ++k) ++count[p.deps_of(i)[k]];
  }
  s.begin.assign(p.tasks.size() + 1, 0);
  for (std::size_t i = 0; i < p.tasks.size(); ++i) s.begin[i + 1] = s.begin[i] + count[i];
  s.list.resize(s.begin.back());
  std::vector<std::uint32_t> fill(s.begin.begin(), s.begin.end() - 1);
  for (std::size_t i = 0; i < p.tasks.size(); ++i) {
    for (std::size_t k = 0; k < p.num_deps(i); ++k) {
      s.list[fill[p.deps_of(i)[k]]++] = static_cast<std::uint32_t>(i);
    }
  }
  return s;
}

class Replayer {
 public:
  Replayer(const Plan& plan, const profiler::CostModel& cost, const Platform& platform,
           const SimOptions& options)
      : plan_(plan),
        cost_(cost),
        platform_(platform),
        options_(options),
        nodes_(platform_node_map(plan.cluster, platform, cost.link_efficiencies())) {
    for (const Program& p : plan.programs) successors_.push_back(successors_of(p));
    const int world = plan.world_size;
    const bool symmetric = foldable(plan, options);
    fold_dp_ = symmetric && options.fold_data_parallel && plan.strategy.dp > 1;
    fold_tp_ = symmetric && options.fold_tensor_parallel && plan.strategy.tp > 1;
    active_.assign(world, 1);
    siblings_.resize(world);
    for (int r = 0; r < world; ++r) {
      active_[r] = representative(r) == r;
      if (fold_tp_ && active_[r]) {
        strategies::Coords c = plan.grid().coords(r);
        for (int t = 1; t < plan.strategy.tp; ++t) {
          c[static_cast<int>(strategies::Dim::kTp)] = t;
          siblings_[r].push_back(plan.grid().rank_of(c));
        }
      }
    }
    serial_ = !plan.cluster.comm_overlaps_compute;
    gate_.assign(world, 0);
    holding_.assign(world, 0);
    remaining_.resize(world);
    start_.resize(world);
    end_.resize(world);
    issued_.resize(world);
    group_ids_.resize(world);
    for (int r = 0; r < world; ++r) {
      if (!active(r)) continue;  // folded ranks run nothing and keep nothing
      const Program& p = plan.program_of(r);
      remaining_[r].resize(p.tasks.size());
      for (std::size_t i = 0; i < p.tasks.size(); ++i) {
        remaining_[r][i] = static_cast<std::uint32_t>(p.num_deps(i));
      }
      start_[r].assign(p.tasks.size(), -1.0);
      end_[r].assign(p.tasks.size(), -1.0);
      tasks_total_ += p.tasks.size();
      issued_[r].assign(p.tasks.size(), -1.0);
    }
    bundle_ =
        !platform.bundle_hosts.empty() && fold_tp_ && detail::traffic_is_symmetric(plan, active_);
    sg4::Activity::on_completion_cb([this](const sg4::Activity& a) { on_completion(a); });
  }

  // Whether ranks may be folded at all: one layout (no per-layer tp), one device type, equal
  // speed factors -- otherwise replicas and tensor-parallel peers are not interchangeable.
  static bool foldable(const Plan& plan, const SimOptions& options) {
    if (plan.layouts.size() != 1 || plan.cluster.heterogeneous()) return false;
    for (double f : options.speed_factors) {
      if (f != options.speed_factors.front()) return false;
    }
    return true;
  }
  // Folding by symmetry: the tensor-parallel orbits to build the platform with, when the
  // replay may bundle each folded flow with its peers' copies (docs/simulator.md "Scale").
  static std::vector<std::vector<int>> orbits(const Plan& plan, const SimOptions& options) {
    if (!foldable(plan, options) || !options.fold_tensor_parallel || plan.strategy.tp < 2 ||
        !options.aggregate_ring_steps || !options.bundle_symmetric_flows) {
      return {};
    }
    return detail::tp_orbits(plan);
  }
  bool active(int rank) const { return active_[rank] != 0; }
  // The rank whose tasks stand for `rank`'s: itself, or with folding its replica-0 (dp 0) and
  // tensor-parallel-rank-0 (tp 0) counterpart.
  int representative(int rank) const {
    if (!fold_dp_ && !fold_tp_) return rank;
    strategies::Coords c = plan_.grid().coords(rank);
    if (fold_dp_) c[static_cast<int>(strategies::Dim::kDp)] = 0;
    if (fold_tp_) c[static_cast<int>(strategies::Dim::kTp)] = 0;
    return plan_.grid().rank_of(c);
  }

  void start() {
    for (int r = 0; r < plan_.world_size; ++r) {
      if (!active(r)) continue;
      const Program& p = plan_.program_of(r);
      for (std::size_t i = 0; i < p.tasks.size(); ++i) {
        if (remaining_[r][i] == 0 && may_launch(r, static_cast<std::uint32_t>(i))) {
          launch(r, static_cast<std::uint32_t>(i));
        }
      }
    }
    drain();
  }

  // Every task of every rank must have run; otherwise the Plan deadlocked.
  void check_complete() const {
    for (int r = 0; r < plan_.world_size; ++r) {
      if (!active(r)) continue;
      for (std::size_t i = 0; i < end_[r].size(); ++i) {
        STRATA_CHECK(end_[r][i] >= 0, "simulation ended with rank " + std::to_string(r) + " task " +
                                          std::to_string(i) + " (" +
                                          plan_.task_name(plan_.program_of(r).tasks[i]) +
                                          ") not run: the plan deadlocked");
      }
    }
  }

  const std::vector<std::vector<double>>& starts() const { return start_; }
  // When each task became ready and was issued (its start, unless it then waited: collectives).
  const std::vector<std::vector<double>>& issued() const { return issued_; }
  const std::vector<std::vector<double>>& ends() const { return end_; }
  double events() const { return events_; }
  const CostUsage& usage() const { return usage_; }

 private:
  // ---- readiness ----------------------------------------------------------------------------
  void launch(int rank, std::uint32_t task) {
    start_[rank][task] = issued_[rank][task] = sg4::Engine::get_clock();
    const Task& t = plan_.program_of(rank).tasks[task];
    switch (t.kind) {
      case TaskKind::kCompute:
        launch_compute(rank, task, t);
        break;
      case TaskKind::kCollective:
        arrive_at_collective(rank, task, t);
        break;
      case TaskKind::kSend:
        launch_send(rank, task, t);
        release_order(rank, task);
        break;
      case TaskKind::kRecv:
        launch_recv(rank, task, t);
        break;
    }
  }

  // Queues a finished task; drain() releases its successors without recursion.
  void finish(int rank, std::uint32_t task) { done_.emplace_back(rank, task); }

  void drain() {
    while (!done_.empty()) {
      const auto [rank, task] = done_.front();
      done_.pop_front();
      end_[rank][task] = sg4::Engine::get_clock();
      if (options_.progress && (++tasks_done_ % 4096 == 0 || tasks_done_ == tasks_total_)) {
        options_.progress(tasks_done_, tasks_total_);
      }
      const Successors& s = successors_[plan_.stage_of(rank)];
      for (auto k = s.begin[task]; k < s.begin[task + 1]; ++k) {
        const auto next = s.list[k];
        if (--remaining_[rank][next] == 0 && may_launch(rank, next)) launch(rank, next);
      }
      // A send released its rank's order when it was posted.
      if (plan_.program_of(rank).tasks[task].kind != TaskKind::kSend) release_order(rank, task);
    }
  }

  // In program order (cluster comm_overlaps_compute false: the CPU executor runs every task of a
  // rank in turn, communication between compute, never beside it): a task may start only when
  // every task before it has finished, or for a send, been posted (the executor's sends do not
  // block). Otherwise whenever its dependencies are done.
  bool may_launch(int rank, std::uint32_t task) const { return !serial_ || gate_[rank] == task; }
  void release_order(int rank, std::uint32_t task) {
    if (!serial_) return;
    STRATA_CHECK(gate_[rank] == task, "task released out of program order");
    const std::uint32_t next = ++gate_[rank];
    if (next < remaining_[rank].size() && remaining_[rank][next] == 0) launch(rank, next);
  }

  // ---- activities ---------------------------------------------------------------------------
  enum class PendingKind { kCompute, kFlow, kSend, kShadow };
  struct Pending {
    PendingKind kind;
    int rank = 0;
    std::uint32_t task = 0;
    std::size_t instance = 0;                 // kFlow
    int flow = 0;                             // kFlow: index in the instance's algorithm
    std::tuple<int, int, std::uint32_t> key;  // kSend
  };

  void track(const sg4::ActivityPtr& a, Pending p) {
    pending_.emplace(a.get(), std::move(p));
    live_.emplace(a.get(), a);
    ++events_;
  }

  void on_completion(const sg4::Activity& a) {
    // Drop the activities that completed before this one: releasing an activity inside its own
    // completion callback would be a use-after-free in SimGrid 3.32.
    released_.clear();
    const auto it = pending_.find(&a);
    if (it == pending_.end()) return;
    const Pending p = it->second;
    pending_.erase(it);
    auto live = live_.find(&a);
    released_.push_back(std::move(live->second));
    live_.erase(live);
    switch (p.kind) {
      case PendingKind::kCompute:
        finish(p.rank, p.task);
        break;
      case PendingKind::kFlow:
        flow_done(p.instance, p.flow);
        break;
      case PendingKind::kSend:
        send_done(p.rank, p.task, p.key);
        break;
      case PendingKind::kShadow:
        break;  // a folded peer's transfer: it only loads the links
    }
    drain();
  }

  void launch_compute(int rank, std::uint32_t task, const Task& t) {
    const auto& device = plan_.cluster.group_of_gpu(rank).gpu;
    const double seconds =
        cost_.compute_seconds(plan_.program_of(rank), t, device, plan_.strategy.precision);
    STRATA_CHECK(seconds >= 0, "negative task duration from the cost model");
    if (cost_.measures(plan_.program_of(rank), t, device)) {
      ++usage_.tasks_measured;
      usage_.compute_s_measured += seconds;
    } else {
      ++usage_.tasks_modelled;
      usage_.compute_s_modelled += seconds;
    }
    if (seconds == 0) {
      finish(rank, task);
      return;
    }
    sg4::ExecPtr e = sg4::Exec::init();
    e->set_flops_amount(seconds * Platform::kHostFlops);
    e->set_host(platform_.hosts[rank]);
    e->start();
    track(e, {PendingKind::kCompute, rank, task, 0, 0, {}});
  }

  sg4::ActivityPtr start_flow(int from, int to, double bytes) {
    return start_flow_activity(platform_, {from, to, bytes, 0});
  }

  // ---- pipeline transfers ----------------------------------------------------------------------
  // A transfer is a rendezvous, as NCCL's send and receive are (both block the GPU until the
  // pair has met): its data moves once the send and the matching receive have both been
  // launched. A receive the Plan posts early (no deps: every non-blocking pipeline) makes this
  // the eager transfer that starts with its send.
  void launch_send(int rank, std::uint32_t task, const Task& t) {
    const int peer = plan_.peer_rank(rank, t);
    const auto key = std::tuple{rank, peer, t.tag};
    if (!active(peer) || waiting_recv_.count(key) != 0) {
      start_transfer(rank, task, t, key);
    } else {
      unmatched_send_.emplace(key, task);
    }
  }

  void start_transfer(int rank, std::uint32_t task, const Task& t,
                      const std::tuple<int, int, std::uint32_t>& key) {
    const int peer = std::get<1>(key);
    const double now = sg4::Engine::get_clock();
    transfer_start_[key] = now;
    // A sender that waited for its receiver was idle, not communicating: its span starts now.
    start_[rank][task] = now;
    if (bundle_) {  // one flow for this send and its folded peers' copies
      track(start_flow_activity(platform_, {rank, peer, t.bytes, 0}, true),
            {PendingKind::kSend, rank, task, 0, 0, key});
      return;
    }
    track(start_flow(rank, peer, t.bytes), {PendingKind::kSend, rank, task, 0, 0, key});
    // Folded tensor-parallel peers send their own copies at the same moment.
    for (int s : siblings_[rank]) {
      track(start_flow(s, plan_.peer_rank(s, t), t.bytes), {PendingKind::kShadow, 0, 0, 0, 0, {}});
    }
  }

  void send_done(int rank, std::uint32_t task, const std::tuple<int, int, std::uint32_t>& key) {
    finish(rank, task);
    const auto started = transfer_start_.find(key);
    const double transfer_start = started->second;
    transfer_start_.erase(started);
    const auto waiting = waiting_recv_.find(key);
    if (waiting != waiting_recv_.end()) {
      // A receive posted before its data left spent the gap waiting, not communicating: its
      // span is the transfer's.
      double& recv_start = start_[std::get<1>(key)][waiting->second];
      recv_start = std::max(recv_start, transfer_start);
      finish(std::get<1>(key), waiting->second);
      waiting_recv_.erase(waiting);
    } else {
      delivered_.insert(key);
    }
  }

  void launch_recv(int rank, std::uint32_t task, const Task& t) {
    const auto key = std::tuple{plan_.peer_rank(rank, t), rank, t.tag};
    if (delivered_.erase(key)) {
      finish(rank, task);
      return;
    }
    waiting_recv_.emplace(key, task);
    const auto sender = unmatched_send_.find(key);
    if (sender != unmatched_send_.end()) {
      const int from = std::get<0>(key);
      const std::uint32_t send_task = sender->second;
      unmatched_send_.erase(sender);
      start_transfer(from, send_task, plan_.program_of(from).tasks[send_task], key);
    }
  }

  // ---- collectives --------------------------------------------------------------------------
  struct Instance {
    std::vector<int> ranks;
    std::vector<std::uint32_t> tasks;  // per member, the task index it waits in
    int arrived = 0;
    int expected = 0;  // members that run their tasks (all unless folded)
    CollectiveKind kind = CollectiveKind::kNone;
    strategies::GroupRef group;
    double bytes = 0;
    bool shadow = false;  // a folded peer group's copy: flows only, no tasks
    // An expert-parallel all-to-all's direction (Task::tag): 1 dispatch, 2 combine; else 0.
    std::uint32_t direction = 0;
    // Folding by symmetry: the flows are bundles with their sigma copies (the peers' groups);
    // with `orbit`, the group is one tensor-parallel group, whose flows sigma permutes among
    // themselves: only those from ranks[0] run, each completing its images (`implied`).
    bool bundled = false, orbit = false;
    std::vector<std::vector<int>> implied;
    std::unique_ptr<FlowSchedule> flows;
    // Whether its kernel holds SMs on each member from arrival to completion (links.nccl_sms;
    // not tp_comm_overlap's tp collectives, whose overlapped GEMMs price their SMs).
    bool holds_sms = false;
  };

  // A rank's collectives in flight change its compute's share of the GPU (Platform::hosts'
  // pstates: k collectives, pstate k, capped at the last).
  void hold_sms(int rank, int delta) {
    sg4::Host* host = platform_.hosts[rank];
    const unsigned long states = host->get_pstate_count();
    if (states < 2) return;
    int& k = holding_[rank];
    k += delta;
    STRATA_CHECK(k >= 0, "a rank released more collectives' SMs than it held");
    const unsigned long want = std::min<unsigned long>(static_cast<unsigned long>(k), states - 1);
    if (host->get_pstate() != want) host->set_pstate(want);
  }

  int group_id(int rank, const strategies::GroupRef& g) {
    const int key = (static_cast<int>(g.kind) << 16) | (g.layout << 8) | g.layout_from;
    auto& cache = group_ids_[rank];
    const auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    const auto ranks = plan_.group_ranks(rank, g);
    const auto [gi, inserted] = groups_.emplace(ranks, static_cast<int>(groups_.size()));
    if (inserted) group_members_.push_back(ranks);
    cache.emplace(key, gi->second);
    return gi->second;
  }

  void arrive_at_collective(int rank, std::uint32_t task, const Task& t) {
    const int gid = group_id(rank, t.group);
    const auto& members = group_members_[gid];
    if (members.size() == 1) {
      finish(rank, task);
      return;
    }
    const int occurrence = occurrences_[{rank, gid}]++;
    auto [it, inserted] = instance_of_.emplace(std::pair{gid, occurrence}, instances_.size());
    if (inserted) {
      instances_.emplace_back();
      Instance& in = instances_.back();
      in.ranks = members;
      in.tasks.assign(members.size(), 0);
      in.kind = t.collective;
      in.group = t.group;
      in.bytes = t.bytes;
      if (t.collective == CollectiveKind::kAllToAll && t.purpose == strategies::Purpose::kEp) {
        in.direction = t.tag;
      }
      in.holds_sms = !(plan_.strategy.tp_comm_overlap && t.purpose == strategies::Purpose::kTp);
      for (int m : members) in.expected += active(m) ? 1 : 0;
    }
    const std::size_t id = it->second;
    Instance& in = instances_[id];
    STRATA_CHECK(in.kind == t.collective && in.bytes == t.bytes,
                 "collective mismatch across group members at rank " + std::to_string(rank));
    // NCCL's kernel is launched when the rank reaches the collective and holds its SMs while it
    // waits for the others too.
    if (in.holds_sms) hold_sms(rank, +1);
    const auto pos = std::lower_bound(in.ranks.begin(), in.ranks.end(), rank) - in.ranks.begin();
    in.tasks[pos] = task;
    if (++in.arrived < in.expected) return;
    // Everyone is here: run the algorithm's flows. Members that arrived early were waiting, not
    // communicating: their spans start now.
    instance_of_.erase(it);
    const double now = sg4::Engine::get_clock();
    for (std::size_t k = 0; k < in.ranks.size(); ++k) {
      if (active(in.ranks[k])) start_[in.ranks[k]][in.tasks[k]] = now;
    }
    if (bundle_) {
      in.bundled = true;
      in.orbit = detail::tp_shift(plan_, in.ranks.front(), 1) == in.ranks[1];
    } else if (fold_tp_) {
      start_shadow_collectives(id);
    }
    start_flows(id);
  }

  void start_flows(std::size_t id) {
    Instance& in = instances_[id];
    FlowDetail detail;
    detail.aggregate_steps = options_.aggregate_ring_steps;
    detail.step_latency_s =
        profiler::ring_hop_latency(plan_.cluster, platform_.node_of_rank, in.ranks);
    if (plan_.cluster.total_nodes() > 1) detail.nodes = &nodes_;
    const profiler::CollectiveChoice choice = profiler::choose_collective(
        in.kind, in.ranks, in.bytes, plan_.cluster, cost_.link_efficiencies(), nodes_, detail.nodes,
        in.kind == strategies::CollectiveKind::kAllToAll ? options_.all_to_all_algorithm
                                                         : profiler::Algorithm::kAuto);
    detail.algorithm = choice.algorithm;
    detail.software_latency_s = cost_.collective_extra_latency_s(
        in.kind, in.ranks, in.bytes, plan_.cluster, choice.software_latency_s);
    ++(cost_.measures_collective(in.kind, in.ranks, plan_.cluster) ? usage_.collectives_measured
                                                                    : usage_.collectives_modelled);
    in.flows = std::make_unique<FlowSchedule>(
        in.direction != 0 && !plan_.expert_shares.empty()
            ? plan_all_to_all(in.ranks, expert_matrix(in), detail)
            : plan_collective(in.kind, in.ranks, in.bytes, detail));
    if (in.orbit) in.implied = detail::orbit_images(plan_, *in.flows, in.ranks);
    for (int f : in.flows->initial()) {
      if (!in.orbit || in.flows->flow(f).is_delay() || in.flows->flow(f).from == in.ranks.front()) {
        launch_flow(id, f);
      }
    }
    if (in.flows->done()) complete_instance(id);
  }

  // Mixture of experts: an expert-parallel all-to-all's byte matrix from the routing
  // (ProgramSet::expert_shares, by expert-parallel index = position in the group). In the
  // dispatch direction member i sends share[j] of its rows to member j; the combine sends them
  // back (the transpose). A dispatch's size is the rows a member sends; a combine's is the
  // received rows of the most loaded member (the program's buffer), ep x the largest share of
  // them.
  profiler::ByteMatrix expert_matrix(const Instance& in) const {
    const std::vector<double>& share = plan_.expert_shares;
    const std::size_t n = in.ranks.size();
    STRATA_CHECK(share.size() == n, "an expert-parallel all-to-all over " + std::to_string(n) +
                                        " ranks with " + std::to_string(share.size()) +
                                        " routing shares");
    const double most = *std::max_element(share.begin(), share.end());
    const double sent = in.direction == 1 ? in.bytes : in.bytes / (static_cast<double>(n) * most);
    profiler::ByteMatrix m(n, std::vector<double>(n, 0.0));
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        m[i][j] = sent * (in.direction == 1 ? share[j] : share[i]);
      }
    }
    return m;
  }

  // With tensor-parallel folding, the folded peers of this collective's members run the same
  // collective on their own groups at the same moment (a data-parallel ring per tp rank, for
  // example): start those flows too, so every link carries what it would.
  void start_shadow_collectives(std::size_t id) {
    const std::vector<int> ranks = instances_[id].ranks;
    std::set<std::vector<int>> started;
    for (int m : ranks) {
      if (!active(m)) continue;
      for (int s : siblings_[m]) {
        if (std::binary_search(ranks.begin(), ranks.end(), s)) continue;  // same group
        std::vector<int> group = plan_.group_ranks(s, instances_[id].group);
        if (!started.insert(group).second) continue;
        instances_.emplace_back();
        Instance& shadow = instances_.back();
        shadow.ranks = std::move(group);
        shadow.kind = instances_[id].kind;
        shadow.group = instances_[id].group;
        shadow.bytes = instances_[id].bytes;
        shadow.direction = instances_[id].direction;
        shadow.shadow = true;
        start_flows(instances_.size() - 1);
      }
    }
  }

  void launch_flow(std::size_t id, int f) {
    const Instance& in = instances_[id];
    track(start_flow_activity(platform_, in.flows->flow(f), in.bundled),
          {PendingKind::kFlow, 0, 0, id, f, {}});
  }

  void flow_done(std::size_t id, int f) {
    Instance& in = instances_[id];
    std::vector<int> ready = in.flows->complete(f);
    if (in.orbit) {
      for (int image : in.implied[f]) {
        for (int next : in.flows->complete(image)) ready.push_back(next);
      }
    }
    for (int next : ready) launch_flow(id, next);
    if (in.flows->done()) complete_instance(id);
  }

  void complete_instance(std::size_t id) {
    Instance& in = instances_[id];
    for (std::size_t k = 0; k < in.ranks.size() && !in.shadow; ++k) {
      if (!active(in.ranks[k])) continue;
      if (in.holds_sms) hold_sms(in.ranks[k], -1);
      finish(in.ranks[k], in.tasks[k]);
    }
    // Instances stay in the deque (flows refer to them by index): release their storage.
    in.flows.reset();
    std::vector<int>().swap(in.ranks);
    std::vector<std::uint32_t>().swap(in.tasks);
    std::vector<std::vector<int>>().swap(in.implied);
  }

  const Plan& plan_;
  const profiler::CostModel& cost_;
  const Platform& platform_;
  const SimOptions& options_;
  const NodeMap nodes_;
  bool fold_dp_ = false, fold_tp_ = false;
  bool bundle_ = false;  // folding by symmetry: bundles instead of shadow flows
  std::vector<char> active_;
  std::vector<std::vector<int>> siblings_;  // active rank -> its folded tensor-parallel peers
  std::vector<Successors> successors_;
  std::vector<std::vector<std::uint32_t>> remaining_;
  std::vector<std::vector<double>> start_, end_, issued_;
  bool serial_ = false;                // each rank's tasks in program order (may_launch)
  std::vector<std::uint32_t> gate_;    // serial: per rank, the next task that may start
  std::deque<std::pair<int, std::uint32_t>> done_;
  std::uint64_t tasks_done_ = 0, tasks_total_ = 0;  // of the simulated ranks (progress)

  std::unordered_map<const sg4::Activity*, Pending> pending_;
  std::unordered_map<const sg4::Activity*, sg4::ActivityPtr> live_;
  std::vector<sg4::ActivityPtr> released_;
  double events_ = 0;
  CostUsage usage_;  // what priced the simulated work

  std::map<std::tuple<int, int, std::uint32_t>, std::uint32_t> waiting_recv_;
  // Sends launched before their receive: sender and tag -> the send task.
  std::map<std::tuple<int, int, std::uint32_t>, std::uint32_t> unmatched_send_;
  std::set<std::tuple<int, int, std::uint32_t>> delivered_;
  std::map<std::tuple<int, int, std::uint32_t>, double> transfer_start_;

  std::vector<std::unordered_map<int, int>> group_ids_;  // per rank: GroupRef key -> group id
  std::map<std::vector<int>, int> groups_;
  std::vector<std::vector<int>> group_members_;
  std::map<std::pair<int, int>, int> occurrences_;          // (rank, group) -> next occurrence
  std::map<std::pair<int, int>, std::size_t> instance_of_;  // (group, occurrence) -> instance
  std::deque<Instance> instances_;
  std::vector<int> holding_;  // per rank: its collectives in flight that hold SMs
};

}  // namespace

results::Report simulate(const Plan& plan, const profiler::CostModel& cost,
                         const SimOptions& options) {
  sg4::Engine engine("strata");
  configure_network_model();
  PlatformOptions popts;
  popts.speed_factors = options.speed_factors;
  popts.links = cost.link_efficiencies();
  popts.orbits = Replayer::orbits(plan, options);
  const Platform platform = build_platform(plan.cluster, plan.world_size, popts);

  Replayer replay(plan, cost, platform, options);
  replay.start();
  engine.run();
  replay.check_complete();

  ReplayTimes times{replay.starts(), replay.ends(), replay.issued(), {}, replay.events(),
                    replay.usage()};
  for (int rank = 0; rank < plan.world_size; ++rank) {
    times.representative.push_back(replay.representative(rank));
  }
  return assemble_report(plan, times, options, cost);
}

}  // namespace strata::sim
