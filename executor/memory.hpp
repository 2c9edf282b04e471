// The executor's memory: every tensor of the rank's program is allocated from the Plan's buffer
// table (persistent buffers once, the others when their first task starts and freed when their
// last task ends), through this tracking allocator, so that what the executor held can be set
// beside the Plan's prediction byte for byte. Memory outside the Plan's tensors -- the
// allocator's alignment padding, communication staging (copies of in-flight sends, scratch of
// reductions) -- is counted separately.
//
// Placement (plan()): before the first step the arena places every buffer of the program at an
// offset of one of two blocks, sized from the Plan: the persistent buffers one after another, the
// transient ones so that no two whose lifetimes (first_task to last_task) overlap share a byte
// (place_buffers: largest first, each at the lowest offset free over its lifetime). The two
// blocks are the only allocations: no tensor is allocated or faulted in inside a step, on the
// CPU or on a GPU (where a cudaMalloc inside a step would synchronize the device). What the
// blocks hold beyond the peak of live tensors is the placement's fragmentation, reported as the
// reserved bytes. Under AddressSanitizer the bytes of every buffer not live are poisoned, so a
// read past a tensor's end or after its last task is still reported.
//
// Without plan() the arena allocates each buffer on its own and keeps a released one, by size,
// for the next buffer of that size (the caching allocators of deep-learning frameworks do the
// same); the op timer's operands and the unit tests use that.
#pragma once

#include <array>
#include <cstddef>
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
  double alignment_padding_bytes = 0;     // allocator overhead at the peak (alignment)
  double staging_peak_bytes = 0;          // the most communication staging live at once
  // The most bytes held from the system at once: static and transient buffers with their
  // padding, and the released buffers kept for reuse; with a placement, its two blocks.
  double reserved_peak_bytes = 0;
};

// Where each buffer of a program lives in the arena's two blocks (Arena::plan).
struct Placement {
  static constexpr std::size_t kAlignment = 256;  // every offset (cudaMalloc's alignment)
  std::vector<std::int64_t> offset;  // per buffer of the table; -1 for views and unused buffers
  std::vector<bool> in_static;       // the persistent block (else the transient one)
  std::size_t static_bytes = 0, transient_bytes = 0;  // the blocks' sizes
};

// Places `program`'s buffers: persistent ones consecutively, transient ones (those some task
// uses) so that buffers whose lifetimes overlap never overlap in memory.
Placement place_buffers(const strategies::Program& program);

// Mixture of experts: the Plan sizes the rows an expert-parallel rank receives (kMoeReceived,
// kMoeExpertIn, kMoeFc1Out, kMoeAct, kMoeExpertOut, kMoeReturned and their gradients) for the
// rows the strategy's expert_routing expects, but the real rows depend on the routing. The
// executor's copy of the program sizes them for the most rows any routing can send: from each of
// the ep sources R min(k, E/ep) rows when dropless, at most (E/ep) capacity with a capacity
// (times expert_tp for the rows gathered over the experts' tp group); the ops over them (the
// grouped GEMMs, the activation) take those rows, the rows beyond the routed ones zero. With a
// capacity the rank's dispatched rows (kMoePermuted, kMoeCombined and their gradients, and the
// permutation's and combine's row counts) are sized for min(R k, E capacity), the most a routing
// keeps; dropless they are exact (R k). The measured memory of an MoE program is therefore
// larger than the Plan's; a dense program comes back unchanged.
strategies::Program with_moe_row_bounds(const strategies::Program& program);

class Arena {
 public:
  explicit Arena(const kernels::Stream& stream) : stream_(stream) {}
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Places every buffer of `program` (place_buffers) and allocates the two blocks; from here on
  // allocate() hands out places in them, and only buffers of that program.
  void plan(const strategies::Program& program);
  bool planned() const { return planned_; }
  const Placement& placement() const { return placement_; }

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
    kernels::Buffer owned;   // without a placement
    void* data = nullptr;    // null while not allocated
    std::size_t size = 0;    // bytes taken, padding excluded
    double bytes = 0;
    strategies::Role role = strategies::Role::kWorkspace;
    bool persistent = false;
  };
  void note_reserved();
  double padding_of(const Slot& s) const;
  std::vector<Slot> slots_;
  bool planned_ = false;
  Placement placement_;
  kernels::Buffer static_block_, transient_block_;
  std::multimap<std::size_t, kernels::Buffer> cache_;  // released transient buffers, by size
  double cached_ = 0;                                  // their bytes (allocation sizes)
  double transient_ = 0, padding_ = 0, staging_ = 0;
  std::array<double, strategies::kNumRoles> by_role_{};
  MemoryStats stats_;
};

}  // namespace strata::exec
