// Parameter-server training (docs/parameter-server.md): the strategy's "ps" block, the bytes a
// worker step moves to and from each server, and the PS task graph the simulator replays
// (sim/ps.hpp). Pure; which server owns what comes from ps_partition.hpp.
//
// defines: parse_ps, ps_to_json, check_ps_strategy (PsSpec itself is in spec.hpp), PsTraffic,
//          gpt_ps_traffic, gpt_ps_tensors, rec_ps_traffic, touched_rows_per_server, PsTaskKind,
//          PsTask, PsGraph, ps_task_graph
//
// The task graph, for N steps, W workers and S servers (only servers a worker exchanges bytes
// with get tasks). Every dependency is "starts after it completes":
//   pull(w, t, s)   s -> w, pull_bytes[s]: after push(w, t - 1, s) (the worker's channel to s
//                   keeps its order: the push, then the next pull), and
//                     BSP:    update(s, t - 1)                 (the averaged step applied)
//                     SSP(k): all_clocks(t - k - 1)            (min_w' c_w' >= t - k)
//                     ASP:    nothing more
//   compute(w, t)   after every pull(w, t, s) and compute(w, t - 1)
//   push(w, t, s)   w -> s, push_bytes[s]: after compute(w, t)
//   update          on server s, streams update bytes through its memory:
//                     BSP:     update(s, t), one per step: after push(w, t, s) for every w and
//                              update(s, t - 1); step_update_bytes[s]
//                     SSP/ASP: update(s, t, w), one per push, on arrival: after push(w, t, s);
//                              push_update_bytes[s]
//   clock(w, t)     no cost: worker w's step-t gradients are applied on every server it pushed
//                   to (c_w = t + 1): after its update(s, t[, w]) for every s and clock(w, t - 1)
//   all_clocks(t)   SSP only, no cost: every worker's clock(w, t) (one task, so that a pull has
//                   one dependency on the slowest worker instead of W)
// So staleness is expressed as dependencies: under SSP(k) a worker computing step t has seen
// every worker's steps < t - k applied, and under BSP every worker's steps < t.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "strategies/ps_partition.hpp"
#include "strategies/rec_model.hpp"
#include "strategies/spec.hpp"

namespace strata::strategies {

// Types, ranges, enums and staleness only with ssp (ConfigError naming strategy.ps.<field>).
PsSpec parse_ps(json::ObjectReader r);
json::Json ps_to_json(const PsSpec& p);
// A ps strategy's other fields: workers are plain data-parallel replicas (tp = pp = cp = 1,
// zero_stage 0) and the strategy is not federated. ConfigError naming both fields otherwise.
void check_ps_strategy(const StrategySpec& s);

// What one worker step moves, per server (the same for every worker: each has the same batch
// share). Bytes on the wire and bytes a server's update streams through its memory
// (docs/parameter-server.md "Bytes").
struct PsTraffic {
  int workers = 1;
  int servers = 1;
  double samples_per_step = 0;            // the global batch, all workers together
  std::vector<double> pull_bytes;         // per server, one worker's pull
  std::vector<double> push_bytes;         // per server, one worker's push
  std::vector<double> push_update_bytes;  // per server, applying one push (SSP, ASP)
  std::vector<double> step_update_bytes;  // per server, applying a BSP step's W pushes
  std::vector<double> params;             // per server, the parameters it holds
  std::vector<double> touched_rows;       // per server, rows one worker's batch touches
                                          // (recommendation model; empty for a GPT)
};

// A GPT-family model: dense, every step each worker pulls every parameter in the strategy's
// precision and pushes every gradient in its grad dtype (grad_bytes). Tensors: "embedding"
// (V x h), "position_embedding" (s x h, learned positions), per layer "layers.<l>.attn_qkv",
// ".attn_out", ".mlp_fc1", ".mlp_fc2" (their elements as rows of one) and ".norm1", ".norm2",
// then "final_norm" and, untied, "lm_head" (V x h). A server applies AdamW: one applied update
// streams param + grad + m + v, each read and written: 2 (p + g + 8) bytes per element; a BSP
// step reads the W pushed gradients (W g) and runs one such update. MoE models: ConfigError.
PsTraffic gpt_ps_traffic(const ModelSpec& m, const StrategySpec& s);
// The GPT tensors as above (their element counts add up to total_params(m)).
std::vector<PsTensor> gpt_ps_tensors(const ModelSpec& m);
// The recommendation model: a worker's batch (global_batch / W samples) makes b x F lookups;
// only the touched rows travel: expected unique rows (rec_model.hpp) x (d x 4 bytes + an 8-byte
// int64 id), split over the servers by the partition (row range: each server's block of rows;
// row hash: the head rows by their owner, the tail evenly; tensor: the whole table on its
// owner); the MLP is dense fp32. SGD on the servers: an applied update reads the gradient and
// reads and writes the parameter (12 bytes per element, plus the 8-byte id per row); a BSP step
// reads the W pushes and updates the union of their rows (unique rows of W x b x F lookups).
PsTraffic rec_ps_traffic(const RecModelSpec& m, const StrategySpec& s);

// Per server: the expected unique rows `lookups` lookups touch among the rows it owns under
// row granularity and `partition` (range: expected_unique_rows of its block; hash: rows below
// kExactHeadRows by ps_row_owner, the rest spread evenly, as a hash spreads them in
// expectation).
std::vector<double> touched_rows_per_server(const RecModelSpec& m, double lookups, int servers,
                                            PsPartition partition);

enum class PsTaskKind { kPull, kCompute, kPush, kUpdate, kClock };
const char* ps_task_kind_name(PsTaskKind k);

struct PsTask {
  PsTaskKind kind = PsTaskKind::kCompute;
  int step = 0;
  int worker = -1;         // -1: a BSP update (every worker's)
  int server = -1;         // -1: compute and clock
  double bytes = 0;        // pull, push: on the wire; update: through the server's memory
  std::vector<int> after;  // indices of earlier tasks
};

struct PsGraph {
  int workers = 0, servers = 0, steps = 0;
  PsConsistency consistency = PsConsistency::kBsp;
  int staleness = 0;
  std::vector<PsTask> tasks;  // in an order where every dependency comes first
  // Task indices; -1 where no task exists (a server the workers exchange nothing with).
  int pull(int w, int t, int s) const { return pull_[index(w, t, s)]; }
  int push(int w, int t, int s) const { return push_[index(w, t, s)]; }
  // BSP: update(s, t) (worker ignored); SSP/ASP: update(s, t, w).
  int update(int w, int t, int s) const;
  int compute(int w, int t) const { return compute_[t * workers + w]; }
  int clock(int w, int t) const { return clock_[t * workers + w]; }
  int all_clocks(int t) const { return all_clocks_.empty() ? -1 : all_clocks_[t]; }

 private:
  friend PsGraph ps_task_graph(const PsTraffic&, const PsSpec&, int);
  std::size_t index(int w, int t, int s) const {
    return (static_cast<std::size_t>(t) * workers + w) * servers + s;
  }
  std::vector<int> pull_, push_, update_, compute_, clock_, all_clocks_;
};

// The graph of `steps` steps (>= 1) for the traffic and the spec's consistency.
PsGraph ps_task_graph(const PsTraffic& traffic, const PsSpec& spec, int steps);

}  // namespace strata::strategies
