// The resharding traffic of a strategy switch as rectangles; see switch_traffic.hpp.
#include "strategies/switch_traffic.hpp"

#include <algorithm>
#include <unordered_map>

#include "common/error.hpp"
#include "strategies/state_runs.hpp"

namespace strata::strategies {

const char* state_kind_name(StateKind s) {
  switch (s) {
    case StateKind::kParam:
      return "param";
    case StateKind::kMaster:
      return "master";
    case StateKind::kAdamM:
      return "adam_m";
    case StateKind::kAdamV:
      return "adam_v";
  }
  return "?";
}

namespace {

// A run of a shard's local rows that is a run of the unsharded rows: local rows
// [local, local + count) are rows [global, global + count).
struct RowRun {
  std::int64_t local = 0, global = 0, count = 0;
};

// Where shard `index` of a (rows x cols) piece sits: its local rows as runs of global rows, its
// local columns [0, cols) as global columns [col0, col0 + cols).
struct ShardMap {
  std::vector<RowRun> rows;
  std::int64_t col0 = 0, cols = 0;
};

ShardMap shard_map(const ParamInfo& p, int index) {
  const std::int64_t t = p.shard == Shard::kReplicated ? 1 : p.shard_parts;
  const int i = p.shard == Shard::kReplicated ? 0 : index;
  ShardMap m;
  m.cols = p.cols;
  switch (p.shard) {
    case Shard::kReplicated:
      m.rows.push_back({0, 0, p.rows});
      break;
    case Shard::kRows:
      m.rows.push_back({0, i * (p.rows / t), p.rows / t});
      break;
    case Shard::kCols:
      m.rows.push_back({0, 0, p.rows});
      m.cols = p.cols / t;
      m.col0 = i * m.cols;
      break;
    case Shard::kBlockRows: {
      std::int64_t local = 0, start = 0;
      for (std::int64_t block : p.row_blocks) {
        if (block == 0) continue;
        m.rows.push_back({local, start + i * (block / t), block / t});
        local += block / t;
        start += block;
      }
      break;
    }
  }
  return m;
}

// Local rows [r0, r1) x local columns [c0, c1) of a shard, appended as global rectangles.
void add_local(const ShardMap& m, std::int64_t r0, std::int64_t r1, std::int64_t c0,
               std::int64_t c1, std::vector<Rect>* out) {
  if (r0 >= r1 || c0 >= c1) return;
  for (const RowRun& run : m.rows) {
    const std::int64_t lo = std::max(r0, run.local), hi = std::min(r1, run.local + run.count);
    if (lo >= hi) continue;
    out->push_back(
        {run.global + lo - run.local, run.global + hi - run.local, m.col0 + c0, m.col0 + c1});
  }
}

// Elements [begin, begin + count) of the shard's row-major element list as global rectangles:
// a partial first row, the whole rows, a partial last row.
std::vector<Rect> range_rects(const ShardMap& m, std::int64_t begin, std::int64_t count) {
  std::vector<Rect> out;
  if (count <= 0 || m.cols <= 0) return out;
  const std::int64_t end = begin + count;
  std::int64_t row = begin / m.cols;
  const std::int64_t col = begin % m.cols, last_row = end / m.cols, last_col = end % m.cols;
  if (row == last_row) {
    add_local(m, row, row + 1, col, last_col, &out);
    return out;
  }
  if (col > 0) {
    add_local(m, row, row + 1, col, m.cols, &out);
    ++row;
  }
  add_local(m, row, last_row, 0, m.cols, &out);
  add_local(m, last_row, last_row + 1, 0, last_col, &out);
  return out;
}

// A parameter as the state names it: the tensor, or one expert of an expert tensor (the
// executor's param_pieces, executor/params.hpp): `first` is its first element in the rank's
// part of the parameter.
struct Piece {
  std::string name;
  std::int64_t first = 0;
  ParamInfo info;
};

std::vector<Piece> pieces(const Plan& plan, const Program& prog, int rank, const ParamInfo& p) {
  const bool fc1 = p.kind == TensorKind::kExpertFc1Weight;
  if (!fc1 && p.kind != TensorKind::kExpertFc2Weight) return {{p.init_name(), 0, p}};
  std::int64_t experts = 0;
  for (const ParamInfo& q : prog.params) {
    if (q.kind == TensorKind::kRouterWeight && q.layer == p.layer) experts = q.rows;
  }
  const GroupRef ep{GroupKind::kEp, p.shard_group.layout, 0};
  const auto ep_size = static_cast<std::int64_t>(plan.group_ranks(rank, ep).size());
  STRATA_CHECK(experts > 0 && experts % ep_size == 0 && p.rows % (experts / ep_size) == 0,
               "layer " + std::to_string(p.layer) + ": experts not split evenly over ep");
  const std::int64_t local = experts / ep_size;
  const std::int64_t first = plan.group_index(rank, ep) * local;
  std::vector<Piece> out;
  for (std::int64_t j = 0; j < local; ++j) {
    Piece piece{"layers." + std::to_string(p.layer) + ".experts." + std::to_string(first + j) +
                    (fc1 ? ".fc1.w" : ".fc2.w"),
                0, p};
    piece.info.rows = p.rows / local;
    piece.info.elements = p.elements / local;
    piece.first = j * piece.info.elements;
    out.push_back(std::move(piece));
  }
  return out;
}

// q minus its intersection `i` with another rectangle: up to four rectangles.
void subtract(const Rect& q, const Rect& i, std::vector<Rect>* out) {
  const Rect parts[] = {{q.r0, i.r0, q.c0, q.c1},
                        {i.r1, q.r1, q.c0, q.c1},
                        {i.r0, i.r1, q.c0, i.c0},
                        {i.r0, i.r1, i.c1, q.c1}};
  for (const Rect& r : parts) {
    if (!r.empty()) out->push_back(r);
  }
}

Rect intersection(const Rect& a, const Rect& b) {
  return {std::max(a.r0, b.r0), std::min(a.r1, b.r1), std::max(a.c0, b.c0), std::min(a.c1, b.c1)};
}

// Takes from `need` what `have` holds; returns the number of elements taken.
std::int64_t take(const Rect* have, std::size_t n_have, std::vector<Rect>* need) {
  std::int64_t taken = 0;
  std::vector<Rect> rest;
  for (std::size_t k = 0; k < n_have && !need->empty(); ++k) {
    rest.clear();
    for (const Rect& q : *need) {
      const Rect i = intersection(q, have[k]);
      if (i.empty()) {
        rest.push_back(q);
        continue;
      }
      taken += i.elements();
      subtract(q, i, &rest);
    }
    need->swap(rest);
  }
  return taken;
}

// Plan A's holdings by piece and state: for each, its holders in increasing rank order, each
// with its rectangles in one shared array.
class HolderIndex {
 public:
  struct Holder {
    int rank = 0;
    std::uint32_t first = 0, count = 0;  // rects_[first, first + count)
  };
  struct Tensor {
    std::int64_t rows = 0, cols = 0;
    std::vector<Holder> holders[kNumStateKinds];
  };

