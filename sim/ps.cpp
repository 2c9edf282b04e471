// Parameter-server training in SimGrid (ps.hpp): the hosts and routes, the replay of the PS task
// graph, the steady-state report and its JSON and text.
#include "sim/ps.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <map>
#include <simgrid/s4u.hpp>
#include <sstream>
#include <unordered_map>

#include "common/error.hpp"
#include "common/hash.hpp"
#include "sim/platform.hpp"

namespace strata::sim {

namespace {

namespace sg4 = simgrid::s4u;
using strategies::PsConsistency;
using strategies::PsGraph;
using strategies::PsTask;
using strategies::PsTaskKind;

std::string str(long long v) { return std::to_string(v); }

}  // namespace

PsHosts ps_hosts(const strategies::ClusterSpec& cluster, const strategies::PsSpec& spec,
                 int workers) {
  const int gpus = cluster.total_gpus();
  if (workers < 1 || workers > gpus) {
    json::fail("strategy.dp", workers,
               "a parameter server's workers are the cluster's GPUs: from 1 to " + str(gpus) +
                   " (cluster '" + cluster.name + "')");
  }
  PsHosts h;
  h.workers = workers;
  h.servers = spec.servers;
  const strategies::InterNodeSpec& inter = cluster.inter_node;
  // Worker nodes, in order, with their GPUs that are workers.
  struct Node {
    int group = 0;
    int first_worker = 0;
    int count = 0;
  };
  std::vector<Node> nodes;
  int next = 0;
  for (std::size_t g = 0; g < cluster.node_groups.size() && next < workers; ++g) {
    const strategies::NodeGroup& group = cluster.node_groups[g];
    for (int n = 0; n < group.nodes && next < workers; ++n) {
      const int count = std::min(group.gpus_per_node, workers - next);
      nodes.push_back({static_cast<int>(g), next, count});
      next += count;
    }
  }
  const int num_nodes = static_cast<int>(nodes.size());
  const bool colocated = spec.placement == strategies::PsPlacement::kColocated;
  const bool network = !colocated || num_nodes > 1;
  const int nics = inter.nics_per_node;
  if (network && (nics < 1 || !(inter.nic_bandwidth_Bps > 0))) {
    json::fail("cluster.inter_node.nics_per_node", nics,
               std::string("parameter servers ") +
                   (colocated ? "co-located on " + str(num_nodes) + " worker nodes"
                              : "on their own hosts") +
                   " talk to the workers over the network: the cluster needs NICs of positive "
                   "bandwidth (inter_node.nics_per_node, nic_bandwidth_Gbps)");
  }
  const auto add_link = [&](const std::string& name, double bw, double latency, bool split) {
    h.links.push_back({name, bw, latency, split});
    return static_cast<int>(h.links.size()) - 1;
  };
  std::vector<int> first_nic(num_nodes, -1);
  for (int n = 0; n < num_nodes; ++n) {
    const strategies::IntraNodeSpec& intra = cluster.node_groups[nodes[n].group].intra_node;
    h.node_local.push_back(
        add_link("node" + str(n) + "-local", intra.bandwidth_Bps, intra.latency_s, false));
    if (!network) continue;
    for (int i = 0; i < nics; ++i) {
      const int id = add_link("node" + str(n) + "-nic" + str(i), inter.nic_bandwidth_Bps,
                              inter.latency_s / 2, true);
      if (i == 0) first_nic[n] = id;
    }
  }
  for (int n = 0; n < num_nodes; ++n) {
    for (int j = 0; j < nodes[n].count; ++j) {
      h.worker_node.push_back(n);
      h.worker_nic.push_back(network ? first_nic[n] + j % nics : -1);
    }
  }
  for (int k = 0; k < spec.servers; ++k) {
    if (colocated) {
      const int n = k % num_nodes;
      h.server_node.push_back(n);
      h.server_nic.push_back(network ? first_nic[n] + k % nics : -1);
    } else {
      h.server_node.push_back(-1);
      h.server_nic.push_back(
          add_link("server" + str(k) + "-nic", inter.nic_bandwidth_Bps, inter.latency_s / 2, true));
    }
  }
  return h;
}

std::vector<PsHop> ps_route(const PsHosts& hosts, int worker, int server, bool to_server) {
  const int node = hosts.worker_node[worker];
  if (hosts.server_node[server] == node) return {{hosts.node_local[node], true}};
  const int w = hosts.worker_nic[worker], s = hosts.server_nic[server];
  if (to_server) return {{w, true}, {s, false}};
  return {{s, true}, {w, false}};
}

double ps_jitter_factor(double jitter, int worker, int step) {
  if (jitter == 0) return 1;
  const std::uint64_t key =
      (static_cast<std::uint64_t>(worker) << 32) ^ static_cast<std::uint64_t>(step);
  const double u = static_cast<double>(splitmix64(key) >> 11) * 0x1.0p-53;  // [0, 1)
  return 1 + jitter * (2 * u - 1);
}

double ps_bsp_step_formula_s(const strategies::ClusterSpec& cluster, const strategies::PsSpec& spec,
                             const strategies::PsTraffic& traffic, double compute_s) {
  const PsHosts hosts = ps_hosts(cluster, spec, traffic.workers);
  // The slowest link direction of a phase, plus the largest route latency in it.
  const auto phase = [&](const std::vector<double>& bytes, bool to_server) {
    std::map<std::pair<int, bool>, double> load;
    double latency = 0;
    for (int w = 0; w < traffic.workers; ++w) {
      for (int s = 0; s < traffic.servers; ++s) {
        if (bytes[s] <= 0) continue;
        double route_latency = 0;
        for (const PsHop& hop : ps_route(hosts, w, s, to_server)) {
          const PsLink& l = hosts.links[hop.link];
          load[{hop.link, l.split_duplex ? hop.up : true}] += bytes[s];
          route_latency += l.latency_s;
        }
        latency = std::max(latency, route_latency);
      }
    }
    double seconds = 0;
    for (const auto& [key, b] : load) {
      seconds = std::max(seconds, b / hosts.links[key.first].bandwidth_Bps);
    }
    return latency + seconds;
  };
  double update = 0;
  for (double b : traffic.step_update_bytes) {
    update = std::max(update, b / spec.server_memory_bandwidth_Bps);
  }
  return compute_s + phase(traffic.pull_bytes, false) + phase(traffic.push_bytes, true) + update;
}

namespace {

// The replay: every task starts when its dependencies are done (ps.hpp).
class PsReplay {
 public:
  PsReplay(const PsGraph& graph, const PsHosts& hosts, const strategies::PsSpec& spec,
           const std::vector<double>& compute_s)
      : g_(graph), spec_(spec), compute_s_(compute_s) {
    const std::size_t n = g_.tasks.size();
    next_.resize(n);
    remaining_.resize(n);
    start_.assign(n, -1);
    end_.assign(n, -1);
    for (std::size_t i = 0; i < n; ++i) {
      remaining_[i] = static_cast<int>(g_.tasks[i].after.size());
      for (int d : g_.tasks[i].after) next_[d].push_back(static_cast<int>(i));
    }
    clocks_.assign(g_.workers, 0);
    build_platform(hosts);
  }

