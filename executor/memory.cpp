// The tracking allocator of the Plan's buffers and their placement (memory.hpp).
#include "executor/memory.hpp"

#include <algorithm>
#include <map>
#include <string>

#include "common/error.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define STRATA_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define STRATA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define STRATA_POISON(p, n) ((void)(p), (void)(n))
#define STRATA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace strata::exec {

using strategies::Role;

namespace {

std::size_t round_up(std::size_t n, std::size_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

std::size_t size_of(const strategies::Buffer& b) {
  return static_cast<std::size_t>(std::max(1.0, b.bytes()));
}

}  // namespace

strategies::Program with_moe_row_bounds(const strategies::Program& program) {
  using strategies::OpKind;
  using strategies::TensorKind;
  strategies::Program p = program;
  // Per MoE layer: the most rows an expert-parallel rank can receive, from its permutation
  // (dims {R, C, E, k, S, capacity}) and its received counts' shape (ep, E/ep).
  std::map<int, std::int64_t> received, dispatched, expert_tp;
  for (const strategies::Buffer& b : p.buffers) {
    if (b.kind == TensorKind::kMoeRecvCounts && b.ndim == 3) expert_tp[b.layer] = b.shape[0];
  }
  for (const strategies::Op& op : p.ops) {
    if (op.kind != OpKind::kMoePermute) continue;
    const std::int32_t counts_in = p.output(op, 2);
    const int layer = p.buffers[counts_in].layer;
    std::int64_t ep = 0, local = 0;
    for (const strategies::Buffer& b : p.buffers) {
      if (b.kind == TensorKind::kMoeRecvCounts && b.layer == layer && b.ndim == 2) {
        ep = b.shape[0];
        local = b.shape[1];
      }
    }
    if (ep == 0) {  // no expert parallelism: no all-to-all, the rank holds every expert
      ep = 1;
      local = op.dims[2];
    }
    const std::int64_t rows = op.dims[0], k = op.dims[3], capacity = op.dims[5];
    std::int64_t per_source = rows * std::min(k, local);
    if (capacity > 0) per_source = std::min(per_source, local * capacity);
    received[layer] = ep * per_source;
    // The rank's own dispatched rows: exact when dropless (R k); with a capacity the Plan
    // expects the routing's kept rows, the most any routing keeps is min(R k, E capacity).
    dispatched[layer] = capacity > 0 ? std::min(rows * k, op.dims[2] * capacity) : op.dims[4];
  }
  if (received.empty()) return p;
  auto routed = [](TensorKind k) {
    return k == TensorKind::kMoeReceived || k == TensorKind::kMoeExpertIn ||
           k == TensorKind::kMoeFc1Out || k == TensorKind::kMoeAct ||
           k == TensorKind::kMoeExpertOut || k == TensorKind::kMoeReturned;
  };
  std::vector<bool> resized(p.buffers.size(), false);
  for (std::size_t id = 0; id < p.buffers.size(); ++id) {
    strategies::Buffer& b = p.buffers[id];
    if (b.is_view() || received.count(b.layer) == 0) continue;
    if (routed(b.kind)) {
      // The received rows gathered over the experts' tp group (expert_tp > 1): tp blocks.
      const bool gathered = b.kind != TensorKind::kMoeReceived &&
                            b.kind != TensorKind::kMoeReturned && expert_tp.count(b.layer) > 0;
      b.shape[0] = received[b.layer] * (gathered ? expert_tp[b.layer] : 1);
      resized[id] = true;
    } else if (b.kind == TensorKind::kMoePermuted || b.kind == TensorKind::kMoeCombined) {
      b.shape[0] = dispatched[b.layer];
    }
  }
  for (strategies::Op& op : p.ops) {
    // The permutation's rows (dims[4] of kMoePermute(Bwd), dims[3] of kMoeUnpermute(Bwd)).
    if (op.kind == OpKind::kMoePermute || op.kind == OpKind::kMoePermuteBwd) {
      op.dims[4] = dispatched[p.buffers[p.input(op, 1)].layer];
    } else if (op.kind == OpKind::kMoeUnpermute || op.kind == OpKind::kMoeUnpermuteBwd) {
      op.dims[3] = dispatched[p.buffers[p.input(op, op.kind == OpKind::kMoeUnpermute ? 1 : 2)]
                                 .layer];
    }
    const bool grouped = op.kind == OpKind::kGroupedLinear ||
                         op.kind == OpKind::kGroupedLinearBwdData ||
                         op.kind == OpKind::kGroupedLinearBwdWeight;
    const bool activation = op.kind == OpKind::kGelu || op.kind == OpKind::kGeluBwd ||
                            op.kind == OpKind::kSwiglu || op.kind == OpKind::kSwigluBwd;
    if (!grouped && !activation) continue;
    const std::int32_t x = p.input(op, 0);
    if (resized[x]) op.dims[0] = p.buffers[x].shape[0];
  }
  return p;
}

Placement place_buffers(const strategies::Program& program) {
  Placement out;
  const std::size_t n = program.buffers.size();
  out.offset.assign(n, -1);
  out.in_static.assign(n, false);
  std::vector<std::int32_t> transient;
  for (std::size_t id = 0; id < n; ++id) {
    const strategies::Buffer& b = program.buffers[id];
    if (b.is_view()) continue;
    if (b.persistent) {
      out.offset[id] = static_cast<std::int64_t>(out.static_bytes);
      out.in_static[id] = true;
      out.static_bytes += round_up(size_of(b), Placement::kAlignment);
    } else if (b.first_task < program.tasks.size()) {
      transient.push_back(static_cast<std::int32_t>(id));
    }
  }
  // Largest first (then earliest), each at the lowest offset that no buffer placed before it
  // and alive at some common task occupies: the greedy order of static memory planners, which
  // on these programs (a few sizes repeated per layer and micro-batch) stays close to the peak.
  std::stable_sort(transient.begin(), transient.end(), [&](std::int32_t a, std::int32_t b) {
    const std::size_t sa = size_of(program.buffers[a]), sb = size_of(program.buffers[b]);
    if (sa != sb) return sa > sb;
    return program.buffers[a].first_task < program.buffers[b].first_task;
  });
  struct Placed {
    std::uint32_t first, last;
    std::size_t begin, end;
  };
  std::vector<Placed> placed;
  std::vector<std::pair<std::size_t, std::size_t>> busy;
  for (const std::int32_t id : transient) {
    const strategies::Buffer& b = program.buffers[id];
    const std::size_t size = round_up(size_of(b), Placement::kAlignment);
    busy.clear();
    for (const Placed& p : placed) {
      if (p.last >= b.first_task && b.last_task >= p.first) busy.emplace_back(p.begin, p.end);
    }
    std::sort(busy.begin(), busy.end());
    std::size_t at = 0;
    for (const auto& [begin, end] : busy) {
      if (begin >= at + size) break;  // the gap before this one fits
      at = std::max(at, end);
    }
    out.offset[id] = static_cast<std::int64_t>(at);
    out.transient_bytes = std::max(out.transient_bytes, at + size);
    placed.push_back({b.first_task, b.last_task, at, at + size});
  }
  return out;
}

Arena::~Arena() {
  // The block's bytes go back to the allocator readable, as they came.
  if (transient_block_.size_bytes() > 0 && stream_.backend() == kernels::Backend::kCpu) {
    STRATA_UNPOISON(transient_block_.data(), transient_block_.size_bytes());
  }
}

void Arena::plan(const strategies::Program& program) {
  STRATA_CHECK(!planned_ && slots_.empty(), "the arena is placed before any allocation");
  placement_ = place_buffers(program);
  static_block_ = kernels::Buffer(stream_, std::max<std::size_t>(1, placement_.static_bytes));
  transient_block_ = kernels::Buffer(stream_, std::max<std::size_t>(1, placement_.transient_bytes));
  if (stream_.backend() == kernels::Backend::kCpu) {
    STRATA_POISON(transient_block_.data(), transient_block_.size_bytes());
  }
  planned_ = true;
  note_reserved();
}

double Arena::padding_of(const Slot& s) const {
  const std::size_t alignment = planned_ ? Placement::kAlignment : 64;
  return static_cast<double>(round_up(s.size, alignment)) - s.bytes;
}

void* Arena::allocate(std::int32_t id, const strategies::Buffer& b, bool zero) {
  if (static_cast<std::size_t>(id) >= slots_.size()) slots_.resize(id + 1);
  Slot& s = slots_[id];
  STRATA_CHECK(s.data == nullptr, "buffer " + std::to_string(id) + " allocated twice");
  const double bytes = b.bytes();
  const std::size_t size = size_of(b);
  if (planned_) {
    STRATA_CHECK(
        static_cast<std::size_t>(id) < placement_.offset.size() && placement_.offset[id] >= 0,
        "buffer " + std::to_string(id) + " has no place in the arena's placement");
    kernels::Buffer& block = placement_.in_static[id] ? static_block_ : transient_block_;
    s.data = static_cast<char*>(block.data()) + placement_.offset[id];
    if (!b.persistent && stream_.backend() == kernels::Backend::kCpu) STRATA_UNPOISON(s.data, size);
  } else {
    const auto cached = b.persistent ? cache_.end() : cache_.find(size);
    if (cached != cache_.end()) {
      s.owned = std::move(cached->second);
      cache_.erase(cached);
      cached_ -= static_cast<double>(size);
    } else {
      s.owned = kernels::Buffer(stream_, size);
    }
    s.data = s.owned.data();
  }
  s.size = size;
  s.bytes = bytes;
  s.role = b.role;
  s.persistent = b.persistent;
  if (zero) kernels::fill_zero(stream_, s.data, size);
  const double padding = padding_of(s);
  if (b.persistent) {
    switch (b.role) {
      case Role::kParam:
        stats_.static_bytes.params += bytes;
        break;
      case Role::kGrad:
        stats_.static_bytes.grads += bytes;
        break;
      case Role::kOptimizer:
        stats_.static_bytes.optimizer += bytes;
        break;
      default:
        stats_.static_bytes.other += bytes;
        break;
    }
    stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.static_bytes.total() + transient_);
    padding_ += padding;
    note_reserved();
    return s.data;
  }
  transient_ += bytes;
  padding_ += padding;
  by_role_[static_cast<int>(b.role)] += bytes;
  if (transient_ > stats_.peak_transient_bytes) {
    stats_.peak_transient_bytes = transient_;
    stats_.peak_by_role = by_role_;
    stats_.alignment_padding_bytes = padding_;
  }
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.static_bytes.total() + transient_);
  note_reserved();
  return s.data;
}

