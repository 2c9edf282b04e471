// Parameter servers and workers over a Comm (ps.hpp): the placement, the server's event loop,
// the worker's step, and the gathering of every rank's counts at the end.
// defines: check_ps_options, PsPlacement::row_owner, ps_placement,
//          PsRunResult::max_staleness, (internal) Server, send_to_servers, run_worker,
//          gather_result; run_ps
#include "executor/ps.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <unordered_map>

#include "common/error.hpp"
#include "executor/detail/ps_wire.hpp"

namespace strata::exec {

using strategies::PsGranularity;
using strategies::PsPartition;

void check_ps_options(const PsRunOptions& o, int world_size) {
  if (o.servers < 1) {
    throw ConfigError("servers = " + std::to_string(o.servers) + ": at least one server is needed");
  }
  if (o.servers >= world_size) {
    throw ConfigError("servers = " + std::to_string(o.servers) + " in a world of " +
                      std::to_string(world_size) +
                      " ranks: no rank is left for a worker (run "
                      "with more ranks or fewer servers)");
  }
  if (o.staleness < 0) {
    throw ConfigError("staleness = " + std::to_string(o.staleness) + ": must not be negative");
  }
  if (o.staleness != 0 && o.consistency != PsConsistency::kSsp) {
    throw ConfigError("staleness = " + std::to_string(o.staleness) + " with consistency " +
                      ps_consistency_name(o.consistency) + ": only ssp takes a staleness bound");
  }
  check_rec_sgd(o.sgd);
}

int PsPlacement::row_owner(std::int64_t row) const {
  if (table_server >= 0) return table_server;
  return strategies::ps_row_owner(row, rows, servers, partition);
}

PsPlacement ps_placement(const RecModelDims& dims, int servers, PsPartition partition,
                         PsGranularity granularity) {
  check_rec_dims(dims);
  STRATA_CHECK(servers >= 1, "ps_placement needs a server");
  const RecLayout layout = rec_layout(dims);
  PsPlacement p;
  p.servers = servers;
  p.rows = dims.rows;
  p.partition = partition;
  p.dense_elements.resize(static_cast<std::size_t>(servers));
  if (granularity == PsGranularity::kTensor) {
    std::vector<std::int64_t> elements{dims.rows * dims.dim};
    std::vector<std::string> names{"embedding"};
    for (const RecTensor& t : layout.dense) {
      elements.push_back(t.elements());
      names.push_back(t.name);
    }
    const std::vector<int> owner =
        strategies::ps_tensor_owners(elements, names, servers, partition);
    p.table_server = owner[0];
    for (std::size_t i = 0; i < layout.dense.size(); ++i) {
      const RecTensor& t = layout.dense[i];
      auto& mine = p.dense_elements[static_cast<std::size_t>(owner[i + 1])];
      for (std::int64_t e = 0; e < t.elements(); ++e) mine.push_back(t.offset + e);
    }
    return p;
  }
  for (const RecTensor& t : layout.dense) {  // row r of t: elements r cols .. r cols + cols - 1
    for (std::int64_t r = 0; r < t.rows; ++r) {
      const int s = strategies::ps_row_owner(r, t.rows, servers, partition);
      auto& mine = p.dense_elements[static_cast<std::size_t>(s)];
      for (std::int64_t c = 0; c < t.cols; ++c) mine.push_back(t.offset + r * t.cols + c);
    }
  }
  return p;
}

int PsRunResult::max_staleness() const {
  int m = 0;
  for (const PsWorkerStats& w : workers) m = std::max(m, w.max_staleness);
  return m;
}

namespace {

using detail::PsKind;
using detail::PsMessage;
using detail::PsRequest;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One server: its rows (made at first use from rec_init_rows, so any server can hold any row),
// its dense elements, the workers' clocks, the pulls waiting for them, and BSP's pushes of the
// current step.
class Server {
 public:
  Server(Comm& comm, const RecModelDims& dims, const PsRunOptions& o, const PsPlacement& place,
         int index, int workers)
      : comm_(comm),
        dims_(dims),
        o_(o),
        place_(place),
        index_(index),
        workers_(workers),
        clock_(static_cast<std::size_t>(workers), 0),
        bsp_pending_(static_cast<std::size_t>(workers)) {
    const std::vector<float> init = rec_init_dense(dims, o.sgd.seed);
    for (std::int64_t e : place.dense_elements[static_cast<std::size_t>(index)]) {
      dense_.push_back(init[static_cast<std::size_t>(e)]);
    }
  }