  void run() {
    sg4::Activity::on_completion_cb([this](const sg4::Activity& a) {
      const auto it = pending_.find(&a);
      if (it == pending_.end()) return;
      const int task = it->second;
      pending_.erase(it);
      complete(task);
    });
    for (std::size_t i = 0; i < g_.tasks.size(); ++i) {
      if (remaining_[i] == 0) launch(static_cast<int>(i));
    }
    sg4::Engine::get_instance()->run();
    for (double e : end_) STRATA_CHECK(e >= 0, "a parameter-server task never ran");
  }

  double start(int task) const { return start_[task]; }
  double end(int task) const { return end_[task]; }
  int max_staleness() const { return max_staleness_; }

 private:
  void build_platform(const PsHosts& hosts) {
    sg4::NetZone* zone = sg4::create_full_zone("ps");
    for (int w = 0; w < hosts.workers; ++w) {
      workers_.push_back(zone->create_host("worker" + str(w), Platform::kHostFlops));
      workers_.back()->seal();
    }
    for (int s = 0; s < hosts.servers; ++s) {
      servers_.push_back(zone->create_host("server" + str(s), Platform::kHostFlops));
      servers_.back()->seal();
    }
    std::vector<sg4::Link*> links;
    for (const PsLink& l : hosts.links) {
      sg4::Link* link =
          l.split_duplex
              ? static_cast<sg4::Link*>(zone->create_split_duplex_link(l.name, l.bandwidth_Bps))
              : zone->create_link(l.name, l.bandwidth_Bps);
      link->set_latency(l.latency_s);
      link->seal();
      links.push_back(link);
    }
    const auto route = [&](int w, int s, bool to_server) {
      std::vector<sg4::LinkInRoute> out;
      for (const PsHop& hop : ps_route(hosts, w, s, to_server)) {
        if (hosts.links[hop.link].split_duplex) {
          out.emplace_back(links[hop.link], hop.up ? sg4::LinkInRoute::Direction::UP
                                                   : sg4::LinkInRoute::Direction::DOWN);
        } else {
          out.emplace_back(links[hop.link]);
        }
      }
      return out;
    };
    for (int w = 0; w < hosts.workers; ++w) {
      for (int s = 0; s < hosts.servers; ++s) {
        zone->add_route(workers_[w]->get_netpoint(), servers_[s]->get_netpoint(), nullptr, nullptr,
                        route(w, s, true), false);
        zone->add_route(servers_[s]->get_netpoint(), workers_[w]->get_netpoint(), nullptr, nullptr,
                        route(w, s, false), false);
      }
    }
    zone->seal();
  }

