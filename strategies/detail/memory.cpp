// After emission: each task's FLOPs and bytes from its ops, each buffer's lifetime from the
// tasks that use it, the roles of the tensors kept across the forward/backward gap, and the
// program's memory: persistent buffers are static, the others are walked in program order
// (allocated when their first task starts, freed when their last task ends).
#include <algorithm>
#include <limits>

#include "common/error.hpp"
#include "strategies/detail/lowering.hpp"

namespace strata::strategies::detail {
namespace {

constexpr std::uint32_t kUnused = std::numeric_limits<std::uint32_t>::max();

std::int32_t root_of(const Program& p, std::int32_t b) {
  while (p.buffers[b].view_of >= 0) b = p.buffers[b].view_of;
  return b;
}

void task_costs(Program& p) {
  for (Task& t : p.tasks) {
    t.flops = t.bytes = t.elementwise_bytes = 0;
    for (std::uint32_t k = 0; k < t.op_count; ++k) {
      const OpCost c = op_cost(p.ops[t.op_begin + k]);
      t.flops += c.flops;
      t.bytes += c.bytes;
      t.elementwise_bytes += c.elementwise_bytes;
    }
  }
}

void lifetimes(Program& p) {
  for (Buffer& b : p.buffers) {
    b.first_task = kUnused;
    b.last_task = 0;
  }
  for (std::uint32_t i = 0; i < p.tasks.size(); ++i) {
    const Task& t = p.tasks[i];
    for (std::uint32_t k = 0; k < t.op_count; ++k) {
      const Op& op = p.ops[t.op_begin + k];
      for (int j = 0; j < op.n_in + op.n_out; ++j) {
        Buffer& b = p.buffers[root_of(p, p.operands[op.operands + j])];
        b.first_task = std::min(b.first_task, i);
        b.last_task = std::max(b.last_task, i);
      }
    }
  }
  for (Buffer& b : p.buffers) {
    if (!b.is_view()) continue;
    const Buffer& r = p.buffers[root_of(p, static_cast<std::int32_t>(&b - p.buffers.data()))];
    b.first_task = r.first_task;
    b.last_task = r.last_task;
  }
}

// A tensor written by a forward and last read by a backward (or by a recompute) is kept across
// the forward/backward gap: an activation; a recomputed one read by a backward, a recompute
// buffer (Korthikanti et al.'s accounting).
void refine_roles(Program& p) {
  for (Buffer& b : p.buffers) {
    if (b.persistent || b.is_view() || b.role != Role::kWorkspace || b.first_task == kUnused) {
      continue;
    }
    const Phase first = p.tasks[b.first_task].phase, last = p.tasks[b.last_task].phase;
    const bool kept_backward = last == Phase::kBackward || last == Phase::kRecompute;
    if (first == Phase::kForward && kept_backward && !b.grad) b.role = Role::kActivation;
    if (first == Phase::kRecompute && last == Phase::kBackward && !b.grad) b.role = Role::kRecompute;
  }
}

void walk_memory(Program& p) {
  MemorySummary& mem = p.memory;
  mem = MemorySummary{};
  std::vector<std::uint32_t> start_count(p.tasks.size() + 1, 0), end_count(p.tasks.size() + 1, 0);
  for (const Buffer& b : p.buffers) {
    if (b.is_view()) continue;
    if (b.persistent) {
      switch (b.role) {
        case Role::kParam: mem.static_bytes.params += b.bytes(); break;
        case Role::kGrad: mem.static_bytes.grads += b.bytes(); break;
        case Role::kOptimizer: mem.static_bytes.optimizer += b.bytes(); break;
        default: mem.static_bytes.other += b.bytes(); break;
      }
      continue;
    }
    if (b.first_task == kUnused) continue;
    ++start_count[b.first_task + 1];
    ++end_count[b.last_task + 1];
  }
  for (std::size_t i = 1; i < start_count.size(); ++i) {
    start_count[i] += start_count[i - 1];
    end_count[i] += end_count[i - 1];
  }
  std::vector<std::int32_t> starts(start_count.back()), ends(end_count.back());
  {
    std::vector<std::uint32_t> s = start_count, e = end_count;
    for (std::size_t id = 0; id < p.buffers.size(); ++id) {
      const Buffer& b = p.buffers[id];
      if (b.is_view() || b.persistent || b.first_task == kUnused) continue;
      starts[s[b.first_task]++] = static_cast<std::int32_t>(id);
      ends[e[b.last_task]++] = static_cast<std::int32_t>(id);
    }
  }
  std::array<double, kNumRoles> live{};
  double now = 0;
  for (std::uint32_t i = 0; i < p.tasks.size(); ++i) {
    for (auto k = start_count[i]; k < start_count[i + 1]; ++k) {
      const Buffer& b = p.buffers[starts[k]];
      now += b.bytes();
      live[static_cast<int>(b.role)] += b.bytes();
    }
    if (now > mem.peak_dynamic_bytes) {
      mem.peak_dynamic_bytes = now;
      mem.peak_by_role = live;
      mem.peak_task = i;
    }
    mem.max_activation_bytes =
        std::max(mem.max_activation_bytes, live[static_cast<int>(Role::kActivation)]);
    for (auto k = end_count[i]; k < end_count[i + 1]; ++k) {
      const Buffer& b = p.buffers[ends[k]];
      now -= b.bytes();
      live[static_cast<int>(b.role)] -= b.bytes();
    }
  }
  mem.peak_activation_bytes = mem.peak_by_role[static_cast<int>(Role::kActivation)];
  STRATA_CHECK(std::abs(now) <= 1e-6 * std::max(1.0, mem.peak_dynamic_bytes),
               "buffers do not balance: " + std::to_string(now) + " bytes left");
  for (const ParamInfo& pi : p.params) mem.params_count += static_cast<double>(pi.elements);
}

}  // namespace

void finish_program(Program& p) {
  task_costs(p);
  lifetimes(p);
  refine_roles(p);
  walk_memory(p);
}

}  // namespace strata::strategies::detail
