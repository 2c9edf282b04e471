// Parameter-server training: the "ps" block, the bytes per worker step and server, and the task
// graph (ps.hpp).
#include "strategies/ps.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/error.hpp"
#include "strategies/accounting.hpp"
#include "strategies/federated.hpp"

namespace strata::strategies {

namespace {

const std::vector<std::string> kPlacements = {"separate", "colocated"};
const std::vector<std::string> kConsistencies = {"bsp", "ssp", "asp"};
const std::vector<std::string> kPartitions = {"range", "hash"};
const std::vector<std::string> kGranularities = {"tensor", "row"};
const std::vector<std::string> kTaskKinds = {"pull", "compute", "push", "update", "clock"};

std::string str(long long v) { return std::to_string(v); }

// Rows of a `rows`-row tensor on `server`, row granularity: exact for a range; a hash is
// counted row by row up to kExactHeadRows rows and taken as its expectation rows / S beyond.
double rows_on_server(std::int64_t rows, int server, int servers, PsPartition p) {
  if (p == PsPartition::kRange || rows <= kExactHeadRows) {
    return static_cast<double>(ps_rows_owned(rows, server, servers, p));
  }
  return static_cast<double>(rows) / servers;
}

// Per server, the elements of the dense tensors it holds (tensor granularity: whole tensors by
// ps_tensor_owners; row granularity: its rows of every tensor). Sparse tensors are skipped.
std::vector<double> dense_elements(const std::vector<PsTensor>& tensors, const PsSpec& ps) {
  std::vector<double> out(ps.servers, 0.0);
  if (ps.granularity == PsGranularity::kTensor) {
    std::vector<std::int64_t> elements;
    std::vector<std::string> names;
    for (const PsTensor& t : tensors) {
      elements.push_back(t.elements());
      names.push_back(t.name);
    }
    const std::vector<int> owner = ps_tensor_owners(elements, names, ps.servers, ps.partition);
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      if (!tensors[i].sparse) out[owner[i]] += static_cast<double>(tensors[i].elements());
    }
    return out;
  }
  for (const PsTensor& t : tensors) {
    if (t.sparse) continue;
    for (int s = 0; s < ps.servers; ++s) {
      out[s] +=
          rows_on_server(t.rows, s, ps.servers, ps.partition) * static_cast<double>(t.row_elements);
    }
  }
  return out;
}

PsTraffic empty_traffic(const StrategySpec& s) {
  PsTraffic t;
  t.workers = s.dp;
  t.servers = s.ps->servers;
  t.samples_per_step = s.global_batch_size;
  for (auto* v :
       {&t.pull_bytes, &t.push_bytes, &t.push_update_bytes, &t.step_update_bytes, &t.params}) {
    v->assign(t.servers, 0.0);
  }
  return t;
}

}  // namespace

const char* ps_placement_name(PsPlacement p) { return kPlacements[static_cast<int>(p)].c_str(); }
const char* ps_task_kind_name(PsTaskKind k) { return kTaskKinds[static_cast<int>(k)].c_str(); }

PsSpec parse_ps(json::ObjectReader r) {
  r.finish({"servers", "placement", "partition", "granularity", "consistency", "staleness",
            "server_memory_bandwidth_GBps", "compute_jitter"});
  PsSpec p;
  p.servers = detail::read_int_in(
      r, "servers", 1, 65536,
      "must be from 1 to 65536 (the parameter servers the parameters are partitioned over)");
  p.placement = static_cast<PsPlacement>(detail::read_choice(r, "placement", kPlacements, 0));
  p.partition = static_cast<PsPartition>(detail::read_choice(r, "partition", kPartitions, 0));
  p.granularity =
      static_cast<PsGranularity>(detail::read_choice(r, "granularity", kGranularities, 1));
  p.consistency =
      static_cast<PsConsistency>(detail::read_choice(r, "consistency", kConsistencies, 0));
  if (r.has("staleness")) {
    p.staleness = detail::read_int_in(r, "staleness", 0, 1000000,
                                      "must be from 0 to 1000000 (SSP's bound: no worker runs "
                                      "more than this many steps ahead of the slowest)");
    if (p.consistency != PsConsistency::kSsp) {
      json::fail(r.field("staleness"), p.staleness,
                 std::string("is only for \"consistency\": \"ssp\" (consistency is \"") +
                     ps_consistency_name(p.consistency) + "\")");
    }
  } else if (p.consistency == PsConsistency::kSsp) {
    json::fail(r.field("staleness"), nullptr,
               "is required with \"consistency\": \"ssp\" (its staleness bound s >= 0)");
  }
  const double gbps =
      r.get_number_or("server_memory_bandwidth_GBps", kDefaultServerMemoryBandwidthBps / 1e9);
  if (!(gbps > 0 && gbps <= 1e6)) {
    json::fail(r.field("server_memory_bandwidth_GBps"), r.get_raw("server_memory_bandwidth_GBps"),
               "must be a bandwidth in GB/s, > 0 and at most 1e6");
  }
  p.server_memory_bandwidth_Bps = gbps * 1e9;
  p.compute_jitter = r.get_number_or("compute_jitter", 0);
  if (!(p.compute_jitter >= 0 && p.compute_jitter < 1)) {
    json::fail(r.field("compute_jitter"), r.get_raw("compute_jitter"),
               "must be in [0, 1): a step's compute is scaled by 1 + j u, u in [-1, 1]");
  }
  return p;
}