  PsServerStats run() {
    int done = 0;
    std::vector<float> words;
    while (done < workers_) {
      const Probed p = comm_.probe_any_source(detail::kPsRequestTag);
      words.resize(p.n);
      comm_.recv(p.source, detail::kPsRequestTag, words.data(), p.n).wait();
      PsRequest r = detail::parse_request(words, dims_.dim, dense_.size());
      STRATA_CHECK(r.worker == p.source, "a request names another worker than its sender");
      if (r.kind == PsKind::kDone) {
        ++done;
      } else if (r.kind == PsKind::kPull) {
        stats_.received_bytes += r.k * 8;
        deferred_.push_back(std::move(r));
        serve_pulls();
      } else {
        stats_.received_bytes +=
            r.k * (8 + dims_.dim * 4) + static_cast<std::int64_t>(dense_.size()) * 4;
        push(r);
        ++clock_[static_cast<std::size_t>(r.worker)];
        serve_pulls();
      }
    }
    STRATA_CHECK(deferred_.empty(), "a server stopped with pulls unanswered");
    stats_.rows_held = static_cast<std::int64_t>(slot_.size());
    return stats_;
  }

 private:
  float* row(std::int64_t id) {
    const auto [it, made] = slot_.try_emplace(id, static_cast<std::int64_t>(slot_.size()));
    if (made) {
      STRATA_CHECK(place_.row_owner(id) == index_, "a row asked of a server that does not own it");
      table_.resize(table_.size() + static_cast<std::size_t>(dims_.dim));
      rec_init_rows(dims_, o_.sgd.seed, &id, 1, table_.data() + it->second * dims_.dim);
    }
    return table_.data() + it->second * dims_.dim;
  }

  int min_clock() const { return *std::min_element(clock_.begin(), clock_.end()); }

  bool may_serve(int step) const {
    switch (o_.consistency) {
      case PsConsistency::kBsp:
        return min_clock() >= step;
      case PsConsistency::kSsp:
        return min_clock() >= step - o_.staleness;
      case PsConsistency::kAsp:
        return true;
    }
    return true;
  }

  // Answers the waiting pulls the clocks now allow, in arrival order.
  void serve_pulls() {
    for (auto it = deferred_.begin(); it != deferred_.end();) {
      if (!may_serve(it->step)) {
        ++it;
        continue;
      }
      std::vector<float> reply;
      detail::put_int(reply, min_clock());
      for (std::int64_t id : it->ids) {
        const float* r = row(id);
        reply.insert(reply.end(), r, r + dims_.dim);
      }
      reply.insert(reply.end(), dense_.begin(), dense_.end());
      // The worker posted its receive before sending the pull, so this send completes.
      comm_.send(it->worker, detail::kPsReplyTag, reply.data(), reply.size()).wait();
      it = deferred_.erase(it);
    }
  }

  void apply(const std::vector<std::int64_t>& ids, const float* rows, const float* dense,
             int contributions) {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      sgd_apply(row(ids[i]), rows + static_cast<std::int64_t>(i) * dims_.dim, dims_.dim, o_.sgd.lr,
                contributions);
    }
    sgd_apply(dense_.data(), dense, static_cast<std::int64_t>(dense_.size()), o_.sgd.lr,
              contributions);
    ++stats_.updates_applied;
  }

  void push(const PsRequest& r) {
    if (o_.consistency != PsConsistency::kBsp) {
      apply(r.ids, r.row_values, r.dense_values, workers_);
      return;
    }
    // BSP: keep the push until the step's W have arrived, then one update of their sum, summed
    // in worker order (deterministic whatever the arrival order).
    Pending& mine = bsp_pending_[static_cast<std::size_t>(r.worker)];
    STRATA_CHECK(!mine.present, "a second BSP push of one step from one worker");
    mine.present = true;
    mine.ids = r.ids;
    mine.rows.assign(r.row_values, r.row_values + r.k * dims_.dim);
    mine.dense.assign(r.dense_values, r.dense_values + dense_.size());
    if (++bsp_arrived_ < workers_) return;
    std::map<std::int64_t, std::vector<float>> row_sum;
    std::vector<float> dense_sum(dense_.size(), 0.0f);
    for (Pending& p : bsp_pending_) {
      for (std::size_t i = 0; i < p.ids.size(); ++i) {
        auto& sum = row_sum[p.ids[i]];
        sum.resize(static_cast<std::size_t>(dims_.dim), 0.0f);
        for (std::int64_t c = 0; c < dims_.dim; ++c) {
          sum[static_cast<std::size_t>(c)] +=
              p.rows[i * static_cast<std::size_t>(dims_.dim) + static_cast<std::size_t>(c)];
        }
      }
      for (std::size_t e = 0; e < dense_sum.size(); ++e) dense_sum[e] += p.dense[e];
      p = Pending{};
    }
    std::vector<std::int64_t> ids;
    std::vector<float> rows;
    for (const auto& [id, sum] : row_sum) {
      ids.push_back(id);
      rows.insert(rows.end(), sum.begin(), sum.end());
    }
    apply(ids, rows.data(), dense_sum.data(), workers_);
    bsp_arrived_ = 0;
  }