  explicit HolderIndex(const Plan& a) {
    for (int rank = 0; rank < a.world_size; ++rank) {
      for (const StateHolding& h : state_holdings(a, rank)) {
        auto [it, added] = ids_.try_emplace(h.tensor, tensors_.size());
        if (added) tensors_.push_back({h.rows, h.cols, {}});
        Tensor& t = tensors_[it->second];
        t.holders[static_cast<int>(h.state)].push_back(
            {rank, static_cast<std::uint32_t>(rects_.size()),
             static_cast<std::uint32_t>(h.rects.size())});
        rects_.insert(rects_.end(), h.rects.begin(), h.rects.end());
      }
    }
  }
  const Tensor* find(const std::string& name) const {
    const auto it = ids_.find(name);
    return it == ids_.end() ? nullptr : &tensors_[it->second];
  }
  const Rect* rects(const Holder& h) const { return rects_.data() + h.first; }

 private:
  std::unordered_map<std::string, std::size_t> ids_;
  std::vector<Tensor> tensors_;
  std::vector<Rect> rects_;
};

}  // namespace

static_assert(static_cast<int>(StateKind::kAdamV) == 3 && kNumStateKinds == 4,
              "StateKind follows kStateNames (state_runs.hpp)");

std::vector<StateHolding> state_holdings(const Plan& plan, int rank) {
  const Program& prog = plan.program_of(rank);
  std::vector<StateHolding> out;
  // The whole bucket, or (ZeRO) the rank's part of it over the bucket's dp group.
  const auto dp_of = [&](const BucketInfo& b) {
    return std::pair<int, int>(static_cast<int>(plan.group_ranks(rank, b.dp_group).size()),
                               plan.group_index(rank, b.dp_group));
  };
  const auto pieces_of = [&](const ParamInfo& p) { return pieces(plan, prog, rank, p); };
  for_each_state_run(prog, dp_of, pieces_of, [&](const StateRun& run, const Piece& piece) {
    const ParamInfo& p = prog.params[run.param];
    StateHolding h;
    h.tensor = piece.name;
    h.state = static_cast<StateKind>(run.state);
    h.rows = piece.info.rows;
    h.cols = piece.info.cols;
    h.dtype = prog.buffers[run.buffer].dtype;
    h.rects = range_rects(shard_map(piece.info, plan.group_index(rank, p.shard_group)),
                          run.piece_offset, run.count);
    out.push_back(std::move(h));
  });
  return out;
}

std::vector<std::vector<double>> SwitchTraffic::matrix() const {
  std::vector<std::vector<double>> m(static_cast<std::size_t>(world_size),
                                     std::vector<double>(static_cast<std::size_t>(world_size)));
  for (const ByteEntry& e : entries) m[e.src][e.dst] = e.bytes;
  return m;
}

SwitchTraffic switch_traffic(const Plan& a, const Plan& b) {
  const std::string names = "strategy '" + a.strategy.name + "' -> '" + b.strategy.name + "'";
  if (a.world_size != b.world_size) {
    throw ConfigError(names + ": the worlds differ (" + std::to_string(a.world_size) + " and " +
                      std::to_string(b.world_size) + " ranks); a switch keeps the world");
  }
  const int world = a.world_size;
  const HolderIndex index(a);
  std::vector<double> bytes(static_cast<std::size_t>(world) * world, 0.0);
  std::vector<Rect> need;
  for (int r = 0; r < world; ++r) {
    for (const StateHolding& h : state_holdings(b, r)) {
      const HolderIndex::Tensor* t = index.find(h.tensor);
      if (t == nullptr || t->rows != h.rows || t->cols != h.cols) {
        throw ConfigError(names + ": tensor " + h.tensor + " (" + std::to_string(h.rows) + " x " +
                          std::to_string(h.cols) + ") " +
                          (t ? "has another shape in the first" : "is absent from the first") +
                          " (phases must train the same model)");
      }
      int state = static_cast<int>(h.state);
      // fp32 parameters without master weights are their own master.
      if (h.state == StateKind::kMaster && t->holders[state].empty()) state = 0;
      const std::vector<HolderIndex::Holder>& holders = t->holders[state];
      STRATA_CHECK(!holders.empty(), names + ": no holder of " + h.tensor + " " +
                                         state_kind_name(static_cast<StateKind>(state)));
      // The holders in increasing (h - r) mod world: from the first at or after r, wrapping.
      const std::size_t n = holders.size();
      const std::size_t start = static_cast<std::size_t>(
          std::lower_bound(holders.begin(), holders.end(), r,
                           [](const HolderIndex::Holder& x, int rank) { return x.rank < rank; }) -
          holders.begin());
      need = h.rects;
      const double size = dtype_bytes(h.dtype);
      for (std::size_t k = 0; k < n && !need.empty(); ++k) {
        const HolderIndex::Holder& from = holders[(start + k) % n];
        const std::int64_t got = take(index.rects(from), from.count, &need);
        if (from.rank != r) bytes[static_cast<std::size_t>(from.rank) * world + r] += got * size;
      }
      STRATA_CHECK(need.empty(), names + ": part of " + h.tensor + " is held by no rank");
    }
  }
  SwitchTraffic out;
  out.world_size = world;
  out.send_bytes.assign(static_cast<std::size_t>(world), 0.0);
  out.recv_bytes.assign(static_cast<std::size_t>(world), 0.0);
  for (int s = 0; s < world; ++s) {
    for (int d = 0; d < world; ++d) {
      const double x = bytes[static_cast<std::size_t>(s) * world + d];
      if (x <= 0) continue;
      out.entries.push_back({s, d, x});
      out.send_bytes[s] += x;
      out.recv_bytes[d] += x;
      out.total_bytes += x;
    }
  }
  for (int k = 0; k < world; ++k) {
    if (out.send_bytes[k] > out.send_bytes[out.max_send_rank]) out.max_send_rank = k;
    if (out.recv_bytes[k] > out.recv_bytes[out.max_recv_rank]) out.max_recv_rank = k;
  }
  return out;
}

}  // namespace strata::strategies