json::Json ps_to_json(const PsSpec& p) {
  json::Json j = {{"servers", p.servers},
                  {"placement", ps_placement_name(p.placement)},
                  {"partition", ps_partition_name(p.partition)},
                  {"granularity", ps_granularity_name(p.granularity)},
                  {"consistency", ps_consistency_name(p.consistency)},
                  {"server_memory_bandwidth_GBps", p.server_memory_bandwidth_Bps / 1e9},
                  {"compute_jitter", p.compute_jitter}};
  if (p.consistency == PsConsistency::kSsp) j["staleness"] = p.staleness;
  return j;
}

void check_ps_strategy(const StrategySpec& s) {
  if (!s.ps) return;
  const std::string rule =
      "strategy.ps: the workers are plain data-parallel replicas (dp = workers); ";
  for (const auto& [name, value] :
       {std::pair<const char*, int>{"tp", s.tp}, {"pp", s.pp}, {"cp", s.cp}}) {
    if (value > 1) {
      json::fail(
          std::string("strategy.") + name, value,
          rule + name + " must be 1 with a parameter server (servers: " + str(s.ps->servers) + ")");
    }
  }
  if (s.zero_stage > 0) {
    json::fail("strategy.zero_stage", s.zero_stage,
               rule + "zero_stage must be 0 (the servers hold the optimizer state)");
  }
  if (s.federated) {
    json::fail("strategy.federated", federated_to_json(*s.federated),
               "strategy.ps and strategy.federated: a strategy is one or the other");
  }
}

std::vector<PsTensor> gpt_ps_tensors(const ModelSpec& m) {
  STRATA_CHECK(!m.is_moe(), "gpt_ps_tensors: a dense model");
  const std::int64_t h = m.hidden_size, v = m.vocab_size;
  std::vector<PsTensor> out = {{"embedding", v, h, false}};
  if (m.learned_position_embeddings) out.push_back({"position_embedding", m.seq_length, h, false});
  const BlockParams b = layer_block_params(m, 1);
  const auto whole = [](double e) { return static_cast<std::int64_t>(std::llround(e)); };
  for (int l = 0; l < m.num_hidden_layers; ++l) {
    const std::string p = "layers." + str(l) + ".";
    for (const auto& [name, elements] : {std::pair<const char*, double>{"attn_qkv", b.attn_qkv},
                                         {"attn_out", b.attn_out},
                                         {"mlp_fc1", b.mlp_fc1},
                                         {"mlp_fc2", b.mlp_fc2},
                                         {"norm1", b.norm},
                                         {"norm2", b.norm}}) {
      out.push_back({p + name, whole(elements), 1, false});
    }
  }
  const double head = m.tie_word_embeddings ? 0.0 : static_cast<double>(v * h);
  out.push_back({"final_norm", whole(output_params_per_rank(m, 1, 1) - head), 1, false});
  if (!m.tie_word_embeddings) out.push_back({"lm_head", v, h, false});
  return out;
}

