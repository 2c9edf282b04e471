// The tracking allocator of the Plan's buffers (memory.hpp).
#include "executor/memory.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace strata::exec {

using strategies::Role;

void* Arena::allocate(std::int32_t id, const strategies::Buffer& b, bool zero) {
  if (static_cast<std::size_t>(id) >= slots_.size()) slots_.resize(id + 1);
  Slot& s = slots_[id];
  STRATA_CHECK(s.buffer.size_bytes() == 0, "buffer " + std::to_string(id) + " allocated twice");
  const double bytes = b.bytes();
  const auto size = static_cast<std::size_t>(std::max(1.0, bytes));
  const auto cached = b.persistent ? cache_.end() : cache_.find(size);
  if (cached != cache_.end()) {
    s.buffer = std::move(cached->second);
    cache_.erase(cached);
    cached_ -= static_cast<double>(size);
  } else {
    s.buffer = kernels::Buffer(stream_, size);
  }
  s.bytes = bytes;
  s.role = b.role;
  s.persistent = b.persistent;
  if (zero) kernels::fill_zero(stream_, s.buffer.data(), size);
  const double padding = static_cast<double>((size + 63) / 64 * 64) - bytes;
  if (b.persistent) {
    switch (b.role) {
      case Role::kParam: stats_.static_bytes.params += bytes; break;
      case Role::kGrad: stats_.static_bytes.grads += bytes; break;
      case Role::kOptimizer: stats_.static_bytes.optimizer += bytes; break;
      default: stats_.static_bytes.other += bytes; break;
    }
    stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.static_bytes.total() + transient_);
    padding_ += padding;
    note_reserved();
    return s.buffer.data();
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
  return s.buffer.data();
}

void Arena::note_reserved() {
  stats_.reserved_peak_bytes = std::max(
      stats_.reserved_peak_bytes, stats_.static_bytes.total() + transient_ + padding_ + cached_);
}

void Arena::release(std::int32_t id) {
  Slot& s = slots_.at(id);
  STRATA_CHECK(s.buffer.size_bytes() > 0 && !s.persistent, "buffer released twice or static");
  transient_ -= s.bytes;
  by_role_[static_cast<int>(s.role)] -= s.bytes;
  padding_ -= static_cast<double>((s.buffer.size_bytes() + 63) / 64 * 64) - s.bytes;
  cached_ += static_cast<double>(s.buffer.size_bytes());
  cache_.emplace(s.buffer.size_bytes(), std::move(s.buffer));
  s.buffer = kernels::Buffer();
}

void* Arena::data(std::int32_t id) const {
  STRATA_CHECK(static_cast<std::size_t>(id) < slots_.size() && slots_[id].buffer.size_bytes() > 0,
               "buffer " + std::to_string(id) + " used while not allocated");
  return const_cast<void*>(slots_[id].buffer.data());
}

bool Arena::live(std::int32_t id) const {
  return static_cast<std::size_t>(id) < slots_.size() && slots_[id].buffer.size_bytes() > 0;
}

void Arena::stage(double bytes) {
  staging_ += bytes;
  stats_.staging_peak_bytes = std::max(stats_.staging_peak_bytes, staging_);
}

void Arena::unstage(double bytes) { staging_ -= bytes; }

}  // namespace strata::exec
