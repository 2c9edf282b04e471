// Parameter-server training simulated in SimGrid (docs/parameter-server.md "Simulation"): the
// PS task graph (strategies/ps.hpp) replayed on worker and server hosts, pulls and pushes as
// point-to-point flows through the hosts' NICs (so a server's NIC is shared by every worker
// that talks to it), server updates streaming through the server's memory, and the report.
//
// defines: PsLink, PsHosts, ps_hosts, PsHop, ps_route, PsSimReport, simulate_ps, ps_jitter_factor,
//          ps_bsp_step_formula_s, ps_report_to_numbers, ps_report_from_numbers, PsReport,
//          ps_report_to_json, render_ps_report
//
// The platform (one SimGrid full zone):
//  - worker w is the cluster's GPU w (node groups, nodes, GPUs in order: workers per node =
//    gpus_per_node) and reaches the network through its node's NIC (local index mod
//    nics_per_node): a split-duplex link of nic_bandwidth per direction, latency
//    inter_node.latency / 2, so a NIC-to-NIC route has the inter-node latency; the fabric beyond
//    the NICs is not a bottleneck (the workers' traffic all ends at the servers' NICs);
//  - placement "separate": server k is its own host with one such NIC;
//    "colocated": server k runs on worker node k mod nodes, on that node's NIC k mod nics, so
//    its traffic shares the NIC with the node's workers; a worker talks to a server on its own
//    node over the node's intra-node fabric (one link, intra_node bandwidth and latency);
//  - compute runs on the worker's host (its per-step seconds, times the jitter factor), an update
//    on the server's host for bytes / server_memory_bandwidth seconds (concurrent updates on one
//    server share it).
// Line rate, no protocol efficiency: a flow of B bytes alone on a route of bandwidth b and
// latency L takes L + B / b.
//
// Alpha-beta cross-check (BSP, no jitter, every worker computing c seconds): a step is
//   c + (L + max_link pull_load / b) + (L + max_link push_load / b) + max_s update_s / M
// where a link's load is the bytes its direction carries in the phase, update_s is server s's
// step_update_bytes and M the server memory bandwidth. Exact when each phase's flows all cross
// one bottleneck link at equal rates (one worker and one server; W workers on their own NICs
// and one server: W bytes / b; S servers holding equal shares), an upper bound otherwise.
//
// One SimGrid engine per process: simulate_ps() creates it; call it once per process (the CLI
// runs it in a child, cli/child_process.hpp; the tests fork).
#pragma once

#include <string>
#include <vector>

#include "common/json.hpp"
#include "strategies/ps.hpp"
#include "strategies/spec.hpp"

namespace strata::sim {

// Where the hosts sit and which links a flow crosses (pure; the platform is built from it).
struct PsLink {
  std::string name;
  double bandwidth_Bps = 0;  // per direction
  double latency_s = 0;
  bool split_duplex = true;  // a NIC; a node's intra-node link is one shared link
};
struct PsHosts {
  int workers = 0, servers = 0;
  std::vector<PsLink> links;
  std::vector<int> worker_node, server_node;  // node index; -1 for a separate server
  std::vector<int> worker_nic, server_nic;    // index into links
  std::vector<int> node_local;                // per node: its intra-node link (colocated)
};
// ConfigError when the world (workers) exceeds the cluster or a network is needed and missing.
PsHosts ps_hosts(const strategies::ClusterSpec& cluster, const strategies::PsSpec& spec,
                 int workers);
// The route of a flow between worker w and server s: link indices, each with its direction
// (true = up: the sender's side) -- [worker NIC, server NIC] or the node's local link.
struct PsHop {
  int link = 0;
  bool up = true;
};
std::vector<PsHop> ps_route(const PsHosts& hosts, int worker, int server, bool to_server);

struct PsSimReport {
  int workers = 0, servers = 0, steps = 0, warmup_steps = 0;
  double mean_step_s = 0;    // steady state: global batch / samples_per_s
  double samples_per_s = 0;  // sum over workers of their batch share / their step time
  // Per server and steady-state step: bytes received (pushes) and sent (pulls), and its busy
  // time (update bytes / memory bandwidth); busy / mean_step_s is its load.
  std::vector<double> server_bytes_in, server_bytes_out, server_busy_s;
  // Per worker and steady-state step: waiting (from its previous pushes' end to its compute's
  // start: pull transfers plus the time the consistency model blocks it) and computing.
  std::vector<double> worker_wait_s, worker_compute_s;
  int max_staleness = 0;   // over every compute: t - min_w' c_w' when it starts
  double simulated_s = 0;  // the end of the last task
};

// The steps' graph simulated on the cluster. `compute_s` per worker (size workers, or 1 for
// all); each step's compute is compute_s x ps_jitter_factor(spec.compute_jitter, w, t).
// steps >= 2; the first warmup_steps (default max(1, steps / 4)) are left out of the means.
PsSimReport simulate_ps(const strategies::ClusterSpec& cluster, const strategies::PsSpec& spec,
                        const strategies::PsTraffic& traffic, const std::vector<double>& compute_s,
                        int steps, int warmup_steps = -1);

// 1 + j u(w, t), u deterministic in [-1, 1] (splitmix64 of worker and step).
double ps_jitter_factor(double jitter, int worker, int step);

// The BSP step of the formula above (per-worker compute c).
double ps_bsp_step_formula_s(const strategies::ClusterSpec& cluster, const strategies::PsSpec& spec,
                             const strategies::PsTraffic& traffic, double compute_s);

// Flattened for numbers_in_child (cli/child_process.hpp) and back.
std::vector<double> ps_report_to_numbers(const PsSimReport& r);
PsSimReport ps_report_from_numbers(const std::vector<double>& v);

// report.json's "ps" section and the printed table: the spec, the model kind, the traffic per
// worker step, the compute time the workers were given and the simulation.
struct PsReport {
  strategies::PsSpec spec;
  std::string model_kind;      // "gpt" or "recommendation"
  std::string compute_source;  // how the worker compute time was derived
  double worker_compute_s = 0;
  double samples_per_step = 0;
  strategies::PsTraffic traffic;
  PsSimReport sim;
};
json::Json ps_report_to_json(const PsReport& r);
std::string render_ps_report(const PsReport& r);

}  // namespace strata::sim