PsTraffic gpt_ps_traffic(const ModelSpec& m, const StrategySpec& s) {
  STRATA_CHECK(s.ps.has_value(), "gpt_ps_traffic: a ps strategy");
  if (m.is_moe()) {
    json::fail("strategy.ps", ps_to_json(*s.ps),
               "model '" + m.name + "' is a mixture of experts (" + str(m.moe.num_experts) +
                   " experts): parameter servers are modelled for dense GPT-family models and "
                   "the recommendation model");
  }
  PsTraffic t = empty_traffic(s);
  const double p = precision_bytes(s.precision);
  const double g = grad_bytes(s.precision, s.main_grads_fp32);
  const double adamw = 2 * (p + g + 8);  // param, grad, m, v: read and written
  t.params = dense_elements(gpt_ps_tensors(m), *s.ps);
  for (int k = 0; k < t.servers; ++k) {
    const double e = t.params[k];
    t.pull_bytes[k] = e * p;
    t.push_bytes[k] = e * g;
    t.push_update_bytes[k] = e * adamw;
    t.step_update_bytes[k] = t.workers * e * g + e * adamw;
  }
  return t;
}

std::vector<double> touched_rows_per_server(const RecModelSpec& m, double lookups, int servers,
                                            PsPartition partition) {
  std::vector<double> out(servers, 0.0);
  const std::int64_t rows = m.embedding_rows;
  if (partition == PsPartition::kRange) {
    std::int64_t first = 0;
    for (int s = 0; s < servers; ++s) {
      const std::int64_t n = ps_rows_owned(rows, s, servers, partition);
      out[s] = expected_unique_rows(m, lookups, first, first + n);
      first += n;
    }
    return out;
  }
  const std::int64_t head = std::min(rows, kExactHeadRows);
  const std::vector<double> p = row_touch_probabilities(m, lookups, head);
  for (std::int64_t r = 0; r < head; ++r) out[ps_row_owner(r, rows, servers, partition)] += p[r];
  const double tail = expected_unique_rows(m, lookups, head, rows) / servers;
  for (double& v : out) v += tail;
  return out;
}

PsTraffic rec_ps_traffic(const RecModelSpec& m, const StrategySpec& s) {
  STRATA_CHECK(s.ps.has_value(), "rec_ps_traffic: a ps strategy");
  const PsSpec& ps = *s.ps;
  PsTraffic t = empty_traffic(s);
  const double batch = static_cast<double>(s.global_batch_size) / s.dp;
  const double lookups = batch * m.sparse_features;
  const std::vector<PsTensor> tensors = rec_model_tensors(m);
  std::vector<double> rows, union_rows;  // per server: one worker's, all W workers'
  if (ps.granularity == PsGranularity::kRow) {
    rows = touched_rows_per_server(m, lookups, ps.servers, ps.partition);
    union_rows = touched_rows_per_server(m, lookups * s.dp, ps.servers, ps.partition);
  } else {
    std::vector<std::int64_t> elements;
    std::vector<std::string> names;
    for (const PsTensor& x : tensors) {
      elements.push_back(x.elements());
      names.push_back(x.name);
    }
    const int owner = ps_tensor_owners(elements, names, ps.servers, ps.partition).front();
    rows.assign(ps.servers, 0.0);
    union_rows.assign(ps.servers, 0.0);
    rows[owner] = expected_unique_rows(m, lookups);
    union_rows[owner] = expected_unique_rows(m, lookups * s.dp);
  }
  const std::vector<double> dense = dense_elements(tensors, ps);
  const double d = m.embedding_dim;
  const double row_wire = d * 4 + 8;  // fp32 row + int64 id
  for (int k = 0; k < t.servers; ++k) {
    t.pull_bytes[k] = rows[k] * row_wire + dense[k] * 4;
    t.push_bytes[k] = t.pull_bytes[k];
    t.push_update_bytes[k] = rows[k] * (d * 12 + 8) + dense[k] * 12;
    t.step_update_bytes[k] = t.workers * t.push_bytes[k] + union_rows[k] * d * 8 + dense[k] * 8;
    // Row granularity: the server's block of the table; tensor: the whole table on its owner.
    const double table_rows =
        ps.granularity == PsGranularity::kRow
            ? rows_on_server(m.embedding_rows, k, ps.servers, ps.partition)
            : (union_rows[k] > 0 ? static_cast<double>(m.embedding_rows) : 0.0);
    t.params[k] = table_rows * d + dense[k];
  }
  t.touched_rows = rows;
  return t;
}

int PsGraph::update(int w, int t, int s) const {
  if (consistency == PsConsistency::kBsp) {
    return update_[static_cast<std::size_t>(t) * servers + s];
  }
  return update_[index(w, t, s)];
}