  struct Pending {
    bool present = false;
    std::vector<std::int64_t> ids;
    std::vector<float> rows, dense;
  };

  Comm& comm_;
  const RecModelDims& dims_;
  const PsRunOptions& o_;
  const PsPlacement& place_;
  const int index_, workers_;
  std::unordered_map<std::int64_t, std::int64_t> slot_;  // row id -> its place in table_
  std::vector<float> table_;                             // (rows held, dim)
  std::vector<float> dense_;                             // place_.dense_elements[index_]
  std::vector<int> clock_;                               // pushes received per worker
  std::deque<PsRequest> deferred_;                       // pulls not yet answered
  std::vector<Pending> bsp_pending_;
  int bsp_arrived_ = 0;
  PsServerStats stats_;
};

// Sends message s to server s (world rank workers + s), adding the sends to `pending` (the
// messages must outlive them); returns the payload bytes and rows of them all.
PsMessage send_to_servers(Comm& comm, int workers, const std::vector<PsMessage>& messages,
                          std::vector<Request>& pending) {
  PsMessage total;
  for (std::size_t s = 0; s < messages.size(); ++s) {
    const PsMessage& m = messages[s];
    pending.push_back(comm.send(workers + static_cast<int>(s), detail::kPsRequestTag,
                                m.words.data(), m.words.size()));
    total.payload_bytes += m.payload_bytes;
    total.rows += m.rows;
  }
  return total;
}

// Worker `w`'s steps; returns its losses and fills its stats.
std::vector<float> run_worker(Comm& comm, const RecModelDims& dims, const PsRunOptions& o,
                              const PsPlacement& place, int w, int workers, PsWorkerStats& st) {
  const RecData data(dims, o.sgd.seed);
  const RecLayout layout = rec_layout(dims);
  const std::int64_t dim = dims.dim;
  const double delay_s =
      static_cast<std::size_t>(w) < o.worker_delay_s.size() ? o.worker_delay_s[w] : 0.0;
  std::vector<float> dense(static_cast<std::size_t>(layout.dense_size)), dense_grad(dense.size());
  std::vector<float> losses;
  for (int t = 0; t < o.sgd.steps; ++t) {
    const RecBatch batch = worker_batch(data, o.sgd, workers, w, t);
    const UniqueRows u = unique_rows(batch);
    const auto by = detail::rows_by_server(place, u.rows);

    // Pull: every reply's receive is posted before any request leaves.
    const std::vector<PsMessage> pulls = detail::make_pulls(place, dim, w, t, u.rows);
    std::vector<std::vector<float>> replies(pulls.size());
    std::vector<Request> pending;
    const auto start = std::chrono::steady_clock::now();
    for (int s = 0; s < place.servers; ++s) {
      const auto su = static_cast<std::size_t>(s);
      replies[su].resize(2 + by[su].size() * static_cast<std::size_t>(dim) +
                         place.dense_elements[su].size());
      pending.push_back(
          comm.recv(workers + s, detail::kPsReplyTag, replies[su].data(), replies[su].size()));
    }
    const PsMessage pulled = send_to_servers(comm, workers, pulls, pending);
    st.pulled_bytes += pulled.payload_bytes;
    st.pulled_rows += pulled.rows;
    for (Request& r : pending) r.wait();
    st.wait_s += seconds_since(start);

    std::vector<float> rows(u.rows.size() * static_cast<std::size_t>(dim));
    for (std::size_t s = 0; s < by.size(); ++s) {
      const float* at = replies[s].data();
      st.max_staleness = std::max(st.max_staleness, t - static_cast<int>(detail::get_int(at)));
      at += 2;
      for (std::int32_t i : by[s]) {
        std::copy(at, at + dim, rows.begin() + static_cast<std::int64_t>(i) * dim);
        at += dim;
      }
      for (std::int64_t e : place.dense_elements[s]) dense[static_cast<std::size_t>(e)] = *at++;
    }

    if (delay_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(delay_s));
    std::vector<float> row_grad(rows.size());
    losses.push_back(rec_forward_backward(dims, dense.data(), rows.data(), batch, u,
                                          dense_grad.data(), row_grad.data()));

    const std::vector<PsMessage> pushes =
        detail::make_pushes(place, dim, w, t, u.rows, row_grad.data(), dense_grad.data());
    const auto push_start = std::chrono::steady_clock::now();
    pending.clear();
    const PsMessage pushed = send_to_servers(comm, workers, pushes, pending);
    st.pushed_bytes += pushed.payload_bytes;
    st.pushed_rows += pushed.rows;
    for (Request& r : pending) r.wait();
    st.wait_s += seconds_since(push_start);
  }
  std::vector<Request> sent;
  send_to_servers(comm, workers, detail::make_dones(place, w, o.sgd.steps), sent);
  for (Request& r : sent) r.wait();
  return losses;
}

// Every rank's counts, all-gathered over the world as fixed-size records of int64 words (two
// floats each; wait_s as its double's bits), then this rank's losses.
PsRunResult gather_result(Comm& comm, int workers, int steps, const PsWorkerStats& ws,
                          const PsServerStats& ss, const std::vector<float>& losses) {
  std::vector<float> mine;
  std::int64_t wait_bits = 0;
  std::memcpy(&wait_bits, &ws.wait_s, sizeof wait_bits);
  for (std::int64_t v :
       {ws.pushed_bytes, ws.pulled_bytes, ws.pushed_rows, ws.pulled_rows, wait_bits,
        std::int64_t{ws.max_staleness}, ss.received_bytes, ss.updates_applied, ss.rows_held}) {
    detail::put_int(mine, v);
  }
  const std::size_t ints = mine.size();
  mine.resize(ints + static_cast<std::size_t>(steps), 0.0f);
  std::copy(losses.begin(), losses.end(), mine.begin() + static_cast<std::int64_t>(ints));

  std::vector<int> everyone(static_cast<std::size_t>(comm.size()));
  for (int r = 0; r < comm.size(); ++r) everyone[static_cast<std::size_t>(r)] = r;
  const GroupId world = comm.split(everyone);
  std::vector<float> all(mine.size() * everyone.size());
  comm.all_gather(world, mine.data(), all.data(), mine.size()).wait();

  PsRunResult out;
  out.losses.assign(static_cast<std::size_t>(steps), 0.0f);
  for (int r = 0; r < comm.size(); ++r) {
    const float* rec = all.data() + static_cast<std::size_t>(r) * mine.size();
    auto word = [&](int i) { return detail::get_int(rec + 2 * i); };
    if (r < workers) {
      PsWorkerStats w{word(0), word(1), word(2), word(3), 0.0, static_cast<int>(word(5))};
      const std::int64_t bits = word(4);
      std::memcpy(&w.wait_s, &bits, sizeof bits);
      out.workers.push_back(w);
      out.worker_losses.emplace_back(rec + ints, rec + ints + steps);
      for (int t = 0; t < steps; ++t) out.losses[static_cast<std::size_t>(t)] += rec[ints + t];
    } else {
      out.servers.push_back(PsServerStats{word(6), word(7), word(8)});
    }
  }
  for (float& l : out.losses) l /= static_cast<float>(workers);
  return out;
}

}  // namespace

PsRunResult run_ps(Comm& comm, const RecModelDims& dims, const PsRunOptions& options) {
  check_rec_dims(dims);
  check_ps_options(options, comm.size());
  const int workers = comm.size() - options.servers;
  const PsPlacement place =
      ps_placement(dims, options.servers, options.partition, options.granularity);
  PsWorkerStats ws;
  PsServerStats ss;
  std::vector<float> losses;
  if (comm.rank() < workers) {
    losses = run_worker(comm, dims, options, place, comm.rank(), workers, ws);
  } else {
    ss = Server(comm, dims, options, place, comm.rank() - workers, workers).run();
  }
  return gather_result(comm, workers, options.sgd.steps, ws, ss, losses);
}

}  // namespace strata::exec