  void launch(int i) {
    const PsTask& t = g_.tasks[i];
    start_[i] = sg4::Engine::get_clock();
    sg4::ActivityPtr a;
    switch (t.kind) {
      case PsTaskKind::kPull:
      case PsTaskKind::kPush:
        if (t.bytes > 0) {
          sg4::Host* from = t.kind == PsTaskKind::kPull ? servers_[t.server] : workers_[t.worker];
          sg4::Host* to = t.kind == PsTaskKind::kPull ? workers_[t.worker] : servers_[t.server];
          a = sg4::Comm::sendto_async(from, to, static_cast<std::uint64_t>(std::ceil(t.bytes)));
        }
        break;
      case PsTaskKind::kCompute: {
        int slowest = std::numeric_limits<int>::max();
        for (int c : clocks_) slowest = std::min(slowest, c);
        max_staleness_ = std::max(max_staleness_, t.step - slowest);
        const double base = compute_s_.size() == 1 ? compute_s_[0] : compute_s_[t.worker];
        const double seconds = base * ps_jitter_factor(spec_.compute_jitter, t.worker, t.step);
        if (seconds > 0) a = exec(workers_[t.worker], seconds);
        break;
      }
      case PsTaskKind::kUpdate:
        if (t.bytes > 0) {
          a = exec(servers_[t.server], t.bytes / spec_.server_memory_bandwidth_Bps);
        }
        break;
      case PsTaskKind::kClock:
        break;
    }
    if (!a) {
      complete(i);
      return;
    }
    pending_.emplace(a.get(), i);
    live_.push_back(std::move(a));  // released after the run (SimGrid 3.32: not in a callback)
  }

  static sg4::ActivityPtr exec(sg4::Host* host, double seconds) {
    sg4::ExecPtr e = sg4::Exec::init();
    e->set_flops_amount(seconds * Platform::kHostFlops);
    e->set_host(host);
    e->start();
    return e;
  }

  void complete(int i) {
    end_[i] = sg4::Engine::get_clock();
    const PsTask& t = g_.tasks[i];
    if (t.kind == PsTaskKind::kClock && t.worker >= 0) ++clocks_[t.worker];
    // Successors in index order: a step's clocks precede the next step's pulls, so a clock
    // that completes with an update is counted before anything that update releases.
    for (int n : next_[i]) {
      if (--remaining_[n] == 0) launch(n);
    }
  }