PsGraph ps_task_graph(const PsTraffic& traffic, const PsSpec& spec, int steps) {
  STRATA_CHECK(steps >= 1 && traffic.workers >= 1 && traffic.servers == spec.servers,
               "ps_task_graph: steps >= 1 and the traffic of the spec's servers");
  const int W = traffic.workers, S = traffic.servers;
  const bool bsp = spec.consistency == PsConsistency::kBsp;
  const bool ssp = spec.consistency == PsConsistency::kSsp;
  PsGraph g;
  g.workers = W;
  g.servers = S;
  g.steps = steps;
  g.consistency = spec.consistency;
  g.staleness = spec.staleness;
  const std::size_t cells = static_cast<std::size_t>(steps) * W * S;
  g.pull_.assign(cells, -1);
  g.push_.assign(cells, -1);
  g.update_.assign(bsp ? static_cast<std::size_t>(steps) * S : cells, -1);
  g.compute_.assign(static_cast<std::size_t>(steps) * W, -1);
  g.clock_.assign(static_cast<std::size_t>(steps) * W, -1);
  if (ssp) g.all_clocks_.assign(steps, -1);
  std::vector<int> used;  // servers with bytes to exchange
  for (int s = 0; s < S; ++s) {
    if (traffic.pull_bytes[s] > 0 || traffic.push_bytes[s] > 0) used.push_back(s);
  }
  const auto add = [&](PsTaskKind kind, int t, int w, int s, double bytes, std::vector<int> after) {
    g.tasks.push_back({kind, t, w, s, bytes, std::move(after)});
    return static_cast<int>(g.tasks.size()) - 1;
  };
  for (int t = 0; t < steps; ++t) {
    // Pulls, compute and pushes of every worker.
    for (int w = 0; w < W; ++w) {
      std::vector<int> pulls;
      for (int s : used) {
        std::vector<int> after;
        if (t > 0) {
          after.push_back(g.push(w, t - 1, s));
          if (bsp) after.push_back(g.update(w, t - 1, s));
        }
        const int lag = t - spec.staleness - 1;  // SSP: min_w' c_w' >= t - s
        if (ssp && lag >= 0) after.push_back(g.all_clocks(lag));
        const int id = add(PsTaskKind::kPull, t, w, s, traffic.pull_bytes[s], std::move(after));
        g.pull_[g.index(w, t, s)] = id;
        pulls.push_back(id);
      }
      if (t > 0) pulls.push_back(g.compute(w, t - 1));
      const int c = add(PsTaskKind::kCompute, t, w, -1, 0, std::move(pulls));
      g.compute_[static_cast<std::size_t>(t) * W + w] = c;
      for (int s : used) {
        g.push_[g.index(w, t, s)] = add(PsTaskKind::kPush, t, w, s, traffic.push_bytes[s], {c});
      }
    }
    // Updates, then the clocks.
    for (int s : used) {
      if (bsp) {
        std::vector<int> after;
        for (int w = 0; w < W; ++w) after.push_back(g.push(w, t, s));
        if (t > 0) after.push_back(g.update(0, t - 1, s));
        g.update_[static_cast<std::size_t>(t) * S + s] =
            add(PsTaskKind::kUpdate, t, -1, s, traffic.step_update_bytes[s], std::move(after));
      } else {
        for (int w = 0; w < W; ++w) {
          g.update_[g.index(w, t, s)] =
              add(PsTaskKind::kUpdate, t, w, s, traffic.push_update_bytes[s], {g.push(w, t, s)});
        }
      }
    }
    for (int w = 0; w < W; ++w) {
      std::vector<int> after;
      for (int s : used) after.push_back(g.update(w, t, s));
      if (used.empty()) after.push_back(g.compute(w, t));
      if (t > 0) after.push_back(g.clock(w, t - 1));
      g.clock_[static_cast<std::size_t>(t) * W + w] =
          add(PsTaskKind::kClock, t, w, -1, 0, std::move(after));
    }
    if (ssp) {
      std::vector<int> every;
      for (int w = 0; w < W; ++w) every.push_back(g.clock(w, t));
      g.all_clocks_[t] = add(PsTaskKind::kClock, t, -1, -1, 0, std::move(every));
    }
  }
  return g;
}

}  // namespace strata::strategies