void Arena::note_reserved() {
  const double held =
      planned_ ? static_cast<double>(static_block_.size_bytes() + transient_block_.size_bytes())
               : stats_.static_bytes.total() + transient_ + padding_ + cached_;
  stats_.reserved_peak_bytes = std::max(stats_.reserved_peak_bytes, held);
}

void Arena::release(std::int32_t id) {
  Slot& s = slots_.at(id);
  STRATA_CHECK(s.data != nullptr && !s.persistent, "buffer released twice or static");
  transient_ -= s.bytes;
  by_role_[static_cast<int>(s.role)] -= s.bytes;
  padding_ -= padding_of(s);
  if (planned_) {
    if (stream_.backend() == kernels::Backend::kCpu) STRATA_POISON(s.data, s.size);
  } else {
    cached_ += static_cast<double>(s.owned.size_bytes());
    cache_.emplace(s.owned.size_bytes(), std::move(s.owned));
    s.owned = kernels::Buffer();
  }
  s.data = nullptr;
}

void* Arena::data(std::int32_t id) const {
  STRATA_CHECK(static_cast<std::size_t>(id) < slots_.size() && slots_[id].data != nullptr,
               "buffer " + std::to_string(id) + " used while not allocated");
  return slots_[id].data;
}

bool Arena::live(std::int32_t id) const {
  return static_cast<std::size_t>(id) < slots_.size() && slots_[id].data != nullptr;
}

void Arena::stage(double bytes) {
  staging_ += bytes;
  stats_.staging_peak_bytes = std::max(stats_.staging_peak_bytes, staging_);
}

void Arena::unstage(double bytes) { staging_ -= bytes; }

}  // namespace strata::exec