  const PsGraph& g_;
  const strategies::PsSpec& spec_;
  const std::vector<double>& compute_s_;
  std::vector<sg4::Host*> workers_, servers_;
  std::vector<std::vector<int>> next_;
  std::vector<int> remaining_;
  std::vector<double> start_, end_;
  std::vector<int> clocks_;
  int max_staleness_ = 0;
  std::unordered_map<const sg4::Activity*, int> pending_;
  std::vector<sg4::ActivityPtr> live_;
};

}  // namespace

PsSimReport simulate_ps(const strategies::ClusterSpec& cluster, const strategies::PsSpec& spec,
                        const strategies::PsTraffic& traffic, const std::vector<double>& compute_s,
                        int steps, int warmup_steps) {
  STRATA_CHECK(steps >= 2, "simulate_ps: at least two steps");
  STRATA_CHECK(compute_s.size() == 1 || static_cast<int>(compute_s.size()) == traffic.workers,
               "simulate_ps: one compute time, or one per worker");
  const int warmup = warmup_steps >= 1 ? std::min(warmup_steps, steps - 1) : std::max(1, steps / 4);
  const PsHosts hosts = ps_hosts(cluster, spec, traffic.workers);
  const PsGraph g = strategies::ps_task_graph(traffic, spec, steps);

  sg4::Engine engine("strata-ps");
  configure_network_model();
  PsReplay replay(g, hosts, spec, compute_s);
  replay.run();

  const int W = g.workers, S = g.servers;
  const double window = steps - warmup;
  PsSimReport r;
  r.workers = W;
  r.servers = S;
  r.steps = steps;
  r.warmup_steps = warmup;
  r.max_staleness = replay.max_staleness();
  r.server_bytes_in.assign(S, 0.0);
  r.server_bytes_out.assign(S, 0.0);
  r.server_busy_s.assign(S, 0.0);
  r.worker_wait_s.assign(W, 0.0);
  r.worker_compute_s.assign(W, 0.0);
  for (std::size_t i = 0; i < g.tasks.size(); ++i) {
    r.simulated_s = std::max(r.simulated_s, replay.end(static_cast<int>(i)));
    const PsTask& t = g.tasks[i];
    if (t.step < warmup) continue;
    if (t.kind == PsTaskKind::kPush) r.server_bytes_in[t.server] += t.bytes / window;
    if (t.kind == PsTaskKind::kPull) r.server_bytes_out[t.server] += t.bytes / window;
    if (t.kind == PsTaskKind::kUpdate) {
      r.server_busy_s[t.server] += t.bytes / spec.server_memory_bandwidth_Bps / window;
    }
  }
  // A worker's step ends when its pushes are delivered (its compute, without servers).
  const auto step_end = [&](int w, int t) {
    double e = replay.end(g.compute(w, t));
    for (int s = 0; s < S; ++s) {
      if (g.push(w, t, s) >= 0) e = std::max(e, replay.end(g.push(w, t, s)));
    }
    return e;
  };
  const double share = traffic.samples_per_step / W;
  for (int w = 0; w < W; ++w) {
    for (int t = warmup; t < steps; ++t) {
      const int c = g.compute(w, t);
      r.worker_wait_s[w] += (replay.start(c) - step_end(w, t - 1)) / window;
      r.worker_compute_s[w] += (replay.end(c) - replay.start(c)) / window;
    }
    const double span = step_end(w, steps - 1) - step_end(w, warmup - 1);
    if (span > 0) r.samples_per_s += share * window / span;
  }
  r.mean_step_s = r.samples_per_s > 0 ? traffic.samples_per_step / r.samples_per_s : 0;
  return r;
}

std::vector<double> ps_report_to_numbers(const PsSimReport& r) {
  std::vector<double> v = {static_cast<double>(r.workers),
                           static_cast<double>(r.servers),
                           static_cast<double>(r.steps),
                           static_cast<double>(r.warmup_steps),
                           r.mean_step_s,
                           r.samples_per_s,
                           static_cast<double>(r.max_staleness),
                           r.simulated_s};
  for (const auto* list : {&r.server_bytes_in, &r.server_bytes_out, &r.server_busy_s,
                           &r.worker_wait_s, &r.worker_compute_s}) {
    v.insert(v.end(), list->begin(), list->end());
  }
  return v;
}

PsSimReport ps_report_from_numbers(const std::vector<double>& v) {
  STRATA_CHECK(v.size() >= 8, "ps_report_from_numbers: a flattened report");
  PsSimReport r;
  r.workers = static_cast<int>(v[0]);
  r.servers = static_cast<int>(v[1]);
  r.steps = static_cast<int>(v[2]);
  r.warmup_steps = static_cast<int>(v[3]);
  r.mean_step_s = v[4];
  r.samples_per_s = v[5];
  r.max_staleness = static_cast<int>(v[6]);
  r.simulated_s = v[7];
  STRATA_CHECK(v.size() == 8 + 3 * static_cast<std::size_t>(r.servers) +
                               2 * static_cast<std::size_t>(r.workers),
               "ps_report_from_numbers: sizes");
  auto at = v.begin() + 8;
  for (auto* list : {&r.server_bytes_in, &r.server_bytes_out, &r.server_busy_s}) {
    list->assign(at, at + r.servers);
    at += r.servers;
  }
  for (auto* list : {&r.worker_wait_s, &r.worker_compute_s}) {
    list->assign(at, at + r.workers);
    at += r.workers;
  }
  return r;
}

namespace {

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

}  // namespace

json::Json ps_report_to_json(const PsReport& r) {
  const PsSimReport& s = r.sim;
  json::Json servers = json::Json::array();
  for (int k = 0; k < s.servers; ++k) {
    servers.push_back({{"server", k},
                       {"params", json::count(r.traffic.params[k])},
                       {"pull_bytes_per_worker_step", r.traffic.pull_bytes[k]},
                       {"push_bytes_per_worker_step", r.traffic.push_bytes[k]},
                       {"bytes_in_per_step", s.server_bytes_in[k]},
                       {"bytes_out_per_step", s.server_bytes_out[k]},
                       {"busy_s_per_step", s.server_busy_s[k]},
                       {"load", s.mean_step_s > 0 ? s.server_busy_s[k] / s.mean_step_s : 0.0}});
    if (!r.traffic.touched_rows.empty()) {
      servers.back()["touched_rows_per_worker_step"] = r.traffic.touched_rows[k];
    }
  }
  json::Json workers = json::Json::array();
  for (int w = 0; w < s.workers; ++w) {
    workers.push_back({{"worker", w},
                       {"wait_s_per_step", s.worker_wait_s[w]},
                       {"compute_s_per_step", s.worker_compute_s[w]}});
  }
  return {{"spec", strategies::ps_to_json(r.spec)},
          {"model_kind", r.model_kind},
          {"workers", s.workers},
          {"servers", s.servers},
          {"steps", s.steps},
          {"warmup_steps", s.warmup_steps},
          {"worker_compute_s", r.worker_compute_s},
          {"compute_source", r.compute_source},
          {"samples_per_step", r.samples_per_step},
          {"mean_step_s", s.mean_step_s},
          {"samples_per_s", s.samples_per_s},
          {"mean_wait_s_per_step", mean(s.worker_wait_s)},
          {"max_staleness", s.max_staleness},
          {"per_server", servers},
          {"per_worker", workers}};
}

std::string render_ps_report(const PsReport& r) {
  const PsSimReport& s = r.sim;
  const strategies::PsSpec& p = r.spec;
  std::ostringstream o;
  o << std::fixed << std::setprecision(6);
  o << "\nParameter server (" << strategies::ps_consistency_name(p.consistency);
  if (p.consistency == PsConsistency::kSsp) o << " s = " << p.staleness;
  o << ", " << s.servers << " servers " << strategies::ps_placement_name(p.placement) << ", "
    << strategies::ps_granularity_name(p.granularity) << " "
    << strategies::ps_partition_name(p.partition) << " partition; " << s.workers << " workers, "
    << r.model_kind << " model):\n";
  o << "  worker compute    " << r.worker_compute_s << " s per step (" << r.compute_source << ")\n";
  o << "  step (steady)     " << s.mean_step_s << " s  (steps " << s.warmup_steps << ".."
    << s.steps - 1 << " of " << s.steps << ")\n";
  o << std::setprecision(1) << "  samples/s         " << s.samples_per_s << "\n";
  o << std::setprecision(6) << "  mean wait         " << mean(s.worker_wait_s)
    << " s per step (pull transfers and blocking)\n";
  o << "  max staleness     " << s.max_staleness << " steps\n";
  o << "  server      params   pull MB/w-step   in MB/step  out MB/step  busy s/step   load\n";
  for (int k = 0; k < s.servers; ++k) {
    o << "  " << std::setw(6) << k << std::setw(12) << std::setprecision(0) << r.traffic.params[k]
      << std::setw(17) << std::setprecision(3) << r.traffic.pull_bytes[k] / 1e6 << std::setw(13)
      << s.server_bytes_in[k] / 1e6 << std::setw(13) << s.server_bytes_out[k] / 1e6 << std::setw(13)
      << std::setprecision(6) << s.server_busy_s[k] << std::setw(7) << std::setprecision(3)
      << (s.mean_step_s > 0 ? s.server_busy_s[k] / s.mean_step_s : 0.0) << "\n";
  }
  o << "  worker  wait s/step  compute s/step\n";
  for (int w = 0; w < s.workers; ++w) {
    if (s.workers > 16 && w == 8) {
      o << "  ... (" << s.workers - 16 << " more workers; report.json has every one)\n";
      w = s.workers - 8;
    }
    o << "  " << std::setw(6) << w << std::setw(13) << std::setprecision(6) << s.worker_wait_s[w]
      << std::setw(16) << s.worker_compute_s[w] << "\n";
  }
  return o.str();
}

}  // namespace strata::sim
