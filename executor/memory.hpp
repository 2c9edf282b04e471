// The executor's memory: every tensor of the rank's program is allocated from the Plan's buffer
// table (persistent buffers once, the others when their first task starts and freed when their
// last task ends), through this tracking allocator, so that what the executor held can be set
// beside the Plan's prediction byte for byte. Memory outside the Plan's tensors -- the
// allocator's alignment padding, communication staging (copies of in-flight sends, scratch of
// reductions) -- is counted separately.
//
// A transient buffer's memory is not handed back when it is released: it is kept, by size, for
// the next buffer of that size (the caching allocators of deep-learning frameworks do the same).
// Every step allocates the same buffers in the same order, so from the second step on no tensor
// reaches the system allocator, and no page of one is faulted in again: before, glibc returned
// the memory of large buffers to the system and every step faulted it back in (about 100,000
// minor page faults per step of gpt-10m on one rank, some 7% of its step). What the cache holds
// is counted apart (reserved_peak_bytes), never in the peak set beside the Plan.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <vector>

#include "kernels/backend.hpp"
#include "strategies/program.hpp"

namespace strata::exec {

// What one rank held, in bytes (measured, not read from the Plan).
struct MemoryStats {
  strategies::StaticMemory static_bytes;  // persistent buffers: parameters, gradients, optimizer
  double peak_bytes = 0;                  // static + the most transient bytes live at once
  double peak_transient_bytes = 0;
  std::array<double, strategies::kNumRoles> peak_by_role{};  // transient bytes at that peak
  double alignment_padding_bytes = 0;     // allocator overhead at the peak (64-byte alignment)
  double staging_peak_bytes = 0;          // the most communication staging live at once
  // The most bytes held from the system at once: static and transient buffers with their
  // padding, and the released buffers kept for reuse.
  double reserved_peak_bytes = 0;
};

class Arena {
 public:
  explicit Arena(const kernels::Stream& stream) : stream_(stream) {}

  // Allocates buffer `id` of the table with `bytes` bytes (zeroed when `zero`).
  void* allocate(std::int32_t id, const strategies::Buffer& b, bool zero);
  void release(std::int32_t id);
  void* data(std::int32_t id) const;
  bool live(std::int32_t id) const;

  // Communication staging outside the Plan's tensors: counted, not part of the peak.
  void stage(double bytes);
  void unstage(double bytes);

  const MemoryStats& stats() const { return stats_; }

 private:
  const kernels::Stream& stream_;
  struct Slot {
    kernels::Buffer buffer;
    double bytes = 0;
    strategies::Role role = strategies::Role::kWorkspace;
    bool persistent = false;
  };
  void note_reserved();
  std::vector<Slot> slots_;
  std::multimap<std::size_t, kernels::Buffer> cache_;  // released transient buffers, by size
  double cached_ = 0;                                  // their bytes (allocation sizes)
  double transient_ = 0, padding_ = 0, staging_ = 0;
  std::array<double, strategies::kNumRoles> by_role_{};
  MemoryStats stats_;
};

}  // namespace strata::exec
